"""The NaN-aware Gaussian smoother every stage uses (metrics, baselines, echo-state inputs, geometry).

Smoothing is a normalised convolution: ``G*(x m) / G*m`` with ``m`` the weight of each bin (1 where observed,
0 where not, or a count of observed trials), so a trial's edges and gaps are averaged over the observed bins
only, and a bin with no observed bin within the kernel stays NaN.

Examples
--------
>>> import numpy as np
>>> gaussian_smooth(np.array([[1.0, np.nan, 3.0]]), 1.0).round(3).tolist()
[[1.238, 2.0, 2.762]]
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from cortexfit.core.errors import ConfigError

#: Below this kernel weight a bin counts as "nothing observed nearby" (NaN).  The kernel is truncated at
#: 4 sigma, so any observed bin within reach contributes at least ~1e-4 / sigma: far above this.
MIN_WEIGHT = 1e-9


def masked_smooth(num: np.ndarray, den: np.ndarray, sigma_bins: float, *, axis: int = 1) -> np.ndarray:
    """``G*num / G*den`` along ``axis``: NaN where ``G*den`` is below :data:`MIN_WEIGHT`.

    ``num`` holds weighted values (zero where unobserved) and ``den`` their weights; ``sigma_bins == 0``
    returns ``num / den``.

    Examples
    --------
    >>> masked_smooth(np.array([[2.0, 0.0, 6.0]]), np.array([[1.0, 0.0, 2.0]]), 0.0).tolist()
    [[2.0, nan, 3.0]]
    """
    if sigma_bins < 0:
        raise ConfigError(f"smoothing sigma must be >= 0 bins, got {sigma_bins}")
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    if sigma_bins > 0:
        num = gaussian_filter1d(num, sigma_bins, axis=axis, mode="constant")
        den = gaussian_filter1d(den, sigma_bins, axis=axis, mode="constant")
    ok = den >= MIN_WEIGHT
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, num / np.where(ok, den, 1.0), np.nan)


def gaussian_smooth(x: np.ndarray, sigma_bins: float, *, axis: int = 1) -> np.ndarray:
    """Gaussian-smooth ``x`` along ``axis``, ignoring NaN bins and renormalising at the edges.

    :func:`scipy.ndimage.gaussian_filter1d` (zero padding, truncated at 4 sigma) of the finite bins,
    divided by the smoothed mask of finite bins.  ``sigma_bins == 0`` returns a float copy.

    Examples
    --------
    >>> gaussian_smooth(np.array([[1.0, 2.0, np.nan]]), 0.0).tolist()
    [[1.0, 2.0, nan]]
    """
    x = np.asarray(x, dtype=float)
    if sigma_bins < 0:
        raise ConfigError(f"smoothing sigma must be >= 0 bins, got {sigma_bins}")
    if sigma_bins == 0:
        return x.copy()
    m = np.isfinite(x)
    return masked_smooth(np.where(m, x, 0.0), m.astype(float), sigma_bins, axis=axis)
