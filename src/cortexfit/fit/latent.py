"""The latent-variable model of ``cortexfit fit --mode latent`` (the LFADS idea, without the variational part).

An :class:`Encoder` (bidirectional GRU) reads a trial's held-in activity over the encoder window and infers
the generator's initial state; the generator -- any :class:`~cortexfit.models.base.Dynamics` family -- then
runs over the whole trial (autonomously or driven by task inputs, optionally by a few encoder-derived
"controller" channels inside the encoder window); a :class:`Readout` maps its hidden units to
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

import numpy as np
import torch
from torch import Tensor, nn

from cortexfit.models.base import Dynamics

MAX_LOG_RATE = 12.0


@dataclass(frozen=True)
class LatentBatch:
    """Inputs of one batch: ``enc_input`` (B, T_enc, held-in) and task ``inputs`` (B, T, I_task)."""

    enc_input: Tensor
    inputs: Tensor


@dataclass(frozen=True)
class LatentOutput:
    """Outputs: ``rates`` and ``log_rates`` (B, T, N), ``factors`` (B, T, F), ``states`` (B, T, S), ``g0``."""

    rates: Tensor
    log_rates: Tensor
    factors: Tensor
    states: Tensor
    g0: Tensor


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


class Readout(nn.Module):
    """Hidden units -> factors (linear, no bias) -> log-rates of every unit (linear).

    Examples
    --------
    >>> r = Readout(hidden_size=8, factors=3, n_units=5)
    >>> f, log_r = r(torch.zeros(2, 4, 8))
    >>> f.shape, log_r.shape
    (torch.Size([2, 4, 3]), torch.Size([2, 4, 5]))
    """

    def __init__(self, *, hidden_size: int, factors: int, n_units: int, dropout: float = 0.0):
        super().__init__()
        self.hidden_size, self.factors, self.n_units = hidden_size, factors, n_units
        self.dropout = nn.Dropout(dropout)
        self.to_factors = nn.Linear(hidden_size, factors, bias=False)
        self.to_units = nn.Linear(factors, n_units)

    def forward(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        factors = self.to_factors(self.dropout(hidden))
        return factors, self.to_units(factors)

    def spec(self) -> dict:
        """Plain dict to rebuild the module."""
        return {"class": "Readout", "hidden_size": self.hidden_size, "factors": self.factors, "n_units": self.n_units}


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
        self.readout = Readout(hidden_size=dynamics.hidden_size, factors=factors, n_units=n_units, dropout=dropout)

    def init_bias(self, mean_counts: Tensor) -> None:
        """Start each unit's rate at its mean (log link) or mean trace (identity link)."""
        with torch.no_grad():
            b = torch.log(mean_counts.clamp_min(1e-3)) if self.exp_link else mean_counts
            self.readout.to_units.bias.copy_(b)

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
        states = run_dynamics(self.dynamics, self.generator_input(batch, ctrl), g0, tbptt)
        factors, log_rates = self.readout(self.dynamics.hidden(states))
        if self.exp_link:
            log_rates = log_rates.clamp(max=MAX_LOG_RATE)
            rates = torch.exp(log_rates)
        else:
            rates = log_rates
        return LatentOutput(rates=rates, log_rates=log_rates, factors=factors, states=states, g0=g0)


def masked_loss(out_rates: Tensor, out_log: Tensor, target: Tensor, mask: Tensor, *, poisson: bool,
                scale: Tensor | None = None) -> Tensor:
    """Mean Poisson NLL (up to the constant ``log y!``) or Gaussian NLL over ``mask`` entries.

    For the Gaussian case ``out_rates`` are predicted traces and ``scale`` the per-unit std.

    Examples
    --------
    >>> y = torch.tensor([[[1.0, 0.0]]]); m = torch.ones_like(y)
    >>> float(masked_loss(torch.ones_like(y), torch.zeros_like(y), y, m, poisson=True))
    1.0
    """
    if poisson:
        per = out_rates - target * out_log
    else:
        s = scale if scale is not None else torch.ones_like(target[0, 0])
        per = 0.5 * ((target - out_rates) / s) ** 2
    return (per * mask).sum() / mask.sum().clamp_min(1.0)


def family_options(family: str, cfg_options: dict, bin_width_s: float, seed: int) -> dict:
    """Options for :func:`cortexfit.models.build_dynamics`: the config's, plus data-derived defaults.

    ``rate`` gets ``dt`` = the bin width and ``tau`` = 4 bins (at least ``dt``) unless set; ``esn`` gets the
    fit's seed as its reservoir seed unless set.

    Examples
    --------
    >>> family_options("rate", {}, 0.005, 0)
    {'dt': 0.005, 'tau': 0.02}
    """
    opts = dict(cfg_options)
    if family == "rate":
        opts.setdefault("dt", float(bin_width_s))
        opts.setdefault("tau", max(float(opts["dt"]), 4.0 * float(bin_width_s)))
    if family == "esn":
        opts.setdefault("seed", int(seed))
    return opts


def fit_latent(data, cfg, *, family: str, device: str, seed: int, checkpoint=None, fingerprint: str = "",
               resume=None, after_epoch=None):
    """Fit a gradient-trained family in latent mode and predict every trial (see :mod:`cortexfit.fit`).

    Returns a :class:`cortexfit.fit.data.FitResult`.
    Examples
    --------
    >>> import numpy as np
    >>> from cortexfit.core import convention
    >>> from cortexfit.fit.config import load_config
    >>> from cortexfit.fit.data import prepare
    >>> y = np.random.default_rng(0).poisson(0.5, (12, 20, 6)).astype("uint16")
    >>> data = prepare(convention.new_activity(y, time=np.arange(20) * 0.01, bin_width_s=0.01), load_config(), seed=0)
    >>> res = fit_latent(data, load_config("smoke"), family="vanilla", device="cpu", seed=0)
    >>> res.rates.shape, res.epochs
    ((12, 20, 6), 3)
    """
    from cortexfit import models
    from cortexfit.fit import loop
    from cortexfit.fit.data import FitResult

    torch.manual_seed(seed)
    m = cfg.model
    poisson = data.spikes
    opts = family_options(family, m.family_options, data.bin_width_s, seed)
    dyn = models.build_dynamics(family, input_size=max(1, data.n_inputs + m.controller), hidden_size=m.hidden_size,
                                **opts)
    hi = ~data.heldout
    model = LatentModel(dyn, n_heldin=int(hi.sum()), n_units=data.n_units, n_inputs=data.n_inputs,
                        factors=m.factors, encoder_size=m.encoder_size, controller=m.controller,
                        dropout=m.dropout, exp_link=poisson).to(device)
    f32 = {"dtype": torch.float32, "device": device}
    std_t, mean_t = torch.as_tensor(data.std, **f32), torch.as_tensor(data.mean, **f32)
    X = torch.as_tensor(data.encoder_input(), **f32)
    U = torch.as_tensor(data.inputs, **f32)
    Y = torch.as_tensor(data.y if poisson else (data.y - data.mean) / data.std, **f32)
    W = torch.as_tensor(data.valid, **f32)
    train_idx = torch.as_tensor(data.trials("train"), device=device)
    valid_idx = torch.as_tensor(data.trials("valid"), device=device)
    mean = (Y[train_idx] * W[train_idx]).sum((0, 1)) / W[train_idx].sum((0, 1)).clamp_min(1.0)
    model.init_bias(mean)
    # validation scores what the encoder never sees: held-out units, and every unit in the forward bins
    eval_mask = torch.zeros(data.n_time, data.n_units, **f32)
    eval_mask[:, torch.as_tensor(data.heldout, device=device)] = 1.0
    eval_mask[data.n_enc :] = 1.0
    hi_t = torch.as_tensor(hi, device=device)
    p_cd = m.coordinated_dropout

    def loss_on(out: LatentOutput, idx: Tensor, mask: Tensor) -> Tensor:
        return masked_loss(out.rates, out.log_rates, Y[idx], mask, poisson=poisson)

    def batch_loss(model: LatentModel, b: Tensor, epoch: int) -> Tensor:
        idx = train_idx[b]
        x, mask = X[idx], W[idx]
        if p_cd > 0:
            keep = (torch.rand(x.shape, device=device) >= p_cd).to(x.dtype)
            x = x * keep / (1 - p_cd)
            score = torch.ones_like(mask)
            score[:, : data.n_enc, hi_t] = 1.0 - keep
            mask = mask * score
        out = model(LatentBatch(x, U[idx]), cfg.train.tbptt)
        return loss_on(out, idx, mask) + m.ic_l2 * (out.g0**2).mean()

    def valid_loss(model: LatentModel) -> float:
        out = model(LatentBatch(X[valid_idx], U[valid_idx]))
        return float(loss_on(out, valid_idx, W[valid_idx] * eval_mask))

    res = loop.train(model, batch_loss, valid_loss, n_train=len(train_idx), opts=cfg.train, seed=seed,
                        checkpoint=checkpoint, fingerprint=fingerprint, resume=resume, where=data.source,
                        desc=f"fit {family}", after_epoch=after_epoch)
    rates, states, factors = [], [], []
    with torch.no_grad():
        for a in range(0, data.n_trials, 64):
            out = model(LatentBatch(X[a : a + 64], U[a : a + 64]))
            r = out.rates if poisson else out.rates * std_t + mean_t
            rates.append(r.cpu().numpy())
            states.append(out.states.cpu().numpy())
            factors.append(out.factors.cpu().numpy())

    gen_inputs = list(data.input_names) + [f"controller:{i}" for i in range(m.controller)] or ["zero"]

    def save(path):
        models.save_model(path, model.dynamics, modules={"encoder": model.encoder, "readout": model.readout},
                          meta={"dt_s": data.bin_width_s, "mode": "latent", "exp_link": poisson,
                                "input_names": list(data.input_names), "controller": m.controller,
                                "generator_inputs": gen_inputs,
                                "n_enc_bins": data.n_enc})

    return FitResult(rates=np.concatenate(rates), states=np.concatenate(states), factors=np.concatenate(factors),
                     n_params=sum(p.numel() for p in model.parameters() if p.requires_grad), epochs=res.epochs,
                     seconds=res.seconds, save_model=save, history=res.history,
                     info={"best_epoch": res.best_epoch, "best_valid_loss": res.best_valid})
