"""Tests of cortexfit.fit.outputs: the one writer of a fit folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cortexfit.core import convention
from cortexfit.fit.outputs import METRIC_KEYS, FitResult, clear_outputs, fit_dataset, history_csv, write_fit_dir


def _result(save):
    rates = np.full((3, 4, 2), 0.5)
    return FitResult(rates=rates, states=np.zeros((3, 4, 5)), factors=None, n_params=7, epochs=2, seconds=1.0,
                     save_model=save, history=[{"epoch": 1, "train_loss": 1.0, "valid_loss": 2.0, "seconds": 0.5}],
                     variables={"horizon": (("horizon",), np.array([1, 2]))}, json_files={"horizon.json": {"a": 1}})


def _inputs():
    act = convention.new_activity(np.zeros((3, 4, 2), "uint16"), time=np.arange(4) * 0.01, bin_width_s=0.01)
    act = act.assign_coords(condition=("trial", ["a", "b", "a"]))
    return act, np.array(["train", "valid", "test"]), np.array([False, True])


def test_writes_every_file_metrics_last(tmp_path):
    act, split, heldout = _inputs()
    res = _result(lambda p: p.write_bytes(b"model"))
    ds = fit_dataset(act, split=split, heldout=heldout, spikes=True, res=res, attrs={
        "model": "m", "mode": "latent", "seed": 0, "device": "cpu", "activity_file": "a.nc", "activity_sha256": "x",
        "config": "{}"})
    metrics = dict.fromkeys(METRIC_KEYS, 1.0)
    written = write_fit_dir(tmp_path, fit_ds=ds, res=res, metrics=metrics)
    assert [p.name for p in written][-1] == "metrics.json"
    fit = convention.read_dataset(tmp_path / "fit.nc", "fit")
    assert fit["heldout"].values.tolist() == [0, 1] and list(fit["split"].values) == list(split)
    assert list(fit["condition"].values) == ["a", "b", "a"] and "horizon" in fit.coords
    assert json.loads((tmp_path / "horizon.json").read_text()) == {"a": 1}
    assert list(json.loads((tmp_path / "metrics.json").read_text())) == list(METRIC_KEYS)


def test_a_failing_model_save_leaves_nothing(tmp_path):
    act, split, heldout = _inputs()

    def boom(path):
        raise OSError("disk full")

    res = _result(boom)
    ds = fit_dataset(act, split=split, heldout=heldout, spikes=True, res=res, attrs={
        "model": "m", "mode": "latent", "seed": 0, "device": "cpu", "activity_file": "a.nc", "activity_sha256": "x",
        "config": "{}"})
    with pytest.raises(OSError, match="disk full"):
        write_fit_dir(tmp_path, fit_ds=ds, res=res, metrics=dict.fromkeys(METRIC_KEYS))
    assert list(tmp_path.iterdir()) == []


def test_clear_outputs_keeps_the_checkpoint_only_when_resuming(tmp_path):
    for name in ("fit.nc", "metrics.json", "checkpoint.pt"):
        (tmp_path / name).write_text("x")
    clear_outputs(tmp_path, keep_checkpoint=True)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    clear_outputs(tmp_path, keep_checkpoint=False)
    assert list(tmp_path.iterdir()) == []


def test_history_csv_round_trips_losses_exactly():
    rows = [{"epoch": 1, "train_loss": 0.1 + 0.2, "valid_loss": 1 / 3, "seconds": 2.0}]
    text = history_csv(rows)
    import io

    import pandas as pd

    back = pd.read_csv(io.StringIO(text), float_precision="round_trip")
    assert back["train_loss"][0] == 0.1 + 0.2 and back["valid_loss"][0] == 1 / 3


def test_generator_inputs_stored_with_their_names(tmp_path):
    act, split, heldout = _inputs()
    res = _result(lambda p: p.write_bytes(b"model"))
    res.inputs, res.input_names, res.inputs_alignment = np.ones((3, 4, 2)), ["cue", "controller:0"], "s[t] = f(u[t])"
    attrs = {"model": "m", "mode": "latent", "seed": 0, "device": "cpu", "activity_file": "a.nc",
             "activity_sha256": "x", "config": "{}"}
    write_fit_dir(tmp_path, fit_ds=fit_dataset(act, split=split, heldout=heldout, spikes=True, res=res, attrs=attrs),
                  res=res, metrics=dict.fromkeys(METRIC_KEYS))
    fit = convention.read_dataset(tmp_path / "fit.nc", "fit")
    assert fit["inputs"].dims == ("trial", "time", "input") and fit["input"].values.tolist() == ["cue", "controller:0"]
    assert fit["inputs"].attrs["alignment"] == "s[t] = f(u[t])"
    res.input_names = ["cue"]
    with pytest.raises(ValueError, match="2 generator input channels but 1 names"):
        fit_dataset(act, split=split, heldout=heldout, spikes=True, res=res, attrs=attrs)
