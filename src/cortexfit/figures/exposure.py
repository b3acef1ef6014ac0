"""Figure ``exposure``: exposure bias of teacher forcing vs scheduled sampling (Bengio et al. 2015).

System: a sine of period 20 steps with random phase and amplitude (0.6-1.2), observed with Gaussian noise
(sd 0.4).  Forecaster: the project's ``vanilla`` tanh RNN (16 units) with a linear readout, trained to
predict the next observation (Adam, cosine-annealed learning rate, 400 steps).  Teacher forcing (TF) always
feeds the observed value; scheduled sampling (SS) feeds, after a 30-step warm-up, the model's own previous
prediction with probability ``eps``, which rises linearly from 0 to 1 over the first 30% of training (so the
SS model spends most of its training in the closed-loop regime it is evaluated in).  Evaluation: 30
observed steps, then closed loop (the model's predictions fed back) for 300 steps, far beyond the 69
closed-loop steps SS trained on; the error is the RMS distance to the clean signal.

Within the trained horizon both models forecast about equally well (a TF model close to the optimal
one-step filter is self-consistent when fed its own predictions).  What TF never learns is to keep its
free-running frequency and amplitude exact: fed its own smooth predictions its phase drifts and its error
grows with horizon, while the SS model's error stays flat.  The checks therefore compare the long-horizon
error (SS / TF, mean over model seeds) and the SS model's error growth; without scheduled sampling (the
broken control, ``eps = 0``: the SS model is trained exactly as the TF one) the ratio is 1.  Measured
(3 model seeds per figure seed): ratio 0.66, 0.39, 0.46 at seeds 0, 1, 2; single model seeds 0.19-1.15.
The phase is measured by complex demodulation at the true frequency (product with
``exp(-2 pi i t / period)``, averaged over one period).

Examples
--------
>>> import tempfile, pathlib
>>> make(pathlib.Path(tempfile.mkdtemp()), quick=True).passed  # doctest: +SKIP
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cortexfit.figures._common import FigureResult, numeric_check, render, seeded

LAYOUT = (1, 3, 14.0, 4.0)
TAIL = 20  # rmse_long averages the last TAIL horizons
NAME = "exposure"
TITLE = "Exposure bias: closed-loop forecasts after teacher forcing vs scheduled sampling"
PERIOD, NOISE, HIDDEN, WARM = 20.0, 0.4, 16, 30
RAMP = 0.3  # fraction of training over which the SS probability rises from 0 to 1


def noisy_sine(batch: int, steps: int, generator):
    """(clean, observed) sequences (B, T): random phase and amplitude, observation noise sd ``NOISE``.

    Examples
    --------
    >>> import torch
    >>> c, o = noisy_sine(3, 40, torch.Generator().manual_seed(0))
    >>> c.shape == o.shape == (3, 40)
    True
    """
    import torch

    phase = torch.rand(batch, 1, generator=generator) * 2 * math.pi
    amp = 0.6 + 0.6 * torch.rand(batch, 1, generator=generator)
    clean = amp * torch.sin(2 * math.pi * torch.arange(steps)[None].float() / PERIOD + phase)
    return clean, clean + NOISE * torch.randn(batch, steps, generator=generator)


def rollout(net, readout, obs, *, eps: float = 0.0, closed_after: int | None = None, generator=None):
    """Predictions of ``obs[:, 1:]`` (B, T - 1), feeding own predictions after ``WARM`` steps.

    ``closed_after`` = k: from step k on, always feed the prediction (evaluation); otherwise feed it with
    probability ``eps`` after the warm-up (scheduled sampling; ``eps = 0`` is teacher forcing).  The step is
    the ``vanilla`` model's ``h <- tanh(W h + U x + b)`` written out with ``W = net.recurrent_weight()``
    computed once (the same map as ``net.step``, with fewer autograd nodes).
    """
    import torch

    B, T = obs.shape
    W, U, b = net.recurrent_weight().t(), net.weight_ih.t(), net.bias
    w_out, b_out = readout.weight.t(), readout.bias
    h, prev, preds = net.initial_state(B), None, []
    for t in range(T - 1):
        x = obs[:, t : t + 1]
        if prev is not None and closed_after is not None and t >= closed_after:
            x = prev
        elif prev is not None and eps > 0 and t >= WARM:
            own = (torch.rand(B, 1, generator=generator) < eps).to(x.dtype)
            x = own * prev.detach() + (1 - own) * x
        h = torch.tanh(torch.addmm(torch.addmm(b, x, U), h, W))
        prev = torch.addmm(b_out, h, w_out)
        preds.append(prev)
    return torch.cat(preds, dim=1)


def phase_error_deg(pred: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Mean absolute phase difference (degrees) between forecasts and truth (B, T) per horizon (T - period + 1).

    Examples
    --------
    >>> t = np.arange(60)
    >>> a = np.sin(2 * np.pi * t / PERIOD)[None]
    >>> bool(np.allclose(phase_error_deg(a, a), 0))
    True
    """
    ref = np.exp(-2j * np.pi * np.arange(pred.shape[1]) / PERIOD)
    kernel = np.ones(int(PERIOD)) / PERIOD

    def demod(x):
        return np.array([np.convolve(row * ref, kernel, mode="valid") for row in x])

    return np.degrees(np.abs(np.angle(demod(pred) * np.conj(demod(clean))))).mean(0)


def train(mode: str, *, steps: int, seq_len: int, seed: int):
    """Train one forecaster with ``mode`` "tf" or "ss"; returns (net, readout, loss history).

    ``mode="ss_off"`` runs the scheduled-sampling code path with ``eps = 0`` (teacher forcing through
    :func:`rollout`): the broken control.
    """
    import torch

    from cortexfit.models import build_dynamics

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = build_dynamics("vanilla", input_size=1, hidden_size=HIDDEN)
    if net.options.nonlinearity != "tanh" or net.alpha != 1.0:  # rollout() writes out this exact map
        raise AssertionError("exposure: expected a tanh vanilla RNN")
    readout = torch.nn.Linear(HIDDEN, 1)
    params = list(net.parameters()) + list(readout.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    history = []
    for it in range(steps):
        _, obs = noisy_sine(32, seq_len, gen)
        if mode == "tf":  # all inputs observed: the fast whole-sequence path
            pred = readout(net.hidden(net(obs[:, :-1, None])))[..., 0]
        else:
            eps = 0.0 if mode == "ss_off" else min(1.0, it / (RAMP * steps))
            pred = rollout(net, readout, obs, eps=eps, generator=gen)
        loss = ((pred - obs[:, 1:]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        schedule.step()
        history.append(loss.item())
    return net.eval(), readout.eval(), history


@dataclass
class ExposureResult:
    """Closed-loop forecasts, RMSE and phase error per horizon for each training mode, for each model seed.

    ``rmse``, ``phase``, ``preds`` are those of the first model seed (plotted); ``ratios`` has one
    long-horizon SS / TF ratio per model seed and ``ss_growth`` the SS model's long-horizon error over its
    error within the trained horizon, per model seed.
    """

    quick: bool
    seed: int
    steps: int
    seq_len: int
    horizon: int
    clean: np.ndarray
    obs: np.ndarray
    preds: dict[str, np.ndarray]
    rmse: dict[str, np.ndarray]
    phase: dict[str, np.ndarray]
    final_loss: dict[str, float]
    ratios: np.ndarray
    ss_growth: np.ndarray
    model_seeds: list[int]

    @property
    def long(self) -> dict[str, float]:
        return {m: float(r[-TAIL:].mean()) for m, r in self.rmse.items()}


def _evaluate(models: dict, clean, obs) -> tuple[dict, dict, dict]:
    """Closed-loop predictions, RMSE and phase error per horizon of each model."""
    import torch

    preds, rmse, phase = {}, {}, {}
    with torch.no_grad():
        for mode, (net, readout, _) in models.items():
            p = rollout(net, readout, obs, closed_after=WARM)[:, WARM:]
            preds[mode] = p.numpy()
            rmse[mode] = ((p - clean[:, WARM + 1 :]) ** 2).mean(0).sqrt().numpy()
            phase[mode] = phase_error_deg(p.numpy(), clean[:, WARM + 1 :].numpy())
    return preds, rmse, phase


def compute(*, quick: bool, seed: int = 0, n_seeds: int | None = None, scheduled_sampling: bool = True
            ) -> ExposureResult:
    """Train a TF and an SS forecaster per model seed, then forecast 256 test sequences in closed loop.

    ``scheduled_sampling=False`` trains the "SS" model with ``eps = 0`` (the broken control).
    """
    import torch

    steps, seq_len, horizon = 400, 100, 300
    n_seeds = n_seeds or (3 if quick else 6)
    ss_mode = "ss" if scheduled_sampling else "ss_off"
    model_seeds = [1000 * seed + k for k in range(n_seeds)]
    with seeded(seed):
        gen = torch.Generator().manual_seed(10_000 + seed)
        clean, obs = noisy_sine(256, WARM + horizon + 1, gen)
        runs = []
        for ms in model_seeds:
            models = {"tf": train("tf", steps=steps, seq_len=seq_len, seed=ms),
                      "ss": train(ss_mode, steps=steps, seq_len=seq_len, seed=ms)}
            runs.append((models, *_evaluate(models, clean, obs)))
    ratios = np.array([rm["ss"][-TAIL:].mean() / rm["tf"][-TAIL:].mean() for _, _, rm, _ in runs])
    trained = seq_len - WARM - 1  # closed-loop steps seen in training
    ss_growth = np.array([rm["ss"][-TAIL:].mean() / rm["ss"][:trained].mean() for _, _, rm, _ in runs])
    models, preds, rmse, phase = runs[0]
    return ExposureResult(quick=quick, seed=seed, steps=steps, seq_len=seq_len, horizon=horizon, clean=clean.numpy(),
                          obs=obs.numpy(), preds=preds, rmse=rmse, phase=phase,
                          final_loss={m: v[2][-1] for m, v in models.items()}, ratios=ratios,
                          ss_growth=ss_growth, model_seeds=model_seeds)


def check(r: ExposureResult) -> list[dict]:
    """The numeric checks of the figure (the SS / TF ratio averaged over the model seeds)."""
    return [
        numeric_check("rmse_ratio_ss_over_tf_long_mean", float(r.ratios.mean()), hi=0.9,
                      description=f"closed-loop RMSE at horizons {r.horizon - TAIL + 1}-{r.horizon}, scheduled "
                                  f"sampling / teacher forcing, mean over {len(r.ratios)} model seeds (single seeds "
                                  "0.2-1.15; without scheduled sampling exactly 1)"),
        numeric_check("ss_error_growth_mean", float(r.ss_growth.mean()), hi=1.3,
                      description=f"scheduled sampling: RMSE at horizons {r.horizon - TAIL + 1}-{r.horizon} over RMSE "
                                  f"within the {r.seq_len - WARM - 1} closed-loop steps it trained on, mean over "
                                  "model seeds (a stable free-running forecast: ~1)"),
        numeric_check("rmse_tf_first_step", float(r.rmse["tf"][0]), hi=NOISE,
                      description="teacher forcing still forecasts one step well (below the noise sd)"),
    ]


def record(r: ExposureResult) -> FigureResult:
    """The JSON record (params, values, notes and checks) of a result."""
    return FigureResult(
        name=NAME,
        title=TITLE,
        params={"system": f"sine, period {PERIOD:g} steps, amplitude U(0.6, 1.2), observation noise sd {NOISE}",
                "model": f"cortexfit.models vanilla tanh, {HIDDEN} units, linear readout",
                "train_steps": r.steps, "seq_len": r.seq_len, "batch": 32,
                "optimizer": "Adam lr 3e-3 cosine-annealed, clip 1",
                "ss_schedule": f"eps 0 -> 1 linearly over the first {RAMP:.0%} of training, after a 30-step warm-up",
                "evaluation": f"256 sequences, {WARM} observed steps then {r.horizon} closed-loop steps; "
                              "RMSE to the clean signal", "seed": r.seed},
        values={"horizon": np.arange(1, r.horizon + 1), "rmse": r.rmse, "rmse_long": r.long,
                "ratio_per_model_seed": r.ratios, "ss_growth_per_model_seed": r.ss_growth,
                "model_seeds": r.model_seeds,
                "phase_error_deg": r.phase, "final_train_loss": r.final_loss},
        notes=[f"rmse_long = mean RMSE over the last {TAIL} horizons (first model seed; plotted)",
               f"ratio SS / TF per model seed: {', '.join(f'{x:.2f}' for x in r.ratios)}"],
        checks=check(r),
    )


def _plot_example(ax, r: ExposureResult) -> None:
    """One test sequence: warm-up observations, clean signal, both closed-loop forecasts."""
    k, horizon = 0, r.horizon
    t_obs = np.arange(WARM + 1)
    t_pred = np.arange(WARM + 1, WARM + horizon + 1)
    show = slice(0, min(horizon, 100))
    ax.plot(t_obs, r.obs[k, : WARM + 1], ".", color="0.5", ms=3, label="observed (warm-up)")
    ax.plot(np.r_[t_obs, t_pred][: WARM + 1 + 100], r.clean[k, : WARM + 1 + 100], color="k", lw=1,
            label="clean signal")
    ax.plot(t_pred[show], r.preds["tf"][k, show], color="C3", lw=1.2, label="teacher forcing")
    ax.plot(t_pred[show], r.preds["ss"][k, show], color="C0", lw=1.2, label="scheduled sampling")
    ax.axvline(WARM + 0.5, color="0.6", ls=":", lw=1)
    ax.set(xlabel="time step", ylabel="signal (a.u.)", title="closed-loop forecast of one test sequence")
    ax.legend(fontsize=7, loc="lower left", ncol=2)


def plot(r: ExposureResult, fig, axes) -> None:
    """An example forecast, RMSE vs horizon, and phase error vs horizon."""
    _plot_example(axes[0], r)
    long = r.long
    ax = axes[1]
    hz = np.arange(1, r.horizon + 1)
    ax.plot(hz, r.rmse["tf"], color="C3", label=f"teacher forcing (last {TAIL}: {long['tf']:.2f})")
    ax.plot(hz, r.rmse["ss"], color="C0", label=f"scheduled sampling (last {TAIL}: {long['ss']:.2f})")
    ax.axhline(NOISE, color="0.6", ls=":", lw=1, label="observation noise sd")
    ax.set(xlabel="forecast horizon (steps)", ylabel="RMSE to the clean signal (a.u.)",
           title=f"error vs horizon: SS / TF = {r.ratios[0]:.2f} (seeds: {r.ratios.min():.2f}-{r.ratios.max():.2f})")
    ax.legend(fontsize=7)
    ax = axes[2]
    hp = np.arange(len(r.phase["tf"])) + PERIOD / 2 + 0.5  # centre of each one-period window
    ax.plot(hp, r.phase["tf"], color="C3", label="teacher forcing")
    ax.plot(hp, r.phase["ss"], color="C0", label="scheduled sampling")
    ax.set(xlabel="forecast horizon (steps)", ylabel="mean |phase error| (degrees)",
           title="what goes wrong: the free-running phase drifts", ylim=(0, None))
    ax.legend(fontsize=7)


def make(out_dir: Path, *, quick: bool, seed: int = 0) -> FigureResult:
    """compute -> check -> plot; writes ``exposure.png`` and ``exposure.json`` and returns the record."""
    r = compute(quick=quick, seed=seed)
    return render(out_dir, record(r), lambda fig, axes: plot(r, fig, axes), layout=LAYOUT, quick=quick, seed=seed)
