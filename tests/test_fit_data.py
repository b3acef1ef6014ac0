"""Tests of cortexfit.fit.data: the seeded splits, task inputs and the checks of prepare()."""

from __future__ import annotations

import numpy as np

from cortexfit.core import convention
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


def test_task_inputs_from_trial_coords(osc_activity):
    ds = convention.read_dataset(osc_activity)
    x, names = task_inputs(ds, load_config())
    assert names == ["condition=a", "condition=b", "pulse:start_time"]
    assert np.all(x[..., 0] + x[..., 1] == 1) and np.all(x[:, 0, 2] == 1) and np.all(x[:, 1:, 2] == 0)
    assert task_inputs(ds, load_config({"model": {"inputs": "none"}}))[0].shape[-1] == 0
