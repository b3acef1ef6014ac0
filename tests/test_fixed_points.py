"""Tests of cortexfit.analysis.fixed_points: known systems, every family end to end, the flip-flop RNN."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.optimize import brentq

from cortexfit.analysis import fixed_points as fp
from cortexfit.core import convention
from cortexfit.core.errors import AnalysisError, ConfigError
from cortexfit.models import build_dynamics, from_torch_rnn, save_model
from cortexfit.models.base import Dynamics, NoOptions


class Affine(Dynamics):
    """Test double: ``s' = A s + B u + b`` (not registered)."""

    def __init__(self, A: torch.Tensor, B: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__(input_size=B.shape[1], hidden_size=A.shape[0], options=NoOptions())
        self.A, self.B, self.b = torch.nn.Parameter(A), torch.nn.Parameter(B), torch.nn.Parameter(b)

    def step(self, state: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return state @ self.A.t() + u @ self.B.t() + self.b


def make_fit_dir(path, net, *, n_trials=6, n_time=20, with_fit=True, seed=0):
    """A fit directory holding ``net`` (model.pt) and, with ``with_fit``, a fit.nc with states and inputs."""
    path.mkdir(parents=True, exist_ok=True)
    save_model(path / "model.pt", net, meta={"dt_s": 0.01})
    if not with_fit:
        return path
    g = torch.Generator().manual_seed(seed)
    u = 0.5 * torch.randn(n_trials, n_time, net.input_size, generator=g)
    u[: n_trials // 2] += 1.0  # two conditions with different mean inputs
    with torch.no_grad():
        states = net(u).numpy()
    ds = xr.Dataset(
        {
            "rates": (("trial", "time", "unit"), np.ones((n_trials, n_time, 3), "float32")),
            "states": (("trial", "time", "state"), states),
            "inputs": (("trial", "time", "input"), u.numpy()),
        },
        coords={
            "trial": np.arange(n_trials), "time": (np.arange(n_time) + 0.5) * 0.01, "unit": np.arange(3),
            "split": ("trial", ["train"] * n_trials), "heldout": ("unit", np.zeros(3, "int8")),
            "condition": ("trial", ["a"] * (n_trials // 2) + ["b"] * (n_trials - n_trials // 2)),
        },
        attrs={**convention.base_attrs("fit"), "model": net.family, "mode": "latent", "seed": 0, "device": "cpu",
               "activity_file": "x.nc", "activity_sha256": "0", "config": "{}"},
    )
    convention.write_dataset(ds, path / "fit.nc", "fit")
    return path


def test_affine_map_unique_fixed_point_exact():
    torch.manual_seed(0)
    A = torch.randn(5, 5, dtype=torch.float64)
    A = 0.8 * A / torch.linalg.eigvals(A).abs().max()
    B, b = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    u = torch.tensor([0.3, -1.0], dtype=torch.float64)
    fps = fp.find_fixed_points(Affine(A, B, b), 3 * torch.randn(40, 5), u)
    expected = torch.linalg.solve(torch.eye(5, dtype=torch.float64) - A, B @ u + b).numpy()
    assert len(fps) == 1
    np.testing.assert_allclose(fps.xstar[0], expected, atol=1e-10)
    np.testing.assert_allclose(fps.u_star[0], u.numpy())
    np.testing.assert_allclose(np.sort(np.abs(fps.eigenvalues[0])), np.sort(torch.linalg.eigvals(A).abs().numpy()),
                               atol=1e-10)
    assert fps.label[0] == "stable" and fps.point_type[0] == "fixed"


def test_two_unit_tanh_network_all_nine_points():
    net = build_dynamics("vanilla", input_size=1, hidden_size=2)
    with torch.no_grad():
        net.weight_hh.copy_(2 * torch.eye(2))
        net.bias.zero_()
    x = brentq(lambda v: np.tanh(2 * v) - v, 0.5, 1.0)  # non-zero root of v = tanh(2 v)
    g = torch.Generator().manual_seed(1)
    fps = fp.find_fixed_points(net, 2.4 * torch.rand(200, 2, generator=g) - 1.2, torch.zeros(1))
    assert len(fps) == 9
    expected = {(a * x, c * x) for a in (-1, 0, 1) for c in (-1, 0, 1)}
    for p in fps.xstar:
        assert min(np.abs(p - np.array(e)).max() for e in expected) < 1e-10
    n_zero = (np.abs(fps.xstar) < 1e-8).sum(1)  # 2 zero coordinates: origin; 1: saddle; 0: corner
    assert fps.label[n_zero == 2].tolist() == ["unstable"]
    assert set(fps.label[n_zero == 1]) == {"saddle"} and (n_zero == 1).sum() == 4
    assert set(fps.label[n_zero == 0]) == {"stable"} and fps.n_stable == 4
    assert np.all(fps.point_type == "fixed") and np.all(fps.q < fps.info["fixed_q_threshold"])


def test_slow_point_kept_and_labelled_by_q():
    class SaddleNode(Affine):  # s' = s + eps + s^2: no fixed point, a slow point (ghost) at s = 0
        def step(self, state, u):
            return state + 1e-3 + state**2

    net = SaddleNode(torch.eye(1), torch.zeros(1, 1), torch.zeros(1))
    fps = fp.find_fixed_points(net, torch.linspace(-1, 1, 16)[:, None], torch.zeros(1))
    assert len(fps) == 1 and fps.point_type[0] == "slow" and fps.n_stable == 0
    assert abs(fps.xstar[0, 0]) < 1e-2 and 0.5e-6 <= fps.q[0] < 1e-6


def test_rate_stp_end_to_end_condition_mean(tmp_path):
    torch.manual_seed(0)
    net = build_dynamics("rate", input_size=2, hidden_size=6, stp=True, g=1.2)
    fit = make_fit_dir(tmp_path / "fit", net)
    out = tmp_path / "fp.nc"
    fp.run(fit, out, inputs="condition-mean", n_init=32, device="cpu", config=fp.FixedPointConfig(adam_max_iters=300))
    ds = convention.read_dataset(out, "fixed_points")
    assert ds.sizes["state"] == 18 and ds.sizes["eig"] == 18 and ds.sizes["input"] == 2
    assert ds.sizes["point"] >= 2 and set(ds["condition"].values) == {"a", "b"}
    fit_ds = xr.open_dataset(fit / "fit.nc", engine="h5netcdf")
    for c in ("a", "b"):
        want = fit_ds["inputs"].where(fit_ds["condition"] == c, drop=True).mean(("trial", "time")).values
        np.testing.assert_allclose(ds["u_star"].where(ds["condition"] == c, drop=True).values[0], want, rtol=1e-6)
    assert set(ds["label"].values) <= {"stable", "saddle", "unstable"}
    assert np.all(ds["q"].values <= ds.attrs["slow_q_threshold"])
    assert ds.sizes["pc"] >= 1 and np.all(np.isfinite(ds["pc_projection"].values))
    # x* is a fixed point of the saved model's own step
    xs = torch.as_tensor(ds["xstar"].values[ds["point_type"].values == "fixed"], dtype=torch.float64)
    F = net.double().step(xs, torch.as_tensor(ds["u_star"].values[ds["point_type"].values == "fixed"]))
    assert torch.allclose(F, xs, atol=1e-7)


@pytest.mark.parametrize("family", ["lstm", "esn"])
def test_lstm_and_esn_end_to_end_without_fit_nc(tmp_path, family):
    torch.manual_seed(0)
    net = build_dynamics(family, input_size=3, hidden_size=5)
    fit = make_fit_dir(tmp_path / "teacher", net, with_fit=False)
    ds = fp.run(fit, tmp_path / "fp.nc", n_init=48, device="cpu")
    assert ds.sizes["state"] == net.state_size and ds.attrs["trajectories"].startswith("simulated")
    assert ds.sizes["point"] >= 1 and ds.attrs["n_fixed"] >= 1
    np.testing.assert_array_equal(ds["u_star"].values, 0.0)
    np.testing.assert_allclose(ds["hidden"].values, ds["xstar"].values[:, :5])


def test_cli_and_errors(tmp_path):
    from cortexfit.cli import main

    net = build_dynamics("vanilla", input_size=1, hidden_size=3, g=0.5)
    fit = make_fit_dir(tmp_path / "fit", net, with_fit=False)
    assert main(["-q", "fixed-points", str(fit), str(tmp_path / "o.nc"), "--n-init", "16"]) == 0
    assert convention.read_dataset(tmp_path / "o.nc").attrs["n_init"] == 16
    assert main(["-q", "fixed-points", str(tmp_path / "nope"), str(tmp_path / "p.nc")]) == 1
    with pytest.raises(AnalysisError, match="condition-mean"):
        fp.run(fit, tmp_path / "q.nc", inputs="condition-mean", n_init=8)
    with pytest.raises(AnalysisError, match="initial_states"):
        fp.find_fixed_points(net, torch.zeros(4, 7), torch.zeros(1))
    assert not (tmp_path / "p.nc").exists() and not (tmp_path / "q.nc").exists()
    with pytest.raises(ConfigError, match="adam_lr"):
        dataclasses.replace(fp.FixedPointConfig(), adam_lr=0.0)


def test_flipflop_eight_stable_fixed_points(shared_data):
    ckpt = torch.load(shared_data / "flipflop_rnn100.pt", weights_only=True)
    net = from_torch_rnn(ckpt["state_dict"])
    g = torch.Generator().manual_seed(0)
    pulses = (torch.rand(16, 500, 3, generator=g) < 0.01) * torch.where(torch.rand(16, 500, 3, generator=g) < 0.5, -1.0, 1.0)
    with torch.no_grad():
        states = net(pulses).numpy()
    x0 = fp.sample_initial_states(states, 256, noise_std=0.5, generator=np.random.default_rng(0))
    fps = fp.find_fixed_points(net, torch.as_tensor(x0), torch.zeros(3))
    assert fps.n_stable == 8
    stable = fps.xstar[(fps.label == "stable") & (fps.point_type == "fixed")]
    sd = ckpt["state_dict"]
    readout = stable @ sd["readout.weight"].double().numpy().T + sd["readout.bias"].double().numpy()
    corners = {tuple(np.sign(r).astype(int)) for r in readout}
    assert len(corners) == 8  # one stable point per memory state (+-1, +-1, +-1)


def test_progress_lines_reach_the_log(tmp_path, monkeypatch, caplog):
    """Each stage logs its start and end, and (here every iteration) iteration, candidates done, elapsed, time left."""
    import logging

    from cortexfit.analysis import fixed_point_solver

    monkeypatch.setattr(fixed_point_solver, "LOG_EVERY_S", 0.0)
    net = build_dynamics("rate", input_size=2, hidden_size=6)
    fit = make_fit_dir(tmp_path / "fit", net)
    with caplog.at_level(logging.INFO, logger="cortexfit"):
        fp.run(fit, tmp_path / "fp.nc", n_init=32, device="cpu")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "fixed points of" in text and "32 starts" in text and "wrote" in text
    assert "Adam done after" in text and "Levenberg-Marquardt (float64) done after" in text
    lines = [r.getMessage() for r in caplog.records if "candidates" in r.getMessage() and "left in" in r.getMessage()]
    assert any(line.startswith("fixed points: Adam iteration") for line in lines)
    assert any("Levenberg-Marquardt (float32) iteration" in line for line in lines)
    assert all("elapsed" in line for line in lines)


def _numpy_top(J: np.ndarray, n: int):
    w, v = np.linalg.eig(J)
    o = np.argsort(-np.abs(w), axis=1, kind="stable")
    return np.take_along_axis(w, o, 1), np.take_along_axis(v, o[:, None, :n], 2)


def test_leading_eigenvectors_by_inverse_iteration_match_lapack():
    from cortexfit.analysis.fixed_point_solver import _eig_top

    g = np.random.default_rng(4)
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    J = g.standard_normal((6, 40, 40)) / 8
    J[0, :2, :2] += 3 * rot  # a dominant complex pair
    w, v = _eig_top(torch.as_tensor(J), 3)
    w_ref, v_ref = _numpy_top(J, 3)
    assert np.allclose(np.sort_complex(w.round(10)), np.sort_complex(w_ref.round(10)))
    assert np.allclose(np.abs(w), np.abs(w_ref))
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0)
    for k in range(6):  # each vector is an eigenvector of its own eigenvalue
        assert np.allclose(J[k] @ v[k], v[k] * w[k, :3], atol=1e-8)


def test_eigen_fallback_when_eigenvalues_fail(monkeypatch):
    # NaN eigenvalues from the fast path must be redone by the full LAPACK decomposition, not passed on
    from cortexfit.analysis import fixed_point_solver as fps

    J = np.random.default_rng(5).standard_normal((3, 12, 12)) / 4
    monkeypatch.setattr(torch.linalg, "eigvals", lambda A: torch.full(A.shape[:2], complex("nan+0j"),
                                                                      dtype=torch.complex128))
    w, v = fps._eig_top(torch.as_tensor(J), 2)
    w_ref, _ = _numpy_top(J, 2)
    assert np.allclose(np.abs(w), np.abs(w_ref))
    for k in range(3):
        assert np.allclose(J[k] @ v[k], v[k] * w[k, :2], atol=1e-8)


@pytest.mark.parametrize("stall, expected", [(10, 11), (10_000, 100)])
def test_levenberg_marquardt_stops_candidates_that_creep(monkeypatch, stall, expected):
    # every step lowers q by 5 % (far above tol_dq), so only the halving rule stops a creeping candidate: with
    # it LM ends after lm_stall_iters (+1 to notice), without it (a huge value) it runs to lm_max_iters
    from cortexfit.analysis import fixed_point_solver as solver

    monkeypatch.setattr(solver, "_trial_steps", lambda dyn, x, u, q, lam, chunk: (x * 0.99, q * 0.95))
    net = build_dynamics("vanilla", input_size=1, hidden_size=2)
    x = torch.ones(3, 2, dtype=torch.float64)
    cfg = fp.FixedPointConfig(lm_stall_iters=stall, lm_max_iters=100)
    *_, it = solver._levenberg_marquardt(solver.frozen_copy(net, device="cpu", dtype=torch.float64), x,
                                         torch.zeros(3, 1, dtype=torch.float64), cfg, tol=1e-300, radius=0.0)
    assert it == expected
