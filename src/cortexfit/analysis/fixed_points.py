"""``cortexfit fixed-points``: fixed and slow points of a fit folder's model, written as a ``fixed_points`` file.

The search itself (Adam, Levenberg-Marquardt, merging, classification) is
:func:`cortexfit.analysis.fixed_point_solver.find_fixed_points`; this module picks the starts from the
model's trajectories (:func:`cortexfit.analysis.fitdir.model_trajectories`), runs it and stores the points
with their eigen-decomposition and their projection on the trajectories' principal components.  Where the fit
folder holds ``fit.nc`` and a readout of the recorded units in ``model.pt`` (latent and forecast fits: hidden
-> factors -> log-rates; echo-state fits: state -> log-rates), each point's predicted ``rates`` of every unit
are stored as well (:func:`point_rates`), in the units of ``fit.nc``'s ``rates``, so the report can draw the
points in the data's own axes.

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

from cortexfit.analysis.fitdir import FitFolder, ModelTrajectories, model_trajectories, read_fit_dir
from cortexfit.analysis.fixed_point_solver import FixedPointConfig, FixedPoints, classify, find_fixed_points
from cortexfit.core import convention
from cortexfit.core.errors import AnalysisError
from cortexfit.core.runtime import resolve_device

if TYPE_CHECKING:
    from sklearn.decomposition import PCA

    from cortexfit.models.base import Dynamics

__all__ = ["FixedPointConfig", "FixedPoints", "UnitReadout", "classify", "find_fixed_points", "point_rates", "run",
           "sample_initial_states", "unit_readout"]

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


# ----------------------------------------------------------------------------- rates of the recorded units
@dataclasses.dataclass
class UnitReadout:
    """The fitted map from a model state to every recorded unit's predicted rate, as ``fit.nc`` stores them.

    ``module`` is the fit's readout (``FactorReadout``: hidden units -> factors -> log-rates; ``StateReadout``:
    state -> log-rates), run in float64 on ``features`` of the state: ``"hidden"`` (:meth:`Dynamics.hidden`),
    ``"state"``, or ``"state-twice"`` for a bidirectional echo-state readout, whose features are the forward and
    backward runs side by side (a state held forever is both).  Spike fits apply ``exp`` (clamped like the fit,
    :func:`cortexfit.fit.heads.apply_link`) and give counts per bin; traces use the identity and the per-unit
    affine map back to data units (``scale``, ``offset``), which ``model.pt`` does not store and is recovered
    from ``fit.nc`` by least squares.
    """

    module: torch.nn.Module
    dynamics: Dynamics
    features: str
    exp_link: bool
    scale: np.ndarray | None = None
    offset: np.ndarray | None = None

    def raw(self, states: np.ndarray) -> np.ndarray:
        """(..., S) states -> (..., unit) log-rates (spikes) or standardised traces."""
        s = torch.as_tensor(np.asarray(states, dtype=float), dtype=torch.float64)
        feats = self.dynamics.hidden(s) if self.features == "hidden" else s
        if self.features == "state-twice":
            feats = torch.cat([s, s], dim=-1)
        with torch.no_grad():
            return self.module(feats)[1].numpy()

    def __call__(self, states: np.ndarray) -> np.ndarray:
        """(..., S) states -> (..., unit) rates in ``fit.nc``'s units."""
        from cortexfit.fit.heads import apply_link

        out = self.raw(states)
        if self.exp_link:
            return apply_link(torch.as_tensor(out), exp_link=True)[0].numpy()
        return out * self.scale + self.offset if self.scale is not None and self.offset is not None else out


def _affine(raw: np.ndarray, rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit ``rates ~ scale * raw + offset`` by least squares over every bin (unit last)."""
    x, y = raw.reshape(-1, raw.shape[-1]), rates.reshape(-1, rates.shape[-1])
    ok = np.isfinite(x) & np.isfinite(y)
    scale, offset = np.ones(x.shape[1]), np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        xj, yj = x[ok[:, j], j], y[ok[:, j], j]
        if len(xj) > 1 and np.ptp(xj) > 0:
            scale[j], offset[j] = np.polyfit(xj, yj, 1)
    return scale, offset


def unit_readout(folder: FitFolder, dynamics: Dynamics) -> UnitReadout | None:
    """The readout of ``folder``'s recorded units (None without ``fit.nc`` or a unit readout in ``model.pt``,
    e.g. a flip-flop teacher folder, whose readout gives the task's outputs)."""
    from cortexfit.fit.heads import FactorReadout
    from cortexfit.models.readouts import StateReadout

    if not folder.has_fit:
        return None
    rest = folder.saved_modules()
    spec = dict((rest.get("module_specs") or {}).get("readout") or {})
    state = (rest.get("modules") or {}).get("readout") or {}
    meta = dict(rest.get("meta") or {})
    kwargs = {k: v for k, v in spec.items() if k != "class"}
    module: torch.nn.Module
    if spec.get("class") == "FactorReadout":
        module, features = FactorReadout(**kwargs), "hidden"
    elif spec.get("class") == "StateReadout":
        module = StateReadout(**kwargs)
        features = "state-twice" if int(spec["n_features"]) == 2 * dynamics.state_size else "state"
    else:
        return None
    module.load_state_dict(state)
    ro = UnitReadout(module.double().eval(), dynamics, features, exp_link=bool(meta.get("exp_link", True)))
    if not ro.exp_link:  # traces: back to data units through fit.nc (needs the states the readout saw)
        if "states" not in folder.fit or features == "state-twice":
            return None
        raw = ro.raw(folder.fit["states"].transpose("trial", "time", "state").values)
        ro.scale, ro.offset = _affine(raw, folder.fit["rates"].transpose("trial", "time", ...).values.astype(float))
    return ro


def point_rates(folder: FitFolder, dynamics: Dynamics, xstar: np.ndarray) -> xr.DataArray | None:
    """(point, unit) predicted rates at the states ``xstar`` in ``fit.nc``'s ``rates`` units and unit coord;
    None where the folder has no unit readout (:func:`unit_readout`).

    The attr ``max_rel_error_on_fit`` says how well the readout reproduces ``fit.nc``'s ``rates`` from its
    ``states`` (max |difference| / max |rate|; NaN where the fit's rates are not a function of its states
    alone, e.g. a bidirectional echo-state readout).
    """
    ro = unit_readout(folder, dynamics)
    if ro is None:
        return None
    fit = folder.fit
    nd = convention.neuron_dim(fit)
    rates = fit["rates"].transpose("trial", "time", nd).values.astype(float)
    err = float("nan")
    if "states" in fit and ro.features != "state-twice":
        pred = ro(fit["states"].transpose("trial", "time", "state").values)
        ok = np.isfinite(rates)
        err = float(np.abs(pred - rates)[ok].max() / max(np.abs(rates[ok]).max(), 1e-12)) if ok.any() else err
    values = ro(xstar) if len(xstar) else np.zeros((0, rates.shape[-1]))
    return xr.DataArray(values, dims=("point", nd), coords={nd: fit[nd].values},
                        attrs={"units": str(fit["rates"].attrs.get("units", "")),
                               "long_name": "the fit's predicted rate of each unit at the point",
                               "readout": f"{type(ro.module).__name__} of the {ro.features} "
                                          f"({'exp' if ro.exp_link else 'identity + per-unit affine'} link)",
                               "max_rel_error_on_fit": err})


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
    folder = read_fit_dir(fit_dir)
    data = model_trajectories(folder, seed=seed)
    rng = np.random.default_rng(seed)
    noise = cfg.noise_scale * float(data.states.reshape(-1, data.states.shape[-1]).std(0).mean())
    x0, u0, cond_of = _starts(data, inputs, n_init, noise, rng, Path(fit_dir))
    log.info("fixed points of %s: %s model, %d starts (%s input) on %s, elapsed %.1f s", fit_dir,
             data.dynamics.family, len(x0), inputs, dev, time.perf_counter() - t0)
    torch.manual_seed(seed)
    fps = find_fixed_points(data.dynamics, torch.as_tensor(x0, device=dev), torch.as_tensor(u0, device=dev), config=cfg)

    ds = _dataset(fps, data, cfg, cond_of)
    rates = point_rates(folder, data.dynamics, fps.xstar)
    if rates is not None:
        ds["rates"] = rates
        err = rates.attrs["max_rel_error_on_fit"]
        log.info("fixed points of %s: unit rates at every point (%s)", fit_dir,
                 f"readout reproduces fit.nc's rates to {err:.2g}" if np.isfinite(err) else
                 "fit.nc's rates are not a function of its states alone, so the readout is not checked against them")
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
