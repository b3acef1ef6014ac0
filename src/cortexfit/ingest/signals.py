"""Behaviour and task inputs (stimulus) of a session, resampled onto the trials' bins.

Both are sampled signals averaged over the samples inside each bin (:func:`cortexfit.ingest.binning.resample`):

* **behaviour** (:func:`behavior_array`): the series of ``processing['behavior']`` and ``acquisition``
  (TTL / event-code series excluded, see :meth:`cortexfit.ingest.nwb.NWBReader.behavior`), with a velocity
  derived from position when the file has none;
* **stimulus** (:func:`stimulus_array`): what drives the network -- every numeric series of
  ``stimulus/presentation`` plus what ``--inputs NAME[,NAME]`` names (:func:`resolve_inputs`): further
  series anywhere in the file, or trials-table columns of event times, each of which becomes a pulse channel
  holding 1 in the bin that holds the event (0 elsewhere, and in trials where the event is NaN or outside
  the window).  A series that leaves bins of the window uncovered is an error naming the trials.

Examples
--------
>>> parse_inputs("go_cue_time, target_on_time"), parse_inputs(None)
(('go_cue_time', 'target_on_time'), ())
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from cortexfit.core.errors import ConfigError, IngestError
from cortexfit.ingest.binning import edge_tolerance, resample
from cortexfit.ingest.nwb import NWBReader, Series

log = logging.getLogger("cortexfit.ingest")

__all__ = ["behavior_array", "parse_inputs", "resolve_inputs", "stimulus_array", "velocity_name"]

_POSITION = re.compile(r"position|pos(?![a-z])", re.IGNORECASE)


def velocity_name(position: str) -> str:
    """Name of the velocity derived from a position series: its ``position``/``pos`` part becomes
    ``velocity``/``vel`` (same case), else ``_vel`` is appended.

    Examples
    --------
    >>> [velocity_name(n) for n in ("hand_position", "hand_pos", "cursorPos", "eye_POS_xy", "finger", "posture")]
    ['hand_velocity', 'hand_vel', 'cursorVel', 'eye_VEL_xy', 'finger_vel', 'posture_vel']
    """
    def swap(m: re.Match) -> str:
        word = "velocity" if len(m.group()) > 3 else "vel"
        g = m.group()
        return word.upper() if g.isupper() else word.capitalize() if g[0].isupper() else word

    name, n = _POSITION.subn(swap, position, count=1)
    return name if n else f"{position}_vel"


def _unique(names: list[str]) -> list[str]:
    out: list[str] = []
    for c in names:
        out.append(c if c not in out else f"{c}_{len(out)}")
    return out


def behavior_array(series: list[Series], edges: np.ndarray) -> xr.DataArray | None:
    """(trial, time, behavior_channel) behaviour with ``behavior_kind``; None without behaviour series."""
    if not series:
        return None
    if not any(s.kind == "velocity" for s in series):  # derive velocity from position
        for s in [s for s in series if s.kind == "position"]:
            ts, keep = np.unique(s.timestamps, return_index=True)
            if len(ts) < 2:
                continue
            vel = np.gradient(s.data[keep], ts, axis=0)
            name = velocity_name(s.name)
            chans = [c.replace(s.name, name, 1) for c in s.channels]
            series.append(Series(name, "derived", ts, vel, "velocity", chans))
    values = np.concatenate([resample(s.timestamps, s.data, edges) for s in series], axis=2)
    names = _unique([c for s in series for c in s.channels])
    kinds = [s.kind for s in series for _ in s.channels]
    log.info("behaviour: %d channel(s) %s", len(names), ", ".join(names))
    return xr.DataArray(values, dims=("trial", "time", "behavior_channel"),
                        coords={"behavior_channel": names, "behavior_kind": ("behavior_channel", kinds)})


def parse_inputs(inputs: str | Sequence[str] | None) -> tuple[str, ...]:
    """``--inputs`` as a tuple of names: ``"a,b"``, ``["a", "b,c"]`` or None (no names).

    >>> parse_inputs(["go_cue_time", "a,b"])
    ('go_cue_time', 'a', 'b')
    """
    if inputs is None:
        return ()
    parts = [inputs] if isinstance(inputs, str) else list(inputs)
    if not all(isinstance(p, str) for p in parts):
        raise ConfigError(f"--inputs must be names separated by commas, got {inputs!r}")
    names = [n.strip() for p in parts for n in p.split(",")]
    return tuple(dict.fromkeys(n for n in names if n))


def _listing(names: Sequence[str], limit: int = 30) -> str:
    names = list(names)
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "none"


def resolve_inputs(r: NWBReader, names: Sequence[str], columns: Mapping[str, np.ndarray]
                   ) -> tuple[list[Series], list[str]]:
    """The stimulus series (``stimulus/presentation`` and the series named in ``names``) and the trials
    columns named in ``names`` (event times -> pulses).

    Raises
    ------
    IngestError
        One line naming the file and the name, listing what the file has, when a name is neither a series
        nor a trials column, or names a non-numeric column.
    """
    series = r.stimulus()
    have = {s.name for s in series}
    events: list[str] = []
    for name in names:
        if name in have or name in events:
            continue
        if name in columns:
            if np.asarray(columns[name]).dtype.kind not in "iuf":
                raise IngestError(f"{r.path}: --inputs '{name}': trials column '{name}' is not numeric (an input "
                                  "column must hold event times in s)")
            events.append(name)
            continue
        s = r.find_series(name)
        if s is None:
            numeric = [c for c, v in columns.items() if np.asarray(v).dtype.kind in "iuf"]
            raise IngestError(f"{r.path}: --inputs '{name}': no TimeSeries and no trials column of that name "
                              f"(series: {_listing(r.series_names())}; trials columns: {_listing(numeric)})")
        series.append(s)
        have.add(s.name)
    return series, events


def stimulus_array(series: list[Series], events: Sequence[str], columns: Mapping[str, np.ndarray],
                   edges: np.ndarray, trial_ids: np.ndarray, path: Path) -> xr.DataArray | None:
    """(trial, time, stimulus_channel) task inputs with ``stimulus_kind`` (``series`` or ``event``).

    Series are averaged per bin like behaviour; each event column gives a pulse channel named after it.
    None when there is nothing.

    Raises
    ------
    IngestError
        A series does not cover every bin of every trial's window (the message names the trials).
    """
    blocks, names, kinds = [], [], []
    for s in series:
        values = resample(s.timestamps, s.data, edges)
        bad = ~np.isfinite(values).all(axis=(1, 2))
        if bad.any():
            ids = ", ".join(map(str, trial_ids[bad][:20])) + (" ..." if bad.sum() > 20 else "")
            raise IngestError(f"{path}: stimulus series '{s.name}' ({s.timestamps.min():.3f}..{s.timestamps.max():.3f} s) "
                              f"does not cover the window of {int(bad.sum())} trial(s): {ids}")
        blocks.append(values)
        names += s.channels
        kinds += ["series"] * len(s.channels)
    for c in events:
        t = np.asarray(columns[c], dtype=float)
        k = (edges - edge_tolerance(edges) <= t[:, None]).sum(axis=1) - 1  # the bin [edges[k], edges[k + 1]) of t
        hit = np.isfinite(t) & (k >= 0) & (k < edges.shape[1] - 1)
        pulse = np.zeros((edges.shape[0], edges.shape[1] - 1, 1), dtype=np.float32)
        pulse[np.flatnonzero(hit), k[hit], 0] = 1.0
        if not hit.all():
            log.info("%s: input '%s' lies outside the window (or is NaN) in %d of %d trials", path, c,
                     int((~hit).sum()), len(hit))
        blocks.append(pulse)
        names.append(c)
        kinds.append("event")
    if not blocks:
        return None
    names = _unique(names)
    log.info("stimulus: %d channel(s) %s", len(names), ", ".join(names))
    return xr.DataArray(np.concatenate(blocks, axis=2).astype(np.float32), dims=("trial", "time", "stimulus_channel"),
                        coords={"stimulus_channel": names, "stimulus_kind": ("stimulus_channel", kinds)})
