"""The latent-variable model of ``cortexfit fit --mode latent`` (the LFADS idea, without the variational part).

An :class:`Encoder` (bidirectional GRU) reads a trial's held-in activity over the encoder window and infers
the generator's initial state; the generator -- any :class:`~cortexfit.models.base.Dynamics` family -- then
runs over the whole trial (autonomously or driven by task inputs, optionally by a few encoder-derived
"controller" channels inside the encoder window); a :class:`~cortexfit.fit.heads.FactorReadout` maps its hidden units to
low-dimensional factors and the factors to rates of every unit (held-in and held-out) through an exponential
link (identity link for imaging traces).

Examples
--------
>>> import torch
>>> from cortexfit.models import build_dynamics
>>> gen = build_dynamics("vanilla", input_size=1, hidden_size=8)
>>> model = LatentModel(gen, n_heldin=5, n_units=7, n_inputs=0, factors=3, encoder_size=6)
>>> batch = LatentBatch(enc_input=torch.zeros(2, 9, 5), inputs=torch.zeros(2, 12, 0))
>>> out = model(batch)
>>> out.rates.shape, out.factors.shape, out.states.shape
(torch.Size([2, 12, 7]), torch.Size([2, 12, 3]), torch.Size([2, 12, 8]))
"""

from __future__ import annotations

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

#: How ``fit.nc``'s ``inputs`` line up with its ``states`` in latent mode.
INPUTS_ALIGNMENT = "states[t] = step(states[t-1], inputs[t]); the state before bin 0 is the encoder's g0"


@dataclass(frozen=True)
class LatentBatch:
    """Inputs of one batch: ``enc_input`` (B, T_enc, held-in) and task ``inputs`` (B, T, I_task)."""

    enc_input: Tensor
    inputs: Tensor


@dataclass(frozen=True)
class LatentOutput:
    """Outputs: ``rates`` and ``log_rates`` (B, T, N), ``factors`` (B, T, F), ``states`` (B, T, S), ``g0``, and
    ``inputs`` (B, T, I), the generator's input (task inputs, then controller channels)."""

    rates: Tensor
    log_rates: Tensor
    factors: Tensor
    states: Tensor
    g0: Tensor
    inputs: Tensor | None = None


def run_dynamics(dyn: Dynamics, u: Tensor, s0: Tensor, tbptt: int | None = None) -> Tensor:
    """``dyn(u, s0)``, optionally in chunks of ``tbptt`` bins with the state detached between chunks.

    Examples
    --------
    >>> from cortexfit.models import build_dynamics
    >>> net = build_dynamics("vanilla", input_size=1, hidden_size=3)
    >>> u, s0 = torch.randn(2, 10, 1), torch.zeros(2, 3)
    >>> torch.allclose(run_dynamics(net, u, s0, tbptt=4), net(u, s0))
    True
    """
    if not tbptt or tbptt >= u.shape[1]:
        return dyn(u, s0)
    out, s = [], s0
    for a in range(0, u.shape[1], tbptt):
        chunk = dyn(u[:, a : a + tbptt], s)
        out.append(chunk)
        s = chunk[:, -1].detach()
    return torch.cat(out, dim=1)


class Encoder(nn.Module):
    """Bidirectional GRU over held-in activity -> generator initial state (+ optional controller inputs).

    Examples
    --------
    >>> enc = Encoder(n_in=4, size=5, state_size=6, controller=2)
    >>> g0, ctrl = enc(torch.zeros(3, 7, 4))
    >>> g0.shape, ctrl.shape
    (torch.Size([3, 6]), torch.Size([3, 7, 2]))
    """

    def __init__(self, *, n_in: int, size: int, state_size: int, controller: int = 0, dropout: float = 0.0):
        super().__init__()
        self.n_in, self.size, self.state_size, self.controller = n_in, size, state_size, controller
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(n_in, size, batch_first=True, bidirectional=True)
        self.to_g0 = nn.Linear(2 * size, state_size)
        self.to_ctrl = nn.Linear(2 * size, controller) if controller else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        seq, last = self.gru(self.dropout(x))
        g0 = self.to_g0(self.dropout(torch.cat([last[0], last[1]], dim=-1)))
        ctrl = self.to_ctrl(self.dropout(seq)) if self.to_ctrl is not None else None
        return g0, ctrl

    def spec(self) -> dict:
        """Plain dict to rebuild the module."""
        return {"class": "Encoder", "n_in": self.n_in, "size": self.size, "state_size": self.state_size,
                "controller": self.controller}


class LatentModel(nn.Module):
    """Encoder + generator + readout.

    Parameters
    ----------
    dynamics : Dynamics
        The generator; its ``input_size`` must be ``max(1, n_inputs + controller)``.
    n_heldin, n_units : int
        Encoder input width (held-in units) and number of units read out (all).
    n_inputs : int
        Task-input channels (0 = autonomous; a zero channel is fed then).
    factors, encoder_size, controller, dropout : int, int, int, float
        Sizes and regularisation.
    exp_link : bool
        Exponential link (spike counts) or identity (imaging traces).
    """

    def __init__(self, dynamics: Dynamics, *, n_heldin: int, n_units: int, n_inputs: int, factors: int,
                 encoder_size: int, controller: int = 0, dropout: float = 0.0, exp_link: bool = True):
        super().__init__()
        need = max(1, n_inputs + controller)
        if dynamics.input_size != need:
            raise ValueError(f"generator input_size {dynamics.input_size} != {need} (task inputs + controller)")
        self.dynamics = dynamics
        self.n_inputs, self.controller, self.exp_link = n_inputs, controller, exp_link
        free = dynamics.state_size if dynamics.family == "lstm" else dynamics.hidden_size
        self.encoder = Encoder(n_in=n_heldin, size=encoder_size, state_size=free,
                               controller=controller, dropout=dropout)
        self.readout = FactorReadout(hidden_size=dynamics.hidden_size, factors=factors, n_units=n_units,
                                     dropout=dropout)

    def init_bias(self, mean_counts: Tensor) -> None:
        """Start each unit's rate at its mean (log link) or mean trace (identity link)."""
        init_unit_bias(self.readout, mean_counts, exp_link=self.exp_link)

    def generator_input(self, batch: LatentBatch, ctrl: Tensor | None) -> Tensor:
        """(B, T, I) input of the generator: task inputs, controller channels (0 after the encoder window)."""
        b, t = batch.inputs.shape[:2]
        parts = [batch.inputs]
        if ctrl is not None:
            pad = ctrl.new_zeros(b, t - ctrl.shape[1], ctrl.shape[2])
            parts.append(torch.cat([ctrl, pad], dim=1))
        u = torch.cat(parts, dim=-1)
        if u.shape[-1] == 0:
            u = batch.inputs.new_zeros(b, t, 1)
        return u

    def forward(self, batch: LatentBatch, tbptt: int | None = None) -> LatentOutput:
        g0, ctrl = self.encoder(batch.enc_input)
        if g0.shape[-1] < self.dynamics.state_size:  # e.g. STP variables keep the family's initial values
            rest = self.dynamics.initial_state(g0.shape[0])[:, g0.shape[-1] :]
            g0 = torch.cat([g0, rest], dim=-1)
        u = self.generator_input(batch, ctrl)
        states = run_dynamics(self.dynamics, u, g0, tbptt)
        factors, log_rates = self.readout(self.dynamics.hidden(states))
        rates, log_rates = apply_link(log_rates, exp_link=self.exp_link)
        return LatentOutput(rates=rates, log_rates=log_rates, factors=factors, states=states, g0=g0, inputs=u)


def build_latent_model(data: FitData, cfg: FitConfig, *, family: str, seed: int) -> LatentModel:
    """Encoder + the family's generator (with its data-derived defaults) + readout, sized for ``data``."""
    from cortexfit import models
    from cortexfit.models.defaults import family_defaults

    m = cfg.model
    opts = family_defaults(family, m.family_options, bin_width_s=data.bin_width_s, seed=seed)
    dyn = models.build_dynamics(family, input_size=max(1, data.n_inputs + m.controller), hidden_size=m.hidden_size,
                                **opts)
    return LatentModel(dyn, n_heldin=int((~data.heldout).sum()), n_units=data.n_units, n_inputs=data.n_inputs,
                       factors=m.factors, encoder_size=m.encoder_size, controller=m.controller, dropout=m.dropout,
                       exp_link=data.spikes)


@dataclass(frozen=True)
class _Tensors:
    """The arrays of :class:`FitData` as tensors on the fit's device."""

    X: Tensor  # encoder input (trial, n_enc, held-in)
    U: Tensor  # task inputs (trial, time, input)
    Y: Tensor  # targets: counts, or z-scored traces
    W: Tensor  # valid mask
    train: Tensor
    valid: Tensor

    @classmethod
    def of(cls, data: FitData, device: str) -> _Tensors:
        f32: dict[str, Any] = {"dtype": torch.float32, "device": device}
        y = data.y if data.spikes else (data.y - data.mean) / data.std
        return cls(X=torch.as_tensor(data.encoder_input(), **f32), U=torch.as_tensor(data.inputs, **f32),
                   Y=torch.as_tensor(y, **f32), W=torch.as_tensor(data.valid, **f32),
                   train=torch.as_tensor(data.trials("train"), device=device),
                   valid=torch.as_tensor(data.trials("valid"), device=device))


def _losses(data: FitData, cfg: FitConfig, t: _Tensors, device: str):
    """``batch_loss`` (coordinated dropout on held-in entries) and ``valid_loss`` of :func:`loop.train`."""
    m, poisson = cfg.model, data.spikes
    # validation scores what the encoder never sees: held-out units, and every unit in the forward bins
    eval_mask = torch.zeros(data.n_time, data.n_units, dtype=torch.float32, device=device)
    eval_mask[:, torch.as_tensor(data.heldout, device=device)] = 1.0
    eval_mask[data.n_enc :] = 1.0
    hi_t = torch.as_tensor(~data.heldout, device=device)
    p_cd = m.coordinated_dropout

    def batch_loss(model: LatentModel, b: Tensor, epoch: int) -> Tensor:
        idx = t.train[b]
        x, mask = t.X[idx], t.W[idx]
        if p_cd > 0:
            keep = (torch.rand(x.shape, device=device) >= p_cd).to(x.dtype)
            x = x * keep / (1 - p_cd)
            score = torch.ones_like(mask)
            score[:, : data.n_enc, hi_t] = 1.0 - keep
            mask = mask * score
        out = model(LatentBatch(x, t.U[idx]), cfg.train.tbptt)
        return masked_loss(out.rates, out.log_rates, t.Y[idx], mask, poisson=poisson) + m.ic_l2 * (out.g0**2).mean()

    def valid_loss(model: LatentModel) -> float:
        out = model(LatentBatch(t.X[t.valid], t.U[t.valid]))
        return float(masked_loss(out.rates, out.log_rates, t.Y[t.valid], t.W[t.valid] * eval_mask, poisson=poisson))

    return batch_loss, valid_loss


@torch.no_grad()
def predict_all(model: LatentModel, data: FitData, t: _Tensors, *, chunk: int = 64) -> dict[str, np.ndarray]:
    """Rates (counts per bin, or traces in data units), states, factors and generator inputs of every trial."""
    device = t.X.device
    std_t = torch.as_tensor(data.std, dtype=torch.float32, device=device)
    mean_t = torch.as_tensor(data.mean, dtype=torch.float32, device=device)
    keys = ("rates", "states", "factors", "inputs")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for a in range(0, data.n_trials, chunk):
        out = model(LatentBatch(t.X[a : a + chunk], t.U[a : a + chunk]))
        r = out.rates if data.spikes else out.rates * std_t + mean_t
        assert out.inputs is not None
        for k, v in zip(keys, (r, out.states, out.factors, out.inputs)):
            parts[k].append(v.cpu().numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def fit_latent(data: FitData, cfg: FitConfig, request: FitRequest) -> FitResult:
    """Fit a gradient-trained family in latent mode and predict every trial (see :mod:`cortexfit.fit`).

    Examples
    --------
    >>> import numpy as np
    >>> from cortexfit.core import convention
    >>> from cortexfit.fit.config import load_config
    >>> from cortexfit.fit.data import FitRequest, prepare
    >>> y = np.random.default_rng(0).poisson(0.5, (12, 20, 6)).astype("uint16")
    >>> data = prepare(convention.new_activity(y, time=np.arange(20) * 0.01, bin_width_s=0.01), load_config(), seed=0)
    >>> res = fit_latent(data, load_config("smoke"), FitRequest(model="vanilla", mode="latent", seed=0, device="cpu"))
    >>> res.rates.shape, res.epochs
    ((12, 20, 6), 3)
    """
    from cortexfit import models
    from cortexfit.fit import loop

    device, seed, m = request.device, request.seed, cfg.model
    torch.manual_seed(seed)
    model = build_latent_model(data, cfg, family=request.model, seed=seed).to(device)
    t = _Tensors.of(data, device)
    model.init_bias((t.Y[t.train] * t.W[t.train]).sum((0, 1)) / t.W[t.train].sum((0, 1)).clamp_min(1.0))
    batch_loss, valid_loss = _losses(data, cfg, t, device)
    res = loop.train(model, batch_loss, valid_loss, n_train=len(t.train), opts=cfg.train, seed=seed,
                     checkpoint=request.checkpoint, fingerprint=request.fingerprint, resume=request.resume,
                     where=data.source, desc=f"fit {request.model}", after_epoch=request.after_epoch)
    pred = predict_all(model, data, t)
    gen_inputs = list(data.input_names) + [f"controller:{i}" for i in range(m.controller)] or ["zero"]

    def save(path: Path) -> None:
        models.save_model(path, model.dynamics, modules={"encoder": model.encoder, "readout": model.readout},
                          meta={"dt_s": data.bin_width_s, "mode": "latent", "exp_link": data.spikes,
                                "input_names": list(data.input_names), "controller": m.controller,
                                "generator_inputs": gen_inputs, "n_enc_bins": data.n_enc})

    return FitResult(rates=pred["rates"], states=pred["states"], factors=pred["factors"],
                     n_params=sum(p.numel() for p in model.parameters() if p.requires_grad), epochs=res.epochs,
                     seconds=res.seconds, save_model=save, history=res.history,
                     info={"best_epoch": res.best_epoch, "best_valid_loss": res.best_valid},
                     inputs=pred["inputs"], input_names=gen_inputs, inputs_alignment=INPUTS_ALIGNMENT)
