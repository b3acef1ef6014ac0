"""Tests of cortexfit.fit.splits: seeded held-out units and stratified trial splits."""

from __future__ import annotations

import numpy as np
import pytest

from cortexfit.core.errors import FitError
from cortexfit.fit.splits import split_trials, split_units


def test_split_units_is_seeded_and_sized():
    m = split_units(107, 0.25, seed=3)
    assert m.dtype == bool and m.sum() == 27
    assert np.array_equal(m, split_units(107, 0.25, seed=3))
    assert not np.array_equal(m, split_units(107, 0.25, seed=4))
    assert split_units(2, 0.01, seed=0).sum() == 1 and split_units(2, 0.99, seed=0).sum() == 1
    with pytest.raises(FitError, match="at least 2"):
        split_units(1, seed=0)
    with pytest.raises(FitError, match="heldout_frac"):
        split_units(10, 1.0, seed=0)


def test_split_trials_counts_stratification_and_errors():
    labels = split_trials(100, (0.6, 0.2, 0.2), seed=0)
    assert [int((labels == s).sum()) for s in ("train", "valid", "test")] == [60, 20, 20]
    assert np.array_equal(labels, split_trials(100, (0.6, 0.2, 0.2), seed=0))
    cond = np.repeat(["r1", "r2"], [70, 30])
    strat = split_trials(100, (0.6, 0.2, 0.2), seed=1, stratify=cond)
    assert [int((strat == s).sum()) for s in ("train", "valid", "test")] == [60, 20, 20]
    for c, n in (("r1", 70), ("r2", 30)):
        assert abs(int(((strat == "test") & (cond == c)).sum()) - 0.2 * n) <= 1
    assert set(split_trials(3, (0.5, 0.25, 0.25), seed=0)) == {"train", "valid", "test"}
    assert "valid" not in set(split_trials(5, (0.8, 0.0, 0.2), seed=0))
    with pytest.raises(FitError, match="too few trials"):
        split_trials(2, (0.7, 0.15, 0.15), seed=0)
    with pytest.raises(FitError, match="summing to 1"):
        split_trials(10, (0.5, 0.2, 0.2), seed=0)
    with pytest.raises(FitError, match="stratify"):
        split_trials(10, seed=0, stratify=[0, 1])
