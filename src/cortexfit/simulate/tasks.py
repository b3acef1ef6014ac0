"""Ground-truth systems behind ``cortexfit simulate``: rotational reach dynamics and a 3-bit flip-flop RNN.

Each simulator returns a :class:`Recording` (spike times per unit, trials table, behaviour, and the ground
truth as an :class:`xarray.Dataset` of kind ``truth``); :mod:`cortexfit.simulate` writes it as NWB.

Both tasks run on one session clock sampled every ``dt_s`` seconds.  Units are inhomogeneous Poisson
processes whose rate is constant within each step: the count of a step is Poisson(rate * dt) and the
spikes are placed uniformly inside it, so binning the NWB file on the same grid recovers exactly the
counts drawn from ``truth.rates``.  Rates are ``exp(baseline + C @ latent)`` with ``C`` random and the
baselines set so every unit's session-mean rate equals a target drawn from ``mean_rate_hz``.

Importing this module does not import torch; :func:`simulate_flipflop` imports it to train the teacher.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from cortexfit.core.errors import SimulateError
from cortexfit.simulate import (
    CommonConfig,
    Recording,
    Series,
    check_option,
    configure,
    exp_rates,
    new_truth,
    poisson_spikes,
)

log = logging.getLogger("cortexfit.simulate")

__all__ = [
    "FlipflopConfig",
    "ReachConfig",
    "find_fixed_points",
    "flipflop_task",
    "rotation_matrix",
    "simulate_flipflop",
    "simulate_reach",
]


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


@dataclass(frozen=True, kw_only=True)
class FlipflopConfig(CommonConfig):
    """Options of the 3-bit flip-flop simulation (Sussillo & Barak 2013) driven by a trained teacher RNN."""

    n_trials: int = 100
    hidden_size: int = 64
    n_units: int = 60
    area: str = "RNN"
    trial_steps: int = 200  # fixed trial length in steps of dt_s
    pulse_prob: float = 0.015  # per step and channel, in the recording
    readout_gain: float = 1.5
    train_iters: int = 400
    train_steps: int = 150
    train_batch: int = 64
    train_pulse_prob: float = 0.03
    train_lr: float = 3e-3
    max_rounds: int = 3  # training rounds tried until the teacher has 8 stable fixed points
    n_fixed_point_inits: int = 512

    def __post_init__(self) -> None:
        super().__post_init__()
        check_option("hidden_size", self.hidden_size >= 8, "must be >= 8")
        check_option("n_units", self.n_units >= 1, "must be >= 1")
        check_option("trial_steps", self.trial_steps >= 2, "must be >= 2")
        check_option("pulse_prob", 0 < self.pulse_prob < 0.5 and 0 < self.train_pulse_prob < 0.5,
                     "must be in (0, 0.5)")


def _readout(n_latents: int, n_units: int, cfg: CommonConfig, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Random log-rate readout C (unit, latent) and per-unit target session-mean rates."""
    return rng.normal(0.0, cfg.readout_gain, size=(n_units, n_latents)), rng.uniform(*cfg.mean_rate_hz, size=n_units)


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


def simulate_reach(*, seed: int = 0, n_trials: int | None = None, config: ReachConfig | None = None) -> Recording:
    """Simulate a PMd/M1 session of centre-out reaches with rotational latent dynamics.

    Parameters
    ----------
    seed : random seed; the same seed gives the same spike times.
    n_trials : number of trials (default ``config.n_trials``, 160 = 20 per reach direction).
    config : further options (:class:`ReachConfig`).

    Returns
    -------
    Recording
        Trials (condition, reach_angle, target_on_time, go_cue_time, move_onset_time), hand position and
        velocity, and the truth (latents, rates, ``A``, readout, ``rotation_freq_hz``).

    Examples
    --------
    >>> rec = simulate_reach(seed=1, n_trials=16)
    >>> rec.n_units, len(rec.trials["start_time"]), rec.truth.attrs["rotation_freq_hz"]
    (100, 16, 2.0)
    """
    cfg = configure(ReachConfig, config, n_trials)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    dt, n, P = cfg.dt_s, cfg.n_trials, len(cfg.plane_freqs_hz)
    steps = lambda s: round(s / dt)
    # --- trial layout on the step grid
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
    n_steps = stop[-1] + steps(0.5)
    # --- latents: preparatory states per condition, then damped rotations; plus a condition-independent bump
    theta = np.deg2rad(angle[:, None])
    prep = np.zeros((cfg.n_conditions, 2 * P))
    th_c = 2 * np.pi * np.arange(cfg.n_conditions) / cfg.n_conditions
    for p, amp in enumerate(cfg.plane_amplitudes):
        phase = (p + 1) * th_c + rng.uniform(0, 2 * np.pi)
        prep[:, 2 * p:2 * p + 2] = amp * np.stack([np.cos(phase), np.sin(phase)], 1)
    prep += 0.1 * rng.normal(size=prep.shape) * np.repeat(cfg.plane_amplitudes, 2)
    A = rotation_matrix(cfg.plane_freqs_hz, cfg.damping_per_s)
    lead = steps(cfg.rotation_lead_s)
    max_rot = int((stop - move).max()) + lead
    phi = scipy.linalg.expm(A[None] * ((np.arange(max_rot) + 0.5) * dt)[:, None, None])  # (tau, 2P, 2P)
    X = np.zeros((n_steps, 2 * P + 1))
    tc = (np.arange(n_steps) + 0.5) * dt  # step centres
    for k in range(n):
        x0 = prep[cond[k]] * (1 + cfg.trial_noise * rng.normal(size=2 * P))
        r = move[k] - lead
        s = slice(target_on[k], r)
        X[s, :2 * P] = x0 * (1 - np.exp(-(tc[s] - target_on[k] * dt) / cfg.prep_tau_s))[:, None]
        xr_ = x0 * (1 - np.exp(-(r - target_on[k]) * dt / cfg.prep_tau_s))
        X[r:stop[k], :2 * P] = phi[: stop[k] - r] @ xr_
        s = slice(start[k], stop[k])
        X[s, -1] = cfg.cis_amplitude * np.exp(-0.5 * ((tc[s] - move[k] * dt - 0.05) / 0.12) ** 2)
    # --- units
    n_units = cfg.units_per_area * len(cfg.areas)
    C, target = _readout(X.shape[1], n_units, cfg, rng)
    R, baseline = exp_rates(X, C, target, cfg.max_rate_hz)
    spikes = poisson_spikes(R, dt, rng)
    area = np.repeat(np.array(cfg.areas), cfg.units_per_area)
    # --- hand: minimum-jerk reach to the target from movement onset, back to the centre in the gap
    jitter = np.deg2rad(3.0) * rng.normal(size=n)
    tgt = cfg.reach_distance_m * np.stack([np.cos(theta[:, 0] + jitter), np.sin(theta[:, 0] + jitter)], 1)
    pos = np.zeros((n_steps, 2))
    for k in range(n):
        s = slice(move[k], stop[k])
        pos[s] = tgt[k] * _minjerk((tc[s] - move[k] * dt) / cfg.reach_duration_s)[:, None]
        nxt = start[k + 1] if k + 1 < n else n_steps
        s = slice(stop[k], nxt)
        pos[s] = tgt[k] * (1 - _minjerk((tc[s] - stop[k] * dt) / ((nxt - stop[k]) * dt)))[:, None]
    vel = np.gradient(pos, dt, axis=0)
    # --- truth window around movement onset
    w0, w1 = steps(cfg.window_ms[0] / 1000), steps(cfg.window_ms[1] / 1000)
    idx = move[:, None] + np.arange(w0, w1)[None]
    time = (np.arange(w0, w1) + 0.5) * dt
    planes = [f"rot{p + 1}_{ax}" for p in range(P) for ax in "xy"]
    truth = new_truth(
        "reach", seed, cfg, R[idx], X[idx], time, align_event="move_onset_time",
        window_start_s=w0 * dt, window_stop_s=w1 * dt, rotation_freq_hz=float(max(cfg.plane_freqs_hz)),
        plane_freqs_hz=np.asarray(cfg.plane_freqs_hz, float), plane_amplitudes=np.asarray(cfg.plane_amplitudes, float),
        damping_per_s=float(cfg.damping_per_s),
    )
    truth = truth.assign_coords(latent=planes + ["cis"], area=("unit", area), condition=("trial", cond),
                                reach_angle=("trial", angle), move_onset_time=("trial", move * dt))
    truth["A"] = (("rot_out", "rot_in"), A, {"units": "1/s", "long_name": "dx/dt = A x of the rotational latents"})
    truth = truth.assign_coords(rot_out=planes, rot_in=planes)
    truth["readout"] = (("unit", "latent"), C, {"long_name": "log-rate weights"})
    truth["log_baseline"] = (("unit",), baseline, {"units": "log Hz"})
    truth["prep_states"] = (("condition_id", "rot_in"), prep)
    trials = {"start_time": start * dt, "stop_time": stop * dt, "condition": cond.astype("int64"),
              "reach_angle": angle, "target_on_time": target_on * dt, "go_cue_time": go * dt,
              "move_onset_time": move * dt}
    descr = {"condition": "reach direction id (0..n_conditions-1)", "reach_angle": "reach direction (deg)",
             "target_on_time": "target onset (s)", "go_cue_time": "go cue (s)",
             "move_onset_time": "movement onset (s): go cue + reaction time"}
    behavior = (
        Series(name="hand_position", data=pos, rate_hz=1 / dt, unit="meters", kind="position",
               description="simulated hand position (x, y) relative to the centre target"),
        Series(name="hand_velocity", data=vel, rate_hz=1 / dt, unit="m/s", description="hand velocity (x, y)"),
    )
    log.info("reach: %d trials, %d units, %d spikes", n, n_units, sum(map(len, spikes)))
    return Recording(task="reach", seed=int(seed), dt_s=dt, duration_s=n_steps * dt, spike_times=spikes,
                     unit_area=area, trials=trials, trial_descriptions=descr, behavior=behavior, truth=truth,
                     description="simulated PMd/M1 reaching session with rotational latent dynamics (cortexfit)")


# ----------------------------------------------------------------------------------------------- flip-flop
def flipflop_task(rng: np.random.Generator, n: int, steps: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Random 3-bit flip-flop trials: inputs ``(n, steps, 3)`` of +-1 pulses and targets (last pulse sign, 0 before).

    Examples
    --------
    >>> u, y = flipflop_task(np.random.default_rng(0), 2, 50, 0.1)
    >>> bool(np.all((y == 0) | (np.abs(y) == 1)))
    True
    """
    pulse = rng.random((n, steps, 3)) < p
    u = np.where(pulse, np.where(rng.random((n, steps, 3)) < 0.5, -1.0, 1.0), 0.0)
    return u, _hold(u)


def _hold(u: np.ndarray) -> np.ndarray:
    """Sign of each channel's last pulse at every step (axis -2 is time; 0 before the first pulse)."""
    steps = np.arange(u.shape[-2])[:, None]
    return np.take_along_axis(u, np.maximum.accumulate(np.where(u != 0, steps, 0), axis=-2), axis=-2)


def find_fixed_points(W: np.ndarray, b: np.ndarray, init: np.ndarray, *, iters: int = 1500,
                      tol: float = 1e-14, merge: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Fixed points of ``h -> tanh(W h + b)``: minimise ``q = |F(h) - h|^2 / 2`` from ``init``, Newton-polish.

    Parameters
    ----------
    W, b : (H, H) recurrent weights and (H,) bias (the input is held at zero).
    init : (n, H) initial states, e.g. states visited along trajectories plus a little noise.
    iters, tol, merge : Adam steps, largest ``q`` accepted, distance under which points are merged.

    Returns
    -------
    (points, radius)
        The distinct fixed points ``(m, H)`` and the largest ``|eigenvalue|`` of each one's Jacobian
        ``diag(1 - F^2) W`` (stable where < 1).  Needs torch.

    Examples
    --------
    >>> W = 2.0 * np.eye(1)                  # h = tanh(2 h): stable at +-0.958, unstable at 0
    >>> pts, radius = find_fixed_points(W, np.zeros(1), np.array([[-0.5], [0.01], [0.5]]))
    >>> np.round(np.sort(pts[:, 0]), 3).tolist(), int((radius < 1).sum())
    ([-0.958, 0.0, 0.958], 2)
    """
    import torch
    from scipy.cluster.hierarchy import fclusterdata

    with _one_torch_thread():  # several threads only slow these small problems down
        Wt, bt = torch.from_numpy(W), torch.from_numpy(b)
        x = torch.from_numpy(init.copy()).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=1e-2)
        for _ in range(iters):
            F = torch.tanh(x @ Wt.T + bt)
            loss = 0.5 * ((F - x) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        x = x.detach()
        eye = torch.eye(W.shape[0], dtype=torch.float64)
        for _ in range(20):  # Newton on F(h) - h = 0
            F = torch.tanh(x @ Wt.T + bt)
            J = (1 - F**2)[:, :, None] * Wt[None] - eye
            x = x - torch.linalg.solve_ex(J, (F - x)[..., None])[0][..., 0]  # singular J: inf/nan, dropped
    q = (0.5 * ((torch.tanh(x @ Wt.T + bt) - x) ** 2).sum(1)).numpy()
    pts = x.numpy()[np.isfinite(q) & (q < tol)]
    if len(pts) == 0:
        return np.zeros((0, W.shape[0])), np.zeros(0)
    labels = fclusterdata(pts, t=merge, criterion="distance", method="single") if len(pts) > 1 else np.ones(1, int)
    pts = np.stack([pts[labels == lab][0] for lab in np.unique(labels)])
    F = np.tanh(pts @ W.T + b)
    eig = np.abs(np.linalg.eigvals((1 - F**2)[:, :, None] * W[None])).max(1)
    return pts, eig


def _run_rnn(W: np.ndarray, U: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
    h, out = np.zeros(W.shape[0]), np.empty((len(u), W.shape[0]))
    drive = u @ U.T + b
    for t in range(len(u)):
        h = np.tanh(W @ h + drive[t])
        out[t] = h
    return out


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train_teacher(cfg: FlipflopConfig, seed: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Train ``torch.nn.RNN(3, H, tanh)`` + linear readout on the flip-flop task; return float64 weights."""
    import torch
    from tqdm.auto import tqdm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rnn = torch.nn.RNN(3, cfg.hidden_size, nonlinearity="tanh", batch_first=True)
        lin = torch.nn.Linear(cfg.hidden_size, 3)
    params = list(rnn.parameters()) + list(lin.parameters())
    opt = torch.optim.Adam(params, lr=cfg.train_lr)
    for _ in tqdm(range(cfg.train_iters), desc="flipflop teacher", disable=None, leave=False):
        u, y = flipflop_task(rng, cfg.train_batch, cfg.train_steps, cfg.train_pulse_prob)
        u, y = torch.from_numpy(u).float(), torch.from_numpy(y).float()
        loss = ((lin(rnn(u)[0]) - y) ** 2)[y != 0].mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    f64 = lambda t: t.detach().double().numpy().copy()
    return {"W": f64(rnn.weight_hh_l0), "U": f64(rnn.weight_ih_l0), "b": f64(rnn.bias_ih_l0 + rnn.bias_hh_l0),
            "readout_weight": f64(lin.weight), "readout_bias": f64(lin.bias), "train_loss": np.array(loss.item())}


def _teacher_check(teacher: dict, cfg: FlipflopConfig, rng: np.random.Generator) -> dict[str, Any]:
    u, y = flipflop_task(rng, 32, 300, cfg.train_pulse_prob)
    H = np.stack([_run_rnn(teacher["W"], teacher["U"], teacher["b"], ui) for ui in u])
    out = H @ teacher["readout_weight"].T + teacher["readout_bias"]
    acc = float((np.sign(out) == y)[y != 0].mean())
    init = H.reshape(-1, H.shape[-1])[rng.choice(H.shape[0] * H.shape[1], cfg.n_fixed_point_inits, replace=False)]
    pts, eig = find_fixed_points(teacher["W"], teacher["b"], init + 0.05 * rng.normal(size=init.shape))
    stable = eig < 1
    signs = np.sign(pts[stable] @ teacher["readout_weight"].T + teacher["readout_bias"])
    code = ((signs > 0) * np.array([4, 2, 1])).sum(1)
    ok = acc > 0.98 and stable.sum() == 8 and len(np.unique(code)) == 8
    order = np.argsort(code)
    return {"ok": ok, "accuracy": acc, "stable": pts[stable][order], "stable_eig": eig[stable][order],
            "stable_signs": signs[order], "saddles": pts[~stable], "saddle_eig": eig[~stable]}


def simulate_flipflop(*, seed: int = 0, n_trials: int | None = None,
                      config: FlipflopConfig | None = None) -> Recording:
    """Simulate units driven by a trained 3-bit flip-flop RNN (``h <- tanh(W h + U u + b)``).

    The teacher is trained with torch (about 10 s on one core, deterministic for a seed) until it solves the
    task and has exactly 8 stable fixed points, one per corner of {-1, 1}^3 (``SimulateError`` otherwise).
    Trials are back-to-back windows of ``trial_steps`` steps of one continuous session.

    Examples
    --------
    >>> rec = simulate_flipflop(seed=0, n_trials=10)            # doctest: +SKIP
    >>> rec.truth.fixed_points.shape                            # doctest: +SKIP
    (8, 64)
    """
    cfg = configure(FlipflopConfig, config, n_trials)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2]))
    for rnd in range(cfg.max_rounds):
        with _one_torch_thread():  # same floats on every machine; several threads only slow a 64-unit RNN
            teacher = _train_teacher(cfg, int(seed) * 1000 + rnd, rng)
        check = _teacher_check(teacher, cfg, rng)
        log.info("flipflop teacher round %d: accuracy %.4f, %d stable fixed points", rnd + 1, check["accuracy"],
                 len(check["stable"]))
        if check["ok"]:
            break
    else:
        raise SimulateError(f"flipflop: teacher for seed {seed} did not reach 8 stable fixed points "
                            f"({len(check['stable'])} found, accuracy {check['accuracy']:.3f})")
    dt, T, n = cfg.dt_s, cfg.trial_steps, cfg.n_trials
    u = flipflop_task(rng, 1, n * T, cfg.pulse_prob)[0][0]
    u[0] = np.where(rng.random(3) < 0.5, -1.0, 1.0)  # a pulse on every channel at the session start
    y = _hold(u)
    Hs = _run_rnn(teacher["W"], teacher["U"], teacher["b"], u)
    C, target = _readout(cfg.hidden_size, cfg.n_units, cfg, rng)
    C /= math.sqrt(cfg.hidden_size)  # |h_i| ~ 1 in every unit: log-rate std about readout_gain
    R, baseline = exp_rates(Hs, C, target, cfg.max_rate_hz)
    spikes = poisson_spikes(R, dt, rng)
    shape = (n, T)
    time = (np.arange(T) + 0.5) * dt
    code = lambda v: ((v > 0) * np.array([4, 2, 1])).sum(-1)
    truth = new_truth("flipflop", seed, cfg, R.reshape(*shape, -1), Hs.reshape(*shape, -1), time,
                      align_event="start_time", window_start_s=0.0, window_stop_s=T * dt,
                      teacher_accuracy=check["accuracy"], teacher_train_loss=float(teacher["train_loss"]),
                      n_stable_fixed_points=len(check["stable"]))
    truth = truth.assign_coords(area=("unit", np.full(cfg.n_units, cfg.area)))
    truth.update({
        "inputs": (("trial", "time", "channel"), u.reshape(*shape, 3).astype("float32")),
        "targets": (("trial", "time", "channel"), y.reshape(*shape, 3).astype("float32")),
        "W": (("latent", "latent_in"), teacher["W"], {"long_name": "recurrent weights"}),
        "U": (("latent", "channel"), teacher["U"], {"long_name": "input weights"}),
        "b": (("latent",), teacher["b"], {"long_name": "bias (b_ih + b_hh of torch.nn.RNN)"}),
        "readout_weight": (("channel", "latent"), teacher["readout_weight"]),
        "readout_bias": (("channel",), teacher["readout_bias"]),
        "fixed_points": (("fixed_point", "latent"), check["stable"], {"long_name": "stable fixed points"}),
        "fixed_point_max_abs_eig": (("fixed_point",), check["stable_eig"]),
        "fixed_point_readout_sign": (("fixed_point", "channel"), check["stable_signs"]),
        "saddle_points": (("saddle", "latent"), check["saddles"], {"long_name": "unstable fixed points found"}),
        "saddle_max_abs_eig": (("saddle",), check["saddle_eig"]),
        "unit_readout": (("unit", "latent"), C, {"long_name": "log-rate weights"}),
        "log_baseline": (("unit",), baseline, {"units": "log Hz"}),
    })
    start = np.arange(n) * T * dt
    yt = y.reshape(*shape, 3)
    trials = {"start_time": start, "stop_time": start + T * dt,
              "initial_state": code(yt[:, 0]).astype("int64"), "final_state": code(yt[:, -1]).astype("int64"),
              "n_pulses": (u.reshape(*shape, 3) != 0).sum((1, 2)).astype("int64")}
    descr = {"initial_state": "target bits at the first step, as 4*b0 + 2*b1 + b2 (b = 1 for +1)",
             "final_state": "target bits at the last step, as 4*b0 + 2*b1 + b2", "n_pulses": "input pulses"}
    behavior = (
        Series(name="input_pulses", data=u, rate_hz=1 / dt, unit="a.u.",
               description="the 3 input channels of the flip-flop task (+-1 pulses, one step long)"),
        Series(name="target_outputs", data=y, rate_hz=1 / dt, unit="a.u.",
               description="flip-flop targets: sign of each channel's last pulse"),
    )
    return Recording(task="flipflop", seed=int(seed), dt_s=dt, duration_s=n * T * dt, spike_times=spikes,
                     unit_area=np.full(cfg.n_units, cfg.area), trials=trials, trial_descriptions=descr,
                     behavior=behavior, truth=truth, teacher=teacher,
                     description="simulated units driven by a 3-bit flip-flop RNN (cortexfit)")
