"""The seven sections of a dataset report, each built from a :class:`~cortexfit.report.DatasetResults`.

Each builder ``build(data, section)`` appends HTML parts (tables, embedded figures, notes) to ``section``;
what cannot be drawn (missing file, too little data) becomes a note.  :func:`cortexfit.report.dataset_page`
calls them in order.

Examples
--------
>>> from cortexfit.report import html, load_dataset
>>> sec = html.Section("Models")
>>> models(load_dataset("results/mc_maze_small"), sec)  # doctest: +SKIP
>>> "<table>" in "".join(sec.parts)  # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from cortexfit.analysis.fitdir import ANALYSES
from cortexfit.fit import registry
from cortexfit.report import caveats as C
from cortexfit.report import figures as F
from cortexfit.report import html as H

if TYPE_CHECKING:
    from cortexfit.report import DatasetResults, ModelResults

SMOOTH_MS = 20.0
MAX_TRAJ = 24
MAX_SINGLE = 8  # single trials drawn when there are no conditions


def _is_baseline(fit: ModelResults) -> bool:
    """Whether the fit is of a registry model without dynamics (an NLB baseline)."""
    return fit.folder.model_name in registry.baselines()


def _img(fig, alt: str, caption: str | None = None) -> str:
    return H.image(F.to_base64(fig), alt, caption)


def _neuron(ds: xr.Dataset) -> str:
    return "roi" if "roi" in ds.sizes and "unit" not in ds.sizes else "unit"


def _labels(ds: xr.Dataset | xr.DataArray) -> np.ndarray | None:
    """Per-trial condition labels as strings, or None when the trials have no ``condition``."""
    if "condition" in ds.coords and ds["condition"].dims == ("trial",):
        return np.asarray(ds["condition"].values).astype(str)
    return None


def _conditions(ds: xr.Dataset | xr.DataArray) -> tuple[np.ndarray, list[str]]:
    """(label per trial, condition names to draw); without conditions each trial is its own (first few)."""
    labels = _labels(ds)
    if labels is None:
        labels = np.asarray(ds["trial"].values).astype(str)  # as cortexfit.analysis.geometry does
        return labels, list(dict.fromkeys(labels.tolist()))[:MAX_SINGLE]
    return labels, list(dict.fromkeys(labels.tolist()))[:MAX_TRAJ]


def _cond_average(values: np.ndarray, labels: np.ndarray, names: list[str]) -> np.ndarray:
    """(trial, time, d) -> (condition, time, d) NaN-aware means; NaN for a condition with no trials."""
    out = np.full((len(names), *values.shape[1:]), np.nan)
    for i, name in enumerate(names):
        m = labels == name
        if m.any():
            with _quiet():
                out[i] = np.nanmean(values[m], axis=0)
    return out


@contextlib.contextmanager
def _quiet():
    """Silence numpy's all-NaN RuntimeWarnings (NaN results are handled by the plots)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _time_ms(ds: xr.Dataset) -> tuple[np.ndarray, str]:
    return np.asarray(ds["time"].values, dtype=float) * 1000, f"time from {ds.attrs.get('align_event', 'event')} (ms)"


# ------------------------------------------------------------------------------------ 1. the recording
def recording(data: DatasetResults, sec: H.Section) -> None:
    """1. Facts table, units per area, rate histogram, raster of example trials, PSTHs, behavior."""
    act = data.activity
    nd = _neuron(act)
    bw = float(act.attrs["bin_width_s"])
    spikes = act.attrs.get("signal") == "spike_counts"
    counts = act["activity"].transpose("trial", "time", nd).values
    valid = act["valid"].transpose("trial", "time", nd).values.astype(bool)
    areas = (np.asarray(act["area"].values).astype(str) if "area" in act.coords and act["area"].dims == (nd,)
             else np.full(act.sizes[nd], "unknown"))
    labels = _labels(act)
    t_ms, xlabel = _time_ms(act)
    n_obs = valid.sum(axis=(0, 1))
    total = sum(np.where(valid[i:i + 256], counts[i:i + 256], 0).sum(axis=(0, 1), dtype=float)
                for i in range(0, len(counts), 256))  # in chunks: no float copy of a large recording
    mean = np.where(n_obs > 0, total / np.maximum(n_obs, 1), np.nan)
    rate = mean / bw if spikes else mean
    start, stop = (H.fmt(float(act.attrs.get(k, np.nan)) * 1000, 0) for k in ("window_start_s", "window_stop_s"))
    facts = [
        ("source file", act.attrs.get("source_file", "")), ("signal", act.attrs.get("signal", "")),
        ("trials", act.sizes["trial"]), (f"{nd}s", act.sizes[nd]),
        ("areas", ", ".join(dict.fromkeys(areas.tolist()))),
        ("conditions", len(set(labels.tolist())) if labels is not None else "none (no condition column)"),
        ("time bins", f"{act.sizes['time']} x {bw * 1000:g} ms"),
        ("window", f"{start} to {stop} ms around {act.attrs.get('align_event')}"),
        ("observed bins", f"{100 * valid.mean():.1f} %" if valid.size else H.MISSING),
        ("mean rate", f"{np.nanmean(rate):.2f} Hz" if spikes and np.isfinite(rate).any() else H.MISSING),
    ]
    names, per_area = np.unique(areas, return_counts=True)
    sec.add(H.row(
        H.table(["property", "value"], [[k, v] for k, v in facts]),
        _img(F.units_per_area(names.tolist(), per_area.tolist(), neuron=nd), f"{nd}s per area"),
        _img(F.rate_histogram(rate, xlabel="mean firing rate (Hz)" if spikes else "mean activity (a.u.)"),
             "rate distribution", f"Mean over observed bins of all trials, one value per {nd}.")))
    order = np.argsort(areas, kind="stable")
    if labels is not None:
        picks = [int(np.flatnonzero(labels == c)[0]) for c in list(dict.fromkeys(labels.tolist()))[:3]]
    else:
        picks = list(range(min(3, act.sizes["trial"])))
    trials = [np.where(valid[i], counts[i].astype(float), np.nan)[:, order] for i in picks]
    titles = [f"trial {act['trial'].values[i]}" + (f" ({labels[i]})" if labels is not None else "") for i in picks]
    row_areas = [str(a) for a in areas[order]]
    sec.add(_img(F.raster(trials, titles, t_ms, row_areas, xlabel=xlabel, signal=str(act.attrs.get("signal"))),
                 "raster of example trials", f"Binned activity of example trials, {nd}s sorted by area "
                 "(area boundaries in blue); pink bins were not observed."))
    _psth(act, sec, nd, spikes, t_ms, xlabel)
    _behavior(act, sec, t_ms, xlabel)


def _psth(act: xr.Dataset, sec: H.Section, nd: str, spikes: bool, t_ms: np.ndarray, xlabel: str) -> None:
    from cortexfit.analysis.geometry import condition_average

    grouped = act if _labels(act) is not None else act.assign_coords(condition=("trial", ["all"] * act.sizes["trial"]))
    avg = condition_average(grouped, smooth_ms=SMOOTH_MS)
    values = avg.values if spikes else avg.values * float(act.attrs["bin_width_s"])
    values = values[:MAX_TRAJ]
    with _quiet():
        score = np.nan_to_num(np.nanvar(values, axis=(0, 1)), nan=-1.0)
    top = np.argsort(-score, kind="stable")[:6]
    units = act[nd].values
    area = act["area"].values if "area" in act.coords and act["area"].dims == (nd,) else None
    titles = [f"{nd} {units[j]}" + (f" ({area[j]})" if area is not None else "") for j in top]
    conds = [str(c) for c in avg["condition"].values[:MAX_TRAJ]]
    sec.add(_img(F.psth_grid(t_ms, values[:, :, top], conds, titles, xlabel=xlabel,
                             ylabel="rate (Hz)" if spikes else "activity (a.u.)"),
                 "PSTHs", f"Condition-averaged rates (Gaussian smoothing, SD {SMOOTH_MS:g} ms) of the {len(top)} "
                 f"{nd}s with the most variance across conditions and time; dotted line: alignment event."))


def _behavior(act: xr.Dataset, sec: H.Section, t_ms: np.ndarray, xlabel: str) -> None:
    if "behavior" not in act.data_vars:
        sec.add(H.note("No behavior in this dataset: behavior plots and velocity decoding (vel R²) are skipped."))
        return
    beh = act["behavior"].transpose("trial", "time", "behavior_channel")
    channels = [str(c) for c in beh["behavior_channel"].values[:6]]
    values = beh.values[:, :, : len(channels)].astype(float)
    if _labels(act) is not None:
        labels, names = _conditions(act)
        caption = "Condition-averaged behavior channels (first six)."
    else:
        labels = np.asarray(act["trial"].values).astype(str)
        names = labels[:3].tolist()
        caption = "Behavior channels (first six) of the first trials (no condition column to average over)."
    avg = _cond_average(values, labels, names)
    sec.add(_img(F.behavior_traces(t_ms, avg, names, channels, xlabel=xlabel), "behavior", caption))


# ------------------------------------------------------------------------------------------ 2. models
COLUMNS = (("co-bps", "co_bps", 3), ("fp-bps", "fp_bps", 3), ("vel R²", "vel_r2", 3), ("PSTH R²", "psth_r2", 3),
           ("train time (s)", "train_seconds", 1), ("parameters", "n_params", 0), ("epochs", "epochs", 0))


def models(data: DatasetResults, sec: H.Section) -> None:
    """2. The metrics of every fit with metrics.json, best co-bps first and in bold."""
    scored = [f for f in data.fits if f.metrics is not None]
    for text in data.notes:
        sec.add(H.note(text))
    for f in data.fits:
        if f.metrics is None:
            sec.add(H.note(f"{f.name}: {'; '.join(f.notes)}; left out of the table."))
    if not scored:
        sec.add(H.note("No fits with metrics.json in fits/ yet."))
        return
    best = data.best
    rows, bold = [], []
    for i, f in enumerate(scored):
        m = f.metrics or {}
        kind = "baseline" if _is_baseline(f) else str(m.get("mode", ""))
        rows.append([f.name, kind, *[_cell(m.get(key), d) for _, key, d in COLUMNS], m.get("device") or H.MISSING,
                     ", ".join(k for k in ANALYSES if k in f.analyses) or H.MISSING,
                     C.yes_no(data.caveats.beats_null.get(f.name)), C.yes_no(data.caveats.beats_smoothing.get(f.name))])
        if f is best:
            bold.append(i)
    header = ["model", "mode", *[c for c, _, _ in COLUMNS], "device", "analyses", "beats null", "beats smoothing"]
    sec.add(H.table(header, rows, bold_rows=bold, numeric=range(2, 2 + len(COLUMNS)),
                    caption="Sorted by co-bps (bits/spike of held-out units, higher is better); bold: best co-bps. "
                            "fp-bps: forward prediction; vel R²: velocity decoding; PSTH R²: condition-averaged "
                            "rates; –: not applicable. beats null: co-bps > 0 (better than each held-out unit's "
                            "mean rate); beats smoothing: co-bps above the smoothing baseline's."))


def _cell(value, digits: int) -> str:
    if digits == 0 and value is not None:
        try:
            return str(int(value))
        except (TypeError, ValueError):
            return H.MISSING
    return H.fmt(value, digits)


# -------------------------------------------------------------------------------- 3. training curves
def training(data: DatasetResults, sec: H.Section) -> None:
    """3. Train and validation loss vs epoch from each fit's history.csv."""
    hist = {f.name: f.history for f in data.fits if f.history is not None}
    without = [f.name for f in data.fits if f.history is None]
    if hist:
        sec.add(_img(F.training_curves(hist), "training curves",
                     "Training (solid) and validation (dashed) loss per epoch."))
    if without:
        sec.add(H.note(f"No training curve for {', '.join(without)} (closed-form fit or no history.csv)."))


# ---------------------------------------------------------------------------- 4. latent trajectories
def _pad(x: np.ndarray, n: int) -> np.ndarray:
    """First ``n`` entries of the last axis, zero-padded."""
    x = np.asarray(x, dtype=float)[..., :n]
    return np.concatenate([x, np.zeros((*x.shape[:-1], n - x.shape[-1]))], axis=-1) if x.shape[-1] < n else x


def _pct(r: np.ndarray, i: int) -> str:
    return f" ({100 * r[i]:.0f} %)" if i < len(r) and np.isfinite(r[i]) else ""


def _planes(geo: xr.Dataset, who: str, names: list[str], title: str) -> list[tuple[str, np.ndarray | None, str, str]]:
    """The PCA and first-jPCA-plane panels of ``who`` ("data" or "state") from a geometry dataset."""
    pcs = _reorder(geo[f"{who}_pc_projection"], names)[..., :2]
    ratio = geo[f"{who}_variance_explained"].values
    jp = _reorder(geo["jpca_projection" if who == "data" else "state_jpca_projection"].isel(jpc_plane=0), names)
    prefix = "" if who == "data" else "state_"
    freq = float(geo[f"{prefix}jpca_frequency_hz"].values[0])
    r2 = float(geo.attrs.get(f"{prefix}jpca_r2_skew", np.nan))
    unit = " (Hz)" if who == "data" else ""
    return [(f"{title}: PCA", pcs, "PC1" + _pct(ratio, 0) + unit, "PC2" + _pct(ratio, 1) + unit),
            (f"{title}: jPCA plane 1, {freq:.2f} Hz, R² {r2:.2f}", jp, "jPC1" + (" (a.u.)" if unit else ""),
             "jPC2" + (" (a.u.)" if unit else ""))]


def latents(data: DatasetResults, sec: H.Section) -> None:
    """4. Condition-averaged trajectories of the data and of each model in the PCA and first jPCA planes,
    as ``geometry.nc`` stores them (nothing is recomputed here)."""
    _, names = _conditions(data.activity)
    with_geo = [f for f in data.fits if "geometry" in f.analyses]
    if not with_geo:
        sec.add(H.note("No geometry.nc for any model: run `cortexfit geometry` to draw the latent trajectories."))
        return
    panels = _planes(with_geo[0].analyses["geometry"], "data", names, "data")
    for f in with_geo:
        geo = f.analyses["geometry"]
        panels += _planes(geo, "state", names, f"{f.name} {geo.attrs['model_variable']}"
                          + C.label(data.caveats, f.name))
    sec.add(_img(F.trajectories(panels, names, ncols=2, max_traj=MAX_TRAJ,
                                legend_title="condition" if _labels(data.activity) is not None else "trial"),
                 "latent trajectories",
                 "Condition-averaged trajectories (a dot marks the first bin) of the data's smoothed rates and of "
                 "each model's states (else factors, else rates) in their top two PCs (left, % variance) and in "
                 "the first jPCA plane (right, rotation frequency and R² of the skew-symmetric fit), from each "
                 "fit's geometry.nc (jPCA in its window)."))
    if _labels(data.activity) is None:
        sec.add(H.note(f"No condition column: single trials are shown (first {len(names)}), not averages."))
    _missing_note(data, sec, "geometry", "latent trajectories")


def _reorder(da: xr.DataArray, names: list[str]) -> np.ndarray:
    """Rows of a (condition, ...) array in the order of ``names`` (NaN rows for conditions it lacks)."""
    have = [str(c) for c in da["condition"].values]
    out = np.full((len(names), *da.shape[1:]), np.nan)
    for i, n in enumerate(names):
        if n in have:
            out[i] = da.values[have.index(n)]
    return out


# ---------------------------------------------------------------------------------- 5. fixed points
def fixed_points(data: DatasetResults, sec: H.Section) -> None:
    """5. Fixed and slow points (fixed_points.nc) in model-state PC space by stability."""
    panels = []
    for f in data.fits:
        fp = f.analyses.get("fixed_points")
        if fp is None:
            continue
        evr = fp["pc_explained_variance"].values if "pc_explained_variance" in fp else np.array([])
        traj = fp["trajectory_pc"].values if "trajectory_pc" in fp else np.zeros((0, 0, 2))
        panels.append({
            "title": f"{f.name}: {fp.attrs.get('n_fixed', fp.sizes.get('point', 0))} fixed, "
                     f"{fp.attrs.get('n_stable', '?')} stable (input {fp.attrs.get('inputs', '?')})"
                     + C.label(data.caveats, f.name),
            "points": _pad(fp["pc_projection"].values, 2), "label": fp["label"].values,
            "point_type": fp["point_type"].values if "point_type" in fp else np.full(fp.sizes["point"], "fixed"),
            "traj": _pad(traj, 2), "xlabel": "PC1" + _pct(evr, 0) + " of model states",
            "ylabel": "PC2" + _pct(evr, 1)})
    if panels:
        sec.add(_img(F.fixed_points(panels), "fixed points",
                     "Fixed (o) and slow (x) points of each model in the top PCs of its condition-averaged "
                     "trajectories (grey), coloured by stability of the discrete-time map: stable (all |λ| < 1), "
                     "saddle, unstable."))
    _missing_note(data, sec, "fixed_points", "fixed points")


def _missing_note(data: DatasetResults, sec: H.Section, kind: str, what: str) -> None:
    lacking = [f for f in data.fits if kind not in f.analyses]
    baselines = [f.name for f in lacking if _is_baseline(f)]
    others = [f.name for f in lacking if not _is_baseline(f)]
    if baselines:
        sec.add(H.note(f"No {what} for {', '.join(baselines)} (baselines: no recurrent dynamics)."))
    if others:
        sec.add(H.note(f"No {what} for {', '.join(others)} ({kind}.nc absent)."))


# --------------------------------------------------------------------------------------- 6. dynamics
def dynamics(data: DatasetResults, sec: H.Section) -> None:
    """6. Eigen-spectra, Lyapunov exponents, echo-state and gradient-norm curves (dynamics.nc)."""
    rows = []
    for f in data.fits:
        dy = f.analyses.get("dynamics")
        if dy is None:
            continue
        spectra = {}
        if "weight_eig_real" in dy:
            spectra["recurrent W"] = dy["weight_eig_real"].values + 1j * dy["weight_eig_imag"].values
        spectra["Jacobian at rest"] = dy["jacobian_eig_real"].values + 1j * dy["jacobian_eig_imag"].values
        lyap = dy["lyapunov_per_s"].values if "lyapunov_per_s" in dy else dy["lyapunov"].values / float(dy.attrs["dt_s"])
        dt = float(dy.attrs.get("dt_s", 1.0))
        echo_t = dy["echo_time_s"].values if "echo_time_s" in dy.coords else np.arange(dy.sizes["echo_step"]) * dt
        lag_t = dy["time_lag_s"].values if "time_lag_s" in dy.coords else np.arange(dy.sizes["time_lag"]) * dt
        sec.add(_img(F.dynamics(spectra, lyap, (echo_t, dy["echo_distance"].values), (lag_t, dy["grad_norm"].values),
                                title=f"{f.name} ({dy.attrs.get('family', '?')})" + C.label(data.caveats, f.name)),
                     f"dynamics of {f.name}"))
        a = dy.attrs
        rows.append([f.name, H.fmt(a.get("spectral_radius")), H.fmt(a.get("bulk_radius")), H.fmt(a.get("n_outliers")),
                     H.fmt(a.get("lyapunov_max_per_s")), H.fmt(a.get("grad_log_slope_per_step"), 4),
                     H.fmt(a.get("echo_final_ratio")), H.fmt(dt * 1000, 1)])
    if rows:
        sec.add(H.table(["model", "spectral radius", "bulk radius", "outliers", "λmax (1/s)",
                         "log grad slope (1/step)", "echo final ratio", "dt (ms)"], rows, numeric=range(1, 8),
                        caption="Eigenvalues inside the unit circle are stable for the discrete-time Jacobian; "
                                "λmax < 0 and a falling echo distance mean inputs, not the initial state, set the "
                                "trajectory (echo-state property)."))
    _missing_note(data, sec, "dynamics", "dynamics diagnostics")


# -------------------------------------------------------------------------------------- 7. alignment
ALIGNMENT_KEYS = ("cca_cv_mean_corr", "cca_cv_mean_corr_shuffled", "procrustes_similarity", "dsa_distance",
                  "cca_cv_mean_corr_in_sample", "procrustes_similarity_in_sample", "dsa_distance_in_sample")


def alignment(data: DatasetResults, sec: H.Section) -> None:
    """7. CCA, Procrustes and DSA of each model against the data (geometry.nc): out of sample (test trials x
    held-out units), with the in-sample scores (all trials and units) beside them."""
    rows, notes = [], []
    geo_any = None
    for f in data.fits:
        geo = f.analyses.get("geometry")
        if geo is None:
            continue
        geo_any = geo
        a = geo.attrs
        rows.append([f.name + C.label(data.caveats, f.name), H.fmt(a.get("alignment_scope")),
                     *[H.fmt(a.get(k)) for k in ALIGNMENT_KEYS],
                     H.fmt(a.get("state_participation_ratio"), 2), H.fmt(a.get("state_jpca_r2_skew"))])
        if a.get("alignment_note"):
            notes.append(f"{f.name}: {a['alignment_note']}")
    if geo_any is not None:
        a = geo_any.attrs
        rows.append(["data", H.MISSING, *[H.MISSING] * len(ALIGNMENT_KEYS), H.fmt(a.get("data_participation_ratio"), 2),
                     H.fmt(a.get("jpca_r2_skew"))])
        sec.add(H.table(["model", "scored on", "CCA (cv mean r)", "CCA shuffled", "Procrustes similarity",
                         "DSA distance", "CCA in-sample", "Procrustes in-sample", "DSA in-sample",
                         "participation ratio", "jPCA R² (skew)"], rows, numeric=range(2, 11),
                        caption="Alignment of model states with the data on the fit's test trials and held-out "
                                "units, which the model neither trained on nor read: cross-validated CCA "
                                "correlation on single trials (higher is better; shuffled trials as control), "
                                "Procrustes similarity of condition averages (1 = same shape), DSA distance of "
                                "their dynamics (Ostrow et al. 2023; lower is closer). In-sample: the same on all "
                                "trials and units, including the held-in activity the encoder read -- an upper "
                                "bound that a copy of the input can reach, not evidence of a model."))
    for text in notes:
        sec.add(H.note(text))
    _missing_note(data, sec, "geometry", "alignment scores")
