"""Continual fitting (cortexfit.fit.continual): EWC, replay, frozen heads and the forgetting measure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexfit.core import convention
from cortexfit.core.errors import ConfigError
from cortexfit.fit import loop
from cortexfit.fit.config import load_config
from cortexfit.fit.continual import ContinualOptions, diag_fisher, ewc_penalty, fit_continual, forgetting
from cortexfit.fit.data import prepare
from cortexfit.fit.sessions import build_joint, session_losses

CFG = load_config({"train": {"max_epochs": 6, "patience": 50, "batch_size": 4},
                   "model": {"hidden_size": 8, "factors": 3, "encoder_size": 6, "controller": 0}})


def _session(n_units: int, seed: int):
    rng = np.random.default_rng(seed)
    t = np.arange(20)
    drive = np.sin(2 * np.pi * (t / 20 + seed / 3))[None, :, None] * rng.normal(size=(1, 1, n_units))
    y = rng.poisson(np.exp(drive) * 0.6, (16, 20, n_units)).astype("uint16")
    return prepare(convention.new_activity(y, time=t * 0.01, bin_width_s=0.01), CFG, seed=0)


def _run(method: str, **kw):
    datas = [_session(6, 0), _session(8, 1)]
    names = ["a", "b"]
    model = build_joint(datas, names, CFG, family="vanilla", seed=0)
    tensors, batch, valid = session_losses(model, datas, names, CFG, "cpu")
    snaps = []

    def train(m, loss, vloss, *, n_train, seed, desc, groups=None):
        snaps.append({k: p.detach().clone() for k, p in model.shared_parameters().items()})
        heads_a = [p.detach().clone() for p in model.head_parameters("a")]
        res = loop.train(m, loss, vloss, n_train=n_train, opts=CFG.train, seed=seed, desc=desc, groups=groups)
        snaps.append({"heads_a_changed": any(not torch.equal(a, p) for a, p in zip(heads_a, model.head_parameters("a")))})
        return res

    out = fit_continual(model, names, batch, valid, [len(t.train) for t in tensors],
                        opts=ContinualOptions(method=method, **kw), train=train,
                        evaluate=lambda n: {"co_bps": 0.0}, seed=0, batch_size=4)
    end = model.shared_parameters()
    drift = sum(float(((end[k].detach() - snaps[2][k]) ** 2).sum()) for k in end)  # during session b
    return out, drift, snaps


def test_strong_ewc_keeps_the_shared_parameters_where_session_a_left_them():
    _, drift_none, _ = _run("none")
    _, drift_ewc, _ = _run("ewc", ewc_lambda=1e4)
    assert drift_ewc < 0.2 * drift_none


def test_earlier_heads_are_frozen_unless_replayed():
    _, _, none = _run("none")
    _, _, replay = _run("replay", replay_fraction=0.5)
    assert none[3]["heads_a_changed"] is False  # session b's fit leaves session a's read-in/out alone
    assert replay[3]["heads_a_changed"] is True  # replayed trials of a train a's heads too


def test_score_matrix_is_lower_triangular_with_one_row_per_session():
    out, _, _ = _run("none")
    mat = out["scores"]["co_bps"]
    assert mat[0] == [0.0, None] and mat[1] == [0.0, 0.0]
    assert [s["session"] for s in out["steps"]] == ["a", "b"]


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_with_distance():
    datas = [_session(6, 0)]
    model = build_joint(datas, ["a"], CFG, family="rate", seed=0)
    _, batch, _ = session_losses(model, datas, ["a"], CFG, "cpu")
    anchor = diag_fisher(model, "a", batch[0], len(datas[0].trials("train")), batch_size=4, seed=0)
    assert float(ewc_penalty(model, [anchor], 10.0).detach()) == 0.0
    mean_f = np.mean(np.concatenate([f.flatten().numpy() for f in anchor.fisher.values()]))
    assert mean_f == pytest.approx(1.0, rel=1e-5)
    with torch.no_grad():
        for p in model.shared_parameters().values():
            p.add_(0.01)
    small = float(ewc_penalty(model, [anchor], 10.0).detach())
    with torch.no_grad():
        for p in model.shared_parameters().values():
            p.add_(0.01)
    assert 0 < small < float(ewc_penalty(model, [anchor], 10.0).detach())


def test_forgetting_is_own_score_minus_last_score():
    m = [[0.5, None, None], [0.4, 0.6, None], [0.2, 0.5, 0.7]]
    out = forgetting(m)
    assert out["drops"] == [0.3, 0.1] and out["mean_drop"] == pytest.approx(0.2) and out["max_drop"] == 0.3
    assert forgetting([[0.5]])["mean_drop"] is None  # one session: nothing to forget


@pytest.mark.parametrize("bad", [{"method": "lwf"}, {"ewc_lambda": -1.0}, {"replay_fraction": 0.0}])
def test_bad_continual_options_are_one_line_errors(bad):
    with pytest.raises(ConfigError, match="continual: "):
        ContinualOptions(**bad)
