"""``cortexfit truth``: how well a fitted RNN family recovers a simulated recording's ground truth.

``cortexfit truth FIT_DIR TRUTH.nc OUT.json [--teacher-fixed-points F] [--activity A]`` (:func:`run`) reads
the fit's ``fit.nc`` (and ``fixed_points.nc`` when present), the ``truth`` file the simulation wrote beside
the NWB file, and writes one flat JSON object (atomically) with the keys of :data:`KEYS`:

``rate_r2``
    Predicted vs true rates in Hz (``fit.nc``'s counts per bin / bin width) on the fit's test trials: R2 per
    unit over (trial, bin) samples, averaged over units (CtDB's rate R2).
``state_r2``
    True latents predicted from the model's states by a ridge map (inputs z-scored, penalty by generalised
    cross-validation on the training trials), cross-validated over trials (:data:`N_FOLDS` folds, every trial
    predicted once out of fold); variance-weighted R2 of the pooled held-out predictions (CtDB's state R2).
``cycle_r2``
    The same from true latents to model states: invented dimensions (state variance the truth does not
    explain) lower it, while ``state_r2`` ignores them.
``fixed_points_true``, ``fixed_points_model``, ``fixed_points_matched``
    Stable teacher points (``--teacher-fixed-points``, else the truth's ``fixed_points``), the model's stable
    points (``fixed_points.nc``), and the teacher points matched one-to-one (Hungarian assignment) by a model
    point mapped into the teacher's space (affine state -> latent map fitted on all trials) within
    ``fixed_points_tolerance`` = :data:`MATCH_FRACTION` x the smallest distance between teacher points:
    below half of it a model point can match one teacher point only; a quarter leaves room for the map's error
    while a match lies >= 3x closer to its own teacher point than to any other.  ``fixed_points_distances``:
    each teacher point's distance to its assigned model point (null: none).
``dsa_to_teacher``
    DSA distance (Ostrow et al. 2023; radians, 0 = same dynamics) between the model's states and the true
    latents on the same trials and bins.
``rotation_freq_hz``, ``rotation_freq_hz_true``, ``rotation_freq_hz_latents``
    Reach: :func:`rotation_frequency` of the model states, the truth's ``rotation_freq_hz``, and the former
    measured on the true latents (what the method recovers from the truth itself).

Not applicable values are null; ``notes`` says why.  Trials are matched by id; the truth (piecewise
constant over ``dt_s`` steps around its ``align_event``) is averaged exactly onto the fit's bins
(:func:`truth_onto_bins`), through the trials' event times when the bins are aligned to another event.

Examples
--------
>>> run("results/sim_flipflop/fits/rate", "data/simulated/flipflop.truth.nc", "truth.json")  # doctest: +SKIP
PosixPath('truth.json')
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cortexfit.core import convention
from cortexfit.core.errors import AnalysisError
from cortexfit.core.fileio import file_sha256, write_text_atomic

log = logging.getLogger(__name__)

__all__ = ["ALL_KEYS", "KEYS", "compare", "cv_r2", "fit_affine", "match_points", "rotation_frequency", "run", "state_r2",
           "truth_onto_bins"]

#: Keys of ``truth.json`` shown in the report, in order.
KEYS = ("rate_r2", "state_r2", "cycle_r2", "fixed_points_true", "fixed_points_matched", "dsa_to_teacher",
        "rotation_freq_hz", "rotation_freq_hz_true")
N_FOLDS = 5  #: folds over trials of the state / cycle R2
MATCH_FRACTION = 0.25  #: fixed-point tolerance as a fraction of the smallest teacher-point distance
ALPHAS = np.logspace(-4, 3, 8)  #: ridge penalties tried by generalised cross-validation (z-scored inputs)
MIN_RATE_CORR = 0.5  #: least correlation across units of mean rates (data or model vs truth): same recording


def truth_onto_bins(values: np.ndarray, truth_time: np.ndarray, dt: float, centres: np.ndarray, width: float,
                    offsets: np.ndarray) -> np.ndarray:
    """Average piecewise-constant truth samples over bins: ``(trial, step, c) -> (trial, bin, c)``.

    Truth sample ``j`` holds on ``[truth_time[j] - dt/2, truth_time[j] + dt/2)``; bin ``k`` of trial ``i``
    covers ``[centres[k] - width/2, centres[k] + width/2) + offsets[i]`` in the truth's time (``offsets``:
    the bins' event time minus the truth's event time, per trial).  The average is exact (overlap-weighted);
    bins not wholly inside the truth's window are NaN.

    Examples
    --------
    >>> x = np.arange(4.0)[None, :, None]                   # 4 steps of 5 ms holding 0, 1, 2, 3
    >>> truth_onto_bins(x, np.arange(4) * 0.005 + 0.0025, 0.005, np.array([0.005, 0.0125]), 0.01,
    ...                 np.zeros(1))[0, :, 0]
    array([0.5, 2. ])
    """
    values = np.asarray(values, dtype=float)
    edges = np.concatenate([truth_time - dt / 2, [truth_time[-1] + dt / 2]])
    cum = np.concatenate([np.zeros((values.shape[0], 1, values.shape[2])), np.cumsum(values * dt, axis=1)], axis=1)
    out = np.full((values.shape[0], len(centres), values.shape[2]), np.nan)
    for i, off in enumerate(np.asarray(offsets, dtype=float)):
        a, b = centres - width / 2 + off, centres + width / 2 + off
        ok = (a >= edges[0] - 1e-6 * dt) & (b <= edges[-1] + 1e-6 * dt)  # bins wholly inside the truth
        s = np.clip(np.stack([a[ok], b[ok]]), edges[0], edges[-1])
        j = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, len(truth_time) - 1)
        integral = cum[i, j] + values[i, j] * (s - edges[j])[..., None]  # of the piecewise-constant truth
        out[i, ok] = (integral[1] - integral[0]) / width
    return out


def fit_affine(x: np.ndarray, y: np.ndarray):
    """The ridge map ``y ~ A x + b`` (``x`` z-scored, penalty among :data:`ALPHAS` by generalised
    cross-validation) fitted on every (trial, time) sample where both are finite.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(4, 50, 2))
    >>> m = fit_affine(x, x @ [[1.0, 2.0], [0.0, 1.0]] + 3)
    >>> np.round(m.predict([[1.0, 1.0]]), 2).tolist()
    [[4.0, 6.0]]
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ok = np.isfinite(x).all(-1) & np.isfinite(y).all(-1)
    return make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS)).fit(x[ok], y[ok])


def cv_r2(x: np.ndarray, y: np.ndarray, *, n_folds: int = N_FOLDS, seed: int = 0) -> float:
    """Cross-validated R2 of ``y`` (trial, time, q) predicted linearly from ``x`` (trial, time, p).

    Each of ``n_folds`` folds of trials (shuffled with ``seed``) is predicted by :func:`fit_affine` fitted on
    the others; the pooled held-out predictions get the variance-weighted R2 ``1 - sum SSE / sum SST`` over
    ``y``'s columns.  Samples where ``x`` or ``y`` is not finite are left out.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(10, 40, 3))
    >>> round(cv_r2(z @ rng.normal(size=(3, 3)), z), 4)
    1.0
    """
    from sklearn.model_selection import KFold

    n = x.shape[0]
    if n < 2:
        raise AnalysisError(f"cross-validation over trials needs >= 2 trials, got {n}")
    ok = np.isfinite(x).all(-1) & np.isfinite(y).all(-1)
    pred = np.full(y.shape, np.nan)
    for train, test in KFold(n_splits=min(n_folds, n), shuffle=True, random_state=seed).split(np.arange(n)):
        held = ok & np.isin(np.arange(n), test)[:, None]
        pred[held] = fit_affine(x[train], y[train]).predict(x[held])
    yt, yp = y[ok], pred[ok]
    sst = ((yt - yt.mean(0)) ** 2).sum()
    return float(1 - ((yt - yp) ** 2).sum() / sst) if sst > 0 else float("nan")


def match_points(true_pts: np.ndarray, model_pts: np.ndarray, tol: float) -> tuple[int, list[float | None]]:
    """Match each true point to at most one model point within ``tol`` (Hungarian assignment): pairs beyond
    ``tol`` cost more than any set within it, so the assignment maximises the matches, then minimises their
    distance.  Returns the number of matches and each true point's distance to its assigned point (or None).

    Examples
    --------
    >>> match_points(np.array([[0.0], [1.0]]), np.array([[0.1], [5.0]]), 0.25)
    (1, [0.1, 4.0])
    """
    from scipy.optimize import linear_sum_assignment

    if len(true_pts) == 0 or len(model_pts) == 0:
        return 0, [None] * len(true_pts)
    d = np.linalg.norm(true_pts[:, None, :] - model_pts[None, :, :], axis=-1)
    big = 1.0 + (tol + 1.0) * len(true_pts) * 2
    rows, cols = linear_sum_assignment(np.where(d <= tol, d, big + d))
    dist: list[float | None] = [None] * len(true_pts)
    for r, c in zip(rows, cols):
        dist[r] = float(d[r, c])
    return int(np.sum(d[rows, cols] <= tol)), dist


def _stable(fp: xr.Dataset) -> np.ndarray:
    """The stable fixed (not slow) points of a ``fixed_points`` dataset."""
    fixed = np.asarray(fp["point_type"].values).astype(str) == "fixed"
    return np.asarray(fp["xstar"].values, float)[fixed & (np.asarray(fp["label"].values).astype(str) == "stable")]


def rotation_frequency(x: np.ndarray, labels: np.ndarray, dt: float) -> float:
    """Fastest rotation (Hz) of condition-averaged ``x`` (trial, time, d): jPCA's unconstrained fit ``dX/dt = M X``
    in the top ``min(6, d)`` PCs, largest ``|imag eigenvalue| / 2 pi`` of ``M``.

    The eigenvalues of ``M``, unlike the skew-symmetric fit's planes, do not change under an invertible linear
    re-coordination of ``x``, so a model's states and the true latents are measured alike.

    Examples
    --------
    >>> t = np.arange(60) * 0.01
    >>> ph = np.repeat(np.linspace(0, 2 * np.pi, 4, endpoint=False), 2)[:, None]
    >>> x = np.stack([np.cos(2 * np.pi * 1.5 * t + ph), np.sin(2 * np.pi * 1.5 * t + ph)], -1)
    >>> round(rotation_frequency(x @ [[2.0, 1.0], [0.0, 0.5]], np.repeat(np.arange(4), 2), 0.01), 2)
    1.5
    """
    from cortexfit.analysis.jpca import jpca

    conds = list(dict.fromkeys(labels.tolist()))
    avg = np.stack([x[labels == c].mean(0) for c in conds])
    return float(jpca(avg, dt=dt, n_pcs=min(6, avg.shape[2]) // 2 * 2).full_frequencies_hz[0])


def _dsa(states: np.ndarray, latents: np.ndarray) -> float:
    """DSA distance of two (trial, time, d) systems in their top PCs (rank capped as in the geometry stage)."""
    from cortexfit.analysis.alignment import DSA_VARIANCE
    from cortexfit.analysis.population import pca_summary
    from cortexfit.analysis.similarity import dsa_distance

    (ra, _, xa), (rb, _, xb) = pca_summary(states), pca_summary(latents)
    d, n_eff = min(10, xa.shape[2], xb.shape[2]), [int(np.searchsorted(np.cumsum(r), DSA_VARIANCE) + 1) for r in (ra, rb)]
    return dsa_distance(xa[..., :d], xb[..., :d], n_delays=max(1, min(5, states.shape[1] // 2)),
                        rank=max(2, min(10, *n_eff)))


def _check_same_recording(fit: xr.Dataset, truth: xr.Dataset, where: str) -> None:
    """The fit's trials and units must be the truth's, and trial coordinates present in both must agree."""
    lacking = np.setdiff1d(fit["trial"].values, truth["trial"].values)
    if len(lacking):
        raise AnalysisError(f"{where}: trial(s) {', '.join(map(str, lacking[:10]))} are not in the truth "
                            f"({truth.sizes['trial']} trials): not the truth of this recording")
    nd = convention.neuron_dim(fit)
    if nd != "unit" or len(np.setdiff1d(fit[nd].values, truth["unit"].values)):
        raise AnalysisError(f"{where}: the fit's {nd}s are not all units of the truth ({truth.sizes['unit']} units)")
    for name in set(fit.coords) & set(truth.coords) - {"trial", "time", "unit"}:
        if fit[name].dims == ("trial",) and truth[name].dims == ("trial",):
            a, b = np.asarray(fit[name].values), np.asarray(truth[name].sel(trial=fit["trial"].values).values)
            numeric = a.dtype.kind in "iuf" and b.dtype.kind in "iuf"
            bad = ~np.isclose(a, b, atol=1e-6, equal_nan=True) if numeric else a.astype(str) != b.astype(str)
            if bad.any():
                raise AnalysisError(f"{where}: trial(s) {', '.join(map(str, fit.trial.values[bad][:10]))} have "
                                    f"another '{name}' in the truth: not the truth of this recording")


def _on_bins(fit: xr.Dataset, truth: xr.Dataset, act_event: str, bw: float, where: str
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The truth's rates (of the fit's units) and latents averaged onto the fit's bins, and the covered bins."""
    _check_same_recording(fit, truth, where)
    truth = truth.sel(trial=fit["trial"].values)
    tt, dt = np.asarray(truth["time"].values, float), float(truth.attrs["dt_s"])
    if not np.allclose(np.diff(tt), dt, atol=1e-9):
        raise AnalysisError(f"{where}: the truth's time steps are not its dt_s ({dt} s)")
    te = str(truth.attrs.get("align_event", "start_time"))  # offsets: time of the bins' event minus the truth's
    missing = [e for e in (act_event, te) if e not in fit.coords] if act_event != te else []
    if missing:
        raise AnalysisError(f"{where}: bins are aligned to '{act_event}', the truth to '{te}', and the trials lack "
                            f"{', '.join(missing)} to convert between them")
    offsets = np.zeros(fit.sizes["trial"]) if act_event == te else np.asarray(fit[act_event] - fit[te], float)
    rates, latents = (truth_onto_bins(truth[v].transpose("trial", "time", ...).values, tt, dt,
                                      np.asarray(fit["time"].values, float), bw, offsets)
                      for v in ("rates", "latents"))
    rates = rates[..., np.searchsorted(truth["unit"].values, fit["unit"].values)]
    covered = np.isfinite(latents).all(-1)
    if not covered.any():
        raise AnalysisError(f"{where}: no bin of the fit lies inside the truth's window around its event")
    return rates, latents, covered


def state_r2(fit: xr.Dataset, truth: xr.Dataset, *, act_event: str, bin_width_s: float, where: str = "fit.nc",
             seed: int = 0) -> float:
    """``state_r2`` alone (true latents from model states, cross-validated over trials; see :func:`compare`)."""
    _, latents, covered = _on_bins(fit, truth, act_event, bin_width_s, where)
    states = np.asarray(fit["states"].transpose("trial", "time", "state").values, float)
    return cv_r2(np.where(covered[..., None], states, np.nan), latents, seed=seed)


#: Every key of ``truth.json`` written by :func:`compare` (``run`` adds model, fit_dir, truth_file, source).
ALL_KEYS = (*KEYS, "rate_r2_n_test_trials", "fixed_points_model", "fixed_points_tolerance", "fixed_points_distances",
            "rotation_freq_hz_latents", "task", "n_trials", "n_bins", "bin_width_s", "cv_folds", "notes")


def compare(fit: xr.Dataset, truth: xr.Dataset, *, act_event: str, bin_width_s: float,
            observed: np.ndarray | None = None, model_points: np.ndarray | None = None,
            teacher_points: np.ndarray | None = None, where: str = "fit.nc", seed: int = 0) -> dict[str, Any]:
    """Every score of :data:`ALL_KEYS` (module docstring) for one fit against its truth; None: not applicable.

    ``observed``: mean rate (Hz) per unit in the data (default: the fit's), which must correlate with the
    truth's; ``model_points``/``teacher_points``: stable fixed points in model-state / latent space, or None.
    """
    true_rates, latents, covered = _on_bins(fit, truth, act_event, bin_width_s, where)
    notes = [] if covered.all() else [f"{int((~covered).sum())} of {covered.size} bins outside the truth: left out"]
    units = fit["rates"].attrs.get("units", "count/bin")
    if units not in ("count/bin", "Hz"):
        raise AnalysisError(f"{where}: rates are in {units!r}, not spike counts: no true rates to compare with")
    pred = fit["rates"].transpose("trial", "time", ...).values / (bin_width_s if units == "count/bin" else 1.0)
    mean_truth = np.nanmean(true_rates, axis=(0, 1))
    seen = observed if observed is not None else np.nanmean(np.where(covered[..., None], pred, np.nan), (0, 1))
    if len(seen) >= 3 and np.std(mean_truth) > 0 and np.std(seen) > 0:
        r = float(np.corrcoef(mean_truth, seen)[0, 1])
        if not r >= MIN_RATE_CORR:
            raise AnalysisError(f"{where}: units' mean rates correlate {r:.2f} with the truth's (< {MIN_RATE_CORR}): "
                                "not the truth of this recording")
    out: dict[str, Any] = dict.fromkeys(ALL_KEYS)
    out.update(task=str(truth.attrs.get("task", "")), n_trials=fit.sizes["trial"], n_bins=int(covered.sum()),
               bin_width_s=bin_width_s, cv_folds=N_FOLDS, notes=notes, rotation_freq_hz_true=truth.attrs.get(
                   "rotation_freq_hz"), fixed_points_true=None if teacher_points is None else len(teacher_points))
    test = np.asarray(fit["split"].values).astype(str) == "test"
    out["rate_r2_n_test_trials"] = int(test.sum())
    if test.any():
        from sklearn.metrics import r2_score

        out["rate_r2"] = float(r2_score(true_rates[test][covered[test]], pred[test][covered[test]]))
    notes += [] if test.any() else ["no test trials in fit.nc: rate_r2 not computed"]
    if "states" not in fit:
        return {**out, "notes": notes + ["fit.nc has no states: state_r2, cycle_r2, fixed points, DSA not computed"]}
    states = np.asarray(fit["states"].transpose("trial", "time", "state").values, float)
    x = np.where(covered[..., None], states, np.nan)
    out["state_r2"], out["cycle_r2"] = cv_r2(x, latents, seed=seed), cv_r2(latents, x, seed=seed)
    full = covered.all(0)
    if full.sum() >= 4:
        out["dsa_to_teacher"] = _dsa(states[:, full], latents[:, full])
        _rotation(out, notes, fit, truth, states[:, full], latents[:, full], bin_width_s)
    else:
        notes.append(f"{int(full.sum())} bins covered by the truth in every trial (need >= 4): no DSA, no jPCA")
    _fixed_points(out, notes, x, latents, model_points, teacher_points, where)
    return out


def _fixed_points(out: dict[str, Any], notes: list[str], x: np.ndarray, z: np.ndarray, model_points: np.ndarray | None,
                  teacher_points: np.ndarray | None, where: str) -> None:
    if teacher_points is None or model_points is None:
        notes.append("no teacher fixed points (the task has no teacher network): fixed points not compared"
                     if teacher_points is None else "no fixed_points.nc in the fit folder: fixed points not compared")
        return
    if teacher_points.shape[1] != z.shape[-1] or model_points.shape[1] != x.shape[-1]:
        raise AnalysisError(f"{where}: fixed points have {model_points.shape[1]} (model) and "
                            f"{teacher_points.shape[1]} (teacher) dims; states {x.shape[-1]}, latents {z.shape[-1]}")
    mapped = fit_affine(x, z).predict(model_points) if len(model_points) else np.zeros((0, z.shape[-1]))
    gaps = np.linalg.norm(teacher_points[:, None] - teacher_points[None], axis=-1)[np.triu_indices(len(teacher_points), 1)]
    flat = z[np.isfinite(z).all(-1)]  # one teacher point: a fraction of the latents' RMS spread instead
    tol = MATCH_FRACTION * float(gaps.min() if len(gaps) else np.sqrt(((flat - flat.mean(0)) ** 2).sum(1).mean()))
    n, dist = match_points(teacher_points, mapped, tol)
    out.update(fixed_points_model=len(model_points), fixed_points_tolerance=tol, fixed_points_matched=n,
               fixed_points_distances=dist)


def _rotation(out: dict[str, Any], notes: list[str], fit: xr.Dataset, truth: xr.Dataset, states: np.ndarray,
              latents: np.ndarray, dt: float) -> None:
    src = fit if "condition" in fit.coords else truth.sel(trial=fit["trial"].values)
    if "rotation_freq_hz" not in truth.attrs or "condition" not in src.coords:
        notes += [] if "rotation_freq_hz" not in truth.attrs else ["no 'condition' coordinate: no rotation frequency"]
        return
    labels = np.asarray(src["condition"].values).astype(str)
    try:
        out["rotation_freq_hz"], out["rotation_freq_hz_latents"] = (rotation_frequency(v, labels, dt)
                                                                    for v in (states, latents))
    except AnalysisError as exc:
        notes.append(f"jPCA failed ({exc}): rotation frequency not computed")


def _activity_event(fit: xr.Dataset, activity: str | os.PathLike | None, where: str
                    ) -> tuple[str, float, np.ndarray | None]:
    """(alignment event, bin width, observed mean rate per fit unit or None) from the activity or fit.nc."""
    if activity is not None:
        act, sha = convention.read_dataset(activity, "activity"), str(fit.attrs.get("activity_sha256", ""))
        if sha and sha != file_sha256(activity):
            raise AnalysisError(f"{where}: was fitted to another activity file than {activity} (sha256 differs)")
        nd, bw = convention.neuron_dim(act), float(act.attrs["bin_width_s"])
        sub = act.sel({nd: fit[convention.neuron_dim(fit)].values})
        counts = np.where(sub["valid"].values == 1, sub["activity"].values, np.nan)  # (trial, time, unit) by kind
        return str(act.attrs["align_event"]), bw, np.nanmean(counts, axis=(0, 1)) / bw
    name, prefix, t = str(fit["time"].attrs.get("long_name", "")), "bin centre relative to ", fit["time"].values
    if not name.startswith(prefix) or len(t) < 2:
        raise AnalysisError(f"{where}: cannot tell the bins' alignment event and width: pass --activity")
    return name[len(prefix):], round(float(np.median(np.diff(t))), 12), None


def run(fit_dir: str | os.PathLike, truth: str | os.PathLike, out: str | os.PathLike, *,
        teacher_fixed_points: str | os.PathLike | None = None, activity: str | os.PathLike | None = None,
        seed: int = 0) -> Path:
    """Compare ``fit_dir``'s model with the ground truth ``truth`` and write ``out`` (JSON, atomically).

    Parameters
    ----------
    fit_dir : a ``cortexfit fit`` folder (``fit.nc``; ``fixed_points.nc`` when there is one).
    truth : the simulation's ``<name>.truth.nc`` (kind ``truth``).
    out : the JSON file to write (keys: module docstring); nothing is written when an input is bad.
    teacher_fixed_points : the teacher's ``fixed_points`` file (default: the truth's ``fixed_points``, if any).
    activity : the activity file of the fit (sha256 checked): alignment event, bin width, observed rates.
    seed : shuffles the trials into folds.

    Raises
    ------
    SchemaError, AnalysisError
        One line: a file is missing or of the wrong kind, or the truth is not this recording's (trials, units,
        event times or mean rates disagree).

    Examples
    --------
    >>> run("fits/rate", "flipflop.truth.nc", "fits/rate/truth.json",
    ...     teacher_fixed_points="teacher_fixed_points.nc", activity="activity.nc")  # doctest: +SKIP
    PosixPath('fits/rate/truth.json')
    """
    from cortexfit.analysis.fitdir import read_fit_dir

    folder = read_fit_dir(fit_dir)
    where, fit, tr = str(folder.path / "fit.nc"), folder.fit, convention.read_dataset(truth, "truth")
    event, bw, observed = _activity_event(fit, activity, where)
    teacher = np.asarray(tr["fixed_points"].values, float) if "fixed_points" in tr.data_vars else None
    if teacher_fixed_points is not None:
        teacher = _stable(convention.read_dataset(teacher_fixed_points, "fixed_points"))
    fp = folder.read_analysis("fixed_points")
    result = compare(fit, tr, act_event=event, bin_width_s=bw, observed=observed,
                     model_points=None if fp is None else _stable(fp), teacher_points=teacher, where=where, seed=seed)
    result.update(model=folder.model_name, fit_dir=str(fit_dir), truth_file=str(truth),
                  fixed_points_source=None if teacher is None else str(teacher_fixed_points or f"{truth}:fixed_points"))
    result = json.loads(json.dumps(result), parse_constant=lambda _: None)  # NaN, inf -> null
    path = write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    log.info("%s: %s -> %s", fit_dir, ", ".join(f"{k} {result[k]}" for k in KEYS), out)
    return path
