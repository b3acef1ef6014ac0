"""The ingest stage: an NWB session -> a validated ``activity`` dataset (trial x time x unit|roi).

``cortexfit ingest IN.nwb OUT.nc`` calls :func:`run`; :func:`ingest_nwb` returns the dataset.  The NWB file
is read by :mod:`cortexfit.ingest.nwb`, units get their areas from :mod:`cortexfit.ingest.areas`, and
:mod:`cortexfit.ingest.binning` counts spikes and averages traces per bin.  Importing this package does not
import torch.

Spike counts are exact: for every unit the sorted spike times are searched (:func:`numpy.searchsorted`)
against all bin edges of all trials at once, with edges ``align + (window_start + k * bin)`` for integer
``k``, and bins are left-closed ``[t, t + bin)``.

A bin is ``valid`` where the unit was observed, whether or not it lies inside the trial's
``[start_time, stop_time)`` (rule ``valid_rule="observed"``, the default): its centre lies inside one of
the unit's ``obs_intervals`` or, for units without them, the bin overlaps the recorded span of the session
(earliest to latest of all spike times and of the trials table's start/stop times).  Spikes in window bins
padded beyond the trial are counted, as nlb_tools takes them from the continuous recording.  With
``clip_to_trial=True`` a bin must also have its centre inside the trial (``valid_rule="observed_and_in_trial"``).
Invalid bins hold 0 and must be masked.  Behaviour, task inputs (``stimulus``: the series of
``stimulus/presentation`` plus what ``inputs`` names, see :mod:`cortexfit.ingest.signals`) and imaging traces
are averaged over the samples inside each bin (linear interpolation at the bin centre where a bin holds no
sample, NaN outside the series); an imaging bin is valid where its trace is finite (and, when clipping,
inside the trial).

Examples
--------
>>> ds = ingest_nwb("session.nwb", align="move_onset_time", window_ms=(-250, 450))   # doctest: +SKIP
>>> ds.activity.sizes                                                               # doctest: +SKIP
Frozen({'trial': 100, 'time': 140, 'unit': 107})
"""

from __future__ import annotations

import logging
import math
import time as _time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
import xarray as xr

from cortexfit.core import convention, defaults
from cortexfit.core.errors import ConfigError, IngestError
from cortexfit.core.fileio import file_sha256
from cortexfit.ingest.areas import parse_areas, unit_areas
from cortexfit.ingest.binning import bin_spikes, inside, resample
from cortexfit.ingest.nwb import NWBReader, Series, Units
from cortexfit.ingest.signals import behavior_array, parse_inputs, resolve_inputs, stimulus_array, velocity_name

__all__ = ["IngestConfig", "ingest_nwb", "run", "velocity_name"]

log = logging.getLogger("cortexfit.ingest")
#: ``valid_rule`` attr of the dataset: which bins are ``valid`` (see the module docstring).
VALID_RULES = {False: "observed", True: "observed_and_in_trial"}
_RESERVED = {"trial", "time", "unit", "roi", "activity", "valid", "behavior", "behavior_channel", "behavior_kind",
             "stimulus", "stimulus_channel", "stimulus_kind"}


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """Options of the ingest stage, validated once (see :func:`ingest_nwb` for their meaning).

    >>> IngestConfig(bin_ms=10, window_ms=(-100, 300)).window_ms
    (-100.0, 300.0)
    """

    bin_ms: float = defaults.BIN_MS
    align: str = defaults.ALIGN
    window_ms: tuple[float, float] | None = None
    trials_table: str = defaults.TRIALS_TABLE
    areas: str = defaults.AREAS
    session_window_ms: float = defaults.SESSION_WINDOW_MS
    clip_to_trial: bool = False
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", parse_inputs(self.inputs))
        if not (math.isfinite(self.bin_ms) and self.bin_ms > 0):
            raise ConfigError(f"--bin-ms must be a positive number, got {self.bin_ms}")
        if self.window_ms is not None:
            w = tuple(float(x) for x in self.window_ms)
            if len(w) != 2 or not all(map(math.isfinite, w)) or w[1] - w[0] < self.bin_ms:
                raise ConfigError(f"--window-ms START STOP must be finite with STOP - START >= one bin, got {w}")
            object.__setattr__(self, "window_ms", w)
        if not (math.isfinite(self.session_window_ms) and self.session_window_ms >= self.bin_ms):
            raise ConfigError(f"--session-window-ms must be at least one bin, got {self.session_window_ms}")
        if not self.align or not self.trials_table:
            raise ConfigError("--align and --trials-table must be non-empty")
        if not isinstance(self.clip_to_trial, (bool, np.bool_)):
            raise ConfigError(f"clip_to_trial must be True or False, got {self.clip_to_trial!r}")
        object.__setattr__(self, "clip_to_trial", bool(self.clip_to_trial))
        parse_areas(self.areas)


@dataclass
class Trials:
    """Trial rows after alignment: ids, start/stop/align times (s) and per-trial coordinates; ``extent`` is
    the earliest start and latest stop (s) of all rows of the table, dropped ones included."""

    ids: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    align: np.ndarray
    coords: dict[str, np.ndarray]
    extent: tuple[float, float]


def _trials(r: NWBReader, cfg: IngestConfig, extent: tuple[float, float]) -> Trials:
    tables = r.interval_tables()
    windows = cfg.trials_table.lower() == "none" or (cfg.trials_table == "trials" and not tables)
    if windows:
        if cfg.align != "start_time":
            raise IngestError(f"{r.path}: no trials table, session windows align to start_time, not '{cfg.align}'")
        w = cfg.session_window_ms / 1000.0
        n = int(math.floor((extent[1] - extent[0]) / w + 1e-9))
        if n < 1:
            raise IngestError(f"{r.path}: session spans {extent[1] - extent[0]:.3f} s, shorter than one "
                              f"{cfg.session_window_ms:g} ms window")
        start = extent[0] + np.arange(n) * w
        log.info("%s: no trials table; cut the session into %d windows of %g ms", r.path, n, cfg.session_window_ms)
        stop = start + w
        return Trials(np.arange(n), start, stop, start, {"start_time": start, "stop_time": stop},
                      (float(start[0]), float(stop[-1])))
    t = r.table(cfg.trials_table)
    cols = t.columns
    for need in ("start_time", "stop_time"):
        if need not in cols or cols[need].dtype.kind != "f":
            raise IngestError(f"{r.path}: intervals table '{t.name}' has no numeric '{need}' column")
    start, stop = cols["start_time"].astype(float), cols["stop_time"].astype(float)
    bad = t.ids[~(np.isfinite(start) & np.isfinite(stop))]
    if len(bad):
        raise IngestError(f"{r.path}: trial(s) {', '.join(map(str, bad[:20]))} have no start_time/stop_time (NaN)")
    bad = t.ids[stop < start]
    if len(bad):
        raise IngestError(f"{r.path}: trial(s) {', '.join(map(str, bad[:20]))} have stop_time < start_time")
    if cfg.align not in cols or cols[cfg.align].dtype.kind not in "iuf":
        avail = [c for c, v in cols.items() if v.dtype.kind in "iuf"]
        raise IngestError(f"{r.path}: no alignment column '{cfg.align}' in '{t.name}' "
                          f"(available: {', '.join(avail)})")
    align = cols[cfg.align].astype(float)
    keep = np.isfinite(align)
    if not keep.all():
        log.warning("%s: dropped %d of %d trials whose '%s' is missing (NaN)", r.path, int((~keep).sum()),
                    len(keep), cfg.align)
    if not keep.any():
        raise IngestError(f"{r.path}: every trial's '{cfg.align}' is NaN")
    extent = (float(start.min()), float(stop.max())) if len(start) else (math.inf, -math.inf)
    return Trials(t.ids[keep], start[keep], stop[keep], align[keep], {k: v[keep] for k, v in cols.items()}, extent)


def _window(tr: Trials, cfg: IngestConfig, path: Path) -> tuple[float, float, int]:
    """Window start (s), bin width (s) and number of bins."""
    bw = cfg.bin_ms / 1000.0
    if cfg.window_ms is not None:
        w0, w1 = cfg.window_ms
    else:
        w0, w1 = 0.0, (tr.stop - tr.align).min() * 1000.0
    n = int(math.floor((w1 - w0) / cfg.bin_ms + 1e-6))
    if n < 1:
        raise IngestError(f"{path}: the shortest trial ends {w1:g} ms after '{cfg.align}', less than one bin; "
                          "pass --window-ms")
    return w0 / 1000.0, bw, n


def _extent(units: Units | None, imaging: list[Series]) -> tuple[float, float]:
    if units is not None:
        if units.obs is not None and any(len(o) for o in units.obs):
            allobs = np.concatenate(units.obs)
            return float(allobs[:, 0].min()), float(allobs[:, 1].max())
        if len(units.spike_times):
            return float(units.spike_times.min()), float(units.spike_times.max())
        return 0.0, 0.0
    ts = np.concatenate([s.timestamps for s in imaging])
    return float(ts.min()), float(ts.max())


def _coord_names(trial_cols: Sequence[str], neuron_cols: Sequence[str], neuron: str) -> tuple[dict, dict]:
    both = set(trial_cols) & set(neuron_cols)
    t = {c: (f"trial_{c}" if c in both or c in _RESERVED else c) for c in trial_cols}
    n = {c: (f"{neuron}_{c}" if c in both or c in _RESERVED else c) for c in neuron_cols}
    return t, n


@dataclass
class Neurons:
    """Binned activity of the units or ROIs: (trial, time, neuron) ``activity`` and ``valid``, and per neuron
    its ``ids`` and coordinates ``meta``; ``neuron`` is the dimension (``unit``/``roi``), ``signal`` its kind."""

    neuron: str
    signal: str
    ids: np.ndarray
    activity: np.ndarray
    valid: np.ndarray
    meta: dict[str, np.ndarray]


def recorded_span(units: Units, trials: Trials) -> tuple[float, float]:
    """The span (s) over which a session without ``obs_intervals`` was recorded: from the earliest to the
    latest of all spike times and of the trials table's start and stop times.

    Parameters
    ----------
    units
        The units table.
    trials
        The trials (their ``extent`` covers every row of the table, dropped rows included).

    Returns
    -------
    tuple of float
        ``(first, last)`` time in s; every spike of the file lies inside it.
    """
    lo, hi = trials.extent
    if len(units.spike_times):
        lo, hi = min(lo, float(units.spike_times.min())), max(hi, float(units.spike_times.max()))
    return lo, hi


def _neurons(units: Units | None, imaging: list[Series], edges: np.ndarray, centres: np.ndarray,
             in_trial: np.ndarray | None, span: tuple[float, float], cfg: IngestConfig, path: Path) -> Neurons:
    """Bin the units' spikes (exact counts, valid where observed: inside the unit's ``obs_intervals``, or
    overlapping ``span`` without them) or, without units, average the imaging ROIs' traces (valid where
    finite); ``in_trial`` (trial, time), when given, further restricts ``valid`` to the trial."""
    if units is not None:
        neuron, signal, ids = "unit", "spike_counts", units.ids
        activity = bin_spikes(units.spike_times, units.bounds, edges)
        valid = np.empty(activity.shape, dtype=np.int8)
        groups: dict[bytes, list[int]] = {}  # units sharing the same obs_intervals share one mask
        for u in range(len(ids)):
            groups.setdefault(b"" if units.obs is None else units.obs[u].tobytes(), []).append(u)
        for members in groups.values():
            if units.obs is None:  # any bin holding a recorded instant: no spike of the file is ever invalid
                mask = (edges[:, 1:] > span[0]) & (edges[:, :-1] <= span[1])
            else:
                mask = inside(units.obs[members[0]], centres)
            if in_trial is not None:
                mask &= in_trial
            valid[:, :, members if len(members) < len(ids) else slice(None)] = mask[:, :, None]
        meta = {"area": unit_areas(units, cfg.areas, path)}
        if units.electrode_group is not None:
            meta["electrode_group"] = units.electrode_group
        meta.update({c: v for c, v in units.columns.items() if c not in meta})
    else:
        neuron, signal = "roi", imaging[0].kind
        activity = np.concatenate([resample(s.timestamps, s.data, edges) for s in imaging], axis=2)
        ids = np.arange(activity.shape[2])
        finite = np.isfinite(activity)
        valid = (finite if in_trial is None else finite & in_trial[:, :, None]).astype(np.int8)
        meta = {"area": np.concatenate([s.area for s in imaging]),
                "roi_series": np.concatenate([np.full(s.data.shape[1], s.name) for s in imaging]),
                "roi_id": np.concatenate([s.roi_ids for s in imaging])}
    return Neurons(neuron, signal, ids, activity, valid, meta)


def ingest_nwb(path: str | Path, *, bin_ms: float = defaults.BIN_MS, align: str = defaults.ALIGN,
               window_ms: Sequence[float] | None = None, trials_table: str = defaults.TRIALS_TABLE,
               areas: str = defaults.AREAS, session_window_ms: float = defaults.SESSION_WINDOW_MS,
               clip_to_trial: bool = False, inputs: str | Sequence[str] | None = None) -> xr.Dataset:
    """Read an NWB session and bin it into a validated ``activity`` dataset.

    Parameters
    ----------
    path
        NWB file with a units table (spike times) or, without units, RoiResponseSeries under
        ``processing['ophys']`` DfOverF/Fluorescence.
    bin_ms
        Bin width in ms.
    align
        Trials column whose time is 0 of every trial; trials where it is NaN are dropped.
    window_ms
        (start, stop) in ms around the alignment event; default 0 .. the shortest trial's ``stop - align``.
    trials_table
        Name of the TimeIntervals table (``nwb.intervals`` or a processing module); ``"none"`` (or no
        intervals table at all) cuts the session into consecutive windows of ``session_window_ms``.
    areas
        ``"electrodes"``, ``"column:NAME"`` or a unit-id rule such as ``"unit-id:1xxx=PMd,2xxx=M1"``.
    session_window_ms
        Window length in ms when the session is cut into fixed windows.
    clip_to_trial
        False (default): a bin is valid wherever the unit was observed, also where the window reaches
        beyond the trial's ``[start_time, stop_time)`` (attr ``valid_rule="observed"``).  True: bins whose
        centre lies outside the trial are invalid and hold 0 too (``valid_rule="observed_and_in_trial"``).
    inputs
        Names (``"a,b"`` or a list) of further task inputs beside the ``stimulus/presentation`` series: a
        TimeSeries anywhere in the file (then no longer behaviour) or a trials column of event times, e.g.
        ``go_cue_time`` (a pulse of 1 in the bin holding the event).  They go to the ``stimulus`` variable.

    Returns
    -------
    xarray.Dataset
        The validated ``activity`` dataset (see :mod:`cortexfit.core.convention`).

    Raises
    ------
    IngestError
        One line naming the file when it cannot be read or the options do not fit it.
    ConfigError
        When an option is invalid.  An ``inputs`` name that is neither a series nor a trials column, or a
        stimulus series that does not cover every trial's window, is an :class:`IngestError`.

    Examples
    --------
    >>> ds = ingest_nwb("yu2009_pmd_reach.nwb", window_ms=(0, 1000))      # doctest: +SKIP
    >>> int(ds.activity.sum())                                              # doctest: +SKIP
    74038
    """
    # a tuple of any length: IngestConfig checks that it is (start, stop)
    window = None if window_ms is None else cast("tuple[float, float]", tuple(window_ms))
    cfg = IngestConfig(bin_ms=float(bin_ms), align=align, window_ms=window,
                       trials_table=trials_table, areas=areas, session_window_ms=float(session_window_ms),
                       clip_to_trial=clip_to_trial, inputs=parse_inputs(inputs))
    path = Path(path)
    t0 = _time.perf_counter()
    with NWBReader(path) as r:
        units = r.units()
        imaging = [] if units is not None else r.imaging()
        if units is None and not imaging:
            raise IngestError(f"{path}: no units (spike times) and no imaging (DfOverF/Fluorescence RoiResponseSeries)")
        tr = _trials(r, cfg, _extent(units, imaging))
        stim_series, events = resolve_inputs(r, cfg.inputs, tr.coords)
        behavior = r.behavior(exclude={s.name for s in stim_series})
    ws, bw, n = _window(tr, cfg, path)
    k = np.arange(n + 1)
    edges = tr.align[:, None] + (ws + k * bw)[None, :]
    centres = tr.align[:, None] + (ws + (k[:-1] + 0.5) * bw)[None, :]
    in_trial = (centres >= tr.start[:, None]) & (centres < tr.stop[:, None])
    where = f"{path}: window {ws * 1e3:g}..{(ws + n * bw) * 1e3:g} ms around '{cfg.align}'"
    if cfg.clip_to_trial and not in_trial.any():
        raise IngestError(f"{where} lies outside every trial")
    span = recorded_span(units, tr) if units is not None else (math.nan, math.nan)
    nr = _neurons(units, imaging, edges, centres, in_trial if cfg.clip_to_trial else None, span, cfg, path)
    seen = nr.valid.any(axis=(1, 2))
    if not seen.any():
        raise IngestError(f"{where} lies outside the observed recording in every trial")
    if not seen.all():
        log.warning("%s: %d trial(s) hold no observed bin in the window: all their bins are invalid", path,
                    int((~seen).sum()))
    if not cfg.clip_to_trial:
        beyond = int(((~in_trial)[:, :, None] & (nr.valid == 1)).sum())
        if beyond:
            log.info("%s: %d observed bin(s) beyond the trials' start/stop kept valid (--clip-to-trial drops "
                     "them)", path, beyond)
    if not nr.valid.all():
        dropped = int(nr.activity.sum(where=nr.valid == 0, dtype=np.int64)) if nr.signal == "spike_counts" else 0
        if dropped:
            log.warning("%s: %d spike(s) of the window lie in bins marked invalid (%s) and are set to 0", path,
                        dropped, "outside the trial or the unit's obs_intervals" if cfg.clip_to_trial
                        else "outside the unit's obs_intervals")
        np.copyto(nr.activity, 0, where=nr.valid == 0)
    ds = convention.new_activity(nr.activity, time=ws + (k[:-1] + 0.5) * bw, bin_width_s=bw, trial=tr.ids,
                                 unit=nr.ids, valid=nr.valid, align_event=cfg.align, signal=nr.signal,
                                 source_file=str(path), source_sha256=file_sha256(path), config=asdict(cfg),
                                 neuron=nr.neuron)
    ds.attrs.update(window_start_s=float(ws), window_stop_s=float(ws + n * bw),
                    valid_rule=VALID_RULES[cfg.clip_to_trial])
    tnames, nnames = _coord_names(list(tr.coords), list(nr.meta), nr.neuron)
    ds = ds.assign_coords({**{tnames[c]: ("trial", v) for c, v in tr.coords.items()},
                           **{nnames[c]: (nr.neuron, v) for c, v in nr.meta.items()}})
    beh = behavior_array(behavior, edges)
    if beh is not None:
        ds["behavior"] = beh.assign_coords(trial=ds.trial, time=ds.time)
    stim = stimulus_array(stim_series, events, tr.coords, edges, tr.ids, path)
    if stim is not None:
        ds["stimulus"] = stim.assign_coords(trial=ds.trial, time=ds.time)
    log.info("%s: %d trials x %d bins of %g ms x %d %ss (%s) in %.2f s", path, len(tr.ids), n, cfg.bin_ms,
             len(nr.ids), nr.neuron, nr.signal, _time.perf_counter() - t0)
    convention.validate(ds, "activity")
    return ds


def run(nwb: str | Path, out: str | Path, *, bin_ms: float = defaults.BIN_MS, align: str = defaults.ALIGN,
        window_ms: Sequence[float] | None = None, trials_table: str = defaults.TRIALS_TABLE,
        areas: str = defaults.AREAS, session_window_ms: float = defaults.SESSION_WINDOW_MS,
        clip_to_trial: bool = False, inputs: str | Sequence[str] | None = None) -> Path:
    """Ingest ``nwb`` and write the activity dataset to ``out`` atomically (the ``cortexfit ingest`` command).

    Parameters
    ----------
    nwb
        The NWB file to read.
    out
        The netCDF file to write (never the input); nothing is written when ingest fails.
    bin_ms, align, window_ms, trials_table, areas, session_window_ms, clip_to_trial, inputs
        As for :func:`ingest_nwb`.

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> run("session.nwb", "activity.nc", align="move_onset_time", window_ms=(-250, 450))   # doctest: +SKIP
    PosixPath('activity.nc')
    """
    if Path(out).resolve() == Path(nwb).resolve():
        raise ConfigError(f"{out}: output would overwrite the input file")
    ds = ingest_nwb(nwb, bin_ms=bin_ms, align=align, window_ms=window_ms, trials_table=trials_table, areas=areas,
                    session_window_ms=session_window_ms, clip_to_trial=clip_to_trial, inputs=inputs)
    path = convention.write_dataset(ds, out, "activity")
    log.info("wrote %s", path)
    return path
