"""``cortexfit fixed-points``: fixed and slow points of a fit folder's model, written as a ``fixed_points`` file.

The search itself (Adam, Levenberg-Marquardt, merging, classification) is
:func:`cortexfit.analysis.fixed_point_solver.find_fixed_points`; this module picks the starts from the
model's trajectories (:func:`cortexfit.analysis.fitdir.model_trajectories`), runs it and stores the points
with their eigen-decomposition and their projection on the trajectories' principal components.

Examples
--------
>>> import numpy as np
>>> sample_initial_states(np.zeros((2, 5, 3)), 4, noise_std=0.0, generator=np.random.default_rng(0)).shape
(4, 3)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import xarray as xr

from cortexfit.analysis.fitdir import ModelTrajectories, model_trajectories, read_fit_dir
from cortexfit.analysis.fixed_point_solver import FixedPointConfig, FixedPoints, classify, find_fixed_points
from cortexfit.core import convention
from cortexfit.core.errors import AnalysisError
from cortexfit.core.runtime import resolve_device

if TYPE_CHECKING:
    from sklearn.decomposition import PCA

__all__ = ["FixedPointConfig", "FixedPoints", "classify", "find_fixed_points", "run", "sample_initial_states"]

INPUTS = ("zero", "condition-mean")
log = logging.getLogger(__name__)


def sample_initial_states(states: np.ndarray, n: int, *, noise_std: float,
                          generator: np.random.Generator) -> np.ndarray:
    """``n`` states drawn from (trial, time, S) trajectories (uniformly over bins) plus Gaussian noise.

    Examples
    --------
    >>> sample_initial_states(np.zeros((2, 5, 3)), 4, noise_std=0.0, generator=np.random.default_rng(0)).shape
    (4, 3)
    """
    pool = states.reshape(-1, states.shape[-1])
    pick = generator.integers(0, len(pool), size=n)
    return pool[pick] + noise_std * generator.standard_normal((n, pool.shape[1]))


def _pca(data: ModelTrajectories, cfg: FixedPointConfig) -> tuple[PCA, np.ndarray, np.ndarray, list[str]]:
    """PCA of the condition-averaged trajectories (all trajectories when there are no conditions)."""
    from sklearn.decomposition import PCA

    if data.conditions is not None and not data.simulated:
        names = [str(c) for c in np.unique(data.conditions)]
        traj = np.stack([data.states[data.conditions.astype(str) == c].mean(0) for c in names])
        fit_on = traj.reshape(-1, traj.shape[-1])
    else:
        names, traj = ["all"], data.states.mean(0, keepdims=True)
        fit_on = data.states.reshape(-1, data.states.shape[-1])
    pca = PCA(n_components=min(cfg.n_pcs, fit_on.shape[0], fit_on.shape[1]), random_state=0).fit(fit_on)
    return pca, traj, pca.explained_variance_ratio_, names


def _starts(data: ModelTrajectories, inputs: str, n_init: int, noise: float, rng: np.random.Generator,
            where: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(initial states, their constant inputs, their condition) for ``--inputs zero`` or ``condition-mean``."""
    n_inputs = data.dynamics.input_size
    if inputs == "zero":
        groups = [("zero", data.states, np.zeros(n_inputs), n_init)]
    else:
        if data.inputs is None or data.conditions is None or data.simulated:
            raise AnalysisError(f"{where / 'fit.nc'}: --inputs condition-mean needs 'inputs' and a "
                                "'condition' coordinate")
        conds = np.unique(data.conditions.astype(str))
        per = max(32, n_init // len(conds))
        groups = [(c, data.states[m], data.inputs[m].mean((0, 1)), per)
                  for c in conds for m in [data.conditions.astype(str) == c]]
    x0 = np.concatenate([sample_initial_states(s, n, noise_std=noise, generator=rng) for _, s, _, n in groups])
    u0 = np.concatenate([np.tile(u, (n, 1)) for _, _, u, n in groups])
    cond_of = np.concatenate([[c] * n for c, _, _, n in groups])
    return x0, u0, cond_of


def _dataset(fps: FixedPoints, data: ModelTrajectories, cfg: FixedPointConfig, cond_of: np.ndarray) -> xr.Dataset:
    """The variables and coordinates of a ``fixed_points`` file (attrs are added by :func:`run`)."""
    pca, traj, evr, names = _pca(data, cfg)
    proj = pca.transform(fps.xstar) if len(fps) else np.zeros((0, pca.n_components_))
    dt = data.dt_s if np.isfinite(data.dt_s) and data.dt_s > 0 else 1.0
    same_time = data.fit is not None and data.fit.sizes.get("time") == traj.shape[1]
    t = data.fit["time"].values if data.fit is not None and same_time else np.arange(traj.shape[1]) * dt
    n_vec = fps.eigenvectors.shape[-1]
    traj_pc = pca.transform(traj.reshape(-1, traj.shape[-1])).reshape(*traj.shape[:2], -1)
    ds = xr.Dataset(
        {
            "xstar": (("point", "state"), fps.xstar),
            "q": (("point",), fps.q, {"long_name": "1/2 ||F(s, u*) - s||^2"}),
            "eig_real": (("point", "eig"), fps.eigenvalues.real),
            "eig_imag": (("point", "eig"), fps.eigenvalues.imag),
            "eigvec_real": (("point", "state", "eigvec"), fps.eigenvectors.real),
            "eigvec_imag": (("point", "state", "eigvec"), fps.eigenvectors.imag),
            "max_abs_eig": (("point",), np.abs(fps.eigenvalues).max(1, initial=0)),
            "n_unstable_dims": (("point",), (np.abs(fps.eigenvalues) > 1).sum(1).astype("int32")),
            "label": (("point",), fps.label.astype(str)),
            "point_type": (("point",), fps.point_type.astype(str)),
            "u_star": (("point", "input"), fps.u_star),
            "hidden": (("point", "unit_hidden"), data.dynamics.hidden(torch.as_tensor(fps.xstar)).detach().numpy()),
            "pc_projection": (("point", "pc"), proj),
            "pc_explained_variance": (("pc",), evr),
            "trajectory_pc": (("trajectory", "time", "pc"), traj_pc),
        },
        coords={"point": np.arange(len(fps)), "state": np.arange(fps.xstar.shape[1]),
                "eig": np.arange(fps.xstar.shape[1]),
                "eigvec": np.arange(n_vec), "pc": np.arange(len(evr)), "input": np.arange(data.dynamics.input_size),
                "condition": ("point", cond_of[fps.init_index].astype(str)), "trajectory": names, "time": t},
    )
    ds["time"].attrs["units"] = "s"
    return ds


def run(fit_dir: str | Path, out: str | Path, *, inputs: str = "zero", n_init: int = 1024, seed: int = 0,
        device: str = "auto", config: FixedPointConfig | None = None) -> xr.Dataset:
    """Find fixed/slow points of a fit directory's model and write ``OUT.nc`` (kind ``fixed_points``).

    Initial states are ``n_init`` bins of the fit's ``states`` (or of simulated trajectories, see
    :func:`cortexfit.analysis.fitdir.model_trajectories`) plus noise.  ``inputs="zero"`` uses ``u* = 0``;
    ``"condition-mean"`` uses each condition's mean input (needs ``inputs`` and ``condition`` in ``fit.nc``)
    with ``n_init // n_conditions`` starts (at least 32) drawn from that condition's trials.

    Examples
    --------
    >>> run("fits/rate", "results/fixed_points.nc", n_init=256)  # doctest: +SKIP
    """
    cfg = config or FixedPointConfig()
    if inputs not in INPUTS:
        raise AnalysisError(f"fixed-points: --inputs must be 'zero' or 'condition-mean', got {inputs!r}")
    if n_init < 1:
        raise AnalysisError(f"fixed-points: --n-init must be >= 1, got {n_init}")
    dev = resolve_device(device)
    t0 = time.perf_counter()
    log.info("fixed points of %s: reading the model and its trajectories ...", fit_dir)
    data = model_trajectories(read_fit_dir(fit_dir), seed=seed)
    rng = np.random.default_rng(seed)
    noise = cfg.noise_scale * float(data.states.reshape(-1, data.states.shape[-1]).std(0).mean())
    x0, u0, cond_of = _starts(data, inputs, n_init, noise, rng, Path(fit_dir))
    log.info("fixed points of %s: %s model, %d starts (%s input) on %s, elapsed %.1f s", fit_dir,
             data.dynamics.family, len(x0), inputs, dev, time.perf_counter() - t0)
    torch.manual_seed(seed)
    fps = find_fixed_points(data.dynamics, torch.as_tensor(x0, device=dev), torch.as_tensor(u0, device=dev), config=cfg)

    ds = _dataset(fps, data, cfg, cond_of)
    ds.attrs.update(convention.base_attrs("fixed_points"))
    extra: dict[str, Any] = {k: float(v) for k, v in fps.info.items() if k != "n_init"}
    ds.attrs.update(
        family=str(data.dynamics.family), fit_dir=str(fit_dir), inputs=inputs, n_init=int(len(x0)), seed=int(seed),
        device=str(dev), n_stable=fps.n_stable, n_fixed=int(np.sum(fps.point_type == "fixed")),
        n_slow=int(np.sum(fps.point_type == "slow")), n_saddle=int(np.sum(fps.label == "saddle")),
        noise_std=noise, trajectories="simulated (random pulses)" if data.simulated else "fit.nc states",
        config=json.dumps(dataclasses.asdict(cfg), sort_keys=True), **extra,
    )
    convention.write_dataset(ds, out, "fixed_points")
    log.info("fixed points of %s: wrote %s (%d points, %d stable fixed), %.1f s in all", fit_dir, out, len(fps),
             fps.n_stable, time.perf_counter() - t0)
    return ds
