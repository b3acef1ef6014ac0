"""Population geometry of the data and of a fitted model: PCA, jPCA and model-to-data alignment.

``cortexfit geometry IN.nc FIT_DIR OUT.nc`` (:func:`run`) reads an ``activity`` dataset and the ``fit.nc``
of a fit directory and writes a ``geometry`` dataset holding

* PCA of the condition-averaged smoothed rates and of the condition-averaged model states: variance
  explained per PC, participation-ratio dimensionality, and the top-3-PC trajectories of both;
* jPCA (:mod:`cortexfit.analysis.jpca`) of the data's condition averages -- R2 of the skew-symmetric and
  unconstrained fits, rotation frequencies, plane variance fractions, trajectories in each jPC plane -- and
  the same for the model states (``state_jpca_*``; NaN where the model's jPCA is not possible);
* alignment of model states to data (:mod:`cortexfit.analysis.alignment`): cross-validated CCA on single
  trials (with a trial-shuffled control), Procrustes similarity and DSA distance on condition averages
  (:mod:`cortexfit.analysis.similarity`), computed on the fit's **test trials and held-out units** -- what
  the model neither trained on nor read -- and, labelled ``*_in_sample``, on all trials and units.

Smoothing is a Gaussian kernel applied with the ``valid`` mask as a normalised convolution, so unobserved
bins are never read as "no spikes" (:mod:`cortexfit.analysis.population`).  Trials without a ``condition``
coordinate are each their own condition.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from cortexfit.analysis.alignment import DSA_VARIANCE, MIN_TEST_TRIALS, Alignments, align
from cortexfit.analysis.fitdir import TRAJECTORY_VARIABLES, read_fit_dir
from cortexfit.analysis.jpca import JPCAResult, jpca
from cortexfit.analysis.population import (
    condition_average,
    condition_labels,
    fill_nan,
    participation_ratio,
    pca_summary,
    smoothed_rates,
)
from cortexfit.analysis.similarity import DSA_VARIANTS
from cortexfit.core import convention
from cortexfit.core.errors import AnalysisError, ConfigError
from cortexfit.core.options import parse_options

log = logging.getLogger(__name__)

__all__ = ["DSA_VARIANCE", "MIN_TEST_TRIALS", "SCALARS", "GeometryConfig", "analyse", "condition_average",
           "jpca_from_activity", "participation_ratio", "pca_summary", "run", "smoothed_rates"]

SCALARS = convention.GEOMETRY_SCALARS


@dataclass(frozen=True, kw_only=True)
class GeometryConfig:
    """Options of :func:`run` (all have defaults; validated on construction).

    ``smooth_ms`` Gaussian kernel SD; ``window_ms`` jPCA window (start, stop) around the alignment event
    (default: the whole trial); ``n_pcs`` jPCA dims; ``soft_norm_hz`` jPCA soft normalisation (None: off);
    ``condition`` trial coordinate grouping trials; ``n_common_dims`` PCA dims for Procrustes and DSA;
    ``cca_components``/``cca_folds`` cross-validated CCA; ``dsa_delays``/``dsa_rank`` DSA delays and maximum
    DMD rank (capped at the PCs holding :data:`DSA_VARIANCE` of either system's variance); ``dsa_variant``
    one of :data:`~cortexfit.analysis.similarity.DSA_VARIANTS` (default: Ostrow et al. 2023).
    """

    smooth_ms: float = 20.0
    window_ms: tuple[float, float] | None = None
    n_pcs: int = 6
    soft_norm_hz: float | None = 5.0
    condition: str = "condition"
    n_common_dims: int = 10
    cca_components: int = 4
    cca_folds: int = 5
    dsa_delays: int = 5
    dsa_rank: int = 6
    dsa_variant: str = "ostrow"
    seed: int = 0

    def __post_init__(self) -> None:
        least = {"n_pcs": 2, "n_common_dims": 1, "cca_components": 1, "cca_folds": 2, "dsa_delays": 1, "dsa_rank": 1}
        problems = [f"{k}={getattr(self, k)!r} must be an integer >= {m}" for k, m in least.items()
                    if not isinstance(getattr(self, k), int) or getattr(self, k) < m]
        if not self.smooth_ms >= 0:
            problems.append(f"smooth_ms={self.smooth_ms!r} must be >= 0")
        if self.soft_norm_hz is not None and not self.soft_norm_hz >= 0:
            problems.append(f"soft_norm_hz={self.soft_norm_hz!r} must be >= 0 or None")
        if self.window_ms is not None and not (len(self.window_ms) == 2 and self.window_ms[0] < self.window_ms[1]):
            problems.append(f"window_ms={self.window_ms!r} must be (start, stop) with start < stop")
        if self.dsa_variant not in DSA_VARIANTS:
            problems.append(f"dsa_variant={self.dsa_variant!r} must be one of {sorted(DSA_VARIANTS)}")
        if problems:
            raise ConfigError("geometry config: " + "; ".join(problems))


def _window(times: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    lo, hi = (-np.inf, np.inf) if window is None else (window[0] - 1e-9, window[1] + 1e-9)
    keep = (times >= lo) & (times <= hi)
    if keep.sum() < 3:
        raise AnalysisError(f"jPCA window {window} s holds {keep.sum()} time bins (need >= 3)")
    return keep


def jpca_from_activity(
    ds: xr.Dataset,
    *,
    n_pcs: int = 6,
    smooth_ms: float = 20.0,
    window: tuple[float, float] | None = None,
    soft_norm: float | None = 5.0,
    condition: str = "condition",
) -> JPCAResult:
    """jPCA of an activity dataset: condition averaging, smoothing, soft normalisation, then :func:`jpca`.

    Parameters
    ----------
    ds : ``activity`` dataset (``condition`` trial coordinate; without it every trial is a condition).
    n_pcs, soft_norm : passed to :func:`~cortexfit.analysis.jpca.jpca` (``soft_norm`` in spikes/s).
    smooth_ms : Gaussian kernel SD in ms.
    window : (start, stop) in seconds of bin centres relative to the alignment event (default: all).
        Keep it ~2 kernel SDs inside the trial: smoothing flattens trajectories at the trial edges, which
        lowers the fitted frequencies there.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(60) * 0.01 + 0.005
    >>> phase = np.repeat(np.linspace(0, 2 * np.pi, 6, endpoint=False), 10)[:, None]
    >>> lat = np.stack([np.cos(4 * np.pi * t + phase), np.sin(4 * np.pi * t + phase)], -1)  # 2 Hz
    >>> embed = np.linalg.qr(rng.normal(size=(30, 2)))[0].T
    >>> counts = rng.poisson(1 + 1.5 * lat @ embed).astype("uint16")
    >>> ds = convention.new_activity(counts, time=t, bin_width_s=0.01)
    >>> ds = ds.assign_coords(condition=("trial", np.repeat(np.arange(6), 10)))
    >>> res = jpca_from_activity(ds, n_pcs=2, window=(0.1, 0.5))
    >>> bool(1.8 < res.frequencies_hz[0] < 2.2)
    True
    """
    avg = condition_average(ds, smooth_ms=smooth_ms, condition=condition)
    keep = _window(avg["time"].values, window)
    data = avg.values[:, keep]
    units_ok = np.all(np.isfinite(data), axis=(0, 1))
    if not units_ok.all():
        log.warning("jPCA: dropping %d units never observed in some condition/bin", int((~units_ok).sum()))
    return jpca(data[:, :, units_ok], dt=float(ds.attrs["bin_width_s"]), n_pcs=n_pcs, soft_norm=soft_norm)


# --------------------------------------------------------------------------------------------------- run
def _model_variable(fit: xr.Dataset) -> str:
    """The model's trajectory: ``states``, else ``factors``, else ``rates`` (baselines without states)."""
    name = next(v for v in TRAJECTORY_VARIABLES if v in fit.data_vars)
    if name != "states":
        log.warning("fit.nc has no 'states': comparing the model's '%s' with the data instead", name)
    return name


def _match(act: xr.Dataset, fit: xr.Dataset, fit_path: str) -> tuple[xr.Dataset, xr.Dataset]:
    """Restrict both to the trials and time bins they share."""
    trials = np.intersect1d(act["trial"].values, fit["trial"].values)
    if len(trials) < 2:
        raise AnalysisError(f"{fit_path}: shares {len(trials)} trial ids with the activity file (need >= 2)")
    act, fit = act.sel(trial=trials), fit.sel(trial=trials)
    bw = float(act.attrs["bin_width_s"])
    ta, tf = act["time"].values, fit["time"].values
    ia = np.searchsorted(ta, tf).clip(1, len(ta) - 1)
    ia = np.where(np.abs(ta[ia - 1] - tf) <= np.abs(ta[ia] - tf), ia - 1, ia)
    ok = np.abs(ta[ia] - tf) < bw / 2
    if ok.sum() < 3:
        raise AnalysisError(f"{fit_path}: shares {ok.sum()} time bins with the activity file (need >= 3)")
    return act.isel(time=ia[ok]), fit.isel(time=np.flatnonzero(ok)).assign_coords(time=ta[ia[ok]])


@dataclass
class StateJPCA:
    """jPCA of the model's condition-averaged states, padded to the data's number of planes (NaN: none)."""

    r2_skew: float
    r2_full: float
    frequencies_hz: np.ndarray
    plane_variance_fraction: np.ndarray
    projections: np.ndarray  # (condition, jpca_time, jpc_plane, jpc_axis)


def _state_jpca(states_avg: np.ndarray, keep: np.ndarray, dt: float, n_pcs: int, n_planes: int) -> StateJPCA:
    """jPCA of the model's condition-averaged states in the data's jPCA window (NaN where it fails)."""
    k = min(n_pcs, states_avg.shape[2]) // 2 * 2
    try:
        res = jpca(states_avg[:, keep], dt=dt, n_pcs=k)
    except (AnalysisError, ValueError) as exc:
        log.warning("jPCA of model states failed (%s): storing NaN", exc)
        nan = np.full(n_planes, np.nan)
        return StateJPCA(float("nan"), float("nan"), nan, nan.copy(),
                         np.full((states_avg.shape[0], int(keep.sum()), n_planes, 2), np.nan))
    return StateJPCA(res.r2_skew, res.r2_full, _pad(res.frequencies_hz, n_planes),
                     _pad(res.plane_variance_fraction, n_planes), _pad(res.projections, n_planes, axis=2))


def _pad(x: np.ndarray, n: int, axis: int = -1) -> np.ndarray:
    """First ``n`` entries of ``x`` along ``axis``, NaN-padded if shorter."""
    x = np.take(x, np.arange(min(n, x.shape[axis])), axis=axis)
    width = [(0, 0)] * x.ndim
    width[axis] = (0, n - x.shape[axis])
    return np.pad(x, width, constant_values=np.nan)


@threadpool_limits.wrap(limits=1)  # many small SVDs/lstsq: BLAS threads only add contention
def analyse(act: xr.Dataset, fit: xr.Dataset, cfg: GeometryConfig, *, fit_path: str = "fit.nc") -> xr.Dataset:
    """Compute the geometry dataset (without provenance attrs) from in-memory activity and fit datasets.

    Examples
    --------
    >>> geo = analyse(convention.read_dataset("activity.nc"), convention.read_dataset("fit/fit.nc"),
    ...               GeometryConfig(window_ms=(-50, 350)))  # doctest: +SKIP
    >>> float(geo.jpca_frequency_hz[0]), geo.attrs["cca_cv_mean_corr"]  # doctest: +SKIP
    """
    act, fit = _match(act, fit, fit_path)
    bw = float(act.attrs["bin_width_s"])
    labels, source = condition_labels(act, cfg.condition)
    conds = np.asarray(list(dict.fromkeys(labels.tolist())))
    if len(conds) < 2:
        raise AnalysisError(f"{act.encoding.get('source', 'activity')}: needs >= 2 conditions, found {len(conds)}")
    avg_data = fill_nan(condition_average(act, smooth_ms=cfg.smooth_ms, condition=cfg.condition).values)
    model_var = _model_variable(fit)
    states = fit[model_var].transpose("trial", "time", ...).values.astype(float)
    states_avg = np.stack([states[labels == c].mean(axis=0) for c in conds])
    data_ratio, data_pr, data_scores = pca_summary(avg_data)
    state_ratio, state_pr, state_scores = pca_summary(states_avg)

    window = None if cfg.window_ms is None else (cfg.window_ms[0] / 1000, cfg.window_ms[1] / 1000)
    times = act["time"].values
    keep = _window(times, window)
    jp = jpca_from_activity(act, n_pcs=cfg.n_pcs, smooth_ms=cfg.smooth_ms, window=window,
                            soft_norm=cfg.soft_norm_hz, condition=cfg.condition)
    n_planes = jp.projections.shape[2]
    sj = _state_jpca(states_avg, keep, bw, cfg.n_pcs, n_planes)
    al_vars, al_attrs = _alignment_fields(align(act, fit, states, cfg))

    jpca_dims = ("condition", "jpca_time", "jpc_plane", "jpc_axis")
    out = xr.Dataset(
        {
            "data_variance_explained": ("data_pc", data_ratio),
            "state_variance_explained": ("state_pc", state_ratio),
            "data_pc_projection": (("condition", "time", "traj_pc"), _pad(data_scores, 3)),
            "state_pc_projection": (("condition", "time", "traj_pc"), _pad(state_scores, 3)),
            "jpca_projection": (jpca_dims, jp.projections),
            "jpca_frequency_hz": ("jpc_plane", jp.frequencies_hz),
            "jpca_full_frequency_hz": ("jpc_plane", jp.full_frequencies_hz),
            "jpca_plane_variance_fraction": ("jpc_plane", jp.plane_variance_fraction),
            "state_jpca_frequency_hz": ("jpc_plane", sj.frequencies_hz),
            "state_jpca_plane_variance_fraction": ("jpc_plane", sj.plane_variance_fraction),
            "jpca_pc_variance_explained": ("jpc_pc", jp.pc_variance_explained),
            "jpca_m_skew": (("jpc_pc", "jpc_pc_to"), jp.m_skew),
            "jpca_m_full": (("jpc_pc", "jpc_pc_to"), jp.m_full),
            "state_jpca_projection": (jpca_dims, sj.projections),
            **al_vars,
        },
        coords={
            "condition": conds, "time": times, "jpca_time": times[keep], "jpc_plane": np.arange(n_planes),
            "jpc_axis": ["jPC1", "jPC2"], "data_pc": np.arange(len(data_ratio)),
            "state_pc": np.arange(len(state_ratio)), "cca_component": np.arange(cfg.cca_components),
        },
    )
    units = {"time": "s", "jpca_time": "s", "jpca_frequency_hz": "Hz", "jpca_full_frequency_hz": "Hz",
             "state_jpca_frequency_hz": "Hz", "jpca_m_skew": "1/s", "jpca_m_full": "1/s"}
    for name, unit in units.items():
        out[name].attrs["units"] = unit
    out.attrs.update(
        conditions_from=source, model_variable=model_var, n_trials=int(act.sizes["trial"]),
        data_participation_ratio=data_pr, state_participation_ratio=state_pr,
        jpca_r2_skew=jp.r2_skew, jpca_r2_full=jp.r2_full,
        jpca_window_start_s=float(times[keep][0]), jpca_window_stop_s=float(times[keep][-1]),
        state_jpca_r2_skew=sj.r2_skew, state_jpca_r2_full=sj.r2_full,
        **al_attrs,
    )
    return out


def _alignment_fields(al: Alignments) -> tuple[dict[str, Any], dict[str, Any]]:
    """Variables and attrs of the geometry dataset from :func:`~cortexfit.analysis.alignment.align`.

    Unsuffixed names are the out-of-sample scores (test trials x held-out units); ``*_in_sample`` the
    scores on all trials and units, which include the activity the model's encoder read.
    """
    out, ins = al.heldout, al.in_sample
    variables = {"cca_corr": ("cca_component", out.cca.per_component),
                 "cca_corr_shuffled": ("cca_component", al.shuffled.per_component),
                 "cca_corr_in_sample": ("cca_component", ins.cca.per_component)}
    attrs = {
        "alignment_scope": f"test trials ({al.n_test_trials}) x held-out units ({al.n_heldout_units})",
        "alignment_note": al.note, "alignment_n_test_trials": al.n_test_trials,
        "alignment_n_heldout_units": al.n_heldout_units,
        "cca_cv_mean_corr": out.cca.mean, "cca_cv_mean_corr_shuffled": al.shuffled.mean,
        "procrustes_similarity": out.procrustes, "dsa_distance": out.dsa, "dsa_rank": out.dsa_rank,
        "cca_cv_mean_corr_in_sample": ins.cca.mean, "procrustes_similarity_in_sample": ins.procrustes,
        "dsa_distance_in_sample": ins.dsa, "dsa_rank_in_sample": ins.dsa_rank,
    }
    return variables, attrs


def run(activity: str | Path, fit_dir: str | Path, out: str | Path, **options: Any) -> Path:
    """Geometry analysis of one fit: read ``activity`` and ``fit_dir/fit.nc``, write ``out`` (kind geometry).

    ``options`` are :class:`GeometryConfig` fields (e.g. ``window_ms=(-50, 350)``).

    Examples
    --------
    >>> run("activity.nc", "fits/rate", "geometry.nc")  # doctest: +SKIP
    """
    cfg = parse_options(GeometryConfig, options, where="geometry")
    folder = read_fit_dir(fit_dir)
    act = convention.read_dataset(activity, kind="activity")
    ds = analyse(act, folder.fit, cfg, fit_path=str(folder.path / "fit.nc"))
    ds.attrs.update(convention.base_attrs("geometry"))
    ds.attrs.update(activity_file=str(activity), fit_dir=str(fit_dir),
                    config=json.dumps(dataclasses.asdict(cfg), sort_keys=True))
    return convention.write_dataset(ds, out, kind="geometry")
