"""``cortexfit fixed-points`` stores the fit's predicted unit rates at every point (``rates``): exact against the
readout written into ``model.pt``, for the latent (hidden -> factors -> exp) and the echo-state (state -> traces)
readouts, and absent where the model reads out no recorded units (the flip-flop teacher)."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from cortexfit.analysis import fixed_points as fp
from cortexfit.core import convention
from cortexfit.fit.heads import FactorReadout
from cortexfit.models import build_dynamics, save_model
from cortexfit.models.readouts import StateReadout

N_UNITS = 5


def _fit_nc(path, states: np.ndarray, rates: np.ndarray, u: np.ndarray, family: str) -> None:
    n_trials, n_time = states.shape[:2]
    ds = xr.Dataset(
        {"rates": (("trial", "time", "unit"), rates.astype("float32"), {"units": "count/bin"}),
         "states": (("trial", "time", "state"), states.astype("float32")),
         "inputs": (("trial", "time", "input"), u.astype("float32"))},
        coords={"trial": np.arange(n_trials), "time": (np.arange(n_time) + 0.5) * 0.01,
                "unit": np.arange(100, 100 + N_UNITS), "split": ("trial", ["train"] * n_trials),
                "heldout": ("unit", np.zeros(N_UNITS, "int8"))},
        attrs={**convention.base_attrs("fit"), "model": family, "mode": "latent", "seed": 0, "device": "cpu",
               "activity_file": "x.nc", "activity_sha256": "0", "config": "{}"},
    )
    convention.write_dataset(ds, path / "fit.nc", "fit")


def _drive(net, n_trials=6, n_time=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n_trials, n_time, net.input_size, generator=g)
    with torch.no_grad():
        return net(u).numpy().astype(float), u.numpy()


def test_latent_rates_equal_the_factor_readout_of_the_hidden_units(tmp_path):
    # rate RNN with short-term plasticity: state = [h, u, x] (12 dims), the readout sees only h (4 dims), so
    # reading out the whole state or the wrong slice would fail here
    torch.manual_seed(0)
    net = build_dynamics("rate", input_size=1, hidden_size=4, stp=True)
    ro = FactorReadout(hidden_size=4, factors=2, n_units=N_UNITS)
    states, u = _drive(net)
    h = states[..., :4]
    W1, W2 = ro.to_factors.weight.detach().double().numpy(), ro.to_units.weight.detach().double().numpy()
    b = ro.to_units.bias.detach().double().numpy()
    expected = lambda hid: np.exp(hid @ W1.T @ W2.T + b)
    save_model(tmp_path / "model.pt", net, modules={"readout": ro}, meta={"dt_s": 0.01, "exp_link": True})
    _fit_nc(tmp_path, states, expected(h), u, "rate")

    ds = fp.run(tmp_path, tmp_path / "fixed_points.nc", n_init=64)
    back = convention.read_dataset(tmp_path / "fixed_points.nc", "fixed_points")
    assert net.state_size == 12 and ds.sizes["point"] > 0
    assert back["rates"].dims == ("point", "unit") and back["unit"].values.tolist() == list(range(100, 105))
    np.testing.assert_allclose(back["rates"].values, expected(back["xstar"].values[:, :4]), rtol=1e-10)
    assert back["rates"].attrs["units"] == "count/bin"
    assert back["rates"].attrs["max_rel_error_on_fit"] < 1e-5  # reproduces fit.nc's own rates from its states


def test_echo_state_traces_back_in_data_units(tmp_path):
    # identity link: the fit stored traces = raw * std + mean, which model.pt does not keep; fixed-points
    # recovers the per-unit affine map from fit.nc
    net = build_dynamics("esn", input_size=1, hidden_size=8, seed=1)
    ro = StateReadout(n_features=8, n_units=N_UNITS, factors=2)
    torch.nn.init.normal_(ro.linear.weight)
    states, u = _drive(net)
    Wl, bl = ro.linear.weight.detach().double().numpy(), ro.linear.bias.detach().double().numpy()
    std, mean = np.linspace(0.5, 2.0, N_UNITS), np.linspace(-1.0, 3.0, N_UNITS)
    traces = lambda s: (s @ Wl.T + bl) * std + mean
    save_model(tmp_path / "model.pt", net, modules={"readout": ro}, meta={"dt_s": 0.01, "exp_link": False})
    _fit_nc(tmp_path, states, traces(states), u, "esn")

    ds = fp.run(tmp_path, tmp_path / "fixed_points.nc", n_init=32)
    assert ds.sizes["point"] > 0
    np.testing.assert_allclose(ds["rates"].values, traces(ds["xstar"].values), rtol=1e-4, atol=1e-4)


def test_no_rates_without_a_unit_readout(tmp_path):
    # a flip-flop teacher folder: model.pt with the task's linear readout and no fit.nc; old files lack rates too
    net = build_dynamics("vanilla", input_size=1, hidden_size=3, nonlinearity="tanh")
    save_model(tmp_path / "model.pt", net, modules={"readout": torch.nn.Linear(3, 1)},
               module_specs={"readout": {"type": "linear", "in_features": 3, "out_features": 1}}, meta={"dt_s": 0.01})
    ds = fp.run(tmp_path, tmp_path / "fixed_points.nc", n_init=16)
    assert "rates" not in ds and ds.sizes["point"] > 0
    convention.read_dataset(tmp_path / "fixed_points.nc", "fixed_points")  # still a valid file


def test_bidirectional_echo_state_readout_is_not_checked_against_fit_nc(tmp_path, caplog):
    # forward + backward features: fit.nc's rates are not a function of its states, so there is no error to
    # report (NaN attr) and the log says why instead of "to nan"
    net = build_dynamics("esn", input_size=1, hidden_size=8, seed=1)
    ro = StateReadout(n_features=16, n_units=N_UNITS, factors=2)
    states, u = _drive(net)
    save_model(tmp_path / "model.pt", net, modules={"readout": ro}, meta={"dt_s": 0.01, "exp_link": True})
    _fit_nc(tmp_path, states, np.ones(states.shape[:2] + (N_UNITS,)), u, "esn")
    with caplog.at_level("INFO", logger="cortexfit.analysis.fixed_points"):
        ds = fp.run(tmp_path, tmp_path / "fixed_points.nc", n_init=32)
    assert np.isnan(ds["rates"].attrs["max_rel_error_on_fit"]) and ds.sizes["point"] > 0
    assert "not a function of its states alone" in caplog.text and "to nan" not in caplog.text
