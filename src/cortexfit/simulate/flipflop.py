"""The 3-bit flip-flop task (Sussillo & Barak 2013): units driven by a trained teacher RNN.

A vanilla tanh RNN (``h <- tanh(W h + U u + b)``, 3 input and 3 output channels) is trained with torch until
it holds the sign of each channel's last input pulse and has exactly 8 stable fixed points, one per corner of
{-1, 1}^3 (:func:`teacher_fixed_points` finds them).  The recorded units read its hidden state out through
``exp`` (see :mod:`cortexfit.simulate.recording`); the teacher's weights and fixed points are the ground truth.
The random readout is balanced so that each memory bit moves the units' log-rates by the same amount
(:func:`balance_bit_loadings`; ``balance_bits=False`` keeps the raw draw).

Importing this module does not import torch; :func:`simulate_flipflop` and :func:`teacher_fixed_points` do.

Examples
--------
>>> u, y = flipflop_task(np.random.default_rng(0), 1, 6, 0.5)
>>> u.shape, y.shape
((1, 6, 3), (1, 6, 3))
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import xarray as xr

from cortexfit.core.errors import SimulateError
from cortexfit.core.runtime import limit_threads
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
class FlipflopConfig(CommonConfig):
    """Options of the 3-bit flip-flop simulation (Sussillo & Barak 2013) driven by a trained teacher RNN."""

    n_trials: int = 100
    hidden_size: int = 64
    n_units: int = 60
    area: str = "RNN"
    trial_steps: int = 200  # fixed trial length in steps of dt_s
    pulse_prob: float = 0.015  # per step and channel, in the recording
    readout_gain: float = 1.5
    balance_bits: bool = True  # every bit equally visible in the units' log-rates (see balance_bit_loadings)
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


def teacher_fixed_points(W: np.ndarray, b: np.ndarray, init: np.ndarray, *, iters: int = 1500,
                         tol: float = 1e-14, merge: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Fixed points of ``h -> tanh(W h + b)``: minimise ``q = |F(h) - h|^2 / 2`` from ``init``, Newton-polish.

    This is the ground-truth search on the teacher's numpy weights; fitted models are analysed by
    ``find_fixed_points`` in :mod:`cortexfit.analysis`.

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
    >>> pts, radius = teacher_fixed_points(W, np.zeros(1), np.array([[-0.5], [0.01], [0.5]]))
    >>> np.round(np.sort(pts[:, 0]), 3).tolist(), int((radius < 1).sum())
    ([-0.958, 0.0, 0.958], 2)
    """
    import torch
    from scipy.cluster.hierarchy import fclusterdata

    with limit_threads(1):  # several threads only slow these small problems down
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


def _train_teacher(cfg: FlipflopConfig, seed: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Train ``torch.nn.RNN(3, H, tanh)`` + linear readout on the flip-flop task; return float64 weights.

    Runs on one torch thread: the same floats on every machine, and several threads only slow a 64-unit RNN.
    """
    import torch
    from tqdm.auto import tqdm

    with limit_threads(1):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            rnn = torch.nn.RNN(3, cfg.hidden_size, nonlinearity="tanh", batch_first=True)
            lin = torch.nn.Linear(cfg.hidden_size, 3)
        params = list(rnn.parameters()) + list(lin.parameters())
        opt = torch.optim.Adam(params, lr=cfg.train_lr)
        for _ in tqdm(range(cfg.train_iters), desc="flipflop teacher", disable=None, leave=False):
            u_np, y_np = flipflop_task(rng, cfg.train_batch, cfg.train_steps, cfg.train_pulse_prob)
            u, y = torch.from_numpy(u_np).float(), torch.from_numpy(y_np).float()
            loss = ((lin(rnn(u)[0]) - y) ** 2)[y != 0].mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        f64 = lambda t: t.detach().double().numpy().copy()
        bias_ih, bias_hh = cast(torch.Tensor, rnn.bias_ih_l0), cast(torch.Tensor, rnn.bias_hh_l0)
        return {"W": f64(rnn.weight_hh_l0), "U": f64(rnn.weight_ih_l0), "b": f64(bias_ih + bias_hh),
                "readout_weight": f64(lin.weight), "readout_bias": f64(lin.bias),
                "train_loss": np.array(loss.item())}


def _teacher_check(teacher: dict, cfg: FlipflopConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Accuracy on fresh trials and the fixed points (stable ones ordered by readout-sign corner)."""
    u, y = flipflop_task(rng, 32, 300, cfg.train_pulse_prob)
    H = np.stack([_run_rnn(teacher["W"], teacher["U"], teacher["b"], ui) for ui in u])
    out = H @ teacher["readout_weight"].T + teacher["readout_bias"]
    acc = float((np.sign(out) == y)[y != 0].mean())
    init = H.reshape(-1, H.shape[-1])[rng.choice(H.shape[0] * H.shape[1], cfg.n_fixed_point_inits, replace=False)]
    pts, eig = teacher_fixed_points(teacher["W"], teacher["b"], init + 0.05 * rng.normal(size=init.shape))
    stable = eig < 1
    signs = np.sign(pts[stable] @ teacher["readout_weight"].T + teacher["readout_bias"])
    code = ((signs > 0) * np.array([4, 2, 1])).sum(1)
    ok = acc > 0.98 and stable.sum() == 8 and len(np.unique(code)) == 8
    order = np.argsort(code)
    return {"ok": ok, "accuracy": acc, "stable": pts[stable][order], "stable_eig": eig[stable][order],
            "stable_signs": signs[order], "saddles": pts[~stable], "saddle_eig": eig[~stable]}


def _teacher(cfg: FlipflopConfig, seed: int, rng: np.random.Generator) -> tuple[dict, dict[str, Any]]:
    """Train rounds until a teacher passes :func:`_teacher_check`; ``SimulateError`` after ``max_rounds``."""
    for rnd in range(cfg.max_rounds):
        teacher = _train_teacher(cfg, int(seed) * 1000 + rnd, rng)
        check = _teacher_check(teacher, cfg, rng)
        log.info("flipflop teacher round %d: accuracy %.4f, %d stable fixed points", rnd + 1, check["accuracy"],
                 len(check["stable"]))
        if check["ok"]:
            return teacher, check
    raise SimulateError(f"flipflop: teacher for seed {seed} did not reach 8 stable fixed points "
                        f"({len(check['stable'])} found, accuracy {check['accuracy']:.3f})")


def bit_axes(points: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """(3, latent) direction of each bit: least squares ``points ~ a + signs @ axes`` over the stable points."""
    design = np.c_[np.ones(len(signs)), signs]
    return np.linalg.lstsq(design, points, rcond=None)[0][1:]


def balance_bit_loadings(C: np.ndarray, points: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """The readout ``C`` (unit, latent) changed only along the bit axes so that each bit moves the units'
    log-rates by the same amount (the norm of ``C @ axis``, set to the RMS over the bits).

    With a random ``C`` one bit can be much less visible than the others (seed 0: loadings 2.73, 1.89, 2.80),
    and a fitted model then under-invests in that memory: on the default recording every fit with 4 instead
    of 8 stable points had lost exactly that bit (fit seeds 0 and 1, 18 fits).  The recording is the
    benchmark of fixed-point recovery, so each memory is made equally visible.

    Examples
    --------
    >>> P = np.array([[x, 2 * y, z, 0.0] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    >>> S = np.sign(P[:, :3])
    >>> C = balance_bit_loadings(np.random.default_rng(0).normal(size=(20, 4)), P, S)
    >>> round(float(np.ptp(np.linalg.norm(C @ bit_axes(P, S).T, axis=0))), 9)
    0.0
    """
    B = bit_axes(points, signs)
    load = C @ B.T
    norm = np.linalg.norm(load, axis=0)
    target = load * (np.sqrt(np.mean(norm**2)) / norm)
    return C + (target - load) @ np.linalg.solve(B @ B.T, B)


def _state_code(v: np.ndarray) -> np.ndarray:
    """Bits of the 3 channels as ``4*b0 + 2*b1 + b2`` (b = 1 for a positive value)."""
    return ((v > 0) * np.array([4, 2, 1])).sum(-1)


def _truth(cfg: FlipflopConfig, seed: int, R: np.ndarray, Hs: np.ndarray, u: np.ndarray, y: np.ndarray, *,
           teacher: dict, check: dict[str, Any], C: np.ndarray, baseline: np.ndarray,
           extra: dict[str, int]) -> xr.Dataset:
    """The truth dataset: rates, hidden states, inputs and targets per trial, the teacher and its fixed points."""
    dt, T = cfg.dt_s, cfg.trial_steps
    shape = (cfg.n_trials, T)
    time = (np.arange(T) + 0.5) * dt
    truth = new_truth("flipflop", seed, cfg, R.reshape(*shape, -1), Hs.reshape(*shape, -1), time,
                      align_event="start_time", window_start_s=0.0, window_stop_s=T * dt,
                      teacher_accuracy=check["accuracy"], teacher_train_loss=float(teacher["train_loss"]),
                      n_stable_fixed_points=len(check["stable"]), **extra)
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
    return truth


def _trials(cfg: FlipflopConfig, u: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Trials-table columns (back-to-back windows) and the descriptions of the task's columns."""
    n, T, dt = cfg.n_trials, cfg.trial_steps, cfg.dt_s
    start = np.arange(n) * T * dt
    yt = y.reshape(n, T, 3)
    trials = {"start_time": start, "stop_time": start + T * dt,
              "initial_state": _state_code(yt[:, 0]).astype("int64"),
              "final_state": _state_code(yt[:, -1]).astype("int64"),
              "n_pulses": (u.reshape(n, T, 3) != 0).sum((1, 2)).astype("int64")}
    descr = {"initial_state": "target bits at the first step, as 4*b0 + 2*b1 + b2 (b = 1 for +1)",
             "final_state": "target bits at the last step, as 4*b0 + 2*b1 + b2", "n_pulses": "input pulses"}
    return trials, descr


def simulate_flipflop(*, seed: int = 0, n_trials: int | None = None, config: FlipflopConfig | None = None,
                      session: int | None = None, n_units: int | None = None) -> Recording:
    """Simulate units driven by a trained 3-bit flip-flop RNN (``h <- tanh(W h + U u + b)``).

    The teacher is trained with torch (about 10 s on one core, deterministic for a seed) until it solves the
    task and has exactly 8 stable fixed points, one per corner of {-1, 1}^3 (``SimulateError`` otherwise).
    Trials are back-to-back windows of ``trial_steps`` steps of one continuous session.

    Parameters
    ----------
    seed : random seed: the teacher, and (without ``session``) the whole recording.
    n_trials : number of trials (default ``config.n_trials``).
    config : further options (:class:`FlipflopConfig`).
    session : ``None`` (one recording per seed, as always) or ``k >= 1``: session ``k`` of the teacher of
        ``seed``.  The teacher (weights, readout, fixed points) is trained from ``seed`` exactly as without a
        session; the units (log-rate readout ``unit_readout`` and target rates), the input pulses and the spikes
        come from a generator seeded by ``(seed, 2, session)``.  The latents are the teacher's hidden states,
        so truths of different sessions are in one space.  The truth gets the attr ``session`` (absent
        without one).
    n_units : number of recorded units (default ``config.n_units``); also stored as the truth attr ``n_units``.

    Examples
    --------
    >>> rec = simulate_flipflop(seed=0, n_trials=10)            # doctest: +SKIP
    >>> rec.truth.fixed_points.shape                            # doctest: +SKIP
    (8, 64)
    """
    cfg = configure(FlipflopConfig, config, n_trials)
    check_session(session, n_units)
    if n_units is not None:
        cfg = replace(cfg, n_units=int(n_units))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2]))
    teacher, check = _teacher(cfg, seed, rng)
    if session is not None:  # the same teacher; its own units, trials and spikes
        rng = session_rng(seed, 2, session)
    dt, T, n = cfg.dt_s, cfg.trial_steps, cfg.n_trials
    u = flipflop_task(rng, 1, n * T, cfg.pulse_prob)[0][0]
    u[0] = np.where(rng.random(3) < 0.5, -1.0, 1.0)  # a pulse on every channel at the session start
    y = _hold(u)
    Hs = _run_rnn(teacher["W"], teacher["U"], teacher["b"], u)
    C, target = random_readout(cfg.hidden_size, cfg.n_units, cfg, rng)
    C /= math.sqrt(cfg.hidden_size)  # |h_i| ~ 1 in every unit: log-rate std about readout_gain
    if cfg.balance_bits:
        C = balance_bit_loadings(C, check["stable"], check["stable_signs"])
    R, baseline = exp_rates(Hs, C, target, cfg.max_rate_hz)
    spikes = poisson_spikes(R, dt, rng)
    truth = _truth(cfg, seed, R, Hs, u, y, teacher=teacher, check=check, C=C, baseline=baseline,
                   extra=session_attrs(session, n_units))
    trials, descr = _trials(cfg, u, y)
    stimulus = (Series(name="input_pulses", data=u, rate_hz=1 / dt, unit="a.u.",
                       description="the 3 input channels of the flip-flop task (+-1 pulses, one step long); "
                       "the teacher's u in h <- tanh(W h + U u + b)"),)
    behavior = (Series(name="target_outputs", data=y, rate_hz=1 / dt, unit="a.u.",
                       description="flip-flop targets: sign of each channel's last pulse"),)
    return Recording(task="flipflop", seed=int(seed), dt_s=dt, duration_s=n * T * dt, spike_times=spikes,
                     unit_area=np.full(cfg.n_units, cfg.area), trials=trials, trial_descriptions=descr,
                     behavior=behavior, stimulus=stimulus, truth=truth, teacher=teacher,
                     session=None if session is None else int(session),
                     description="simulated units driven by a 3-bit flip-flop RNN (cortexfit)")
