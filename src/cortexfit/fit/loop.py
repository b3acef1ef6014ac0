"""The gradient-training loop of ``cortexfit fit``: AdamW, clipping, early stopping, checkpoints, resume.

:func:`train` is model-agnostic: it calls ``batch_loss(model, trial_indices, epoch)`` on shuffled mini-batches
of the training trials and ``valid_loss(model)`` once per epoch, keeps the weights with the lowest validation
loss and stops after ``patience`` epochs without improvement.  Every epoch ends with a checkpoint written
atomically (temp file + ``os.replace``) holding plain types and tensors only, so ``torch.load(...,
weights_only=True)`` reads it and a killed run resumes exactly: the random state of each epoch is derived
from ``(seed, epoch)``, not carried over, so a resumed run is identical to an uninterrupted one.

Examples
--------
>>> import torch
>>> from cortexfit.fit.config import TrainOptions
>>> net = torch.nn.Linear(1, 1)
>>> x = torch.linspace(-1, 1, 20)[:, None]; y = 3 * x
>>> loss = lambda m, idx, epoch: ((m(x[idx]) - y[idx]) ** 2).mean()
>>> res = train(net, loss, lambda m: float(((m(x) - y) ** 2).mean()), n_train=20,
...             opts=TrainOptions(max_epochs=200, batch_size=5, lr=0.05, patience=20), seed=0)
>>> res.best_valid < 1e-3
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cortexfit.core.errors import FitError
from cortexfit.core.fileio import atomic_path
from cortexfit.fit.config import TrainOptions

CHECKPOINT_FORMAT = "cortexfit-checkpoint/1"


@dataclass
class TrainResult:
    """What :func:`train` returns; ``history`` holds one dict per epoch (epoch, train_loss, valid_loss, seconds)."""

    epochs: int
    best_epoch: int
    best_valid: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def epoch_seed(seed: int, epoch: int) -> int:
    """The torch seed of one epoch (shuffling, dropout): a function of (seed, epoch) only.

    Examples
    --------
    >>> epoch_seed(0, 1) == epoch_seed(0, 1) != epoch_seed(0, 2)
    True
    """
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**63 - 1)


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file in the same folder, then ``os.replace``.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "c.pt"
    >>> save_atomic({"epoch": 1}, p); torch.load(p, weights_only=True)
    {'epoch': 1}
    """
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check it belongs to this fit.

    Raises
    ------
    FitError
        Unreadable file, wrong format, or written for another dataset/model/config/seed.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "c.pt"
    >>> save_atomic({"format": CHECKPOINT_FORMAT, "fingerprint": "a"}, p)
    >>> load_checkpoint(p, "a")["fingerprint"]
    'a'
    """
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise FitError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise FitError(f"{path}: not a cortexfit checkpoint")
    if ck.get("fingerprint") != fingerprint:
        raise FitError(
            f"{path}: checkpoint was written for a different dataset, model, config or seed; "
            "rerun without --resume to start over"
        )
    return ck


def train(
    model: nn.Module,
    batch_loss: Callable[[nn.Module, torch.Tensor, int], torch.Tensor],
    valid_loss: Callable[[nn.Module], float],
    *,
    n_train: int,
    opts: TrainOptions,
    seed: int,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    resume: dict[str, Any] | None = None,
    where: str = "fit",
    desc: str = "fit",
    after_epoch: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train ``model`` with AdamW (decoupled weight decay on matrices only), gradient clipping, early stopping.

    The model is left at the weights of its best validation epoch.

    Parameters
    ----------
    model : torch.nn.Module
        Parameters to train (already on the device).
    batch_loss : callable
        ``(model, train trial indices (LongTensor), epoch) -> scalar loss``, called in train mode.
    valid_loss : callable
        ``model -> float``, called in eval mode under ``torch.no_grad``.
    n_train : int
        Number of training trials (indices ``0 .. n_train - 1`` are shuffled into batches).
    opts : TrainOptions
        ``max_epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``grad_clip``, ``patience``, ``min_epochs``.
    seed : int
        Seed of the per-epoch random state (see :func:`epoch_seed`).
    checkpoint : pathlib.Path, optional
        Where to write the training state after every epoch.
    fingerprint : str
        Identifies the fit (stored in and checked against checkpoints).
    resume : dict, optional
        A checkpoint dict from :func:`load_checkpoint` to continue from.
    where, desc : str
        File name for error messages; progress-bar label.
    after_epoch : callable, optional
        Called with the finished epoch number after its checkpoint is written (tests use it to "kill" a run).

    Raises
    ------
    FitError
        The training loss becomes NaN or infinite.
    """
    from tqdm.auto import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() > 1]  # no weight decay on biases, gains and initial states
    rest = [p for p in params if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": opts.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    optim = torch.optim.AdamW([g for g in groups if g["params"]], lr=opts.lr)
    best_state = _cpu_state(model)
    epoch, best_epoch, best_valid, bad, seconds = 0, 0, math.inf, 0, 0.0
    history: list[dict[str, float]] = []
    done = False
    if resume is not None:
        model.load_state_dict(resume["model"])
        optim.load_state_dict(resume["optimizer"])
        best_state = resume["best"]
        epoch, best_epoch, bad = int(resume["epoch"]), int(resume["best_epoch"]), int(resume["bad_epochs"])
        best_valid, seconds, done = float(resume["best_valid"]), float(resume["seconds"]), bool(resume["done"])
        history = [dict(zip(resume["history_keys"], row)) for row in resume["history"]]
    device = next(iter(params)).device if params else torch.device("cpu")
    bar = tqdm(total=opts.max_epochs, initial=epoch, desc=desc, unit="epoch", disable=None, leave=False)
    try:
        while not done and epoch < opts.max_epochs:
            t0 = time.perf_counter()
            torch.manual_seed(epoch_seed(seed, epoch))
            gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
            order = torch.randperm(n_train, generator=gen)
            model.train()
            total, count = 0.0, 0
            for b, start in enumerate(range(0, n_train, opts.batch_size)):
                idx = order[start : start + opts.batch_size].to(device)
                loss = batch_loss(model, idx, epoch)
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    raise FitError(
                        f"{where}: training loss became {lv} at epoch {epoch + 1}, batch {b + 1}; "
                        f"try a smaller train.lr (now {opts.lr:g}) or train.grad_clip (now {opts.grad_clip:g})"
                    )
                optim.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, opts.grad_clip)
                optim.step()
                total += lv * len(idx)
                count += len(idx)
            model.eval()
            with torch.no_grad():
                v = float(valid_loss(model))
            if not math.isfinite(v):
                raise FitError(f"{where}: validation loss became {v} at epoch {epoch + 1}; try a smaller train.lr")
            epoch += 1
            if v < best_valid - 1e-6 * abs(best_valid) or epoch == 1:
                best_valid, best_epoch, bad = v, epoch, 0
                best_state = _cpu_state(model)
            else:
                bad += 1
            dt = time.perf_counter() - t0
            seconds += dt
            history.append({"epoch": epoch, "train_loss": total / max(count, 1), "valid_loss": v, "seconds": seconds})
            done = bad >= opts.patience and epoch >= opts.min_epochs
            bar.update(1)
            bar.set_postfix(train=f"{total / max(count, 1):.4f}", valid=f"{v:.4f}", best=best_epoch)
            if checkpoint is not None:
                keys = ["epoch", "train_loss", "valid_loss", "seconds"]
                save_atomic(
                    {
                        "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "epoch": epoch,
                        "model": _cpu_state(model), "optimizer": optim.state_dict(), "best": best_state,
                        "best_epoch": best_epoch, "best_valid": best_valid, "bad_epochs": bad,
                        "seconds": seconds, "done": done or epoch >= opts.max_epochs,
                        "history_keys": keys, "history": [[float(h[k]) for k in keys] for h in history],
                    },
                    checkpoint,
                )
            if after_epoch is not None:
                after_epoch(epoch)
    finally:
        bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(epochs=epoch, best_epoch=best_epoch, best_valid=best_valid, seconds=seconds, history=history)
