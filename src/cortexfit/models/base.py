"""The model-family contract: :class:`Dynamics`, the registry and option validation.

Every recurrent family is a :class:`torch.nn.Module` subclass of :class:`Dynamics` registered by name with
:func:`register`.  Options are a frozen, keyword-only dataclass per family (``Family.Options``), validated
once when the model is built; :func:`cortexfit.core.options.parse_options` turns a plain ``dict`` into that
dataclass and raises
:class:`~cortexfit.core.errors.ConfigError` naming the valid options for an unknown one.

Examples
--------
>>> from cortexfit.models import build_dynamics
>>> net = build_dynamics("rate", input_size=3, hidden_size=8, tau=0.05, dt=0.01)
>>> net.spec()["family"], net.state_size
('rate', 8)
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from cortexfit.core.errors import ConfigError, CortexfitError
from cortexfit.core.options import parse_options

REGISTRY: dict[str, type[Dynamics]] = {}


class ModelFileError(CortexfitError):
    """A saved model file (``model.pt``) is missing, unreadable or not in the cortexfit format."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoOptions:
    """Options of a family that takes none."""


def register(name: str) -> Callable[[type[Dynamics]], type[Dynamics]]:
    """Class decorator adding a :class:`Dynamics` subclass to the registry under ``name``.

    Examples
    --------
    >>> import cortexfit.models
    >>> from cortexfit.models.base import REGISTRY
    >>> REGISTRY["vanilla"].__name__
    'VanillaDynamics'
    """

    def deco(cls: type[Dynamics]) -> type[Dynamics]:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"model family {name!r} registered twice")
        cls.family = name
        REGISTRY[name] = cls
        return cls

    return deco




class Dynamics(nn.Module):
    """Base class of every recurrent family (see ``docs/interfaces.md``, "Model families").

    Subclasses set ``Options`` (a frozen dataclass), implement :meth:`step` and :meth:`recurrent_weight`, and
    usually override :meth:`forward` with a fast path that must equal iterating :meth:`step`.

    Attributes
    ----------
    family : str
        Registry name.
    input_size, hidden_size, state_size : int
        I, H (units read out) and S (length of the state vector).
    options
        The validated options dataclass.

    Examples
    --------
    >>> import torch
    >>> from cortexfit.models import build_dynamics
    >>> net = build_dynamics("vanilla", input_size=2, hidden_size=4)
    >>> net(torch.zeros(1, 5, 2)).shape
    torch.Size([1, 5, 4])
    """

    family: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, *, input_size: int, hidden_size: int, options: Any = None) -> None:
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"model {self.family!r}: {name} must be a positive integer, got {v!r}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.options = options if options is not None else self.Options()
        self.state_size = self.hidden_size

    # ----------------------------------------------------------------- the contract
    def _ref(self) -> Tensor:
        """A tensor giving the module's device and dtype."""
        for t in self.parameters():
            return t
        for b in self.buffers():
            return b
        return torch.zeros(())

    def initial_state(self, batch: int) -> Tensor:
        """(B, S) initial state: zeros unless the family says otherwise."""
        ref = self._ref()
        return torch.zeros(batch, self.state_size, device=ref.device, dtype=ref.dtype)

    def step(self, state: Tensor, u: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The discrete-time map F: (B, S), (B, I) -> (B, S)."""
        raise NotImplementedError

    def step_jacobian(self, state: Tensor, u: Tensor) -> tuple[Tensor, Tensor] | None:
        """``(dF/ds (B, S, S), F (B, S))`` in closed form, or None to let autograd compute it (the default)."""
        return None

    def forward(self, u: Tensor, state0: Tensor | None = None) -> Tensor:
        """Run the network over a sequence: (B, T, I) -> (B, T, S) (reference path: iterate :meth:`step`)."""
        return self.forward_reference(u, state0)

    def forward_reference(self, u: Tensor, state0: Tensor | None = None) -> Tensor:
        """Iterate :meth:`step` over time with autograd; the reference for fast paths."""
        self._check_input(u)
        s = self.initial_state(u.shape[0]) if state0 is None else state0
        out = []
        for t in range(u.shape[1]):
            s = self.step(s, u[:, t])
            out.append(s)
        if not out:
            return u.new_zeros(u.shape[0], 0, self.state_size)
        return torch.stack(out, dim=1)

    def hidden(self, states: Tensor) -> Tensor:
        """(..., S) -> (..., H): the part of the state that is read out."""
        return states[..., : self.hidden_size]

    def recurrent_weight(self) -> Tensor | None:
        """Effective (H, H) recurrent weight matrix, or None where the family has none."""
        return None

    def spec(self) -> dict:
        """``{"family": ..., "options": {...}}`` with plain JSON types; rebuilds the model via the registry."""
        return {"family": self.family, "options": dataclasses.asdict(self.options)}

    # ----------------------------------------------------------------- helpers
    def _check_input(self, u: Tensor) -> None:
        if u.dim() != 3 or u.shape[-1] != self.input_size:
            raise ConfigError(
                f"model {self.family!r}: input must have shape (batch, time, {self.input_size}), got {tuple(u.shape)}"
            )

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self.options).items())
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}, state_size={self.state_size}, {opts}"


def families() -> list[str]:
    """Sorted names of the registered model families.

    Examples
    --------
    >>> import cortexfit.models  # registers the families
    >>> "rate" in families()
    True
    """
    return sorted(REGISTRY)


def build_dynamics(family: str, *, input_size: int, hidden_size: int, **options: Any) -> Dynamics:
    """Construct a registered family with validated options.

    Parameters
    ----------
    family
        Registry name (see :func:`families`).
    input_size, hidden_size
        I and H.
    **options
        The family's options (fields of ``REGISTRY[family].Options``).

    Raises
    ------
    ConfigError
        Unknown family or option, or a bad option value (the message lists the valid ones).

    Examples
    --------
    >>> import cortexfit.models  # registers the families
    >>> net = build_dynamics("lstm", input_size=3, hidden_size=8)
    >>> net.state_size
    16
    """
    if family not in REGISTRY:
        raise ConfigError(f"unknown model family {family!r}; valid families: {', '.join(families())}")
    cls = REGISTRY[family]
    opts: Any = parse_options(cls.Options, options, where=f"model {family!r}")
    return cls(input_size=input_size, hidden_size=hidden_size, options=opts)
