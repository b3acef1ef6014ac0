"""Tests of the latent model (encoder -> generator -> readout) and of latent-mode fits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cortexfit import fit as fit_stage
from cortexfit.core import convention
from cortexfit.fit.latent import (
    Encoder,
    LatentBatch,
    LatentModel,
    run_dynamics,
)
from cortexfit.models import build_dynamics
from fit_factory import oscillator_activity


@pytest.mark.parametrize("family", ["vanilla", "rate", "lstm"])
def test_latent_model_shapes_and_initial_state(family):
    gen = build_dynamics(family, input_size=3, hidden_size=6)
    model = LatentModel(gen, n_heldin=5, n_units=7, n_inputs=2, controller=1, factors=3, encoder_size=4)
    batch = LatentBatch(enc_input=torch.randn(2, 8, 5), inputs=torch.randn(2, 10, 2))
    out = model(batch)
    assert out.rates.shape == (2, 10, 7) and out.factors.shape == (2, 10, 3)
    assert out.states.shape == (2, 10, gen.state_size)
    assert out.g0.shape == (2, gen.state_size)
    assert torch.all(out.rates > 0)
    # the first state is one generator step from the encoder's initial state
    first = gen.step(out.g0, model.generator_input(batch, model.encoder(batch.enc_input)[1])[:, 0])
    assert torch.allclose(out.states[:, 0], first, atol=1e-5)


def test_controller_is_zero_after_encoder_window():
    gen = build_dynamics("vanilla", input_size=2, hidden_size=4)
    model = LatentModel(gen, n_heldin=3, n_units=3, n_inputs=0, controller=2, factors=2, encoder_size=4)
    batch = LatentBatch(enc_input=torch.randn(1, 5, 3), inputs=torch.zeros(1, 9, 0))
    u = model.generator_input(batch, model.encoder(batch.enc_input)[1])
    assert u.shape == (1, 9, 2)
    assert torch.all(u[:, 5:] == 0) and torch.any(u[:, :5] != 0)


def test_generator_input_shape_mismatch_raises():
    with pytest.raises(ValueError, match="input_size"):
        LatentModel(build_dynamics("vanilla", input_size=3, hidden_size=4), n_heldin=2, n_units=3, n_inputs=1,
                    factors=2, encoder_size=3)


def test_encoder_outputs():
    g0, ctrl = Encoder(n_in=4, size=3, state_size=5)(torch.zeros(2, 6, 4))
    assert g0.shape == (2, 5) and ctrl is None


def test_tbptt_cuts_gradient_to_initial_state():
    net = build_dynamics("vanilla", input_size=1, hidden_size=3)
    u = torch.randn(1, 8, 1)
    s0 = torch.randn(1, 3, requires_grad=True)
    states = run_dynamics(net, u, s0, tbptt=4)
    assert torch.allclose(states, net(u, s0))
    states[:, 4:].sum().backward()  # only later chunks: no gradient reaches s0
    assert s0.grad is None or torch.all(s0.grad == 0)


def test_latent_fit_beats_null_on_simulated_poisson(tmp_path):
    ds, rates = oscillator_activity(n_trials=40, n_time=40, n_units=16, seed=1)
    path = convention.write_dataset(ds, tmp_path / "osc.nc")
    cfg = {"train": {"max_epochs": 60, "batch_size": 8, "lr": 0.02, "patience": 15},
           "model": {"hidden_size": 16, "factors": 4, "encoder_size": 16, "dropout": 0.05, "controller": 4,
                     "coordinated_dropout": 0.3}}
    m = fit_stage.run(path, tmp_path / "fit", model="vanilla", config=cfg, seed=0, device="cpu")
    assert m["co_bps"] > 0.05
    fit = convention.read_dataset(tmp_path / "fit" / "fit.nc", "fit")
    # predicted rates track the true rates of the held-out units on test trials
    te = fit["split"].values == "test"
    ho = fit["heldout"].values == 1
    pred = fit["rates"].values[te][..., ho].ravel()
    true = rates[te][..., ho].ravel()
    assert np.corrcoef(pred, true)[0, 1] > 0.5
    history = (tmp_path / "fit" / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,valid_loss,seconds" and len(history) == m["epochs"] + 1
    assert json.loads((tmp_path / "fit" / "metrics.json").read_text())["co_bps"] == m["co_bps"]
