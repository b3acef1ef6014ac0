"""``model.pt``: one file format for every fitted model, written and read safely.

A model file is a dict of plain types and tensors (``torch.load(..., weights_only=True)`` reads it; nothing is
unpickled): ``format``, ``spec`` (family and options), sizes, the recurrent model's state dict, other modules'
state dicts (encoder, readout, ...) with their specs, and ``meta``.  Baselines (no dynamics) are stored the same
way with ``spec.family`` = the baseline's name and their parameters under ``modules["baseline"]``;
:func:`load_model` gives them back as a :class:`BaselineModel`.

Examples
--------
>>> import tempfile, pathlib, numpy as np
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = save_baseline(d / "model.pt", "fa", {"w": np.ones((2, 3))}, options={"n_factors": 2})
>>> model, rest = load_model(d)
>>> model.family, model.has_dynamics, tuple(model.params["w"].shape)
('fa', False, (2, 3))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cortexfit.core.errors import ConfigError
from cortexfit.core.fileio import atomic_path
from cortexfit.models.base import Dynamics, ModelFileError, build_dynamics

FORMAT = "cortexfit-model/1"


class BaselineModel(nn.Module):
    """A baseline's saved parameters (no dynamics): ``params`` maps each name to a tensor.

    ``has_dynamics`` is False, so analyses that need a recurrent model can refuse it with a clear message.
    """

    has_dynamics = False

    def __init__(self, family: str, params: Mapping[str, torch.Tensor], options: Mapping[str, Any] | None = None):
        super().__init__()
        self.family = family
        self.options = dict(options or {})
        for name, value in params.items():
            self.register_buffer(f"p_{name}", torch.as_tensor(value))
        self._names = list(params)

    @property
    def params(self) -> dict[str, torch.Tensor]:
        """The stored parameters by name."""
        return {n: getattr(self, f"p_{n}") for n in self._names}


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
    >>> from cortexfit.models import build_dynamics
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
        spec = getattr(mod, "spec", None)
        if name not in specs and callable(spec):
            specs[name] = spec()

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


def save_baseline(path: str | os.PathLike, family: str, params: Mapping[str, Any], *,
                  options: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None) -> Path:
    """Write a baseline's parameters (numpy arrays) as ``model.pt`` in the format of :func:`save_model`."""
    payload = {
        "format": FORMAT,
        "spec": {"family": family, "options": _plain(dict(options or {}), "options")},
        "input_size": 0,
        "hidden_size": 0,
        "dynamics": {},
        "modules": {"baseline": {k: torch.as_tensor(np.asarray(v)) for k, v in params.items()}},
        "module_specs": {"baseline": {"class": family}},
        "meta": _plain({"baseline": True, **dict(meta or {})}, "meta"),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_model(path_or_fit_dir: str | os.PathLike,
               device: str | torch.device = "cpu") -> tuple[Dynamics | BaselineModel, dict]:
    """Rebuild the dynamics saved by :func:`save_model` and return the rest of the file.

    Parameters
    ----------
    path_or_fit_dir
        ``model.pt`` or a folder holding one (a fit directory, a flip-flop ``OUT.teacher`` folder).
    device
        Where to put the dynamics (module state dicts in the returned dict stay on CPU).

    Returns
    -------
    (Dynamics or BaselineModel, dict)
        The model in eval mode (a :class:`BaselineModel` for a baseline's file), and the file's dict
        (``modules``, ``module_specs``, ``meta``, ``spec`` ...).

    Raises
    ------
    ModelFileError
        Missing file, not loadable with ``weights_only=True``, or not in the ``cortexfit-model/1`` format.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from cortexfit.models import build_dynamics
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
    if payload.get("meta", {}).get("baseline"):
        try:
            base = BaselineModel(str(spec["family"]), payload["modules"]["baseline"], spec.get("options", {}))
        except (KeyError, TypeError) as exc:
            raise ModelFileError(f"{path}: incomplete baseline model file (missing {exc})") from None
        return base.to(device).eval(), {k: v for k, v in payload.items() if k != "dynamics"}
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
