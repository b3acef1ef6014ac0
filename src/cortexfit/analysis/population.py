"""Population-activity helpers shared by the geometry and alignment analyses.

Smoothing is a Gaussian kernel applied with the ``valid`` mask as a normalised convolution, so unobserved
bins are never read as "no spikes"; condition averages pool a condition's valid counts before smoothing.
Trials without a ``condition`` coordinate are each their own condition.
"""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr
from sklearn.decomposition import PCA

from cortexfit.core import convention
from cortexfit.core.smoothing import masked_smooth

log = logging.getLogger(__name__)

__all__ = ["condition_average", "condition_labels", "fill_nan", "participation_ratio", "pca_summary",
           "smoothed_rates"]


def participation_ratio(eigenvalues: np.ndarray) -> float:
    """Participation ratio ``(sum l)^2 / sum l^2`` of covariance eigenvalues (1 .. number of dims).

    Examples
    --------
    >>> participation_ratio(np.array([1.0, 1.0, 1.0, 0.0]))
    3.0
    """
    lam = np.clip(np.asarray(eigenvalues, dtype=float), 0.0, None)
    return float(lam.sum() ** 2 / np.sum(lam**2)) if np.any(lam > 0) else float("nan")


def pca_summary(x: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """PCA of samples ``x`` (..., features): (variance ratio per PC, participation ratio, PCA scores).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(200, 2)) @ np.array([[1.0, 0, 0], [0, 1.0, 0]])
    >>> ratio, pr, scores = pca_summary(x)
    >>> ratio.shape, round(pr)
    ((3,), 2)
    """
    flat = np.asarray(x, dtype=float).reshape(-1, np.shape(x)[-1])
    pca = PCA(svd_solver="full").fit(flat)
    scores = pca.transform(flat).reshape(*np.shape(x)[:-1], -1)
    return np.asarray(pca.explained_variance_ratio_), participation_ratio(pca.explained_variance_), scores


def _counts(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, float]:
    nd = convention.neuron_dim(ds)
    act = ds["activity"].transpose("trial", "time", nd).values.astype(float)
    valid = ds["valid"].transpose("trial", "time", nd).values.astype(float)
    return act * valid, valid, float(ds.attrs["bin_width_s"])


def smoothed_rates(ds: xr.Dataset, *, smooth_ms: float = 20.0) -> np.ndarray:
    """Single-trial Gaussian-smoothed rates (trial, time, neuron) in Hz; NaN where never observed.

    Examples
    --------
    >>> ds = convention.new_activity(np.ones((2, 10, 3), "uint16"), time=np.arange(10) * 0.01 + 0.005,
    ...                          bin_width_s=0.01)
    >>> float(smoothed_rates(ds, smooth_ms=20)[0, 5, 0])
    100.0
    """
    num, den, bw = _counts(ds)
    return masked_smooth(num, den, smooth_ms / 1000.0 / bw) / bw


def condition_labels(ds: xr.Dataset, condition: str) -> tuple[np.ndarray, str]:
    if condition in ds.coords and ds[condition].dims == ("trial",):
        return np.asarray(ds[condition].values), "condition"
    log.warning("no per-trial '%s' coordinate: every trial is its own condition", condition)
    return np.asarray(ds["trial"].values), "trial"


def condition_average(
    ds: xr.Dataset, *, smooth_ms: float = 20.0, condition: str = "condition"
) -> xr.DataArray:
    """Smoothed rates (Hz) averaged over the trials of each condition: (condition, time, neuron).

    Sums of valid counts and of the ``valid`` mask are pooled over a condition's trials and smoothed, so
    each bin is the mean over the trials that observed it.

    Examples
    --------
    >>> ds = convention.new_activity(np.ones((4, 10, 3), "uint16"), time=np.arange(10) * 0.01 + 0.005,
    ...                          bin_width_s=0.01).assign_coords(condition=("trial", ["a", "b", "a", "b"]))
    >>> condition_average(ds).sizes["condition"]
    2
    """
    labels, _ = condition_labels(ds, condition)
    num, den, bw = _counts(ds)
    conds = list(dict.fromkeys(labels.tolist()))
    idx = [labels == c for c in conds]
    num_c = np.stack([num[m].sum(axis=0) for m in idx])
    den_c = np.stack([den[m].sum(axis=0) for m in idx])
    rates = masked_smooth(num_c, den_c, smooth_ms / 1000.0 / bw) / bw
    nd = convention.neuron_dim(ds)
    return xr.DataArray(rates, dims=("condition", "time", nd),
                        coords={"condition": np.asarray(conds), "time": ds["time"].values, nd: ds[nd].values})



def fill_nan(x: np.ndarray) -> np.ndarray:
    """Replace NaN (unobserved bins) with each feature's mean (0 where never observed)."""
    flat = x.reshape(-1, x.shape[-1])
    return np.where(np.isnan(x), np.nansum(flat, axis=0) / np.maximum(np.sum(~np.isnan(flat), axis=0), 1), x)


