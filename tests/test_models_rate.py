"""Tests of the ``rate`` / ``vanilla`` families, their options and the fast custom backward."""

from __future__ import annotations

import pytest
import torch

from cortexfit.core.errors import ConfigError
from cortexfit.models import REGISTRY, build_dynamics, from_torch_rnn
from cortexfit.models.fastrnn import leaky_rnn, leaky_rnn_reference

OPTION_SETS = [
    {},
    {"nonlinearity": "relu", "dt": 0.01, "tau": 0.05},
    {"nonlinearity": "softplus", "g": 1.2},
    {"dale": True},
    {"rank": 2},
    {"dale": True, "rank": 3, "nonlinearity": "relu"},
    {"stp": True},
    {"stp": True, "dale": True, "rank": 2, "nonlinearity": "softplus"},
]


@pytest.fixture(autouse=True)
def _seed():
    """Seed torch for every test (tests/conftest.py already keeps torch to one thread)."""
    torch.manual_seed(0)


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_forward_equals_iterated_step(options):
    net = build_dynamics("rate", input_size=3, hidden_size=12, **options).eval()
    u = torch.randn(4, 15, 3)
    s0 = net.initial_state(4)
    states = net(u, s0)
    assert states.shape == (4, 15, net.state_size)
    s, manual = s0, []
    for t in range(u.shape[1]):
        s = net.step(s, u[:, t])
        manual.append(s)
    torch.testing.assert_close(states, torch.stack(manual, 1), atol=1e-5, rtol=1e-5)
    assert net.hidden(states).shape == (4, 15, 12)


def test_vanilla_equals_rate_with_dt_equal_tau():
    rate = build_dynamics("rate", input_size=3, hidden_size=10, dt=0.02, tau=0.02)
    van = build_dynamics("vanilla", input_size=3, hidden_size=10)
    van.load_state_dict(rate.state_dict())
    u = torch.randn(2, 30, 3)
    with torch.no_grad():
        assert float((rate(u) - van(u)).abs().max()) < 1e-6
    # and the leak matters: a smaller alpha gives a different trajectory
    leaky = build_dynamics("rate", input_size=3, hidden_size=10, dt=0.01, tau=0.05)
    leaky.load_state_dict(rate.state_dict())
    with torch.no_grad():
        assert float((leaky(u) - van(u)).abs().max()) > 1e-2


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "softplus"])
@pytest.mark.parametrize("alpha", [1.0, 0.25])
def test_custom_backward_gradcheck(nonlinearity, alpha):
    X = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    W = (0.6 * torch.randn(3, 3, dtype=torch.float64)).requires_grad_()
    h0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    noise = 0.1 * torch.randn(5, 2, 3, dtype=torch.float64)

    def f(X, W, h0):
        return leaky_rnn(X, W, h0, alpha=alpha, nonlinearity=nonlinearity, noise=noise)

    assert torch.autograd.gradcheck(f, (X, W, h0))


@pytest.mark.parametrize("options", [{}, {"dale": True, "rank": 4}, {"nonlinearity": "relu", "tau": 0.03}])
def test_fast_path_gradients_match_autograd(options):
    fast = build_dynamics("rate", input_size=5, hidden_size=64, **options)
    slow = build_dynamics("rate", input_size=5, hidden_size=64, fast_path=False, **options)
    slow.load_state_dict(fast.state_dict())
    u, target = torch.randn(8, 40, 5), torch.randn(8, 40, 64)
    s0 = 0.1 * torch.randn(8, 64)
    grads = []
    for net in (fast, slow):
        net.zero_grad()
        h0 = s0.clone().requires_grad_()
        loss = ((net(u, h0) - target) ** 2).mean()
        loss.backward()
        grads.append([h0.grad] + [p.grad for p in net.parameters()])
    for g_fast, g_slow in zip(*grads):
        torch.testing.assert_close(g_fast, g_slow, atol=1e-6, rtol=1e-4)


def test_reference_matches_fast_forward():
    X, W, h0 = torch.randn(20, 3, 7), 0.4 * torch.randn(7, 7), torch.randn(3, 7)
    a = leaky_rnn(X, W, h0, alpha=0.1, nonlinearity="softplus")
    b = leaky_rnn_reference(X, W, h0, alpha=0.1, nonlinearity="softplus")
    torch.testing.assert_close(a, b)


def test_dale_signs_survive_training():
    net = build_dynamics("rate", input_size=2, hidden_size=20, dale=True, frac_exc=0.75)
    W0 = net.recurrent_weight().detach()
    assert abs(torch.linalg.eigvals(W0).abs().max().item() - 0.9) < 1e-4  # spectral radius = g at init
    exc = net.sign > 0
    assert int(exc.sum()) == 15
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(30):  # a loss that pushes every weight towards -1: Dale columns must stay >= 0
        opt.zero_grad()
        ((net.recurrent_weight() + 1.0) ** 2).sum().backward()
        opt.step()
    W = net.recurrent_weight().detach()
    assert not torch.allclose(W, W0)
    assert bool((W[:, exc] >= 0).all()) and bool((W[:, ~exc] <= 0).all())
    assert float(W[:, ~exc].abs().sum()) > 0


def test_low_rank_structure():
    net = build_dynamics("rate", input_size=2, hidden_size=30, rank=2, g=0.5)
    low = net.recurrent_weight().detach() - 0.5 * net.chi
    assert int(torch.linalg.matrix_rank(low)) == 2
    assert {n for n, _ in net.named_parameters()} == {"weight_ih", "bias", "m", "n"}
    assert "chi" in net.state_dict()


def test_stp_state_and_kinetics():
    net = build_dynamics("rate", input_size=1, hidden_size=10, stp=True, dale=True, frac_exc=0.8,
                         nonlinearity="relu", dt=0.01, tau=0.02)
    assert net.state_size == 30
    s0 = net.initial_state(2)
    torch.testing.assert_close(s0[:, 10:20], net.stp_U.expand(2, 10))
    assert bool((s0[:, 20:] == 1).all())
    assert net.stp_U[:8].tolist() == pytest.approx([0.15] * 8) and net.stp_U[8:].tolist() == pytest.approx([0.45] * 2)
    with torch.no_grad():
        net.weight_ih.fill_(1.0)
        states = net(torch.full((2, 50, 1), 2.0), s0)
    u, x = states[..., 10:20], states[..., 20:]
    assert bool(((u >= 0) & (u <= 1) & (x >= 0) & (x <= 1)).all())
    assert float(x[:, -1].max()) < 0.99  # active units deplete their resources
    assert bool((u[:, -1, :8] > 0.15 + 1e-3).all())  # facilitating (E) synapses facilitate
    one_type = build_dynamics("rate", input_size=1, hidden_size=4, stp=True, stp_type="depressing")
    assert one_type.stp_tau_D.tolist() == pytest.approx([1.5] * 4)


def test_noise_only_while_training():
    net = build_dynamics("rate", input_size=2, hidden_size=8, noise_std=0.5)
    u = torch.randn(3, 10, 2)
    net.train()
    assert not torch.allclose(net(u), net(u))
    net.eval()
    torch.testing.assert_close(net(u), net(u))


def test_options_validation():
    with pytest.raises(ConfigError, match="valid options: .*tau"):
        build_dynamics("rate", input_size=2, hidden_size=4, taus=0.1)
    with pytest.raises(ConfigError, match="valid families: esn, lstm, rate, vanilla"):
        build_dynamics("gru", input_size=2, hidden_size=4)
    with pytest.raises(ConfigError, match="tau"):
        build_dynamics("rate", input_size=2, hidden_size=4, dt=0.2, tau=0.1)
    with pytest.raises(ConfigError, match="nonlinearity"):
        build_dynamics("rate", input_size=2, hidden_size=4, nonlinearity="sigmoid")
    with pytest.raises(ConfigError, match="dt"):  # vanilla has no time constants
        build_dynamics("vanilla", input_size=2, hidden_size=4, dt=0.01)
    with pytest.raises(ConfigError, match="hidden_size"):
        build_dynamics("rate", input_size=2, hidden_size=0)
    assert set(REGISTRY) == {"rate", "vanilla", "lstm", "esn"}


def test_spec_is_plain_and_seeded():
    torch.manual_seed(3)
    a = build_dynamics("rate", input_size=2, hidden_size=6, dale=True, stp=True)
    torch.manual_seed(3)
    b = build_dynamics("rate", input_size=2, hidden_size=6, dale=True, stp=True)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    spec = a.spec()
    assert spec["family"] == "rate" and spec["options"]["stp"] is True
    rebuilt = build_dynamics(spec["family"], input_size=2, hidden_size=6, **spec["options"])
    assert rebuilt.state_size == 18


def test_from_torch_rnn_matches_nn_rnn():
    rnn = torch.nn.RNN(4, 9, batch_first=True)
    net = from_torch_rnn({"rnn." + k: v for k, v in rnn.state_dict().items()})
    u = torch.randn(3, 25, 4)
    torch.testing.assert_close(net(u), rnn(u)[0], atol=1e-6, rtol=1e-5)


def test_from_torch_rnn_flipflop_file(shared_data):
    ckpt = torch.load(shared_data / "flipflop_rnn100.pt", weights_only=True)
    sd = ckpt["state_dict"]
    net = from_torch_rnn(ckpt)
    rnn = torch.nn.RNN(3, 100, nonlinearity="tanh", batch_first=True)
    rnn.load_state_dict({k[len("rnn."):]: v for k, v in sd.items() if k.startswith("rnn.")})
    torch.manual_seed(1)
    u = torch.zeros(4, 200, 3)
    pulses = torch.rand(4, 200, 3) < 0.02
    u[pulses] = torch.where(torch.rand(int(pulses.sum())) < 0.5, -1.0, 1.0)
    with torch.no_grad():
        ref, ours = rnn(u)[0], net(u)
        stepped = net.forward_reference(u)
    assert float((ours - ref).abs().max()) < 1e-5
    assert float((stepped - ref).abs().max()) < 1e-5
    torch.testing.assert_close(net.recurrent_weight(), sd["rnn.weight_hh_l0"])


@pytest.mark.parametrize("options", [{"nonlinearity": "tanh"}, {"nonlinearity": "relu", "dale": True, "rank": 2}])
def test_fused_path_matches_custom_kernel(options):
    """The fused ``rnn_tanh``/``rnn_relu`` path (taken on CUDA for alpha = 1) equals the custom kernel."""
    net = build_dynamics("vanilla", input_size=3, hidden_size=16, g=0.5, **options)
    u, h0 = torch.randn(4, 12, 3), 0.1 * torch.randn(4, 16)
    a = net(u, h0)
    b = net.fused_rnn(u, h0)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    ga = torch.autograd.grad(a.square().sum(), list(net.parameters()))
    gb = torch.autograd.grad(b.square().sum(), list(net.parameters()))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


def test_dale_with_low_rank_keeps_signs_rank_and_the_outlier():
    """Mastrogiuseppe-Ostojic E/I low rank: Dale's signs hold, W - random part has rank 1, outlier at n.m/N."""
    torch.manual_seed(0)
    H = 400
    net = build_dynamics("rate", input_size=1, hidden_size=H, dale=True, rank=1, g=0.5, frac_exc=0.8).double()
    exc = net.sign > 0
    with torch.no_grad():  # m = 1, |n| = 4: n_eff . m_eff / H = 4 (0.8 - 0.2) = 2.4
        net.m.fill_(1.0)
        net.n.copy_(torch.full((H, 1), 4.0, dtype=torch.float64))
    low = net.low_rank_part().detach()
    target = float((net.n.detach().abs() * net.sign[:, None]).sum() / H)
    W = net.recurrent_weight().detach()
    assert bool((W[:, exc] >= 0).all()) and bool((W[:, ~exc] <= 0).all())
    assert int(torch.linalg.matrix_rank(W - net._dale_random_part().detach())) == 1
    assert torch.allclose(W - net._dale_random_part().detach(), low)
    eig = torch.linalg.eigvals(W).abs().sort(descending=True).values
    assert target > 2.0 and abs(float(eig[0]) - target) / target < 0.1  # the outlier survives
    assert float(eig[1]) < 0.8 * target  # and stands out of the bulk


def test_stp_update_is_exact_and_stays_in_range():
    from cortexfit.models.stp import stp_parameters, stp_update

    p = stp_parameters(["facilitating", "depressing"])
    U, tf, td = p["U"].double(), p["tau_F"].double(), p["tau_D"].double()
    pd = {"U": U, "tau_F": tf, "tau_D": td}
    for nu in (5.0, 50.0, 500.0):
        rate = torch.full((2,), nu, dtype=torch.float64)
        u, x = U.clone(), torch.ones(2, dtype=torch.float64)
        for _ in range(2000):  # 10 ms steps, 20 s: the steady state
            u, x = stp_update(u, x, pd, dt=0.01, rate_hz=rate)
            assert bool(((x >= 0) & (x <= 1) & (u >= 0) & (u <= 1)).all())
        u_star = U * (1 + tf * nu) / (1 + U * tf * nu)
        x_star = 1 / (1 + u_star * td * nu)
        torch.testing.assert_close(u, u_star, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(x, x_star, rtol=1e-9, atol=1e-12)
    # one large step equals many small ones (exact in dt for a constant rate)
    rate = torch.full((2,), 80.0, dtype=torch.float64)
    u1, _ = stp_update(U, torch.ones(2, dtype=torch.float64), pd, dt=0.5, rate_hz=rate)
    u2 = U.clone()
    x2 = torch.ones(2, dtype=torch.float64)
    for _ in range(50):
        u2, x2 = stp_update(u2, x2, pd, dt=0.01, rate_hz=rate)
    torch.testing.assert_close(u1, u2, rtol=1e-9, atol=1e-12)


def test_stp_synapses_transmit_the_non_negative_rate():
    net = build_dynamics("rate", input_size=1, hidden_size=3, stp=True, nonlinearity="tanh").double()
    s = net.initial_state(1).double()
    s[:, :3] = torch.tensor([-0.8, 0.5, -0.2], dtype=torch.float64)
    with torch.no_grad():
        net.weight_hh.copy_(torch.eye(3, dtype=torch.float64))
        net.weight_ih.zero_()
        h = net.step(s, torch.zeros(1, 1, dtype=torch.float64))[:, :3]
    u0 = net.stp_U.double()
    want = (1 - net.alpha) * s[:, :3] + net.alpha * torch.tanh(u0 * torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(h, want)
