"""The one table of what ``cortexfit fit --model NAME`` can fit.

Each entry says how a model is fitted (a ``module:function`` per mode, imported only when used, so reading
the registry never imports torch), whether it has dynamics to analyse (fixed points, Lyapunov spectra...),
whether it is trained by gradient descent, and whether it benefits from a GPU.  The CLI's choices, the
workflow's lists (``workflow/rules/common.smk``), the config schema's enum (checked by a test) and the
report all read this table: adding a model family means adding a :class:`~cortexfit.models.base.Dynamics`
subclass and one entry here.

Examples
--------
>>> names()
['esn', 'fa', 'lstm', 'rate', 'smoothing', 'vanilla']
>>> rnn_families(), gradient_trained()
(['esn', 'lstm', 'rate', 'vanilla'], ['lstm', 'rate', 'vanilla'])
>>> get("fa").modes
('latent',)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cortexfit.core.errors import ConfigError

MODES = ("latent", "forecast")
_LATENT = "cortexfit.fit.latent:fit_latent"
_FORECAST = "cortexfit.fit.forecast:fit_forecast"


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """One fittable model.

    ``fitters`` maps each supported mode to ``"module:function"``; the function is called as
    ``fn(data, cfg, request)`` (:class:`cortexfit.fit.outputs.FitRequest`) and returns a
    :class:`cortexfit.fit.outputs.FitResult`.
    """

    name: str
    description: str
    fitters: dict[str, str] = field(default_factory=dict)
    has_dynamics: bool = False
    gradient_trained: bool = False
    wants_gpu: bool = False

    @property
    def modes(self) -> tuple[str, ...]:
        """Modes this model can be fitted in, in :data:`MODES` order."""
        return tuple(m for m in MODES if m in self.fitters)

    def fitter(self, mode: str) -> Callable[..., Any]:
        """The fit function of ``mode`` (imported now)."""
        if mode not in self.fitters:
            raise ConfigError(f"model {self.name!r} has no {mode} mode; valid modes: {', '.join(self.modes)}")
        module, func = self.fitters[mode].split(":")
        return getattr(importlib.import_module(module), func)


REGISTRY: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry(name="rate", description="leaky continuous-time rate RNN (Dale, low-rank, STP options)",
                   fitters={"latent": _LATENT, "forecast": _FORECAST}, has_dynamics=True, gradient_trained=True,
                   wants_gpu=True),
        ModelEntry(name="vanilla", description="discrete-time (Elman) RNN",
                   fitters={"latent": _LATENT, "forecast": _FORECAST}, has_dynamics=True, gradient_trained=True,
                   wants_gpu=True),
        ModelEntry(name="lstm", description="LSTM", fitters={"latent": _LATENT, "forecast": _FORECAST},
                   has_dynamics=True, gradient_trained=True, wants_gpu=True),
        ModelEntry(name="esn", description="echo-state network (fixed reservoir, closed-form readout)",
                   fitters={"latent": "cortexfit.fit.esn:fit_esn", "forecast": "cortexfit.fit.esn:fit_esn"},
                   has_dynamics=True),
        ModelEntry(name="smoothing", description="NLB smoothing baseline (Gaussian-smoothed spikes + Poisson GLM)",
                   fitters={"latent": "cortexfit.fit.baselines:fit_baseline"}),
        ModelEntry(name="fa", description="NLB factor-analysis baseline (FA latents + Poisson GLM)",
                   fitters={"latent": "cortexfit.fit.baselines:fit_baseline"}),
    )
}


def get(name: str) -> ModelEntry:
    """The entry of ``name``; :class:`ConfigError` listing the valid names otherwise.

    Examples
    --------
    >>> get("gru")
    Traceback (most recent call last):
    ...
    cortexfit.core.errors.ConfigError: unknown model 'gru'; valid models: esn, fa, lstm, rate, smoothing, vanilla
    """
    if name not in REGISTRY:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(names())}")
    return REGISTRY[name]


def names() -> list[str]:
    """Every model name, sorted."""
    return sorted(REGISTRY)


def rnn_families() -> list[str]:
    """Models with dynamics to analyse (fixed points, geometry of states, spectra)."""
    return sorted(n for n, e in REGISTRY.items() if e.has_dynamics)


def gradient_trained() -> list[str]:
    """Models trained by gradient descent (checkpoints, ``--resume``, GPU when present)."""
    return sorted(n for n, e in REGISTRY.items() if e.gradient_trained)


def baselines() -> list[str]:
    """Models without dynamics (the NLB baselines)."""
    return sorted(n for n, e in REGISTRY.items() if not e.has_dynamics)


def gpu_models() -> list[str]:
    """Models that use a GPU when one is present (the workflow gives them a ``gpu`` resource)."""
    return sorted(n for n, e in REGISTRY.items() if e.wants_gpu)
