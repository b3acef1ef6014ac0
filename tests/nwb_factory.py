"""Small synthetic NWB files for the ingest tests, written with pynwb, and pynwb's view of any NWB file.

Every builder writes one file and returns its path.  Spike times, trial times and behaviour are
deterministic (a seeded generator plus a few hand-placed spikes on bin edges), so tests can recount them
independently.  ``corrupt(...)`` turns a good file into the bad inputs the ingest stage must reject.

Examples
--------
>>> p = make_units_file(tmp_path / "x.nwb")          # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

TRIAL_LEN = 0.6  # s
TRIAL_GAP = 0.2  # s
GO_OFFSET = 0.2  # s after start: the "go_time" event


def brute_counts(spikes: Sequence[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """(trial, bin, unit) counts of ``spikes`` (one array per unit) by comparing every spike with every bin
    ``[edges[i, k], edges[i, k + 1])``: the slow, obviously right reference for the binning tests."""
    lo, hi = edges[:, :-1, None], edges[:, 1:, None]
    return np.stack([((s >= lo) & (s < hi)).sum(-1) for s in spikes], axis=-1)


def read_pynwb(path: str | Path):
    """Open ``path`` with pynwb (warnings silenced): ``(io, nwbfile)``; close ``io`` when done."""
    from pynwb import NWBHDF5IO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        io = NWBHDF5IO(str(path), "r")
        return io, io.read()


def unit_rates(nwb) -> np.ndarray:
    """Mean rate (Hz) of every unit of a pynwb file over its ``obs_intervals`` (one interval per unit)."""
    units = nwb.units.to_dataframe()
    duration = np.array([iv[0][1] - iv[0][0] for iv in units["obs_intervals"]])
    return np.array([len(s) for s in units["spike_times"]]) / duration


def _nwbfile():
    from pynwb import NWBFile

    return NWBFile(
        session_description="synthetic session for cortexfit tests",
        identifier="cortexfit-test",
        session_start_time=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    )


def _write(nwb, path: Path) -> Path:
    from pynwb import NWBHDF5IO

    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)
    return path


def trial_times(n_trials: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop times of the synthetic trials (back to back with gaps)."""
    start = np.arange(n_trials) * (TRIAL_LEN + TRIAL_GAP) + 0.5
    return start, start + TRIAL_LEN


def _electrodes(nwb, n_per_area: int = 2) -> list[str]:
    device = nwb.create_device(name="array")
    names = []
    for area in ("PMd", "M1"):
        grp = nwb.create_electrode_group(
            name=f"group_{area}", description=f"{area} shank", location=area, device=device
        )
        for _ in range(n_per_area):
            nwb.add_electrode(group=grp, location=area)
        names.append(grp.name)
    return names


def make_units_file(
    path: str | Path,
    *,
    n_units: int = 4,
    n_trials: int = 6,
    seed: int = 0,
    unit_ids: Sequence[int] | None = None,
    spike_times: Sequence[Sequence[float]] | None = None,
    obs_intervals: bool | str = True,
    gap_unit: int | None = None,
    nan_align: Sequence[int] = (),
    behavior: str | None = "position",
    conditions: bool = True,
    trials: bool = True,
    table_name: str | None = None,
    units_extra: bool = True,
    position_name: str = "hand_pos",
    stimulus: str | None = None,
) -> Path:
    """Write a spiking session: units (spike_times, obs_intervals, electrodes), trials and behaviour.

    Parameters
    ----------
    spike_times
        Explicit per-unit spike times (kept in the given order, so unsorted lists stay unsorted);
        default: Poisson-like random times across the session plus spikes exactly on trial edges.
    obs_intervals
        True: every unit is observed during the trials only (one interval per trial); ``"session"``: one
        interval over the whole session; False: no ``obs_intervals`` column (a continuous recording).
    gap_unit
        Index of a unit whose ``obs_intervals`` leave out the first 0.1 s of trial 1 (an unobserved gap);
        with ``obs_intervals="session"`` the 0.2 s around the start of trial 1.
    nan_align
        Trials whose ``go_time`` is NaN.
    behavior
        ``"position"`` (a SpatialSeries ``hand_pos`` in a Position container in processing['behavior']),
        ``"both"`` (plus a ``hand_vel`` TimeSeries in a BehavioralTimeSeries), ``"acquisition"`` (a plain
        TimeSeries ``lever`` in acquisition plus an ElectricalSeries that must be skipped), or None.
    table_name
        Store the trials as a TimeIntervals table of this name under processing['behavior'] instead of
        ``nwb.trials``; ``"epochs"`` stores them as the file's epochs table (``intervals/epochs``).
    position_name
        Name of the position SpatialSeries.
    stimulus
        ``"full"``: a ``light`` TimeSeries in ``stimulus/presentation`` (1 kHz, 1 during the 0.1 s after each
        trial's go time, 0 otherwise) plus, in acquisition, a TTL series ``ttl_sync`` and an ``event_codes``
        series (neither is behaviour) and a ``joystick`` TimeSeries; ``"partial"``: the ``light`` series ends
        halfway through the session.
    """
    from pynwb.base import TimeSeries
    from pynwb.behavior import BehavioralTimeSeries, Position, SpatialSeries
    from pynwb.ecephys import ElectricalSeries
    from pynwb.epoch import TimeIntervals

    rng = np.random.default_rng(seed)
    nwb = _nwbfile()
    groups = _electrodes(nwb)
    start, stop = trial_times(n_trials)
    session_end = float(stop[-1] + TRIAL_GAP)
    if trials:
        epochs = table_name == "epochs"
        table = None if table_name is None or epochs else TimeIntervals(name=table_name,
                                                                        description="trials elsewhere")
        for col, desc in (("go_time", "go cue"),) + ((("condition", "reach target"),) if conditions else ()):
            if epochs:
                nwb.add_epoch_column(name=col, description=desc)
            elif table is None:
                nwb.add_trial_column(name=col, description=desc)
            else:
                table.add_column(name=col, description=desc)
        for i in range(n_trials):
            row = {"start_time": float(start[i]), "stop_time": float(stop[i])}
            row["go_time"] = float("nan") if i in nan_align else float(start[i] + GO_OFFSET)
            if conditions:
                row["condition"] = "left" if i % 2 == 0 else "right"
            if epochs:
                nwb.add_epoch(**row)
            elif table is None:
                nwb.add_trial(**row)
            else:
                table.add_row(**row)
        if table is not None:
            nwb.create_processing_module("behavior", "behaviour").add(table)
    if units_extra:
        nwb.add_unit_column(name="heldout", description="held out in NLB")
        nwb.add_unit_column(name="quality", description="sorting quality")
    ids = list(unit_ids) if unit_ids is not None else [1000 + i for i in range(n_units)]
    for u in range(len(ids)):
        if spike_times is not None:
            st = np.asarray(spike_times[u], dtype=float)
        else:
            st = np.sort(rng.uniform(0.0, session_end, size=rng.integers(40, 80)))
            st = np.round(np.concatenate([st, start[:2], stop[:1]]), 4)  # spikes on trial edges
            st.sort()
        obs = None
        if obs_intervals == "session":
            obs = np.array([[0.0, session_end]])
            if gap_unit == u:
                obs = np.array([[0.0, start[1] - 0.1], [start[1] + 0.1, session_end]])
        elif obs_intervals:
            obs = np.c_[start, stop]
            if gap_unit == u:
                obs = obs.copy()
                obs[1, 0] += 0.1
        electrode = (2 * u) % 4  # rows 0,2 -> PMd/M1 alternate
        kw = dict(spike_times=st, id=int(ids[u]), electrodes=[electrode], electrode_group=nwb.electrode_groups[
            groups[electrode // 2]])
        if obs is not None:
            kw["obs_intervals"] = obs
        if units_extra:
            kw.update(heldout=bool(u % 2), quality="good" if u < 2 else "mua")
        nwb.add_unit(**kw)
    t = np.arange(0.0, session_end, 0.001)
    if behavior in ("position", "both"):
        pos = np.c_[np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)]
        beh = nwb.create_processing_module("behavior", "behaviour") if "behavior" not in nwb.processing else \
            nwb.processing["behavior"]
        beh.add(Position(spatial_series=SpatialSeries(
            name=position_name, data=pos, reference_frame="centre", timestamps=t, unit="m")))
        if behavior == "both":
            vel = np.c_[np.full_like(t, 2.0), np.full_like(t, -1.0)]
            beh.add(BehavioralTimeSeries(time_series=TimeSeries(
                name="hand_vel", data=vel, unit="m/s", starting_time=0.0, rate=1000.0)))
    if stimulus is not None:
        light = np.zeros_like(t)
        for a in start + GO_OFFSET:
            light[(t >= a - 1e-9) & (t < a + 0.1 - 1e-9)] = 1.0
        keep = slice(None) if stimulus == "full" else slice(0, len(t) // 2)
        nwb.add_stimulus(TimeSeries(name="light", data=light[keep], unit="a.u.", timestamps=t[keep]))
        nwb.add_acquisition(TimeSeries(name="ttl_sync", data=(t * 10 % 1 < 0.5).astype(float), unit="V",
                                       timestamps=t))
        nwb.add_acquisition(TimeSeries(name="event_codes", data=np.round(t) % 7, unit="code", timestamps=t))
        nwb.add_acquisition(TimeSeries(name="joystick", data=3.0 * t, unit="V", timestamps=t))
    if behavior == "acquisition":
        nwb.add_acquisition(TimeSeries(name="lever", data=3.0 * t, unit="V", timestamps=t))
        region = nwb.create_electrode_table_region([0, 1], "two electrodes")
        nwb.add_acquisition(ElectricalSeries(name="raw", data=np.zeros((100, 2)), electrodes=region,
                                             starting_time=0.0, rate=30000.0))
    return _write(nwb, path)


def make_imaging_file(path: str | Path, *, n_rois: int = 3, n_trials: int = 4, rate: float = 30.0,
                      kind: str = "DfOverF") -> Path:
    """Write an imaging-only session: RoiResponseSeries under processing['ophys'][kind] and trials.

    The trace of ROI ``r`` is ``r + t`` (t in seconds), so bin means are known in closed form.
    """
    from pynwb.ophys import DfOverF, Fluorescence, ImageSegmentation, OpticalChannel

    nwb = _nwbfile()
    device = nwb.create_device(name="scope")
    plane = nwb.create_imaging_plane(
        name="plane", optical_channel=OpticalChannel(name="green", description="gcamp", emission_lambda=520.0),
        description="layer 2/3", device=device, excitation_lambda=920.0, indicator="GCaMP6f",
        location="M1", imaging_rate=rate,
    )
    ophys = nwb.create_processing_module("ophys", "imaging")
    seg = ImageSegmentation()
    ophys.add(seg)
    ps = seg.create_plane_segmentation(description="rois", imaging_plane=plane, name="rois")
    for r in range(n_rois):
        mask = np.zeros((4, 4))
        mask[r % 4, r % 4] = 1
        ps.add_roi(image_mask=mask)
    region = ps.create_roi_table_region(region=list(range(n_rois)), description="all rois")
    start, stop = trial_times(n_trials)
    n = int((stop[-1] + TRIAL_GAP) * rate)
    t = np.arange(n) / rate
    data = t[:, None] + np.arange(n_rois)[None, :]
    container = (DfOverF if kind == "DfOverF" else Fluorescence)()
    ophys.add(container)
    container.create_roi_response_series(name="traces", data=data, rois=region, unit="a.u.",
                                         starting_time=0.0, rate=rate)
    for a, b in zip(start, stop):
        nwb.add_trial(start_time=float(a), stop_time=float(b))
    return _write(nwb, path)


def make_no_trials_file(path: str | Path, *, duration: float = 3.5, n_units: int = 3, seed: int = 1) -> Path:
    """Write units spanning ``duration`` seconds and no intervals tables at all."""
    rng = np.random.default_rng(seed)
    nwb = _nwbfile()
    for u in range(n_units):
        st = np.sort(rng.uniform(0.0, duration, size=30))
        st[0], st[-1] = 0.0, duration
        nwb.add_unit(spike_times=st, id=u)
    return _write(nwb, path)


def make_no_units_file(path: str | Path) -> Path:
    """Write a file with trials but neither units nor imaging."""
    nwb = _nwbfile()
    for a, b in zip(*trial_times(3)):
        nwb.add_trial(start_time=float(a), stop_time=float(b))
    return _write(nwb, path)


def patch(path: str | Path, dataset: str, index, value) -> Path:
    """Overwrite ``dataset[index] = value`` in place with h5py (for values pynwb would refuse)."""
    with h5py.File(path, "r+") as f:
        f[dataset][index] = value
    return Path(path)


def truncate(path: str | Path, out: str | Path, keep: float = 0.5) -> Path:
    """Copy the first ``keep`` fraction of a file's bytes to ``out`` (a truncated download)."""
    data = Path(path).read_bytes()
    Path(out).write_bytes(data[: int(len(data) * keep)])
    return Path(out)


def make_plain_hdf5(path: str | Path) -> Path:
    """Write an HDF5 file that is not NWB."""
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    return Path(path)
