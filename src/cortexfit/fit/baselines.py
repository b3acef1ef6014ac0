"""The two Neural Latents Benchmark baselines: spike smoothing and factor analysis (numpy + scikit-learn).

Both take binned counts ``(trial, time, unit)`` (NaN for unobserved bins), a held-in unit mask and trial
masks, and return expected counts per bin for every unit on every trial.  Held-out units are only ever read on
``train`` trials (fitting) and ``valid`` trials (choosing hyper-parameters); all other trials contribute their
held-in units only, so co-bps on test trials is an honest score.

``smoothing``  Gaussian-smooth each held-in unit per trial; held-in rates are the smoothed counts (floored);
               held-out rates come from a Poisson GLM on the z-scored, square-rooted (or logged) smoothed
               held-in counts (NLB's smoothing baseline).
``fa``         Smooth (and square-root) the held-in units, fit :class:`sklearn.decomposition.FactorAnalysis`
               on train bins, and map the posterior-mean factors to every unit with a Poisson GLM.

Options given as sequences are searched on a grid by the bits per spike of the held-out units on the
``valid`` trials (or on a seeded 20 % of the train trials when there are none, or the held-out units are silent
on them); the GLM fitted on the train trials at the best setting is kept.  The Poisson GLM
(:func:`cortexfit.fit.glm.fit_poisson_glm`) minimises scikit-learn's ``PoissonRegressor`` objective for all units
at once with
L-BFGS.  Smoothing ignores NaN bins (:func:`cortexfit.core.smoothing.gaussian_smooth`); bins with no observed bin
within the kernel take the train mean, and only fully observed bins enter the FA fit and feature scaling.

Examples
--------
>>> import numpy as np
>>> from cortexfit.fit.baselines import BASELINES
>>> rng = np.random.default_rng(0)
>>> rate = 0.2 * (1 + np.sin(np.linspace(0, 6, 50)))[None, :, None] * rng.uniform(0.5, 2, (1, 1, 12))
>>> counts = rng.poisson(np.broadcast_to(rate, (30, 50, 12))).astype(float)
>>> heldin = np.arange(12) < 9
>>> train, valid = np.arange(30) < 20, (np.arange(30) >= 20) & (np.arange(30) < 25)
>>> res = BASELINES["smoothing"](counts, heldin=heldin, train=train, valid=valid, bin_width_s=0.01, seed=0)
>>> res.rates.shape, bool((res.rates > 0).all())
((30, 50, 12), True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from cortexfit.core.errors import ConfigError, FitError
from cortexfit.core.options import parse_options
from cortexfit.core.smoothing import gaussian_smooth
from cortexfit.fit.config import FitConfig
from cortexfit.fit.data import FitData, FitRequest
from cortexfit.fit.glm import fit_poisson_glm, glm_predict
from cortexfit.fit.metrics import bits_per_spike
from cortexfit.fit.outputs import FitResult

TRANSFORMS = ("sqrt", "log", "raw")

__all__ = ["BASELINES", "BaselineResult", "FAConfig", "SmoothingConfig", "fa", "fit_baseline", "smoothing"]


@dataclass
class BaselineResult:
    """Output of a baseline: ``rates`` (trial, time, unit) expected counts per bin (> 0), ``latents``
    (trial, time, k), ``info`` (plain JSON types: chosen options, validation scores) and ``params``
    (numpy arrays that reproduce the prediction, for saving as tensors)."""

    rates: np.ndarray
    latents: np.ndarray
    info: dict[str, Any]
    params: dict[str, np.ndarray] = field(default_factory=dict)


def _grid(name: str, value: Any, cast: type, low: float, low_open: bool = False) -> tuple:
    """Validate a scalar-or-list option; return it as a tuple of ``cast`` values."""
    raw = tuple(value) if isinstance(value, (list, tuple, np.ndarray)) else (value,)
    if not raw:
        raise ConfigError(f"option {name} is an empty list")
    try:
        if cast is int and not all(float(v).is_integer() for v in raw):
            raise ValueError
        values = tuple(cast(v) for v in raw)
    except (TypeError, ValueError):
        raise ConfigError(f"option {name} must be {cast.__name__} or a list of them, got {value!r}") from None
    bad = [v for v in values if not np.isfinite(v) or (v <= low if low_open else v < low)]
    if bad:
        raise ConfigError(f"option {name} must be {'>' if low_open else '>='} {low}, got {bad[0]!r}")
    return values


@dataclass(frozen=True, kw_only=True)
class SmoothingConfig:
    """Options of the smoothing baseline; list-valued options are grid-searched on validation trials.

    ``sigma_ms`` Gaussian kernel s.d.; ``alpha`` L2 penalty of the GLM (sklearn ``PoissonRegressor`` scale,
    on z-scored features); ``transform`` applied to the smoothed held-in counts before z-scoring: ``"sqrt"``
    (default; on MC_Maze_Small it scored slightly above the others), ``"log"`` (``log(x + log_offset)``, the
    NLB script's choice) or ``"raw"``; ``rate_floor`` lower bound of held-in rates; ``max_iter`` L-BFGS
    iterations per GLM fit.
    """

    sigma_ms: float | Sequence[float] = (40.0, 60.0, 80.0)
    alpha: float | Sequence[float] = (0.01, 0.03, 0.1)
    transform: str = "sqrt"
    log_offset: float = 1e-4
    rate_floor: float = 1e-6
    max_iter: int = 500

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma_ms", _grid("sigma_ms", self.sigma_ms, float, 0.0, True))
        object.__setattr__(self, "alpha", _grid("alpha", self.alpha, float, 0.0))
        if self.transform not in TRANSFORMS:
            raise ConfigError(f"option transform must be one of {', '.join(TRANSFORMS)}, got {self.transform!r}")
        _grid("log_offset", self.log_offset, float, 0.0, True)
        _grid("rate_floor", self.rate_floor, float, 0.0, True)
        _grid("max_iter", self.max_iter, int, 1)


@dataclass(frozen=True, kw_only=True)
class FAConfig:
    """Options of the factor-analysis baseline; list-valued options are grid-searched on validation trials.

    ``n_factors`` latent dimensionality; ``sigma_ms`` smoothing before FA; ``sqrt`` square-root transform of
    the smoothed counts; ``alpha`` L2 penalty of the factors-to-units Poisson GLM; ``max_iter`` L-BFGS
    iterations per GLM fit.
    """

    n_factors: int | Sequence[int] = (8, 12, 16)
    sigma_ms: float | Sequence[float] = (40.0, 60.0)
    sqrt: bool = True
    alpha: float | Sequence[float] = (1e-4, 1e-3)
    max_iter: int = 500

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_factors", _grid("n_factors", self.n_factors, int, 1))
        object.__setattr__(self, "sigma_ms", _grid("sigma_ms", self.sigma_ms, float, 0.0, True))
        object.__setattr__(self, "alpha", _grid("alpha", self.alpha, float, 0.0))
        if not isinstance(self.sqrt, (bool, np.bool_)):
            raise ConfigError(f"option sqrt must be true or false, got {self.sqrt!r}")
        _grid("max_iter", self.max_iter, int, 1)


def _config(cls: type, options: dict[str, Any], name: str) -> Any:
    return parse_options(cls, options, where=f"baseline {name!r}")


def _check_inputs(counts, heldin, train, valid, bin_width_s) -> tuple[np.ndarray, ...]:
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 3:
        raise FitError(f"baseline: counts must be (trial, time, unit), got shape {counts.shape}")
    n_tr, _, n_u = counts.shape
    heldin, train, valid = (np.asarray(m) for m in (heldin, train, valid))
    for name, mask, n in (("heldin", heldin, n_u), ("train", train, n_tr), ("valid", valid, n_tr)):
        if mask.dtype != bool or mask.shape != (n,):
            raise FitError(f"baseline: {name} must be a boolean mask of shape ({n},), got {mask.dtype} {mask.shape}")
    if heldin.all() or not heldin.any():
        raise FitError(f"baseline: need both held-in and held-out units, got {int(heldin.sum())} held-in of {n_u}")
    if not train.any():
        raise FitError("baseline: no train trials")
    if (train & valid).any():
        raise FitError(f"baseline: {int((train & valid).sum())} trial(s) are both train and valid")
    if not np.isfinite(counts).any(axis=(1, 2))[train].all():
        raise FitError("baseline: some train trials have no observed bins")
    if not (np.isfinite(bin_width_s) and bin_width_s > 0):
        raise FitError(f"baseline: bin_width_s must be > 0, got {bin_width_s}")
    return counts, heldin, train, valid


def _selection_split(
    train: np.ndarray, valid: np.ndarray, heldout_counts: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """Trials to fit and to score in the grid search: valid, or 20 % of train when valid has no held-out spike."""
    if np.nansum(heldout_counts[valid]) > 0:
        return train, valid, "valid"
    idx = np.flatnonzero(train)
    if idx.size < 2:
        return train, train, "train"
    sel = np.zeros_like(train)
    sel[np.random.default_rng(seed).choice(idx, size=max(1, round(0.2 * idx.size)), replace=False)] = True
    return train & ~sel, sel, "train-holdout"


def _smooth_heldin(counts: np.ndarray, heldin: np.ndarray, sigma_bins: float, train: np.ndarray,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed held-in counts with NaN bins (no observed bin near) set to the train mean, and the
    ``(trial, time)`` mask of bins where every held-in unit had a smoothed value."""
    sm = gaussian_smooth(counts[..., heldin], sigma_bins, axis=1)
    ok = np.isfinite(sm).all(axis=-1)
    if not ok.all():
        mean = np.nan_to_num(np.nanmean(sm[train].reshape(-1, sm.shape[-1]), axis=0))
        sm = np.where(np.isnan(sm), mean, sm)
    return sm, ok


def _search(
    grid: list[tuple], features: Callable[[tuple], np.ndarray], target: np.ndarray,
    fit_rows: np.ndarray, score_rows: np.ndarray, alphas: tuple, max_iter: int,
) -> tuple[tuple, dict[str, float], tuple[np.ndarray, np.ndarray] | None]:
    """Grid search: fit the GLM to ``target`` on ``fit_rows`` trials, score bits/spike on ``score_rows``.

    Returns the best ``(*key, alpha)``, the score of every grid point and the best GLM ``(w, b)``; with a
    single grid point nothing is fitted (``({}, None)``).
    """
    if len(grid) * len(alphas) == 1:
        return (*grid[0], alphas[0]), {}, None
    scores: dict[str, float] = {}
    best, best_score, best_glm = None, -np.inf, None
    for key in tqdm(grid, desc="baseline grid", disable=None, leave=False):
        feat = features(key)
        x_fit = feat[fit_rows].reshape(-1, feat.shape[-1])
        y_fit = target[fit_rows].reshape(-1, target.shape[-1])
        glm = None
        for a in sorted(alphas, reverse=True):  # warm start from strong to weak penalty
            glm = fit_poisson_glm(x_fit, y_fit, alpha=a, init=glm, max_iter=max_iter)
            pred = glm_predict(feat[score_rows], *glm)
            score = bits_per_spike(pred, target[score_rows], label="baseline validation bits/spike")
            scores[" ".join(f"{v:g}" for v in (*key, a))] = score
            if score > best_score:
                best, best_score, best_glm = (*key, a), score, glm
    assert best is not None
    return best, scores, best_glm


def _transform(x: np.ndarray, how: str, log_offset: float) -> np.ndarray:
    """``sqrt``, ``log(x + log_offset)`` or ``raw`` of non-negative smoothed counts."""
    x = np.maximum(x, 0.0)
    return np.sqrt(x) if how == "sqrt" else np.log(x + log_offset) if how == "log" else x


def smoothing(
    counts: np.ndarray, *, heldin: np.ndarray, train: np.ndarray, valid: np.ndarray,
    bin_width_s: float, seed: int = 0, **options: Any,
) -> BaselineResult:
    """NLB spike-smoothing baseline; options are those of :class:`SmoothingConfig`.

    Returns a :class:`BaselineResult` whose ``latents`` are the smoothed held-in counts and whose ``info``
    holds the chosen ``sigma_ms`` and ``alpha`` and the validation bits/spike of each grid point.

    Examples
    --------
    >>> c = np.random.default_rng(1).poisson(0.3, (10, 40, 6)).astype(float)
    >>> r = smoothing(c, heldin=np.arange(6) < 4, train=np.arange(10) < 7, valid=np.arange(10) >= 7,
    ...               bin_width_s=0.01, sigma_ms=50, alpha=0.1)
    >>> r.latents.shape, r.info["sigma_ms"]
    ((10, 40, 4), 50.0)
    """
    cfg = _config(SmoothingConfig, options, "smoothing")
    counts, heldin, train, valid = _check_inputs(counts, heldin, train, valid, bin_width_s)
    target = counts[..., ~heldin]
    fit_rows, score_rows, selected_on = _selection_split(train, valid, target, seed)
    cache: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def smoothed(sigma_ms: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Smoothed held-in counts, z-scored GLM features, and the (mean, sd) used to z-score."""
        if sigma_ms not in cache:
            sm, ok = _smooth_heldin(counts, heldin, sigma_ms / 1000.0 / bin_width_s, train)
            feat = _transform(sm, cfg.transform, cfg.log_offset)
            flat = feat[train[:, None] & ok]
            mu, sd = flat.mean(axis=0), flat.std(axis=0)
            sd = np.where(sd > 1e-12, sd, 1.0)
            cache[sigma_ms] = (sm, (feat - mu) / sd, np.stack([mu, sd]))
        return cache[sigma_ms]

    with threadpool_limits(limits=1, user_api="blas"):  # small matrices: threads only contend
        best, scores, glm = _search([(s,) for s in cfg.sigma_ms], lambda k: smoothed(k[0])[1], target,
                                    fit_rows, score_rows, cfg.alpha, cfg.max_iter)
        sigma, alpha = best
        sm, feat, zscore = smoothed(sigma)
        if glm is None or selected_on != "valid":  # refit on all train trials
            glm = fit_poisson_glm(feat[train].reshape(-1, feat.shape[-1]),
                                  target[train].reshape(-1, target.shape[-1]), alpha=alpha, max_iter=cfg.max_iter)
    w, b = glm
    rates = np.empty(counts.shape)
    rates[..., heldin] = np.maximum(sm, cfg.rate_floor)
    rates[..., ~heldin] = np.maximum(glm_predict(feat, w, b), cfg.rate_floor)
    info = {"baseline": "smoothing", "sigma_ms": float(sigma), "alpha": float(alpha), "transform": cfg.transform,
            "log_offset": cfg.log_offset, "selected_on": selected_on if scores else "none",
            "validation_bps": scores}
    params = {"glm_weight": w, "glm_bias": b, "feature_zscore": zscore, "heldin": heldin.astype(np.int8),
              "sigma_bins": np.asarray(sigma / 1000.0 / bin_width_s)}
    return BaselineResult(rates=rates, latents=sm, info=info, params=params)


def fa(
    counts: np.ndarray, *, heldin: np.ndarray, train: np.ndarray, valid: np.ndarray,
    bin_width_s: float, seed: int = 0, **options: Any,
) -> BaselineResult:
    """Factor-analysis baseline; options are those of :class:`FAConfig`.

    Returns a :class:`BaselineResult` whose ``latents`` are the FA posterior means ``(trial, time,
    n_factors)`` and whose ``info`` holds the chosen options and the validation bits/spike of each grid point.

    Examples
    --------
    >>> c = np.random.default_rng(1).poisson(0.3, (10, 40, 6)).astype(float)
    >>> r = fa(c, heldin=np.arange(6) < 4, train=np.arange(10) < 7, valid=np.arange(10) >= 7,
    ...        bin_width_s=0.01, n_factors=2, sigma_ms=50, alpha=0.1)
    >>> r.latents.shape, r.rates.shape
    ((10, 40, 2), (10, 40, 6))
    """
    from sklearn.decomposition import FactorAnalysis

    cfg = _config(FAConfig, options, "fa")
    counts, heldin, train, valid = _check_inputs(counts, heldin, train, valid, bin_width_s)
    n_in = int(heldin.sum())
    too_many = [k for k in cfg.n_factors if k >= n_in]
    if too_many:
        raise ConfigError(f"option n_factors={too_many[0]} must be below the number of held-in units ({n_in})")
    fit_rows, score_rows, selected_on = _selection_split(train, valid, counts[..., ~heldin], seed)
    smooth_cache: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    fa_cache: dict[tuple, tuple[np.ndarray, Any]] = {}

    def latents(key: tuple) -> np.ndarray:
        sigma, k = key
        if sigma not in smooth_cache:
            sm, ok = _smooth_heldin(counts, heldin, sigma / 1000.0 / bin_width_s, train)
            smooth_cache[sigma] = (_transform(sm, "sqrt" if cfg.sqrt else "raw", 0.0), train[:, None] & ok)
        x, fit_bins = smooth_cache[sigma]
        if key not in fa_cache:
            model = FactorAnalysis(n_components=int(k), random_state=seed)
            model.fit(x[fit_bins])
            z = model.transform(x.reshape(-1, n_in)).reshape(*x.shape[:2], int(k))
            fa_cache[key] = (z, model)
        return fa_cache[key][0]

    with threadpool_limits(limits=1, user_api="blas"):  # small matrices: threads only contend
        best, scores, glm_out = _search(list(product(cfg.sigma_ms, cfg.n_factors)), latents, counts[..., ~heldin],
                                        fit_rows, score_rows, cfg.alpha, cfg.max_iter)
        sigma, k, alpha = best
        z = latents((sigma, k))
        model = fa_cache[(sigma, k)][1]
        # the GLM is separable over units: keep the held-out fit of the search when it used all train trials
        units = heldin if glm_out is not None and selected_on == "valid" else np.ones_like(heldin)
        w, b = np.zeros((int(k), heldin.size)), np.zeros(heldin.size)
        w[:, units], b[units] = fit_poisson_glm(z[train].reshape(-1, int(k)), counts[train][..., units].reshape(
            -1, int(units.sum())), alpha=alpha, max_iter=cfg.max_iter)
        if not units.all():
            assert glm_out is not None
            w[:, ~heldin], b[~heldin] = glm_out
    rates = np.maximum(glm_predict(z, w, b), 1e-9)
    info = {"baseline": "fa", "sigma_ms": float(sigma), "n_factors": int(k), "alpha": float(alpha),
            "sqrt": bool(cfg.sqrt), "selected_on": selected_on if scores else "none", "validation_bps": scores}
    params = {"fa_components": model.components_, "fa_mean": model.mean_,
              "fa_noise_variance": model.noise_variance_, "glm_weight": w, "glm_bias": b,
              "heldin": heldin.astype(np.int8), "sigma_bins": np.asarray(sigma / 1000.0 / bin_width_s)}
    return BaselineResult(rates=rates, latents=z, info=info, params=params)


#: Baselines by name, each ``f(counts, *, heldin, train, valid, bin_width_s, seed, **options) -> BaselineResult``.
BASELINES: dict[str, Callable[..., BaselineResult]] = {"smoothing": smoothing, "fa": fa}


def fit_baseline(data: FitData, cfg: FitConfig, request: FitRequest) -> FitResult:
    """Run the baseline ``request.model`` of :data:`BASELINES` with the forward-prediction bins hidden (NaN).

    co-bps is so scored under the same conditions as the latent models; baselines have no forward model, so
    their ``fp_bps`` is null.

    Examples
    --------
    >>> from cortexfit.core import convention
    >>> from cortexfit.fit.config import load_config
    >>> from cortexfit.fit.data import prepare
    >>> y = np.random.default_rng(0).poisson(0.5, (12, 20, 6)).astype("uint16")
    >>> data = prepare(convention.new_activity(y, time=np.arange(20) * 0.01, bin_width_s=0.01), load_config(), seed=0)
    >>> res = fit_baseline(data, load_config("smoke"), FitRequest(model="fa"))
    >>> res.rates.shape, res.forward
    ((12, 20, 6), False)
    """
    from cortexfit.models import save_baseline

    name = request.model
    if not data.spikes:
        raise FitError(f"{data.source}: baseline {name!r} needs spike counts, found signal {data.signal!r}")
    t0 = time.perf_counter()
    counts = data.nan_spikes()
    counts[:, data.n_enc :] = np.nan
    options = dict(getattr(cfg.baseline, name))
    res = BASELINES[name](counts, heldin=~data.heldout, train=data.split == "train", valid=data.split == "valid",
                          bin_width_s=data.bin_width_s, seed=request.seed, **options)
    seconds = time.perf_counter() - t0
    params = {k: np.asarray(v) for k, v in res.params.items()}
    n_params = int(sum(v.size for k, v in params.items() if k not in ("heldin", "sigma_bins")))
    info = {k: v for k, v in res.info.items() if k != "validation_bps"}

    def save(path: Path) -> None:
        save_baseline(path, name, params, options=info, meta={"dt_s": data.bin_width_s, "mode": "latent"})

    latents = np.asarray(res.latents, dtype="float32")
    return FitResult(rates=np.asarray(res.rates), states=latents, factors=latents if name == "fa" else None,
                     n_params=n_params, epochs=None, seconds=seconds, save_model=save, info=info, forward=False)
