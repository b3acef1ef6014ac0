"""The echo-state family: a fixed reservoir and a readout fitted in closed form (no gradient training).

``esn``: a fixed reservoir (:class:`cortexfit.models.esn.ESNDynamics`) is driven by the held-in activity of
the encoder window (zero in the forward-prediction bins) and the task inputs.  In latent mode the activity is
Gaussian-smoothed over ``esn.smooth_ms`` and scaled as ``log1p(smoothed / unit mean)`` and a second pass
runs the reservoir backwards in time (``esn.bidirectional``), so each bin's features see the whole trial;
in forecast mode the inputs are causal ``log1p`` counts and state ``s_t`` has seen bins ``< t`` only.  The
readout to every unit is either ridge regression of ``log(smoothed counts + c)`` (``c`` = ``esn.log_offset``
times the unit's mean count) with the penalty chosen by k-fold CV over train trials
(:func:`cortexfit.models.readouts.fit_readout`), recalibrated per unit so mean predicted and observed counts agree,
or a Poisson GLM (:func:`cortexfit.fit.glm.fit_poisson_glm`) with the penalty chosen on valid trials.
Rates are ``exp(.)`` of the readout, hence > 0.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cortexfit.core.smoothing import gaussian_smooth
from cortexfit.fit.config import FitConfig
from cortexfit.fit.data import FitData, FitRequest
from cortexfit.fit.forecast import INPUTS_ALIGNMENT as FORECAST_ALIGNMENT
from cortexfit.fit.forecast import generator_input_names
from cortexfit.fit.heads import apply_link
from cortexfit.fit.metrics import bits_per_spike
from cortexfit.fit.outputs import FitResult
from cortexfit.models.esn import ESNDynamics
from cortexfit.models.readouts import StateReadout

log = logging.getLogger(__name__)

#: How ``fit.nc``'s ``inputs`` line up with ``states`` (the reservoir drive: held-in activity, then task inputs).
LATENT_ALIGNMENT = ("states[t] = step(states[t-1], inputs[t]) (forward run; the backward run only feeds the "
                    "readout); the state before bin 0 is the reservoir's zero state")


def _set_pcs(readout: StateReadout, feats: Tensor) -> None:
    flat = feats.reshape(-1, feats.shape[-1]).double()
    mu = flat.mean(0)
    _, _, v = torch.linalg.svd(flat - mu, full_matrices=False)
    k = min(readout.factors, v.shape[0])
    with torch.no_grad():
        readout.pc_mean.copy_(mu.float())
        readout.pcs.zero_()
        readout.pcs[:k] = v[:k].float()


def _fit_readout(readout: StateReadout, feats: Tensor, data: FitData, cfg: FitConfig, rows: dict[str, np.ndarray],
                 score_mask: np.ndarray) -> dict[str, Any]:
    """Fit ``readout`` on train trials (see the module docstring); returns what was chosen."""
    from cortexfit.models import fit_readout

    e = cfg.esn
    tr, va = rows["train"], rows["valid"]
    spikes = data.nan_spikes()
    if not data.spikes:
        target = torch.as_tensor(np.nan_to_num((data.y - data.mean) / data.std), dtype=feats.dtype)
        ro = fit_readout(feats[tr], target[tr], list(e.alphas), folds=e.cv_folds)
        readout.linear.load_state_dict(ro.state_dict())
        return {"readout": "ridge", "alpha": ro.alpha}
    if e.readout == "ridge":
        sm = gaussian_smooth(spikes, e.smooth_ms / 1000.0 / data.bin_width_s, axis=1)
        mean = np.nanmean(spikes[tr].reshape(-1, data.n_units), axis=0)
        sm = np.where(np.isnan(sm), mean, sm)
        c = np.maximum(e.log_offset * mean, 1e-4)
        target = torch.as_tensor(np.log(sm + c), dtype=feats.dtype)
        ro = fit_readout(feats[tr], target[tr], list(e.alphas), folds=e.cv_folds)
        readout.linear.load_state_dict(ro.state_dict())
        with torch.no_grad():
            pred = torch.exp(readout.linear(feats[tr])).numpy()
        w = ~np.isnan(spikes[tr])
        scale = np.nansum(spikes[tr], axis=(0, 1)) / np.maximum((pred * w).sum(axis=(0, 1)), 1e-12)
        with torch.no_grad():
            readout.linear.bias.add_(torch.as_tensor(np.log(np.maximum(scale, 1e-6)), dtype=feats.dtype))
        return {"readout": "ridge", "alpha": ro.alpha}
    from cortexfit.fit.glm import fit_poisson_glm

    x = feats.numpy().astype("float64")
    best, best_bps, init = None, -np.inf, None
    for a in e.poisson_alphas:
        init = fit_poisson_glm(x[tr].reshape(-1, x.shape[-1]), spikes[tr].reshape(-1, data.n_units), alpha=a, init=init)
        pred = np.exp(np.minimum(x[va] @ init[0] + init[1], 30.0))
        held = np.where(score_mask[None] > 0, spikes[va], np.nan)
        bps = bits_per_spike(pred, held, label="esn validation bits/spike") if np.nansum(held) > 0 else 0.0
        if best is None or bps > best_bps:
            best, best_bps = (a, init), bps
    assert best is not None  # poisson_alphas is never empty (validated)
    a, (wt, b) = best
    with torch.no_grad():
        readout.linear.weight.copy_(torch.as_tensor(wt.T))
        readout.linear.bias.copy_(torch.as_tensor(b))
    return {"readout": "poisson", "alpha": float(a), "valid_bps": float(best_bps)}


def esn_inputs(data: FitData, cfg: FitConfig, mode: str) -> np.ndarray:
    """(trial, time, held-in + task inputs) reservoir drive; zero in the forward-prediction bins.

    Latent mode smooths the held-in spikes acausally (``esn.smooth_ms``) and scales them by the unit means;
    forecast mode feeds the causal ``log1p`` counts.
    """
    hi = ~data.heldout
    x = data.transform(data.y[..., hi], hi) * data.valid[..., hi]
    if mode == "latent" and data.spikes and cfg.esn.smooth_ms > 0:  # acausal smoothing: latent mode only
        seen = np.where(np.arange(data.n_time)[None, :, None] < data.n_enc, data.nan_spikes()[..., hi], np.nan)
        sm = np.nan_to_num(gaussian_smooth(seen, cfg.esn.smooth_ms / 1000.0 / data.bin_width_s, axis=1))
        x = np.log1p(sm / np.maximum(data.mean[hi], 1e-3)).astype("float32")
    x[:, data.n_enc :] = 0.0  # the forward-prediction bins are never seen
    return np.concatenate([x, data.inputs], axis=-1)


@torch.no_grad()
def esn_states(dyn: ESNDynamics, U: Tensor, *, mode: str, bidirectional: bool) -> tuple[Tensor, Tensor]:
    """``(states, features)``: forecast mode reads state ``s_t`` (inputs ``< t``); latent mode the forward run,
    plus a backward run when ``bidirectional``."""
    fwd = dyn(U)
    if mode == "forecast":
        states = torch.cat([dyn.initial_state(U.shape[0])[:, None], fwd[:, :-1]], dim=1)
        return states, states
    feats = torch.cat([fwd, dyn(U.flip(1)).flip(1)], dim=-1) if bidirectional else fwd
    return fwd, feats


def _forecast_rollout(dyn: ESNDynamics, readout: StateReadout, data: FitData, cfg: FitConfig,
                      result: FitResult) -> None:
    """Closed-loop rates and states over the forward-prediction bins and the errors by horizon (in place)."""
    from cortexfit.fit.forecast import ForecastModel, horizon_errors, horizon_table

    hi = ~data.heldout
    fm = ForecastModel(dyn, n_heldin=int(hi.sum()), n_units=data.n_units, factors=cfg.model.factors,
                       n_inputs=data.n_inputs, exp_link=data.spikes, readout=readout,
                       heldin_index=np.flatnonzero(hi).tolist())
    fm.s0.requires_grad_(False)
    with torch.no_grad():
        fm.fb_mean.copy_(torch.as_tensor(data.mean[hi]))
        fm.fb_std.copy_(torch.as_tensor(data.std[hi]))
        xt = torch.as_tensor(data.transform(data.y[..., hi], hi) * data.valid[..., hi])
        out = fm.rollout(xt, torch.as_tensor(data.inputs), data.n_enc)
    fp = out.rates.numpy() if data.spikes else out.rates.numpy() * data.std + data.mean
    result.rates[:, data.n_enc :] = fp[:, data.n_enc :]
    assert result.states is not None
    result.states[:, data.n_enc :] = out.states[:, data.n_enc :].numpy()
    if result.inputs is not None and out.inputs is not None:  # the fed-back predictions drive the closed loop
        result.inputs[:, data.n_enc :] = out.inputs[:, data.n_enc :].numpy()
    te = data.trials("test")
    y = torch.as_tensor(data.y if data.spikes else (data.y - data.mean) / data.std)
    hs, op, cl = horizon_errors(fm, xt[te], torch.as_tensor(data.inputs[te]), y[te], torch.as_tensor(data.valid[te]),
                                cfg.forecast.horizons, cfg.forecast.n_starts)
    result.variables, result.json_files = horizon_table(hs, op, cl, data.spikes)


def fit_esn(data: FitData, cfg: FitConfig, request: FitRequest) -> FitResult:
    """Echo-state fit in ``latent`` or ``forecast`` mode (CPU; the reservoir is small).

    Examples
    --------
    >>> import numpy as np
    >>> from cortexfit.core import convention
    >>> from cortexfit.fit.config import load_config
    >>> from cortexfit.fit.data import prepare
    >>> y = np.random.default_rng(0).poisson(0.5, (12, 20, 6)).astype("uint16")
    >>> data = prepare(convention.new_activity(y, time=np.arange(20) * 0.01, bin_width_s=0.01), load_config(), seed=0)
    >>> res = fit_esn(data, load_config("smoke"), FitRequest(model="esn", mode="latent"))
    >>> res.rates.shape, res.epochs is None
    ((12, 20, 6), True)
    """
    from cortexfit import models
    from cortexfit.models.defaults import family_defaults

    mode, seed = request.mode, request.seed
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    u = esn_inputs(data, cfg, mode)
    opts = family_defaults("esn", cfg.model.family_options, bin_width_s=data.bin_width_s, seed=seed)
    dyn = models.build_dynamics("esn", input_size=u.shape[-1], hidden_size=cfg.esn.hidden_size, **opts)
    assert isinstance(dyn, ESNDynamics)
    dyn.eval()
    two = cfg.esn.bidirectional and mode == "latent"
    log.info("esn (%s): reservoir run%s: %d trials x %d bins, %d inputs -> %d units ...", mode,
             " forwards and backwards" if two else "", u.shape[0], u.shape[1], u.shape[2], dyn.hidden_size)
    states, feats = esn_states(dyn, torch.as_tensor(u), mode=mode, bidirectional=cfg.esn.bidirectional)
    rows = {s: data.trials(s) for s in ("train", "valid", "test")}
    log.info("esn (%s): reservoir run done, elapsed %.1f s; readout fit (%s, %d features -> %d units, %d train "
             "trials) ...", mode, time.perf_counter() - t0, cfg.esn.readout if data.spikes else "ridge",
             feats.shape[-1], data.n_units, len(rows["train"]))
    score = np.zeros((data.n_time, data.n_units))
    score[:, data.heldout] = 1.0
    score[data.n_enc :] = 1.0
    readout = StateReadout(n_features=feats.shape[-1], n_units=data.n_units, factors=cfg.model.factors)
    _set_pcs(readout, feats[rows["train"]])
    info = _fit_readout(readout, feats, data, cfg, rows, score)
    log.info("esn (%s): readout fit done (%s), elapsed %.1f s", mode,
             ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()),
             time.perf_counter() - t0)
    with torch.no_grad():
        factors, log_r = readout(feats)
    rates = apply_link(log_r, exp_link=True)[0].numpy() if data.spikes else log_r.numpy() * data.std + data.mean
    n_hi = int((~data.heldout).sum())

    def save(path: Path) -> None:
        models.save_model(path, dyn, modules={"readout": readout},
                          meta={"dt_s": data.bin_width_s, "mode": mode, "exp_link": data.spikes,
                                "input_names": ["heldin"] * n_hi + list(data.input_names),
                                "bidirectional": bool(cfg.esn.bidirectional and mode == "latent"), **info})

    result = FitResult(rates=rates, states=states.numpy(), factors=factors.numpy(),
                       n_params=sum(p.numel() for p in readout.linear.parameters()), epochs=None, seconds=0.0,
                       save_model=save, info=info, inputs=u.copy(), input_names=generator_input_names(data),
                       inputs_alignment=FORECAST_ALIGNMENT if mode == "forecast" else LATENT_ALIGNMENT)
    if mode == "forecast":
        log.info("esn (forecast): closed-loop rollout and errors by horizon ...")
        _forecast_rollout(dyn, readout, data, cfg, result)
    result.seconds = time.perf_counter() - t0
    log.info("esn (%s): fit done in %.1f s", mode, result.seconds)
    return result
