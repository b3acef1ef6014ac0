"""Section 5 of a dataset report: fixed points in each model's own state PCs and in the **data's** axes.

The first figure (:func:`cortexfit.report.sections.fixed_points`) draws every RNN's points in the PCs of its own
states.  The second puts everything in one space, the data's: a PCA (:class:`sklearn.decomposition.PCA`)
fitted on the recording's condition-averaged smoothed rates -- the same rates the geometry stage uses
(:func:`cortexfit.analysis.population.condition_average`, Gaussian ``smooth_ms`` and ``condition`` taken from
a fit's ``geometry.nc`` config, else 20 ms and ``condition``; trials without conditions are their own) -- into
whose top PCs are projected

* the data's condition-averaged trajectories,
* each model's condition-averaged predicted rates (``fit.nc`` ``rates``, averaged over the same conditions),
* each model's fixed points' predicted rates (``fixed_points.nc`` ``rates``, written by ``cortexfit
  fixed-points`` since it stores them; older files are only drawn in the first figure, with a note), and
* for a simulated flip-flop, the teacher's fixed points (``teacher_fixed_points.nc`` beside ``activity.nc``)
  read out through the simulation's own unit readout (the truth file's ``unit_readout`` and
  ``log_baseline``: ``min(exp(log_baseline + C h), max_rate_hz)``).

**Scale:** everything is in spikes per second (Hz), not transformed: the data's smoothed rates are Hz, the
fits' rates (counts per bin) and fixed-point rates are divided by the bin width, the teacher's are Hz.  (For
imaging traces the data's and the models' values are divided by the bin width alike, so they stay comparable.)
Units a model does not predict count as the data's mean (they add nothing to the projection).

Examples
--------
>>> import numpy as np
>>> from cortexfit.core import convention
>>> act = convention.new_activity(np.random.default_rng(0).poisson(2, (6, 20, 4)).astype("uint16"),
...                               time=np.arange(20) * 0.01 + 0.005, bin_width_s=0.01)
>>> axes = data_axes(act)
>>> axes.trajectories.shape, axes.project(np.ones((2, 4)) * 200, act["unit"].values).shape
((6, 20, 3), (2, 3))
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from cortexfit.core import convention
from cortexfit.report import caveats as C
from cortexfit.report import figures as F
from cortexfit.report import html as H

if TYPE_CHECKING:
    from sklearn.decomposition import PCA

    from cortexfit.report import DatasetResults

log = logging.getLogger(__name__)

N_PCS = 3
TEACHER_FILE = "teacher_fixed_points.nc"


@dataclass
class DataAxes:
    """The data's PCA and what it was fitted on.

    ``units`` is the activity's unit coordinate, ``labels`` each trial's condition (by trial id in
    ``trials``), ``conditions`` the condition names, ``trajectories`` the data's condition averages
    projected, (condition, time, pc).
    """

    pca: PCA
    units: np.ndarray
    trials: np.ndarray
    labels: np.ndarray
    conditions: np.ndarray
    trajectories: np.ndarray
    bin_width_s: float
    smooth_ms: float

    def project(self, rates_hz: np.ndarray, units: np.ndarray) -> np.ndarray:
        """Project (..., unit) rates in Hz whose last axis follows ``units`` (units not recorded are dropped,
        recorded units missing there or NaN are set to the data's mean)."""
        rates_hz = np.asarray(rates_hz, dtype=float)
        where = {u: i for i, u in enumerate(np.asarray(units).tolist())}
        full = np.broadcast_to(self.pca.mean_, (*rates_hz.shape[:-1], len(self.units))).copy()
        for j, u in enumerate(self.units.tolist()):
            if u in where:
                full[..., j] = rates_hz[..., where[u]]
        full = np.where(np.isfinite(full), full, self.pca.mean_)
        flat = full.reshape(-1, full.shape[-1])
        return self.pca.transform(flat).reshape(*rates_hz.shape[:-1], -1) if len(flat) else \
            np.zeros((*rates_hz.shape[:-1], self.pca.n_components_))

    def condition_average(self, rates: xr.DataArray) -> np.ndarray:
        """(condition, time, unit) mean over each condition's trials of a (trial, time, unit) array (trials
        matched by id; conditions without a trial there are NaN)."""
        label_of = dict(zip(self.trials.tolist(), self.labels.tolist()))
        values = rates.values.astype(float)
        lab = np.array([label_of.get(t, None) for t in rates["trial"].values.tolist()], dtype=object)
        out = np.full((len(self.conditions), *values.shape[1:]), np.nan)
        for i, c in enumerate(self.conditions.tolist()):
            m = lab == c
            if m.any():
                out[i] = np.nanmean(values[m], axis=0)
        return out


def geometry_options(data: DatasetResults) -> dict[str, Any]:
    """``smooth_ms`` and ``condition`` of the first fit's ``geometry.nc`` (the defaults of ``cortexfit
    geometry`` where there is none)."""
    opts: dict[str, Any] = {"smooth_ms": 20.0, "condition": "condition"}
    for f in data.fits:
        geo = f.analyses.get("geometry")
        if geo is not None:
            cfg = convention.config_of(geo)
            opts.update({k: cfg[k] for k in opts if k in cfg})
            break
    return opts


def data_axes(activity: xr.Dataset, *, smooth_ms: float = 20.0, condition: str = "condition") -> DataAxes:
    """The PCA of the data's condition-averaged smoothed rates (Hz; unobserved bins filled as
    :func:`cortexfit.analysis.population.fill_nan` does for the geometry stage)."""
    from sklearn.decomposition import PCA

    from cortexfit.analysis.population import condition_average, condition_labels, fill_nan

    labels, _ = condition_labels(activity, condition)
    avg = condition_average(activity, smooth_ms=smooth_ms, condition=condition)
    rates = fill_nan(avg.values)
    flat = rates.reshape(-1, rates.shape[-1])
    pca = PCA(n_components=min(N_PCS, *flat.shape), svd_solver="full").fit(flat)
    nd = convention.neuron_dim(activity)
    return DataAxes(pca=pca, units=np.asarray(activity[nd].values), trials=np.asarray(activity["trial"].values),
                    labels=np.asarray(labels), conditions=np.asarray(avg["condition"].values),
                    trajectories=pca.transform(flat).reshape(*rates.shape[:2], -1),
                    bin_width_s=float(activity.attrs["bin_width_s"]), smooth_ms=float(smooth_ms))


# --------------------------------------------------------------------------------------------- teacher
def truth_file(data: DatasetResults) -> Path | None:
    """The simulation's truth file: a fit's ``truth.json`` names it, else it lies beside the NWB file the
    activity came from (``OUT.nwb`` -> ``OUT.truth.nc``); None when neither exists."""
    named = [f.truth.get("truth_file") for f in data.fits if f.truth]
    source = data.activity.attrs.get("source_file")
    guesses = [Path(str(p)) for p in named if p] + ([Path(str(source)).with_suffix(".truth.nc")] if source else [])
    return next((p for p in guesses if p.is_file()), None)


def teacher_rates(truth: xr.Dataset, states: np.ndarray) -> np.ndarray | None:
    """(point, unit) rates in Hz of the recorded units at teacher states: the simulation's readout
    ``min(exp(log_baseline + states @ unit_readout.T), max_rate_hz)``; None when the truth has no unit readout
    of states of that size.

    Examples
    --------
    >>> tr = xr.Dataset({"unit_readout": (("unit", "latent"), np.eye(2)), "log_baseline": ("unit", [0.0, 1.0])})
    >>> teacher_rates(tr, np.zeros((1, 2))).round(3).tolist()
    [[1.0, 2.718]]
    """
    if "unit_readout" not in truth or "log_baseline" not in truth:
        return None
    C = np.asarray(truth["unit_readout"].transpose("unit", ...).values, dtype=float)
    if np.ndim(states) != 2 or np.shape(states)[1] != C.shape[1]:
        return None
    from cortexfit.simulate.recording import capped_rates

    try:
        cap = float(json.loads(truth.attrs.get("config", "{}")).get("max_rate_hz", np.inf))
    except (TypeError, ValueError):
        cap = np.inf
    return capped_rates(states, C, truth["log_baseline"].values.astype(float), cap)


def teacher_panel(data: DatasetResults, axes: DataAxes) -> tuple[dict | None, str | None]:
    """(the teacher's panel or None, a note on why it is missing or None when drawn or not applicable)."""
    path = data.path / TEACHER_FILE
    if not path.is_file():
        return None, None
    fp = convention.read_dataset(path, "fixed_points")
    tpath = truth_file(data)
    if tpath is None:
        return None, f"{TEACHER_FILE} present but no truth file found: the teacher's points are not drawn."
    truth = convention.read_dataset(tpath, "truth")
    states = fp["hidden"].values if "hidden" in fp else fp["xstar"].values
    rates = teacher_rates(truth, np.asarray(states, dtype=float))
    if rates is None:
        return None, f"{tpath} has no unit readout of the teacher's states: its points are not drawn."
    units = np.asarray(truth["unit"].values)
    if not np.isin(axes.units, units).all() and len(units) == len(axes.units):
        units = axes.units  # same units, other ids: by position
    return {"title": f"teacher: {int((fp['label'].values.astype(str) == 'stable').sum())} stable",
            "points": axes.project(rates, units), "label": fp["label"].values.astype(str),
            "point_type": fp["point_type"].values.astype(str), "model": None}, None


# ------------------------------------------------------------------------------------------- section
def model_panels(data: DatasetResults, axes: DataAxes) -> tuple[list[dict], list[str]]:
    """Panels of the fits whose ``fixed_points.nc`` holds ``rates``, and the names of those that do not."""
    panels, old = [], []
    for f in data.fits:
        fp = f.analyses.get("fixed_points")
        if fp is None:
            continue
        if "rates" not in fp:
            old.append(f.name)
            continue
        nd = convention.neuron_dim(fp)
        model = None
        if f.folder.has_fit:
            fit = f.folder.fit
            model = axes.project(axes.condition_average(fit["rates"].transpose("trial", "time", nd)) / axes.bin_width_s,
                                 fit[nd].values)
        panels.append({"title": f"{f.name}: {fp.attrs.get('n_stable', '?')} stable" + C.label(data.caveats, f.name),
                       "points": axes.project(fp["rates"].values / axes.bin_width_s, fp[nd].values),
                       "label": fp["label"].values.astype(str), "point_type": fp["point_type"].values.astype(str),
                       "model": model})
    return panels, old


def in_data_axes(data: DatasetResults, sec: H.Section) -> None:
    """The second figure of section 5: models' and teacher's fixed points in the data's PCs (Hz)."""
    fps = [f.analyses["fixed_points"] for f in data.fits if "fixed_points" in f.analyses]
    old = [f.name for f in data.fits if "fixed_points" in f.analyses and "rates" not in f.analyses["fixed_points"]]
    if old:
        sec.add(H.note(f"No unit rates in fixed_points.nc of {', '.join(old)} (written before `cortexfit "
                       "fixed-points` stored them): drawn in their own state PCs only."))
    if not any("rates" in fp for fp in fps) and not (data.path / TEACHER_FILE).is_file():
        return  # nothing to draw in the data's axes
    opts = geometry_options(data)
    if data.activity.sizes[convention.neuron_dim(data.activity)] < 2:
        sec.add(H.note("Fewer than 2 units: no data PCs to draw the fixed points in."))
        return
    axes = data_axes(data.activity, **opts)
    panels = model_panels(data, axes)[0]
    teacher, why = teacher_panel(data, axes)
    if teacher is not None:
        panels.append(teacher)
    if panels and axes.pca.n_components_ >= 2:
        evr = axes.pca.explained_variance_ratio_
        labels = {"xlabel": f"data PC1 ({100 * evr[0]:.0f}%) (Hz)", "ylabel": f"data PC2 ({100 * evr[1]:.0f}%)"}
        fig = F.fixed_points([{**p, "traj": axes.trajectories, "traj_label": "data", **labels} for p in panels])
        sec.add(H.image(F.to_base64(fig), "fixed points in the data's axes",
                        f"The same points in the data's own axes: PCA of the recording's condition-averaged rates "
                        f"(smoothed {opts['smooth_ms']:g} ms, spikes/s) with the data's trajectories (grey), each "
                        "model's condition-averaged predicted rates (dashed) and its fixed points' predicted rates"
                        + (", and the teacher network's fixed points read out through the simulation's units"
                           if teacher is not None else "") + "; all in Hz, none transformed."))
    if why:
        sec.add(H.note(why))


def section(data: DatasetResults, sec: H.Section) -> None:
    """5. Fixed points: in each model's state PCs (:func:`cortexfit.report.sections.fixed_points`), then in the
    data's axes (:func:`in_data_axes`; a failure there is a note, the first figure stays)."""
    from cortexfit.report import sections as S

    S.fixed_points(data, sec)
    try:
        in_data_axes(data, sec)
    except Exception as exc:
        log.warning("report %s: fixed points in the data's axes failed", data.name, exc_info=True)
        sec.add(H.note(f"Fixed points in the data's axes could not be drawn ({type(exc).__name__}: {exc})."))
