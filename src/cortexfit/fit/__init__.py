"""``cortexfit fit``: fit one model by name to an activity dataset and write a fit directory.

Models (:data:`FIT_MODELS`): the gradient-trained families ``rate``, ``vanilla``, ``lstm``
(:mod:`cortexfit.fit.latent`, :mod:`cortexfit.fit.forecast`), the echo-state family ``esn`` and the baselines
``smoothing`` and ``fa`` (:mod:`cortexfit.fit.esn`).  All share the seeded unit/trial split
(:func:`cortexfit.fit.data.prepare`), the outputs and the metrics:

* ``co_bps`` -- held-out units on test trials over the encoder window, given only held-in activity;
* ``fp_bps`` -- all units on test trials over the last ``fp_bins`` bins, which no model ever sees;
* ``vel_r2`` (``behavior`` with velocity channels), ``psth_r2`` (held-out units, test trials, when a
  condition coordinate exists), ``train_seconds``, ``n_params``, ``epochs``, ``device``, ``model``,
  ``mode``, ``seed``.

The fit directory (``docs/interfaces.md``): ``fit.nc`` (kind ``fit``), ``model.pt``, ``history.csv``,
``horizon.json`` (forecast mode), ``checkpoint.pt`` (gradient-trained families) and ``metrics.json``,
written last.  Every file is written atomically; on an error the files of this run are removed (the
checkpoint survives a kill so that ``--resume`` continues from the last finished epoch).

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
import csv
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cortexfit.fit import metrics
from cortexfit.core import convention
from cortexfit.core.errors import ConfigError, CortexfitError, FitError
from cortexfit.core.fileio import file_sha256, write_text_atomic
from cortexfit.fit.config import FitConfig, load_config
from cortexfit.fit.data import FitData, FitResult, prepare

log = logging.getLogger("cortexfit.fit")

GRADIENT_FAMILIES = ("lstm", "rate", "vanilla")
FIT_MODELS = ("esn", "fa", "lstm", "rate", "smoothing", "vanilla")
MODES = ("latent", "forecast")
OUTPUTS = ("fit.nc", "model.pt", "history.csv", "horizon.json", "metrics.json")
METRIC_KEYS = ("co_bps", "fp_bps", "vel_r2", "psth_r2", "train_seconds", "n_params", "epochs", "device", "model",
               "mode", "seed")


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; ``"cuda"`` without CUDA raises FitError.

    Examples
    --------
    >>> resolve_device("cpu")
    'cpu'
    """
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}; valid devices: auto, cpu, cuda")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise FitError("--device cuda was requested but CUDA is not available to torch on this machine "
                       f"(torch {torch.__version__}); use --device cpu or auto")
    return device






def _safe(fn: Callable[[], float], name: str) -> float | None:
    try:
        v = float(fn())
    except FitError as exc:
        log.warning("%s not computed: %s", name, exc)
        return None
    return v if np.isfinite(v) else None


def compute_metrics(data: FitData, rates: np.ndarray, *, forward: bool = True, vel_lag_ms: float = 100.0,
                    psth_sigma_ms: float = 70.0) -> dict[str, float | None]:
    """co_bps, fp_bps (when ``forward``), vel_r2 and psth_r2 of predicted ``rates`` (null where not applicable).

    co_bps: held-out units, test trials, encoder window; fp_bps: all units, test trials, forward bins;
    psth_r2: held-out units, test trials (needs >= 2 conditions; spikes smoothed with ``psth_sigma_ms``);
    vel_r2: ridge decoder from all units' rates to velocity ``vel_lag_ms`` later (0 if that is over half
    the window), fitted on train trials and scored on test trials.

    Examples
    --------
    >>> from cortexfit.fit.config import load_config
    >>> y = np.random.default_rng(0).poisson(0.5, (12, 20, 6)).astype("uint16")
    >>> data = prepare(convention.new_activity(y, time=np.arange(20) * 0.01, bin_width_s=0.01), load_config(), seed=0)
    >>> m = compute_metrics(data, np.full(y.shape, 0.5))
    >>> abs(m["co_bps"]) < 0.2, m["vel_r2"]
    (True, None)
    """
    out: dict[str, float | None] = {"co_bps": None, "fp_bps": None, "vel_r2": None, "psth_r2": None}
    te, tr = data.split == "test", data.split == "train"
    spikes = data.nan_spikes()
    if data.spikes:
        ho = data.heldout
        out["co_bps"] = metrics.co_bps(rates[te][:, : data.n_enc][..., ho], spikes[te][:, : data.n_enc][..., ho])
        if data.n_fp > 0 and forward:
            out["fp_bps"] = _safe(lambda: metrics.fp_bps(rates[te][:, data.n_enc :], spikes[te][:, data.n_enc :]),
                                  "fp_bps")
        if data.conditions is not None and len(np.unique(data.conditions)) > 1:
            sigma = psth_sigma_ms / 1000.0 / data.bin_width_s
            out["psth_r2"] = _safe(lambda: metrics.psth_r2(rates[..., ho], spikes[..., ho], data.conditions,
                                                           sigma_bins=sigma, eval_trials=te), "psth_r2")
    if data.velocity is not None:
        lag = round(vel_lag_ms / 1000.0 / data.bin_width_s)
        lag = lag if lag < data.n_time // 2 else 0
        out["vel_r2"] = _safe(lambda: metrics.velocity_r2(rates, data.velocity, train=tr, test=te, lag_bins=lag),
                              "vel_r2")
    return out


def _fit_dataset(ds: xr.Dataset, data: FitData, res: FitResult, attrs: Mapping[str, Any]) -> xr.Dataset:
    nd = convention.neuron_dim(ds)
    coords: dict[str, Any] = {"trial": ds["trial"].values, "time": ds["time"], nd: ds[nd].values}
    for name, c in ds.coords.items():
        if name not in coords and c.dims in (("trial",), (nd,)):
            coords[name] = c
    coords["split"] = ("trial", data.split.astype(str))
    coords["heldout"] = (nd, data.heldout.astype("int8"))
    units = "count/bin" if data.spikes else ds["activity"].attrs.get("units", "a.u.")
    out = xr.Dataset(coords=coords)
    out["rates"] = (("trial", "time", nd), res.rates.astype("float32"), {"units": units})
    if res.states is not None:
        out["states"] = (("trial", "time", "state"), res.states.astype("float32"))
    if res.factors is not None:
        out["factors"] = (("trial", "time", "factor"), res.factors.astype("float32"))
    for name, (dims, arr) in res.variables.items():
        if name in dims:
            out = out.assign_coords({name: (dims, arr)})
        else:
            out[name] = (dims, arr)
    out.attrs.update(convention.base_attrs("fit"))
    out.attrs.update({k: v for k, v in attrs.items()})
    return out


def _history_csv(history: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", "train_loss", "valid_loss", "seconds"])
    for h in history:
        w.writerow([int(h["epoch"]), repr(float(h["train_loss"])), repr(float(h["valid_loss"])),
                    f"{float(h['seconds']):.3f}"])
    return buf.getvalue()


@contextlib.contextmanager
def _deterministic(device: str):
    import torch

    prev = torch.are_deterministic_algorithms_enabled()
    if device == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev)


def _fit(data: FitData, cfg: FitConfig, *, model: str, mode: str, seed: int, device: str, ckpt: Path,
         fingerprint: str, resume: bool, after_epoch: Callable[[int], None] | None) -> FitResult:
    from cortexfit.fit import esn
    from cortexfit.fit import loop

    if model in ("smoothing", "fa"):
        return esn.fit_baseline(data, cfg, name=model, seed=seed)
    if model == "esn":
        return esn.fit_esn(data, cfg, mode=mode, seed=seed)
    state = None
    if resume and ckpt.is_file():
        state = loop.load_checkpoint(ckpt, fingerprint)
        log.info("resuming %s from epoch %d (%s)", model, int(state["epoch"]), ckpt)
    elif resume:
        log.info("no checkpoint in %s: starting from scratch", ckpt.parent)
    if mode == "latent":
        from cortexfit.fit.latent import fit_latent as fit_fn
    else:
        from cortexfit.fit.forecast import fit_forecast as fit_fn
    return fit_fn(data, cfg, family=model, device=device, seed=seed, checkpoint=ckpt, fingerprint=fingerprint,
                  resume=state, after_epoch=after_epoch)


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
        Fit directory to write (created; earlier outputs in it are replaced).
    model : str
        One of :data:`FIT_MODELS`.
    mode : {"latent", "forecast"}
        Latent-variable model (encoder -> generator -> readout) or next-bin forecasting.
    config : FitConfig, mapping, path or preset name, optional
        Options (:func:`cortexfit.fit.config.load_config`); ``"smoke"`` trains in seconds.
    seed : int
        Seed of the splits, initialisation and training.
    device : {"auto", "cpu", "cuda"}
        Where to train.
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
    if model not in FIT_MODELS:
        raise ConfigError(f"unknown model {model!r}; valid models: {', '.join(FIT_MODELS)}")
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    if mode != "latent" and model in ("smoothing", "fa"):
        raise ConfigError(f"baseline {model!r} has no forecast mode; use --mode latent")
    cfg = load_config(config)
    dev = resolve_device(device)
    src = Path(activity)
    ds = convention.read_dataset(src, "activity")
    data = prepare(ds, cfg, seed=seed, source=str(src))
    out = Path(out_dir)
    sha = file_sha256(src)
    fingerprint = hashlib.sha256(json.dumps([sha, model, mode, int(seed), cfg.to_json()]).encode()).hexdigest()
    created_dir = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    for name in OUTPUTS + (() if resume else ("checkpoint.pt",)):
        (out / name).unlink(missing_ok=True)  # no stale outputs beside a new run's files
    written: list[Path] = []
    try:
        import torch

        with _deterministic(dev):
            res = _fit(data, cfg, model=model, mode=mode, seed=seed, device=dev, ckpt=ckpt,
                       fingerprint=fingerprint, resume=resume, after_epoch=after_epoch)
        scores = compute_metrics(data, res.rates, forward=res.forward, vel_lag_ms=cfg.train.vel_lag_ms,
                                 psth_sigma_ms=cfg.train.psth_sigma_ms)
        dev_used = dev if model in GRADIENT_FAMILIES else "cpu"  # closed-form fits run on the CPU
        result = {**scores, "train_seconds": round(float(res.seconds), 3), "n_params": int(res.n_params),
                  "epochs": res.epochs, "device": dev_used, "model": model, "mode": mode, "seed": int(seed)}
        attrs = {"model": model, "mode": mode, "seed": int(seed), "device": dev_used,
                 "activity_file": str(src.resolve()), "activity_sha256": sha, "config": cfg.to_json(),
                 "bin_width_s": data.bin_width_s,
                 "signal": data.signal, "n_enc_bins": int(data.n_enc), "input_names": json.dumps(data.input_names),
                 "torch_version": str(torch.__version__), "fit_info": json.dumps(res.info, default=float)}
        fit_ds = _fit_dataset(ds, data, res, attrs)
        for name, text in [("history.csv", _history_csv(res.history))] + [
            (n, json.dumps(obj, indent=2)) for n, obj in res.json_files.items()
        ]:
            written.append(out / name)
            write_text_atomic(out / name, text)
        written.append(out / "fit.nc")
        convention.write_dataset(fit_ds, out / "fit.nc", "fit")
        written.append(out / "model.pt")
        res.save_model(out / "model.pt")
        written.append(out / "metrics.json")
        write_text_atomic(out / "metrics.json", json.dumps({k: result[k] for k in METRIC_KEYS}, indent=2) + "\n")
    except BaseException as exc:
        for p in written:
            p.unlink(missing_ok=True)
        if isinstance(exc, CortexfitError):
            ckpt.unlink(missing_ok=True)
            if created_dir and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        raise
    log.info("%s (%s): co_bps=%s fp_bps=%s in %.1f s -> %s", model, mode, result["co_bps"], result["fp_bps"],
             result["train_seconds"], out)
    return result
