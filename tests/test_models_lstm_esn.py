"""Tests of the ``lstm`` and ``esn`` families (cortexfit.models.lstm, cortexfit.models.esn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexfit.core.errors import ConfigError
from cortexfit.models import build_dynamics
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




def test_esn_dynamics_fit_readout_recovers_memory_task():
    net = build_dynamics("esn", input_size=1, hidden_size=100, leak_rate=1.0, spectral_radius=0.8)
    u = torch.rand(20, 80, 1) - 0.5
    target = torch.roll(u, 2, dims=1)  # recall the input two steps back
    states = net(u)
    ro = net.fit_readout(states[:, 5:], target[:, 5:])
    with torch.no_grad():
        nrmse = float(((ro(states[:, 5:]) - target[:, 5:]) ** 2).mean().sqrt() / target.std())
    assert nrmse < 0.05


def test_make_reservoir_is_deterministic():
    a = make_reservoir(250, 2, ESNOptions(seed=4))
    b = make_reservoir(250, 2, ESNOptions(seed=4))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert abs(np.abs(np.linalg.eigvals(a[0])).max() - 0.9) < 1e-6


def test_washout_is_measured_not_bounded_by_the_spectral_radius():
    """rho < 1 is a heuristic: a non-normal reservoir with rho = 0.5 forgets later than 0.5**w predicts."""
    import math

    from cortexfit.models.esn import measure_washout

    tol = 1e-7
    spectral_bound = math.ceil(math.log(tol) / math.log(0.5))
    normal = 0.5 * torch.eye(2, dtype=torch.float64)
    skew = torch.tensor([[0.5, 40.0], [0.0, 0.5]], dtype=torch.float64)  # same eigenvalues, sigma_max ~ 40
    f64 = torch.float64
    W_in, b, u = torch.ones(2, 1, dtype=f64), torch.zeros(2, dtype=f64), torch.zeros(300, 1, dtype=f64)
    w_normal = measure_washout(normal, W_in, b, 1.0, u, tol=tol)
    w_skew = measure_washout(skew, W_in, b, 1.0, u, tol=tol)
    assert w_normal is not None and w_normal <= spectral_bound
    assert w_skew is not None and w_skew > spectral_bound
    assert measure_washout(1.5 * torch.eye(2, dtype=torch.float64), W_in, b, 1.0, u[:50], tol=tol) is None


def _sequential(net, u, x0):
    """The plain step-by-step run of ``net`` on a precomputed drive (the reference for the fast forward)."""
    from cortexfit.models.esn import run_reservoir

    drive = (u @ net.weight_ih.t() + net.bias).transpose(0, 1)
    return run_reservoir(drive, net.weight_hh, x0, net.options.leak_rate).transpose(0, 1)


@pytest.mark.parametrize("batch", [1, 3])
def test_esn_time_chunked_forward_matches_the_sequential_run(batch):
    from cortexfit.models.esn import reservoir_states

    net = build_dynamics("esn", input_size=2, hidden_size=200, spectral_radius=0.9, leak_rate=0.3)
    u = torch.rand(batch, 3000, 2) - 0.5
    x0 = 0.5 * torch.randn(batch, 200)
    ref = _sequential(net, u, x0)
    calls = []
    import cortexfit.models.esn as esn_module

    real = esn_module._run_groups
    esn_module._run_groups = lambda *a: calls.append(a[7]) or real(*a)
    try:
        fast = reservoir_states(u, net.weight_ih, net.bias, net.run_weight(), x0, 0.3, workers=2, columns=16)
    finally:
        esn_module._run_groups = real
    assert calls and calls[0] > 1  # it did cut the sequences into chunks
    assert fast.shape == ref.shape
    torch.testing.assert_close(fast, ref, atol=2e-6, rtol=0)
    again = reservoir_states(u, net.weight_ih, net.bias, net.run_weight(), x0, 0.3, workers=2, columns=16)
    assert torch.equal(fast, again)  # deterministic


def test_esn_forward_uses_sparse_weights_and_threads_without_changing_results():
    net = build_dynamics("esn", input_size=3, hidden_size=120, leak_rate=0.5, bias_scaling=0.1)
    assert net.run_weight().layout == torch.sparse_csr
    u = torch.randn(7, 40, 3)
    from cortexfit.models.esn import reservoir_states

    one = reservoir_states(u, net.weight_ih, net.bias, net.weight_hh, net.initial_state(7), 0.5, workers=1)
    two = net(u)
    torch.testing.assert_close(two, one, atol=1e-6, rtol=0)
    torch.testing.assert_close(two, _sequential(net, u, net.initial_state(7)), atol=1e-6, rtol=0)


def test_esn_seam_check_rejects_a_short_overlap_and_falls_back():
    """A chunk started too late does not agree with the one before it: that run is refused, not stitched."""
    import cortexfit.models.esn as esn_module

    net = build_dynamics("esn", input_size=1, hidden_size=100, spectral_radius=0.9, leak_rate=0.3)
    u = torch.rand(1, 4000, 1) - 0.5
    x0 = torch.zeros(1, 100)
    w = esn_module.probe_washout(net.run_weight(), u[0] @ net.weight_ih.t() + net.bias, 0.3)
    assert w is not None and w > 20
    args = (u, net.weight_ih, net.bias, net.run_weight(), x0, 0.3, 1)
    assert esn_module._run_groups(*args, 4, 1000, w // 4, 1e-6) is None
    ok = esn_module._run_groups(*args, 4, 1000, 2 * w, 1e-6)
    assert ok is not None
    torch.testing.assert_close(ok, _sequential(net, u, x0), atol=2e-6, rtol=0)
    # a reservoir that never forgets: no chunks, the sequential result
    W = 1.5 * torch.eye(2)
    u2 = torch.randn(1, 1000, 1)
    out = esn_module.reservoir_states(u2, torch.ones(2, 1), torch.zeros(2), W, torch.zeros(1, 2), 1.0, columns=16)
    drive = (u2 @ torch.ones(1, 2)).transpose(0, 1)
    torch.testing.assert_close(out, esn_module.run_reservoir(drive, W, torch.zeros(1, 2), 1.0).transpose(0, 1))


@pytest.mark.parametrize("leak", [1.0, 0.3])
def test_esn_closed_form_jacobian_is_autograds(leak):
    from cortexfit.analysis.jacobians import frozen_copy

    net = frozen_copy(build_dynamics("esn", input_size=2, hidden_size=30, leak_rate=leak), dtype=torch.float64)
    s, u = torch.randn(5, 30, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    J, F = net.step_jacobian(s, u)
    want = torch.func.vmap(torch.func.jacrev(lambda a, b: net.step(a[None], b[None])[0]))(s, u)
    torch.testing.assert_close(J, want)
    torch.testing.assert_close(F, net.step(s, u))
