"""Model families: a registry of recurrent :class:`~cortexfit.models.base.Dynamics` and ``model.pt`` I/O.

Families: ``rate`` (leaky continuous-time rate network; options: nonlinearity, dt/tau, noise, Dale's law,
low rank, short-term plasticity), ``vanilla`` (the same with alpha = 1), ``lstm`` and ``esn`` (fixed random
reservoir; readout fitted in closed form by :func:`fit_readout`).

Examples
--------
>>> import torch
>>> from cortexfit.models import build_dynamics, families
>>> families()
['esn', 'lstm', 'rate', 'vanilla']
>>> net = build_dynamics("rate", input_size=3, hidden_size=16, nonlinearity="relu", dale=True)
>>> states = net(torch.zeros(2, 10, 3))
>>> net.hidden(states).shape
torch.Size([2, 10, 16])
"""

from __future__ import annotations

from cortexfit.models.base import REGISTRY, Dynamics, ModelFileError, build_dynamics, families
from cortexfit.models.esn import ESNDynamics
from cortexfit.models.io import FORMAT, BaselineModel, load_model, save_baseline, save_model
from cortexfit.models.lstm import LSTMDynamics
from cortexfit.models.rate import RateDynamics, VanillaDynamics, from_torch_rnn
from cortexfit.models.readouts import RidgeReadout, StateReadout, fit_readout

__all__ = [
    "FORMAT",
    "REGISTRY",
    "BaselineModel",
    "Dynamics",
    "ESNDynamics",
    "LSTMDynamics",
    "ModelFileError",
    "RateDynamics",
    "RidgeReadout",
    "StateReadout",
    "VanillaDynamics",
    "build_dynamics",
    "families",
    "fit_readout",
    "from_torch_rnn",
    "load_model",
    "save_baseline",
    "save_model",
]
