"""Tests of cortexfit.fit.esn: the echo-state fit in latent and forecast modes."""

from __future__ import annotations

import json

import numpy as np

from cortexfit.cli import main
from cortexfit.core import convention
from fit_factory import random_walk_activity


def test_esn_forecast_via_cli(tmp_path):
    ds, _ = random_walk_activity(n_trials=20, n_time=30, n_units=8, seed=3)
    path = convention.write_dataset(ds, tmp_path / "rw.nc")
    rc = main(["-q", "fit", str(path), str(tmp_path / "esn"), "--model", "esn", "--mode", "forecast",
               "--config", "smoke", "--device", "cpu"])
    assert rc == 0
    table = json.loads((tmp_path / "esn" / "horizon.json").read_text())
    assert len(table["open_loop"]) == len(table["closed_loop"]) == len(table["horizon"]) > 0
    metrics = json.loads((tmp_path / "esn" / "metrics.json").read_text())
    assert metrics["mode"] == "forecast" and metrics["epochs"] is None


def test_esn_latent_fit_predicts_heldout_units_and_saves_a_loadable_model(tmp_path):
    from cortexfit import fit as fit_stage
    from cortexfit.models import ESNDynamics, load_model

    ds, _ = random_walk_activity(n_trials=30, n_time=40, n_units=10, seed=1)
    path = convention.write_dataset(ds, tmp_path / "rw.nc")
    m = fit_stage.run(path, tmp_path / "esn", model="esn", config="smoke", device="cpu")
    assert m["co_bps"] is not None and np.isfinite(m["co_bps"]) and m["device"] == "cpu"
    net, rest = load_model(tmp_path / "esn")
    assert isinstance(net, ESNDynamics) and set(rest["modules"]) == {"readout"}
    fit = convention.read_dataset(tmp_path / "esn" / "fit.nc", "fit")
    assert fit["states"].shape[-1] == net.hidden_size


def test_esn_inputs_never_show_the_forward_bins():
    from cortexfit.fit.config import load_config
    from cortexfit.fit.data import prepare
    from cortexfit.fit.esn import esn_inputs

    ds, _ = random_walk_activity(n_trials=12, n_time=30, n_units=8, seed=2)
    data = prepare(ds, load_config(), seed=0)
    for mode in ("latent", "forecast"):
        u = esn_inputs(data, load_config(), mode)
        n_hi = int((~data.heldout).sum())
        assert np.all(u[:, data.n_enc :, :n_hi] == 0) and np.any(u[:, : data.n_enc, :n_hi] != 0)


def test_esn_fit_logs_its_stages(tmp_path, caplog):
    """A Snakemake log shows the reservoir run and the readout fit as they start and end, with elapsed time."""
    import logging

    from cortexfit.fit.config import load_config
    from cortexfit.fit.data import FitRequest, prepare
    from cortexfit.fit.esn import fit_esn

    ds, _ = random_walk_activity(n_trials=12, n_time=30, n_units=8, seed=2)
    data = prepare(ds, load_config(), seed=0)
    with caplog.at_level(logging.INFO, logger="cortexfit"):
        fit_esn(data, load_config("smoke"), FitRequest(model="esn", mode="forecast"))
    msgs = [r.getMessage() for r in caplog.records if r.name == "cortexfit.fit.esn"]
    assert any(m.startswith("esn (forecast): reservoir run: 12 trials x 30 bins") for m in msgs)
    assert any(m.startswith("esn (forecast): reservoir run done, elapsed") for m in msgs)
    assert any(m.startswith("esn (forecast): readout fit done (readout ridge, alpha") for m in msgs)
    assert any("closed-loop rollout" in m for m in msgs) and any("fit done in" in m for m in msgs)
