"""Tests for cortexfit.simulate.reach: rotational reach recordings, their NWB layout and ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import nwb_factory as F
from cortexfit import simulate
from cortexfit.core import convention
from cortexfit.core.errors import ConfigError
from cortexfit.simulate.reach import ReachConfig, rotation_matrix, simulate_reach


@pytest.fixture(scope="module")
def reach(tmp_path_factory):
    out = tmp_path_factory.mktemp("reach") / "reach.nwb"
    simulate.run("reach", out, seed=0)  # defaults: the trial count a user gets
    return out


def test_reach_nwb_layout(reach):
    io, nwb = F.read_pynwb(reach)
    with io:
        trials = nwb.trials.to_dataframe()
        assert len(trials) >= 100
        for col in ("condition", "reach_angle", "go_cue_time", "move_onset_time", "start_time", "stop_time"):
            assert col in trials.columns
        assert trials["condition"].nunique() == 8
        assert np.all(trials["move_onset_time"] > trials["go_cue_time"])
        assert np.all(trials["start_time"].values[1:] > trials["stop_time"].values[:-1])  # gaps between trials
        assert np.all(trials["stop_time"] > trials["start_time"])
        units = nwb.units.to_dataframe()
        assert len(units) == 100
        locations = nwb.electrodes.to_dataframe()["location"]
        assert sorted(locations.unique()) == ["M1", "PMd"] and (locations == "PMd").sum() == 50
        assert set(nwb.electrode_groups) == {"PMd_array", "M1_array"}
        rows = [int(e.index[0]) for e in units["electrodes"]]
        assert list(locations.iloc[rows]) == list(units["area"])
        last_stop = trials["stop_time"].max()
        assert all(iv[0][0] == 0 and iv[0][1] > last_stop for iv in units["obs_intervals"])
        rates = F.unit_rates(nwb)
        assert np.all((rates >= 5) & (rates <= 30)), (rates.min(), rates.max())
        hand = nwb.processing["behavior"]["Position"]["hand_position"]
        assert hand.data.shape[1] == 2
        # the hand is at the centre before movement onset and far from it 0.4 s later
        pos, t = np.asarray(hand.data[:]), hand.starting_time + np.arange(hand.data.shape[0]) / hand.rate
        at = lambda s: pos[np.searchsorted(t, s)]
        for _, tr in trials.head(5).iterrows():
            assert np.linalg.norm(at(tr.move_onset_time - 0.05)) < 1e-3
            xy = at(tr.move_onset_time + 0.4)
            assert np.linalg.norm(xy) > 0.05
            ang = np.rad2deg(np.arctan2(xy[1], xy[0])) % 360
            assert min(abs(ang - tr.reach_angle), 360 - abs(ang - tr.reach_angle)) < 15
        # task inputs in stimulus/presentation: the target while shown, a one-step go cue
        assert set(nwb.stimulus) == {"target_position", "go_cue"}
        assert set(nwb.processing["behavior"].data_interfaces) == {"Position", "hand_velocity"}
        target, go = (np.asarray(nwb.stimulus[n].data[:]) for n in ("target_position", "go_cue"))
        step = lambda s: int(round(s * nwb.stimulus["go_cue"].rate))
        assert go.shape[1] == 1 and go.sum() == len(trials)
        assert np.all(go[[step(s) for s in trials["go_cue_time"]], 0] == 1.0)
        for _, tr in trials.head(5).iterrows():
            a = np.deg2rad(tr.reach_angle)
            on, stop = step(tr.target_on_time), step(tr.stop_time)
            np.testing.assert_allclose(target[on:stop], np.tile([0.08 * np.cos(a), 0.08 * np.sin(a)], (stop - on, 1)))
            assert np.all(target[on - 1] == 0) and np.all(target[stop] == 0)


def test_reach_truth(reach):
    truth = convention.read_dataset(simulate.truth_path(reach), "truth")
    assert truth.attrs["task"] == "reach" and truth.attrs["align_event"] == "move_onset_time"
    assert truth.sizes["trial"] >= 100 and truth.sizes["unit"] == 100
    dt = truth.attrs["dt_s"]
    assert np.allclose(np.diff(truth.time), dt) and truth.time[0] == pytest.approx(-0.25 + dt / 2)
    # the stored frequency is the largest eigen-frequency of A, and every plane's frequency is one of A's
    A = truth["A"].values
    freqs = np.sort(np.abs(np.linalg.eigvals(A).imag) / (2 * np.pi))[::2]
    assert truth.attrs["rotation_freq_hz"] == pytest.approx(freqs.max(), rel=1e-9)
    assert np.allclose(np.sort(truth.attrs["plane_freqs_hz"]), freqs)
    assert 1.5 <= truth.attrs["rotation_freq_hz"] <= 3.0
    # the rotational latents follow dx/dt = A x in the window, and the rates are exp of their readout
    x = truth.latents.sel(latent=list(truth.rot_in.values)).values.astype(float)
    step = scipy.linalg.expm(A * dt)
    assert np.allclose(x[:, 1:], x[:, :-1] @ step.T, atol=1e-4)
    assert np.linalg.norm(x, axis=-1).max() > 0.5
    rates = np.exp(truth.log_baseline.values + truth.latents.values @ truth.readout.values.T)
    assert np.allclose(truth.rates.values, rates, rtol=1e-4)


def test_reach_spikes_follow_truth(reach):
    truth = convention.read_dataset(simulate.truth_path(reach), "truth")
    io, nwb = F.read_pynwb(reach)
    with io:
        spikes = [np.asarray(s) for s in nwb.units.to_dataframe()["spike_times"]]
        move = nwb.trials.to_dataframe()["move_onset_time"].values
    dt = truth.attrs["dt_s"]
    edges = np.append(truth.time.values - dt / 2, truth.time.values[-1] + dt / 2)
    counts = np.stack([[np.histogram(s - m, edges)[0] for s in spikes] for m in move]).transpose(0, 2, 1)
    expected = truth.rates.values * dt
    assert counts.sum() / expected.sum() == pytest.approx(1.0, abs=0.02)
    cond = truth.condition.values
    psth = np.stack([counts[cond == c].mean(0) for c in np.unique(cond)])
    want = np.stack([expected[cond == c].mean(0) for c in np.unique(cond)])
    assert np.corrcoef(psth.ravel(), want.ravel())[0, 1] > 0.5


def test_reach_deterministic_for_a_seed():
    a = simulate_reach(seed=3, n_trials=16)
    b = simulate_reach(seed=3, n_trials=16)
    c = simulate_reach(seed=4, n_trials=16)
    assert len(a.trials["start_time"]) == 16
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.spike_times, b.spike_times))
    assert a.trials["move_onset_time"].tobytes() == b.trials["move_onset_time"].tobytes()
    assert any(x.tobytes() != y.tobytes() for x, y in zip(a.spike_times, c.spike_times))
    assert all(np.all(np.diff(s) > 0) for s in a.spike_times)


def test_reach_config_checks():
    assert ReachConfig().n_trials >= 100
    with pytest.raises(ConfigError, match="dt_s"):
        ReachConfig(dt_s=0.02)
    with pytest.raises(ConfigError, match="plane_freqs_hz"):
        ReachConfig(plane_freqs_hz=(2.0,), plane_amplitudes=(1.0, 0.5))
    with pytest.raises(ConfigError, match="config must be a ReachConfig"):
        simulate_reach(config=object())


def test_rotation_matrix_planes():
    A = rotation_matrix((2.0, 1.2), 0.5)
    eig = np.linalg.eigvals(A)
    assert A.shape == (4, 4) and np.allclose(eig.real, -0.5)
    assert np.allclose(np.sort(np.abs(eig.imag)) / (2 * np.pi), [1.2, 1.2, 2.0, 2.0])
