"""Tests for cortexfit.ingest.binning: exact spike counts on both search paths, intervals, resampling."""

from __future__ import annotations

import numpy as np

import nwb_factory as F
from cortexfit.ingest.binning import bin_spikes, inside, resample


def test_bin_spikes_left_closed_both_paths():
    edges = np.array([[0.0, 0.5, 1.0], [1.0, 1.5, 2.0]])
    st = np.array([0.0, 0.5, 0.999, 1.0, 2.0, 0.2, 1.5])
    bounds = np.array([0, 5, 7])
    fast = bin_spikes(st, bounds, edges)  # sorted edges: one global searchsorted
    assert fast[:, :, 0].tolist() == [[1, 2], [1, 0]] and fast[:, :, 1].tolist() == [[1, 0], [0, 1]]
    overlap = np.array([[0.0, 0.5, 1.0], [0.5, 1.0, 1.5]])  # overlapping windows: per-unit path
    slow = bin_spikes(st, bounds, overlap)
    np.testing.assert_array_equal(slow, F.brute_counts([st[:5], st[5:]], overlap))
    assert slow[:, :, 0].tolist() == [[1, 2], [2, 1]]
    np.testing.assert_array_equal(bin_spikes(st, bounds, edges[::-1]), fast[::-1])  # trials out of time order


def test_bin_spikes_random_with_empty_units():
    rng = np.random.default_rng(3)
    edges = np.arange(5)[:, None] * 1.0 + 0.3 + np.arange(11)[None, :] * 0.05  # 5 trials, 10 bins, gaps
    spikes = [np.array([]), np.sort(rng.uniform(0, 6, 200)), np.array([0.0, 5.9]), np.array([]),
              np.sort(np.r_[rng.choice(edges.ravel(), 30), rng.uniform(0, 6, 50)]), np.array([])]
    bounds = np.r_[0, np.cumsum([len(s) for s in spikes])]
    got = bin_spikes(np.concatenate(spikes), bounds, edges)
    np.testing.assert_array_equal(got, F.brute_counts(spikes, edges))
    assert got[:, :, [0, 2, 3, 5]].sum() == 0 and got.sum() > 0


def test_inside_and_resample():
    iv = np.array([[3.0, 4.0], [0.0, 1.0], [0.5, 2.0]])
    assert inside(iv, np.array([-0.1, 0.0, 1.99, 2.0, 3.0, 4.0])).tolist() == [False, True, True, False, True, False]
    ts = np.arange(10.0)
    data = np.c_[ts, 2 * ts]
    data[3, 1] = np.nan
    out = resample(ts, data, np.array([[0.0, 2.0, 2.1, 2.3, 4.0, 12.0, 14.0]]))
    np.testing.assert_allclose(out[0, :5, 0], [0.5, 2.0, 2.2, 3.0, 6.5], rtol=1e-6)  # mean; interpolated if empty
    assert out.dtype == np.float32 and out[0, 1, 1] == 4.0
    assert np.isnan(out[0, 3, 1]) and np.isnan(out[0, 5]).all()  # only a NaN sample; past the end
