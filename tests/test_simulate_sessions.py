"""Sessions of one simulated system (issue 13): ``session=k`` keeps the flip-flop teacher / the reach dynamics of
the seed and draws its own units, trials and spikes; ``n_units`` sets the number of units; the CLI flags and the
workflow rules that write ``data/simulated/{task}_session{k}_units{n}.nwb``."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nwb_factory as F
from cortexfit import models, simulate
from cortexfit.core import convention
from cortexfit.core.errors import ConfigError
from cortexfit.simulate import flipflop
from cortexfit.simulate.flipflop import simulate_flipflop
from cortexfit.simulate.reach import simulate_reach

ROOT = Path(__file__).resolve().parents[1]
TEACHER_VARS = ("W", "U", "b", "readout_weight", "readout_bias", "fixed_points", "saddle_points")


@pytest.fixture(scope="module")
def trained_once():
    """Train each flip-flop teacher once in this module (about 10 s): later calls get the same teacher and leave
    the generator exactly where a fresh training leaves it, so the recordings are those of uncached runs."""
    real, cache = flipflop._teacher, {}

    def teacher(cfg, seed, rng):
        key = (int(seed), dataclasses.replace(cfg, n_trials=1, n_units=1))
        if key not in cache:
            cache[key] = real(cfg, seed, rng), rng.bit_generator.state
        result, state = cache[key]
        rng.bit_generator.state = state
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(flipflop, "_teacher", teacher)
        yield


@pytest.fixture(scope="module")
def ff(trained_once):
    """Flip-flop recordings of seed 0: the single one (key None) and sessions 1 and 2 (40 units each)."""
    return {None: simulate_flipflop(seed=0, n_trials=8),
            1: simulate_flipflop(seed=0, n_trials=8, session=1, n_units=40),
            2: simulate_flipflop(seed=0, n_trials=8, session=2, n_units=40)}


def _replay(truth, W, U, b) -> np.ndarray:
    """Hidden states of the teacher (W, U, b) driven by a truth's inputs (trials are one continuous session)."""
    h, hs = np.zeros(len(b)), []
    for ut in truth.inputs.values.reshape(-1, 3):
        h = np.tanh(W @ h + U @ ut + b)
        hs.append(h)
    return np.array(hs)


def test_flipflop_sessions_share_the_teacher_and_its_latent_space(ff):
    for var in TEACHER_VARS:
        np.testing.assert_array_equal(ff[1].truth[var].values, ff[None].truth[var].values, err_msg=var)
        np.testing.assert_array_equal(ff[2].truth[var].values, ff[None].truth[var].values, err_msg=var)
    assert ff[1].truth.fixed_points.sizes["fixed_point"] == 8
    for k in ff[1].teacher:
        np.testing.assert_array_equal(ff[1].teacher[k], ff[2].teacher[k])
    # session 2's latents are session 1's teacher driven by session 2's inputs: one state space for all sessions
    t1, t2 = ff[1].truth, ff[2].truth
    hs = _replay(t2, t1.W.values, t1.U.values, t1.b.values)
    np.testing.assert_allclose(hs, t2.latents.values.reshape(hs.shape), atol=1e-5)


def test_flipflop_sessions_have_their_own_units_trials_and_spikes(ff):
    s1, s2 = ff[1], ff[2]
    assert s1.n_units == s2.n_units == 40 and ff[None].n_units == 60
    assert s1.truth.unit_readout.shape == (40, 64) and s1.truth.rates.sizes["unit"] == 40
    # different neurons: readout directions nearly uncorrelated across sessions
    r = np.corrcoef(s1.truth.unit_readout.values.ravel(), s2.truth.unit_readout.values.ravel())[0, 1]
    assert abs(r) < 0.1, r
    assert not np.array_equal(s1.truth.inputs.values, s2.truth.inputs.values)
    assert not np.array_equal(s1.trials["n_pulses"], s2.trials["n_pulses"]) or not np.array_equal(
        s1.trials["final_state"], s2.trials["final_state"])
    assert not np.array_equal(np.concatenate(s1.spike_times), np.concatenate(s2.spike_times))
    assert (s1.truth.attrs["session"], s2.truth.attrs["session"], s1.truth.attrs["n_units"]) == (1, 2, 40)
    assert "session" not in ff[None].truth.attrs and "n_units" not in ff[None].truth.attrs


def test_session_none_keeps_the_single_stream_and_session_1_is_another(ff):
    """session=None is the recording of the seed (as before sessions existed); session 1 is a new one."""
    none, s1 = ff[None], ff[1]
    assert none.session is None and s1.session == 1
    assert not np.array_equal(none.truth.inputs.values, s1.truth.inputs.values)
    assert not np.allclose(none.truth.unit_readout.values[:40], s1.truth.unit_readout.values)
    # n_units alone (no session) keeps the seed's single stream: the input pulses, drawn before the units, stay
    fewer = simulate_flipflop(seed=0, n_trials=8, n_units=40)
    np.testing.assert_array_equal(fewer.truth.inputs.values, none.truth.inputs.values)
    assert fewer.n_units == 40 and "session" not in fewer.truth.attrs


def test_flipflop_session_is_reproducible(ff):
    again = simulate_flipflop(seed=0, n_trials=8, session=2, n_units=40)
    for a, b in zip(again.spike_times, ff[2].spike_times):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.truth.unit_readout.values, ff[2].truth.unit_readout.values)


def test_run_writes_a_session_with_its_teacher(tmp_path, trained_once, ff):
    out = simulate.run("flipflop", tmp_path / "flipflop_session3_units12.nwb", seed=0, n_trials=8, session=3,
                       n_units=12)
    truth = convention.read_dataset(simulate.truth_path(out), "truth")
    assert truth.attrs["session"] == 3 and truth.sizes["unit"] == 12
    np.testing.assert_array_equal(truth.W.values, ff[None].truth.W.values)
    net, _ = models.load_model(simulate.teacher_dir(out))  # the same teacher, saved beside every session
    W = ff[None].teacher["W"]
    h, u = np.full((1, W.shape[0]), 0.3), np.ones((1, 3))
    with torch.no_grad():
        got = net.step(torch.from_numpy(h).float(), torch.from_numpy(u).float()).double().numpy()
    t = ff[None].teacher
    np.testing.assert_allclose(got, np.tanh(h @ t["W"].T + u @ t["U"].T + t["b"]), atol=1e-5)
    io, nwb = F.read_pynwb(out)
    with io:
        assert len(nwb.units) == 12 and nwb.session_id == "flipflop-seed0-session3"


# ---------------------------------------------------------------------------------------------- reach
def test_reach_sessions_share_the_dynamics_not_the_units_or_trials():
    s1 = simulate_reach(seed=3, n_trials=8, session=1)
    s2 = simulate_reach(seed=3, n_trials=24, session=2, n_units=7)  # another trial count: the same system
    for var in ("A", "prep_states"):
        np.testing.assert_array_equal(s1.truth[var].values, s2.truth[var].values, err_msg=var)
    assert list(s1.truth.latent.values) == list(s2.truth.latent.values)
    assert s1.truth.attrs["plane_freqs_hz"].tolist() == s2.truth.attrs["plane_freqs_hz"].tolist()
    assert s1.n_units == 100 and s2.n_units == 7 and s2.truth.readout.shape == (7, 5)
    assert s2.unit_area.tolist() == ["PMd"] * 4 + ["M1"] * 3
    assert not np.allclose(s1.truth.readout.values[:7], s2.truth.readout.values)
    assert not np.array_equal(s1.trials["condition"], s2.trials["condition"][:8]) or not np.array_equal(
        s1.trials["go_cue_time"], s2.trials["go_cue_time"][:8])
    # each trial starts from its condition's shared preparatory state (jittered by trial_noise = 5 %)
    t2 = s2.truth
    at_rot = t2.latents.isel(time=0).values[:, :4]  # where the rotation starts (rotation_lead_s before the move)
    want = t2.prep_states.values[t2.condition.values]
    cos = (at_rot * want).sum(1) / np.linalg.norm(at_rot, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.95, cos.min()
    single = simulate_reach(seed=3, n_trials=8)
    assert "session" not in single.truth.attrs and s1.truth.attrs["session"] == 1
    assert not np.array_equal(np.concatenate(single.spike_times), np.concatenate(s1.spike_times))


def test_reach_session_is_reproducible_and_seed_dependent():
    a, b = simulate_reach(seed=5, n_trials=8, session=2), simulate_reach(seed=5, n_trials=8, session=2)
    for x, y in zip(a.spike_times, b.spike_times):
        np.testing.assert_array_equal(x, y)
    other_seed = simulate_reach(seed=6, n_trials=8, session=2)
    assert not np.array_equal(a.truth.prep_states.values, other_seed.truth.prep_states.values)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, name", [({"session": 0}, "session"), ({"session": -2}, "session"),
                                          ({"session": True}, "session"), ({"session": 1.5}, "session"),
                                          ({"n_units": 0}, "n_units"), ({"session": 1, "n_units": "40"}, "n_units")])
def test_bad_session_or_n_units_is_a_one_line_error_and_writes_nothing(tmp_path, kwargs, name):
    for task in ("reach", "flipflop"):
        with pytest.raises(ConfigError, match=rf"option {name} must be an integer >= 1") as err:
            simulate.run(task, tmp_path / "out" / f"{task}.nwb", n_trials=8, **kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=name):
        simulate_reach(n_trials=8, **kwargs)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_session_flags_reach_run(tmp_path, monkeypatch):
    from cortexfit.cli import main

    out = tmp_path / "reach_session2_units7.nwb"
    assert main(["-q", "simulate", "reach", str(out), "--seed", "3", "--n-trials", "8", "--session", "2",
                 "--n-units", "7"]) == 0
    truth = convention.read_dataset(simulate.truth_path(out), "truth")
    assert (truth.attrs["seed"], truth.attrs["session"], truth.sizes["unit"], truth.sizes["trial"]) == (3, 2, 7, 8)
    np.testing.assert_array_equal(truth.readout.values, simulate_reach(seed=3, n_trials=8, session=2,
                                                                       n_units=7).truth.readout.values)
    calls = []
    monkeypatch.setattr(simulate, "run", lambda **kw: calls.append(kw))
    assert main(["simulate", "flipflop", "x.nwb"]) == 0
    assert calls[-1] == {"task": "flipflop", "out": "x.nwb", "seed": 0, "n_trials": None, "session": None,
                         "n_units": None}


@pytest.mark.parametrize("flag, value", [("--session", "0"), ("--n-units", "0"), ("--session", "-1")])
def test_cli_bad_flag_is_one_line(tmp_path, capsys, flag, value):
    from cortexfit.cli import main

    assert main(["simulate", "reach", str(tmp_path / "r.nwb"), "--n-trials", "8", flag, value]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must be an integer >= 1" in err, err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- workflow
def test_sessions_sheet_plans_one_simulation_per_session():
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(ROOT), "-n",
                          "-p", "-F", "--cores", "1", "--config", "datasets=config/datasets.sessions.tsv",
                          "models=[]", "report=false"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    for k in (1, 2, 3):
        nwb = f"data/simulated/flipflop_session{k}_units40.nwb"
        assert f"cortexfit simulate flipflop {nwb} --seed 0 --session {k} --n-units 40" in text
        assert re.search(rf"cortexfit ingest {re.escape(nwb)} results/ff_s{k}/activity.nc", text)
        assert f"data/simulated/flipflop_session{k}_units40.teacher/model.pt" in text
    assert len(re.findall(r"^rule simulate_session_with_teacher:", text, re.M)) == 3
    assert not re.search(r"^rule simulate(_with_teacher)?:", text, re.M)
