"""Tests of the simulate stage: ground-truth recordings written as NWB (+ truth netCDF)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.linalg

from cortexfit import simulate
from cortexfit.core import convention
from cortexfit.core.errors import ConfigError, SimulateError
from cortexfit.simulate.tasks import FlipflopConfig, ReachConfig, find_fixed_points, flipflop_task


def _read_nwb(path):
    from pynwb import NWBHDF5IO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        io = NWBHDF5IO(str(path), "r")
        return io, io.read()


def _unit_rates(nwb) -> np.ndarray:
    units = nwb.units.to_dataframe()
    duration = np.array([iv[0][1] - iv[0][0] for iv in units["obs_intervals"]])
    return np.array([len(s) for s in units["spike_times"]]) / duration


@pytest.fixture(scope="module")
def reach(tmp_path_factory):
    out = tmp_path_factory.mktemp("reach") / "reach.nwb"
    simulate.run("reach", out, seed=0)  # defaults: the trial count a user gets
    return out


@pytest.fixture(scope="module")
def flipflop(tmp_path_factory):
    out = tmp_path_factory.mktemp("flipflop") / "flipflop.nwb"
    simulate.run("flipflop", out, seed=0)
    return out


# ------------------------------------------------------------------------------------------------ reach
def test_reach_nwb_layout(reach):
    io, nwb = _read_nwb(reach)
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
        rates = _unit_rates(nwb)
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
    io, nwb = _read_nwb(reach)
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
    a = simulate.simulate_reach(seed=3, n_trials=16)
    b = simulate.simulate_reach(seed=3, n_trials=16)
    c = simulate.simulate_reach(seed=4, n_trials=16)
    assert len(a.trials["start_time"]) == 16
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.spike_times, b.spike_times))
    assert a.trials["move_onset_time"].tobytes() == b.trials["move_onset_time"].tobytes()
    assert any(x.tobytes() != y.tobytes() for x, y in zip(a.spike_times, c.spike_times))
    assert all(np.all(np.diff(s) > 0) for s in a.spike_times)


# --------------------------------------------------------------------------------------------- flipflop
def test_flipflop_nwb_layout(flipflop):
    io, nwb = _read_nwb(flipflop)
    with io:
        trials = nwb.trials.to_dataframe()
        assert len(trials) >= 100
        dur = (trials["stop_time"] - trials["start_time"]).values
        assert np.allclose(dur, dur[0])
        pulses = nwb.processing["behavior"]["input_pulses"]
        u = np.asarray(pulses.data[:])
        assert u.shape[1] == 3 and set(np.unique(u)) == {-1.0, 0.0, 1.0}
        assert trials["n_pulses"].sum() == np.count_nonzero(u)
        rates = _unit_rates(nwb)
        assert len(rates) >= 50 and np.all((rates >= 5) & (rates <= 30)), (rates.min(), rates.max())


def test_flipflop_teacher_solves_task(flipflop):
    truth = convention.read_dataset(simulate.truth_path(flipflop), "truth")
    assert truth.attrs["task"] == "flipflop" and truth.attrs["align_event"] == "start_time"
    W, U, b = truth.W.values, truth.U.values, truth.b.values
    u = truth.inputs.values.reshape(-1, 3)  # trials are consecutive windows of one session
    h, hs = np.zeros(len(b)), []
    for ut in u:
        h = np.tanh(W @ h + U @ ut + b)
        hs.append(h)
    hs = np.array(hs)
    assert np.allclose(hs, truth.latents.values.reshape(hs.shape), atol=1e-5)
    y = truth.targets.values.reshape(-1, 3)
    out = hs @ truth.readout_weight.values.T + truth.readout_bias.values
    assert np.mean(np.sign(out) == y) > 0.98
    # fresh trials from a different generator
    u2, y2 = flipflop_task(np.random.default_rng(123), 1, 2000, 0.02)
    h, hs = np.zeros(len(b)), []
    for ut in u2[0]:
        h = np.tanh(W @ h + U @ ut + b)
        hs.append(h)
    out = np.array(hs) @ truth.readout_weight.values.T + truth.readout_bias.values
    mask = y2[0] != 0
    assert np.mean(np.sign(out)[mask] == y2[0][mask]) > 0.98


def test_flipflop_eight_stable_fixed_points(flipflop):
    truth = convention.read_dataset(simulate.truth_path(flipflop), "truth")
    W, b = truth.W.values, truth.b.values
    fp = truth.fixed_points.values
    assert fp.shape == (8, truth.sizes["latent"])
    assert np.allclose(np.tanh(fp @ W.T + b), fp, atol=1e-8)
    F = np.tanh(fp @ W.T + b)
    radius = np.abs(np.linalg.eigvals((1 - F**2)[:, :, None] * W[None])).max(1)
    assert np.all(radius < 1)
    signs = np.sign(fp @ truth.readout_weight.values.T + truth.readout_bias.values)
    assert {tuple(s) for s in signs} == {(i, j, k) for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)}
    # an independent search from states along the recorded trajectories finds exactly these 8 stable points
    rng = np.random.default_rng(7)
    states = truth.latents.values.reshape(-1, W.shape[0]).astype(float)
    init = states[rng.choice(len(states), 256, replace=False)] + 0.05 * rng.normal(size=(256, W.shape[0]))
    pts, eig = find_fixed_points(W, b, init)
    stable = pts[eig < 1]
    assert len(stable) == 8
    assert np.abs(stable[:, None] - fp[None]).max(-1).min(1).max() < 1e-6


def test_flipflop_teacher_model_file(flipflop):
    models = pytest.importorskip("cortexfit.models", exc_type=ImportError)
    import torch

    truth = convention.read_dataset(simulate.truth_path(flipflop), "truth")
    net, rest = models.load_model(simulate.teacher_dir(flipflop))
    h = torch.from_numpy(truth.fixed_points.values).float()
    with torch.no_grad():
        out = net.step(h, torch.zeros(len(h), 3)).double().numpy()
    assert np.allclose(out, truth.fixed_points.values, atol=1e-4)
    assert rest["meta"]["dt_s"] == truth.attrs["dt_s"]


# ----------------------------------------------------------------------------------------- errors & misc
def test_unknown_task_writes_nothing(tmp_path):
    with pytest.raises(ConfigError, match="unknown task"):
        simulate.run("juggle", tmp_path / "x.nwb")
    with pytest.raises(ConfigError, match=r"\.nwb"):
        simulate.run("reach", tmp_path / "x.h5")
    with pytest.raises(ConfigError, match="n_trials"):
        simulate.run("reach", tmp_path / "x.nwb", n_trials=0)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SimulateError, match="not writable") as err:
        simulate.run("reach", blocker / "out" / "x.nwb", n_trials=8)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_cli_and_configs(tmp_path, capsys):
    from cortexfit.cli import main

    assert main(["-q", "simulate", "reach", str(tmp_path / "r.nwb"), "--seed", "2", "--n-trials", "8"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nwb", "r.truth.nc"]
    assert convention.read_dataset(tmp_path / "r.truth.nc").sizes["trial"] == 8
    assert main(["simulate", "reach", str(tmp_path / "r.nwb" / "x.nwb")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert ReachConfig().n_trials >= 100 and FlipflopConfig().n_trials >= 100
    with pytest.raises(ConfigError, match="dt_s"):
        ReachConfig(dt_s=0.02)


def test_import_does_not_load_torch():
    code = "import sys, cortexfit.simulate, cortexfit.simulate.tasks; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
