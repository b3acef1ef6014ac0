"""Model-to-data alignment for the geometry stage: CV-CCA, Procrustes and DSA, out of sample and in sample.

A fit's encoder reads the held-in units of every trial, and the model was trained on the train trials, so
aligning its states with *that* activity partly scores the model's copy of its own input.  The headline
scores (:func:`align`) are therefore computed on what the model never saw:

* trials with ``split == "test"`` in ``fit.nc`` (the model was neither trained nor selected on them), and
* units with ``heldout == 1`` (the encoder never read them; the model can only predict them).

The same scores on all trials and all units -- the in-sample variant -- are kept beside them, labelled
``*_in_sample``.  With fewer than :data:`MIN_TEST_TRIALS` test trials or no held-out unit the out-of-sample
scores are NaN and ``Alignments.note`` says why.

Examples
--------
>>> scores = align(act, fit, states, cfg)  # doctest: +SKIP
>>> scores.heldout.cca.mean, scores.in_sample.cca.mean  # doctest: +SKIP
(0.41, 0.83)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from cortexfit.analysis.population import condition_average, condition_labels, fill_nan, pca_summary, smoothed_rates
from cortexfit.analysis.similarity import CCAResult, cv_cca, dsa_distance, procrustes_similarity
from cortexfit.core import convention
from cortexfit.core.errors import AnalysisError

if TYPE_CHECKING:
    from cortexfit.analysis.geometry import GeometryConfig

log = logging.getLogger(__name__)

__all__ = ["DSA_VARIANCE", "MIN_TEST_TRIALS", "Alignment", "Alignments", "align", "heldout_selection", "scores"]

#: DSA's DMD rank is capped at the number of PCs holding this fraction of either system's variance.
DSA_VARIANCE = 0.95
#: Fewest test trials the out-of-sample scores are computed from (below: NaN and a note).
MIN_TEST_TRIALS = 4


@dataclass
class Alignment:
    """CV-CCA on single trials, Procrustes similarity and DSA distance on condition averages."""

    cca: CCAResult
    procrustes: float
    dsa: float
    dsa_rank: int


@dataclass
class Alignments:
    """The out-of-sample scores (``heldout``, with a trial-shuffled CCA control) and the in-sample ones."""

    heldout: Alignment
    shuffled: CCAResult
    in_sample: Alignment
    n_test_trials: int
    n_heldout_units: int
    note: str


def _nan_alignment(n_components: int) -> Alignment:
    nan = np.full(n_components, np.nan)
    return Alignment(CCAResult(per_component=nan, per_fold=nan[None]), float("nan"), float("nan"), 0)


def heldout_selection(act: xr.Dataset, fit: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks over ``act``'s trials (``split == "test"`` in ``fit``) and neurons (``heldout == 1``).

    ``act`` and ``fit`` must share their trials in the same order (as after the geometry stage's matching);
    units are matched by id.
    """
    split = np.asarray(fit["split"].values).astype(str) if "split" in fit.coords else np.array([], str)
    test = split == "test" if split.shape == (act.sizes["trial"],) else np.zeros(act.sizes["trial"], bool)
    nd_act = convention.neuron_dim(act)
    if "heldout" not in fit.coords:
        return test, np.zeros(act.sizes[nd_act], bool)
    held = fit["heldout"]
    ids = np.asarray(held[held.dims[0]].values)[np.asarray(held.values) == 1]
    return test, np.isin(np.asarray(act[nd_act].values), ids)


def scores(act: xr.Dataset, states: np.ndarray, cfg: GeometryConfig) -> Alignment:
    """Alignment of ``states`` (trial, time, state) with ``act`` (same trials, any units).

    CV-CCA of single-trial smoothed rates (folds over trials), Procrustes similarity and DSA distance of
    the condition averages of both in their top ``n_common_dims`` PCs (DMD rank capped at the PCs holding
    :data:`DSA_VARIANCE` of either system's variance).
    """
    labels, _ = condition_labels(act, cfg.condition)
    conds = list(dict.fromkeys(labels.tolist()))
    rates = fill_nan(smoothed_rates(act, smooth_ms=cfg.smooth_ms))
    avg_data = fill_nan(condition_average(act, smooth_ms=cfg.smooth_ms, condition=cfg.condition).values)
    states_avg = np.stack([states[labels == c].mean(axis=0) for c in conds])
    cca = cv_cca(rates, states, n_components=cfg.cca_components, n_splits=cfg.cca_folds, seed=cfg.seed)
    d = min(cfg.n_common_dims, avg_data.shape[2], states_avg.shape[2])
    procrustes = procrustes_similarity(avg_data, states_avg, n_dims=d)
    (data_ratio, _, data_scores), (state_ratio, _, state_scores) = pca_summary(avg_data), pca_summary(states_avg)
    delays = max(1, min(cfg.dsa_delays, act.sizes["time"] // 2))
    n_eff = [int(np.searchsorted(np.cumsum(r), DSA_VARIANCE) + 1) for r in (data_ratio, state_ratio)]
    rank = max(2, min(cfg.dsa_rank, *n_eff))  # DMD modes beyond a system's dimensionality only fit noise
    dsa = dsa_distance(data_scores[..., :d], state_scores[..., :d], n_delays=delays, rank=rank,
                       variant=cfg.dsa_variant, seed=cfg.seed)
    return Alignment(cca, procrustes, dsa, rank)


def _shuffled(act: xr.Dataset, states: np.ndarray, cfg: GeometryConfig) -> CCAResult:
    """CV-CCA with the model's trials permuted: the chance level of :func:`scores`' CCA."""
    rates = fill_nan(smoothed_rates(act, smooth_ms=cfg.smooth_ms))
    perm = np.random.default_rng(cfg.seed).permutation(len(states))
    return cv_cca(rates, states[perm], n_components=cfg.cca_components, n_splits=cfg.cca_folds, seed=cfg.seed)


def align(act: xr.Dataset, fit: xr.Dataset, states: np.ndarray, cfg: GeometryConfig) -> Alignments:
    """Out-of-sample (test trials x held-out units) and in-sample (all trials x all units) alignment.

    ``act`` and ``fit`` share trials (same order) and time bins; ``states`` is the model's trajectory
    (trial, time, state) on those trials.
    """
    in_sample = scores(act, states, cfg)
    test, held = heldout_selection(act, fit)
    n_test, n_held = int(test.sum()), int(held.sum())
    nan = _nan_alignment(cfg.cca_components)
    if n_test < MIN_TEST_TRIALS or n_held < 1:
        lacking = [f"{n_test} test trials (need >= {MIN_TEST_TRIALS})"] if n_test < MIN_TEST_TRIALS else []
        lacking += ["no held-out units (need >= 1)"] if n_held < 1 else []
        note = (f"out-of-sample alignment not computed: fit.nc has {' and '.join(lacking)}; only the in-sample "
                "scores are available")
        log.warning(note)
        return Alignments(nan, nan.cca, in_sample, n_test, n_held, note)
    sub = act.isel({"trial": np.flatnonzero(test), convention.neuron_dim(act): np.flatnonzero(held)})
    try:
        heldout = scores(sub, states[test], cfg)
        shuffled = _shuffled(sub, states[test], cfg)
    except AnalysisError as exc:
        note = f"out-of-sample alignment failed on {n_test} test trials x {n_held} held-out units: {exc}"
        log.warning(note)
        return Alignments(nan, nan.cca, in_sample, n_test, n_held, note)
    return Alignments(heldout, shuffled, in_sample, n_test, n_held, "")
