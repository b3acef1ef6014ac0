"""Exact binning of spike trains and sampled signals onto per-trial bin edges.

Every function takes absolute bin edges ``edges`` of shape (trial, bins + 1); bins are left-closed
``[edges[i, k], edges[i, k + 1])``.  Spike counts are exact (:func:`bin_spikes`); sampled signals are averaged
over the samples inside each bin (:func:`resample`); :func:`inside` tells which times lie in a set of intervals
(a unit's ``obs_intervals``).

Examples
--------
>>> edges = np.array([[0.0, 0.5, 1.0]])
>>> bin_spikes(np.array([0.1, 0.6, 0.7]), np.array([0, 3]), edges)[0, :, 0].tolist()
[1, 2]
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from cortexfit.core.errors import IngestError

__all__ = ["bin_spikes", "edge_tolerance", "inside", "resample"]


def bin_spikes(spike_times: np.ndarray, bounds: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Count each unit's spikes in left-closed bins ``[edges[i, k], edges[i, k + 1])``.

    When the trials' windows follow each other in time (the flattened edges never decrease), every spike
    is located among all edges with one :func:`numpy.searchsorted`; otherwise (overlapping windows) each
    unit's sorted spike times are searched for all edges at once.  Both give exact counts.

    Parameters
    ----------
    spike_times, bounds
        Flat spike times, sorted within each unit, and row bounds: unit u is ``spike_times[bounds[u]:bounds[u+1]]``.
    edges
        (trial, bins + 1) absolute bin edges.

    Returns
    -------
    (trial, bins, unit) uint16 counts.

    Examples
    --------
    >>> bin_spikes(np.array([0.0, 0.5, 1.0, 0.2]), np.array([0, 3, 4]), np.array([[0.0, 0.5, 1.0]]))[0].tolist()
    [[1, 1], [1, 0]]
    """
    n_trial, n_bin, n_unit = edges.shape[0], edges.shape[1] - 1, len(bounds) - 1
    order = np.argsort(edges[:, 0], kind="stable")
    if np.any(order != np.arange(n_trial)):  # trials out of time order: bin them sorted, then put them back
        out = np.empty((n_trial, n_bin, n_unit), dtype=np.uint16)
        out[order] = bin_spikes(spike_times, bounds, edges[order])
        return out
    flat = edges.ravel()
    counts = np.zeros((n_trial, n_bin, n_unit), dtype=np.uint16)
    if np.all(flat[1:] >= flat[:-1]):
        pos = np.searchsorted(flat, spike_times, side="right") - 1
        trial = pos // (n_bin + 1)
        keep = (pos >= 0) & (pos - trial * (n_bin + 1) < n_bin)
        cell = (pos - trial)[keep]  # trial * n_bin + bin, non-decreasing within each unit
        starts = np.concatenate([[0], np.cumsum(keep)])[bounds]  # each unit's first kept spike
        new = np.ones(len(cell), dtype=bool)  # a run of equal cells within one unit = one bin's count
        new[1:] = cell[1:] != cell[:-1]
        new[starts[(starts > 0) & (starts < len(cell))]] = True
        first = np.flatnonzero(new)
        runs = np.diff(np.append(first, len(cell)))
        if len(runs) and runs.max() > np.iinfo(np.uint16).max:
            raise IngestError(f"more than {np.iinfo(np.uint16).max} spikes in one bin: use smaller bins")
        unit = np.searchsorted(starts, first, side="right") - 1
        counts.reshape(-1)[cell[first] * n_unit + unit] = runs
    else:
        for u in tqdm(range(n_unit), desc="binning units", unit="unit", disable=None, leave=False):
            pos = np.searchsorted(spike_times[bounds[u]:bounds[u + 1]], flat, side="left").reshape(edges.shape)
            c = np.diff(pos, axis=1)
            if c.max(initial=0) > np.iinfo(np.uint16).max:
                raise IngestError(f"more than {np.iinfo(np.uint16).max} spikes in one bin: use smaller bins")
            counts[:, :, u] = c
    return counts


def inside(intervals: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Boolean mask of ``t`` lying inside the union of half-open ``[start, stop)`` intervals (m, 2).

    >>> inside(np.array([[0.0, 1.0], [0.5, 2.0], [3.0, 4.0]]), np.array([-1, 0, 1.5, 2.0, 3.5])).tolist()
    [False, True, True, False, True]
    """
    iv = intervals[np.argsort(intervals[:, 0], kind="stable")]
    if len(iv) == 0:
        return np.zeros(t.shape, dtype=bool)
    ends = np.maximum.accumulate(iv[:, 1])
    j = np.searchsorted(iv[:, 0], t, side="right") - 1
    return (j >= 0) & (t < ends[np.maximum(j, 0)])


#: Fraction of the shortest bin within which a sample or event time before an edge counts as on the edge.
EDGE_TOL = 1e-6


def edge_tolerance(edges: np.ndarray) -> float:
    """Seconds within which a time just before a bin edge counts as on it (float rounding of ``k * bin``).

    >>> edge_tolerance(np.array([[0.0, 0.005, 0.01]]))
    5e-09
    """
    return float(EDGE_TOL * np.diff(edges, axis=1).min()) if edges.shape[1] > 1 else 0.0


def resample(ts: np.ndarray, data: np.ndarray, edges: np.ndarray, chunk: int = 16) -> np.ndarray:
    """Average a (sample, channel) signal over bins ``[edges[i, k], edges[i, k + 1])`` -> (trial, bin, channel).

    Bins holding no sample take the linear interpolation at their centre (NaN outside the signal's time
    range); bins holding only NaN samples are NaN.  Output float32.  A sample less than a millionth of the
    shortest bin before an edge counts as lying on it (:data:`EDGE_TOL`): signals sampled on the bins' own grid
    (``starting_time + i / rate``) land in their own bin whatever the rounding of either side.

    >>> resample(np.arange(4.0), np.arange(4.0)[:, None], np.array([[0.0, 2.0, 2.2, 2.6, 8.0]]))[0, :, 0]
    array([0.5, 2. , 2.4, 3. ], dtype=float32)
    """
    order = np.argsort(ts, kind="stable")
    ts, data = ts[order], data[order]
    idx = np.searchsorted(ts, (edges - edge_tolerance(edges)).ravel(), side="left").reshape(edges.shape)
    lo, hi = idx[:, :-1], idx[:, 1:]
    centres = (edges[:, :-1] + edges[:, 1:]) / 2
    out = np.empty((*lo.shape, data.shape[1]), dtype=np.float32)
    empty = hi == lo
    for c0 in tqdm(range(0, data.shape[1], chunk), desc="resampling", disable=None, leave=False):
        block = data[:, c0:c0 + chunk]
        ok = np.isfinite(block)
        zero = np.zeros((1, block.shape[1]))
        cs = np.concatenate([zero, np.cumsum(np.where(ok, block, 0.0), axis=0)])
        cn = np.concatenate([zero, np.cumsum(ok, axis=0)])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (cs[hi] - cs[lo]) / (cn[hi] - cn[lo])
        if empty.any():
            for k in range(block.shape[1]):
                mean[..., k][empty] = np.interp(centres[empty], ts, block[:, k], left=np.nan, right=np.nan)
        out[..., c0:c0 + chunk] = mean
    return out
