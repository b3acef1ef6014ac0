"""The cortexfit dataset convention: how stages talk to each other.

Every stage reads and writes :class:`xarray.Dataset` objects stored as compressed netCDF-4 files
(``engine="h5netcdf"``, zlib on every variable).  Each file says what it is in the attribute
``cortexfit_kind`` and is validated against the matching :class:`KindSpec` when written and when read.

Conventions shared by all kinds
-------------------------------
Dimensions
    ``trial``  one row of the trials table (or one fixed window of a session without trials);
    ``time``   bin centres in **seconds relative to the alignment event** (coordinate attr ``units="s"``);
    ``unit``   one sorted unit (spikes) -- or ``roi`` for calcium imaging;
    ``state``  one coordinate of a model's state; ``point`` one fixed/slow point.
Coordinates
    Per-trial metadata (every column of the trials table: ``condition``, ``start_time``, event times ...)
    live on the ``trial`` dim; per-unit metadata (``area``, electrode group, ...) on the ``unit`` dim.
Attributes
    Only str, int, float or 1-D numeric arrays (netCDF cannot store bool, None or dict attrs: dicts are
    stored as JSON strings, e.g. ``config``).  Physical units go in each variable's ``units`` attr.
    Provenance attrs on every file: ``cortexfit_kind``, ``convention_version``, ``cortexfit_version``,
    ``created``; activity files add ``source_file``, ``source_sha256``, ``bin_width_s``, ``align_event``,
    ``window_start_s``, ``window_stop_s``, ``signal`` and ``config``, and (files written since the rule
    was made explicit) ``valid_rule``.

Kind ``activity`` (written by ``cortexfit ingest``)
    ``activity`` (trial, time, unit|roi): spike counts per bin (uint16, ``signal="spike_counts"``) or
    imaging traces (float32, ``signal="dff"`` or ``"fluorescence"``).  Bins are left-closed
    ``[t0, t0 + bin)`` with ``t0 = time - bin_width_s / 2``.
    ``valid`` (trial, time, unit|roi) int8: 1 where the unit was observed, 0 elsewhere; the attr
    ``valid_rule`` says which rule was used.  ``"observed"`` (the default of ``cortexfit ingest``): the
    bin's centre lies inside one of the unit's ``obs_intervals`` or, for units without them, the bin
    overlaps the recorded span of the session (earliest to latest spike or trial time); an imaging bin
    is valid where its trace is finite.  Bins of the window beyond the trial's ``[start_time,
    stop_time)`` are valid when observed, and their spikes are counted.  ``"observed_and_in_trial"``
    (``--clip-to-trial``): observed and with the centre inside the trial as well.  Files without the attr
    were written with ``"observed_and_in_trial"``.  Invalid bins hold 0 in ``activity`` and must be
    masked with ``valid`` -- never read them as "no spikes".
    optional ``behavior`` (trial, time, behavior_channel) float32 with coords ``behavior_channel``
    (e.g. ``"hand_pos_x"``) and ``behavior_kind`` (``"position"``, ``"velocity"`` or ``"other"``): what the
    brain does (its output).
    optional ``stimulus`` (trial, time, stimulus_channel) float32, the task inputs (what drives the network),
    with coords ``stimulus_channel`` (the series' columns, e.g. ``"target_position_x"``, or the trials
    column an event pulse comes from, e.g. ``"go_cue_time"``) and ``stimulus_kind`` (``"series"``: a
    ``stimulus/presentation`` series or one named by ``--inputs``, averaged per bin like behaviour;
    ``"event"``: 1 in the bin holding the event, 0 elsewhere).  Finite everywhere.

Examples
--------
>>> import numpy as np
>>> from cortexfit.core import convention
>>> ds = convention.new_activity(np.zeros((2, 3, 4), dtype="uint16"), time=[0.0025, 0.0075, 0.0125],
...                          bin_width_s=0.005, align_event="move_onset_time")
>>> convention.validate(ds, "activity")
>>> ds.activity.dims
('trial', 'time', 'unit')
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cortexfit.core.errors import SchemaError
from cortexfit.core.fileio import atomic_path

CONVENTION_VERSION = 1
NEURON_DIMS = ("unit", "roi")
SIGNALS = ("spike_counts", "dff", "fluorescence")
BASE_ATTRS = ("cortexfit_kind", "convention_version", "cortexfit_version", "created")


@dataclass(frozen=True)
class KindSpec:
    """What a file of one ``cortexfit_kind`` must contain.

    ``variables`` maps a required data variable to the dims it must have, in order; ``"neuron"`` in a dims
    tuple stands for ``unit`` or ``roi``.  ``coords`` lists required coordinates and ``attrs`` required
    global attributes (beyond :data:`BASE_ATTRS`).
    """

    variables: Mapping[str, tuple[str, ...]]
    coords: tuple[str, ...] = ()
    attrs: tuple[str, ...] = ()
    optional: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


#: Scalar results stored as global attrs of a ``geometry`` file.  The model-data alignment scores without a
#: suffix are out of sample (the fit's test trials x held-out units); ``*_in_sample`` ones use all trials and
#: units, including the activity the model's encoder read, and are reported only beside them.
GEOMETRY_SCALARS = (
    "data_participation_ratio", "state_participation_ratio", "jpca_r2_skew", "jpca_r2_full",
    "jpca_window_start_s", "jpca_window_stop_s", "state_jpca_r2_skew", "state_jpca_r2_full",
    "cca_cv_mean_corr", "cca_cv_mean_corr_shuffled", "procrustes_similarity", "dsa_distance",
    "cca_cv_mean_corr_in_sample", "procrustes_similarity_in_sample", "dsa_distance_in_sample",
    "alignment_n_test_trials", "alignment_n_heldout_units",
)

#: Every file kind of the pipeline, in the order the stages write them.
KINDS: dict[str, KindSpec] = {
    # ``cortexfit ingest``: binned activity of one recording.
    "activity": KindSpec(
        variables={"activity": ("trial", "time", "neuron"), "valid": ("trial", "time", "neuron")},
        coords=("trial", "time"),
        attrs=(
            "source_file",
            "source_sha256",
            "bin_width_s",
            "align_event",
            "window_start_s",
            "window_stop_s",
            "signal",
            "config",
        ),
        optional={"behavior": ("trial", "time", "behavior_channel"),
                  "stimulus": ("trial", "time", "stimulus_channel")},
    ),
    # ``cortexfit simulate``: ground truth beside a simulated NWB file (``<name>.truth.nc``).
    "truth": KindSpec(
        variables={"rates": ("trial", "time", "unit"), "latents": ("trial", "time", "latent")},
        coords=("trial", "time"),
        attrs=("task", "seed", "dt_s"),
    ),
    # ``cortexfit fit``: ``OUT_DIR/fit.nc``; states/factors are optional for baselines without them.
    "fit": KindSpec(
        variables={"rates": ("trial", "time", "neuron")},
        coords=("trial", "time", "split", "heldout"),
        attrs=("model", "mode", "seed", "device", "activity_file", "activity_sha256", "config"),
        optional={"states": ("trial", "time", "state"), "factors": ("trial", "time", "factor"),
                  "inputs": ("trial", "time", "input")},
    ),
    # ``cortexfit fixed-points``: fixed and slow points of a fitted model.  Optional ``rates`` (point, unit|roi):
    # the fit's predicted rate of every recorded unit at each point, in the units of ``fit.nc``'s ``rates``
    # (count/bin for spikes) with its unit coordinate; absent for models without a unit readout (a flip-flop
    # teacher) and in files written before it existed.
    "fixed_points": KindSpec(
        variables={"xstar": ("point", "state"), "q": ("point",), "eig_real": ("point", "eig"),
                   "eig_imag": ("point", "eig"), "label": ("point",), "point_type": ("point",),
                   "u_star": ("point", "input"), "pc_projection": ("point", "pc")},
        attrs=("family", "inputs", "n_init", "seed", "n_stable", "n_fixed"),
        optional={"rates": ("point", "neuron")},
    ),
    # ``cortexfit geometry``: PCA, jPCA and model-data alignment.
    "geometry": KindSpec(
        variables={"data_variance_explained": ("data_pc",), "state_variance_explained": ("state_pc",),
                   "data_pc_projection": ("condition", "time", "traj_pc"),
                   "state_pc_projection": ("condition", "time", "traj_pc"),
                   "jpca_projection": ("condition", "jpca_time", "jpc_plane", "jpc_axis"),
                   "state_jpca_projection": ("condition", "jpca_time", "jpc_plane", "jpc_axis"),
                   "jpca_frequency_hz": ("jpc_plane",), "jpca_plane_variance_fraction": ("jpc_plane",),
                   "state_jpca_frequency_hz": ("jpc_plane",), "cca_corr": ("cca_component",),
                   "cca_corr_in_sample": ("cca_component",)},
        coords=("condition",),
        attrs=("activity_file", "fit_dir", "config", "conditions_from", "model_variable", "alignment_scope",
               "alignment_note", *GEOMETRY_SCALARS),
    ),
    # ``cortexfit dynamics``: spectra, Lyapunov exponents, echo-state and gradient tests.
    "dynamics": KindSpec(
        variables={
            "jacobian_eig_real": ("eig_jac",),
            "jacobian_eig_imag": ("eig_jac",),
            "lyapunov": ("lyap",),
            "grad_norm": ("time_lag",),
            "echo_distance": ("echo_step",),
        },
        attrs=("family", "dt_s", "spectral_radius", "bulk_radius", "lyapunov_max_per_step", "lyapunov_max_per_s"),
        optional={"weight_eig_real": ("eig",), "weight_eig_imag": ("eig",), "weight_eig_outlier": ("eig",)},
    ),
}


def neuron_dim(ds: xr.Dataset) -> str:
    """Return the name of the neuron dimension of ``ds`` (``"unit"`` or ``"roi"``).

    >>> import numpy as np
    >>> ds = new_activity(np.zeros((1, 2, 3), "uint16"), time=[0.5, 1.5], bin_width_s=1.0)
    >>> neuron_dim(ds)
    'unit'
    """
    for d in NEURON_DIMS:
        if d in ds.dims:
            return d
    raise SchemaError(f"{_where(ds)}no 'unit' or 'roi' dimension (dims: {', '.join(map(str, ds.dims))})")


def base_attrs(kind: str) -> dict[str, Any]:
    """Provenance attrs every cortexfit file carries."""
    from cortexfit import __version__

    return {
        "cortexfit_kind": kind,
        "convention_version": CONVENTION_VERSION,
        "cortexfit_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def new_activity(
    counts: np.ndarray,
    *,
    time: Iterable[float],
    bin_width_s: float,
    trial: Iterable[int] | None = None,
    unit: Iterable[int] | None = None,
    valid: np.ndarray | None = None,
    align_event: str = "start_time",
    signal: str = "spike_counts",
    source_file: str = "",
    source_sha256: str = "",
    config: Mapping[str, Any] | None = None,
    neuron: str = "unit",
) -> xr.Dataset:
    """Build a minimal, valid ``activity`` dataset around a (trial, time, neuron) array.

    Callers add per-trial/per-unit coordinates and behavior afterwards.
    """
    counts = np.asarray(counts)
    n_trial, n_time, n_neuron = counts.shape
    time = np.asarray(list(time), dtype="float64")
    trial = np.arange(n_trial) if trial is None else np.asarray(list(trial))
    unit = np.arange(n_neuron) if unit is None else np.asarray(list(unit))
    if valid is None:
        valid = np.ones(counts.shape, dtype="int8")
    ds = xr.Dataset(
        {
            "activity": (("trial", "time", neuron), counts),
            "valid": (("trial", "time", neuron), np.asarray(valid, dtype="int8")),
        },
        coords={"trial": trial, "time": time, neuron: unit},
    )
    ds["time"].attrs.update(units="s", long_name=f"bin centre relative to {align_event}")
    ds["activity"].attrs["units"] = "count" if signal == "spike_counts" else "a.u."
    ds["valid"].attrs["long_name"] = "1 where the unit was observed in this bin"
    half = bin_width_s / 2
    ds.attrs.update(base_attrs("activity"))
    ds.attrs.update(
        source_file=str(source_file),
        source_sha256=str(source_sha256),
        bin_width_s=float(bin_width_s),
        align_event=str(align_event),
        window_start_s=float(time[0] - half) if len(time) else 0.0,
        window_stop_s=float(time[-1] + half) if len(time) else 0.0,
        signal=signal,
        config=json.dumps(dict(config or {}), sort_keys=True, default=str),
    )
    return ds


def _where(ds: xr.Dataset) -> str:
    src = ds.encoding.get("source")
    return f"{src}: " if src else ""


def validate(ds: xr.Dataset, kind: str | None = None) -> None:
    """Check that ``ds`` follows the convention for ``kind`` (default: its ``cortexfit_kind`` attr).

    Raises :class:`~cortexfit.core.errors.SchemaError` with one line naming the problem.
    """
    where = _where(ds)
    actual = ds.attrs.get("cortexfit_kind")
    kind = kind or actual
    if kind is None:
        raise SchemaError(f"{where}not a cortexfit dataset (no 'cortexfit_kind' attribute)")
    if actual is not None and actual != kind:
        raise SchemaError(f"{where}expected a '{kind}' dataset, found '{actual}'")
    if kind not in KINDS:
        raise SchemaError(f"{where}unknown dataset kind '{kind}' (known: {', '.join(sorted(KINDS))})")
    spec = KINDS[kind]
    missing = [a for a in (*BASE_ATTRS, *spec.attrs) if a not in ds.attrs]
    if missing:
        raise SchemaError(f"{where}'{kind}' dataset lacks attribute(s) {', '.join(missing)}")
    for name, dims in {**spec.variables, **{k: v for k, v in spec.optional.items() if k in ds}}.items():
        if name not in ds.data_vars:
            raise SchemaError(f"{where}'{kind}' dataset lacks variable '{name}'")
        want = tuple(neuron_dim(ds) if d == "neuron" else d for d in dims)
        if ds[name].dims != want:
            raise SchemaError(f"{where}variable '{name}' has dims {ds[name].dims}, expected {want}")
    for c in spec.coords:
        if c not in ds.coords:
            raise SchemaError(f"{where}'{kind}' dataset lacks coordinate '{c}'")
    if "time" in ds.coords and ds.sizes.get("time", 0) > 1:
        t = np.asarray(ds["time"].values, dtype=float)
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
            raise SchemaError(f"{where}coordinate 'time' must be finite and strictly increasing")
    for c in ("trial", "unit", "roi"):
        if c in ds.coords and ds.indexes.get(c) is not None and not ds.indexes[c].is_unique:
            raise SchemaError(f"{where}coordinate '{c}' has duplicate values")
    if kind == "activity":
        _validate_activity(ds, where)


def _validate_activity(ds: xr.Dataset, where: str) -> None:
    if ds.attrs["signal"] not in SIGNALS:
        raise SchemaError(f"{where}attr 'signal' is {ds.attrs['signal']!r}, expected one of {SIGNALS}")
    if float(ds.attrs["bin_width_s"]) <= 0:
        raise SchemaError(f"{where}attr 'bin_width_s' must be positive")
    if ds.attrs["signal"] == "spike_counts" and not np.issubdtype(ds["activity"].dtype, np.integer):
        raise SchemaError(f"{where}spike counts must be integers, found {ds['activity'].dtype}")
    if "stimulus" in ds.data_vars:
        if "stimulus_channel" not in ds.coords:
            raise SchemaError(f"{where}variable 'stimulus' needs the coordinate 'stimulus_channel' (input names)")
        if not np.all(np.isfinite(np.asarray(ds["stimulus"].values, dtype=float))):
            raise SchemaError(f"{where}variable 'stimulus' has NaN or infinite values")
    try:
        json.loads(ds.attrs["config"])
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{where}attr 'config' is not a JSON string ({exc})") from None


def _encoding(ds: xr.Dataset, level: int) -> dict[str, dict[str, Any]]:
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "OUS" or var.ndim == 0:
            continue  # strings and scalars: h5netcdf stores them without filters
        enc[str(name)] = {"zlib": True, "complevel": level}
    return enc


def write_dataset(ds: xr.Dataset, path: str | os.PathLike, kind: str | None = None, *, complevel: int = 4) -> Path:
    """Validate ``ds`` and write it atomically as compressed netCDF (h5netcdf).

    The file appears at ``path`` only once it is complete: it is written to a temporary file in the same
    folder and renamed, so a crash never leaves a half-written output behind.
    """
    validate(ds, kind)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = ds.copy()
    for name in list(ds.variables):  # bool is not a netCDF type
        if ds[name].dtype == bool:
            ds[name] = ds[name].astype("int8")
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=_encoding(ds, complevel))
    return path


def read_dataset(path: str | os.PathLike, kind: str | None = None) -> xr.Dataset:
    """Read a cortexfit netCDF file fully into memory and validate it.

    Raises :class:`~cortexfit.core.errors.SchemaError` (one line, naming the file) if the file is missing,
    unreadable or does not follow the convention for ``kind``.
    """
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: no such file")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as handle:
            ds = handle.load()
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise SchemaError(f"{path}: not a readable netCDF file ({type(exc).__name__}: {exc})") from None
    ds.encoding["source"] = str(path)
    validate(ds, kind)
    return ds


def config_of(ds: xr.Dataset) -> dict[str, Any]:
    """Return the JSON ``config`` attr of a dataset as a dict (empty if absent)."""
    return json.loads(ds.attrs.get("config", "{}"))
