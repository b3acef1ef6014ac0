"""Dynamics diagnostics of any :class:`~cortexfit.models.base.Dynamics` (``cortexfit dynamics``).

Everything here uses only ``step``, ``state_size``, ``initial_state`` and ``recurrent_weight``, so every
family (rate with or without STP, vanilla, LSTM with its joint ``(h, c)`` state, ESN) is treated alike:

* **spectrum** of the effective recurrent matrix ``W`` (``recurrent_weight()``) and of the discrete-time
  Jacobian ``dF/ds`` at the rest state (``initial_state``, zero input) -- for the rate model
  ``(1 - alpha) I + alpha W diag(phi'(b))``; bulk radius ``R = r_q / sqrt(q)`` from the ``q``-quantile
  ``r_q`` of ``|lambda|`` (exact for the circular law), outliers ``|lambda| > (1 + margin) R``;
* **Lyapunov spectrum** (top ``k``) by the QR (Benettin) method with batched autograd Jacobians of ``step``
  along the model's trajectories, per step and per second;
* **echo-state test**: distance between two runs from different initial states under the same input;
* **gradient norm** ``||ds_{t0+L} / ds_{t0}||_2`` against the lag ``L`` (vanishing / exploding gradients).

Examples
--------
>>> import torch
>>> from cortexfit.models import build_dynamics
>>> net = build_dynamics("vanilla", input_size=1, hidden_size=4)
>>> batched_jacobian(net, torch.zeros(3, 4), torch.zeros(3, 1)).shape
torch.Size([3, 4, 4])
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from cortexfit.analysis.fitdir import ModelTrajectories, model_trajectories, read_fit_dir
from cortexfit.analysis.jacobians import batched_jacobian, frozen_copy
from cortexfit.core import convention
from cortexfit.core.errors import AnalysisError, ConfigError

if TYPE_CHECKING:
    from cortexfit.models.base import Dynamics

__all__ = ["DynamicsConfig", "batched_jacobian", "echo_state_distance", "eigenspectrum", "frozen_copy",
           "gradient_norms", "jacobians_along", "lyapunov_spectrum", "run", "spectrum_summary"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DynamicsConfig:
    """Options of the diagnostics (validated once).

    n_lyap : exponents of the Lyapunov spectrum kept (capped at the state size).
    n_trials : trajectories used for Lyapunov, echo-state and gradient curves.
    burn_in : first steps left out of the Lyapunov average (the QR frame aligns first).
    max_lag : longest lag of the gradient-norm curve (capped at the trajectory length).
    n_steps : trajectory length when the fit gives no inputs (zero input).
    bulk_quantile, outlier_margin : bulk radius ``r_q / sqrt(q)`` and outlier threshold ``(1 + margin) R``.
    dtype : "float64" (default) or "float32".
    """

    n_lyap: int = 10
    n_trials: int = 16
    burn_in: int = 10
    max_lag: int = 100
    n_steps: int = 200
    bulk_quantile: float = 0.9
    outlier_margin: float = 0.1
    dtype: str = "float64"

    def __post_init__(self) -> None:
        for k in ("n_lyap", "n_trials", "max_lag", "n_steps"):
            if getattr(self, k) < 1:
                raise ConfigError(f"dynamics: {k} must be >= 1, got {getattr(self, k)}")
        if self.burn_in < 0 or not 0 < self.bulk_quantile <= 1 or self.outlier_margin < 0:
            raise ConfigError("dynamics: need burn_in >= 0, 0 < bulk_quantile <= 1 and outlier_margin >= 0")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dynamics: dtype must be 'float32' or 'float64', got {self.dtype!r}")


# ----------------------------------------------------------------------------- building blocks
def spectrum_summary(eigenvalues: Tensor, *, quantile: float = 0.9, margin: float = 0.1) -> dict[str, Any]:
    """Spectral radius, bulk radius ``r_q / sqrt(q)`` and outlier mask of a set of eigenvalues.

    Examples
    --------
    >>> import torch
    >>> s = spectrum_summary(torch.tensor([0.5, -0.5j, 0.5, 3.0]), quantile=0.75)
    >>> round(s["spectral_radius"], 3), s["outlier"].tolist()
    (3.0, [False, False, False, True])
    """
    mag = eigenvalues.abs().double()
    bulk = float(torch.quantile(mag, quantile, interpolation="lower")) / quantile**0.5
    return {"spectral_radius": float(mag.max()), "bulk_radius": bulk, "outlier": (mag > (1 + margin) * bulk).cpu()}


def _sorted_eigvals(M: Tensor) -> Tensor:
    ev = torch.linalg.eigvals(M.detach().to(torch.float64).cpu())
    return ev[torch.argsort(ev.abs(), descending=True, stable=True)]


@torch.no_grad()
def eigenspectrum(dynamics: Dynamics, *, quantile: float = 0.9, margin: float = 0.1) -> dict[str, Any]:
    """Eigenvalues of ``recurrent_weight()`` (if any) and of ``dF/ds`` at rest, with their summaries.

    Returns a dict with ``weight`` (None or the eigenvalue/summary dict of W) and ``jacobian`` (same for
    the Jacobian at ``initial_state(1)`` and zero input); eigenvalues sorted by decreasing modulus.

    Examples
    --------
    >>> from cortexfit.models import build_dynamics
    >>> out = eigenspectrum(build_dynamics("rate", input_size=1, hidden_size=6))
    >>> out["weight"]["eigenvalues"].shape, out["jacobian"]["eigenvalues"].shape
    (torch.Size([6]), torch.Size([6]))
    """
    out: dict[str, Any] = {"weight": None}
    W = dynamics.recurrent_weight()
    if W is not None and W.dim() == 2 and W.shape[0] == W.shape[1]:
        ev = _sorted_eigvals(W)
        out["weight"] = {"eigenvalues": ev, **spectrum_summary(ev, quantile=quantile, margin=margin)}
    ref = dynamics.initial_state(1)
    J = batched_jacobian(dynamics, ref, ref.new_zeros(1, dynamics.input_size))[0]
    ev = _sorted_eigvals(J)
    out["jacobian"] = {"eigenvalues": ev, **spectrum_summary(ev, quantile=quantile, margin=margin)}
    return out


def jacobians_along(dynamics: Dynamics, state0: Tensor, inputs: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(J_t, s_t)`` for t = 1..T: ``s_t = F(s_{t-1}, u_t)`` and ``J_t = dF/ds`` at ``(s_{t-1}, u_t)``."""
    s = state0
    for t in range(inputs.shape[1]):
        J, s = batched_jacobian(dynamics, s, inputs[:, t], return_value=True)
        yield J, s


@torch.no_grad()  # Jacobians w.r.t. the state still come from jacrev; nothing tracks the parameters
def lyapunov_spectrum(dynamics: Dynamics, state0: Tensor, inputs: Tensor, *, k: int = 10, burn_in: int = 0) -> Tensor:
    """Top-``k`` Lyapunov exponents (per step, decreasing) by QR re-orthonormalisation (Benettin).

    Averaged over the batch of trajectories started at ``state0`` (B, S) under ``inputs`` (B, T, I), leaving
    the first ``burn_in`` steps out.

    Examples
    --------
    >>> import torch
    >>> from cortexfit.models import build_dynamics
    >>> net = build_dynamics("vanilla", input_size=1, hidden_size=5, g=0.5)
    >>> lyapunov_spectrum(net, torch.zeros(2, 5), torch.zeros(2, 30, 1), k=3).shape
    torch.Size([3])
    """
    B, S = state0.shape
    T = inputs.shape[1]
    if T <= burn_in:
        raise AnalysisError(f"lyapunov: trajectory of {T} steps is not longer than burn_in={burn_in}")
    k = min(k, S)
    Q = torch.eye(S, k, dtype=state0.dtype, device=state0.device).expand(B, S, k)
    total = torch.zeros(B, k, dtype=state0.dtype, device=state0.device)
    for t, (J, _) in enumerate(jacobians_along(dynamics, state0, inputs)):
        Q, R = torch.linalg.qr(J @ Q)
        if t >= burn_in:
            total += torch.log(torch.diagonal(R, dim1=-2, dim2=-1).abs().clamp_min(1e-300))
    return torch.sort((total / (T - burn_in)).mean(0), descending=True).values


@torch.no_grad()
def gradient_norms(dynamics: Dynamics, state0: Tensor, inputs: Tensor, *, max_lag: int | None = None) -> Tensor:
    """Mean over trajectories of ``log ||ds_L / ds_0||_2`` for lags L = 0..max_lag (log 1 = 0 at L = 0).

    The product of Jacobians is renormalised every step and the log-scale accumulated, so long lags do
    not under/overflow.  A map contracting by ``rho`` per step gives a line of slope ``log(rho)``.

    Examples
    --------
    >>> import torch
    >>> from cortexfit.models import build_dynamics
    >>> net = build_dynamics("vanilla", input_size=1, hidden_size=4)
    >>> gradient_norms(net, torch.zeros(2, 4), torch.zeros(2, 10, 1)).shape
    torch.Size([11])
    """
    B, S = state0.shape
    L = inputs.shape[1] if max_lag is None else min(max_lag, inputs.shape[1])
    P = torch.eye(S, dtype=state0.dtype, device=state0.device).expand(B, S, S)
    logn = torch.zeros(B, dtype=state0.dtype, device=state0.device)
    curve = [logn.clone()]
    for J, _ in jacobians_along(dynamics, state0, inputs[:, :L]):
        P = J @ P
        n = _largest_eigenvalue(P @ P.mT).clamp_min(0).sqrt().clamp_min(1e-300)  # ||P||_2, no SVD
        logn = logn + torch.log(n)
        P = P / n[:, None, None]
        curve.append(logn.clone())
    return torch.stack(curve, 1).mean(0)


def _largest_eigenvalue(M: Tensor) -> Tensor:
    """Largest eigenvalue of each symmetric matrix of a batch (B, S, S).

    On the CPU only that eigenvalue is computed (LAPACK ``syevr`` with an index range, via
    :func:`scipy.linalg.eigh`: about 2.3x faster than all eigenvalues at S = 400); elsewhere
    ``torch.linalg.eigvalsh``.
    """
    S = M.shape[-1]
    if M.device.type != "cpu" or S < 32:
        return torch.linalg.eigvalsh(M)[..., -1]
    import scipy.linalg

    top = [scipy.linalg.eigh(m, eigvals_only=True, subset_by_index=[S - 1, S - 1], driver="evr",
                             check_finite=False)[0] for m in M.numpy()]
    return torch.tensor(top, dtype=M.dtype)


def echo_state_distance(dynamics: Dynamics, inputs: Tensor, state_a: Tensor, state_b: Tensor) -> Tensor:
    """Mean distance ``||s_a(t) - s_b(t)||`` for t = 0..T of two runs under the same ``inputs`` (B, T, I).

    Examples
    --------
    >>> import torch
    >>> from cortexfit.models import build_dynamics
    >>> net = build_dynamics("vanilla", input_size=1, hidden_size=4, g=0.3)
    >>> d = echo_state_distance(net, torch.randn(2, 20, 1), torch.zeros(2, 4), torch.ones(2, 4))
    >>> bool(d[-1] < d[0])
    True
    """
    with torch.no_grad():
        a = torch.cat([state_a[:, None], dynamics(inputs, state_a)], 1)
        b = torch.cat([state_b[:, None], dynamics(inputs, state_b)], 1)
    return torch.linalg.vector_norm(a - b, dim=-1).mean(0)


# ----------------------------------------------------------------------------- the stage
def _complex_vars(name: str, dim: str, ev: Tensor) -> dict[str, tuple]:
    return {f"{name}_real": ((dim,), ev.real.numpy()), f"{name}_imag": ((dim,), ev.imag.numpy())}


def _starts(data: ModelTrajectories, cfg: DynamicsConfig, seed: int, dtype: torch.dtype, input_size: int
            ) -> tuple[Tensor, Tensor, Tensor]:
    """(first states, inputs, second states of the echo-state test) of the ``n_trials`` trajectories."""
    rng = np.random.default_rng(seed)
    n_tr, n_t, _ = data.states.shape
    pick = rng.choice(n_tr, size=min(cfg.n_trials, n_tr), replace=False)
    s0 = torch.as_tensor(data.states[pick, 0], dtype=dtype)
    if data.inputs is not None and not data.simulated:  # the inputs that follow states[:, 0]
        u = torch.as_tensor(data.next_inputs(pick), dtype=dtype)
    else:
        u = torch.zeros(len(pick), cfg.n_steps, input_size, dtype=dtype)
    other = data.states[rng.integers(0, n_tr, len(pick)), rng.integers(0, n_t, len(pick))]
    return s0, u, torch.as_tensor(other, dtype=dtype)


def _dataset(spec: dict[str, Any], lyap: np.ndarray, grad: np.ndarray, echo: np.ndarray, dt_s: float) -> xr.Dataset:
    """The variables and coordinates of a ``dynamics`` file (attrs are added by :func:`run`)."""
    jac = spec["jacobian"]
    variables: dict[str, Any] = {
        **_complex_vars("jacobian_eig", "eig_jac", jac["eigenvalues"]),
        "jacobian_eig_outlier": (("eig_jac",), jac["outlier"].numpy().astype("int8")),
        "lyapunov": (("lyap",), lyap, {"units": "1/step"}),
        "lyapunov_per_s": (("lyap",), lyap / dt_s, {"units": "1/s"}),
        "log_grad_norm": (("time_lag",), grad, {"long_name": "mean log ||ds_{t0+L}/ds_{t0}||_2"}),
        "grad_norm": (("time_lag",), np.exp(grad), {"long_name": "geometric mean ||ds_{t0+L}/ds_{t0}||_2"}),
        "echo_distance": (("echo_step",), echo, {"long_name": "mean ||s_a(t) - s_b(t)||, same input"}),
        "echo_distance_relative": (("echo_step",), echo / max(echo[0], 1e-300)),
    }
    if spec["weight"] is not None:
        w = spec["weight"]
        variables.update(_complex_vars("weight_eig", "eig", w["eigenvalues"]))
        variables["weight_eig_outlier"] = (("eig",), w["outlier"].numpy().astype("int8"))
    lags = np.arange(len(grad))
    return xr.Dataset(
        variables,
        coords={
            "lyap": np.arange(len(lyap)),
            "time_lag": lags,
            "time_lag_s": ("time_lag", lags * dt_s),
            "echo_step": np.arange(len(echo)),
            "echo_time_s": ("echo_step", np.arange(len(echo)) * dt_s),
        },
    )


def run(fit_dir: str | Path, out: str | Path, *, seed: int = 0, config: DynamicsConfig | None = None) -> xr.Dataset:
    """Compute the diagnostics of a fit directory and write ``OUT.nc`` (kind ``dynamics``).

    Trajectories start from the fit's recorded states at the first bin (``n_trials`` trials picked with
    ``seed``) and are driven by the fit's ``inputs`` when ``fit.nc`` has them, else by zero input for
    ``n_steps`` steps.  The echo-state test starts a second run from another trial's state at a random time.

    Examples
    --------
    >>> run("fits/rate", "results/dynamics.nc")  # doctest: +SKIP
    """
    cfg = config or DynamicsConfig()
    dtype = getattr(torch, cfg.dtype)
    data = model_trajectories(read_fit_dir(fit_dir), seed=seed, n_steps=cfg.n_steps)
    dyn = frozen_copy(data.dynamics, dtype=dtype)
    s0, u, s_b = _starts(data, cfg, seed, dtype, dyn.input_size)

    spec = eigenspectrum(dyn, quantile=cfg.bulk_quantile, margin=cfg.outlier_margin)
    burn = min(cfg.burn_in, u.shape[1] // 4)
    lyap = lyapunov_spectrum(dyn, s0, u, k=cfg.n_lyap, burn_in=burn).numpy()
    grad = gradient_norms(dyn, s0, u, max_lag=cfg.max_lag).numpy()
    echo = echo_state_distance(dyn, u, s0, s_b).numpy()

    lags = np.arange(len(grad))
    slope = float(np.polyfit(lags[1:], grad[1:], 1)[0]) if len(lags) > 2 else float("nan")
    jac = spec["jacobian"]
    main = spec["weight"] or jac
    ds = _dataset(spec, lyap, grad, echo, data.dt_s)
    ds.attrs.update(convention.base_attrs("dynamics"))
    ds.attrs.update(
        family=str(data.dynamics.family),
        fit_dir=str(fit_dir),
        seed=int(seed),
        dt_s=float(data.dt_s),
        alpha=float(getattr(data.dynamics, "alpha", getattr(data.dynamics.options, "leak_rate", 1.0))),
        spectral_radius=main["spectral_radius"],
        bulk_radius=main["bulk_radius"],
        n_outliers=int(main["outlier"].sum()),
        spectrum_of="recurrent_weight" if spec["weight"] is not None else "jacobian_at_rest",
        jacobian_spectral_radius=jac["spectral_radius"],
        jacobian_bulk_radius=jac["bulk_radius"],
        lyapunov_max_per_step=float(lyap[0]),
        lyapunov_max_per_s=float(lyap[0] / data.dt_s),
        grad_log_slope_per_step=slope,
        echo_final_ratio=float(echo[-1] / max(echo[0], 1e-300)),
        drive="fit inputs" if data.inputs is not None and not data.simulated else "zero input",
        trajectories="simulated (random pulses)" if data.simulated else "fit.nc states",
        config=json.dumps(dataclasses.asdict(cfg), sort_keys=True),
    )
    convention.write_dataset(ds, out, "dynamics")
    log.info("dynamics: lambda_max %.4f/step, spectral radius %.3f -> %s", lyap[0], main["spectral_radius"], out)
    return ds
