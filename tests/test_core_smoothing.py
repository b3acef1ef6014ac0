"""Tests of cortexfit.core.smoothing: the NaN-aware Gaussian smoother."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cortexfit.core.errors import ConfigError
from cortexfit.core.smoothing import gaussian_smooth, masked_smooth


def test_gaussian_smooth_by_hand_nan_and_edges():
    w = math.exp(-2.0)  # Gaussian weight two bins away for sigma = 1
    got = gaussian_smooth(np.array([[1.0, np.nan, 3.0]]), 1.0)
    assert got[0].tolist() == pytest.approx([(1 + 3 * w) / (1 + w), 2.0, (3 + w) / (1 + w)], abs=1e-9)
    const = np.full((2, 50, 3), 0.7)
    const[0, 10:20] = np.nan
    assert np.allclose(gaussian_smooth(const, 4.0, axis=1), 0.7)  # edges and gaps renormalised
    assert np.isnan(gaussian_smooth(np.array([[np.nan] * 3]), 1.0)).all()


def test_masked_smooth_weights_and_threshold():
    num = np.array([[2.0, 0.0, 0.0, 6.0]])
    den = np.array([[1.0, 0.0, 0.0, 2.0]])
    assert np.allclose(masked_smooth(num, den, 0.0), [[2.0, np.nan, np.nan, 3.0]], equal_nan=True)
    sm = masked_smooth(num, den, 1.0)
    assert np.all(np.isfinite(sm)) and 2.0 <= sm[0, 1] <= 3.0
    far = np.zeros((1, 200))
    w = np.zeros((1, 200))
    far[0, 0], w[0, 0] = 1.0, 1.0
    assert np.isnan(masked_smooth(far, w, 2.0)[0, 100])  # beyond the 4-sigma kernel: nothing observed
    with pytest.raises(ConfigError, match="sigma must be >= 0"):
        gaussian_smooth(num, -1.0)
