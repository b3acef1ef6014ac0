"""Forecast mode: a family driven by observed activity predicts the next bin; scheduled sampling; rollouts.

The state after seeing held-in activity up to bin ``t - 1`` (plus task inputs) gives the rates of every unit
at bin ``t``: ``s_0`` is learned, ``s_{t+1} = F(s_t, [x_t, u_t])`` and ``rate_t = exp(readout(hidden(s_t)))``.
With teacher forcing ``x_t`` is the observed (``log1p``-scaled) activity; in a closed-loop rollout it is the
model's own prediction ``rate_t`` scaled the same way.  Scheduled sampling (Bengio et al. 2015) feeds the
observation with probability :func:`teacher_prob` (decaying over epochs) and the prediction otherwise.

Examples
--------
>>> [round(teacher_prob("inverse_sigmoid", i, k=10.0), 3) for i in (0, 10, 50)]
[0.909, 0.786, 0.063]
>>> import torch
>>> from cortexfit.models import build_dynamics
>>> m = ForecastModel(build_dynamics("vanilla", input_size=3, hidden_size=6), n_heldin=3, n_units=4, factors=2)
>>> m(torch.zeros(2, 5, 3), torch.zeros(2, 5, 0)).rates.shape
torch.Size([2, 5, 4])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cortexfit.fit.config import FitConfig
from cortexfit.fit.data import FitData, FitRequest
from cortexfit.fit.heads import FactorReadout, apply_link, init_unit_bias, masked_loss
from cortexfit.fit.outputs import FitResult
from cortexfit.models.base import Dynamics


def teacher_prob(schedule: str, step: int, *, k: float | None = None, c: float = 0.01, min_prob: float = 0.0) -> float:
    """Probability of feeding the observation (not the model's prediction) at training step ``step``.

    Parameters
    ----------
    schedule : {"teacher", "linear", "exponential", "inverse_sigmoid"}
        ``teacher``: 1; ``linear``: ``k - c * step``; ``exponential``: ``k ** step`` (``k < 1``);
        ``inverse_sigmoid``: ``k / (k + exp(step / k))`` (``k >= 1``).  Results are clipped to
        ``[min_prob, 1]``.
    step : int
        Epoch (or iteration) index, from 0.
    k, c, min_prob : float
        Schedule parameters; ``k`` defaults to 1.0 (linear), 0.97 (exponential), 10.0 (inverse sigmoid).

    Examples
    --------
    >>> teacher_prob("linear", 30, k=1.0, c=0.01), teacher_prob("exponential", 2, k=0.5)
    (0.7, 0.25)
    >>> teacher_prob("linear", 500, c=0.01, min_prob=0.2)
    0.2
    """
    if schedule == "teacher":
        p = 1.0
    elif schedule == "linear":
        p = (1.0 if k is None else k) - c * step
    elif schedule == "exponential":
        p = (0.97 if k is None else k) ** step
    elif schedule == "inverse_sigmoid":
        kk = 10.0 if k is None else k
        p = kk / (kk + math.exp(min(step / kk, 700.0)))
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    return float(min(1.0, max(min_prob, p)))


@dataclass(frozen=True)
class ForecastOutput:
    """``rates``/``log_rates`` (B, T, N) for bins 0..T-1 and the states ``s_t`` that produced them (B, T, S);
    ``inputs`` (B, T, n_heldin + n_inputs): what the dynamics were fed at each bin (observed or fed-back
    held-in activity, then the task inputs), ``s_{t+1} = step(s_t, inputs[:, t])``."""

    rates: Tensor
    log_rates: Tensor
    factors: Tensor
    states: Tensor
    inputs: Tensor | None = None


class ForecastModel(nn.Module):
    """Learned initial state + family + readout, run teacher-forced, mixed or closed-loop.

    Parameters
    ----------
    dynamics : Dynamics
        Input size must be ``n_heldin + n_inputs``.
    n_heldin, n_units, factors : int
        Observed (input) units, predicted units (all, in the dataset's order), factor dimension.
    n_inputs : int
        Task-input channels.
    exp_link : bool
        Exponential link and ``log1p`` feedback (spike counts); identity link and z-scored traces otherwise.
    heldin_index : sequence of int, optional
        Which of the ``n_units`` predicted units are the held-in ones, in the order of the input channels (the
        closed-loop feedback writes each unit's prediction into its own channel).  Default ``0 .. n_heldin - 1``.
    readout : torch.nn.Module, optional
        Hidden units -> ``(factors, log_rates)``; default a trainable
        :class:`~cortexfit.fit.heads.FactorReadout` (the echo-state fit passes its closed-form readout).
    """

    fb_mean: Tensor
    fb_std: Tensor
    heldin_index: Tensor
    readout: nn.Module

    def __init__(self, dynamics: Dynamics, *, n_heldin: int, n_units: int, factors: int, n_inputs: int = 0,
                 dropout: float = 0.0, exp_link: bool = True, readout: nn.Module | None = None,
                 heldin_index: Sequence[int] | None = None):
        super().__init__()
        if dynamics.input_size != n_heldin + n_inputs:
            raise ValueError(f"dynamics input_size {dynamics.input_size} != {n_heldin} + {n_inputs}")
        self.dynamics, self.n_heldin, self.exp_link = dynamics, n_heldin, exp_link
        free = dynamics.state_size if dynamics.family == "lstm" else dynamics.hidden_size
        self.s0 = nn.Parameter(torch.zeros(free))
        self.readout = readout if readout is not None else FactorReadout(
            hidden_size=dynamics.hidden_size, factors=factors, n_units=n_units, dropout=dropout)
        self.register_buffer("fb_mean", torch.zeros(n_heldin))
        self.register_buffer("fb_std", torch.ones(n_heldin))
        index = torch.arange(n_heldin) if heldin_index is None else torch.as_tensor(list(heldin_index), dtype=torch.long)
        if index.shape != (n_heldin,) or (n_heldin and (int(index.min()) < 0 or int(index.max()) >= n_units)):
            raise ValueError(f"heldin_index must hold {n_heldin} unit indices below {n_units}")
        self.register_buffer("heldin_index", index)

    def init_bias(self, mean_counts: Tensor) -> None:
        """Start each unit's prediction at its mean."""
        assert isinstance(self.readout, FactorReadout), "only a trainable readout has a bias to initialise"
        init_unit_bias(self.readout, mean_counts, exp_link=self.exp_link)

    def initial(self, batch: int) -> Tensor:
        s = self.dynamics.initial_state(batch)
        return torch.cat([self.s0.expand(batch, -1), s[:, self.s0.shape[0] :]], dim=-1)

    def predict(self, states: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(rates, log_rates, factors) read out of states."""
        factors, log_r = self.readout(self.dynamics.hidden(states))
        rates, log_r = apply_link(log_r, exp_link=self.exp_link)
        return rates, log_r, factors

    def feedback(self, rates: Tensor) -> Tensor:
        """The model's held-in prediction scaled like an observed input (detached)."""
        r = rates[..., self.heldin_index].detach()
        return torch.log1p(r) if self.exp_link else (r - self.fb_mean) / self.fb_std

    def forward(self, x: Tensor, u: Tensor, teacher: Tensor | None = None) -> ForecastOutput:
        """Run over a trial.

        Parameters
        ----------
        x : Tensor
            (B, T, n_heldin) scaled observed held-in activity.
        u : Tensor
            (B, T, n_inputs) task inputs.
        teacher : Tensor, optional
            (B, T) bool: feed the observation at bin t where True, the prediction where False; ``None`` =
            teacher forcing throughout (fast path).
        """
        b, t = x.shape[:2]
        s = self.initial(b)
        if teacher is None or bool(teacher.all()):
            fed = torch.cat([x, u], dim=-1)
            rest = self.dynamics(fed[:, :-1], s) if t > 1 else s[:, None][:, :0]
            states = torch.cat([s[:, None], rest], dim=1)
            rates, log_r, factors = self.predict(states)
            return ForecastOutput(rates, log_r, factors, states, fed)
        states_l, fed_l = [s], []
        for i in range(t - 1):
            rate_i = self.predict(s)[0]
            xi = torch.where(teacher[:, i : i + 1], x[:, i], self.feedback(rate_i))
            fed_l.append(torch.cat([xi, u[:, i]], dim=-1))
            s = self.dynamics.step(s, fed_l[-1])
            states_l.append(s)
        states = torch.stack(states_l, dim=1)
        rates, log_r, factors = self.predict(states)
        last = torch.where(teacher[:, t - 1 :], x[:, -1], self.feedback(rates[:, -1]))  # what bin T-1 would feed
        fed_l.append(torch.cat([last, u[:, -1]], dim=-1))
        return ForecastOutput(rates, log_r, factors, states, torch.stack(fed_l, dim=1))

    def rollout(self, x: Tensor, u: Tensor, n_obs: int) -> ForecastOutput:
        """Teacher-forced over the first ``n_obs`` bins, closed loop afterwards."""
        teacher = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        teacher[:, :n_obs] = True
        return self.forward(x, u, teacher)


def _err(rates: Tensor, log_r: Tensor, y: Tensor, w: Tensor, poisson: bool, std: Tensor) -> tuple[Tensor, Tensor]:
    """Per-bin error summed over units: Poisson NLL with ``log y!`` or half squared z-error; and weights."""
    if poisson:
        e = rates - y * log_r + torch.lgamma(y + 1.0)
    else:
        e = 0.5 * ((y - rates) / std) ** 2
    return (e * w).sum(-1), w.sum(-1)


@torch.no_grad()
def horizon_errors(model: ForecastModel, x: Tensor, u: Tensor, y: Tensor, w: Tensor, horizons: tuple[int, ...],
                   n_starts: int, std: Tensor | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open-loop vs closed-loop prediction error against horizon.

    From ``n_starts`` evenly spaced start bins ``t0`` the model is teacher-forced up to ``t0``; the open-loop
    prediction of bin ``t0 + h - 1`` keeps seeing observations, the closed-loop one feeds back its own
    predictions after ``t0``.  Errors are the mean per unit-bin Poisson NLL (nats, spikes) or half squared
    z-error (traces) over trials, starts and valid units; horizon 1 is the same for both.

    Returns
    -------
    (horizons, open_loop, closed_loop) : numpy arrays (horizons longer than the trial are dropped)
    """
    model.eval()
    b, t = x.shape[:2]
    hs = np.array([h for h in horizons if h < t], dtype=int)
    if len(hs) == 0:
        return hs, np.zeros(0), np.zeros(0)
    hmax = int(hs.max())
    starts = np.unique(np.linspace(1, t - hmax, n_starts).round().astype(int))
    poisson = model.exp_link
    std = std if std is not None else torch.ones(y.shape[-1], device=y.device)
    tf = model(x, u)
    open_l = []
    for h in hs:
        idx = torch.as_tensor(starts + h - 1, device=x.device)
        e, n = _err(tf.rates[:, idx], tf.log_rates[:, idx], y[:, idx], w[:, idx], poisson, std)
        open_l.append(float(e.sum() / n.sum().clamp_min(1)))
    s = tf.states[:, torch.as_tensor(starts, device=x.device)].reshape(b * len(starts), -1)
    closed_e, closed_n = [], []
    for k in range(hmax):
        idx = torch.as_tensor(starts + k, device=x.device)
        rates, log_r, _ = model.predict(s)
        e, n = _err(rates, log_r, y[:, idx].reshape(b * len(starts), -1), w[:, idx].reshape(b * len(starts), -1),
                    poisson, std)
        closed_e.append(float(e.sum()))
        closed_n.append(float(n.sum()))
        xs = torch.cat([model.feedback(rates), u[:, idx].reshape(b * len(starts), -1)], dim=-1)
        s = model.dynamics.step(s, xs)
    closed_l = [closed_e[h - 1] / max(closed_n[h - 1], 1.0) for h in hs]
    return hs, np.asarray(open_l), np.asarray(closed_l)


def horizon_table(hs: np.ndarray, open_l: np.ndarray, closed_l: np.ndarray, spikes: bool) -> tuple[dict, dict]:
    """``fit.nc`` variables over a ``horizon`` dim and the ``horizon.json`` content for the errors by horizon.

    Examples
    --------
    >>> v, j = horizon_table(np.array([1, 5]), np.array([0.5, 0.5]), np.array([0.5, 0.7]), True)
    >>> sorted(v), j["horizon.json"]["closed_loop"]
    (['closed_loop_error', 'horizon', 'open_loop_error'], [0.5, 0.7])
    """
    metric = "poisson_nll_per_unit_bin" if spikes else "half_squared_z_error_per_unit_bin"
    variables = {
        "horizon": (("horizon",), hs.astype("int32")),
        "open_loop_error": (("horizon",), open_l.astype("float64")),
        "closed_loop_error": (("horizon",), closed_l.astype("float64")),
    }
    table = {"metric": metric, "horizon": [int(h) for h in hs], "open_loop": [float(v) for v in open_l],
             "closed_loop": [float(v) for v in closed_l]}
    return variables, {"horizon.json": table}


#: How ``fit.nc``'s ``inputs`` line up with its ``states`` in forecast mode.
INPUTS_ALIGNMENT = "states[t+1] = step(states[t], inputs[t]); states[0] is the learned initial state"


def generator_input_names(data: FitData) -> list[str]:
    """Names of the forecast dynamics' input channels: ``heldin:<unit index>`` (observed or fed-back activity
    of each held-in unit, in the channel order), then the task inputs."""
    return [f"heldin:{i}" for i in np.flatnonzero(~data.heldout)] + list(data.input_names)


def build_forecast_model(data: FitData, cfg: FitConfig, *, family: str, seed: int) -> ForecastModel:
    """Learned initial state + the family (held-in activity and task inputs in) + readout, sized for ``data``."""
    from cortexfit import models
    from cortexfit.models.defaults import family_defaults

    m = cfg.model
    n_hi = int((~data.heldout).sum())
    opts = family_defaults(family, m.family_options, bin_width_s=data.bin_width_s, seed=seed)
    dyn = models.build_dynamics(family, input_size=n_hi + data.n_inputs, hidden_size=m.hidden_size, **opts)
    return ForecastModel(dyn, n_heldin=n_hi, n_units=data.n_units, factors=m.factors, n_inputs=data.n_inputs,
                         heldin_index=np.flatnonzero(~data.heldout).tolist(),
                         dropout=m.dropout, exp_link=data.spikes)


def fit_forecast(data: FitData, cfg: FitConfig, request: FitRequest) -> FitResult:
    """Fit a gradient-trained family in forecast mode with scheduled sampling; predict every trial.

    Rates of the encoder window are one-step-ahead predictions (teacher-forced on held-in activity); the
    forward-prediction bins are a closed-loop rollout.

    Examples
    --------
    >>> import numpy as np
    >>> from cortexfit.core import convention
    >>> from cortexfit.fit.config import load_config
    >>> from cortexfit.fit.data import prepare
    >>> y = np.random.default_rng(0).poisson(0.5, (12, 20, 6)).astype("uint16")
    >>> data = prepare(convention.new_activity(y, time=np.arange(20) * 0.01, bin_width_s=0.01), load_config(), seed=0)
    >>> res = fit_forecast(data, load_config("smoke"), FitRequest(model="lstm", mode="forecast", device="cpu"))
    >>> res.rates.shape, sorted(res.json_files)
    ((12, 20, 6), ['horizon.json'])
    """
    from cortexfit import models
    from cortexfit.fit import loop

    device, seed, fc = request.device, request.seed, cfg.forecast
    torch.manual_seed(seed)
    poisson = data.spikes
    hi = ~data.heldout
    n_hi = int(hi.sum())
    model = build_forecast_model(data, cfg, family=request.model, seed=seed).to(device)
    f32: dict[str, Any] = {"dtype": torch.float32, "device": device}
    std_t, mean_t = torch.as_tensor(data.std, **f32), torch.as_tensor(data.mean, **f32)
    X = torch.as_tensor(data.transform(data.y[..., hi], hi) * data.valid[..., hi], **f32)
    U = torch.as_tensor(data.inputs, **f32)
    Y = torch.as_tensor(data.y if poisson else (data.y - data.mean) / data.std, **f32)
    W = torch.as_tensor(data.valid, **f32)
    with torch.no_grad():
        model.fb_mean.copy_(torch.as_tensor(data.mean[hi], **f32))
        model.fb_std.copy_(torch.as_tensor(data.std[hi], **f32))
    train_idx = torch.as_tensor(data.trials("train"), device=device)
    valid_idx = torch.as_tensor(data.trials("valid"), device=device)
    model.init_bias((Y[train_idx] * W[train_idx]).sum((0, 1)) / W[train_idx].sum((0, 1)).clamp_min(1.0))
    k = fc.k_value

    def batch_loss(model: ForecastModel, b: Tensor, epoch: int) -> Tensor:
        idx = train_idx[b]
        p = teacher_prob(fc.schedule, epoch, k=k, c=fc.c, min_prob=fc.min_prob)
        teacher = None if p >= 1.0 else torch.rand(X[idx].shape[:2], device=device) < p
        out = model(X[idx], U[idx], teacher)
        return masked_loss(out.rates, out.log_rates, Y[idx], W[idx], poisson=poisson)

    def valid_loss(model: ForecastModel) -> float:
        out = model.rollout(X[valid_idx], U[valid_idx], data.n_enc)
        return float(masked_loss(out.rates, out.log_rates, Y[valid_idx], W[valid_idx], poisson=poisson))

    res = loop.train(model, batch_loss, valid_loss, n_train=len(train_idx), opts=cfg.train, seed=seed,
                     checkpoint=request.checkpoint, fingerprint=request.fingerprint, resume=request.resume,
                     where=data.source, desc=f"fit {request.model} (forecast)", after_epoch=request.after_epoch)
    with torch.no_grad():
        out = model.rollout(X, U, data.n_enc)
        rates = out.rates if poisson else out.rates * std_t + mean_t
        te = torch.as_tensor(data.trials("test"), device=device)
        hs, op, cl = horizon_errors(model, X[te], U[te], Y[te], W[te], fc.horizons, fc.n_starts)
    variables, json_files = horizon_table(hs, op, cl, poisson)

    def save(path: Path) -> None:
        models.save_model(path, model.dynamics, modules={"readout": model.readout},
                          meta={"dt_s": data.bin_width_s, "mode": "forecast", "exp_link": poisson,
                                "input_names": ["heldin"] * n_hi + list(data.input_names),
                                "s0": model.s0.detach().cpu().tolist(), "n_enc_bins": data.n_enc})

    assert out.inputs is not None
    return FitResult(rates=rates.cpu().numpy(), states=out.states.cpu().numpy(), factors=out.factors.cpu().numpy(),
                     n_params=sum(p.numel() for p in model.parameters() if p.requires_grad), epochs=res.epochs,
                     seconds=res.seconds, save_model=save, history=res.history, variables=variables,
                     json_files=json_files, info={"best_epoch": res.best_epoch, "best_valid_loss": res.best_valid},
                     inputs=out.inputs.cpu().numpy(), input_names=generator_input_names(data),
                     inputs_alignment=INPUTS_ALIGNMENT)
