"""Figure ``euler``: the discrete rate network is the Euler integrator of an ODE.

The project's ``rate`` family steps ``tau dh/dt = -h + tanh(W h + U u(t) + b)`` with forward Euler,
``h <- (1 - dt/tau) h + (dt/tau) tanh(W h + U u + b)``.  Two facts are checked on the project's own models
(:func:`cortexfit.models.build_dynamics`):

1. with ``dt = tau`` the update is ``h <- tanh(W h + U u + b)``, i.e. the ``vanilla`` RNN with the same
   weights (maximum difference below 1e-6);
2. for smaller ``dt`` the rate network converges to the ODE solution computed by
   :func:`scipy.integrate.solve_ivp` (DOP853, rtol 1e-10), with error proportional to ``dt`` (first order).

Examples
--------
>>> import tempfile, pathlib
>>> r = make(pathlib.Path(tempfile.mkdtemp()), quick=True, seed=0)  # doctest: +SKIP
>>> r.passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from cortexfit.figures._common import FigureResult, numeric_check, render, seeded

if TYPE_CHECKING:
    from cortexfit.models.rate import VanillaDynamics

LAYOUT = (1, 3, 13.0, 3.8)
NAME = "euler"
TITLE = "Rate RNN = Euler integration of an ODE; dt = tau gives the vanilla RNN"


def _inputs(t: np.ndarray) -> np.ndarray:
    """Smooth two-channel input u(t) (t in seconds) -> (len(t), 2)."""
    return np.stack([np.sin(2 * np.pi * t / 0.45), 0.8 * np.cos(2 * np.pi * t / 0.7) + 0.3], axis=-1)


def _rate_net(vanilla, dt: float, tau: float):
    """The project's ``rate`` model with step ``dt`` holding the weights of ``vanilla``."""
    from cortexfit.models import build_dynamics

    net = build_dynamics("rate", input_size=vanilla.weight_ih.shape[1], hidden_size=vanilla.weight_ih.shape[0],
                         g=1.3, dt=dt, tau=tau).double()
    net.load_state_dict(vanilla.state_dict())
    return net.eval()


@dataclass
class EulerResult:
    """Step-for-step comparison at dt = tau, the ODE reference and the Euler errors per step size."""

    seed: int
    hidden: int
    tau: float
    t_end: float
    t_tau: np.ndarray
    h_rate: np.ndarray
    h_van: np.ndarray
    t_plot: np.ndarray
    h_ode_plot: np.ndarray
    dts: np.ndarray
    errors: np.ndarray
    examples: dict

    @property
    def max_diff(self) -> float:
        return float(np.abs(self.h_rate - self.h_van).max())

    @property
    def slope(self) -> float:
        n = len(self.dts)
        tail = slice(max(0, n - 4), n)  # asymptotic regime: the four smallest steps
        return float(np.polyfit(np.log(self.dts[tail]), np.log(self.errors[tail]), 1)[0])

    @property
    def ratios(self) -> np.ndarray:
        return self.errors[:-1] / self.errors[1:]


def compute(*, quick: bool, seed: int = 0, tau_scale: float = 1.0) -> EulerResult:
    """Rate vs vanilla at dt = tau, and the Euler error against ``solve_ivp`` for halving dt.

    ``tau_scale`` != 1 builds the rate models with the wrong time constant ``tau_scale * tau`` (the broken
    control: not the vanilla RNN at dt = tau, and no convergence to the ODE; its checks must fail).
    """
    import torch
    from scipy.integrate import solve_ivp

    from cortexfit.models import build_dynamics

    hidden, n_in, tau = 20, 2, 0.1  # tau in seconds
    t_end = 2.0 if quick else 3.0  # seconds (20-30 tau)
    n_halvings = 6 if quick else 8
    with seeded(seed):
        vanilla = cast("VanillaDynamics", build_dynamics("vanilla", input_size=n_in, hidden_size=hidden, g=1.3)).double()
        with torch.no_grad():
            vanilla.bias.normal_(0.0, 0.2)
    # 1. dt = tau: the rate network equals the vanilla RNN step for step
    n_steps = round(t_end / tau)
    t_tau = np.arange(n_steps) * tau
    u_tau = torch.tensor(_inputs(t_tau))[None]
    with torch.no_grad():
        h_rate = _rate_net(vanilla, tau, tau * tau_scale)(u_tau)[0].numpy()
        h_van = vanilla(u_tau)[0].numpy()
    # 2. ODE reference and Euler convergence; errors compared on the common grid t = k tau
    W = vanilla.recurrent_weight().detach().numpy()
    U = vanilla.weight_ih.detach().numpy()
    b = vanilla.bias.detach().numpy()

    def rhs(t, h):
        return (-h + np.tanh(W @ h + U @ _inputs(np.array([t]))[0] + b)) / tau

    grid = (np.arange(n_steps) + 1) * tau
    ode = solve_ivp(rhs, (0.0, grid[-1]), np.zeros(hidden), method="DOP853", dense_output=True, rtol=1e-10, atol=1e-12)
    h_ode = ode.sol(grid).T  # (n_steps, hidden): h(t = (k + 1) tau)
    t_plot = np.linspace(0.0, grid[-1], 600)
    dts = tau / 2.0 ** np.arange(n_halvings)
    errors, examples = [], {}
    for dt in dts:
        k = round(tau / dt)
        t_fine = np.arange(n_steps * k) * dt
        with torch.no_grad():
            h = _rate_net(vanilla, float(dt), tau * tau_scale)(torch.tensor(_inputs(t_fine))[None])[0].numpy()
        coarse = h[k - 1 :: k]  # state after step j*k = time (j + 1) tau
        errors.append(float(np.abs(coarse - h_ode).max()))
        examples[float(dt)] = (t_fine + dt, h[:, 0])
    return EulerResult(seed=seed, hidden=hidden, tau=tau, t_end=t_end, t_tau=t_tau, h_rate=h_rate, h_van=h_van,
                       t_plot=t_plot, h_ode_plot=ode.sol(t_plot)[0], dts=dts, errors=np.array(errors),
                       examples=examples)


def check(r: EulerResult) -> list[dict]:
    """The numeric checks of the figure."""
    return [
        numeric_check("max_abs_diff_rate_vs_vanilla", r.max_diff, hi=1e-6,
                      description="rate model with dt = tau vs vanilla RNN with the same weights (max |difference|)"),
        numeric_check("error_slope_loglog", r.slope, lo=0.85, hi=1.15,
                      description="slope of log max-error vs log dt (forward Euler is first order: 1)"),
        numeric_check("min_error_ratio_per_halving", float(r.ratios.min()), lo=1.3,
                      description="error(dt) / error(dt/2), every halving (decreasing error; 2 for first order)"),
    ]


def record(r: EulerResult) -> FigureResult:
    """The JSON record (params, values, notes and checks) of a result."""
    return FigureResult(
        name=NAME,
        title=TITLE,
        params={"hidden": r.hidden, "inputs": 2, "tau_s": r.tau, "t_end_s": r.t_end, "g": 1.3, "seed": r.seed,
                "models": "cortexfit.models rate (dt, tau) and vanilla, float64",
                "ode": "scipy solve_ivp DOP853 rtol 1e-10 atol 1e-12"},
        values={"dt_over_tau": r.dts / r.tau, "max_error": r.errors, "error_ratio_per_halving": r.ratios},
        notes=["errors are max |h_euler - h_ode| over units and the grid t = k tau",
               "slope fitted on the four smallest dt"],
        checks=check(r),
    )


def plot(r: EulerResult, fig, axes) -> None:
    """dt = tau overlay, Euler steps vs the ODE, and the log-log convergence."""
    tau, dts, errors = r.tau, r.dts, r.errors
    ax = axes[0]
    for i, c in zip(range(3), ("C0", "C1", "C2")):
        ax.plot(r.t_tau + tau, r.h_van[:, i], "o", color=c, ms=5, mfc="none")
        ax.plot(r.t_tau + tau, r.h_rate[:, i], "-", color=c, lw=1)
    ax.plot([], [], "ko", mfc="none", label="vanilla RNN")
    ax.plot([], [], "k-", lw=1, label="rate RNN, dt = tau")
    ax.set(xlabel="time (s)", ylabel="activity h of 3 units (a.u.)", ylim=(-1.05, 1.35),
           title=f"dt = tau: max |rate - vanilla| = {r.max_diff:.1e}")
    ax.legend(ncol=2, loc="upper center")
    ax = axes[1]
    ax.plot(r.t_plot, r.h_ode_plot, color="k", lw=3, alpha=0.35, label="ODE (solve_ivp)")
    for dt, c in zip(dts[[0, 2, 4]], ("C3", "C1", "C2")):
        tt, hh = r.examples[float(dt)]
        ax.plot(tt, hh, color=c, lw=1, label=f"Euler dt = tau/{round(tau / dt)}")
    ax.set(xlabel="time (s)", ylabel="unit 0 activity h (a.u.)", ylim=(-1.05, 1.35),
           title="Euler steps vs the ODE solution")
    ax.legend(ncol=2, loc="upper center")
    ax = axes[2]
    ax.loglog(dts / tau, errors, "o-", color="C0", label="max error")
    ax.loglog(dts / tau, errors[-1] * (dts / dts[-1]), "--", color="0.5", label="slope 1 (first order)")
    ax.set(xlabel="dt / tau", ylabel="max |h_Euler - h_ODE| (a.u.)", title=f"convergence: slope {r.slope:.2f}")
    ax.legend()


def make(out_dir: Path, *, quick: bool, seed: int = 0) -> FigureResult:
    """compute -> check -> plot; writes ``euler.png`` and ``euler.json`` and returns the record."""
    r = compute(quick=quick, seed=seed)
    return render(out_dir, record(r), lambda fig, axes: plot(r, fig, axes), layout=LAYOUT, quick=quick, seed=seed)
