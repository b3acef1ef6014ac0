"""The joint multi-session model (cortexfit.fit.sessions): shared modules, per-session heads, composition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexfit.core import convention
from cortexfit.core.errors import FitError
from cortexfit.fit.config import load_config
from cortexfit.fit.data import prepare
from cortexfit.fit.latent import LatentBatch
from cortexfit.fit.sessions import (
    build_joint,
    check_compatible,
    compose_encoder,
    mixed_batch_loss,
    pca_read_in,
    session_losses,
)


def _data(n_units: int, *, seed: int = 0, bw: float = 0.01, n_trials: int = 12, n_time: int = 20):
    y = np.random.default_rng(seed).poisson(0.5, (n_trials, n_time, n_units)).astype("uint16")
    ds = convention.new_activity(y, time=np.arange(n_time) * bw, bin_width_s=bw)
    return prepare(ds, load_config("smoke"), seed=0)


@pytest.fixture(scope="module")
def joint():
    datas = [_data(6), _data(9, seed=1)]
    return build_joint(datas, ["a", "b"], load_config("smoke"), family="vanilla", seed=0), datas


def test_views_share_generator_encoder_and_factor_projection_but_not_heads(joint):
    model, _ = joint
    a, b = model.views["a"], model.views["b"]
    assert a.dynamics is b.dynamics and a.encoder.encoder is b.encoder.encoder
    assert a.readout.to_factors is b.readout.to_factors
    assert a.encoder.read_in is not b.encoder.read_in and a.readout.to_units is not b.readout.to_units
    n_joint = sum(p.numel() for p in model.parameters())
    n_views = sum(p.numel() for v in (a, b) for p in v.parameters())
    shared = sum(p.numel() for p in model.shared_parameters().values())
    assert n_joint == n_views - shared  # shared parameters counted once


def test_composed_encoder_reproduces_the_read_in_encoder(joint):
    model, datas = joint
    view = model.views["b"].eval()
    x = torch.as_tensor(datas[1].encoder_input())
    g0, ctrl = view.encoder(x)
    enc = compose_encoder(view.encoder).eval()
    assert enc.n_in == int((~datas[1].heldout).sum())
    g0c, ctrlc = enc(x)
    assert torch.allclose(g0, g0c, atol=1e-5) and torch.allclose(ctrl, ctrlc, atol=1e-5)
    # a different read-in gives different states: the composition is not vacuous
    with torch.no_grad():
        view.encoder.read_in.weight.mul_(2.0)
    try:
        assert not torch.allclose(view.encoder(x)[0], g0c, atol=1e-4)
    finally:
        with torch.no_grad():
            view.encoder.read_in.weight.mul_(0.5)


def test_pca_read_in_projects_onto_the_sessions_principal_axes():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(500, 2)) * [2.0, 1.0]
    x = latent @ np.linalg.qr(rng.normal(size=(7, 2)))[0].T * 3 + 0.05 * rng.normal(size=(500, 7))
    lin = torch.nn.Linear(7, 4)
    assert pca_read_in(lin, x) == 4
    w = lin.weight.detach().numpy().astype(float)
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-5)  # orthonormal axes: the activity's scale is kept
    z = lin(torch.as_tensor(x, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(0)[:2], [6.0, 3.0], rtol=0.1)  # not whitened
    assert z.std(0)[2:].max() < 0.1  # the noise axes stay small
    c = np.corrcoef(z[:, :2].T, latent.T)[:2, 2:]  # the two leading axes span the latent plane
    assert np.linalg.svd(c, compute_uv=False).min() > 0.99


def test_train_only_freezes_other_sessions_heads(joint):
    model, _ = joint
    model.train_only(["a"])
    assert all(p.requires_grad for p in model.head_parameters("a"))
    assert not any(p.requires_grad for p in model.head_parameters("b"))
    assert all(p.requires_grad for p in model.shared_parameters().values())
    model.train_only(["a", "b"])


def test_mixed_batch_splits_by_session_and_weights_by_share(joint):
    model, datas = joint
    cfg = load_config({"model": {"coordinated_dropout": 0.0, "dropout": 0.0}})
    tensors, batch, _ = session_losses(model, datas, ["a", "b"], cfg, "cpu")
    model.eval()
    pos_a, pos_b = torch.arange(len(tensors[0].train)), torch.arange(len(tensors[1].train))
    mixed = mixed_batch_loss(model, [("a", batch[0], pos_a), ("b", batch[1], pos_b)])
    b = torch.tensor([0, 1, len(pos_a) + 0])  # two trials of a, one of b
    want = (2 * batch[0](model.views["a"], torch.tensor([0, 1]), 0) + batch[1](model.views["b"], torch.tensor([0]), 0)) / 3
    assert torch.allclose(mixed(model, b, 0), want)


def test_views_run_on_their_own_unit_counts(joint):
    model, datas = joint
    for name, d in zip(("a", "b"), datas):
        x = torch.as_tensor(d.encoder_input()[:2])
        out = model.views[name](LatentBatch(x, torch.zeros(2, d.n_time, 0)))
        assert out.rates.shape == (2, d.n_time, d.n_units)


def test_sessions_with_other_bin_widths_or_inputs_are_refused():
    a, b = _data(6), _data(6, bw=0.02)
    with pytest.raises(FitError, match="sessions s1 and s2 have different bin widths"):
        check_compatible([a, b], ["s1", "s2"], align_events=["go", "go"])
    with pytest.raises(FitError, match="sessions s1 and s2 are aligned to different events"):
        check_compatible([a, _data(6)], ["s1", "s2"], align_events=["go", "move"])
    check_compatible([a, _data(5)], ["s1", "s2"], align_events=["go", "go"])  # other unit counts are fine


def test_heads_only_training_leaves_the_shared_system_alone():
    from cortexfit.fit import loop

    cfg = load_config({"train": {"max_epochs": 2, "batch_size": 4}, "model": {"hidden_size": 8, "factors": 3}})
    datas = [_data(6), _data(8, seed=1)]
    model = build_joint(datas, ["a", "b"], cfg, family="rate", seed=0)
    tensors, batch, valid = session_losses(model, datas, ["a", "b"], cfg, "cpu")
    before = {k: p.detach().clone() for k, p in model.shared_parameters().items()}
    head = [p.detach().clone() for p in model.head_parameters("b")]
    model.train_only(["b"], shared=False)
    pos = torch.arange(len(tensors[1].train))
    loop.train(model, mixed_batch_loss(model, [("b", batch[1], pos)]), lambda _m: valid[1](model.view("b")),
               n_train=len(pos), opts=cfg.train, seed=0)
    assert all(torch.equal(before[k], p) for k, p in model.shared_parameters().items())
    assert any(not torch.equal(a, p) for a, p in zip(head, model.head_parameters("b")))
