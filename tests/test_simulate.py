"""Tests of the simulate stage (cortexfit.simulate.run): outputs, the task table, errors and what a failure
leaves behind.  The tasks themselves are tested in test_simulate_reach.py and test_simulate_flipflop.py."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from cortexfit import models, simulate
from cortexfit.core import convention
from cortexfit.core.errors import ConfigError, SimulateError
from cortexfit.simulate.reach import simulate_reach
from cortexfit.simulate.recording import Recording, save_teacher


def _with_teacher(seed: int = 0, n_trials: int | None = 8, **_) -> Recording:
    """A small reach recording carrying a random 8-unit flip-flop-shaped teacher (no training needed)."""
    rng = np.random.default_rng(seed)
    teacher = {"W": rng.normal(0, 0.3, (8, 8)), "U": rng.normal(size=(8, 3)), "b": rng.normal(size=8),
               "readout_weight": rng.normal(size=(3, 8)), "readout_bias": rng.normal(size=3)}
    return dataclasses.replace(simulate_reach(seed=seed, n_trials=n_trials), task="flipflop", teacher=teacher)


@pytest.fixture
def fake_flipflop(monkeypatch):
    monkeypatch.setitem(simulate.TASKS, "flipflop", _with_teacher)


def test_task_table():
    assert sorted(simulate.TASKS) == ["flipflop", "reach"]
    assert simulate.TASKS["reach"] is simulate_reach


def test_teacher_is_saved_with_the_recording(tmp_path, fake_flipflop):
    out = simulate.run("flipflop", tmp_path / "ff.nwb", n_trials=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ff.nwb", "ff.teacher", "ff.truth.nc"]
    net, rest = models.load_model(simulate.teacher_dir(out))
    assert rest["meta"]["task"] == "flipflop"
    t = _with_teacher().teacher
    h, u = np.full((1, 8), 0.5), np.ones((1, 3))
    with torch.no_grad():
        got = net.step(torch.from_numpy(h).float(), torch.from_numpy(u).float()).double().numpy()
    assert np.allclose(got, np.tanh(h @ t["W"].T + u @ t["U"].T + t["b"]), atol=1e-5)


@pytest.mark.parametrize("failure", ["save", "weights"])
def test_failed_teacher_save_is_an_error_and_leaves_nothing(tmp_path, monkeypatch, failure):
    if failure == "save":
        def broken_save(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(models, "save_model", broken_save)
        monkeypatch.setitem(simulate.TASKS, "flipflop", _with_teacher)
    else:  # the model package rejects the teacher's weights
        def bad_teacher(**kwargs):
            rec = _with_teacher(**kwargs)
            return dataclasses.replace(rec, teacher={k: v for k, v in rec.teacher.items() if k != "b"})

        monkeypatch.setitem(simulate.TASKS, "flipflop", bad_teacher)
    with pytest.raises(SimulateError, match="cannot save the flip-flop teacher") as err:
        simulate.run("flipflop", tmp_path / "ff.nwb", n_trials=8)
    assert "\n" not in str(err.value) and "ff.teacher/model.pt" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_save_teacher_without_teacher_is_a_no_op(tmp_path):
    assert save_teacher(simulate_reach(seed=0, n_trials=8), tmp_path / "t") is None
    assert list(tmp_path.iterdir()) == []


def test_failed_nwb_write_removes_the_truth(tmp_path, monkeypatch):
    def broken_write(rec, path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(simulate, "write_nwb", broken_write)
    with pytest.raises(SimulateError, match="cannot write the simulated recording"):
        simulate.run("reach", tmp_path / "r.nwb", n_trials=8)
    assert list(tmp_path.iterdir()) == []


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


def test_cli(tmp_path, capsys):
    from cortexfit.cli import main

    assert main(["-q", "simulate", "reach", str(tmp_path / "r.nwb"), "--seed", "2", "--n-trials", "8"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nwb", "r.truth.nc"]
    assert convention.read_dataset(tmp_path / "r.truth.nc").sizes["trial"] == 8
    assert main(["simulate", "reach", str(tmp_path / "r.nwb" / "x.nwb")]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_import_does_not_load_torch():
    code = ("import sys, cortexfit.simulate, cortexfit.simulate.reach, cortexfit.simulate.flipflop; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
