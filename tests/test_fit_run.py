"""Tests of ``cortexfit fit`` (cortexfit.fit.run): every model end to end, determinism, resume, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cortexfit import fit as fit_stage
from cortexfit.cli import main
from cortexfit.core import convention
from cortexfit.core.errors import ConfigError
from cortexfit.core.fileio import file_sha256
from cortexfit.fit import registry
from cortexfit.fit.outputs import METRIC_KEYS
from cortexfit.fit.splits import split_units
from cortexfit.models import BaselineModel, load_model
from fit_factory import oscillator_activity

SMALL = {"train": {"max_epochs": 4, "batch_size": 8, "patience": 10},
         "model": {"hidden_size": 8, "factors": 3, "encoder_size": 8, "controller": 2}}


@pytest.fixture
def activity(osc_activity):
    return osc_activity


def fit_cli(activity, out, *args):
    return main(["-q", "fit", str(activity), str(out), *args])


@pytest.mark.parametrize("model", registry.names())
def test_every_model_writes_the_same_outputs(activity, tmp_path, model):
    out = tmp_path / model
    assert fit_cli(activity, out, "--model", model, "--config", "smoke", "--device", "cpu") == 0
    names = {p.name for p in out.iterdir()}
    assert {"fit.nc", "model.pt", "metrics.json", "history.csv"} <= names
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == list(METRIC_KEYS)
    assert metrics["model"] == model and metrics["device"] == "cpu" and metrics["seed"] == 0
    assert math.isfinite(metrics["co_bps"]) and metrics["n_params"] > 0
    assert metrics["vel_r2"] is None  # no behavior in this dataset
    fit = convention.read_dataset(out / "fit.nc", "fit")
    act = convention.read_dataset(activity)
    assert fit["rates"].shape == act["activity"].shape
    assert np.all(fit["rates"].values > 0)
    assert set(fit["split"].values.tolist()) == {"train", "valid", "test"}
    assert int(fit["heldout"].sum()) == round(0.25 * act.sizes["unit"])
    assert fit.attrs["activity_sha256"] == file_sha256(activity)
    assert json.loads(fit.attrs["config"])["train"]["max_epochs"] == 3
    if model in registry.baselines():
        assert metrics["fp_bps"] is None and metrics["epochs"] is None
        base, rest = load_model(out)  # baselines load through the same function
        assert isinstance(base, BaselineModel) and base.family == model and base.params
    else:
        assert math.isfinite(metrics["fp_bps"]) and "factors" in fit and "states" in fit
        net, rest = load_model(out)
        assert net.family == model and "readout" in rest["modules"]
        assert fit.sizes["state"] == net.state_size
    if model in registry.gradient_trained():
        assert metrics["epochs"] == 3 and "encoder" in rest["modules"]
        assert (out / "checkpoint.pt").is_file()


def test_deterministic_for_a_seed(activity, tmp_path):
    runs = [fit_stage.run(activity, tmp_path / f"r{i}", model="lstm", config=SMALL, seed=3, device="cpu") for i in (0, 1)]
    a = convention.read_dataset(tmp_path / "r0" / "fit.nc", "fit")
    b = convention.read_dataset(tmp_path / "r1" / "fit.nc", "fit")
    np.testing.assert_array_equal(a["rates"].values, b["rates"].values)
    assert runs[0]["co_bps"] == runs[1]["co_bps"]
    c = fit_stage.run(activity, tmp_path / "r2", model="lstm", config=SMALL, seed=4, device="cpu")
    assert c["co_bps"] != runs[0]["co_bps"]


def test_resume_after_kill_matches_uninterrupted_run(activity, tmp_path):
    full = fit_stage.run(activity, tmp_path / "full", model="vanilla", config=SMALL, seed=1, device="cpu")

    def kill(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_stage.run(activity, tmp_path / "killed", model="vanilla", config=SMALL, seed=1, device="cpu", after_epoch=kill)
    assert (tmp_path / "killed" / "checkpoint.pt").is_file()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    ck = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 2
    cfg = tmp_path / "small.json"
    cfg.write_text(json.dumps(SMALL))
    assert fit_cli(activity, tmp_path / "killed", "--model", "vanilla", "--config", str(cfg), "--seed", "1",
                   "--device", "cpu", "--resume") == 0
    a = convention.read_dataset(tmp_path / "full" / "fit.nc", "fit")
    b = convention.read_dataset(tmp_path / "killed" / "fit.nc", "fit")
    np.testing.assert_array_equal(a["rates"].values, b["rates"].values)
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert resumed["co_bps"] == full["co_bps"] and resumed["epochs"] == full["epochs"] == 4
    hist = (tmp_path / "killed" / "history.csv").read_text().splitlines()
    assert len(hist) == 5
    # a checkpoint of another configuration is refused with one line
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**SMALL, "train": {**SMALL["train"], "lr": 0.001}}))
    assert fit_cli(activity, tmp_path / "killed", "--model", "vanilla", "--config", str(other), "--seed", "1",
                   "--resume") == 1


def test_calcium_traces_use_gaussian_loss(tmp_path):
    ds, rates = oscillator_activity(n_trials=20, n_time=25, n_units=8, seed=5)
    traces = (rates + 0.1 * np.random.default_rng(0).normal(size=rates.shape)).astype("float32")
    act = convention.new_activity(traces, time=ds["time"].values, bin_width_s=0.01, signal="dff", neuron="roi")
    path = convention.write_dataset(act, tmp_path / "ca.nc")
    for model in ("vanilla", "esn"):
        m = fit_stage.run(path, tmp_path / model, model=model, config="smoke", device="cpu")
        assert m["co_bps"] is None and m["fp_bps"] is None
        fit = convention.read_dataset(tmp_path / model / "fit.nc", "fit")
        assert fit["rates"].dims == ("trial", "time", "roi")
    assert fit_cli(path, tmp_path / "sm", "--model", "smoothing", "--config", "smoke") == 1


# ----------------------------------------------------------------------------- bad input: one line, exit 1


def _assert_one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("cortexfit fit: error:"), err
    for n in needles:
        assert n in err, err


def test_unknown_model_lists_valid_ones(activity, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:  # the CLI's choices come from the registry
        fit_cli(activity, tmp_path / "o", "--model", "gru")
    assert exc.value.code == 2
    assert "invalid choice: 'gru'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown model 'gru'; valid models: esn, fa, lstm, rate, smoothing, vanilla"):
        fit_stage.run(activity, tmp_path / "o", model="gru")
    assert not (tmp_path / "o").exists()


def test_file_that_breaks_the_convention(tmp_path, capsys):
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    assert fit_cli(bad, tmp_path / "o", "--model", "lstm") == 1
    _assert_one_line_error(capsys, "bad.nc")
    ds, _ = oscillator_activity(n_trials=8, n_time=10, n_units=6)
    ds.attrs["cortexfit_kind"] = "truth"
    ds.to_netcdf(tmp_path / "kind.nc", engine="h5netcdf")
    assert fit_cli(tmp_path / "kind.nc", tmp_path / "o", "--model", "lstm") == 1
    _assert_one_line_error(capsys, "expected a 'activity' dataset")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("n_trials", "n_units", "needle"), [(4, 8, "too few trials"), (20, 3, "too few units")])
def test_too_few_trials_or_units(tmp_path, capsys, n_trials, n_units, needle):
    ds, _ = oscillator_activity(n_trials=n_trials, n_time=10, n_units=n_units)
    path = convention.write_dataset(ds, tmp_path / "few.nc")
    assert fit_cli(path, tmp_path / "o", "--model", "vanilla", "--config", "smoke") == 1
    _assert_one_line_error(capsys, needle, "few.nc")
    assert not (tmp_path / "o").exists()


def test_silent_heldout_units(tmp_path, capsys):
    ds, _ = oscillator_activity(n_trials=20, n_time=20, n_units=8)
    held = split_units(8, 0.25, seed=0)
    ds["activity"].values[..., held] = 0
    path = convention.write_dataset(ds, tmp_path / "silent.nc")
    assert fit_cli(path, tmp_path / "o", "--model", "vanilla", "--config", "smoke") == 1
    _assert_one_line_error(capsys, "held-out units have no spikes")
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda(activity, tmp_path, capsys):
    assert fit_cli(activity, tmp_path / "o", "--model", "lstm", "--device", "cuda") == 1
    _assert_one_line_error(capsys, "CUDA is not available")
    assert not (tmp_path / "o").exists()


def test_nan_loss_is_a_clear_error_and_leaves_nothing(activity, tmp_path, capsys, monkeypatch):
    from cortexfit.fit import latent

    monkeypatch.setattr(latent, "masked_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    assert fit_cli(activity, tmp_path / "o", "--model", "rate", "--config", "smoke") == 1
    _assert_one_line_error(capsys, "training loss became nan", "train.lr")
    assert not (tmp_path / "o").exists()


def test_stale_outputs_are_removed_on_a_new_run(activity, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "horizon.json").write_text("{}")
    (out / "keep.txt").write_text("user file")
    fit_stage.run(activity, out, model="smoothing", config="smoke")
    assert not (out / "horizon.json").exists() and (out / "keep.txt").exists()


@pytest.mark.realdata
def test_real_recording_smoke(shared_data, tmp_path):
    from cortexfit import ingest

    nwb = shared_data / "sub-Jenkins_ses-small_desc-test_ecephys.nwb"
    act = tmp_path / "mc.nc"
    ingest.run(nwb, act, bin_ms=5.0, align="move_onset_time", window_ms=[-250.0, 450.0],
               areas="unit-id:1xxx=PMd,2xxx=M1")
    m = fit_stage.run(act, tmp_path / "fit", model="lstm", config="smoke", device="cpu")
    fit = convention.read_dataset(tmp_path / "fit" / "fit.nc", "fit")
    assert fit.sizes["unit"] == 107 and int(fit["heldout"].sum()) == 27
    assert np.isfinite(m["co_bps"]) and set(fit["area"].values.tolist()) == {"PMd", "M1"}


def test_velocity_and_psth_metrics(tmp_path):
    from fit_factory import condition_activity

    ds, rates = condition_activity(n_trials=40, n_time=40, n_units=12, seed=4)
    path = convention.write_dataset(ds, tmp_path / "beh.nc")
    cfg = {"train": {"max_epochs": 60, "batch_size": 8, "patience": 20, "psth_sigma_ms": 20.0},
           "model": {"hidden_size": 16, "factors": 4, "encoder_size": 16, "controller": 2}}
    m = fit_stage.run(path, tmp_path / "fit", model="lstm", config=cfg, device="cpu")
    assert m["vel_r2"] > 0.2 and m["psth_r2"] > 0.3  # the true rates score 0.85 here


def test_metrics_say_whether_a_fit_beats_the_null_and_smoothing(activity, tmp_path):
    smooth = fit_stage.run(activity, tmp_path / "s", model="smoothing", config="smoke", device="cpu")
    rnn = fit_stage.run(activity, tmp_path / "r", model="vanilla", config="smoke", device="cpu")
    assert smooth["beats_smoothing"] is None and smooth["smoothing_co_bps"] == smooth["co_bps"]
    assert rnn["smoothing_co_bps"] == smooth["co_bps"]  # the same baseline on the same split
    assert rnn["beats_smoothing"] == (rnn["co_bps"] > smooth["co_bps"])
    assert rnn["beats_null"] == (rnn["co_bps"] > 0) and smooth["beats_null"] == (smooth["co_bps"] > 0)


@pytest.mark.parametrize(("model", "mode"), [("vanilla", "latent"), ("vanilla", "forecast"), ("esn", "latent"),
                                             ("esn", "forecast")])
def test_heldout_test_spikes_never_leak_into_predictions(tmp_path, model, mode):
    """Scrambling the held-out units' spikes on test trials leaves every test-trial prediction unchanged."""
    from cortexfit.fit.config import load_config
    from cortexfit.fit.data import prepare

    ds, _ = oscillator_activity(n_trials=24, n_time=30, n_units=10, seed=2)
    data = prepare(ds, load_config(), seed=0)
    te, ho = np.flatnonzero(data.split == "test"), np.flatnonzero(data.heldout)
    scrambled = ds.copy(deep=True)
    block = scrambled["activity"].values[np.ix_(te, np.arange(ds.sizes["time"]), ho)]
    scrambled["activity"].values[np.ix_(te, np.arange(ds.sizes["time"]), ho)] = np.random.default_rng(0).permutation(
        block.reshape(-1)).reshape(block.shape)
    assert not np.array_equal(scrambled["activity"].values, ds["activity"].values)
    rates = []
    for name, d in (("a", ds), ("b", scrambled)):
        path = convention.write_dataset(d, tmp_path / f"{name}.nc")
        fit_stage.run(path, tmp_path / f"fit_{name}", model=model, mode=mode, config="smoke", device="cpu")
        rates.append(convention.read_dataset(tmp_path / f"fit_{name}" / "fit.nc", "fit")["rates"].values)
    np.testing.assert_array_equal(rates[0][te], rates[1][te])


@pytest.fixture(scope="module")
def stim_activity(tmp_path_factory):
    """The oscillator dataset with two stimulus channels: +-1 pulses and a held 0/1 cue."""
    ds, _ = oscillator_activity(n_trials=24, n_time=30, n_units=10, seed=0)
    rng = np.random.default_rng(1)
    stim = np.zeros((24, 30, 2), "float32")
    stim[..., 0] = np.where(rng.random((24, 30)) < 0.1, rng.choice([-1.0, 1.0], (24, 30)), 0.0)
    stim[:, 10:, 1] = 1.0
    ds["stimulus"] = (("trial", "time", "stimulus_channel"), stim)
    ds = ds.assign_coords(stimulus_channel=["pulse", "cue"], stimulus_kind=("stimulus_channel", ["series"] * 2))
    return convention.write_dataset(ds, tmp_path_factory.mktemp("stim") / "act.nc")


@pytest.mark.parametrize("mode", ["latent", "forecast"])
def test_inputs_listed_in_metrics_and_stored_in_fit_nc(stim_activity, tmp_path, mode):
    cfg = {**SMALL, "train": {**SMALL["train"], "max_epochs": 1}}
    m = fit_stage.run(stim_activity, tmp_path / mode, model="rate", mode=mode, config=cfg, device="cpu")
    assert json.loads((tmp_path / mode / "metrics.json").read_text())["inputs"] == m["inputs"] == ["pulse", "cue"]
    fit = convention.read_dataset(tmp_path / mode / "fit.nc", "fit")
    net, _ = load_model(tmp_path / mode)
    u = fit["inputs"]
    assert u.dims == ("trial", "time", "input") and u.sizes["input"] == net.input_size
    stim = convention.read_dataset(stim_activity)["stimulus"].values
    names = u["input"].values.tolist()
    if mode == "latent":  # task inputs, then the encoder-inferred controller inputs
        assert names == ["pulse", "cue", "controller:0", "controller:1"]
    else:  # observed / fed-back held-in activity, then the task inputs
        heldin = np.flatnonzero(fit["heldout"].values == 0)
        assert names == [f"heldin:{i}" for i in heldin] + ["pulse", "cue"]
    np.testing.assert_array_equal(u.sel(input=["pulse", "cue"]).values, stim)
    assert "step" in u.attrs["alignment"]
    # the stored inputs reproduce the stored states
    with torch.no_grad():
        s = fit["states"].values
        x = torch.as_tensor(u.values)
        if mode == "latent":
            nxt = net.step(torch.as_tensor(s[:, 0]), x[:, 1])
            np.testing.assert_allclose(nxt.numpy(), s[:, 1], atol=1e-5)
        else:
            nxt = net.step(torch.as_tensor(s[:, 3]), x[:, 3])
            np.testing.assert_allclose(nxt.numpy(), s[:, 4], atol=1e-5)


@pytest.mark.parametrize("mode", ["latent", "forecast"])
def test_esn_stores_its_reservoir_drive_in_fit_nc(stim_activity, tmp_path, mode):
    """The ESN's fit.nc 'inputs' (held-in activity, then the task inputs) reproduce its stored states."""
    fit_stage.run(stim_activity, tmp_path / mode, model="esn", mode=mode, config=SMALL, device="cpu")
    fit = convention.read_dataset(tmp_path / mode / "fit.nc", "fit")
    net, _ = load_model(tmp_path / mode)
    u = fit["inputs"]
    heldin = np.flatnonzero(fit["heldout"].values == 0)
    assert u["input"].values.tolist() == [f"heldin:{i}" for i in heldin] + ["pulse", "cue"]
    assert u.sizes["input"] == net.input_size
    stim = convention.read_dataset(stim_activity)["stimulus"].values
    np.testing.assert_array_equal(u.sel(input=["pulse", "cue"]).values, stim)
    s, x = fit["states"].values, torch.as_tensor(u.values)
    with torch.no_grad():
        for t in (1, 5, 25):  # 25 lies in the forward-prediction bins (closed loop in forecast mode)
            prev, nxt = (t - 1, t) if mode == "latent" else (t, t + 1)
            got = net.step(torch.as_tensor(s[:, prev]), x[:, nxt if mode == "latent" else t])
            np.testing.assert_allclose(got.numpy(), s[:, nxt], atol=1e-4)


def test_no_task_inputs_when_config_says_none(stim_activity, tmp_path):
    m = fit_stage.run(stim_activity, tmp_path / "f", model="smoothing", config={"model": {"inputs": "none"}},
                      device="cpu")
    assert m["inputs"] == []
    assert "inputs" not in convention.read_dataset(tmp_path / "f" / "fit.nc", "fit")  # baselines have no generator
