"""NLB metrics: hand-computed tiny cases, cross-checks against nlb_tools, and the seeded splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import gammaln

from cortexfit.core.errors import CortexfitError, FitError
from cortexfit.fit import metrics


def _nll(rates, spikes):
    return sum(r - y * math.log(r) + gammaln(y + 1) for r, y in zip(rates, spikes))


def test_poisson_nll_by_hand():
    rates, spikes = [0.5, 1.2, 2.0], [0.0, 1.0, 3.0]
    got = metrics.poisson_nll(np.array(rates), np.array(spikes))
    assert got == pytest.approx(_nll(rates, spikes), abs=1e-12)


def test_bits_per_spike_by_hand_one_neuron():
    spikes = [0.0, 2.0, 1.0]
    rates = [0.2, 1.8, 0.9]
    null = [sum(spikes) / 3] * 3  # per-neuron mean over the evaluated bins
    expected = (_nll(null, spikes) - _nll(rates, spikes)) / sum(spikes) / math.log(2)
    got = metrics.bits_per_spike(np.array(rates)[None, :, None], np.array(spikes)[None, :, None])
    assert got == pytest.approx(expected, abs=1e-12)
    assert got > 0


def test_bits_per_spike_ignores_nan_bins_and_fits_null_per_neuron():
    spikes = np.array([[0.0, 4.0], [2.0, np.nan], [1.0, 0.0]])  # (bin, neuron)
    rates = np.array([[0.5, 3.0], [1.5, -7.0], [1.0, 0.5]])  # the NaN bin's rate is never read
    n0 = _nll([1.0] * 3, [0.0, 2.0, 1.0]) + _nll([2.0] * 2, [4.0, 0.0])
    n1 = _nll([0.5, 1.5, 1.0], [0.0, 2.0, 1.0]) + _nll([3.0, 0.5], [4.0, 0.0])
    assert metrics.bits_per_spike(rates, spikes) == pytest.approx((n0 - n1) / 7 / math.log(2), abs=1e-12)
    # the null model scores exactly zero; co_bps and fp_bps are the same formula
    null = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    assert metrics.co_bps(null, spikes) == pytest.approx(0.0, abs=1e-12)
    assert metrics.fp_bps(rates, spikes) == metrics.bits_per_spike(rates, spikes)


@pytest.mark.parametrize(
    ("rates", "spikes", "match"),
    [
        ([1.0, 0.0], [1.0, 0.0], "<= 0"),
        ([1.0, -1.0], [1.0, 0.0], "<= 0"),
        ([1.0, np.nan], [1.0, 0.0], "NaN or infinite"),
        ([1.0, np.inf], [1.0, 0.0], "NaN or infinite"),
        ([1.0, 1.0], [0.0, 0.0], "no spikes"),
        ([1.0, 1.0], [np.nan, np.nan], "no spikes"),
        ([1.0, 1.0, 1.0], [1.0, 0.0], "shape"),
    ],
)
def test_bits_per_spike_rejects_bad_input(rates, spikes, match):
    with pytest.raises(FitError, match=match) as err:
        metrics.co_bps(np.array(rates)[:, None], np.array(spikes)[:, None])
    assert isinstance(err.value, CortexfitError) and "co-bps" in str(err.value)


def test_bits_per_spike_matches_nlb_tools():
    ev = pytest.importorskip("nlb_tools.evaluation")
    rng = np.random.default_rng(0)
    truth = rng.gamma(2.0, 0.1, size=(12, 30, 7))
    spikes = rng.poisson(truth).astype(float)
    spikes[:, :, 3] = 0.0  # a silent neuron: both use a 1e-9 null rate
    spikes[2, 5:9, :] = np.nan
    rates = truth * rng.uniform(0.7, 1.3, truth.shape)
    assert metrics.bits_per_spike(rates, spikes) == pytest.approx(ev.bits_per_spike(rates.copy(), spikes), abs=1e-9)
    flat = (rates.reshape(-1, 7), spikes.reshape(-1, 7))
    assert metrics.co_bps(*flat) == pytest.approx(ev.bits_per_spike(flat[0].copy(), flat[1]), abs=1e-9)


def _velocity_case(seed=0, lag=3):
    rng = np.random.default_rng(seed)
    rates = rng.gamma(2.0, 0.5, size=(40, 25, 6))
    velocity = np.full((40, 25, 2), np.nan)
    velocity[:, lag:] = rates[:, :-lag, :2] @ np.array([[1.0, -0.5], [0.3, 2.0]])
    velocity[:, lag:] += rng.normal(0, 0.3, size=(40, 25 - lag, 2))
    return rates, velocity


def test_velocity_r2_uses_the_lag_and_matches_nlb_decoder():
    rates, velocity = _velocity_case(lag=3)
    train = np.arange(40) < 30
    r2 = metrics.velocity_r2(rates, velocity, train=train, test=~train, lag_bins=3)
    assert r2 > 0.8
    assert metrics.velocity_r2(rates, velocity, train=train, test=~train, lag_bins=0) < r2 - 0.3
    weighted = metrics.velocity_r2(rates, velocity, train=train, test=~train, lag_bins=3,
                                   multioutput="variance_weighted")
    assert weighted != r2 and weighted > 0.8
    ev = pytest.importorskip("nlb_tools.evaluation")
    # nlb pairs rates with behaviour already shifted by the lag and drops NaN rows
    x_tr, y_tr = rates[train, :-3].reshape(-1, 6), velocity[train, 3:].reshape(-1, 2)
    x_te, y_te = rates[~train, :-3].reshape(-1, 6), velocity[~train, 3:].reshape(-1, 2)
    assert r2 == pytest.approx(ev.fit_and_eval_decoder(x_tr, y_tr, x_te, y_te), abs=1e-9)


def test_velocity_r2_errors():
    rates, velocity = _velocity_case()
    train = np.arange(40) < 30
    with pytest.raises(FitError, match="lag"):
        metrics.velocity_r2(rates, velocity, train=train, test=~train, lag_bins=25)
    bad = rates.copy()
    bad[35, 10, 0] = np.nan
    with pytest.raises(FitError, match="NaN"):
        metrics.velocity_r2(bad, velocity, train=train, test=~train, lag_bins=3)


def test_psth_r2_by_hand_and_against_nlb():
    rng = np.random.default_rng(1)
    cond = np.repeat(["a", "b", "c"], 8)
    shape = np.stack([np.sin(np.linspace(0, k + 1, 40)) + 1.5 for k in range(3)])  # (cond, time)
    truth = shape[np.repeat([0, 1, 2], 8)][:, :, None] * np.array([0.3, 0.8])  # (trial, time, 2)
    spikes = rng.poisson(truth).astype(float)
    rates = truth * rng.uniform(0.8, 1.2, truth.shape)
    ev = np.arange(24) % 2 == 0
    got = metrics.psth_r2(rates, spikes, cond, sigma_bins=3.0, eval_trials=ev)
    # by hand: true PSTH = condition mean of smoothed spikes (all trials), prediction = mean rates on ev
    sm = metrics.gaussian_smooth(spikes, 3.0, axis=1)
    true = np.concatenate([sm[cond == c].mean(0) for c in "abc"])
    pred = np.concatenate([rates[(cond == c) & ev].mean(0) for c in "abc"])
    per_neuron = 1 - ((true - pred) ** 2).sum(0) / ((true - true.mean(0)) ** 2).sum(0)
    assert got == pytest.approx(per_neuron.mean(), abs=1e-12)
    assert metrics.psth_r2(true.reshape(3, 40, 2)[np.repeat([0, 1, 2], 8)], spikes, cond, sigma_bins=3.0) == 1.0
    evaluation = pytest.importorskip("nlb_tools.evaluation")
    idx = [np.flatnonzero(cond[ev] == c) for c in "abc"]
    assert got == pytest.approx(evaluation.eval_psth(true.reshape(3, 40, 2), rates[ev], idx), abs=1e-9)


def test_psth_r2_errors():
    with pytest.raises(FitError, match="conditions"):
        metrics.psth_r2(np.ones((4, 5, 2)), np.ones((4, 5, 2)), [0, 1], sigma_bins=1.0)




def test_psth_and_velocity_r2_score_the_evaluation_window_and_all_units():
    """As nlb_tools' evaluate: PSTH R2 over held-in + held-out units, both metrics over the evaluation window."""
    from cortexfit.fit.config import load_config
    from cortexfit.fit.data import prepare
    from fit_factory import condition_activity

    ds, rates = condition_activity()
    data = prepare(ds, load_config(), seed=0)
    base = metrics.compute_metrics(data, rates, psth_sigma_ms=20.0)
    assert base["psth_r2"] > 0.8  # the true rates
    # the forward-prediction bins are not part of either score
    junk = rates.copy()
    junk[:, data.n_enc :] = np.random.default_rng(1).uniform(0.01, 5.0, junk[:, data.n_enc :].shape)
    moved = metrics.compute_metrics(data, junk, psth_sigma_ms=20.0)
    assert moved["psth_r2"] == base["psth_r2"] and moved["vel_r2"] == base["vel_r2"]
    assert moved["fp_bps"] != base["fp_bps"]
    # held-in units count in PSTH R2: ruining them lowers it
    bad_heldin = rates.copy()
    bad_heldin[..., ~data.heldout] = bad_heldin[..., ~data.heldout].mean()
    assert metrics.compute_metrics(data, bad_heldin, psth_sigma_ms=20.0)["psth_r2"] < base["psth_r2"] - 0.1


def test_a_velocity_lag_that_does_not_fit_is_an_error():
    from cortexfit.fit.config import load_config
    from cortexfit.fit.data import prepare
    from fit_factory import condition_activity

    ds, _ = condition_activity(n_time=40)
    with pytest.raises(FitError, match=r"train.vel_lag_ms = 300 ms is 30 bins, which does not fit the 32-bin"):
        prepare(ds, load_config({"train": {"vel_lag_ms": 300.0}}), seed=0)
    assert prepare(ds, load_config({"train": {"vel_lag_ms": 150.0}}), seed=0).velocity is not None
