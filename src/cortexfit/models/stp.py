"""Tsodyks-Markram short-term plasticity (STP) of recurrent synapses for the ``rate`` family.

Each presynaptic unit j carries a utilisation (facilitation) variable ``u_j`` and a resource fraction
``x_j``; the recurrent input becomes ``W (u * x * r)`` with ``r`` the presynaptic rate ``h``.  With the
presynaptic firing rate ``nu = max_rate_hz * max(h, 0)`` (Hz) and time in seconds, one Euler step of ``dt``:

    du/dt = (U - u) / tau_F + U (1 - u) nu
    dx/dt = (1 - x) / tau_D - u x nu

both clamped to [0, 1].  Parameters ``(U, tau_F, tau_D)`` come per unit from its synapse type.

Examples
--------
>>> import torch
>>> p = stp_parameters(["facilitating", "depressing"])
>>> p["U"].tolist()
[0.15000000596046448, 0.44999998807907104]
>>> u, x = stp_update(p["U"], torch.ones(2), p, dt=0.01, rate_hz=torch.zeros(2))
>>> x.tolist()
[1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: (U, tau_F [s], tau_D [s]) per synapse type.
SYNAPSE_TYPES: dict[str, tuple[float, float, float]] = {
    "facilitating": (0.15, 1.5, 0.2),
    "depressing": (0.45, 0.2, 1.5),
}


def stp_parameters(types: Sequence[str]) -> dict[str, Tensor]:
    """Per-unit ``U``, ``tau_F``, ``tau_D`` tensors (H,) from a list of synapse-type names.

    Examples
    --------
    >>> stp_parameters(["depressing"])["tau_D"].tolist()
    [1.5]
    """
    rows = torch.tensor([SYNAPSE_TYPES[t] for t in types], dtype=torch.float32)
    return {"U": rows[:, 0].clone(), "tau_F": rows[:, 1].clone(), "tau_D": rows[:, 2].clone()}


def stp_update(u: Tensor, x: Tensor, params: dict[str, Tensor], *, dt: float, rate_hz: Tensor) -> tuple[Tensor, Tensor]:
    """One explicit Euler step of (u, x) given the presynaptic firing rate ``rate_hz`` (Hz).

    Examples
    --------
    >>> import torch
    >>> p = stp_parameters(["depressing"])
    >>> u, x = stp_update(torch.tensor([0.45]), torch.ones(1), p, dt=0.01, rate_hz=torch.tensor([50.0]))
    >>> bool(x < 1)
    True
    """
    U, tau_f, tau_d = params["U"], params["tau_F"], params["tau_D"]
    du = (U - u) / tau_f + U * (1.0 - u) * rate_hz
    dx = (1.0 - x) / tau_d - u * x * rate_hz
    return (u + dt * du).clamp(0.0, 1.0), (x + dt * dx).clamp(0.0, 1.0)
