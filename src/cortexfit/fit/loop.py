"""The gradient-training loop of ``cortexfit fit``: AdamW, clipping, early stopping, checkpoints, resume.

:func:`train` is model-agnostic: it calls ``batch_loss(model, trial_indices, epoch)`` on shuffled mini-batches
of the training trials and ``valid_loss(model)`` once per epoch, keeps the weights with the lowest validation
loss and stops after ``patience`` epochs without improvement.  Every epoch ends with a checkpoint written
atomically (temp file + ``os.replace``) holding plain types and tensors only, so ``torch.load(...,
weights_only=True)`` reads it back as a :class:`CheckpointState` and a killed run resumes exactly: the random
state of each epoch is derived
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

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cortexfit.core.errors import FitError
from cortexfit.core.fileio import atomic_path
from cortexfit.fit.config import TrainOptions

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "cortexfit-checkpoint/1"
HISTORY_KEYS = ("epoch", "train_loss", "valid_loss", "seconds")
#: A progress line goes to the log at least this often (seconds) when no progress bar is shown.
LOG_EVERY_S = 15.0

BatchLoss = Callable[[Any, torch.Tensor, int], torch.Tensor]  # (model, train trial indices, epoch) -> loss
ValidLoss = Callable[[Any], float]


@dataclass
class TrainResult:
    """What :func:`train` returns; ``history`` holds one dict per epoch (epoch, train_loss, valid_loss, seconds)."""

    epochs: int
    best_epoch: int
    best_valid: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(kw_only=True)
class CheckpointState:
    """The training state after a finished epoch: everything :func:`train` needs to continue exactly.

    Stored as plain types and tensors (:meth:`to_payload`), so ``torch.load(..., weights_only=True)`` reads it.
    """

    fingerprint: str
    epoch: int = 0
    model: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    best: dict[str, torch.Tensor] = field(default_factory=dict)
    best_epoch: int = 0
    best_valid: float = math.inf
    bad_epochs: int = 0
    seconds: float = 0.0
    done: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def to_payload(self) -> dict[str, Any]:
        """The dict written to ``checkpoint.pt``."""
        return {
            "format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint, "epoch": self.epoch, "model": self.model,
            "optimizer": self.optimizer, "best": self.best, "best_epoch": self.best_epoch,
            "best_valid": self.best_valid, "bad_epochs": self.bad_epochs, "seconds": self.seconds,
            "done": self.done, "history_keys": list(HISTORY_KEYS),
            "history": [[float(h[k]) for k in HISTORY_KEYS] for h in self.history],
        }

    @classmethod
    def from_payload(cls, ck: dict[str, Any]) -> CheckpointState:
        """Inverse of :meth:`to_payload`."""
        return cls(fingerprint=str(ck["fingerprint"]), epoch=int(ck["epoch"]), model=ck["model"],
                   optimizer=ck["optimizer"], best=ck["best"], best_epoch=int(ck["best_epoch"]),
                   best_valid=float(ck["best_valid"]), bad_epochs=int(ck["bad_epochs"]),
                   seconds=float(ck["seconds"]), done=bool(ck["done"]),
                   history=[dict(zip(ck["history_keys"], row)) for row in ck["history"]])


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


def load_checkpoint(path: Path, fingerprint: str) -> CheckpointState:
    """Read a checkpoint with ``weights_only=True`` and check it belongs to this fit.

    Raises
    ------
    FitError
        Unreadable file, wrong format, or written for another dataset/model/config/seed.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "c.pt"
    >>> save_atomic(CheckpointState(fingerprint="a", epoch=3).to_payload(), p)
    >>> load_checkpoint(p, "a").epoch
    3
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
    try:
        return CheckpointState.from_payload(ck)
    except (KeyError, TypeError, ValueError) as exc:
        raise FitError(f"{path}: incomplete checkpoint (missing {exc})") from None


def _optimizer(model: nn.Module, opts: TrainOptions) -> tuple[torch.optim.Optimizer, list[nn.Parameter]]:
    """AdamW with decoupled weight decay on matrices only (not on biases, gains and initial states)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() > 1]
    rest = [p for p in params if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": opts.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=opts.lr), params


def shuffled_batches(n_train: int, batch_size: int, gen: torch.Generator,
                     groups: Sequence[int] | None = None) -> list[Tensor]:
    """Mini-batches of ``0 .. n_train - 1`` in random order; with ``groups`` (sizes of consecutive index blocks,
    e.g. one per session) every batch holds indices of one block only, and the batches of all blocks are shuffled
    together.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> all(max(b) < 2 or min(b) >= 2 for b in shuffled_batches(5, 2, g, groups=[2, 3]))
    True
    """
    if groups is None:
        order = torch.randperm(n_train, generator=gen)
        return [order[a : a + batch_size] for a in range(0, n_train, batch_size)]
    if sum(groups) != n_train:
        raise ValueError(f"groups sum to {sum(groups)}, not n_train = {n_train}")
    batches, start = [], 0
    for size in groups:
        order = torch.randperm(size, generator=gen) + start
        batches += [order[a : a + batch_size] for a in range(0, size, batch_size)]
        start += size
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def _train_epoch(model: nn.Module, batch_loss: BatchLoss, optim: torch.optim.Optimizer, params: list[nn.Parameter],
                 *, n_train: int, epoch: int, opts: TrainOptions, seed: int, where: str,
                 groups: Sequence[int] | None = None) -> float:
    """One pass over shuffled mini-batches of the training trials; returns the mean training loss."""
    device = params[0].device if params else torch.device("cpu")
    torch.manual_seed(epoch_seed(seed, epoch))
    gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    model.train()
    total, count = 0.0, 0
    for b, batch in enumerate(shuffled_batches(n_train, opts.batch_size, gen, groups)):
        idx = batch.to(device)
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
    return total / max(count, 1)


class _Progress:
    """A tqdm bar on a terminal; otherwise (a Snakemake log) a log line every :data:`LOG_EVERY_S` seconds."""

    def __init__(self, *, total: int, initial: int, desc: str):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="epoch", disable=None, leave=False)
        self.total, self.desc, self.start, self.last = total, desc, time.perf_counter(), -math.inf
        self.first = initial

    def update(self, st: CheckpointState, train: float, valid: float) -> None:
        self.bar.update(1)
        self.bar.set_postfix(train=f"{train:.4f}", valid=f"{valid:.4f}", best=st.best_epoch)
        now = time.perf_counter()
        if self.bar.disable and (now - self.last >= LOG_EVERY_S or st.done or st.epoch in (self.first + 1, self.total)):
            self.last = now
            done = st.epoch - self.first
            eta = (now - self.start) / max(done, 1) * (self.total - st.epoch)
            log.info("%s: epoch %d/%d train %.4f valid %.4f (best %.4f at %d) elapsed %.0f s, at most %.0f s left%s",
                     self.desc, st.epoch, self.total, train, valid, st.best_valid, st.best_epoch,
                     now - self.start, eta, " - stopped early" if st.done and st.epoch < self.total else "")

    def close(self) -> None:
        self.bar.close()


def train(
    model: nn.Module,
    batch_loss: BatchLoss,
    valid_loss: ValidLoss,
    *,
    n_train: int,
    opts: TrainOptions,
    seed: int,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    resume: CheckpointState | None = None,
    where: str = "fit",
    desc: str = "fit",
    after_epoch: Callable[[int], None] | None = None,
    groups: Sequence[int] | None = None,
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
        Where to write the :class:`CheckpointState` after every epoch.
    fingerprint : str
        Identifies the fit (stored in and checked against checkpoints).
    resume : CheckpointState, optional
        The state to continue from (:func:`load_checkpoint`).
    where, desc : str
        File name for error messages; progress label.
    after_epoch : callable, optional
        Called with the finished epoch number after its checkpoint is written (tests use it to "kill" a run).
    groups : sequence of int, optional
        Sizes of consecutive blocks of the training indices (sessions of a joint fit): each batch then comes
        from one block (:func:`shuffled_batches`), so a batch runs the model once, not once per block.

    Raises
    ------
    FitError
        The training or validation loss becomes NaN or infinite.
    """
    optim, params = _optimizer(model, opts)
    st = CheckpointState(fingerprint=fingerprint, best=_cpu_state(model))
    if resume is not None:
        st = resume
        model.load_state_dict(resume.model)
        optim.load_state_dict(resume.optimizer)
    progress = _Progress(total=opts.max_epochs, initial=st.epoch, desc=desc)
    try:
        while not st.done and st.epoch < opts.max_epochs:
            t0 = time.perf_counter()
            train_loss = _train_epoch(model, batch_loss, optim, params, n_train=n_train, epoch=st.epoch, opts=opts,
                                      seed=seed, where=where, groups=groups)
            model.eval()
            with torch.no_grad():
                v = float(valid_loss(model))
            if not math.isfinite(v):
                raise FitError(f"{where}: validation loss became {v} at epoch {st.epoch + 1}; try a smaller train.lr")
            st.epoch += 1
            if v < st.best_valid - 1e-6 * abs(st.best_valid) or st.epoch == 1:
                st.best_valid, st.best_epoch, st.bad_epochs = v, st.epoch, 0
                st.best = _cpu_state(model)
            else:
                st.bad_epochs += 1
                if opts.lr_decay < 1 and st.bad_epochs % opts.lr_patience == 0:
                    for g in optim.param_groups:  # stored in the optimizer's state: a resumed fit keeps it
                        g["lr"] = max(g["lr"] * opts.lr_decay, min(opts.lr_min, g["lr"]))
            st.seconds += time.perf_counter() - t0
            st.history.append({"epoch": st.epoch, "train_loss": train_loss, "valid_loss": v, "seconds": st.seconds})
            stop = st.bad_epochs >= opts.patience and st.epoch >= opts.min_epochs
            st.done = stop or st.epoch >= opts.max_epochs
            progress.update(st, train_loss, v)
            if checkpoint is not None:
                st.model, st.optimizer = _cpu_state(model), optim.state_dict()
                save_atomic(st.to_payload(), checkpoint)
            if after_epoch is not None:
                after_epoch(st.epoch)
    finally:
        progress.close()
    model.load_state_dict(st.best)
    model.eval()
    return TrainResult(epochs=st.epoch, best_epoch=st.best_epoch, best_valid=st.best_valid, seconds=st.seconds,
                       history=st.history)
