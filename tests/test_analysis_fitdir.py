"""Tests of the one fit-folder reader (:mod:`cortexfit.analysis.fitdir`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from cortexfit.analysis import fitdir
from cortexfit.core import convention
from cortexfit.core.errors import AnalysisError, SchemaError
from cortexfit.models import build_dynamics, save_model


def _fit_nc(path: Path, *, states: np.ndarray | None = None, factors: bool = False) -> None:
    n_tr, n_t = 4, 6
    ds = xr.Dataset({"rates": (("trial", "time", "unit"), np.full((n_tr, n_t, 3), 0.5))},
                    coords={"trial": np.arange(n_tr), "time": 0.01 * np.arange(n_t) + 0.005, "unit": np.arange(3),
                            "split": ("trial", ["train"] * n_tr), "heldout": ("unit", np.zeros(3, "int8")),
                            "condition": ("trial", ["a", "b", "a", "b"])})
    if states is not None:
        ds["states"] = (("trial", "time", "state"), states)
    if factors:
        ds["factors"] = (("trial", "time", "factor"), np.zeros((n_tr, n_t, 2)))
    ds.attrs.update(convention.base_attrs("fit"), model="rate", mode="latent", seed=0, device="cpu",
                    activity_file="a.nc", activity_sha256="0" * 64, config="{}")
    convention.write_dataset(ds, path / "fit.nc", "fit")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    net = build_dynamics("rate", input_size=1, hidden_size=5)
    save_model(tmp_path / "model.pt", net)
    states = np.random.default_rng(0).normal(size=(4, 6, net.state_size))
    _fit_nc(tmp_path, states=states)
    (tmp_path / "metrics.json").write_text(json.dumps({"co_bps": 0.25, "model": "rate"}))
    (tmp_path / "history.csv").write_text("epoch,train_loss,valid_loss\n1,2.0,2.5\n2,1.0,nan\n")
    return tmp_path


def test_reads_metrics_history_fit_and_model(folder: Path):
    fd = fitdir.read_fit_dir(folder)
    assert fd.co_bps == 0.25 and fd.model_name == "rate" and fd.notes == []
    np.testing.assert_array_equal(fd.history["train_loss"], [2.0, 1.0])
    assert np.isnan(fd.history["valid_loss"][1])
    assert fd.trajectory_variable() == "states" and fd.fit["states"].shape == (4, 6, 5)
    assert fd.fit.encoding["source"] == str(folder / "fit.nc")
    dyn, meta = fd.model()
    assert fd.model()[0] is dyn and dyn.family == "rate" and meta == {}  # loaded once
    assert fd.read_analysis("geometry") is None


def test_missing_and_broken_parts(tmp_path: Path):
    (tmp_path / "metrics.json").write_text("[1, 2]")
    (tmp_path / "history.csv").write_text("")
    fd = fitdir.read_fit_dir(tmp_path)
    assert fd.metrics is None and fd.history is None and fd.notes == ["metrics.json is not a JSON object"]
    assert math.isnan(fd.co_bps) and fd.model_name == tmp_path.name and not fd.has_fit
    with pytest.raises(SchemaError, match="fit.nc: no such file"):
        _ = fd.fit
    with pytest.raises(AnalysisError, match="model.pt"):
        fd.model()
    with pytest.raises(AnalysisError, match="no such fit folder"):
        fitdir.read_fit_dir(tmp_path / "absent")


def test_invalid_analysis_file_raises(folder: Path):
    xr.Dataset({"q": ("point", [1.0])}, attrs=convention.base_attrs("fixed_points")).to_netcdf(
        folder / "fixed_points.nc", engine="h5netcdf")
    with pytest.raises(SchemaError, match="fixed_points.nc.*lacks attribute"):
        fitdir.read_fit_dir(folder).read_analysis("fixed_points")


def test_trajectory_variable_prefers_states_then_factors(tmp_path: Path):
    _fit_nc(tmp_path, factors=True)
    assert fitdir.read_fit_dir(tmp_path).trajectory_variable() == "factors"


def test_model_trajectories_from_fit_nc(folder: Path):
    data = fitdir.model_trajectories(fitdir.read_fit_dir(folder))
    np.testing.assert_array_equal(data.states, convention.read_dataset(folder / "fit.nc")["states"].values)
    assert not data.simulated and data.inputs is None and data.dt_s == pytest.approx(0.01)
    assert data.conditions.tolist() == ["a", "b", "a", "b"]


def test_model_trajectories_simulated_without_fit_nc(folder: Path):
    (folder / "fit.nc").unlink()
    a = fitdir.model_trajectories(fitdir.read_fit_dir(folder), seed=3, n_trials=5, n_steps=7)
    b = fitdir.model_trajectories(fitdir.read_fit_dir(folder), seed=3, n_trials=5, n_steps=7)
    assert a.simulated and a.fit is None and a.states.shape == (5, 7, 5) and a.inputs.shape == (5, 7, 1)
    np.testing.assert_array_equal(a.states, b.states)  # seeded pulses
    assert set(np.unique(a.inputs)) <= {-1.0, 0.0, 1.0}
    with torch.no_grad():
        expected = a.dynamics.double()(torch.as_tensor(a.inputs)).numpy()
    np.testing.assert_allclose(a.states, expected, rtol=1e-12)


def test_state_size_mismatch(folder: Path):
    _fit_nc(folder, states=np.zeros((4, 6, 3)))
    with pytest.raises(AnalysisError, match="states have 3 columns, model.pt 5"):
        fitdir.model_trajectories(fitdir.read_fit_dir(folder))


def test_best_of(folder: Path, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    (other / "metrics.json").write_text(json.dumps({"co_bps": None}))
    folders = [fitdir.read_fit_dir(other), fitdir.read_fit_dir(folder)]
    assert fitdir.best_of(folders).path == folder and fitdir.best_of(folders[:1]) is None


@pytest.mark.parametrize("mode", ["latent", "forecast"])
def test_next_inputs_drive_the_stored_states(tmp_path, mode):
    """The dynamics analyses start at states[:, 0] and feed next_inputs(): that must replay the stored states
    (latent fits store states[t] = step(states[t-1], inputs[t]), so feeding inputs[:, 0] again is one step off)."""
    from cortexfit import fit as fit_stage
    from fit_factory import oscillator_activity

    ds, _ = oscillator_activity(n_trials=16, n_time=24, n_units=8, seed=0)
    rng = np.random.default_rng(1)
    stim = np.where(rng.random((16, 24, 1)) < 0.2, 1.0, 0.0).astype("float32")
    ds["stimulus"] = (("trial", "time", "stimulus_channel"), stim)
    ds = ds.assign_coords(stimulus_channel=["pulse"], stimulus_kind=("stimulus_channel", ["series"]))
    act = convention.write_dataset(ds, tmp_path / "act.nc")
    cfg = {"train": {"max_epochs": 2, "batch_size": 8}, "model": {"hidden_size": 8, "factors": 4,
                                                                   "encoder_size": 8, "controller": 0}}
    fit_stage.run(act, tmp_path / "fit", model="rate", mode=mode, config=cfg, device="cpu")
    data = fitdir.model_trajectories(fitdir.FitFolder(tmp_path / "fit"))
    assert data.input_offset == (1 if mode == "latent" else 0)
    n_enc = 10  # replay the encoder window only (forecast mode feeds predictions after it)
    u = torch.as_tensor(data.next_inputs()[:, : n_enc - 1], dtype=torch.float32)
    with torch.no_grad():
        replay = data.dynamics(u, torch.as_tensor(data.states[:, 0], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(replay, data.states[:, 1:n_enc], atol=1e-4)
