"""Turn an ``activity`` dataset into the arrays a fit needs: splits, task inputs, masks, evaluation windows.

:func:`prepare` draws the seeded unit split (held-out units) and trial split (train/valid/test), builds the
task inputs (:func:`task_inputs`: the ``stimulus`` channels, named event pulses, the condition code when asked)
and checks that the data can be
evaluated, raising :class:`~cortexfit.core.errors.FitError` with one line naming the file otherwise.  Numpy only:
no torch here.

Examples
--------
>>> import numpy as np
>>> from cortexfit.core import convention
>>> from cortexfit.fit.config import load_config
>>> y = np.random.default_rng(0).poisson(1.0, (20, 30, 8)).astype("uint16")
>>> ds = convention.new_activity(y, time=np.arange(30) * 0.01, bin_width_s=0.01)
>>> data = prepare(ds, load_config(), seed=0)
>>> data.n_units, int(data.heldout.sum()), data.n_enc, sorted(set(data.split.tolist()))
(8, 2, 24, ['test', 'train', 'valid'])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from cortexfit.core import convention
from cortexfit.core.errors import FitError
from cortexfit.fit.config import FitConfig
from cortexfit.fit.splits import split_trials, split_units

if TYPE_CHECKING:
    from cortexfit.fit.loop import CheckpointState

MIN_TRIALS = 5


@dataclass(frozen=True, kw_only=True)
class FitData:
    """Everything a model family sees of one activity dataset (all arrays numpy, float32 unless noted).

    Attributes
    ----------
    y : (trial, time, unit) activity with invalid bins set to 0.
    valid : (trial, time, unit) 1.0 where observed.
    heldout : (unit,) bool, True for held-out units.
    split : (trial,) str, ``"train"``, ``"valid"`` or ``"test"``.
    inputs : (trial, time, input) task inputs (may have 0 channels); ``input_names`` name them.
    n_enc : bins shown to the encoder; the last ``n_time - n_enc`` bins are the forward-prediction bins.
    signal : ``"spike_counts"`` or an imaging signal (then the loss is Gaussian on z-scored traces).
    mean, std : (unit,) train-trial statistics used to scale imaging traces.
    velocity : (trial, time, channel) or None; conditions : (trial,) labels or None.
    """

    y: np.ndarray
    valid: np.ndarray
    heldout: np.ndarray
    split: np.ndarray
    inputs: np.ndarray
    input_names: list[str]
    n_enc: int
    signal: str
    bin_width_s: float
    mean: np.ndarray
    std: np.ndarray
    velocity: np.ndarray | None = None
    conditions: np.ndarray | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def spikes(self) -> bool:
        """True for spike counts (Poisson loss, exponential link)."""
        return self.signal == "spike_counts"

    @property
    def n_trials(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_time(self) -> int:
        return int(self.y.shape[1])

    @property
    def n_units(self) -> int:
        return int(self.y.shape[2])

    @property
    def n_fp(self) -> int:
        return self.n_time - self.n_enc

    @property
    def n_inputs(self) -> int:
        return int(self.inputs.shape[2])

    def trials(self, name: str) -> np.ndarray:
        """Indices of the trials in split ``name``."""
        return np.flatnonzero(self.split == name)

    def transform(self, x: np.ndarray, units: np.ndarray | None = None) -> np.ndarray:
        """The model-input scaling of activity: ``log1p`` of counts, z-scored traces otherwise.

        ``units`` is the boolean mask of the columns of ``x`` (default: all units).
        """
        if self.spikes:
            return np.log1p(np.clip(x, 0, None)).astype("float32")
        sel = slice(None) if units is None else units
        return ((x - self.mean[sel]) / self.std[sel]).astype("float32")

    def encoder_input(self) -> np.ndarray:
        """(trial, n_enc, held-in unit) transformed held-in activity, 0 in invalid bins."""
        hi = ~self.heldout
        x = self.transform(self.y[:, : self.n_enc][..., hi], hi)
        return (x * self.valid[:, : self.n_enc][..., hi]).astype("float32")

    def nan_spikes(self) -> np.ndarray:
        """Activity as float with NaN where not observed (what :mod:`cortexfit.fit.metrics` expects)."""
        return np.where(self.valid > 0, self.y, np.nan)


@dataclass(frozen=True, kw_only=True)
class FitRequest:
    """How to fit: which model, mode, seed and device, and the checkpoint of a gradient-trained fit.

    ``resume`` is the :class:`cortexfit.fit.loop.CheckpointState` to continue from (``None``: from scratch);
    ``after_epoch`` is called with each finished epoch (tests use it to interrupt a run).
    """

    model: str
    mode: str = "latent"
    seed: int = 0
    device: str = "cpu"
    checkpoint: Path | None = None
    fingerprint: str = ""
    resume: CheckpointState | None = None
    after_epoch: Callable[[int], None] | None = None


def _where(ds: xr.Dataset, source: str) -> str:
    return source or ds.encoding.get("source", "") or "activity"


def _event_pulses(ds: xr.Dataset, column: str, where: str) -> np.ndarray:
    """(trial, time) pulse of 1 in the bin holding each trial's ``column`` time (relative to the alignment)."""
    n_trial, n_time = ds.sizes["trial"], ds.sizes["time"]
    align = str(ds.attrs.get("align_event", ""))
    for name in (column, align):
        if name not in ds.coords or ds[name].dims != ("trial",) or not np.issubdtype(ds[name].dtype, np.number):
            have = sorted(str(c) for c in ds.coords if ds[c].dims == ("trial",)
                          and np.issubdtype(ds[c].dtype, np.number))
            what = "model.event_inputs" if name == column else "the alignment event"
            raise FitError(f"{where}: {what} '{name}' is not a numeric trial coordinate of the activity file "
                           f"(have: {', '.join(have) or 'none'})")
    width = float(ds.attrs["bin_width_s"])
    edges0 = float(ds["time"].values[0]) - width / 2
    rel = np.asarray(ds[column].values, dtype=float) - np.asarray(ds[align].values, dtype=float)
    idx = np.floor((rel - edges0) / width + 1e-6)
    ok = np.isfinite(idx) & (idx >= 0) & (idx < n_time)
    pulse = np.zeros((n_trial, n_time), "float32")
    pulse[np.flatnonzero(ok), idx[ok].astype(int)] = 1.0
    return pulse


def task_inputs(ds: xr.Dataset, cfg: FitConfig, source: str = "") -> tuple[np.ndarray, list[str]]:
    """Task inputs: the activity file's ``stimulus`` channels, named event pulses, optionally the condition.

    * every ``stimulus`` channel (what ``cortexfit ingest`` read from ``stimulus/presentation`` and
      ``--inputs``), divided by its largest absolute value so that each lies in [-1, 1] (pulses of +-1 and
      0/1 event pulses are unchanged), under its ``stimulus_channel`` name;
    * ``pulse:COLUMN`` for each trials column in ``model.event_inputs``: 1 in the bin holding the event;
    * ``COORD=VALUE`` one-hot codes of ``model.condition_coord``, held over the whole window, only when
      ``model.condition_inputs`` is true (and it has 2 .. ``model.max_conditions`` values).

    No other trial coordinate becomes an input (movement onset, for instance, is the brain's output).
    ``model.inputs: none`` gives 0 channels.

    Examples
    --------
    >>> import numpy as np
    >>> from cortexfit.fit.config import load_config
    >>> ds = convention.new_activity(np.zeros((2, 4, 1), "uint16"), time=[0.5, 1.5, 2.5, 3.5], bin_width_s=1.0)
    >>> ds = ds.assign_coords(start_time=("trial", [10.0, 20.0]), go_time=("trial", [12.2, 21.0]),
    ...                       move_time=("trial", [13.0, 22.0]), condition=("trial", ["a", "b"]))
    >>> task_inputs(ds, load_config())[1]
    []
    >>> x, names = task_inputs(ds, load_config({"model": {"event_inputs": ["go_time"], "condition_inputs": True}}))
    >>> names, x[0, :, 0].tolist()
    (['pulse:go_time', 'condition=a', 'condition=b'], [0.0, 0.0, 1.0, 0.0])
    """
    n_trial, n_time = ds.sizes["trial"], ds.sizes["time"]
    chans: list[np.ndarray] = []
    names: list[str] = []
    m = cfg.model
    if m.inputs == "none":
        return np.zeros((n_trial, n_time, 0), "float32"), names
    where = _where(ds, source)
    if "stimulus" in ds.data_vars:
        stim = np.asarray(ds["stimulus"].transpose("trial", "time", "stimulus_channel").values, dtype="float64")
        stim = np.nan_to_num(stim, nan=0.0, posinf=0.0, neginf=0.0)
        scale = np.abs(stim).max(axis=(0, 1))
        stim = stim / np.where(scale > 0, scale, 1.0)
        chans += [stim[..., k] for k in range(stim.shape[-1])]
        names += [str(c) for c in ds["stimulus_channel"].values]
    for col in m.event_inputs:
        chans.append(_event_pulses(ds, col, where))
        names.append(f"pulse:{col}")
    cname = m.condition_coord
    if m.condition_inputs and cname in ds.coords and ds[cname].dims == ("trial",):
        labels = np.asarray(ds[cname].values).astype(str)
        values = np.unique(labels)
        if 1 < len(values) <= m.max_conditions:
            for v in values:
                chans.append(np.repeat((labels == v).astype("float32")[:, None], n_time, axis=1))
                names.append(f"{cname}={v}")
    if not chans:
        return np.zeros((n_trial, n_time, 0), "float32"), names
    return np.stack(chans, axis=-1).astype("float32"), names


def _velocity(ds: xr.Dataset) -> np.ndarray | None:
    if "behavior" not in ds.data_vars or "behavior_kind" not in ds.coords:
        return None
    kind = np.asarray(ds["behavior_kind"].values).astype(str)
    if not (kind == "velocity").any():
        return None
    return np.asarray(ds["behavior"].values[..., kind == "velocity"], dtype="float64")


def prepare(ds: xr.Dataset, cfg: FitConfig, *, seed: int, source: str = "") -> FitData:
    """Split, scale and check an activity dataset for fitting.

    Parameters
    ----------
    ds : xarray.Dataset
        A validated ``activity`` dataset.
    cfg : FitConfig
        Options (split fractions, forward-prediction bins, task inputs).
    seed : int
        Seed of the unit and trial splits.
    source : str
        File name used in error messages.

    Raises
    ------
    FitError
        Too few trials, units or bins for the split, or held-out units without spikes in the test trials.

    Examples
    --------
    >>> import numpy as np
    >>> from cortexfit.fit.config import load_config
    >>> y = np.zeros((3, 10, 4), "uint16")
    >>> prepare(convention.new_activity(y, time=np.arange(10.0), bin_width_s=1.0), load_config(), seed=0)
    Traceback (most recent call last):
    ...
    cortexfit.core.errors.FitError: activity: too few trials for a train/valid/test split: 3 (need at least 5)
    """
    where = _where(ds, source)
    nd = convention.neuron_dim(ds)
    ds = ds.transpose("trial", "time", nd, ...)
    tr = cfg.train
    n_trial, n_time, n_unit = (ds.sizes[d] for d in ("trial", "time", nd))
    if n_trial < MIN_TRIALS:
        raise FitError(f"{where}: too few trials for a train/valid/test split: {n_trial} (need at least {MIN_TRIALS})")
    if n_unit < 4:
        raise FitError(f"{where}: too few {nd}s for a held-in/held-out split: {n_unit} (need at least 4)")
    if n_time < 4:
        raise FitError(f"{where}: too few time bins to fit dynamics: {n_time} (need at least 4)")
    valid = np.asarray(ds["valid"].values, dtype="float32")
    y = np.asarray(ds["activity"].values, dtype="float32")
    if not np.all(np.isfinite(y[valid > 0])):
        raise FitError(f"{where}: activity has NaN or infinite values in valid bins")
    y = np.where(valid > 0, np.nan_to_num(y), 0.0).astype("float32")
    cond = None
    cname = cfg.model.condition_coord
    if cname in ds.coords and ds[cname].dims == ("trial",):
        cond = np.asarray(ds[cname].values).astype(str)
    try:
        heldout = split_units(n_unit, tr.heldout_frac, seed=seed)
        fractions = (1.0 - tr.valid_frac - tr.test_frac, tr.valid_frac, tr.test_frac)
        split = split_trials(n_trial, fractions, seed=seed, stratify=cond)
    except FitError as exc:
        raise FitError(f"{where}: {exc}") from None
    n_enc = n_time - tr.n_fp_bins(n_time)
    signal = str(ds.attrs["signal"])
    test = split == "test"
    if signal == "spike_counts":
        ho_spikes = float((y[test][:, :n_enc][..., heldout]).sum())
        if ho_spikes <= 0:
            raise FitError(
                f"{where}: the {int(heldout.sum())} held-out {nd}s have no spikes in the {int(test.sum())} test "
                f"trials, so co-bps is undefined (try another --seed or a larger train.heldout_frac)"
            )
    train = split == "train"
    w = valid[train]
    cnt = np.maximum(w.sum(axis=(0, 1)), 1.0)
    mean = (y[train] * w).sum(axis=(0, 1)) / cnt
    var = (((y[train] - mean) ** 2) * w).sum(axis=(0, 1)) / cnt
    std = np.sqrt(np.maximum(var, 1e-6))
    velocity = _velocity(ds)
    if velocity is not None:
        from cortexfit.fit.metrics import velocity_lag_bins

        lag = velocity_lag_bins(tr.vel_lag_ms, float(ds.attrs["bin_width_s"]))
        if not 0 <= lag < n_enc // 2:
            raise FitError(f"{where}: train.vel_lag_ms = {tr.vel_lag_ms:g} ms is {lag} bins, which does not fit the "
                           f"{n_enc}-bin evaluation window (it must be >= 0 and under half of it: set "
                           "train.vel_lag_ms in the fit config)")
    inputs, names = task_inputs(ds, cfg, where)
    return FitData(
        y=y,
        valid=valid,
        heldout=heldout,
        split=split,
        inputs=inputs,
        input_names=names,
        n_enc=int(n_enc),
        signal=signal,
        bin_width_s=float(ds.attrs["bin_width_s"]),
        mean=mean.astype("float32"),
        std=std.astype("float32"),
        velocity=velocity,
        conditions=cond,
        source=where,
    )
