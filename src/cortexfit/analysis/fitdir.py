"""The one reader of a fit folder, shared by ``fixed-points``, ``geometry``, ``dynamics`` and the report.

A fit folder (written by ``cortexfit fit``; a flip-flop ``OUT.teacher`` folder holds only ``model.pt``)::

    FIT_DIR/fit.nc          kind "fit": rates, optional states/factors/inputs, per-trial coords
    FIT_DIR/model.pt        the fitted dynamics (:func:`cortexfit.models.load_model`)
    FIT_DIR/metrics.json    scores (co-bps ...)
    FIT_DIR/history.csv     loss per epoch (gradient-trained models)
    FIT_DIR/<kind>.nc       analyses the workflow writes beside them (:data:`ANALYSES`)

:func:`read_fit_dir` reads the small files at once (missing or unreadable ones become ``None`` plus a note)
and ``fit.nc`` and ``model.pt`` lazily, validated, on first use.  :func:`model_trajectories` gives the
trajectories the dynamics analyses start from.

Examples
--------
>>> folder = read_fit_dir("results/mc_maze/fits/rate")  # doctest: +SKIP
>>> folder.co_bps, folder.fit["rates"].dims  # doctest: +SKIP
(0.31, ('trial', 'time', 'unit'))
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from cortexfit.core import convention
from cortexfit.core.errors import AnalysisError, CortexfitError

if TYPE_CHECKING:
    from cortexfit.models.base import Dynamics

#: Analysis files the workflow writes into a fit folder, as ``<kind>.nc``.
ANALYSES = ("geometry", "fixed_points", "dynamics")
#: Variables of ``fit.nc`` that hold the model's trajectories, in order of preference.
TRAJECTORY_VARIABLES = ("states", "factors", "rates")


@dataclass
class FitFolder:
    """One fit folder: ``metrics`` and ``history`` (None when absent, see ``notes``); ``fit``, the model and
    the analysis files are read, validated, when first asked for."""

    path: Path
    metrics: dict[str, Any] | None = None
    history: dict[str, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    _models: dict[str, tuple[Dynamics, dict[str, Any]]] = field(default_factory=dict, repr=False)
    _saved: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """The folder's name (the workflow names it after the model)."""
        return self.path.name

    @property
    def model_name(self) -> str:
        """The registry name of the fitted model: ``metrics.json``'s ``model``, else the folder name."""
        return str((self.metrics or {}).get("model") or self.name)

    @property
    def co_bps(self) -> float:
        """co-bps from ``metrics.json`` as a float (NaN where absent)."""
        return as_float((self.metrics or {}).get("co_bps"))

    @property
    def has_fit(self) -> bool:
        """Whether the folder holds ``fit.nc``."""
        return (self.path / "fit.nc").is_file()

    @cached_property
    def fit(self) -> xr.Dataset:
        """``fit.nc``, read fully and validated (:class:`~cortexfit.core.errors.SchemaError` otherwise)."""
        return convention.read_dataset(self.path / "fit.nc", "fit")

    def trajectory_variable(self) -> str:
        """The variable of ``fit.nc`` holding the model's trajectories: ``states``, else ``factors``, else
        ``rates`` (:data:`TRAJECTORY_VARIABLES`)."""
        return next(v for v in TRAJECTORY_VARIABLES if v in self.fit.data_vars)

    def model(self, device: str = "cpu") -> tuple[Dynamics, dict[str, Any]]:
        """``model.pt`` as ``(dynamics, meta)`` on ``device`` (loaded once per device).

        Raises :class:`~cortexfit.core.errors.AnalysisError` when the file is missing or not a model.
        """
        if device not in self._models:
            from cortexfit.models import load_model
            from cortexfit.models.base import Dynamics

            try:
                dyn, rest = load_model(self.path, device)
            except CortexfitError as exc:
                raise AnalysisError(str(exc)) from None
            if not isinstance(dyn, Dynamics):
                raise AnalysisError(f"{self.path / 'model.pt'}: a {type(dyn).__name__} has no recurrent dynamics")
            self._models[device] = (dyn, dict(rest.get("meta") or {}))
            self._saved = rest
        return self._models[device]

    def saved_modules(self) -> dict[str, Any]:
        """What ``model.pt`` holds besides the dynamics (``modules``, ``module_specs``, ``meta``), read with
        :meth:`model` (once)."""
        if not self._saved:
            self.model()
        return self._saved

    def analysis_path(self, kind: str) -> Path:
        """Where the workflow puts the ``kind`` analysis of this fit (``<kind>.nc``)."""
        return self.path / f"{kind}.nc"

    def read_analysis(self, kind: str) -> xr.Dataset | None:
        """The ``kind`` analysis file, validated; None when absent (SchemaError when invalid)."""
        path = self.analysis_path(kind)
        return convention.read_dataset(path, kind) if path.is_file() else None


def as_float(value: Any) -> float:
    """``float(value)``, NaN for None or anything not a number.

    Examples
    --------
    >>> as_float("0.5"), as_float(None)
    (0.5, nan)
    """
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _read_metrics(path: Path, notes: list[str]) -> dict[str, Any] | None:
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        notes.append("metrics.json missing (fit not finished?)")
        return None
    except (OSError, ValueError) as exc:
        notes.append(f"metrics.json unreadable ({exc})")
        return None
    if not isinstance(metrics, dict):
        notes.append("metrics.json is not a JSON object")
        return None
    return metrics


def _read_history(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError, pd.errors.EmptyDataError):
        return None
    if frame.empty or "epoch" not in frame.columns:
        return None
    return {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float) for c in frame.columns}


def read_fit_dir(path: str | os.PathLike) -> FitFolder:
    """Read a fit folder's ``metrics.json`` and ``history.csv`` (``fit.nc`` and the model come lazily).

    Raises :class:`~cortexfit.core.errors.AnalysisError` when ``path`` is not a folder.

    Examples
    --------
    >>> import tempfile
    >>> folder = read_fit_dir(tempfile.mkdtemp())
    >>> folder.metrics, folder.notes, math.isnan(folder.co_bps)
    (None, ['metrics.json missing (fit not finished?)'], True)
    """
    path = Path(path)
    if not path.is_dir():
        raise AnalysisError(f"{path}: no such fit folder (a `cortexfit fit` output holding fit.nc and model.pt)")
    notes: list[str] = []
    metrics = _read_metrics(path / "metrics.json", notes)
    return FitFolder(path=path, metrics=metrics, history=_read_history(path / "history.csv"), notes=notes)


# ------------------------------------------------------------------------ trajectories for the dynamics stages
@dataclass
class ModelTrajectories:
    """What the dynamics analyses start from (``states``/``inputs`` numpy (trial, time, .)).

    ``simulated`` is True when ``fit.nc`` has no states and the model was driven by random pulses instead;
    ``fit`` is ``fit.nc`` (None for a folder without one).  ``input_offset``: the input that takes
    ``states[:, t]`` to ``states[:, t + 1]`` is ``inputs[:, t + input_offset]`` -- 1 where ``states[t] =
    step(states[t-1], inputs[t])`` (latent fits, simulated runs), 0 where ``states[t+1] = step(states[t],
    inputs[t])`` (forecast fits), as ``fit.nc``'s ``inputs`` attribute ``alignment`` says.
    """

    dynamics: Dynamics
    meta: dict[str, Any]
    states: np.ndarray
    inputs: np.ndarray | None
    dt_s: float
    conditions: np.ndarray | None
    simulated: bool
    fit: xr.Dataset | None
    input_offset: int = 1

    def next_inputs(self, trials: np.ndarray | slice = slice(None)) -> np.ndarray | None:
        """(trial, time, input) inputs that drive ``states[trials, 0]`` onwards, one per following step.

        Examples
        --------
        >>> import numpy as np
        >>> m = ModelTrajectories(dynamics=None, meta={}, states=np.zeros((1, 3, 2)), dt_s=0.01,
        ...                       inputs=np.arange(3.0).reshape(1, 3, 1), conditions=None, simulated=False, fit=None)
        >>> m.next_inputs()[0, :, 0].tolist()
        [1.0, 2.0]
        """
        return None if self.inputs is None else self.inputs[trials, self.input_offset :]


def _from_fit_nc(ds: xr.Dataset, dyn: Dynamics, where: Path) -> tuple[np.ndarray | None, np.ndarray | None,
                                                                         np.ndarray | None, float | None]:
    """(inputs, states, conditions, dt from the time coordinate) of ``fit.nc``, checked against the model."""
    inputs = states = conditions = None
    if "inputs" in ds:
        inputs = np.asarray(ds["inputs"].transpose("trial", "time", ...).values, dtype=float)
    if "states" in ds:
        states = np.asarray(ds["states"].transpose("trial", "time", "state").values, dtype=float)
        if states.shape[-1] != dyn.state_size:
            raise AnalysisError(f"{where}: states have {states.shape[-1]} columns, model.pt {dyn.state_size}")
    if "condition" in ds.coords:
        conditions = np.asarray(ds["condition"].values)
    dt = float(np.median(np.diff(ds["time"].values))) if ds.sizes.get("time", 0) > 1 else None
    if inputs is not None and inputs.shape[-1] != dyn.input_size:
        raise AnalysisError(f"{where}: inputs have {inputs.shape[-1]} channels, model.pt {dyn.input_size}")
    return inputs, states, conditions, dt


def _simulate(dyn: Dynamics, inputs: np.ndarray | None, *, seed: int, n_trials: int, n_steps: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Drive the model from its initial state by ``inputs``, else by sparse random +-1 pulses."""
    import torch

    from cortexfit.analysis.jacobians import frozen_copy

    if inputs is None:
        g = torch.Generator().manual_seed(seed)
        shape = (n_trials, n_steps, dyn.input_size)
        pulses = (torch.rand(shape, generator=g) < 0.05).double()
        inputs = (pulses * (2.0 * (torch.rand(shape, generator=g) < 0.5).double() - 1.0)).numpy()
    sim = frozen_copy(dyn)
    with torch.no_grad():
        states = sim(torch.as_tensor(inputs, dtype=torch.float64)).numpy()
    return states, inputs


def model_trajectories(folder: FitFolder, *, seed: int = 0, n_trials: int = 64, n_steps: int = 200
                       ) -> ModelTrajectories:
    """The model of ``folder`` with its trajectories: ``fit.nc``'s ``states`` (and ``inputs``) when present.

    Without recorded states (no ``fit.nc``, e.g. a flip-flop teacher folder) the model is driven from its
    initial state by sparse random +-1 input pulses (p = 0.05 per step and channel; ``n_trials`` x
    ``n_steps``), or by ``fit.nc``'s ``inputs`` when present, and those trajectories are used instead.
    """
    dyn, meta = folder.model()
    ds = folder.fit if folder.has_fit else None
    inputs = states = conditions = None
    offset = 1
    dt: float | None = meta.get("dt_s")
    if ds is not None:
        if "inputs" in ds and str(ds["inputs"].attrs.get("alignment", "")).startswith("states[t+1]"):
            offset = 0
        inputs, states, conditions, dt_fit = _from_fit_nc(ds, dyn, folder.path / "fit.nc")
        dt = dt_fit if dt is None else dt
    if dt is None:
        dt = getattr(dyn.options, "dt", float("nan"))
    simulated = states is None
    if states is None:
        states, inputs = _simulate(dyn, inputs, seed=seed, n_trials=n_trials, n_steps=n_steps)
    if not np.all(np.isfinite(states)):
        raise AnalysisError(f"{folder.path}: the model's states contain NaN or inf")
    return ModelTrajectories(dynamics=dyn, meta=meta, states=states, inputs=inputs, dt_s=float(dt),
                             conditions=conditions, simulated=simulated, fit=ds, input_offset=offset)


def best_of(folders: list[FitFolder]) -> FitFolder | None:
    """The folder with the highest finite co-bps (None when none has one)."""
    scored = [f for f in folders if math.isfinite(f.co_bps)]
    return max(scored, key=lambda f: f.co_bps) if scored else None
