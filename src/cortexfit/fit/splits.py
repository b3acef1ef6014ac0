"""Seeded unit and trial splits for co-smoothing evaluation.

The Neural Latents Benchmark holds out a subset of *units* (their spikes are never shown to the model on
evaluation trials; the model must predict them from the held-in units) and a subset of *trials* (used only for
scoring).  These helpers draw both deterministically from a seed with numpy's ``default_rng``.

Examples
--------
>>> from cortexfit.fit.splits import split_trials, split_units
>>> heldout = split_units(8, heldout_frac=0.25, seed=0)
>>> int(heldout.sum())
2
>>> labels = split_trials(10, fractions=(0.6, 0.2, 0.2), seed=0)
>>> sorted(labels.tolist()).count("test")
2
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cortexfit.core.errors import FitError

SPLIT_NAMES = ("train", "valid", "test")


def split_units(n_units: int, heldout_frac: float = 0.25, *, seed: int = 0) -> np.ndarray:
    """Draw the held-out units.

    Parameters
    ----------
    n_units : int
        Number of units recorded (at least 2).
    heldout_frac : float
        Fraction of units held out, in (0, 1); the count is ``round(n_units * heldout_frac)`` clipped to
        ``[1, n_units - 1]`` so that both groups are non-empty.
    seed : int
        Seed of the draw; the same seed always gives the same mask.

    Returns
    -------
    numpy.ndarray
        Boolean mask ``(n_units,)``, True for held-out units.

    Examples
    --------
    >>> m = split_units(107, 0.25, seed=3)
    >>> int(m.sum()), bool((m == split_units(107, 0.25, seed=3)).all())
    (27, True)
    """
    n_units = int(n_units)
    if n_units < 2:
        raise FitError(f"cannot hold out units from a recording of {n_units} unit(s): need at least 2")
    if not 0.0 < float(heldout_frac) < 1.0:
        raise FitError(f"heldout_frac must be in (0, 1), got {heldout_frac}")
    n_out = int(np.clip(round(n_units * float(heldout_frac)), 1, n_units - 1))
    rng = np.random.default_rng(seed)
    mask = np.zeros(n_units, dtype=bool)
    mask[rng.choice(n_units, size=n_out, replace=False)] = True
    return mask


def _split_counts(n: int, fractions: tuple[float, float, float]) -> np.ndarray:
    """Counts per split: round the valid/test shares, keep >= 1 where the fraction is > 0, rest to train."""
    counts = np.zeros(3, dtype=int)
    for i in (1, 2):
        if fractions[i] > 0:
            counts[i] = max(1, round(n * fractions[i]))
    counts[0] = n - counts[1:].sum()
    return counts


def split_trials(
    n_trials: int,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    *,
    seed: int = 0,
    stratify: Sequence | np.ndarray | None = None,
) -> np.ndarray:
    """Assign every trial to ``"train"``, ``"valid"`` or ``"test"``.

    Parameters
    ----------
    n_trials : int
        Number of trials.
    fractions : sequence of 3 floats
        Shares of train, valid and test trials; non-negative, summing to 1, train > 0.  Valid and test
        counts are ``round(n * share)`` (at least 1 when the share is > 0); train gets the rest.
    seed : int
        Seed of the draw; the same seed (and labels) always gives the same split.
    stratify : array-like of shape (n_trials,), optional
        Condition label per trial.  When given, each condition is spread over the three splits in proportion
        (trials are shuffled within their condition and ranked by their relative position in it, then the
        ranked list is cut at the split counts), so totals stay exact and every split sees every condition
        that has enough trials.

    Returns
    -------
    numpy.ndarray
        Array of str ``(n_trials,)`` with values in ``("train", "valid", "test")``; use ``labels == "train"``
        for a boolean mask.

    Examples
    --------
    >>> labels = split_trials(6, (0.5, 0.25, 0.25), seed=1, stratify=["a", "b"] * 3)
    >>> [int((labels == s).sum()) for s in ("train", "valid", "test")]
    [2, 2, 2]
    """
    n_trials = int(n_trials)
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or min(fr) < 0 or fr[0] <= 0 or not np.isclose(sum(fr), 1.0, atol=1e-6):
        raise FitError(
            f"trial split fractions must be 3 non-negative numbers (train, valid, test) summing to 1 with "
            f"train > 0, got {tuple(fractions)}"
        )
    counts = _split_counts(n_trials, fr)
    n_needed = 1 + sum(1 for f in fr[1:] if f > 0)
    if n_trials < n_needed or counts[0] < 1:
        raise FitError(
            f"too few trials ({n_trials}) for a train/valid/test split with fractions {fr}: need at least "
            f"one trial per non-empty split"
        )
    rng = np.random.default_rng(seed)
    if stratify is None:
        order = rng.permutation(n_trials)
    else:
        cond = np.asarray(stratify)
        if cond.shape != (n_trials,):
            raise FitError(f"stratify labels have shape {cond.shape}, expected ({n_trials},)")
        _, inverse = np.unique(cond, return_inverse=True)
        key = np.empty(n_trials)
        for c in range(inverse.max() + 1):
            idx = np.flatnonzero(inverse == c)
            idx = idx[rng.permutation(idx.size)]
            key[idx] = (np.arange(idx.size) + 0.5) / idx.size
        tie = rng.random(n_trials)
        order = np.lexsort((tie, key))
    labels = np.empty(n_trials, dtype="<U5")
    bounds = np.cumsum(counts)
    labels[order[: bounds[0]]] = "train"
    labels[order[bounds[0] : bounds[1]]] = "valid"
    labels[order[bounds[1] :]] = "test"
    return labels
