"""``cortexfit fit-group``: one dynamical system behind several sessions, fitted jointly or one after another.

Labs record one task over many days with other neurons each day.  :func:`run` fits the sessions' activity
files with one shared encoder and generator (any gradient-trained RNN family) and per-session read-in and
read-out layers (:mod:`cortexfit.fit.sessions`), either

* ``strategy="joint"``: all sessions at once, batches drawn from the pooled training trials; or
* ``strategy="continual"``: in the given order, each session starting from the generator the earlier ones
  left (:mod:`cortexfit.fit.continual`: plain fine-tuning, EWC or replay), scoring every earlier session
  after each new one (the forgetting matrix).

It writes ``OUT_DIR``::

    metrics.json          strategy, sessions, per-session and pooled co-bps/fp-bps, epochs, inputs ...
    history.csv           loss per epoch (column ``session``: the session being fitted, or ``all``)
    forgetting.json       continual only: score matrices and drops (co_bps; state_r2 given truths)
    sessions/<name>/      an ordinary fit folder per session (fit.nc, model.pt, history.csv, metrics.json):
                          the session's view composed into a single-session latent model, which
                          ``fixed-points``, ``geometry``, ``dynamics`` and ``truth`` read as they read any fit

Why the warm start (``warm_start=True``, the default): fitted from scratch, the shared encoder has to reconcile
read-ins in unrelated coordinates at once.  On three simulated 40-unit flip-flop sessions of one teacher (rate
family, seed 0, default options; before the bit loadings were balanced) from scratch gave pooled co-bps 0.129
and state R2 0.73-0.83, below each session fitted alone (0.85, 0.84, 0.86); the first session alone, then the
others' heads, then all together at a tenth of the learning rate gave pooled co-bps 0.165, state R2 0.948, 0.953,
0.887, and a generator with exactly 8 stable fixed points, all 8 matched to the teacher's through two of the
sessions' state maps.

Sessions must share bin width, alignment event, signal and task inputs (one line naming the two that differ
otherwise); a group of one session is fitted as a single session.  Everything is written to a temporary
folder and moved into place at the end, so a failed run leaves no half-written ``OUT_DIR``.

Examples
--------
>>> run(["s1/activity.nc", "s2/activity.nc"], "groups/g/fits/rate", model="rate",
...     names=["s1", "s2"], strategy="continual", method="ewc")          # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cortexfit.core.errors import ConfigError

log = logging.getLogger("cortexfit.fit")

STRATEGIES = ("joint", "continual")


def _history_csv(rows: Sequence[tuple[str, Mapping[str, float]]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["session", "epoch", "train_loss", "valid_loss", "seconds"])
    for session, h in rows:
        w.writerow([session, int(h["epoch"]), repr(float(h["train_loss"])), repr(float(h["valid_loss"])),
                    f"{float(h['seconds']):.3f}"])
    return buf.getvalue()


def _names(activity: Sequence[Path], names: Sequence[str] | None) -> list[str]:
    out = list(names) if names else [p.parent.name if p.stem == "activity" else p.stem for p in activity]
    if len(out) != len(activity):
        raise ConfigError(f"fit-group: {len(activity)} activity files but {len(out)} session names")
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ConfigError(f"fit-group: session names must differ; repeated: {', '.join(dup)} (use --names)")
    bad = [n for n in out if not n or "/" in n or n.startswith(".")]
    if bad:
        raise ConfigError(f"fit-group: bad session name(s) {bad}: no '/', no leading '.'")
    return out


def _pooled(values: Sequence[float | None], weights: Sequence[float]) -> float | None:
    """Spike-weighted mean (bits per spike pooled over sessions); None if any session has no score."""
    if any(v is None for v in values) or sum(weights) <= 0:
        return None
    return float(np.average([float(v) for v in values if v is not None], weights=weights))


def run(activity: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, model: str,
        names: Sequence[str] | None = None, strategy: str = "joint", method: str = "none",
        ewc_lambda: float = 100.0, replay_fraction: float = 0.5, truth: Sequence[str | os.PathLike] | None = None,
        warm_start: bool = True, config: Any = None, seed: int = 0, device: str = "auto") -> dict[str, Any]:
    """Fit ``activity`` (one file per session) jointly or continually and write ``out_dir`` (module docstring).

    Parameters
    ----------
    activity : paths
        ``cortexfit ingest`` outputs, one per session, in the order a continual fit visits them.
    out_dir : path
        Folder to write (replaced as a whole when the run succeeds).
    model : {"rate", "vanilla", "lstm"}
        The generator's family (gradient-trained families only).
    names : list of str, optional
        Session names (default: each file's folder name, e.g. the dataset id of ``results/<id>/activity.nc``).
    strategy : {"joint", "continual"}
    method, ewc_lambda, replay_fraction
        Continual fits: :class:`cortexfit.fit.continual.ContinualOptions`.
    truth : paths, optional
        Each session's ground truth (``<name>.truth.nc``): adds ``state_r2`` to the continual score matrices.
    warm_start : bool
        Joint fits of several sessions in three stages: the first session alone, then the other sessions'
        read-ins/read-outs with the shared modules frozen, then everything together at
        :data:`cortexfit.fit.sessions.FINE_TUNE_LR` times the learning rate (default).  From scratch,
        the shared encoder has to reconcile read-ins in unrelated coordinates and fits worse (module docstring).
    config, seed, device
        As for :func:`cortexfit.fit.run` (latent mode).

    Returns
    -------
    dict
        The contents of ``metrics.json``.

    Raises
    ------
    CortexfitError
        One line: unknown model or strategy, bad options, a bad activity file, sessions that cannot share a
        generator (bin width, alignment, signal, task inputs), or a failed fit.
    """
    from cortexfit.fit import registry
    from cortexfit.fit.continual import ContinualOptions

    entry = registry.get(model)
    if not entry.gradient_trained:
        raise ConfigError(f"fit-group: {model!r} is not a gradient-trained RNN family; use one of "
                          f"{', '.join(registry.gradient_trained())}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"fit-group: unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    opts = ContinualOptions(method=method, ewc_lambda=float(ewc_lambda), replay_fraction=float(replay_fraction))
    paths = [Path(a) for a in activity]
    if not paths:
        raise ConfigError("fit-group: no activity files")
    session_names = _names(paths, names)
    truths = [Path(t) for t in truth] if truth else []
    if truths and len(truths) != len(paths):
        raise ConfigError(f"fit-group: {len(paths)} activity files but {len(truths)} truth files")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        result = _fit(paths, session_names, truths, tmp, model=model, strategy=strategy, opts=opts, config=config,
                      seed=seed, device=device, warm_start=warm_start)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("%s %s fit of %d sessions -> %s (pooled co_bps %s)", strategy, model, len(paths), out,
             result["pooled_co_bps"])
    return result


def _fit(paths: list[Path], names: list[str], truths: list[Path], out: Path, *, model: str, strategy: str,
         opts: Any, config: Any, seed: int, device: str, warm_start: bool) -> dict[str, Any]:
    from cortexfit.core import convention
    from cortexfit.core.fileio import file_sha256, write_text_atomic
    from cortexfit.core.runtime import resolve_device
    from cortexfit.fit import _attrs, _deterministic, fit_metrics, loop, outputs
    from cortexfit.fit.config import load_config
    from cortexfit.fit.continual import fit_continual
    from cortexfit.fit.data import FitRequest, prepare
    from cortexfit.fit.metrics import compute_metrics
    from cortexfit.fit.sessions import build_joint, check_compatible, fit_joint, session_losses, session_result

    cfg = load_config(config)
    dev = resolve_device(device)
    dss = [convention.read_dataset(p, "activity") for p in paths]
    datas = [prepare(ds, cfg, seed=seed, source=str(p)) for ds, p in zip(dss, paths)]
    check_compatible(datas, names, align_events=[str(ds.attrs.get("align_event", "")) for ds in dss])
    truth_ds = [convention.read_dataset(t, "truth") for t in truths]
    req = FitRequest(model=model, mode="latent", seed=int(seed), device=dev)

    def train(m, loss, vloss, *, n_train, seed, desc, groups=None, lr_factor=1.0):
        opts = dataclasses.replace(cfg.train, lr=cfg.train.lr * lr_factor)
        return loop.train(m, loss, vloss, n_train=n_train, opts=opts, seed=seed, where=str(out.parent),
                          desc=f"fit {model} {desc}", groups=groups)

    with _deterministic(dev):
        joint = build_joint(datas, names, cfg, family=model, seed=seed).to(dev)
        tensors, batch, valid = session_losses(joint, datas, names, cfg, dev)
        n_train = [len(t.train) for t in tensors]

        def predict(j: int, **kw):
            return session_result(joint, names[j], datas[j], tensors[j], **kw)

        def evaluate(name: str) -> dict[str, float | None]:
            j = names.index(name)
            res = predict(j, epochs=0, seconds=0.0, history=[], info={})
            scores = compute_metrics(datas[j], res.rates, forward=True, vel_lag_ms=cfg.train.vel_lag_ms,
                                     psth_sigma_ms=cfg.train.psth_sigma_ms)
            row: dict[str, float | None] = {"co_bps": scores["co_bps"]}
            if truth_ds:
                from cortexfit.analysis.truth import state_r2

                fit_ds = outputs.fit_dataset(dss[j], split=datas[j].split, heldout=datas[j].heldout,
                                             spikes=datas[j].spikes, res=res, attrs={})
                row["state_r2"] = state_r2(fit_ds, truth_ds[j], act_event=str(dss[j].attrs["align_event"]),
                                           bin_width_s=datas[j].bin_width_s, where=str(paths[j]), seed=seed)
            return row

        forgetting_doc = None
        if strategy == "joint" or len(names) == 1:
            joint_fit = fit_joint(joint, names, batch, valid, n_train, [len(t.valid) for t in tensors], train=train,
                                  seed=seed, warm_start=warm_start)
            rows = joint_fit["rows"]
            hist = {n: [h for _, h in rows] for n in names}
            epochs = dict.fromkeys(names, joint_fit["epochs"])
            seconds = dict.fromkeys(names, joint_fit["seconds"])
            info = dict.fromkeys(names, joint_fit["info"])
        else:
            cont = fit_continual(joint, names, batch, valid, n_train, opts=opts, train=train, evaluate=evaluate,
                                 seed=seed, batch_size=cfg.train.batch_size)
            steps = {s["session"]: s for s in cont["steps"]}
            hist = {n: steps[n]["history"] for n in names}
            rows = [(n, h) for n in names for h in steps[n]["history"]]
            epochs = {n: steps[n]["epochs"] for n in names}
            seconds = {n: steps[n]["seconds"] for n in names}
            info = {n: {"best_epoch": steps[n]["best_epoch"]} for n in names}
            forgetting_doc = {"sessions": names, "method": opts.method, "scores": cont["scores"],
                              "forgetting": cont["forgetting"],
                              "note": "scores[metric][i][j]: session j's test-trial score after fitting "
                                      "session i; drops: own-fit score minus score after the last session"}
        per: dict[str, dict[str, Any]] = {}
        for j, n in enumerate(names):
            res_j = predict(j, epochs=epochs[n], seconds=seconds[n], history=hist[n], info=info[n])
            d = datas[j]
            metrics = fit_metrics(d, cfg, req, res_j)
            attrs = {**_attrs(req, d, res_j, cfg, paths[j], file_sha256(paths[j])), "group_strategy": strategy,
                     "group_sessions": json.dumps(names), "group_session": n}
            fit_ds = outputs.fit_dataset(dss[j], split=d.split, heldout=d.heldout, spikes=d.spikes, res=res_j,
                                         attrs=attrs)
            folder = out / "sessions" / n
            folder.mkdir(parents=True)
            outputs.write_fit_dir(folder, fit_ds=fit_ds, res=res_j, metrics=metrics)
            per[n] = {k: metrics[k] for k in outputs.METRIC_KEYS}
    weights = [float(np.nansum(d.nan_spikes()[d.split == "test"][:, : d.n_enc][..., d.heldout])) for d in datas]
    fp_w = [float(np.nansum(d.nan_spikes()[d.split == "test"][:, d.n_enc :])) for d in datas]
    result = {"strategy": strategy if len(names) > 1 else "single", "method": opts.method if strategy == "continual"
              else None, "model": model, "mode": "latent", "seed": int(seed), "device": dev, "sessions": names,
              "pooled_co_bps": _pooled([per[n]["co_bps"] for n in names], weights),
              "pooled_fp_bps": _pooled([per[n]["fp_bps"] for n in names], fp_w),
              "per_session": per, "n_params": int(sum(p.numel() for p in joint.parameters())),
              "train_seconds": round(float(sum(seconds.values()) if strategy == "continual" else
                                           next(iter(seconds.values()))), 3),
              "inputs": list(datas[0].input_names), "activity_files": [str(p) for p in paths],
              "truth_files": [str(t) for t in truths],
              "continual": {"method": opts.method, "ewc_lambda": opts.ewc_lambda,
                            "replay_fraction": opts.replay_fraction} if strategy == "continual" else None}
    if forgetting_doc is not None:
        result["forgetting"] = forgetting_doc["forgetting"]
        write_text_atomic(out / "forgetting.json", json.dumps(forgetting_doc, indent=2, default=float) + "\n")
    write_text_atomic(out / "history.csv", _history_csv(rows))
    write_text_atomic(out / "metrics.json", json.dumps(result, indent=2, default=float) + "\n")
    return result


__all__ = ["STRATEGIES", "run"]
