"""Tests of cortexfit.analysis.dynamics: Jacobians, spectra, Lyapunov exponents, echo-state and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from cortexfit.analysis import dynamics as dy
from cortexfit.core import convention
from cortexfit.core.errors import AnalysisError, ConfigError
from cortexfit.models import build_dynamics, save_model
from cortexfit.models.base import Dynamics, NoOptions


class Linear(Dynamics):
    """Test double: ``s' = A s + B u`` (not registered)."""

    def __init__(self, A: torch.Tensor, n_in: int = 1) -> None:
        super().__init__(input_size=n_in, hidden_size=A.shape[0], options=NoOptions())
        self.A = torch.nn.Parameter(A.double())
        self.B = torch.nn.Parameter(torch.ones(A.shape[0], n_in, dtype=torch.float64))

    def step(self, state, u):
        return state @ self.A.t() + u @ self.B.t()

    def recurrent_weight(self):
        return self.A


def rotation(n: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_batched_jacobian_matches_autograd_for_stp_and_lstm():
    torch.manual_seed(0)
    nets = (build_dynamics("rate", input_size=2, hidden_size=4, stp=True),
            build_dynamics("lstm", input_size=2, hidden_size=3))
    for net in nets:
        net = dy.frozen_copy(net)
        s = torch.rand(3, net.state_size, dtype=torch.float64) * 0.8 + 0.1
        u = torch.randn(3, 2, dtype=torch.float64)
        J, F = dy.batched_jacobian(net, s, u, return_value=True)
        for k in range(3):
            ref = torch.autograd.functional.jacobian(lambda x, net=net, uk=u[k : k + 1]: net.step(x[None], uk)[0], s[k])
            torch.testing.assert_close(J[k], ref)
        torch.testing.assert_close(F, net.step(s, u))


def test_lyapunov_of_linear_map_is_log_abs_a():
    a = torch.tensor([-1.2, 0.9, 0.5, 0.1])
    net = Linear(torch.diag(a))
    lyap = dy.lyapunov_spectrum(net, torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 40, 1, dtype=torch.float64), k=4)
    np.testing.assert_allclose(lyap.numpy(), np.sort(np.log(np.abs(a.numpy())))[::-1], atol=1e-10)
    # a scaled rotation has all exponents equal to log(rho)
    lyap = dy.lyapunov_spectrum(Linear(0.7 * rotation(5)), torch.zeros(2, 5, dtype=torch.float64),
                                torch.zeros(2, 30, 1, dtype=torch.float64), k=3)
    np.testing.assert_allclose(lyap.numpy(), math.log(0.7), atol=1e-10)


def test_gradient_norm_of_contracting_map_has_slope_log_rho():
    rho = 0.8
    net = Linear(rho * rotation(6, seed=1))
    curve = dy.gradient_norms(net, torch.randn(2, 6, dtype=torch.float64), torch.zeros(2, 50, 1, dtype=torch.float64),
                              max_lag=40)
    assert curve.shape == (41,) and curve[0] == 0
    np.testing.assert_allclose(curve.numpy(), np.arange(41) * math.log(rho), atol=1e-9)
    assert np.polyfit(np.arange(41), curve.numpy(), 1)[0] == pytest.approx(math.log(rho), abs=1e-9)


def test_eigenspectrum_of_known_weights_and_rate_jacobian():
    H = 6
    net = build_dynamics("rate", input_size=1, hidden_size=H, dt=0.01, tau=0.05)  # alpha = 0.2
    W = torch.diag(torch.tensor([2.0, -1.5, 0.5, 0.3, 0.2, 0.1]))
    W[0, 1] = 1.0  # upper triangular: eigenvalues are the diagonal
    with torch.no_grad():
        net.weight_hh.copy_(W)
        net.bias.zero_()
    out = dy.eigenspectrum(net, quantile=0.5, margin=0.1)
    w = out["weight"]["eigenvalues"].numpy()
    np.testing.assert_allclose(w.real, [2.0, -1.5, 0.5, 0.3, 0.2, 0.1], atol=1e-6)
    np.testing.assert_allclose(w.imag, 0, atol=1e-6)
    jac = out["jacobian"]["eigenvalues"].numpy()  # (1 - alpha) + alpha * lambda_W * tanh'(0)
    np.testing.assert_allclose(np.sort(jac.real), np.sort(0.8 + 0.2 * w.real), atol=1e-6)
    assert out["weight"]["spectral_radius"] == pytest.approx(2.0, abs=1e-6)


def test_bulk_radius_and_outlier_of_random_matrix_plus_rank_one():
    n, g = 150, 0.8
    gen = torch.Generator().manual_seed(0)
    W = g * torch.randn(n, n, generator=gen, dtype=torch.float64) / math.sqrt(n)
    v = torch.ones(n, dtype=torch.float64) / math.sqrt(n)
    W = W + 3.0 * torch.outer(v, v)  # one outlier near 3
    out = dy.eigenspectrum(Linear(W))["weight"]
    assert out["bulk_radius"] == pytest.approx(g, rel=0.15)
    assert int(out["outlier"].sum()) == 1 and out["spectral_radius"] == pytest.approx(3.0, rel=0.05)


def test_echo_state_distance_shrinks_for_contracting_map():
    net = build_dynamics("vanilla", input_size=2, hidden_size=8)
    with torch.no_grad():
        net.weight_hh.mul_(0.6 / torch.linalg.matrix_norm(net.weight_hh, ord=2))  # ||W|| < 1: contraction
    u = torch.randn(4, 60, 2)
    d = dy.echo_state_distance(net, u, torch.randn(4, 8), torch.randn(4, 8)).numpy()
    assert d.shape == (61,) and np.all(np.diff(d) <= 1e-7) and d[-1] < 1e-6 * d[0]


def _fit_dir(tmp_path, net, with_fit=True):
    tmp_path.mkdir(parents=True, exist_ok=True)
    save_model(tmp_path / "model.pt", net, meta={"dt_s": 0.01})
    if with_fit:
        u = 0.3 * torch.randn(5, 24, net.input_size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            states = net(u).numpy()
        ds = xr.Dataset(
            {"rates": (("trial", "time", "unit"), np.ones((5, 24, 2), "float32")),
             "states": (("trial", "time", "state"), states), "inputs": (("trial", "time", "input"), u.numpy())},
            coords={"trial": np.arange(5), "time": (np.arange(24) + 0.5) * 0.01, "unit": [0, 1],
                    "split": ("trial", ["train"] * 5), "heldout": ("unit", np.zeros(2, "int8"))},
            attrs={**convention.base_attrs("fit"), "model": net.family, "mode": "latent", "seed": 0, "device": "cpu",
                   "activity_file": "a.nc", "activity_sha256": "0", "config": "{}"},
        )
        convention.write_dataset(ds, tmp_path / "fit.nc", "fit")
    return tmp_path


@pytest.mark.parametrize("family,options,with_fit",
                         [("rate", {"stp": True}, True), ("lstm", {}, False), ("vanilla", {}, True), ("esn", {}, False)])
def test_run_end_to_end(tmp_path, family, options, with_fit):
    torch.manual_seed(0)
    net = build_dynamics(family, input_size=2, hidden_size=4, **options)
    cfg = dy.DynamicsConfig(n_trials=3, n_steps=30, max_lag=15, n_lyap=4)
    ds = dy.run(_fit_dir(tmp_path, net, with_fit), tmp_path / "dyn.nc", seed=1, config=cfg)
    back = convention.read_dataset(tmp_path / "dyn.nc", "dynamics")
    S = net.state_size
    assert back.sizes["eig_jac"] == S and back.sizes["lyap"] == 4 and back.sizes["time_lag"] == 16
    assert ("eig" in back.sizes) == (net.recurrent_weight() is not None)  # LSTM: Jacobian spectrum only
    assert back.attrs["drive"] == ("fit inputs" if with_fit else "zero input")
    assert np.all(np.diff(back["lyapunov"].values) <= 1e-12)  # sorted
    np.testing.assert_allclose(back["lyapunov_per_s"].values, back["lyapunov"].values / 0.01)
    for v in ("lyapunov", "grad_norm", "echo_distance", "jacobian_eig_real"):
        assert np.all(np.isfinite(back[v].values))
    assert back["grad_norm"].values[0] == pytest.approx(1.0)
    W = net.recurrent_weight()
    if W is not None:  # the radius is the weight matrix's, computed here independently
        want = float(torch.linalg.eigvals(W.detach().double()).abs().max())
        assert ds.attrs["spectral_radius"] == pytest.approx(want, rel=1e-6)


def test_cli_and_errors(tmp_path):
    from cortexfit.cli import main

    fit = _fit_dir(tmp_path / "fit", build_dynamics("vanilla", input_size=1, hidden_size=3), with_fit=True)
    assert main(["-q", "dynamics", str(fit), str(tmp_path / "d.nc"), "--seed", "2"]) == 0
    assert convention.read_dataset(tmp_path / "d.nc").attrs["seed"] == 2
    with pytest.raises(AnalysisError, match="model"):
        dy.run(tmp_path / "missing", tmp_path / "o.nc")
    assert not (tmp_path / "o.nc").exists()
    with pytest.raises(ConfigError, match="n_lyap"):
        dy.DynamicsConfig(n_lyap=0)


def test_largest_eigenvalue_on_the_cpu_path_matches_eigvalsh():
    # S >= 32 takes LAPACK's one-eigenvalue path; it must be the largest, not the smallest, of each matrix
    A = torch.randn(5, 40, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    M = A @ A.mT - 3.0 * torch.eye(40, dtype=torch.float64)
    ref = torch.linalg.eigvalsh(M)[..., -1]
    assert torch.allclose(dy._largest_eigenvalue(M), ref, rtol=1e-12, atol=1e-12)
