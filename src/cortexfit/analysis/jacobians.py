"""Torch primitives shared by the dynamics diagnostics and the fixed-point solver.

Both work on a frozen copy of a :class:`~cortexfit.models.base.Dynamics` and need batched Jacobians
``dF/ds`` of its one-step map ``F = step``.

Examples
--------
>>> import torch
>>> from cortexfit.models import build_dynamics
>>> net = build_dynamics("vanilla", input_size=1, hidden_size=4)
>>> batched_jacobian(net, torch.zeros(3, 4), torch.zeros(3, 1)).shape
torch.Size([3, 4, 4])
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Literal, overload

import torch
from torch import Tensor

if TYPE_CHECKING:
    from cortexfit.models.base import Dynamics


def frozen_copy(dynamics: Dynamics, *, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float64) -> Dynamics:
    """A detached eval-mode copy of ``dynamics`` on ``device``/``dtype`` (the original is left untouched)."""
    dyn = copy.deepcopy(dynamics).to(device=device, dtype=dtype).eval()
    return dyn.requires_grad_(False)


@overload
def batched_jacobian(dynamics: Dynamics, states: Tensor, inputs: Tensor, *,
                     return_value: Literal[False] = ...) -> Tensor: ...
@overload
def batched_jacobian(dynamics: Dynamics, states: Tensor, inputs: Tensor, *,
                     return_value: Literal[True]) -> tuple[Tensor, Tensor]: ...
def batched_jacobian(dynamics: Dynamics, states: Tensor, inputs: Tensor, *,
                     return_value: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Jacobians ``dF/ds`` of ``dynamics.step`` at a batch of states: (K, S), (K, I) -> (K, S, S).

    Uses the family's :meth:`~cortexfit.models.base.Dynamics.step_jacobian` when it has a closed form, else
    ``torch.func.vmap(jacrev(step))``; with ``return_value`` also returns ``F(s, u)`` (K, S).

    Examples
    --------
    >>> import torch
    >>> from cortexfit.models import build_dynamics
    >>> net = build_dynamics("lstm", input_size=2, hidden_size=3)
    >>> J, F = batched_jacobian(net, torch.zeros(5, 6), torch.zeros(5, 2), return_value=True)
    >>> J.shape, F.shape
    (torch.Size([5, 6, 6]), torch.Size([5, 6]))
    """

    closed = dynamics.step_jacobian(states, inputs)
    if closed is not None:  # the family's closed form (e.g. the echo-state reservoir)
        return closed if return_value else closed[0]

    def f(s: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        out = dynamics.step(s.unsqueeze(0), u.unsqueeze(0)).squeeze(0)
        return out, out

    J, value = torch.func.vmap(torch.func.jacrev(f, has_aux=True))(states, inputs)
    return (J, value) if return_value else J
