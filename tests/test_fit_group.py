"""`cortexfit fit-group` (cortexfit.fit.group): outputs, per-session fit folders, errors, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cortexfit.analysis.fitdir import read_fit_dir
from cortexfit.cli import main
from cortexfit.core import convention
from cortexfit.core.errors import ConfigError, CortexfitError, FitError
from cortexfit.fit import group
from cortexfit.fit.latent import Encoder
from cortexfit.models import load_model


def _write(path, n_units, *, seed, bw=0.01):
    y = np.random.default_rng(seed).poisson(0.6, (14, 20, n_units)).astype("uint16")
    path.parent.mkdir(parents=True, exist_ok=True)
    return convention.write_dataset(convention.new_activity(y, time=np.arange(20) * bw, bin_width_s=bw), path)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    d = tmp_path_factory.mktemp("sessions")
    return [_write(d / f"s{i}" / "activity.nc", n, seed=i) for i, n in enumerate((6, 9, 7))]


@pytest.fixture(scope="module")
def continual(sessions, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "rate"
    metrics = group.run(sessions, out, model="rate", strategy="continual", method="replay", config="smoke")
    return out, metrics


def test_continual_writes_a_fit_folder_per_session_and_the_forgetting_matrix(continual, sessions):
    out, metrics = continual
    assert metrics["sessions"] == ["s0", "s1", "s2"] and metrics["strategy"] == "continual"
    mat = json.loads((out / "forgetting.json").read_text())["scores"]["co_bps"]
    assert [sum(v is not None for v in row) for row in mat] == [1, 2, 3]
    for name, path in zip(metrics["sessions"], sessions):
        folder = read_fit_dir(out / "sessions" / name)
        act = convention.read_dataset(path, "activity")
        assert folder.fit.sizes["unit"] == act.sizes["unit"]  # the session's own units
        assert folder.metrics["co_bps"] == metrics["per_session"][name]["co_bps"]
        assert mat[2][metrics["sessions"].index(name)] == pytest.approx(folder.metrics["co_bps"])
    history = (out / "history.csv").read_text().splitlines()
    assert history[0] == "session,epoch,train_loss,valid_loss,seconds" and {r.split(",")[0] for r in history[1:]} == {
        "s0", "s1", "s2"}


def test_session_model_file_is_a_single_session_latent_model(continual, sessions):
    out, _ = continual
    dyn, rest = load_model(out / "sessions" / "s1")
    enc = Encoder(**{k: v for k, v in rest["module_specs"]["encoder"].items() if k != "class"})
    enc.load_state_dict(rest["modules"]["encoder"])
    assert enc.n_in == 9 - round(0.25 * 9)  # the session's held-in units, read-in folded in
    fit = read_fit_dir(out / "sessions" / "s0").fit
    fit1 = read_fit_dir(out / "sessions" / "s1").fit
    dyn0, _ = load_model(out / "sessions" / "s0")
    for a, b in zip(dyn.parameters(), dyn0.parameters()):
        assert torch.equal(a, b)  # one generator behind every session
    assert fit.attrs["group_session"] == "s0" and fit1.attrs["group_session"] == "s1"


def test_pooled_co_bps_is_the_spike_weighted_mean(continual):
    _, m = continual
    vals = [m["per_session"][n]["co_bps"] for n in m["sessions"]]
    assert min(vals) <= m["pooled_co_bps"] <= max(vals)


def test_joint_fit_warms_up_on_the_first_session_then_the_heads_then_all(sessions, tmp_path):
    group.run(sessions, tmp_path / "w", model="rate", config="smoke")
    stages = [r.split(",")[0] for r in (tmp_path / "w" / "history.csv").read_text().splitlines()[1:]]
    assert list(dict.fromkeys(stages)) == ["warm-up:s0", "heads", "all"]
    group.run(sessions, tmp_path / "c", model="rate", config="smoke", warm_start=False)
    stages = [r.split(",")[0] for r in (tmp_path / "c" / "history.csv").read_text().splitlines()[1:]]
    assert set(stages) == {"all"}


def test_joint_group_of_one_is_a_single_session_fit(sessions, tmp_path):
    m = group.run(sessions[:1], tmp_path / "one", model="vanilla", config="smoke")
    assert m["strategy"] == "single" and m["pooled_co_bps"] == pytest.approx(m["per_session"]["s0"]["co_bps"])
    assert not (tmp_path / "one" / "forgetting.json").exists()


def test_sessions_with_other_bin_widths_fail_with_nothing_written(sessions, tmp_path):
    other = _write(tmp_path / "wide" / "activity.nc", 6, seed=5, bw=0.02)
    out = tmp_path / "g"
    with pytest.raises(FitError, match="sessions s0 and wide have different bin widths"):
        group.run([sessions[0], other], out, model="rate", config="smoke")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".g.")]


def test_a_corrupt_session_file_fails_before_anything_is_written(sessions, tmp_path):
    bad = tmp_path / "bad" / "activity.nc"
    bad.parent.mkdir()
    bad.write_text("not netcdf")
    with pytest.raises(CortexfitError, match="bad/activity.nc"):
        group.run([sessions[0], bad], tmp_path / "g", model="rate", config="smoke")
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize(("kw", "msg"), [
    ({"model": "esn"}, "not a gradient-trained RNN family"),
    ({"model": "rate", "strategy": "merge"}, "unknown strategy"),
    ({"model": "rate", "names": ["x", "x"]}, "repeated: x"),
    ({"model": "rate", "names": ["x"]}, "2 activity files but 1 session names"),
])
def test_bad_requests_are_one_line_config_errors(sessions, tmp_path, kw, msg):
    with pytest.raises(ConfigError, match=msg):
        group.run(sessions[:2], tmp_path / "g", config="smoke", **kw)


def test_cli_fit_group_reaches_run(sessions, tmp_path, capsys):
    out = tmp_path / "g"
    rc = main(["fit-group", str(sessions[0]), str(sessions[1]), "--out", str(out), "--model", "lstm",
               "--names", "a", "b", "--strategy", "continual", "--method", "ewc", "--ewc-lambda", "5",
               "--config", "smoke"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["sessions"] == ["a", "b"] and m["continual"] == {"method": "ewc", "ewc_lambda": 5.0,
                                                              "replay_fraction": 0.5}
    rc = main(["fit-group", str(sessions[0]), "--out", str(tmp_path / "x"), "--model", "rate", "--method", "ewc",
               "--ewc-lambda", "-1", "--config", "smoke"])
    assert rc == 1 and "cortexfit fit-group: error: continual: ewc_lambda" in capsys.readouterr().err


@pytest.fixture(scope="module")
def real_activity(shared_data, tmp_path_factory):
    """MC_Maze_Small and the Yu 2009 session, both binned at 5 ms over 0-700 ms after trial start."""
    from cortexfit import ingest

    d = tmp_path_factory.mktemp("real")
    files = {"mc_maze": ("sub-Jenkins_ses-small_desc-test_ecephys.nwb", "unit-id:1xxx=PMd,2xxx=M1"),
             "yu2009": ("yu2009_pmd_reach.nwb", "electrodes")}
    return {name: ingest.run(shared_data / f, d / name / "activity.nc", bin_ms=5, align="start_time",
                             window_ms=(0, 700), areas=areas) for name, (f, areas) in files.items()}


def test_real_session_split_into_disjoint_pseudo_sessions_fits_jointly(real_activity, tmp_path):
    from cortexfit.fit.sessions import split_units

    act = convention.read_dataset(real_activity["mc_maze"], "activity")
    parts = split_units(act, 2, seed=0)
    assert not set(parts[0]["unit"].values) & set(parts[1]["unit"].values)
    paths = [convention.write_dataset(p, tmp_path / f"half{i}" / "activity.nc") for i, p in enumerate(parts)]
    m = group.run(paths, tmp_path / "g", model="rate", config="smoke")
    assert m["sessions"] == ["half0", "half1"] and all(np.isfinite(m["per_session"][n]["co_bps"]) for n in m["sessions"])
    fits = [read_fit_dir(tmp_path / "g" / "sessions" / n).fit for n in m["sessions"]]
    assert [f.sizes["unit"] for f in fits] == [p.sizes["unit"] for p in parts]


def test_two_real_recordings_of_other_animals_fit_jointly_as_a_smoke_test(real_activity, tmp_path):
    m = group.run([real_activity["mc_maze"], real_activity["yu2009"]], tmp_path / "g", model="lstm", config="smoke",
                  strategy="continual", method="replay")
    mat = m["forgetting"]["co_bps"]
    assert m["sessions"] == ["mc_maze", "yu2009"] and len(mat["drops"]) == 1
