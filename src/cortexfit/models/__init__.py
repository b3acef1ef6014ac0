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

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cortexfit.core.errors import ConfigError
from cortexfit.core.fileio import atomic_path
from cortexfit.models.base import (
    REGISTRY,
    Dynamics,
    ModelFileError,
    parse_options,
    register,
)
from cortexfit.models.esn import EchoStateNetwork, ESNDynamics, Readout, fit_readout
from cortexfit.models.lstm import LSTMDynamics
from cortexfit.models.rate import RateDynamics, VanillaDynamics, from_torch_rnn

FORMAT = "cortexfit-model/1"

__all__ = [
    "FORMAT",
    "REGISTRY",
    "Dynamics",
    "ESNDynamics",
    "EchoStateNetwork",
    "LSTMDynamics",
    "ModelFileError",
    "RateDynamics",
    "Readout",
    "VanillaDynamics",
    "build_dynamics",
    "families",
    "fit_readout",
    "from_torch_rnn",
    "load_model",
    "register",
    "save_model",
]


def families() -> list[str]:
    """Sorted names of the registered model families.

    Examples
    --------
    >>> "rate" in families()
    True
    """
    return sorted(REGISTRY)


def build_dynamics(family: str, *, input_size: int, hidden_size: int, **options: Any) -> Dynamics:
    """Construct a registered family with validated options.

    Parameters
    ----------
    family
        Registry name (see :func:`families`).
    input_size, hidden_size
        I and H.
    **options
        The family's options (fields of ``REGISTRY[family].Options``).

    Raises
    ------
    ConfigError
        Unknown family or option, or a bad option value (the message lists the valid ones).

    Examples
    --------
    >>> net = build_dynamics("lstm", input_size=3, hidden_size=8)
    >>> net.state_size
    16
    """
    if family not in REGISTRY:
        raise ConfigError(f"unknown model family {family!r}; valid families: {', '.join(families())}")
    cls = REGISTRY[family]
    opts = parse_options(cls.Options, family, options)
    return cls(input_size=input_size, hidden_size=hidden_size, options=opts)


def _plain(obj: Any, where: str) -> Any:
    """Check that ``obj`` holds only plain types and tensors (what ``weights_only=True`` can load)."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalar
        return obj.item()
    raise ConfigError(f"save_model: {where} has a value of type {type(obj).__name__}; only plain types and tensors")


def save_model(
    path: str | os.PathLike,
    dynamics: Dynamics,
    *,
    modules: Mapping[str, nn.Module] | None = None,
    module_specs: Mapping[str, Mapping[str, Any]] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model.pt`` atomically (temp file + ``os.replace``) as plain types and tensors.

    Parameters
    ----------
    path
        Output file (e.g. ``OUT_DIR/model.pt``); missing folders are created.
    dynamics
        The recurrent model.
    modules
        Other modules to store (encoder, readout ...), saved as CPU state dicts.
    module_specs
        Plain dicts to rebuild ``modules``; a module with a ``spec()`` method provides its own by default.
    meta
        Plain metadata (``dt_s``, ``mode`` ...).

    Returns
    -------
    Path
        The written file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> net = build_dynamics("vanilla", input_size=2, hidden_size=4)
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> save_model(d / "model.pt", net, meta={"dt_s": 0.01}).name
    'model.pt'
    >>> load_model(d)[0].spec() == net.spec()
    True
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    modules = dict(modules or {})
    specs = {k: dict(v) for k, v in (module_specs or {}).items()}
    for name, mod in modules.items():
        if name not in specs and callable(getattr(mod, "spec", None)):
            specs[name] = mod.spec()

    def cpu_state(mod: nn.Module) -> dict:
        return {k: v.detach().to("cpu").clone() for k, v in mod.state_dict().items()}

    payload = {
        "format": FORMAT,
        "spec": _plain(dynamics.spec(), "spec"),
        "input_size": int(dynamics.input_size),
        "hidden_size": int(dynamics.hidden_size),
        "dynamics": cpu_state(dynamics),
        "modules": {name: cpu_state(mod) for name, mod in modules.items()},
        "module_specs": _plain(specs, "module_specs"),
        "meta": _plain(dict(meta or {}), "meta"),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_model(path_or_fit_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Dynamics, dict]:
    """Rebuild the dynamics saved by :func:`save_model` and return the rest of the file.

    Parameters
    ----------
    path_or_fit_dir
        ``model.pt`` or a folder holding one (a fit directory, a flip-flop ``OUT.teacher`` folder).
    device
        Where to put the dynamics (module state dicts in the returned dict stay on CPU).

    Returns
    -------
    (Dynamics, dict)
        The model in eval mode, and the file's dict (``modules``, ``module_specs``, ``meta``, ``spec`` ...).

    Raises
    ------
    ModelFileError
        Missing file, not loadable with ``weights_only=True``, or not in the ``cortexfit-model/1`` format.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = save_model(d / "model.pt", build_dynamics("rate", input_size=1, hidden_size=3))
    >>> net, rest = load_model(d / "model.pt")
    >>> rest["meta"], net.family
    ({}, 'rate')
    """
    path = Path(path_or_fit_dir)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{path}: cannot be read as a model file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a {FORMAT} file")
    spec = payload["spec"]
    try:
        net = build_dynamics(
            spec["family"],
            input_size=int(payload["input_size"]),
            hidden_size=int(payload["hidden_size"]),
            **spec.get("options", {}),
        )
        net.load_state_dict(payload["dynamics"])
    except (ConfigError, KeyError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: cannot rebuild the model ({exc})") from exc
    net = net.to(device).eval()
    rest = {k: v for k, v in payload.items() if k != "dynamics"}
    return net, rest
