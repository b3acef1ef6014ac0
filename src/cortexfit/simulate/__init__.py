"""The ``simulate`` stage: recordings with known ground truth, written as NWB.

``cortexfit simulate {reach,flipflop} OUT.nwb [--seed N] [--n-trials N]`` calls :func:`run`, which writes

* ``OUT.nwb``: electrodes (location = area, one electrode group per area), units (``spike_times``,
  ``obs_intervals`` = the whole session, ``electrodes``, ``area``), a trials table and behaviour in
  ``processing['behavior']``;
* ``OUT.truth.nc``: the ground truth, kind ``truth`` (``rates`` in Hz and ``latents`` per trial, time bin
  and unit/latent; time = bin centres relative to the trial's alignment event, attrs ``align_event``,
  ``window_start_s``, ``window_stop_s`` and the task's parameters).  reach adds ``A`` (rot_out, rot_in) of
  ``dx/dt = A x`` in 1/s, ``readout``, ``log_baseline``, ``prep_states`` and attrs ``rotation_freq_hz`` (the
  fastest plane) and ``plane_freqs_hz``; flipflop adds ``inputs``/``targets`` (trial, time, channel), the
  teacher ``W``, ``U``, ``b``, ``readout_weight``, ``readout_bias``, its 8 stable ``fixed_points``
  (fixed_point, latent; ordered by readout-sign corner), the ``saddle_points`` found and ``unit_readout``;
* flipflop only, where :mod:`cortexfit.models` is importable: ``OUT.teacher/model.pt``, the teacher RNN in
  the project's model format (family ``vanilla``, tanh), so ``cortexfit fixed-points OUT.teacher`` runs on it.

The tasks themselves live in :mod:`cortexfit.simulate.tasks`.  Every output appears only once complete
(temp file in the same folder + ``os.replace``).  Importing this module does not import torch.

Examples
--------
>>> from cortexfit.simulate import run
>>> run("reach", "data/simulated/reach.nwb", seed=0)            # doctest: +SKIP
PosixPath('data/simulated/reach.nwb')
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cortexfit.core import convention
from cortexfit.core.errors import ConfigError, SimulateError
from cortexfit.core.fileio import atomic_path

log = logging.getLogger("cortexfit.simulate")

TASKS = ("reach", "flipflop")
SESSION_START = _dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc)

__all__ = [
    "TASKS",
    "Recording",
    "Series",
    "poisson_spikes",
    "run",
    "save_teacher",
    "simulate_flipflop",
    "simulate_reach",
    "teacher_dir",
    "truth_path",
    "write_nwb",
]


# ------------------------------------------------------------------------------------------ data model
def check_option(name: str, ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(f"simulate: option {name} {what}")


@dataclass(frozen=True, kw_only=True)
class CommonConfig:
    """Options shared by the tasks (see :class:`cortexfit.simulate.tasks.ReachConfig` and ``FlipflopConfig``)."""

    n_trials: int
    dt_s: float = 0.005  # simulation step = rate bin = behaviour sample interval
    mean_rate_hz: tuple[float, float] = (6.0, 24.0)  # session-mean rate of each unit ~ U(lo, hi)
    readout_gain: float = 0.6  # std of the log-rate readout weights per unit-size latent
    max_rate_hz: float = 200.0

    def __post_init__(self) -> None:
        check_option("n_trials", isinstance(self.n_trials, int) and self.n_trials >= 1, f"must be >= 1, got {self.n_trials}")
        check_option("dt_s", 0.001 <= self.dt_s <= 0.005, f"must be in [0.001, 0.005] s, got {self.dt_s}")
        lo, hi = self.mean_rate_hz
        check_option("mean_rate_hz", 0 < lo <= hi < self.max_rate_hz, f"must be 0 < lo <= hi < max_rate_hz, got {lo, hi}")
        check_option("readout_gain", self.readout_gain >= 0, "must be >= 0")

    def to_json(self) -> str:
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, sort_keys=True)


@dataclass(frozen=True, kw_only=True)
class Series:
    """One behavioural signal on the session clock (``data[i]`` at ``starting_time + i / rate_hz``)."""

    name: str
    data: np.ndarray  # (n_samples, n_channels)
    rate_hz: float
    unit: str
    description: str
    kind: str = "timeseries"  # "position": a SpatialSeries inside a Position container
    starting_time: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Recording:
    """A simulated session: what goes into the NWB file, plus the ground truth."""

    task: str
    seed: int
    dt_s: float
    duration_s: float
    description: str
    spike_times: tuple[np.ndarray, ...]  # per unit, seconds on the session clock, sorted
    unit_area: np.ndarray  # (n_units,) str
    trials: dict[str, np.ndarray]  # trials-table columns; start_time and stop_time first
    trial_descriptions: dict[str, str]  # description of every other column
    behavior: tuple[Series, ...]
    truth: xr.Dataset  # kind "truth"
    teacher: dict[str, np.ndarray] | None = None  # flipflop: W, U, b, readout_weight, readout_bias

    @property
    def n_units(self) -> int:
        return len(self.spike_times)


def configure(cls: type, config: Any, n_trials: int | None) -> Any:
    """``config`` (default ``cls()``) with ``n_trials`` replaced when given; validated once."""
    cfg = config if config is not None else cls()
    if not isinstance(cfg, cls):
        raise ConfigError(f"simulate: config must be a {cls.__name__}, got {type(cfg).__name__}")
    return replace(cfg, n_trials=n_trials) if n_trials is not None else cfg


def poisson_spikes(rates: np.ndarray, dt_s: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Draw spike times from rates that are constant within each step of a grid starting at 0.

    Parameters
    ----------
    rates : (n_steps, n_units) firing rates in Hz.
    dt_s : step length in seconds.
    rng : the only source of randomness.

    Returns
    -------
    tuple of arrays
        Sorted spike times (s) of each unit: Poisson(rate * dt) spikes per step, uniform inside it.

    Examples
    --------
    >>> st = poisson_spikes(np.full((1000, 2), 20.0), 0.005, np.random.default_rng(0))
    >>> len(st), 70 < len(st[0]) < 130
    (2, True)
    """
    counts = rng.poisson(rates * dt_s)
    step, unit = np.nonzero(counts)
    n = counts[step, unit]
    step, unit = np.repeat(step, n), np.repeat(unit, n)
    times = (step + rng.random(step.size)) * dt_s
    order = np.lexsort((times, unit))
    bounds = np.concatenate([[0], np.cumsum(counts.sum(0))])
    times = times[order]
    return tuple(times[bounds[u]:bounds[u + 1]] for u in range(rates.shape[1]))


def exp_rates(latents: np.ndarray, C: np.ndarray, target_hz: np.ndarray,
              max_rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Rates ``exp(baseline + latents @ C.T)`` (Hz, capped), baselines giving each unit its session-mean target.

    Examples
    --------
    >>> r, b = exp_rates(np.random.default_rng(0).normal(size=(500, 2)), np.ones((3, 2)), np.full(3, 10.0), 1e9)
    >>> np.allclose(r.mean(0), 10.0)
    True
    """
    drive = latents @ C.T
    top = drive.max(0)
    baseline = np.log(target_hz) - (np.log(np.exp(drive - top).mean(0)) + top)
    return np.minimum(np.exp(baseline + drive), max_rate_hz), baseline


def new_truth(task: str, seed: int, cfg: CommonConfig, rates: np.ndarray, latents: np.ndarray, time: np.ndarray,
              **attrs: Any) -> xr.Dataset:
    """A ``truth`` dataset around rates (trial, time, unit) in Hz and latents (trial, time, latent)."""
    ds = xr.Dataset(
        {"rates": (("trial", "time", "unit"), rates.astype("float32"), {"units": "Hz"}),
         "latents": (("trial", "time", "latent"), latents.astype("float32"))},
        coords={"trial": np.arange(rates.shape[0]), "unit": np.arange(rates.shape[2]),
                "time": ("time", np.asarray(time, float), {"units": "s"}), "latent": np.arange(latents.shape[2])},
    )
    ds.attrs.update(convention.base_attrs("truth"))
    ds.attrs.update(task=task, seed=int(seed), dt_s=float(cfg.dt_s), n_trials=int(cfg.n_trials),
                    config=cfg.to_json(), **attrs)
    return ds


def simulate_reach(*, seed: int = 0, n_trials: int | None = None, config: Any = None) -> Recording:
    """Reach task; see :func:`cortexfit.simulate.tasks.simulate_reach`."""
    from cortexfit.simulate import tasks

    return tasks.simulate_reach(seed=seed, n_trials=n_trials, config=config)


def simulate_flipflop(*, seed: int = 0, n_trials: int | None = None, config: Any = None) -> Recording:
    """3-bit flip-flop task; see :func:`cortexfit.simulate.tasks.simulate_flipflop` (imports torch)."""
    from cortexfit.simulate import tasks

    return tasks.simulate_flipflop(seed=seed, n_trials=n_trials, config=config)


# ---------------------------------------------------------------------------------------------- output
def truth_path(out: str | os.PathLike) -> Path:
    """``OUT.nwb`` -> ``OUT.truth.nc``.

    >>> truth_path("data/reach.nwb").as_posix()
    'data/reach.truth.nc'
    """
    return Path(out).with_suffix(".truth.nc")


def teacher_dir(out: str | os.PathLike) -> Path:
    """``OUT.nwb`` -> ``OUT.teacher`` (folder of the flip-flop teacher's ``model.pt``).

    >>> teacher_dir("data/flipflop.nwb").as_posix()
    'data/flipflop.teacher'
    """
    return Path(out).with_suffix(".teacher")


def _nwbfile(rec: Recording):
    from pynwb import NWBFile, TimeSeries
    from pynwb.behavior import Position, SpatialSeries

    nwb = NWBFile(session_description=rec.description, identifier=f"cortexfit-simulate-{rec.task}-seed{rec.seed}",
                  session_start_time=SESSION_START, session_id=f"{rec.task}-seed{rec.seed}",
                  notes=f"ground truth in the .truth.nc file beside this one; dt {rec.dt_s} s")
    device = nwb.create_device(name="simulation", description="cortexfit simulate (no physical device)")
    groups = {}
    for area in dict.fromkeys(rec.unit_area.tolist()):
        groups[area] = nwb.create_electrode_group(name=f"{area}_array", description=f"simulated electrodes in {area}",
                                                  location=area, device=device)
    for area in rec.unit_area.tolist():
        nwb.add_electrode(group=groups[area], location=area)
    nwb.add_unit_column(name="area", description="brain area of the unit (also its electrode's location)")
    obs = [[0.0, rec.duration_s]]
    for i, (spikes, area) in enumerate(zip(rec.spike_times, rec.unit_area.tolist())):
        nwb.add_unit(spike_times=spikes, obs_intervals=obs, electrodes=[i], area=area)
    extra = [c for c in rec.trials if c not in ("start_time", "stop_time")]
    for col in extra:
        nwb.add_trial_column(name=col, description=rec.trial_descriptions.get(col, col))
    for k in range(len(rec.trials["start_time"])):
        nwb.add_trial(**{c: rec.trials[c][k] for c in rec.trials})
    module = nwb.create_processing_module(name="behavior", description="simulated behaviour and task signals")
    position = None
    for s in rec.behavior:
        common = {"name": s.name, "data": s.data, "rate": float(s.rate_hz), "starting_time": float(s.starting_time),
                  "unit": s.unit, "description": s.description}
        if s.kind == "position":
            if position is None:
                position = Position(name="Position")
                module.add(position)
            position.add_spatial_series(SpatialSeries(reference_frame="centre target at (0, 0)", **common))
        else:
            module.add(TimeSeries(**common))
    return nwb


def write_nwb(recording: Recording, path: str | os.PathLike) -> Path:
    """Write a :class:`Recording` as NWB with pynwb, atomically (temp file in the same folder + rename).

    Examples
    --------
    >>> rec = simulate_reach(seed=0, n_trials=8)                # doctest: +SKIP
    >>> write_nwb(rec, "reach.nwb")                             # doctest: +SKIP
    PosixPath('reach.nwb')
    """
    from pynwb import NWBHDF5IO

    path = Path(path)
    with atomic_path(path, suffix=".tmp.nwb") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        nwb = _nwbfile(recording)
        with NWBHDF5IO(str(tmp), "w") as io:
            io.write(nwb)
    return path


def save_teacher(recording: Recording, folder: str | os.PathLike) -> Path | None:
    """Save the flip-flop teacher as ``folder/model.pt`` (``vanilla``, tanh) when :mod:`cortexfit.models` exists.

    Returns the file, or ``None`` (with a logged warning) when the models package is unavailable or its
    ``vanilla`` family does not reproduce the teacher's step exactly.
    """
    t = recording.teacher
    if t is None:
        return None
    try:
        import torch

        from cortexfit.models import build_dynamics, save_model

        H, n_in = t["U"].shape
        net = build_dynamics("vanilla", input_size=n_in, hidden_size=H, nonlinearity="tanh")
        params = dict(net.named_parameters())
        with torch.no_grad():
            for name, key in (("weight_hh", "W"), ("weight_ih", "U"), ("bias", "b")):
                params[name].copy_(torch.from_numpy(t[key]))
            h, u = torch.rand(4, H, dtype=torch.float64) * 2 - 1, torch.rand(4, n_in, dtype=torch.float64)
            want = np.tanh(h.numpy() @ t["W"].T + u.numpy() @ t["U"].T + t["b"])
            got = net.step(h.to(params["bias"].dtype), u.to(params["bias"].dtype)).double().numpy()
        if not np.allclose(got, want, atol=1e-4):
            raise ValueError("the vanilla family's step differs from h <- tanh(W h + U u + b)")
        readout = torch.nn.Linear(H, t["readout_weight"].shape[0])
        with torch.no_grad():
            readout.weight.copy_(torch.from_numpy(t["readout_weight"]))
            readout.bias.copy_(torch.from_numpy(t["readout_bias"]))
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"type": "linear", "in_features": H, "out_features": int(readout.out_features)}
        meta = {"dt_s": recording.dt_s, "task": recording.task, "seed": recording.seed, "source": "cortexfit simulate",
                "readout": "readout(h) = sign targets of the 3 flip-flop channels"}
        return save_model(folder / "model.pt", net, modules={"readout": readout}, module_specs={"readout": spec},
                          meta=meta)
    except (ImportError, AttributeError, KeyError, TypeError, ValueError, RuntimeError, ConfigError) as exc:
        log.warning("flipflop: teacher not saved in the model format (%s: %s)", type(exc).__name__, exc)
        return None


def _prepare_folder(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SimulateError(f"{out}: output folder is not writable ({exc.strerror or exc})") from None


def run(task: str, out: str | os.PathLike, *, seed: int = 0, n_trials: int | None = None) -> Path:
    """Simulate ``task`` and write ``out`` (NWB), ``OUT.truth.nc`` and, for flipflop, ``OUT.teacher/model.pt``.

    Parameters
    ----------
    task : ``"reach"`` or ``"flipflop"``.
    out : the NWB file to write (must end with ``.nwb``).
    seed : random seed (same seed, same spike times).
    n_trials : number of trials (default: 160 for reach, 100 for flipflop).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ConfigError
        Unknown task, bad ``out`` suffix or option.
    SimulateError
        The output folder is not writable, or the simulation cannot be produced.

    Examples
    --------
    >>> run("reach", "reach.nwb", seed=1, n_trials=16)           # doctest: +SKIP
    PosixPath('reach.nwb')
    """
    if task not in TASKS:
        raise ConfigError(f"simulate: unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    out = Path(out)
    if out.suffix != ".nwb":
        raise ConfigError(f"{out}: the output file must end with .nwb")
    _prepare_folder(out)
    simulate = simulate_reach if task == "reach" else simulate_flipflop
    rec = simulate(seed=seed, n_trials=n_trials)
    truth = truth_path(out)
    try:
        convention.write_dataset(rec.truth, truth, "truth")
        try:
            write_nwb(rec, out)
        except BaseException:
            truth.unlink(missing_ok=True)  # no truth without its recording
            raise
    except OSError as exc:
        raise SimulateError(f"{out}: cannot write the simulated recording ({exc.strerror or exc})") from None
    if rec.teacher is not None:
        save_teacher(rec, teacher_dir(out))
    rates = np.array([len(s) for s in rec.spike_times]) / rec.duration_s
    log.info("%s: %s, %d trials, %d units (mean rate %.1f Hz, %.1f-%.1f), truth in %s", out, task,
             len(rec.trials["start_time"]), rec.n_units, rates.mean(), rates.min(), rates.max(), truth.name)
    return out
