"""Tests of cortexfit.fit.loop: early stopping, checkpoints as an explicit state, exact resume, errors."""

from __future__ import annotations

import math

import pytest
import torch

from cortexfit.core.errors import FitError
from cortexfit.fit.config import TrainOptions
from cortexfit.fit.loop import CheckpointState, load_checkpoint, save_atomic, train

X = torch.linspace(-1, 1, 40)[:, None]
Y = 3 * X


def _loss(m, idx, epoch):
    return ((m(X[idx]) - Y[idx]) ** 2).mean()


def _valid(m):
    return float(((m(X) - Y) ** 2).mean())


def _net():
    torch.manual_seed(0)
    return torch.nn.Linear(1, 1)


def test_resume_from_a_checkpoint_state_equals_an_uninterrupted_run(tmp_path):
    opts = TrainOptions(max_epochs=12, batch_size=8, lr=0.05, patience=50)
    full_net = _net()
    full = train(full_net, _loss, _valid, n_train=40, opts=opts, seed=3)

    def stop(epoch):
        if epoch == 5:
            raise KeyboardInterrupt

    ck = tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):
        train(_net(), _loss, _valid, n_train=40, opts=opts, seed=3, checkpoint=ck, fingerprint="f", after_epoch=stop)
    state = load_checkpoint(ck, "f")
    assert isinstance(state, CheckpointState) and state.epoch == 5 and len(state.history) == 5
    net = _net()
    res = train(net, _loss, _valid, n_train=40, opts=opts, seed=3, checkpoint=ck, fingerprint="f", resume=state)
    assert res.epochs == full.epochs == 12 and res.best_valid == full.best_valid
    assert torch.equal(net.weight, full_net.weight)


def test_early_stopping_keeps_the_best_epoch():
    calls = iter([5.0, 1.0, 2.0, 3.0, 4.0, 0.5])
    res = train(_net(), _loss, lambda m: next(calls), n_train=40,
                opts=TrainOptions(max_epochs=6, batch_size=40, patience=3), seed=0)
    assert res.epochs == 5 and res.best_epoch == 2 and res.best_valid == 1.0


def test_checkpoint_payload_round_trips_and_foreign_files_are_refused(tmp_path):
    st = CheckpointState(fingerprint="a", epoch=2, best_valid=0.5, history=[
        {"epoch": 1.0, "train_loss": 1.0, "valid_loss": 0.9, "seconds": 0.1}])
    p = tmp_path / "c.pt"
    save_atomic(st.to_payload(), p)
    back = load_checkpoint(p, "a")
    assert back.epoch == 2 and back.best_valid == 0.5 and back.history == st.history
    with pytest.raises(FitError, match="different dataset, model, config or seed"):
        load_checkpoint(p, "b")
    save_atomic({"epoch": 1}, p)
    with pytest.raises(FitError, match="not a cortexfit checkpoint"):
        load_checkpoint(p, "a")
    p.write_bytes(b"garbage")
    with pytest.raises(FitError, match="cannot read checkpoint"):
        load_checkpoint(p, "a")


def test_nan_loss_is_a_fit_error():
    with pytest.raises(FitError, match="training loss became nan"):
        train(_net(), lambda m, idx, e: m(X[idx]).sum() * math.nan, _valid, n_train=40,
              opts=TrainOptions(max_epochs=2), seed=0, where="x.nc")


def test_progress_lines_reach_the_log_when_there_is_no_terminal(monkeypatch, caplog):
    """Under pytest stderr is not a terminal (as in a Snakemake log): the bar is off and log lines carry the epoch,
    losses, elapsed time and the time left."""
    import logging

    from cortexfit.fit import loop

    monkeypatch.setattr(loop, "LOG_EVERY_S", 0.0)
    with caplog.at_level(logging.INFO, logger="cortexfit.fit.loop"):
        train(_net(), _loss, _valid, n_train=40, opts=TrainOptions(max_epochs=4, batch_size=8, patience=50), seed=0,
              desc="demo fit")
    lines = [r.getMessage() for r in caplog.records if r.name == "cortexfit.fit.loop"]
    assert len(lines) == 4 and lines[-1].startswith("demo fit: epoch 4/4 train ")
    assert all("valid" in m and "elapsed" in m and "left" in m for m in lines)


def test_grouped_batches_stay_inside_one_block_and_cover_every_index_once():
    from cortexfit.fit.loop import shuffled_batches

    gen = torch.Generator().manual_seed(3)
    batches = shuffled_batches(23, 4, gen, groups=[10, 6, 7])
    flat = sorted(i for b in batches for i in b.tolist())
    assert flat == list(range(23))
    blocks = [0, 10, 16, 23]
    for b in batches:
        block = {next(k for k in range(3) if blocks[k] <= i < blocks[k + 1]) for i in b.tolist()}
        assert len(block) == 1 and len(b) <= 4
    # without groups: the loop's original order (randperm sliced), so ungrouped fits are unchanged
    plain = shuffled_batches(23, 4, torch.Generator().manual_seed(3))
    want = torch.randperm(23, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.cat(plain), want)
    with pytest.raises(ValueError, match="groups sum to 22"):
        shuffled_batches(23, 4, gen, groups=[10, 12])



def test_learning_rate_decays_after_each_plateau_and_a_resumed_fit_keeps_it(tmp_path, monkeypatch):
    # the valid loss improves once, then never again: with lr_patience 2 the rate halves after bad epochs 2 and 4
    opts = TrainOptions(max_epochs=7, batch_size=40, lr=0.1, patience=50, lr_decay=0.5, lr_patience=2, lr_min=0.03)
    lrs: list[float] = []
    step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    calls = iter([1.0, 0.5] + [0.9] * 10)
    train(_net(), _loss, lambda m: next(calls), n_train=40, opts=opts, seed=0)
    # epochs 1-4 at 0.1; bad epochs 3 and 4 -> 0.05 for epochs 5-6; bad epochs 5 and 6 -> 0.025, floored at 0.03
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.03])

    lrs.clear()
    calls = iter([1.0, 0.5] + [0.9] * 10)
    train(_net(), _loss, lambda m: next(calls), n_train=40, opts=TrainOptions(max_epochs=7, batch_size=40, lr=0.1,
                                                                              patience=50, lr_decay=1.0), seed=0)
    assert lrs == pytest.approx([0.1] * 7)  # lr_decay 1: constant

    def stop(epoch):
        if epoch == 5:
            raise KeyboardInterrupt

    ck = tmp_path / "c.pt"
    calls = iter([1.0, 0.5] + [0.9] * 10)
    with pytest.raises(KeyboardInterrupt):
        train(_net(), _loss, lambda m: next(calls), n_train=40, opts=opts, seed=0, checkpoint=ck, fingerprint="f",
              after_epoch=stop)
    assert load_checkpoint(ck, "f").optimizer["param_groups"][0]["lr"] == pytest.approx(0.05)
