"""Neural Latents Benchmark metrics: bits per spike (co-bps, fp-bps), velocity R2 and PSTH R2.

Definitions follow ``nlb_tools.evaluation`` (Pei et al. 2021), re-implemented here on numpy arrays:

* **bits per spike** -- ``(NLL_null - NLL_model) / (n_spikes * ln 2)`` with the Poisson negative
  log-likelihood ``NLL = sum(r - y ln r + ln y!)`` over the evaluated bins.  The null model predicts each
  neuron's mean count per bin over *all evaluated bins* (last axis = neuron); NaN spike bins are not
  evaluated.  As in nlb, a null rate of exactly 0 (a silent neuron) is replaced by 1e-9.  Unlike nlb, which
  warns and substitutes 1e-9 for zero model rates, a model rate that is <= 0 or not finite in an evaluated bin
  raises :class:`~cortexfit.core.errors.FitError`, and so do evaluated spikes that sum to zero.
* **co-bps** -- bits per spike of the held-out units on test trials; **fp-bps** -- the same formula on the
  forward-prediction bins (held-in and held-out units together, as nlb does).
* **velocity R2** -- ridge regression from rates at bin ``t`` to velocity at bin ``t + lag_bins`` fitted on
  train trials with the penalty chosen by 5-fold :class:`~sklearn.model_selection.GridSearchCV` over
  ``logspace(-4, 0, 9)`` (nlb's ``fit_and_eval_decoder``), scored on test trials with ``r2_score``.  nlb
  scores with ``decoder.score``, i.e. the *unweighted* mean of the per-channel R2 (``multioutput=
  "uniform_average"``); that is the default here, ``"variance_weighted"`` is available.
* **PSTH R2** -- nlb's ``eval_psth``: per condition, the trial-averaged predicted rates of the evaluated
  trials against the true PSTH (condition mean of Gaussian-smoothed spikes), rows of all conditions stacked,
  ``r2_score`` per neuron and then **averaged over neurons** (uniform).  nlb smooths the 1 ms spike train of
  the whole session (kernel 70 ms for MC_Maze) before binning; here binned spikes are smoothed per trial
  with a NaN- and edge-aware Gaussian (:func:`cortexfit.core.smoothing.gaussian_smooth`), so values differ
  slightly at trial edges.

Numpy in, Python floats out; this module does not import torch.

Examples
--------
>>> import numpy as np
>>> from cortexfit.fit import metrics
>>> spikes = np.array([[[0.0], [2.0], [1.0]]])          # 1 trial, 3 bins, 1 neuron
>>> round(metrics.bits_per_spike(np.array([[[0.1], [2.0], [0.9]]]), spikes), 4)
0.616
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import gammaln

from cortexfit.core.errors import FitError
from cortexfit.core.smoothing import gaussian_smooth

__all__ = ["bits_per_spike", "co_bps", "compute_metrics", "fp_bps", "poisson_nll", "psth_r2", "velocity_r2"]

if TYPE_CHECKING:
    from cortexfit.fit.data import FitData

log = logging.getLogger(__name__)

NULL_RATE_FLOOR = 1e-9  # nlb's replacement for zero null rates
DEFAULT_RIDGE_ALPHAS = tuple(np.logspace(-4, 0, 9))


def _evaluated(rates: np.ndarray, spikes: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (rates, spikes) on evaluated (non-NaN spike) bins, checking shapes and rate positivity."""
    rates = np.asarray(rates, dtype=float)
    spikes = np.asarray(spikes, dtype=float)
    if rates.shape != spikes.shape:
        raise FitError(f"{label}: rates shape {rates.shape} differs from spikes shape {spikes.shape}")
    keep = ~np.isnan(spikes)
    r = rates[keep]
    if not np.all(np.isfinite(r)):
        raise FitError(f"{label}: {int((~np.isfinite(r)).sum())} rate predictions are NaN or infinite in evaluated bins")
    if np.any(r <= 0):
        raise FitError(f"{label}: {int((r <= 0).sum())} rate predictions are <= 0 in evaluated bins (need > 0)")
    return r, spikes[keep]


def poisson_nll(rates: np.ndarray, spikes: np.ndarray, *, label: str = "poisson_nll") -> float:
    """Total Poisson negative log-likelihood ``sum(r - y ln r + ln y!)`` over bins where spikes are not NaN.

    Parameters
    ----------
    rates : numpy.ndarray
        Expected counts per bin (> 0 where evaluated), same shape as ``spikes``.
    spikes : numpy.ndarray
        Observed counts; NaN marks bins that are not evaluated.
    label : str
        Name used in error messages.

    Returns
    -------
    float
        The summed negative log-likelihood (nats).

    Examples
    --------
    >>> round(poisson_nll(np.array([1.0, 2.0]), np.array([0.0, 2.0])), 4)
    2.3069
    """
    r, y = _evaluated(rates, spikes, label)
    return float(np.sum(r - y * np.log(r) + gammaln(y + 1.0)))


def bits_per_spike(rates: np.ndarray, spikes: np.ndarray, *, label: str = "bits/spike") -> float:
    """Bits per spike of ``rates`` against each neuron's mean rate over the evaluated bins.

    Parameters
    ----------
    rates : numpy.ndarray
        Expected counts per bin, shape ``(..., neuron)``; must be finite and > 0 where ``spikes`` is not NaN.
    spikes : numpy.ndarray
        Observed counts, same shape; NaN bins are ignored (also when fitting the null rates).
    label : str
        Name used in error messages (``"co-bps"``, ``"fp-bps"``...).

    Returns
    -------
    float
        ``(NLL_null - NLL_model) / (total spikes * ln 2)``.

    Raises
    ------
    FitError
        If shapes differ, a rate is <= 0 or non-finite in an evaluated bin, or there are no spikes.

    Examples
    --------
    >>> y = np.array([[0.0, 1.0], [2.0, 1.0]])          # 2 bins x 2 neurons
    >>> round(bits_per_spike(np.array([[0.5, 1.0], [1.5, 1.0]]), y), 4)
    0.2925
    """
    r, y = _evaluated(rates, spikes, label)
    spikes = np.asarray(spikes, dtype=float)
    total = float(y.sum())
    if not total > 0:
        raise FitError(f"{label}: the evaluated units have no spikes in the evaluated bins (cannot divide by 0)")
    keep = ~np.isnan(spikes)
    with np.errstate(invalid="ignore", divide="ignore"):
        counts = keep.reshape(-1, spikes.shape[-1]).sum(axis=0)
        null = np.nansum(spikes.reshape(-1, spikes.shape[-1]), axis=0) / counts
    null = np.where(null == 0, NULL_RATE_FLOOR, null)
    r0 = np.broadcast_to(null, spikes.shape)[keep]
    nll_model = np.sum(r - y * np.log(r) + gammaln(y + 1.0))
    nll_null = np.sum(r0 - y * np.log(r0) + gammaln(y + 1.0))
    return float((nll_null - nll_model) / total / np.log(2.0))


def co_bps(rates_heldout: np.ndarray, spikes_heldout: np.ndarray) -> float:
    """Co-smoothing bits per spike: :func:`bits_per_spike` of held-out units on evaluation trials.

    Examples
    --------
    >>> y = np.array([[[1.0], [0.0], [3.0]]])
    >>> co_bps(np.full_like(y, 4 / 3), y)                # the null model itself scores 0
    0.0
    """
    return bits_per_spike(rates_heldout, spikes_heldout, label="co-bps")


def fp_bps(rates_fp: np.ndarray, spikes_fp: np.ndarray) -> float:
    """Forward-prediction bits per spike: :func:`bits_per_spike` on the forward-prediction bins.

    nlb pools held-in and held-out units here; pass ``(trial, fp_time, unit)`` arrays of all units.

    Examples
    --------
    >>> y = np.array([[[1.0, 0.0], [0.0, 2.0]]])
    >>> round(fp_bps(np.array([[[0.9, 0.1], [0.1, 1.9]]]), y), 3)
    0.9
    """
    return bits_per_spike(rates_fp, spikes_fp, label="fp-bps")


def _trial_mask(mask: np.ndarray | None, n: int, name: str) -> np.ndarray:
    if mask is None:
        return np.ones(n, dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (n,):
        raise FitError(f"{name} must be a boolean mask of shape ({n},), got dtype {mask.dtype} shape {mask.shape}")
    return mask


def _lagged_rows(rates: np.ndarray, velocity: np.ndarray, lag: int, trials: np.ndarray,
                 rate_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pair rates at bin t (t < ``rate_bins``) with velocity at bin t + lag inside each trial; drop NaN velocity."""
    n_t = rates.shape[1]
    start = max(0, -lag)
    stop = min(n_t - max(0, lag), n_t if rate_bins is None else int(rate_bins))
    x = rates[trials][:, start:stop]
    y = velocity[trials][:, start + lag : stop + lag]
    x = x.reshape(-1, rates.shape[2])
    y = y.reshape(-1, velocity.shape[2])
    ok = ~np.isnan(y).any(axis=1)
    x, y = x[ok], y[ok]
    if not np.all(np.isfinite(x)):
        raise FitError("velocity R2: rate predictions are NaN or infinite where velocity is defined")
    return x, y


def velocity_r2(
    rates: np.ndarray,
    velocity: np.ndarray,
    *,
    train: np.ndarray,
    test: np.ndarray,
    lag_bins: int = 0,
    alphas: Sequence[float] = DEFAULT_RIDGE_ALPHAS,
    cv: int = 5,
    multioutput: str = "uniform_average",
    rate_bins: int | None = None,
) -> float:
    """R2 of a ridge decoder from rates to (lagged) velocity, fitted on train trials, scored on test trials.

    Parameters
    ----------
    rates : numpy.ndarray
        ``(trial, time, unit)`` predicted rates (all units).
    velocity : numpy.ndarray
        ``(trial, time, channel)`` behaviour, e.g. hand velocity x/y; NaN rows are dropped.
    train, test : numpy.ndarray
        Boolean ``(trial,)`` masks of decoder-training and scored trials.
    lag_bins : int
        Behaviour lag: rates at bin ``t`` predict velocity at bin ``t + lag_bins`` of the same trial (nlb uses
        +100 ms for MC_Maze, i.e. 20 bins at 5 ms); bins without a partner are dropped.
    alphas : sequence of float
        Ridge penalties searched by ``GridSearchCV(Ridge(), cv=cv)`` on the train rows (unshuffled K-fold).
    cv : int
        Number of cross-validation folds.
    multioutput : {"uniform_average", "variance_weighted"}
        How per-channel R2 values are combined (nlb: uniform).
    rate_bins : int, optional
        Only rates of the first ``rate_bins`` bins are used (the evaluation window; nlb decodes from the rates
        of its eval window).  Default: all bins.

    Returns
    -------
    float
        R2 on the test rows.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> r = rng.random((20, 10, 3)); v = r[..., :2] * 2.0
    >>> m = np.arange(20) < 15
    >>> velocity_r2(r, v, train=m, test=~m) > 0.99
    True
    """
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GridSearchCV

    rates = np.asarray(rates, dtype=float)
    velocity = np.asarray(velocity, dtype=float)
    if rates.ndim != 3 or velocity.ndim != 3 or rates.shape[:2] != velocity.shape[:2]:
        raise FitError(f"velocity R2: rates {rates.shape} and velocity {velocity.shape} must be (trial, time, *) alike")
    n_rate = rates.shape[1] if rate_bins is None else min(int(rate_bins), rates.shape[1])
    if abs(int(lag_bins)) >= n_rate:
        raise FitError(f"velocity R2: a lag of {lag_bins} bins leaves no bins in a window of {n_rate} bins")
    if multioutput not in ("uniform_average", "variance_weighted"):
        raise FitError(f"velocity R2: multioutput must be 'uniform_average' or 'variance_weighted', got {multioutput!r}")
    tr = _trial_mask(train, rates.shape[0], "train")
    te = _trial_mask(test, rates.shape[0], "test")
    x_tr, y_tr = _lagged_rows(rates, velocity, int(lag_bins), tr, rate_bins)
    x_te, y_te = _lagged_rows(rates, velocity, int(lag_bins), te, rate_bins)
    if len(x_tr) < cv or len(x_te) < 2:
        raise FitError(f"velocity R2: too few bins with velocity (train {len(x_tr)}, test {len(x_te)})")
    decoder = GridSearchCV(Ridge(), {"alpha": np.asarray(alphas, dtype=float)}, cv=cv)
    decoder.fit(x_tr, y_tr)
    return float(r2_score(y_te, decoder.predict(x_te), multioutput=multioutput))


def psth_r2(
    rates: np.ndarray,
    spikes: np.ndarray,
    conditions: Sequence | np.ndarray,
    *,
    sigma_bins: float,
    eval_trials: np.ndarray | None = None,
    psth_trials: np.ndarray | None = None,
    eval_bins: int | None = None,
) -> float:
    """R2 between predicted and true condition-averaged rates (PSTHs), averaged over neurons.

    Parameters
    ----------
    rates : numpy.ndarray
        ``(trial, time, unit)`` predicted expected counts per bin.
    spikes : numpy.ndarray
        ``(trial, time, unit)`` observed counts, NaN where not observed.
    conditions : array-like
        ``(trial,)`` condition label per trial.
    sigma_bins : float
        Standard deviation (in bins) of the Gaussian that smooths spikes before averaging (nlb: 70 ms).
    eval_trials : numpy.ndarray, optional
        Boolean ``(trial,)`` mask of trials whose predicted rates are averaged (default all).
    psth_trials : numpy.ndarray, optional
        Boolean mask of trials whose smoothed spikes form the true PSTH (default all; nlb uses every trial
        of the condition, train and test alike).
    eval_bins : int, optional
        Score only the first ``eval_bins`` bins (the evaluation window); spikes are smoothed over the whole
        trial first, as nlb smooths the continuous recording.  Default: all bins.

    Returns
    -------
    float
        ``r2_score`` over the stacked (condition, time) rows, uniform mean over neurons.  Conditions without
        evaluated trials are skipped; rows where the true PSTH is NaN are dropped.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> cond = np.repeat([0, 1], 10)
    >>> truth = np.where(cond[:, None, None] == 0, 1.0, 3.0) * np.linspace(0.2, 1, 30)[None, :, None]
    >>> y = rng.poisson(np.broadcast_to(truth, (20, 30, 2))).astype(float)
    >>> psth_r2(np.broadcast_to(truth, y.shape), y, cond, sigma_bins=3) > 0.8
    True
    """
    from sklearn.metrics import r2_score

    rates = np.asarray(rates, dtype=float)
    spikes = np.asarray(spikes, dtype=float)
    cond = np.asarray(conditions)
    if rates.shape != spikes.shape or rates.ndim != 3 or cond.shape != rates.shape[:1]:
        raise FitError(
            f"PSTH R2: rates {rates.shape}, spikes {spikes.shape} and conditions {cond.shape} must be "
            "(trial, time, unit), (trial, time, unit) and (trial,)"
        )
    ev = _trial_mask(eval_trials, rates.shape[0], "eval_trials")
    ps = _trial_mask(psth_trials, rates.shape[0], "psth_trials")
    smooth = gaussian_smooth(spikes, sigma_bins, axis=1)
    if eval_bins is not None:
        smooth, rates = smooth[:, : int(eval_bins)], rates[:, : int(eval_bins)]
    true_rows, pred_rows = [], []
    for c in np.unique(cond):
        in_c = cond == c
        if not (in_c & ev).any() or not (in_c & ps).any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins -> NaN, dropped below
            true = np.nanmean(smooth[in_c & ps], axis=0)
        pred = rates[in_c & ev].mean(axis=0)
        keep = ~np.isnan(true).any(axis=1)
        if not np.all(np.isfinite(pred[keep])):
            raise FitError(f"PSTH R2: rate predictions are NaN or infinite in condition {c!r}")
        true_rows.append(true[keep])
        pred_rows.append(pred[keep])
    if not true_rows or sum(len(t) for t in true_rows) < 2:
        raise FitError("PSTH R2: no condition has both evaluated trials and observed bins")
    return float(r2_score(np.vstack(true_rows), np.vstack(pred_rows)))


def velocity_lag_bins(vel_lag_ms: float, bin_width_s: float) -> int:
    """The behavioural lag in bins (rounded).

    >>> velocity_lag_bins(100.0, 0.005)
    20
    """
    return int(round(vel_lag_ms / 1000.0 / bin_width_s))


def _safe(fn: Callable[[], float], name: str) -> float | None:
    try:
        v = float(fn())
    except FitError as exc:
        log.warning("%s not computed: %s", name, exc)
        return None
    return v if np.isfinite(v) else None


def compute_metrics(data: FitData, rates: np.ndarray, *, forward: bool = True, vel_lag_ms: float = 100.0,
                    psth_sigma_ms: float = 70.0) -> dict[str, float | None]:
    """co_bps, fp_bps (when ``forward``), vel_r2 and psth_r2 of predicted ``rates`` (null where not applicable).

    As ``nlb_tools.evaluation.evaluate`` scores a submission: co_bps on held-out units, test trials, the
    evaluation (encoder) window; fp_bps on all units, test trials, the forward-prediction bins; psth_r2 on
    all units (held-in and held-out), test trials, the evaluation window (needs >= 2 conditions; spikes
    smoothed with ``psth_sigma_ms`` over the whole trial); vel_r2 from all units' rates in the evaluation
    window to velocity ``vel_lag_ms`` later, decoder fitted on train trials and scored on test trials
    (:func:`cortexfit.fit.data.prepare` has already refused a lag that does not fit the window).

    Examples
    --------
    >>> from cortexfit.core import convention
    >>> from cortexfit.fit.config import load_config
    >>> from cortexfit.fit.data import prepare
    >>> y = np.random.default_rng(0).poisson(0.5, (12, 20, 6)).astype("uint16")
    >>> data = prepare(convention.new_activity(y, time=np.arange(20) * 0.01, bin_width_s=0.01), load_config(), seed=0)
    >>> m = compute_metrics(data, np.full(y.shape, 0.5))
    >>> abs(m["co_bps"]) < 0.2, m["vel_r2"]
    (True, None)
    """
    out: dict[str, float | None] = {"co_bps": None, "fp_bps": None, "vel_r2": None, "psth_r2": None}
    te, tr = data.split == "test", data.split == "train"
    spikes = data.nan_spikes()
    if data.spikes:
        ho = data.heldout
        out["co_bps"] = co_bps(rates[te][:, : data.n_enc][..., ho], spikes[te][:, : data.n_enc][..., ho])
        if data.n_fp > 0 and forward:
            out["fp_bps"] = _safe(lambda: fp_bps(rates[te][:, data.n_enc :], spikes[te][:, data.n_enc :]),
                                  "fp_bps")
        cond = data.conditions
        if cond is not None and len(np.unique(cond)) > 1:
            sigma = psth_sigma_ms / 1000.0 / data.bin_width_s
            out["psth_r2"] = _safe(lambda: psth_r2(rates, spikes, cond, sigma_bins=sigma, eval_trials=te,
                                                   eval_bins=data.n_enc), "psth_r2")
    vel = data.velocity
    if vel is not None:
        lag = velocity_lag_bins(vel_lag_ms, data.bin_width_s)
        out["vel_r2"] = _safe(lambda: velocity_r2(rates, vel, train=tr, test=te, lag_bins=lag, rate_bins=data.n_enc),
                              "vel_r2")
    return out
