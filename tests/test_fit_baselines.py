"""Smoothing and FA baselines: GLM solver, leakage, options, and co-bps on the real MC_Maze_Small file."""

from __future__ import annotations

import numpy as np
import pytest

from cortexfit.core.errors import ConfigError, FitError
from cortexfit.fit import baselines
from cortexfit.fit.baselines import BASELINES
from cortexfit.fit.metrics import co_bps
from cortexfit.fit.splits import split_trials, split_units

FAST = {"smoothing": {"sigma_ms": (40.0, 80.0), "alpha": (0.01, 0.1)},
        "fa": {"n_factors": (2, 4), "sigma_ms": 50.0, "alpha": (1e-3, 1e-2)}}


@pytest.fixture(scope="module")
def latent_data():
    """Counts from 3 smooth latents driving 30 units (Poisson, 10 ms bins), with masks."""
    rng = np.random.default_rng(0)
    n_trial, n_time, n_unit = 60, 60, 30
    t = np.linspace(0, 1, n_time)
    phase = rng.uniform(0, 2 * np.pi, (n_trial, 1, 1))
    z = np.stack([np.sin(2 * np.pi * t + phase[:, :, 0]), np.cos(3 * np.pi * t + phase[:, :, 0]),
                  np.sin(5 * np.pi * t)[None].repeat(n_trial, 0)], axis=-1)
    rates = np.exp(z @ rng.normal(0, 0.7, (3, n_unit)) - 1.2)
    counts = rng.poisson(rates).astype(float)
    counts[5, 50:, :4] = np.nan  # some unobserved bins
    heldout = split_units(n_unit, 0.25, seed=0)
    split = split_trials(n_trial, (0.6, 0.2, 0.2), seed=0)
    return counts, rates, heldout, split


def _run(name, data, **extra):
    counts, _, heldout, split = data
    kw = {**FAST[name], **extra}
    return BASELINES[name](counts, heldin=~heldout, train=split == "train", valid=split == "valid",
                           bin_width_s=0.01, seed=0, **kw)


@pytest.mark.parametrize("name", ["smoothing", "fa"])
def test_baseline_beats_null_and_never_reads_test_heldout_spikes(name, latent_data):
    counts, rates, heldout, split = latent_data
    res = _run(name, latent_data)
    assert res.rates.shape == counts.shape and np.all(np.isfinite(res.rates)) and np.all(res.rates > 0)
    assert res.latents.shape[:2] == counts.shape[:2]
    te = split == "test"
    score = co_bps(res.rates[te][..., heldout], counts[te][..., heldout])
    oracle = co_bps(rates[te][..., heldout], counts[te][..., heldout])
    assert 0.05 < score < oracle
    assert res.info["selected_on"] == "valid" and len(res.info["validation_bps"]) == 4
    # scrambling held-out spikes on test trials changes nothing; the same seed gives the same rates
    leaked = counts.copy()
    leaked[np.ix_(te, np.ones(counts.shape[1], bool), heldout)] = 9.0
    again = _run(name, (leaked, rates, heldout, split))
    assert np.array_equal(again.rates, res.rates)


def test_fa_fits_all_units_and_selection_without_valid(latent_data):
    counts, _, heldout, split = latent_data
    res = BASELINES["fa"](counts, heldin=~heldout, train=split != "test", valid=np.zeros(len(split), bool),
                          bin_width_s=0.01, seed=1, n_factors=(2, 3), sigma_ms=50.0, alpha=1e-3)
    assert res.info["selected_on"] == "train-holdout" and res.info["n_factors"] in (2, 3)
    assert res.params["glm_weight"].shape == (res.info["n_factors"], counts.shape[2])
    single = _run("smoothing", latent_data, sigma_ms=50.0, alpha=0.1)
    assert single.info["selected_on"] == "none" and single.info["validation_bps"] == {}
    heldin_rates = single.rates[..., ~heldout]
    assert np.allclose(heldin_rates, np.maximum(single.latents, 1e-6))


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("smoothing", {"sigma": 3}, r"unknown option\(s\) sigma; valid options: .*sigma_ms"),
        ("smoothing", {"sigma_ms": -5.0}, "sigma_ms must be > 0"),
        ("smoothing", {"transform": "exp"}, "transform must be one of"),
        ("fa", {"n_factors": 2.5}, "n_factors must be int"),
        ("fa", {"n_factors": 40}, "below the number of held-in units"),
        ("fa", {"alpha": []}, "empty"),
    ],
)
def test_bad_options_raise_config_error(name, options, match, latent_data):
    counts, _, heldout, split = latent_data
    with pytest.raises(ConfigError, match=match):
        BASELINES[name](counts, heldin=~heldout, train=split == "train", valid=split == "valid",
                        bin_width_s=0.01, seed=0, **options)


def test_bad_masks_raise_fit_error(latent_data):
    counts, _, heldout, split = latent_data
    tr = split == "train"
    with pytest.raises(FitError, match="held-in and held-out"):
        baselines.smoothing(counts, heldin=np.ones(30, bool), train=tr, valid=~tr, bin_width_s=0.01)
    with pytest.raises(FitError, match="boolean mask"):
        baselines.smoothing(counts, heldin=~heldout, train=tr.astype(int), valid=~tr, bin_width_s=0.01)
    with pytest.raises(FitError, match="both train and valid"):
        baselines.smoothing(counts, heldin=~heldout, train=tr, valid=tr, bin_width_s=0.01)


@pytest.mark.realdata
def test_mc_maze_small_co_bps(shared_data):
    """Seeded 25 % held-out units, 60/20/20 trials, 5 ms bins, move onset -250..+450 ms."""
    from cortexfit import ingest

    ds = ingest.ingest_nwb(shared_data / "sub-Jenkins_ses-small_desc-test_ecephys.nwb", bin_ms=5,
                           align="move_onset_time", window_ms=(-250, 450))
    counts = np.where(ds.valid.values > 0, ds.activity.values.astype(float), np.nan)
    heldout = split_units(counts.shape[2], 0.25, seed=0)
    split = split_trials(counts.shape[0], (0.6, 0.2, 0.2), seed=0)
    te = split == "test"
    scores = {}
    for name, fn in BASELINES.items():
        res = fn(counts, heldin=~heldout, train=split == "train", valid=split == "valid",
                 bin_width_s=float(ds.attrs["bin_width_s"]), seed=0)
        scores[name] = co_bps(res.rates[te][..., heldout], counts[te][..., heldout])
    assert scores["smoothing"] > 0.05, scores
    assert scores["fa"] > 0.05, scores
