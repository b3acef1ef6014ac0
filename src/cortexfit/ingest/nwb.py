"""Lazy reading of NWB 2.x files for the ingest stage.

The reader opens the file once with :mod:`h5py` and walks the NWB HDF5 layout by each object's
``neurodata_type`` attribute (the layout the NWB schema fixes for every HDF5 NWB file, the same one pynwb
maps to its classes).  Only the arrays the ingest stage needs are read, each in one bulk read: the units
table's ragged ``spike_times`` column is its flat ``VectorData`` plus its ``VectorIndex`` of row ends, never
a per-unit loop.  This skips pynwb's object construction (about 50 ms and its deprecation warnings per
file) without losing anything ingest uses; ``tests/test_ingest_nwb.py`` checks the arrays against pynwb's.

Every problem with the file becomes one :class:`~cortexfit.core.errors.IngestError` line naming the file.

Examples
--------
>>> with NWBReader("session.nwb") as r:                 # doctest: +SKIP
...     units = r.units()
...     trials = r.table("trials")
>>> units.ids[:3], trials.columns["start_time"][:2]     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from cortexfit.core.errors import IngestError

log = logging.getLogger("cortexfit.ingest")

#: TimeSeries types that are never behaviour (raw ephys, imaging, intracellular, stimuli, events).
NOT_BEHAVIOR = frozenset([
    "ElectricalSeries", "SpikeEventSeries", "ImageSeries", "TwoPhotonSeries", "OnePhotonSeries", "OpticalSeries",
    "ImageMaskSeries", "IndexSeries", "RoiResponseSeries", "DecompositionSeries", "PatchClampSeries",
    "CurrentClampSeries", "IZeroClampSeries", "VoltageClampSeries", "CurrentClampStimulusSeries",
    "VoltageClampStimulusSeries", "OptogeneticSeries", "AnnotationSeries", "IntervalSeries", "AbstractFeatureSeries",
    "BehavioralEvents", "BehavioralEpochs", "LFP", "FilteredEphys", "EventWaveform", "FeatureExtraction",
    "EventDetection",
])
#: Event / TTL series types (ndx-events and the like): time stamps of events, never behaviour.
EVENT_TYPES = frozenset(["Events", "TTLs", "LabeledEvents", "AnnotatedEventsTable", "EventsTable", "TimestampVectorData"])
#: Names of series that carry TTL pulses or event codes (sync lines, digital inputs, strobed words).
_EVENT_NAME = re.compile(r"ttl|event|trigger|sync|strobe|digital|marker|(?:^|[_\W])codes?(?:$|[_\W])", re.IGNORECASE)
IMAGING_CONTAINERS = (("DfOverF", "dff"), ("Fluorescence", "fluorescence"))
_AXES = "xyz"
_READ_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError, IndexError)  # h5py / malformed layout


@dataclass
class Units:
    """The units table: flat sorted spike times with row bounds, observation intervals, metadata."""

    ids: np.ndarray                     # (n,) int64
    spike_times: np.ndarray             # (n_spikes,) float64, sorted within each unit
    bounds: np.ndarray                  # (n + 1,) int64: unit u owns spike_times[bounds[u]:bounds[u+1]]
    obs: list[np.ndarray] | None        # per unit (m, 2) [start, stop) intervals, or None (whole session)
    columns: dict[str, np.ndarray]      # other scalar per-unit columns (heldout, quality, ...)
    electrode_group: np.ndarray | None  # (n,) str: units' electrode_group, else the first electrode's group
    electrode_area: np.ndarray          # (n,) str: first electrode's location, else the group's, else ""


@dataclass
class Table:
    """A TimeIntervals table: row ids and its 1-D columns (strings as str arrays)."""

    name: str
    ids: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Series:
    """One regularly or irregularly sampled signal, data as (time, channel) float64."""

    name: str
    neurodata_type: str
    timestamps: np.ndarray
    data: np.ndarray
    kind: str = "other"                 # position / velocity / other (behaviour); stimulus; dff / fluorescence
    channels: list[str] = field(default_factory=list)
    area: np.ndarray | None = None      # imaging: per-ROI plane location
    roi_ids: np.ndarray | None = None


def _ntype(obj) -> str:
    t = obj.attrs.get("neurodata_type", "")
    return t.decode() if isinstance(t, bytes) else str(t)


def _strings(values) -> np.ndarray:
    return np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values], dtype=str)


def _basename(f: h5py.File, ref) -> str:
    return h5py.h5r.get_name(ref, f.id).decode().rsplit("/", 1)[-1] if ref else ""


def _column(f: h5py.File, dset: h5py.Dataset) -> np.ndarray | None:
    """A table column as a 1-D numpy array, or None when it is not one value per row."""
    if dset.ndim != 1 or dset.dtype.names is not None:
        return None
    if h5py.check_string_dtype(dset.dtype) is not None:
        return _strings(dset[()])
    if h5py.check_ref_dtype(dset.dtype) is not None:
        return np.array([_basename(f, r) for r in dset[()]], dtype=str)
    if dset.dtype.kind not in "biuf":
        return None
    return dset[()]


def _is_series(g) -> bool:
    return isinstance(g, h5py.Group) and "data" in g and ("timestamps" in g or "starting_time" in g)


class NWBReader:
    """Open an NWB file read-only and read units, intervals tables, behaviour, stimulus and imaging from it.

    Use as a context manager.  Raises :class:`IngestError` if the file is missing, is not HDF5, is
    truncated or is HDF5 but not NWB.

    Examples
    --------
    >>> with NWBReader("session.nwb") as r:             # doctest: +SKIP
    ...     print(sorted(r.interval_tables()))
    ['trials']
    """

    def __init__(self, path: str | Path):
        self.path = p = Path(path)
        if not p.is_file():
            raise IngestError(f"{p}: no such file")
        if not h5py.is_hdf5(p):
            raise IngestError(f"{p}: not an HDF5/NWB file (wrong format or truncated header)")
        try:
            self.f = h5py.File(p, "r")
        except OSError as exc:
            raise IngestError(f"{p}: cannot open HDF5 file, truncated or corrupt ({exc})") from None
        version = self.f.attrs.get("nwb_version", "")
        version = version.decode() if isinstance(version, bytes) else str(version)
        major = re.match(r"\D*(\d+)", version)
        if _ntype(self.f) != "NWBFile" or major is None or int(major.group(1)) < 2:  # pynwb's can_read test
            self.f.close()
            why = f"NWB version {version} (2.x needed)" if major else "no NWBFile neurodata_type / nwb_version"
            raise IngestError(f"{p}: HDF5 file is not NWB 2.x ({why})")

    def __enter__(self) -> NWBReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.f.close()

    def _fail(self, what: str, exc: Exception) -> IngestError:
        msg = " ".join(str(exc).split())
        return IngestError(f"{self.path}: cannot read {what}, file truncated or malformed "
                           f"({type(exc).__name__}: {msg})")

    def _ragged(self, g: h5py.Group, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Flat data and row bounds (n + 1,) of a ragged column (VectorData + VectorIndex)."""
        data = g[name][()]
        ends = g[f"{name}_index"][()].astype(np.int64)
        bounds = np.concatenate([[0], ends])
        if np.any(np.diff(bounds) < 0) or bounds[-1] != len(data):
            raise IngestError(f"{self.path}: units column '{name}' has an inconsistent index")
        return data, bounds

    # ---------------------------------------------------------------- units
    def units(self) -> Units | None:
        """Read the units table (None when the file has no units or an empty table)."""
        g = self.f.get("units")
        if g is None or "spike_times" not in g:
            return None
        try:
            return self._units(g)
        except _READ_ERRORS as exc:
            raise self._fail("the units table", exc) from None

    def _units(self, g: h5py.Group) -> Units | None:
        ids = g["id"][()].astype(np.int64)
        if len(ids) == 0:
            return None
        st, bounds = self._ragged(g, "spike_times")
        st = np.asarray(st, dtype=np.float64)
        if len(bounds) != len(ids) + 1:
            raise IngestError(f"{self.path}: units spike_times index has {len(bounds) - 1} rows for {len(ids)} ids")
        def owner(i: np.ndarray) -> np.ndarray:  # unit of each flat spike index
            return np.searchsorted(bounds, i, side="right") - 1

        for ok, what in ((np.isfinite(st), "NaN/inf"), (st >= 0, "negative")):
            if not ok.all():
                who = ", ".join(map(str, ids[np.unique(owner(np.flatnonzero(~ok)))][:10]))
                raise IngestError(f"{self.path}: {what} spike times in unit(s) {who}")
        down = np.flatnonzero(st[1:] < st[:-1])
        down = np.unique(owner(down)[owner(down) == owner(down + 1)])
        if len(down):
            log.info("%s: sorting the spike times of %d unsorted unit(s)", self.path, len(down))
            for u in down:
                st[bounds[u]:bounds[u + 1]].sort()
        obs = None
        if "obs_intervals" in g and "obs_intervals_index" in g:
            flat, ob = self._ragged(g, "obs_intervals")
            obs = [np.asarray(flat[a:b], dtype=np.float64).reshape(-1, 2) for a, b in zip(ob[:-1], ob[1:])]
        skip = {"spike_times", "obs_intervals", "electrodes", "electrode_group"}
        columns = {}
        for name in _colnames(g):
            if name in skip or f"{name}_index" in g or name not in g or _ntype(g[name]) == "DynamicTableRegion":
                continue
            col = _column(self.f, g[name])
            if col is not None and len(col) == len(ids):
                columns[name] = col
        group = _column(self.f, g["electrode_group"]) if "electrode_group" in g else None
        area, group = self._electrodes(g, len(ids), group)
        return Units(ids, st, bounds, obs, columns, group, area)

    def _electrodes(self, g: h5py.Group, n: int, group: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Area (first electrode's location, else its group's) and electrode group name per unit."""
        area = np.full(n, "", dtype=object)
        if "electrodes" in g and "electrodes_index" in g:
            rows, b = self._ragged(g, "electrodes")
            ref = g["electrodes"].attrs.get("table")
            table = self.f[ref] if ref else self.f.get("general/extracellular_ephys/electrodes")
            first = np.where(np.diff(b) > 0, rows[np.minimum(b[:-1], len(rows) - 1)], -1) if len(rows) else None
            if first is not None and table is not None:
                ok = first >= 0
                if "location" in table:
                    area[ok] = self._electrode_column(table, "location", first[ok])
                gcol = "group_name" if "group_name" in table else "group" if "group" in table else None
                if group is None and gcol is not None:
                    group = np.full(n, "", dtype=object)
                    group[ok] = self._electrode_column(table, gcol, first[ok])
        if group is not None:
            gloc: dict[str, str] = {}
            base = self.f.get("general/extracellular_ephys")
            for name in set(group) - {""}:
                loc = base[name].attrs.get("location", "") if base is not None and name in base else ""
                gloc[name] = loc.decode() if isinstance(loc, bytes) else str(loc)
            fill = area == ""
            area[fill] = [gloc.get(x, "") for x in group[fill]]
        return area.astype(str), None if group is None else group.astype(str)

    def _electrode_column(self, table: h5py.Group, name: str, rows: np.ndarray) -> np.ndarray:
        """``rows`` of the electrodes column ``name`` (one string or reference per electrode, else IngestError)."""
        col = _column(self.f, table[name])
        if col is None:
            raise IngestError(f"{self.path}: electrodes column '{name}' is not one value per electrode {table[name]}")
        if len(rows) and rows.max() >= len(col):
            raise IngestError(f"{self.path}: units use electrode {rows.max()}, electrodes column '{name}' has {len(col)}")
        return col[rows]

    # ---------------------------------------------------------------- intervals
    def interval_tables(self) -> dict[str, str]:
        """Map table name -> HDF5 path of every TimeIntervals table (``intervals/*`` and ``processing/*/*``)."""
        found: dict[str, str] = {}
        places = [self.f.get("intervals")] + [m for m in self.f.get("processing", {}).values()
                                              if isinstance(m, h5py.Group)]
        for place in places:
            for name, obj in (place or {}).items():
                if isinstance(obj, h5py.Group) and (_ntype(obj) == "TimeIntervals" or (
                        "start_time" in obj and "stop_time" in obj and "id" in obj)):
                    found.setdefault(name, obj.name)
        return found

    def table(self, name: str) -> Table:
        """Read a TimeIntervals table by name (raises :class:`IngestError` listing the available ones)."""
        tables = self.interval_tables()
        key = name if name in tables else next((k for k, v in tables.items() if v.strip("/") == name.strip("/")),
                                               None)
        if key is None:
            raise IngestError(f"{self.path}: no intervals table '{name}' (available: "
                              f"{', '.join(sorted(tables)) or 'none'}; '--trials-table none' cuts fixed windows)")
        try:
            g = self.f[tables[key]]
            ids = g["id"][()]
            cols = {}
            for col in _colnames(g):
                if col in g and f"{col}_index" not in g:
                    values = _column(self.f, g[col])
                    if values is not None and len(values) == len(ids):
                        cols[col] = values
        except _READ_ERRORS as exc:
            raise self._fail(f"intervals table '{name}'", exc) from None
        return Table(key, ids, cols)

    # ---------------------------------------------------------------- behaviour, stimulus & imaging
    def behavior(self, exclude: frozenset[str] | set[str] = frozenset()) -> list[Series]:
        """Behavioural series from ``processing['behavior']`` (nested containers too) and ``acquisition``.

        TTL / event-code series (:data:`EVENT_TYPES`, or a name such as ``ttl``, ``sync``, ``event_codes``)
        are not behaviour and are skipped, as are the series named in ``exclude`` (those read as inputs).
        """
        found: list[Series] = []
        try:
            for mod in ("behavior", "behaviour", "Behavior"):
                if f"processing/{mod}" in self.f:
                    self._walk(self.f[f"processing/{mod}"], found)
            if "acquisition" in self.f:
                self._walk(self.f["acquisition"], found)
        except _READ_ERRORS as exc:
            raise self._fail("behaviour series", exc) from None
        return [s for s in found if s.name not in exclude]

    def _walk(self, g: h5py.Group, out: list[Series], parent: str = "") -> None:
        for name, obj in g.items():
            kind = _ntype(obj) if obj is not None else ""
            if not isinstance(obj, h5py.Group) or kind in NOT_BEHAVIOR or kind in EVENT_TYPES or "id" in obj:
                continue  # datasets, non-behaviour types, DynamicTables
            if _is_series(obj):
                if _EVENT_NAME.search(name):
                    log.info("%s: %s looks like TTL pulses / event codes: not behaviour", self.path, obj.name)
                    continue
                s = self._series(obj, max_channels=16)
                if s is not None:
                    s.kind = _behavior_kind(name, kind, parent)
                    s.channels = _channel_names(name, s.data.shape[1], spatial=s.kind != "other")
                    out.append(s)
            else:
                self._walk(obj, out, kind)

    def stimulus(self) -> list[Series]:
        """The numeric TimeSeries of ``stimulus/presentation`` (what was presented to the subject: task inputs).

        Image, index and other non-numeric series (or ones with more than 64 channels) are skipped.
        """
        found: list[Series] = []
        try:
            g = self.f.get("stimulus/presentation")
            for obj in (g or {}).values():
                if _is_series(obj) and _ntype(obj) not in EVENT_TYPES:
                    s = self._input_series(obj)
                    if s is not None:
                        found.append(s)
        except _READ_ERRORS as exc:
            raise self._fail("stimulus series", exc) from None
        return found

    def series_names(self) -> list[str]:
        """Names of every TimeSeries in ``acquisition``, ``processing`` and ``stimulus`` (for error messages)."""
        names: list[str] = []

        def visit(name: str, obj) -> None:
            if _is_series(obj):
                names.append(name.rsplit("/", 1)[-1])

        for place in ("acquisition", "processing", "stimulus"):
            if place in self.f:
                self.f[place].visititems(visit)
        return sorted(set(names))

    def find_series(self, name: str) -> Series | None:
        """The TimeSeries called ``name`` (its name or its path in the file) in ``stimulus``, ``acquisition`` or
        ``processing``, read as an input; None when there is none (or it is not numeric 1-D/2-D)."""
        hits: list[h5py.Group] = []

        def visit(path: str, obj) -> None:
            if _is_series(obj) and name in (path.rsplit("/", 1)[-1], path, obj.name, obj.name.lstrip("/")):
                hits.append(obj)

        try:
            for place in ("stimulus", "acquisition", "processing"):
                if place in self.f:
                    self.f[place].visititems(visit)
            return self._input_series(hits[0]) if hits else None
        except _READ_ERRORS as exc:
            raise self._fail(f"series '{name}'", exc) from None

    def _input_series(self, g: h5py.Group) -> Series | None:
        s = self._series(g, max_channels=64)
        if s is not None:
            name = s.name
            s.kind = "stimulus"
            s.channels = _channel_names(name, s.data.shape[1], spatial=_behavior_kind(name, s.neurodata_type, "")
                                        == "position")
        return s

    def _series(self, g: h5py.Group, max_channels: int | None = None) -> Series | None:
        d = g["data"]
        if d.dtype.kind not in "biuf" or d.ndim not in (1, 2) or d.shape[0] < 2 or (
                max_channels is not None and d.ndim == 2 and d.shape[1] > max_channels):
            log.debug("%s: skipping series %s (not numeric 1-D/2-D, or too many channels)", self.path, g.name)
            return None
        data = np.asarray(d[()], dtype=np.float64).reshape(d.shape[0], -1)
        data = data * float(d.attrs.get("conversion", 1.0)) + float(d.attrs.get("offset", 0.0))
        if "timestamps" in g:
            ts = np.asarray(g["timestamps"][()], dtype=np.float64)
        else:
            rate = float(g["starting_time"].attrs["rate"])
            ts = float(g["starting_time"][()]) + np.arange(len(data)) / rate
        if len(ts) != len(data):
            raise IngestError(f"{self.path}: series {g.name} has {len(ts)} timestamps for {len(data)} samples")
        return Series(g.name.rsplit("/", 1)[-1], _ntype(g), ts, data)

    def imaging(self) -> list[Series]:
        """RoiResponseSeries from DfOverF (preferred) or Fluorescence containers in ``processing``."""
        try:
            mods = [m for m in self.f.get("processing", {}).values() if isinstance(m, h5py.Group)]
            for container, signal in IMAGING_CONTAINERS:
                out = []
                for mod in mods:
                    for c in mod.values():
                        if isinstance(c, h5py.Group) and _ntype(c) == container:
                            out += [self._roi_series(s, signal) for s in c.values() if _is_series(s)]
                if out := [s for s in out if s is not None]:
                    return out
        except _READ_ERRORS as exc:
            raise self._fail("imaging series", exc) from None
        return []

    def _roi_series(self, g: h5py.Group, signal: str) -> Series | None:
        s = self._series(g)
        if s is None:
            return None
        s.kind, n = signal, s.data.shape[1]
        s.area, s.roi_ids = np.full(n, "unknown", dtype=object), np.arange(n)
        if "rois" in g:
            rows = g["rois"][()]
            ref = g["rois"].attrs.get("table")
            seg = self.f[ref] if ref else None
            if seg is not None and len(rows) == n:
                s.roi_ids = seg["id"][()][rows] if "id" in seg else rows
                plane = seg.get("imaging_plane")
                if plane is not None and "location" in plane:
                    loc = plane["location"][()]
                    s.area[:] = loc.decode() if isinstance(loc, bytes) else str(loc)
        s.area = s.area.astype(str)
        return s


def _colnames(g: h5py.Group) -> list[str]:
    names = g.attrs.get("colnames")
    return [] if names is None else _strings(np.atleast_1d(names)).tolist()


def _behavior_kind(name: str, ntype: str, parent: str) -> str:
    low = name.lower()
    if "vel" in low or "speed" in low:
        return "velocity"
    if ntype == "SpatialSeries" or parent in ("Position", "EyeTracking", "CompassDirection") or "pos" in low:
        return "position"
    return "other"


def _channel_names(name: str, n: int, spatial: bool) -> list[str]:
    if n == 1:
        return [name]
    return [f"{name}_{_AXES[i]}" for i in range(n)] if spatial and n <= 3 else [f"{name}_{i}" for i in range(n)]
