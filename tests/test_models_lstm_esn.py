"""Tests of the ``lstm`` and ``esn`` families, the ridge readout and :class:`EchoStateNetwork`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexfit.core.errors import ConfigError, FitError
from cortexfit.models import EchoStateNetwork, build_dynamics, fit_readout
from cortexfit.models.esn import ESNOptions, make_reservoir


@pytest.fixture(autouse=True)
def _seed():
    """Seed torch for every test (tests/conftest.py already keeps torch to one thread)."""
    torch.manual_seed(0)


def _iterate(net, u, s0):
    s, out = s0, []
    for t in range(u.shape[1]):
        s = net.step(s, u[:, t])
        out.append(s)
    return torch.stack(out, 1)


def test_lstm_forward_equals_step_and_nn_lstm():
    net = build_dynamics("lstm", input_size=3, hidden_size=7)
    u = torch.randn(4, 20, 3)
    s0 = 0.3 * torch.randn(4, 14)
    states = net(u, s0)
    assert states.shape == (4, 20, 14) and net.state_size == 14
    torch.testing.assert_close(states, _iterate(net, u, s0), atol=1e-5, rtol=1e-5)
    ref, (_, c_T) = net.lstm(u, (s0[None, :, :7].contiguous(), s0[None, :, 7:].contiguous()))
    torch.testing.assert_close(net.hidden(states), ref)
    torch.testing.assert_close(states[:, -1, 7:], c_T[0], atol=1e-5, rtol=1e-5)
    assert net.recurrent_weight() is None


def test_lstm_trains_and_forget_bias():
    net = build_dynamics("lstm", input_size=2, hidden_size=5, forget_bias=2.0)
    b = net.lstm.bias_ih_l0[5:10].detach()
    other = build_dynamics("lstm", input_size=2, hidden_size=5, forget_bias=0.0)
    assert float(b.mean() - other.lstm.bias_ih_l0[5:10].detach().mean()) > 1.0
    net.hidden(net(torch.randn(2, 6, 2))).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_esn_forward_equals_step_and_is_fixed():
    net = build_dynamics("esn", input_size=2, hidden_size=60, spectral_radius=0.7, leak_rate=0.4, bias_scaling=0.2)
    u = torch.randn(3, 25, 2)
    s0 = 0.1 * torch.randn(3, 60)
    torch.testing.assert_close(net(u, s0), _iterate(net, u, s0), atol=1e-5, rtol=1e-5)
    assert list(net.parameters()) == []
    radius = torch.linalg.eigvals(net.recurrent_weight().double()).abs().max()
    assert abs(float(radius) - 0.7) < 1e-4
    W = net.recurrent_weight()
    assert 0.85 < float((W == 0).float().mean()) < 0.95  # sparsity 0.9
    same = build_dynamics("esn", input_size=2, hidden_size=60, spectral_radius=0.7, leak_rate=0.4, bias_scaling=0.2)
    torch.testing.assert_close(same.weight_hh, net.weight_hh)  # seeded by its own seed, not the global one
    other = build_dynamics("esn", input_size=2, hidden_size=60, seed=1)
    assert not torch.allclose(other.weight_ih, net.weight_ih)


def test_esn_options_validation():
    with pytest.raises(ConfigError, match="leak_rate"):
        build_dynamics("esn", input_size=1, hidden_size=5, leak_rate=1.5)
    with pytest.raises(ConfigError, match="valid options: .*spectral_radius"):
        build_dynamics("esn", input_size=1, hidden_size=5, radius=0.9)


def _brute_force_cv(X, Y, alphas, k):
    """k-fold CV over trials by explicit centred ridge solves (the slow, obvious way)."""
    B = X.shape[0]
    ids = torch.arange(B) % k
    errs = []
    for a in alphas:
        sse = 0.0
        for f in range(k):
            tr, va = X[ids != f].reshape(-1, X.shape[-1]), X[ids == f].reshape(-1, X.shape[-1])
            ytr, yva = Y[ids != f].reshape(-1, Y.shape[-1]), Y[ids == f].reshape(-1, Y.shape[-1])
            mx, my = tr.mean(0), ytr.mean(0)
            Xc = tr - mx
            W = torch.linalg.solve(Xc.t() @ Xc + a * torch.eye(X.shape[-1], dtype=X.dtype), Xc.t() @ (ytr - my))
            sse += float((((va - mx) @ W + my - yva) ** 2).sum())
        errs.append(sse / (X.shape[0] * X.shape[1] * Y.shape[-1]))
    return errs


def test_fit_readout_cv_matches_brute_force():
    X = torch.randn(10, 30, 6, dtype=torch.float64)
    Y = X @ torch.randn(6, 2, dtype=torch.float64) + 0.5 * torch.randn(10, 30, 2, dtype=torch.float64) + 3.0
    alphas = [1e-3, 1.0, 30.0, 1e3]
    ro = fit_readout(X, Y, alphas, folds=5)
    np.testing.assert_allclose(ro.cv_mse, _brute_force_cv(X, Y, alphas, 5), rtol=1e-8)
    assert ro.alpha == alphas[int(np.argmin(ro.cv_mse))]
    # final fit: the centred ridge solution on all data
    Xf, Yf = X.reshape(-1, 6), Y.reshape(-1, 2)
    Xc = Xf - Xf.mean(0)
    W = torch.linalg.solve(Xc.t() @ Xc + ro.alpha * torch.eye(6, dtype=X.dtype), Xc.t() @ (Yf - Yf.mean(0)))
    torch.testing.assert_close(ro.weight.detach(), W.t())
    assert ro.weight.dtype == torch.float64


def test_fit_readout_picks_more_ridge_for_noisier_targets():
    X = torch.randn(12, 20, 15)
    w = torch.randn(15, 1)
    clean = fit_readout(X, X @ w + 0.01 * torch.randn(12, 20, 1))
    noisy = fit_readout(X[:, :4], X[:, :4] @ w + 5.0 * torch.randn(12, 4, 1))
    assert noisy.alpha > clean.alpha
    assert len(clean.cv_mse) == len(clean.alphas) > 5
    with pytest.raises(FitError, match="do not match"):
        fit_readout(X, torch.randn(12, 19, 1))


def test_fit_readout_single_sequence_and_float32_precision():
    # near-collinear float32 states: the float64 Gram keeps the tiny-ridge solution accurate
    t = torch.arange(4000, dtype=torch.float64)
    base = torch.stack([torch.sin(0.01 * t), torch.cos(0.013 * t)], 1)
    X = torch.cat([base, base @ torch.randn(2, 30, dtype=torch.float64) + 1e-4 * torch.randn(4000, 30,
                                                                                            dtype=torch.float64)], 1)
    y = (base @ torch.tensor([[1.5], [-0.5]], dtype=torch.float64))
    ro = fit_readout(X.float(), y.float(), alphas=[1e-8])
    with torch.no_grad():
        err = float(((ro(X.float()).double() - y) ** 2).mean().sqrt())
    assert err < 1e-4
    assert ro.weight.dtype == torch.float32


def test_esn_dynamics_fit_readout_recovers_memory_task():
    net = build_dynamics("esn", input_size=1, hidden_size=100, leak_rate=1.0, spectral_radius=0.8)
    u = torch.rand(20, 80, 1) - 0.5
    target = torch.roll(u, 2, dims=1)  # recall the input two steps back
    states = net(u)
    ro = net.fit_readout(states[:, 5:], target[:, 5:])
    with torch.no_grad():
        nrmse = float(((ro(states[:, 5:]) - target[:, 5:]) ** 2).mean().sqrt() / target.std())
    assert nrmse < 0.05


def test_echo_state_network_chunks_match_sequential():
    t = np.arange(3000)
    s = np.sin(0.03 * t) * np.cos(0.0071 * t)
    exact = EchoStateNetwork(units=100, leak_rate=0.3, ridge=1e-7)
    chunked = EchoStateNetwork(units=100, leak_rate=0.3, ridge=1e-7, chunk_length=400, chunk_washout=400)
    exact._build(1)
    chunked._build(1)
    a, b = exact.states(s[:, None]), chunked.states(s[:, None])
    assert a.shape == b.shape == (3000, 100)
    assert float((a - b).abs().max()) < 1e-5
    pa = exact.fit(s[:2000, None], s[1:2001]).predict(s[2000:-1, None])
    pb = chunked.fit(s[:2000, None], s[1:2001]).predict(s[2000:-1, None])
    nrmse = np.sqrt(np.mean((pa[:, 0] - s[2001:]) ** 2)) / s.std()
    assert nrmse < 1e-3
    np.testing.assert_allclose(pa, pb, atol=1e-4)


def test_make_reservoir_is_deterministic():
    a = make_reservoir(250, 2, ESNOptions(seed=4))
    b = make_reservoir(250, 2, ESNOptions(seed=4))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert abs(np.abs(np.linalg.eigvals(a[0])).max() - 0.9) < 1e-6
