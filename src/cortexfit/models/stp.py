"""Tsodyks-Markram short-term plasticity (STP) of recurrent synapses for the ``rate`` family.

Each presynaptic unit j carries a utilisation (facilitation) variable ``u_j`` and a resource fraction
``x_j``; the recurrent input becomes ``W (u * x * max(r, 0))`` with ``r`` the presynaptic rate ``h`` (the
synapses see, and transmit, the non-negative firing rate).  With ``nu = max_rate_hz * max(h, 0)`` (Hz)
and time in seconds::

    du/dt = (U - u) / tau_F + U (1 - u) nu
    dx/dt = (1 - x) / tau_D - u x nu

With ``nu`` held over a step of ``dt`` both are linear, so :func:`stp_update` integrates them exactly:
``u`` relaxes to ``u* = U (1 + tau_F nu) / (1 + U tau_F nu)`` at rate ``1 / tau_F + U nu`` and then ``x``
(with the new ``u``) to ``x* = 1 / (1 + u tau_D nu)`` at rate ``1 / tau_D + u nu``.  Both stay in [0, 1]
for any rate and step without clamping (an explicit Euler step overshoots at high rates: x reached -3.5 at
500 Hz with 10 ms steps).  Parameters ``(U, tau_F, tau_D)`` come per unit from its synapse type.

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
    """Exact update of (u, x) over ``dt`` seconds at the presynaptic firing rate ``rate_hz`` (Hz, >= 0).

    Examples
    --------
    >>> import torch
    >>> p = stp_parameters(["depressing"])
    >>> u, x = stp_update(torch.tensor([0.45]), torch.ones(1), p, dt=0.01, rate_hz=torch.tensor([500.0]))
    >>> bool(0 < x < 1)
    True
    """
    U, tau_f, tau_d = params["U"], params["tau_F"], params["tau_D"]
    nu = rate_hz.clamp(min=0.0)
    k_u = 1.0 / tau_f + U * nu
    u_star = U * (1.0 + tau_f * nu) / (1.0 + U * tau_f * nu)
    u_new = u_star + (u - u_star) * torch.exp(-k_u * dt)
    k_x = 1.0 / tau_d + u_new * nu
    x_star = 1.0 / (1.0 + u_new * tau_d * nu)
    x_new = x_star + (x - x_star) * torch.exp(-k_x * dt)
    return u_new, x_new
