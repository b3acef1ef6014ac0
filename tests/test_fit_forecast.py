"""Tests of forecast mode: scheduled-sampling schedules, teacher-forced vs closed-loop runs, horizons."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from cortexfit import fit as fit_stage
from cortexfit.cli import main
from cortexfit.core import convention
from cortexfit.core.errors import ConfigError
from cortexfit.fit.config import load_config
from cortexfit.fit.forecast import ForecastModel, horizon_errors, teacher_prob
from cortexfit.models import build_dynamics
from fit_factory import random_walk_activity


@pytest.mark.parametrize(
    ("schedule", "step", "kw", "want"),
    [
        ("teacher", 1000, {}, 1.0),
        ("linear", 0, {}, 1.0),
        ("linear", 25, {"k": 1.0, "c": 0.02}, 0.5),
        ("linear", 80, {"k": 1.0, "c": 0.02}, 0.0),
        ("linear", 80, {"k": 1.0, "c": 0.02, "min_prob": 0.1}, 0.1),
        ("exponential", 0, {"k": 0.9}, 1.0),
        ("exponential", 3, {"k": 0.9}, 0.729),
        ("exponential", 10, {}, 0.97**10),
        ("inverse_sigmoid", 0, {"k": 10.0}, 10 / 11),
        ("inverse_sigmoid", 20, {"k": 10.0}, 10 / (10 + math.exp(2))),
        ("inverse_sigmoid", 5, {"k": 1.0}, 1 / (1 + math.exp(5))),
    ],
)
def test_teacher_prob_values(schedule, step, kw, want):
    assert teacher_prob(schedule, step, **kw) == pytest.approx(want, rel=1e-9)


def test_schedules_decay_monotonically():
    for s in ("linear", "exponential", "inverse_sigmoid"):
        p = [teacher_prob(s, i) for i in range(0, 200, 10)]
        assert all(a >= b for a, b in itertools.pairwise(p)) and p[-1] < p[0]


def test_schedule_config_validation():
    with pytest.raises(ConfigError, match=r"config: forecast: k must be in \(0, 1\) for the exponential"):
        load_config({"forecast": {"schedule": "exponential", "k": 1.5}})
    with pytest.raises(ConfigError, match="forecast: schedule='cosine' has the wrong type"):
        load_config({"forecast": {"schedule": "cosine"}})
    assert load_config({"forecast": {"schedule": "exponential"}}).forecast.k_value == 0.97


def _model(family="vanilla"):
    torch.manual_seed(0)
    dyn = build_dynamics(family, input_size=3 + 1, hidden_size=8)
    return ForecastModel(dyn, n_heldin=3, n_units=5, factors=2, n_inputs=1).eval()


@pytest.mark.parametrize("family", ["vanilla", "lstm", "rate"])
def test_step_loop_equals_fast_teacher_forced_path(family):
    m = _model(family)
    x, u = torch.rand(2, 7, 3), torch.rand(2, 7, 1)
    fast = m(x, u)
    teacher = torch.ones(2, 7, dtype=torch.bool)
    teacher[:, -1] = False  # the last bin's input is never used: same result through the step loop
    slow = m(x, u, teacher)
    assert torch.allclose(fast.states, slow.states, atol=1e-5)
    assert torch.allclose(fast.rates, slow.rates, atol=1e-5)
    # the rate at bin t depends only on observations before t
    x2 = x.clone()
    x2[:, 4:] += 1.0
    assert torch.allclose(m(x2, u).rates[:, :5], fast.rates[:, :5])
    assert not torch.allclose(m(x2, u).rates[:, 5:], fast.rates[:, 5:])


def test_rollout_ignores_observations_after_n_obs():
    m = _model()
    x, u = torch.rand(2, 9, 3), torch.rand(2, 9, 1)
    x2 = x.clone()
    x2[:, 5:] = 10.0
    a, b = m.rollout(x, u, 5), m.rollout(x2, u, 5)
    assert torch.allclose(a.rates, b.rates)
    assert torch.allclose(a.rates[:, :6], m(x, u).rates[:, :6])


def test_horizon_one_is_the_same_open_and_closed():
    m = _model()
    x, u = torch.rand(4, 20, 3), torch.rand(4, 20, 1)
    y = torch.poisson(torch.ones(4, 20, 5))
    hs, op, cl = horizon_errors(m, x, u, y, torch.ones_like(y), (1, 3, 8, 50), n_starts=4)
    assert hs.tolist() == [1, 3, 8]
    assert op[0] == pytest.approx(cl[0], rel=1e-6)


def test_forecast_fit_closed_loop_worse_than_open_loop(tmp_path):
    ds, _ = random_walk_activity(n_trials=40, n_time=50, n_units=12, seed=2)
    path = convention.write_dataset(ds, tmp_path / "rw.nc")
    cfg = {"train": {"max_epochs": 25, "batch_size": 8, "lr": 0.02, "patience": 10},
           "model": {"hidden_size": 16, "factors": 3, "dropout": 0.0},
           "forecast": {"schedule": "linear", "c": 0.02, "horizons": [1, 2, 5, 10], "n_starts": 5}}
    m = fit_stage.run(path, tmp_path / "fit", model="vanilla", mode="forecast", config=cfg, seed=0, device="cpu")
    table = json.loads((tmp_path / "fit" / "horizon.json").read_text())
    assert table["horizon"] == [1, 2, 5, 10]
    op, cl = np.array(table["open_loop"]), np.array(table["closed_loop"])
    assert cl[0] == pytest.approx(op[0], rel=1e-5)
    assert np.all(cl[1:] >= op[1:]) and cl[-1] > op[-1]
    assert m["co_bps"] > 0 and m["mode"] == "forecast"
    fit = convention.read_dataset(tmp_path / "fit" / "fit.nc", "fit")
    assert fit["closed_loop_error"].dims == ("horizon",)
    np.testing.assert_allclose(fit["open_loop_error"].values, op)


def test_baseline_has_no_forecast_mode(tmp_path, capsys):
    ds, _ = random_walk_activity(n_trials=12, n_time=20, n_units=6)
    path = convention.write_dataset(ds, tmp_path / "rw.nc")
    rc = main(["fit", str(path), str(tmp_path / "out"), "--model", "fa", "--mode", "forecast", "--config", "smoke"])
    assert rc == 1
    assert "no forecast mode" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_closed_loop_feedback_writes_each_heldin_unit_into_its_own_channel():
    """Held-in units are a random subset: the feedback must pick them, not the first n_heldin units."""
    torch.manual_seed(0)
    heldin = [4, 1, 3]
    m = ForecastModel(build_dynamics("vanilla", input_size=3, hidden_size=6), n_heldin=3, n_units=5, factors=2,
                      heldin_index=heldin)
    rates = torch.tensor([[0.5, 1.5, 2.5, 3.5, 4.5]])
    torch.testing.assert_close(m.feedback(rates), torch.log1p(rates[:, heldin]))
    with pytest.raises(ValueError, match="heldin_index"):
        ForecastModel(build_dynamics("vanilla", input_size=3, hidden_size=6), n_heldin=3, n_units=5, factors=2,
                      heldin_index=[0, 1, 7])


def test_fit_builds_the_feedback_from_the_heldout_mask():
    from cortexfit.fit.config import load_config
    from cortexfit.fit.data import prepare
    from cortexfit.fit.forecast import build_forecast_model

    ds, _ = random_walk_activity(n_trials=12, n_time=20, n_units=8, seed=0)
    data = prepare(ds, load_config(), seed=0)
    model = build_forecast_model(data, load_config("smoke"), family="vanilla", seed=0)
    assert model.heldin_index.tolist() == np.flatnonzero(~data.heldout).tolist() != list(range(6))
