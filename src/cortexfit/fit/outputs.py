"""The one writer of a fit folder, and :class:`FitResult`, what every fit function returns to it.

A fit folder (``docs/interfaces.md``) holds ``fit.nc`` (kind ``fit``), ``model.pt``, ``history.csv``,
``horizon.json`` (forecast mode), ``checkpoint.pt`` (gradient-trained families, kept for ``--resume``) and
``metrics.json``, written last so its presence means the fit is complete.  Every file is written atomically;
if anything fails, the files of this run are removed again.

Examples
--------
>>> history_csv([{"epoch": 1, "train_loss": 0.5, "valid_loss": 0.25, "seconds": 1.0}]).splitlines()
['epoch,train_loss,valid_loss,seconds', '1,0.5,0.25,1.000']
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cortexfit.core import convention
from cortexfit.core.fileio import write_text_atomic

#: Files of a fit folder written by :func:`write_fit_dir` (``checkpoint.pt`` is the training loop's).
OUTPUTS = ("fit.nc", "model.pt", "history.csv", "horizon.json", "metrics.json")
#: Keys of ``metrics.json``, in order.
METRIC_KEYS = ("co_bps", "fp_bps", "vel_r2", "psth_r2", "beats_null", "beats_smoothing", "smoothing_co_bps",
               "train_seconds", "n_params", "epochs", "device", "model", "mode", "seed", "inputs")


@dataclass(kw_only=True)
class FitResult:
    """What a family's fit returns to :func:`cortexfit.fit.run` (numpy arrays over all trials).

    ``rates`` (trial, time, unit) expected counts per bin (or predicted traces); ``states`` (trial, time,
    state) and ``factors`` (trial, time, factor) or None; ``variables`` extra ``fit.nc`` variables as
    ``{name: (dims, array)}``; ``history`` per-epoch rows; ``save_model(path)`` writes ``model.pt``;
    ``json_files`` extra JSON outputs ``{file name: object}``; ``forward`` False for models that cannot run
    into the forward-prediction bins (baselines: ``fp_bps`` is null).  ``inputs`` (trial, time, input) is
    what the generator was fed, every channel of its input (task inputs, inferred controller inputs, fed-back
    activity), named by ``input_names`` and aligned as ``inputs_alignment`` says; None for models without one.
    """

    rates: np.ndarray
    states: np.ndarray | None
    factors: np.ndarray | None
    n_params: int
    epochs: int | None
    seconds: float
    save_model: Callable[[Path], Any]
    history: list[dict[str, float]] = field(default_factory=list)
    variables: dict[str, tuple[tuple[str, ...], np.ndarray]] = field(default_factory=dict)
    json_files: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    forward: bool = True
    inputs: np.ndarray | None = None
    input_names: list[str] = field(default_factory=list)
    inputs_alignment: str = ""


def fit_dataset(ds: xr.Dataset, *, split: np.ndarray, heldout: np.ndarray, spikes: bool, res: FitResult,
                attrs: Mapping[str, Any]) -> xr.Dataset:
    """The ``fit`` dataset: predictions on the activity's coords, the split and held-out masks, the generator's
    ``inputs`` (trial, time, input; coord ``input`` = their names) when the model has one, provenance."""
    nd = convention.neuron_dim(ds)
    coords: dict[str, Any] = {"trial": ds["trial"].values, "time": ds["time"], nd: ds[nd].values}
    for name, c in ds.coords.items():
        if name not in coords and c.dims in (("trial",), (nd,)):
            coords[str(name)] = c
    coords["split"] = ("trial", split.astype(str))
    coords["heldout"] = (nd, heldout.astype("int8"))
    units = "count/bin" if spikes else ds["activity"].attrs.get("units", "a.u.")
    out = xr.Dataset(coords=coords)
    out["rates"] = (("trial", "time", nd), res.rates.astype("float32"), {"units": units})
    if res.states is not None:
        out["states"] = (("trial", "time", "state"), res.states.astype("float32"))
    if res.factors is not None:
        out["factors"] = (("trial", "time", "factor"), res.factors.astype("float32"))
    if res.inputs is not None:
        if len(res.input_names) != res.inputs.shape[-1]:
            raise ValueError(f"{res.inputs.shape[-1]} generator input channels but {len(res.input_names)} names")
        out["inputs"] = (("trial", "time", "input"), res.inputs.astype("float32"),
                         {"long_name": "what the generator was fed", "alignment": res.inputs_alignment})
        out = out.assign_coords(input=("input", [str(n) for n in res.input_names]))
    for name, (dims, arr) in res.variables.items():
        if name in dims:
            out = out.assign_coords({name: (dims, arr)})
        else:
            out[name] = (dims, arr)
    out.attrs.update(convention.base_attrs("fit"))
    out.attrs.update(dict(attrs))
    return out


def history_csv(history: list[dict[str, float]]) -> str:
    """``history.csv`` text: one row per epoch (losses at full precision, seconds to the millisecond)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", "train_loss", "valid_loss", "seconds"])
    for h in history:
        w.writerow([int(h["epoch"]), repr(float(h["train_loss"])), repr(float(h["valid_loss"])),
                    f"{float(h['seconds']):.3f}"])
    return buf.getvalue()


def clear_outputs(out: Path, *, keep_checkpoint: bool) -> None:
    """Remove an earlier run's outputs from ``out`` (and its checkpoint unless ``keep_checkpoint``)."""
    for name in OUTPUTS + (() if keep_checkpoint else ("checkpoint.pt",)):
        (out / name).unlink(missing_ok=True)


def write_fit_dir(out: Path, *, fit_ds: xr.Dataset, res: FitResult, metrics: Mapping[str, Any]) -> list[Path]:
    """Write every output of one fit into ``out``, ``metrics.json`` last; on failure remove what was written.

    Returns the written paths.
    """
    written: list[Path] = []
    try:
        texts = [("history.csv", history_csv(res.history))]
        texts += [(name, json.dumps(obj, indent=2)) for name, obj in res.json_files.items()]
        for name, text in texts:
            written.append(out / name)
            write_text_atomic(out / name, text)
        written.append(out / "fit.nc")
        convention.write_dataset(fit_ds, out / "fit.nc", "fit")
        written.append(out / "model.pt")
        res.save_model(out / "model.pt")
        written.append(out / "metrics.json")
        write_text_atomic(out / "metrics.json", json.dumps({k: metrics[k] for k in METRIC_KEYS}, indent=2) + "\n")
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return written
