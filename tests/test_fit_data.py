"""Tests of cortexfit.fit.data: the seeded splits, task inputs and the checks of prepare()."""

from __future__ import annotations

import numpy as np
import pytest

from cortexfit.core import convention
from cortexfit.core.errors import FitError
from cortexfit.fit.config import load_config
from cortexfit.fit.data import prepare, task_inputs
from test_fit_run import fit_cli


def test_split_is_seeded_and_shared(osc_activity, tmp_path):
    for seed in (0, 1):
        assert fit_cli(osc_activity, tmp_path / f"s{seed}", "--model", "smoothing", "--config", "smoke",
                       "--seed", str(seed)) == 0
    a = convention.read_dataset(tmp_path / "s0" / "fit.nc", "fit")
    b = convention.read_dataset(tmp_path / "s1" / "fit.nc", "fit")
    data = prepare(convention.read_dataset(osc_activity), load_config(), seed=0)
    np.testing.assert_array_equal(a["heldout"].values == 1, data.heldout)
    np.testing.assert_array_equal(a["split"].values, data.split)
    assert not np.array_equal(a["heldout"].values, b["heldout"].values) or not np.array_equal(
        a["split"].values, b["split"].values)


def test_no_pulses_from_unnamed_time_columns_and_no_condition_by_default(osc_activity):
    ds = convention.read_dataset(osc_activity)
    ds = ds.assign_coords(move_onset_time=("trial", ds.start_time.values + 0.05))  # a behavioural event
    x, names = task_inputs(ds, load_config())
    assert names == [] and x.shape == (ds.sizes["trial"], ds.sizes["time"], 0)  # before: condition + pulses
    assert prepare(ds, load_config(), seed=0).n_inputs == 0


def test_named_event_columns_and_condition_on_request(osc_activity):
    ds = convention.read_dataset(osc_activity)
    ds = ds.assign_coords(go_cue_time=("trial", ds.start_time.values + 0.052))  # inside bin 5 (10 ms bins)
    cfg = load_config({"model": {"event_inputs": ["go_cue_time"], "condition_inputs": True}})
    x, names = task_inputs(ds, cfg)
    assert names == ["pulse:go_cue_time", "condition=a", "condition=b"]
    assert np.all(x[:, 5, 0] == 1) and x[..., 0].sum() == ds.sizes["trial"]
    assert np.all(x[..., 1] + x[..., 2] == 1)
    assert task_inputs(ds, load_config({"model": {"inputs": "none", "event_inputs": ["go_cue_time"]}}))[1] == []
    with pytest.raises(FitError, match="event_inputs 'cue_time' is not a numeric trial coordinate.*go_cue_time"):
        task_inputs(ds, load_config({"model": {"event_inputs": ["cue_time"]}}))


def test_stimulus_channels_are_the_task_inputs(osc_activity):
    ds = convention.read_dataset(osc_activity)
    rng = np.random.default_rng(0)
    stim = np.zeros((ds.sizes["trial"], ds.sizes["time"], 3), "float32")
    stim[..., 0] = rng.choice([-1.0, 0.0, 1.0], size=stim.shape[:2])
    stim[..., 1] = 0.08  # a target position in metres: scaled to 1
    ds["stimulus"] = (("trial", "time", "stimulus_channel"), stim)
    ds = ds.assign_coords(stimulus_channel=["pulses", "target_x", "silent"],
                          stimulus_kind=("stimulus_channel", ["series"] * 3))
    convention.validate(ds, "activity")
    data = prepare(ds, load_config(), seed=0)
    assert data.input_names == ["pulses", "target_x", "silent"] and data.n_inputs == 3
    np.testing.assert_array_equal(data.inputs[..., 0], stim[..., 0])
    assert np.all(data.inputs[..., 1] == 1.0) and np.all(data.inputs[..., 2] == 0.0)
