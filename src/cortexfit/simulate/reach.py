"""The reach task: a PMd/M1 session of centre-out reaches with rotational latent dynamics.

After target onset the latents approach a condition-dependent preparatory state; shortly before movement
onset they rotate (damped, ``dx/dt = A x``, one plane per frequency) from there, while a condition-independent
bump marks movement onset.  Units read the latents out through ``exp`` (see
:mod:`cortexfit.simulate.recording`); the hand makes a minimum-jerk reach to the target.  The task inputs
(the target's position while it is shown, and a one-step go cue) are written as stimulus series.

Examples
--------
>>> rec = simulate_reach(seed=1, n_trials=16)
>>> rec.n_units, len(rec.trials["start_time"]), rec.truth.attrs["rotation_freq_hz"]
(100, 16, 2.0)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import xarray as xr

from cortexfit.simulate.recording import (
    CommonConfig,
    Recording,
    Series,
    check_option,
    check_session,
    configure,
    exp_rates,
    new_truth,
    poisson_spikes,
    random_readout,
    session_attrs,
    session_rng,
)

log = logging.getLogger("cortexfit.simulate")


@dataclass(frozen=True, kw_only=True)
class ReachConfig(CommonConfig):
    """Options of the reach simulation (rotational dynamics after condition-dependent preparation).

    Latents: plane ``p`` rotates at ``plane_freqs_hz[p]`` with decay ``damping_per_s`` from the preparatory
    state reached during the delay; a last latent is a condition-independent bump at movement onset.
    ``truth.attrs["rotation_freq_hz"]`` is the fastest plane's frequency (by default also the largest plane,
    the one jPCA's first plane finds); ``plane_freqs_hz`` lists them all.
    """

    n_trials: int = 160
    areas: tuple[str, ...] = ("PMd", "M1")
    units_per_area: int = 50
    plane_freqs_hz: tuple[float, ...] = (2.0, 1.2)
    plane_amplitudes: tuple[float, ...] = (1.0, 0.6)
    damping_per_s: float = 0.5
    n_conditions: int = 8
    prep_tau_s: float = 0.1  # approach to the preparatory state after target onset
    rotation_lead_s: float = 0.25  # rotations start this long before movement onset (after the go cue)
    cis_amplitude: float = 1.0
    trial_noise: float = 0.05  # std of the per-trial jitter of the preparatory state (relative)
    delay_s: tuple[float, float] = (0.3, 0.6)  # target onset -> go cue
    rt_s: tuple[float, float] = (0.3, 0.4)  # go cue -> movement onset
    after_move_s: float = 0.6  # movement onset -> trial end
    gap_s: tuple[float, float] = (0.2, 0.4)  # inter-trial interval
    reach_distance_m: float = 0.08
    reach_duration_s: float = 0.3
    window_ms: tuple[float, float] = (-250.0, 450.0)  # truth window around move_onset_time

    def __post_init__(self) -> None:
        super().__post_init__()
        check_option("plane_freqs_hz", len(self.plane_freqs_hz) == len(self.plane_amplitudes) >= 1,
                     "and plane_amplitudes must have the same length >= 1")
        check_option("plane_freqs_hz", all(f > 0 for f in self.plane_freqs_hz), "must be positive")
        check_option("damping_per_s", self.damping_per_s >= 0, "must be >= 0")
        check_option("units_per_area", self.units_per_area >= 1 and len(self.areas) >= 1, "must be >= 1")
        check_option("n_conditions", self.n_conditions >= 1, "must be >= 1")
        check_option("window_ms", -self.window_ms[0] <= 1000 * (self.rt_s[0] + self.delay_s[0] + 0.1)
                     and self.window_ms[1] <= 1000 * self.after_move_s and self.window_ms[0] < self.window_ms[1],
                     "must lie inside every trial (after target onset, before trial end)")
        check_option("rotation_lead_s", 0 <= self.rotation_lead_s < self.rt_s[0], "must be in [0, min RT)")


@dataclass(frozen=True)
class _Layout:
    """Trial events as step indices on the session grid (``dt_s`` steps from 0)."""

    cond: np.ndarray
    angle: np.ndarray  # reach direction (deg)
    start: np.ndarray
    target_on: np.ndarray
    go: np.ndarray
    move: np.ndarray
    stop: np.ndarray
    n_steps: int


def _minjerk(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 0.0, 1.0)
    return s**3 * (10 - 15 * s + 6 * s**2)


def rotation_matrix(freqs_hz: tuple[float, ...], damping_per_s: float) -> np.ndarray:
    """Block-diagonal continuous-time A (1/s) with eigenvalues ``-damping +- 2 pi i f`` for each ``f``.

    Examples
    --------
    >>> A = rotation_matrix((2.0,), 0.5)
    >>> round(float(np.abs(np.linalg.eigvals(A).imag).max() / (2 * np.pi)), 9)
    2.0
    """
    blocks = [np.array([[-damping_per_s, -2 * np.pi * f], [2 * np.pi * f, -damping_per_s]]) for f in freqs_hz]
    return scipy.linalg.block_diag(*blocks)


def _layout(cfg: ReachConfig, rng: np.random.Generator) -> _Layout:
    """Conditions and trial events: delay, reaction time and inter-trial gap drawn per trial."""
    dt, n = cfg.dt_s, cfg.n_trials
    steps = lambda s: round(s / dt)
    cond = rng.permutation(np.resize(np.arange(cfg.n_conditions), n))
    angle = 360.0 * cond / cfg.n_conditions
    start = np.empty(n, int)
    t = steps(0.5)
    target_on, go, move, stop = (np.empty(n, int) for _ in range(4))
    for k in range(n):
        start[k] = t
        target_on[k] = t + steps(0.1)
        go[k] = target_on[k] + rng.integers(steps(cfg.delay_s[0]), steps(cfg.delay_s[1]) + 1)
        move[k] = go[k] + rng.integers(steps(cfg.rt_s[0]), steps(cfg.rt_s[1]) + 1)
        stop[k] = move[k] + steps(cfg.after_move_s)
        t = stop[k] + rng.integers(steps(cfg.gap_s[0]), steps(cfg.gap_s[1]) + 1)
    return _Layout(cond, angle, start, target_on, go, move, stop, int(stop[-1] + steps(0.5)))


def _prep_states(cfg: ReachConfig, rng: np.random.Generator) -> np.ndarray:
    """(condition, 2P) preparatory states: condition ``c`` at phase ``(p + 1) * 2 pi c / n_conditions`` plus a
    random offset in plane ``p``, scaled by the plane's amplitude, plus a little noise."""
    P = len(cfg.plane_freqs_hz)
    prep = np.zeros((cfg.n_conditions, 2 * P))
    th_c = 2 * np.pi * np.arange(cfg.n_conditions) / cfg.n_conditions
    for p, amp in enumerate(cfg.plane_amplitudes):
        phase = (p + 1) * th_c + rng.uniform(0, 2 * np.pi)
        prep[:, 2 * p:2 * p + 2] = amp * np.stack([np.cos(phase), np.sin(phase)], 1)
    prep += 0.1 * rng.normal(size=prep.shape) * np.repeat(cfg.plane_amplitudes, 2)
    return prep


def _latents(cfg: ReachConfig, lay: _Layout, prep: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Latents (step, 2P + 1): the preparatory state of each trial's condition (jittered per trial), then
    damped rotations, plus a condition-independent bump at movement onset.  Returns ``(X, A)``."""
    dt, P = cfg.dt_s, len(cfg.plane_freqs_hz)
    A = rotation_matrix(cfg.plane_freqs_hz, cfg.damping_per_s)
    lead = round(cfg.rotation_lead_s / dt)
    max_rot = int((lay.stop - lay.move).max()) + lead
    phi = scipy.linalg.expm(A[None] * ((np.arange(max_rot) + 0.5) * dt)[:, None, None])  # (tau, 2P, 2P)
    X = np.zeros((lay.n_steps, 2 * P + 1))
    tc = (np.arange(lay.n_steps) + 0.5) * dt  # step centres
    for k in range(cfg.n_trials):
        x0 = prep[lay.cond[k]] * (1 + cfg.trial_noise * rng.normal(size=2 * P))
        r = lay.move[k] - lead
        s = slice(lay.target_on[k], r)
        X[s, :2 * P] = x0 * (1 - np.exp(-(tc[s] - lay.target_on[k] * dt) / cfg.prep_tau_s))[:, None]
        xr_ = x0 * (1 - np.exp(-(r - lay.target_on[k]) * dt / cfg.prep_tau_s))
        X[r:lay.stop[k], :2 * P] = phi[: lay.stop[k] - r] @ xr_
        s = slice(lay.start[k], lay.stop[k])
        X[s, -1] = cfg.cis_amplitude * np.exp(-0.5 * ((tc[s] - lay.move[k] * dt - 0.05) / 0.12) ** 2)
    return X, A


def _unit_areas(cfg: ReachConfig, n_units: int | None) -> np.ndarray:
    """Area of each unit: ``units_per_area`` per area, or ``n_units`` split as evenly as possible (the first
    areas get one more; an area left without units is not recorded).

    >>> _unit_areas(ReachConfig(), 5).tolist()
    ['PMd', 'PMd', 'PMd', 'M1', 'M1']
    """
    k = len(cfg.areas)
    counts = [cfg.units_per_area] * k if n_units is None else [n_units // k + (i < n_units % k) for i in range(k)]
    return np.repeat(np.array(cfg.areas), counts)


def _hand(cfg: ReachConfig, lay: _Layout, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Hand position and velocity: minimum-jerk reach to the target from movement onset, back in the gap."""
    dt, n = cfg.dt_s, cfg.n_trials
    tc = (np.arange(lay.n_steps) + 0.5) * dt
    theta = np.deg2rad(lay.angle)
    jitter = np.deg2rad(3.0) * rng.normal(size=n)
    tgt = cfg.reach_distance_m * np.stack([np.cos(theta + jitter), np.sin(theta + jitter)], 1)
    pos = np.zeros((lay.n_steps, 2))
    for k in range(n):
        s = slice(lay.move[k], lay.stop[k])
        pos[s] = tgt[k] * _minjerk((tc[s] - lay.move[k] * dt) / cfg.reach_duration_s)[:, None]
        nxt = lay.start[k + 1] if k + 1 < n else lay.n_steps
        s = slice(lay.stop[k], nxt)
        pos[s] = tgt[k] * (1 - _minjerk((tc[s] - lay.stop[k] * dt) / ((nxt - lay.stop[k]) * dt)))[:, None]
    vel: np.ndarray = np.gradient(pos, dt, axis=0)  # type: ignore[assignment]  # one axis: one array
    return pos, vel


#: Channels of the reach task's inputs, as ``cortexfit ingest`` names the stimulus series' columns.
INPUT_CHANNELS = ("target_position_x", "target_position_y", "go_cue")


def _task_inputs(cfg: ReachConfig, lay: _Layout) -> np.ndarray:
    """(step, 3) task inputs on the session grid: the target's position (x, y; m) from target onset to the
    trial's end (0 otherwise), and the go cue (1 during the go-cue step, 0 otherwise)."""
    theta = np.deg2rad(lay.angle)
    u = np.zeros((lay.n_steps, 3))
    for k in range(cfg.n_trials):
        u[lay.target_on[k]:lay.stop[k], 0] = cfg.reach_distance_m * np.cos(theta[k])
        u[lay.target_on[k]:lay.stop[k], 1] = cfg.reach_distance_m * np.sin(theta[k])
        u[lay.go[k], 2] = 1.0
    return u


def _truth(cfg: ReachConfig, seed: int, lay: _Layout, R: np.ndarray, X: np.ndarray, *, A: np.ndarray,
           prep: np.ndarray, C: np.ndarray, baseline: np.ndarray, area: np.ndarray, U: np.ndarray,
           extra: dict[str, int]) -> xr.Dataset:
    """The truth dataset: rates and latents in a window around movement onset, ``A``, readout, baselines."""
    dt, P = cfg.dt_s, len(cfg.plane_freqs_hz)
    w0, w1 = round(cfg.window_ms[0] / 1000 / dt), round(cfg.window_ms[1] / 1000 / dt)
    idx = lay.move[:, None] + np.arange(w0, w1)[None]
    time = (np.arange(w0, w1) + 0.5) * dt
    planes = [f"rot{p + 1}_{ax}" for p in range(P) for ax in "xy"]
    truth = new_truth(
        "reach", seed, cfg, R[idx], X[idx], time, align_event="move_onset_time",
        window_start_s=w0 * dt, window_stop_s=w1 * dt, rotation_freq_hz=float(max(cfg.plane_freqs_hz)),
        plane_freqs_hz=np.asarray(cfg.plane_freqs_hz, float), plane_amplitudes=np.asarray(cfg.plane_amplitudes, float),
        damping_per_s=float(cfg.damping_per_s), **extra,
    )
    truth = truth.assign_coords(latent=planes + ["cis"], area=("unit", area), condition=("trial", lay.cond),
                                reach_angle=("trial", lay.angle), move_onset_time=("trial", lay.move * dt))
    truth["A"] = (("rot_out", "rot_in"), A, {"units": "1/s", "long_name": "dx/dt = A x of the rotational latents"})
    truth = truth.assign_coords(rot_out=planes, rot_in=planes)
    truth["readout"] = (("unit", "latent"), C, {"long_name": "log-rate weights"})
    truth["log_baseline"] = (("unit",), baseline, {"units": "log Hz"})
    truth["prep_states"] = (("condition_id", "rot_in"), prep)
    truth["inputs"] = (("trial", "time", "channel"), U[idx].astype("float32"),
                       {"long_name": "task inputs as written to stimulus/presentation"})
    truth = truth.assign_coords(channel=list(INPUT_CHANNELS))
    return truth


def _trials(lay: _Layout, dt: float) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Trials-table columns (times in s) and the descriptions of the task's columns."""
    trials = {"start_time": lay.start * dt, "stop_time": lay.stop * dt, "condition": lay.cond.astype("int64"),
              "reach_angle": lay.angle, "target_on_time": lay.target_on * dt, "go_cue_time": lay.go * dt,
              "move_onset_time": lay.move * dt}
    descr = {"condition": "reach direction id (0..n_conditions-1)", "reach_angle": "reach direction (deg)",
             "target_on_time": "target onset (s)", "go_cue_time": "go cue (s)",
             "move_onset_time": "movement onset (s): go cue + reaction time"}
    return trials, descr


def simulate_reach(*, seed: int = 0, n_trials: int | None = None, config: ReachConfig | None = None,
                   session: int | None = None, n_units: int | None = None) -> Recording:
    """Simulate a PMd/M1 session of centre-out reaches with rotational latent dynamics.

    Parameters
    ----------
    seed : random seed; the same seed gives the same spike times.
    n_trials : number of trials (default ``config.n_trials``, 160 = 20 per reach direction).
    config : further options (:class:`ReachConfig`).
    session : ``None`` (one recording per seed, as always) or ``k >= 1``: session ``k`` of the latent system of
        ``seed``.  Sessions of one seed share ``A`` (from the config), the planes and the preparatory state of
        every condition (``prep_states``, drawn from a generator seeded by ``(seed, 1, 0)``, so it does not
        depend on a session's trial count); the units (``readout``, baselines), the trial layout, the per-trial
        jitter, the hand and the spikes come from a generator seeded by ``(seed, 1, session)``.  (Without a
        session the preparatory states are drawn from the recording's single stream as before, so they differ
        from the sessions'.)  The truth gets the attr ``session`` (absent without one).
    n_units : number of recorded units (default ``units_per_area`` per area), split as evenly as possible over
        ``config.areas``; also stored as the truth attr ``n_units``.

    Returns
    -------
    Recording
        Trials (condition, reach_angle, target_on_time, go_cue_time, move_onset_time), hand position and
        velocity, the task inputs (stimulus ``target_position`` and ``go_cue``) and the truth (latents, rates,
        ``A``, readout, ``inputs``, ``rotation_freq_hz``).

    Examples
    --------
    >>> rec = simulate_reach(seed=1, n_trials=16, config=ReachConfig(units_per_area=5))
    >>> rec.n_units, sorted(rec.trials)[:3]
    (10, ['condition', 'go_cue_time', 'move_onset_time'])
    """
    cfg = configure(ReachConfig, config, n_trials)
    check_session(session, n_units)
    dt = cfg.dt_s
    if session is None:  # one stream for everything (the order fixes the spikes of a seed)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
        lay = _layout(cfg, rng)
        prep = _prep_states(cfg, rng)
    else:  # the system from its own stream, the session's units, trials and spikes from another
        prep = _prep_states(cfg, session_rng(seed, 1, 0))
        rng = session_rng(seed, 1, session)
        lay = _layout(cfg, rng)
    X, A = _latents(cfg, lay, prep, rng)
    area = _unit_areas(cfg, n_units)
    C, target = random_readout(X.shape[1], len(area), cfg, rng)
    R, baseline = exp_rates(X, C, target, cfg.max_rate_hz)
    spikes = poisson_spikes(R, dt, rng)
    pos, vel = _hand(cfg, lay, rng)
    U = _task_inputs(cfg, lay)
    truth = _truth(cfg, seed, lay, R, X, A=A, prep=prep, C=C, baseline=baseline, area=area, U=U,
                   extra=session_attrs(session, n_units))
    trials, descr = _trials(lay, dt)
    behavior = (
        Series(name="hand_position", data=pos, rate_hz=1 / dt, unit="meters", kind="position",
               description="simulated hand position (x, y) relative to the centre target"),
        Series(name="hand_velocity", data=vel, rate_hz=1 / dt, unit="m/s", description="hand velocity (x, y)"),
    )
    stimulus = (
        Series(name="target_position", data=U[:, :2], rate_hz=1 / dt, unit="meters",
               description="position (x, y) of the reach target while it is shown (target onset to trial end), "
               "0 otherwise"),
        Series(name="go_cue", data=U[:, 2:], rate_hz=1 / dt, unit="a.u.",
               description="go cue: 1 during the step holding go_cue_time, 0 otherwise"),
    )
    log.info("reach: %d trials, %d units, %d spikes", cfg.n_trials, len(area), sum(map(len, spikes)))
    return Recording(task="reach", seed=int(seed), dt_s=dt, duration_s=lay.n_steps * dt, spike_times=spikes,
                     unit_area=area, trials=trials, trial_descriptions=descr, behavior=behavior, stimulus=stimulus,
                     truth=truth, session=None if session is None else int(session),
                     description="simulated PMd/M1 reaching session with rotational latent dynamics (cortexfit)")
