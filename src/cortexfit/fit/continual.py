"""Continual fitting of sessions one after another (``cortexfit fit-group --strategy continual``).

Session ``k`` starts from the shared encoder and generator that sessions ``1..k-1`` left behind and trains
them with its own new read-in/read-out (earlier sessions' heads are frozen).  Plain fine-tuning
(``method="none"``) lets those gradient steps overwrite what the earlier sessions relied on (catastrophic
interference); two remedies:

* ``ewc`` -- elastic weight consolidation (Kirkpatrick et al. 2017): after each session, the diagonal
  empirical Fisher information of its loss w.r.t. the shared parameters ``F`` and the parameters ``theta*``
  are kept; later sessions add ``ewc_lambda / 2 * sum F (theta - theta*)^2``.  ``F`` is normalised to mean 1
  over the shared parameters, so ``ewc_lambda`` does not depend on the loss scale.
* ``replay`` -- a fixed random ``replay_fraction`` of every earlier session's training trials is mixed into
  the batches of each later session (through that session's own, then trainable, heads).

On three simulated 40-unit flip-flop sessions of one teacher (rate family, seed 0; measured before the
flip-flop readout's bit loadings were balanced), plain fine-tuning dropped
the earlier sessions' co-bps by 0.137 and state R2 by 0.210 on average; EWC at the default ``ewc_lambda`` 100
by 0.000 (it holds the shared system where the first session left it, and the later sessions still fit as well
as alone: their read-ins and read-outs adapt); replay of half the earlier trials by 0.023 and 0.061.

After each session, every session fitted so far is scored on its test trials: ``co_bps`` and, given its
ground truth, ``state_r2`` (:func:`cortexfit.analysis.truth.state_r2`).  :func:`forgetting` turns the
matrices into drops.

Examples
--------
>>> ContinualOptions(method="ewc").ewc_lambda
100.0
>>> forgetting([[0.5, None], [0.3, 0.6]])
{'mean_drop': 0.2, 'max_drop': 0.2, 'drops': [0.2]}
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cortexfit.core.errors import ConfigError
from cortexfit.fit.loop import BatchLoss
from cortexfit.fit.sessions import JointModel, mixed_batch_loss

log = logging.getLogger("cortexfit.fit")

METHODS = ("none", "ewc", "replay")


@dataclass(frozen=True, kw_only=True)
class ContinualOptions:
    """``method`` (none | ewc | replay), the EWC strength and the replayed fraction of earlier trials."""

    method: str = "none"
    ewc_lambda: float = 100.0
    replay_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"continual: method {self.method!r}; valid methods: {', '.join(METHODS)}")
        if not (self.ewc_lambda >= 0 and math.isfinite(self.ewc_lambda)):
            raise ConfigError(f"continual: ewc_lambda must be >= 0, got {self.ewc_lambda}")
        if not 0 < self.replay_fraction <= 1:
            raise ConfigError(f"continual: replay_fraction must be in (0, 1], got {self.replay_fraction}")


@dataclass
class Anchor:
    """What EWC keeps of one finished session: the normalised Fisher and the shared parameters."""

    fisher: dict[str, Tensor]
    theta: dict[str, Tensor]


def diag_fisher(model: JointModel, name: str, batch_loss: BatchLoss, n_train: int, *, batch_size: int,
                seed: int) -> Anchor:
    """Diagonal empirical Fisher of session ``name``'s training loss w.r.t. the shared parameters.

    Mean over mini-batches of the squared gradient (eval mode: no dropout), normalised to mean 1.
    """
    params = model.shared_parameters()
    fisher = {k: torch.zeros_like(p) for k, p in params.items()}
    model.eval()
    torch.manual_seed(seed)
    device = next(iter(params.values())).device
    n_batches = 0
    for start in range(0, n_train, batch_size):
        idx = torch.arange(start, min(start + batch_size, n_train), device=device)
        model.zero_grad(set_to_none=True)
        batch_loss(model.view(name), idx, 0).backward()
        for k, p in params.items():
            if p.grad is not None:
                fisher[k] += p.grad.detach() ** 2
        n_batches += 1
    model.zero_grad(set_to_none=True)
    total = sum(float(f.sum()) for f in fisher.values())
    count = sum(f.numel() for f in fisher.values())
    scale = count / total if total > 0 else 0.0
    return Anchor(fisher={k: f * scale for k, f in fisher.items()},
                  theta={k: p.detach().clone() for k, p in params.items()})


def ewc_penalty(model: JointModel, anchors: Sequence[Anchor], strength: float) -> Tensor:
    """``strength / 2 * sum_anchors sum F (theta - theta*)^2`` over the shared parameters."""
    params = model.shared_parameters()
    total = next(iter(params.values())).new_zeros(())
    for a in anchors:
        for k, p in params.items():
            total = total + (a.fisher[k] * (p - a.theta[k]) ** 2).sum()
    return 0.5 * strength * total


def with_ewc(loss: BatchLoss, model: JointModel, anchors: Sequence[Anchor], strength: float) -> BatchLoss:
    """``loss`` plus the EWC penalty of ``anchors`` (unchanged when there are none)."""
    if not anchors or strength == 0:
        return loss

    def penalised(m: nn.Module, b: Tensor, epoch: int) -> Tensor:
        return loss(m, b, epoch) + ewc_penalty(model, anchors, strength)

    return penalised


def forgetting(matrix: Sequence[Sequence[float | None]]) -> dict[str, Any]:
    """Drops of each earlier session's score from right after its own fit to after the last session.

    ``matrix[i][j]``: score of session ``j`` after fitting session ``i`` (None for ``j > i``).  Positive drops
    mean forgetting.  ``mean_drop``/``max_drop`` are None with fewer than two sessions or missing scores.
    """
    k = len(matrix)
    drops = []
    for j in range(k - 1):
        own, last = matrix[j][j], matrix[k - 1][j]
        if own is None or last is None or not (math.isfinite(own) and math.isfinite(last)):
            continue
        drops.append(round(float(own - last), 6))
    if not drops:
        return {"mean_drop": None, "max_drop": None, "drops": drops}
    return {"mean_drop": round(float(np.mean(drops)), 6), "max_drop": round(float(np.max(drops)), 6), "drops": drops}


def fit_continual(model: JointModel, names: Sequence[str], batch: Sequence[BatchLoss],
                  valid: Sequence[Callable[[nn.Module], float]], n_train: Sequence[int], *, opts: ContinualOptions,
                  train: Callable[..., Any], evaluate: Callable[[str], dict[str, float | None]], seed: int,
                  batch_size: int) -> dict[str, Any]:
    """Fit the sessions in order (module docstring) and score every earlier session after each one.

    ``train(model, batch_loss, valid_loss, n_train=..., seed=..., desc=..., groups=...)`` runs one session's training
    (:func:`cortexfit.fit.loop.train` with the fit's options); ``evaluate(name)`` scores a session's view now
    (``{"co_bps": ..., "state_r2": ...}``).  Returns the score matrices (``matrix[metric][i][j]``: session ``j``
    after session ``i``), the drops (:func:`forgetting`), and each session's training history and epochs.
    """
    k_all = len(names)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 13]))
    anchors: list[Anchor] = []
    replay: dict[str, Tensor] = {}
    scores: dict[str, list[list[float | None]]] = {}
    steps: list[dict[str, Any]] = []
    for k, name in enumerate(names):
        earlier = list(names[:k])
        parts: list[tuple[str, BatchLoss, Tensor]] = [(name, batch[k], torch.arange(n_train[k]))]
        if opts.method == "replay":
            parts += [(e, batch[j], replay[e]) for j, e in enumerate(earlier)]
        model.train_only([name] + (earlier if opts.method == "replay" else []))
        loss = mixed_batch_loss(model, parts)
        if opts.method == "ewc":
            loss = with_ewc(loss, model, anchors, opts.ewc_lambda)
        view, vfn = model.view(name), valid[k]
        res = train(model, loss, lambda _m, v=view, f=vfn: f(v), n_train=sum(len(p[2]) for p in parts),
                    seed=int(seed) + 7919 * k, groups=[len(p[2]) for p in parts],
                    desc=f"session {k + 1}/{k_all} ({name}, continual {opts.method})")
        if opts.method == "ewc":
            anchors.append(diag_fisher(model, name, batch[k], n_train[k], batch_size=batch_size, seed=seed + k))
        if opts.method == "replay":
            keep = max(1, round(opts.replay_fraction * n_train[k]))
            replay[name] = torch.as_tensor(np.sort(rng.choice(n_train[k], size=keep, replace=False)))
        row = {n: evaluate(n) for n in names[: k + 1]}
        for metric in {m for r in row.values() for m in r}:
            mat = scores.setdefault(metric, [[None] * k_all for _ in range(k_all)])
            for j, n in enumerate(names[: k + 1]):
                mat[k][j] = row[n].get(metric)
        steps.append({"session": name, "epochs": res.epochs, "best_epoch": res.best_epoch, "seconds": res.seconds,
                      "history": res.history, "scores": row})
        log.info("continual %s: after %s: %s", opts.method, name,
                 "; ".join(f"{n} " + ", ".join(f"{m} {v:.3f}" for m, v in r.items() if v is not None)
                           for n, r in row.items()))
    return {"scores": scores, "forgetting": {m: forgetting(mat) for m, mat in scores.items()}, "steps": steps}
