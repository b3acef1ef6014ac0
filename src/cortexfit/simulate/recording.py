"""The recording model every simulated task shares, and how a recording is written.

A task simulator (:mod:`cortexfit.simulate.reach`, :mod:`cortexfit.simulate.flipflop`) returns a
:class:`Recording`: spike times per unit, a trials table, behaviour and task inputs (:class:`Series`) and the
ground truth as an :class:`xarray.Dataset` of kind ``truth`` (built by :func:`new_truth`).  :func:`write_nwb`
writes it as NWB -- behaviour in ``processing['behavior']``, task inputs where NWB keeps what was presented to
the subject, ``stimulus/presentation`` (``NWBFile.add_stimulus``) -- and :func:`save_teacher` saves the
flip-flop teacher network in the project's model format.

Both tasks run on one session clock sampled every ``dt_s`` seconds.  Units are inhomogeneous Poisson
processes whose rate is constant within each step (:func:`poisson_spikes`): the count of a step is
Poisson(rate * dt) and the spikes are placed uniformly inside it, so binning the NWB file on the same grid
recovers exactly the counts drawn from ``truth.rates``.  Rates are ``exp(baseline + C @ latent)``
(:func:`exp_rates`) with ``C`` random (:func:`random_readout`) and the baselines set so every unit's
session-mean rate equals a target drawn from ``mean_rate_hz``.

Sessions of one system (``session=K``) share what defines the dynamics and redraw the units, trials and spikes
from :func:`session_rng`; :func:`check_session` validates the ``session`` and ``n_units`` options.

Importing this module does not import torch or pynwb.

Examples
--------
>>> cfg = CommonConfig(n_trials=2)
>>> rates = np.full((2, 10, 3), 5.0)
>>> new_truth("demo", 0, cfg, rates, np.zeros((2, 10, 1)), np.arange(10) * cfg.dt_s).rates.sizes["unit"]
3
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from cortexfit.core import convention
from cortexfit.core.errors import ConfigError, SimulateError
from cortexfit.core.fileio import atomic_path

SESSION_START = _dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc)

C = TypeVar("C", bound="CommonConfig")


# ------------------------------------------------------------------------------------------ options
def check_option(name: str, ok: bool, what: str) -> None:
    """Raise a one-line :class:`ConfigError` ``simulate: option NAME WHAT`` unless ``ok``.

    >>> check_option("n_trials", False, "must be >= 1")
    Traceback (most recent call last):
    ...
    cortexfit.core.errors.ConfigError: simulate: option n_trials must be >= 1
    """
    if not ok:
        raise ConfigError(f"simulate: option {name} {what}")


@dataclass(frozen=True, kw_only=True)
class CommonConfig:
    """Options shared by the tasks (see :class:`~cortexfit.simulate.reach.ReachConfig` and
    :class:`~cortexfit.simulate.flipflop.FlipflopConfig`)."""

    n_trials: int
    dt_s: float = 0.005  # simulation step = rate bin = behaviour sample interval
    mean_rate_hz: tuple[float, float] = (6.0, 24.0)  # session-mean rate of each unit ~ U(lo, hi)
    readout_gain: float = 0.6  # std of the log-rate readout weights per unit-size latent
    max_rate_hz: float = 200.0

    def __post_init__(self) -> None:
        check_option("n_trials", isinstance(self.n_trials, int) and self.n_trials >= 1,
                     f"must be >= 1, got {self.n_trials}")
        check_option("dt_s", 0.001 <= self.dt_s <= 0.005, f"must be in [0.001, 0.005] s, got {self.dt_s}")
        lo, hi = self.mean_rate_hz
        check_option("mean_rate_hz", 0 < lo <= hi < self.max_rate_hz,
                     f"must be 0 < lo <= hi < max_rate_hz, got {lo, hi}")
        check_option("readout_gain", self.readout_gain >= 0, "must be >= 0")

    def to_json(self) -> str:
        """The options as sorted JSON (stored in ``truth.attrs["config"]``)."""
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, sort_keys=True)


def check_session(session: int | None, n_units: int | None) -> None:
    """Validate the ``session`` and ``n_units`` options: ``None`` or an int >= 1 (one-line :class:`ConfigError`).

    >>> check_session(0, None)
    Traceback (most recent call last):
    ...
    cortexfit.core.errors.ConfigError: simulate: option session must be an integer >= 1, got 0
    """
    for name, value in (("session", session), ("n_units", n_units)):
        ok = value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1)
        check_option(name, ok, f"must be an integer >= 1, got {value!r}")


def session_rng(seed: int, task_key: int, session: int) -> np.random.Generator:
    """The generator of one session's units, trials and spikes: seeded by ``(seed, task_key, session)``.

    ``task_key`` is the task's constant (reach 1, flipflop 2), the same one its single-session generator
    ``SeedSequence([seed, task_key])`` uses, so sessions never share a stream with it or with each other.
    ``session = 0`` is no session: reach draws the system its sessions share from that stream.

    >>> a, b = session_rng(0, 2, 1).random(), session_rng(0, 2, 2).random()
    >>> a != b, a == session_rng(0, 2, 1).random()
    (True, True)
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(task_key), int(session)]))


def session_attrs(session: int | None, n_units: int | None) -> dict[str, int]:
    """Truth attrs of the session options that were given: ``session`` and ``n_units`` (none for ``None``).

    >>> session_attrs(2, None), session_attrs(None, None)
    ({'session': 2}, {})
    """
    given = {"session": session, "n_units": n_units}
    return {k: int(v) for k, v in given.items() if v is not None}


def configure(cls: type[C], config: C | None, n_trials: int | None) -> C:
    """``config`` (default ``cls()``) with ``n_trials`` replaced when given; validated once.

    >>> configure(CommonConfig, CommonConfig(n_trials=5), 3).n_trials
    3
    """
    cfg = config if config is not None else cls()  # type: ignore[call-arg]
    if not isinstance(cfg, cls):
        raise ConfigError(f"simulate: config must be a {cls.__name__}, got {type(cfg).__name__}")
    return replace(cfg, n_trials=n_trials) if n_trials is not None else cfg


# ------------------------------------------------------------------------------------------ data model
@dataclass(frozen=True, kw_only=True)
class Series:
    """One behavioural or stimulus signal on the session clock (``data[i]`` at ``starting_time + i / rate_hz``)."""

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
    stimulus: tuple[Series, ...] = ()  # task inputs, written to stimulus/presentation
    session: int | None = None  # k >= 1: session k of the system of `seed` (own units, trials, spikes)

    @property
    def name(self) -> str:
        """``TASK-seedN`` or ``TASK-seedN-sessionK`` (the NWB file's ``session_id``)."""
        base = f"{self.task}-seed{self.seed}"
        return base if self.session is None else f"{base}-session{self.session}"

    @property
    def n_units(self) -> int:
        return len(self.spike_times)


# ------------------------------------------------------------------------------------------ units
def random_readout(n_latents: int, n_units: int, cfg: CommonConfig,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random log-rate readout ``C`` (unit, latent) ~ N(0, readout_gain) and per-unit target mean rates.

    >>> C, target = random_readout(2, 3, CommonConfig(n_trials=1), np.random.default_rng(0))
    >>> C.shape, bool(np.all((6 <= target) & (target <= 24)))
    ((3, 2), True)
    """
    return rng.normal(0.0, cfg.readout_gain, size=(n_units, n_latents)), rng.uniform(*cfg.mean_rate_hz, size=n_units)


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
    return capped_rates(latents, C, baseline, max_rate_hz), baseline


def capped_rates(latents: np.ndarray, C: np.ndarray, baseline: np.ndarray, max_rate_hz: float) -> np.ndarray:
    """The simulated units' rates (Hz) at ``latents``: ``min(exp(baseline + latents @ C.T), max_rate_hz)``.

    Examples
    --------
    >>> capped_rates(np.zeros((1, 2)), np.eye(2), np.array([0.0, 1.0]), 2.0).round(3).tolist()
    [[1.0, 2.0]]
    """
    return np.minimum(np.exp(baseline + latents @ C.T), max_rate_hz)


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

    nwb = NWBFile(session_description=rec.description, identifier=f"cortexfit-simulate-{rec.name}",
                  session_start_time=SESSION_START, session_id=rec.name,
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
    for s in rec.stimulus:  # what drives the network: stimulus/presentation, never behaviour
        nwb.add_stimulus(TimeSeries(name=s.name, data=s.data, rate=float(s.rate_hz), starting_time=float(s.starting_time),
                                    unit=s.unit, description=s.description))
    return nwb


def write_nwb(recording: Recording, path: str | os.PathLike) -> Path:
    """Write a :class:`Recording` as NWB with pynwb, atomically (temp file in the same folder + rename).

    Examples
    --------
    >>> from cortexfit.simulate.reach import simulate_reach
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
    """Save the flip-flop teacher as ``folder/model.pt`` (model family ``vanilla``, tanh, linear readout).

    Returns the file, or ``None`` when the recording has no teacher (reach).

    Raises
    ------
    SimulateError
        One line, when the teacher cannot be saved (the model package rejects it, its ``vanilla`` family does
        not reproduce the teacher's step ``h <- tanh(W h + U u + b)`` exactly, or the file cannot be written).
        ``model.pt`` is written atomically, so nothing half-written is left behind.
    """
    if recording.teacher is None:
        return None
    path = Path(folder) / "model.pt"
    try:
        return _save_teacher(recording.teacher, recording, path)
    except (ImportError, AttributeError, KeyError, TypeError, ValueError, RuntimeError, OSError,
            ConfigError) as exc:
        msg = " ".join(str(exc).split())
        raise SimulateError(f"{path}: cannot save the flip-flop teacher ({type(exc).__name__}: {msg})") from None


def _save_teacher(t: dict[str, np.ndarray], recording: Recording, path: Path) -> Path:
    """Copy the teacher's weights into a ``vanilla`` model, check its step, save it with a linear readout."""
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
    spec = {"type": "linear", "in_features": H, "out_features": int(readout.out_features)}
    meta = {"dt_s": recording.dt_s, "task": recording.task, "seed": recording.seed, "source": "cortexfit simulate",
            "readout": "readout(h) = sign targets of the 3 flip-flop channels"}
    return save_model(path, net, modules={"readout": readout}, module_specs={"readout": spec}, meta=meta)
