"""``cortexfit fit``: fit one model by name to an activity dataset and write a fit folder.

:func:`run` validates the request, prepares the data (:func:`cortexfit.fit.data.prepare`: the seeded unit and
trial splits, task inputs), dispatches to the model's fit function from the registry
(:mod:`cortexfit.fit.registry`: gradient-trained ``rate``, ``vanilla``, ``lstm`` in :mod:`~cortexfit.fit.latent`
or :mod:`~cortexfit.fit.forecast` mode, the echo-state ``esn`` in :mod:`~cortexfit.fit.esn`, the baselines
``smoothing`` and ``fa`` in :mod:`~cortexfit.fit.baselines`), scores the predictions
(:func:`cortexfit.fit.metrics.compute_metrics`) and writes the folder (:func:`cortexfit.fit.outputs.write_fit_dir`):

* ``co_bps`` -- held-out units on test trials over the encoder window, given only held-in activity;
* ``fp_bps`` -- all units on test trials over the last ``fp_bins`` bins, which no model ever sees;
* ``vel_r2`` (``behavior`` with velocity channels), ``psth_r2`` (all units, test trials, evaluation window,
  when a condition coordinate exists), ``train_seconds``, ``n_params``, ``epochs``, ``device``, ``model``,
  ``mode``, ``seed`` and ``inputs``, the names of the task inputs every family was fed
  (:func:`cortexfit.fit.data.task_inputs`), so scores with and without privileged inputs are never confused;
* ``beats_null`` (``co_bps > 0``), ``beats_smoothing`` and ``smoothing_co_bps`` (:func:`null_flags`): when a
  model does not beat these, its fixed points and geometry describe a model that has not learned the data.

On an error the files of this run are removed (the checkpoint survives a kill, so that ``--resume`` continues
from the last finished epoch).

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> from cortexfit.core import convention
>>> y = np.random.default_rng(0).poisson(0.5, (12, 20, 6)).astype("uint16")
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = convention.write_dataset(convention.new_activity(y, time=np.arange(20) * 0.01, bin_width_s=0.01), d / "a.nc")
>>> m = run(d / "a.nc", d / "fit", model="smoothing", config="smoke")
>>> sorted(p.name for p in (d / "fit").iterdir())
['fit.nc', 'history.csv', 'metrics.json', 'model.pt']
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortexfit.core.errors import ConfigError, CortexfitError

if TYPE_CHECKING:
    from cortexfit.fit.config import FitConfig
    from cortexfit.fit.data import FitData, FitRequest
    from cortexfit.fit.outputs import FitResult

log = logging.getLogger("cortexfit.fit")


@contextlib.contextmanager
def _deterministic(device: str) -> Iterator[None]:
    import torch

    prev = torch.are_deterministic_algorithms_enabled()
    if device == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev)


def fingerprint(activity_sha256: str, *, model: str, mode: str, seed: int, cfg: FitConfig) -> str:
    """What a checkpoint must match to be resumed: the data, model, mode, seed and options."""
    return hashlib.sha256(json.dumps([activity_sha256, model, mode, int(seed), cfg.to_json()]).encode()).hexdigest()


def _request(model: str, mode: str, seed: int, device: str, out: Path, fp: str, resume: bool,
             after_epoch: Callable[[int], None] | None) -> FitRequest:
    """The :class:`FitRequest` of this run, with the checkpoint to continue from when resuming."""
    from cortexfit.fit import registry
    from cortexfit.fit.data import FitRequest

    ckpt = out / "checkpoint.pt"
    state = None
    if registry.get(model).gradient_trained and resume:
        if ckpt.is_file():
            from cortexfit.fit.loop import load_checkpoint

            state = load_checkpoint(ckpt, fp)
            log.info("resuming %s from epoch %d (%s)", model, state.epoch, ckpt)
        else:
            log.info("no checkpoint in %s: starting from scratch", out)
    return FitRequest(model=model, mode=mode, seed=int(seed), device=device, checkpoint=ckpt, fingerprint=fp,
                      resume=state, after_epoch=after_epoch)


def _attrs(req: FitRequest, data: FitData, res: FitResult, cfg: FitConfig, src: Path, sha: str) -> dict[str, Any]:
    import torch

    return {"model": req.model, "mode": req.mode, "seed": req.seed, "device": req.device,
            "activity_file": str(src.resolve()), "activity_sha256": sha, "config": cfg.to_json(),
            "bin_width_s": data.bin_width_s, "signal": data.signal, "n_enc_bins": int(data.n_enc),
            "input_names": json.dumps(data.input_names), "torch_version": str(torch.__version__),
            "fit_info": json.dumps(res.info, default=float)}


def null_flags(data: FitData, cfg: FitConfig, req: FitRequest, co_bps: float | None) -> dict[str, Any]:
    """Does the fit beat the mean-rate null (``co_bps > 0``) and the smoothing baseline on the same split?

    The smoothing baseline is fitted here on the same data, split and options (seconds), so every
    ``metrics.json`` says on its own whether the model predicts held-out units better than smoothing does.
    Spike counts only (else all null).
    """
    from cortexfit.fit.metrics import co_bps as score

    flags: dict[str, Any] = {"beats_null": None, "beats_smoothing": None, "smoothing_co_bps": None}
    if co_bps is None or not data.spikes:
        return flags
    flags["beats_null"] = bool(co_bps > 0)
    if req.model == "smoothing":
        flags["smoothing_co_bps"] = co_bps
        return flags
    from cortexfit.fit.baselines import fit_baseline
    from cortexfit.fit.data import FitRequest

    ref = fit_baseline(data, cfg, FitRequest(model="smoothing", seed=req.seed))
    te, ho = data.split == "test", data.heldout
    smooth_co = score(ref.rates[te][:, : data.n_enc][..., ho], data.nan_spikes()[te][:, : data.n_enc][..., ho])
    flags.update(beats_smoothing=bool(co_bps > smooth_co), smoothing_co_bps=float(smooth_co))
    return flags


def fit_metrics(data: FitData, cfg: FitConfig, req: FitRequest, res: FitResult) -> dict[str, Any]:
    """The contents of ``metrics.json`` (module docstring) for predictions ``res`` of the fit ``req``."""
    from cortexfit.fit.metrics import compute_metrics

    scores = compute_metrics(data, res.rates, forward=res.forward, vel_lag_ms=cfg.train.vel_lag_ms,
                             psth_sigma_ms=cfg.train.psth_sigma_ms)
    return {**scores, **null_flags(data, cfg, req, scores["co_bps"]), "train_seconds": round(float(res.seconds), 3),
            "n_params": int(res.n_params), "epochs": res.epochs, "device": req.device, "model": req.model,
            "mode": req.mode, "seed": int(req.seed), "inputs": list(data.input_names)}


def _cleanup(out: Path, created_dir: bool) -> None:
    """After a user error: no checkpoint, and no folder if this run created it and left it empty."""
    (out / "checkpoint.pt").unlink(missing_ok=True)
    if created_dir and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def run(activity: str | os.PathLike, out_dir: str | os.PathLike, *, model: str, mode: str = "latent",
        config: FitConfig | Mapping[str, Any] | str | os.PathLike | None = None, seed: int = 0,
        device: str = "auto", resume: bool = False,
        after_epoch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Fit ``model`` to the activity file and write ``out_dir`` (see the module docstring).

    Parameters
    ----------
    activity : path
        ``activity`` netCDF file (``cortexfit ingest`` output).
    out_dir : path
        Fit folder to write (created; earlier outputs in it are replaced).
    model : str
        A name from :func:`cortexfit.fit.registry.names`.
    mode : {"latent", "forecast"}
        Latent-variable model (encoder -> generator -> readout) or next-bin forecasting.
    config : FitConfig, mapping, path or preset name, optional
        Options (:func:`cortexfit.fit.config.load_config`); ``"smoke"`` trains in seconds.
    seed : int
        Seed of the splits, initialisation and training.
    device : {"auto", "cpu", "cuda"}
        Where to train (closed-form fits always run on the CPU).
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` when it exists (same data, model, config and seed).
    after_epoch : callable, optional
        Called after each finished epoch (and its checkpoint) with the epoch number (tests).

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.

    Raises
    ------
    CortexfitError
        ConfigError (unknown model, mode or config key), SchemaError (bad activity file) or FitError (too few
        trials/units, silent held-out units, no CUDA, NaN loss), each as one line.
    """
    from cortexfit.core import convention
    from cortexfit.core.fileio import file_sha256
    from cortexfit.core.runtime import resolve_device
    from cortexfit.fit import outputs, registry
    from cortexfit.fit.config import load_config
    from cortexfit.fit.data import prepare
    entry = registry.get(model)
    if mode not in registry.MODES:
        raise ConfigError(f"unknown mode {mode!r}; valid modes: {', '.join(registry.MODES)}")
    fit_fn = entry.fitter(mode)
    cfg = load_config(config)
    dev = resolve_device(device) if entry.gradient_trained else "cpu"  # closed-form fits run on the CPU
    src = Path(activity)
    ds = convention.read_dataset(src, "activity")
    data = prepare(ds, cfg, seed=seed, source=str(src))
    out = Path(out_dir)
    sha = file_sha256(src)
    fp = fingerprint(sha, model=model, mode=mode, seed=seed, cfg=cfg)
    created_dir = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    outputs.clear_outputs(out, keep_checkpoint=resume)
    try:
        req = _request(model, mode, seed, dev, out, fp, resume, after_epoch)
        with _deterministic(dev):
            res = fit_fn(data, cfg, req)
        result = fit_metrics(data, cfg, req, res)
        fit_ds = outputs.fit_dataset(ds, split=data.split, heldout=data.heldout, spikes=data.spikes, res=res,
                                     attrs=_attrs(req, data, res, cfg, src, sha))
        outputs.write_fit_dir(out, fit_ds=fit_ds, res=res, metrics=result)
    except CortexfitError:
        _cleanup(out, created_dir)
        raise
    log.info("%s (%s): co_bps=%s fp_bps=%s in %.1f s -> %s", model, mode, result["co_bps"], result["fp_bps"],
             result["train_seconds"], out)
    return result
