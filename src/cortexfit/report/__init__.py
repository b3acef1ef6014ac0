"""``cortexfit report``: the self-contained HTML report of one dataset's results, or the index across datasets.

``run(results, out)`` looks at ``results``:

* a dataset folder (it holds ``activity.nc``) -> that dataset's report (:func:`dataset_page`):
  the recording, the models table, training curves, latent trajectories (PCA and jPCA planes), fixed
  points, dynamics diagnostics and model-data alignment scores;
* a results root (its sub-folders hold ``activity.nc``) -> an index page linking every dataset's
  ``<dataset>/report.html`` with its best model by co-bps and a co-bps table (datasets x models).

Pages are single HTML files (figures as base64 PNG, inline CSS, no scripts or external assets) written
atomically.  Missing pieces (a model without analyses, a dataset without behavior) are skipped with a
short note; a folder with neither layout raises :class:`~cortexfit.core.errors.ReportError`.

Layout read (written by the other stages)::

    DATASET/activity.nc
    DATASET/fits/<model>/{metrics.json, history.csv, fit.nc, fixed_points.nc, geometry.nc, dynamics.nc}
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from cortexfit.core.errors import ReportError
from cortexfit.report import html as H

log = logging.getLogger(__name__)

ANALYSES = ("geometry", "fixed_points", "dynamics")


@dataclass
class FitResult:
    """What one ``fits/<model>`` folder holds; missing or unreadable parts are None with a note."""

    name: str
    path: Path
    metrics: dict[str, Any] | None = None
    history: dict[str, np.ndarray] | None = None
    analyses: dict[str, xr.Dataset] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def co_bps(self) -> float:
        """co-bps as a float (NaN where absent)."""
        return _num((self.metrics or {}).get("co_bps"))

    def trajectory_variable(self) -> tuple[xr.DataArray | None, str]:
        """The model's trajectories from ``fit.nc``: ``states``, else ``factors``, else ``rates`` (loaded)."""
        path = self.path / "fit.nc"
        if not path.is_file():
            return None, "fit.nc missing"
        try:
            with xr.open_dataset(path, engine="h5netcdf") as ds:
                name = next((v for v in ("states", "factors", "rates") if v in ds.data_vars), None)
                if name is None:
                    return None, "fit.nc has no states, factors or rates"
                return ds[name].transpose("trial", "time", ...).load(), name
        except Exception as exc:  # noqa: BLE001 - an unreadable file becomes a note in the page
            return None, f"fit.nc unreadable ({type(exc).__name__}: {exc})"


@dataclass
class DatasetResults:
    """A dataset folder: its activity dataset and its fits (sorted by co-bps, best first)."""

    name: str
    path: Path
    activity: xr.Dataset
    fits: list[FitResult]
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> FitResult | None:
        """The fit with the highest finite co-bps (None if none has one)."""
        scored = [f for f in self.fits if math.isfinite(f.co_bps)]
        return max(scored, key=lambda f: f.co_bps) if scored else None


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _read_nc(path: Path, kind: str) -> tuple[xr.Dataset | None, str | None]:
    """Read a netCDF file fully; (None, note) if it is absent, unreadable or of another kind."""
    if not path.is_file():
        return None, f"{path.name} missing"
    try:
        with xr.open_dataset(path, engine="h5netcdf") as handle:
            ds = handle.load()
    except Exception as exc:  # noqa: BLE001 - any reader failure: a note, not a crash
        return None, f"{path.name} unreadable ({type(exc).__name__})"
    if ds.attrs.get("cortexfit_kind", kind) != kind:
        return None, f"{path.name} is a '{ds.attrs.get('cortexfit_kind')}' file, not '{kind}'"
    ds.encoding["source"] = str(path)
    return ds, None


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


def load_fit(path: Path) -> FitResult:
    """Read one fit folder (metrics, history, analyses) without failing on missing parts.

    Examples
    --------
    >>> load_fit(Path("results/d/fits/rate")).co_bps  # doctest: +SKIP
    0.31
    """
    fit = FitResult(name=path.name, path=path)
    mpath = path / "metrics.json"
    try:
        metrics = json.loads(mpath.read_text())
    except FileNotFoundError:
        fit.notes.append("metrics.json missing (fit not finished?)")
    except (OSError, ValueError) as exc:
        fit.notes.append(f"metrics.json unreadable ({exc})")
    else:
        if isinstance(metrics, dict):
            fit.metrics = metrics
        else:
            fit.notes.append("metrics.json is not a JSON object")
    fit.history = _read_history(path / "history.csv")
    for kind in ANALYSES:
        ds, problem = _read_nc(path / f"{kind}.nc", kind)
        if ds is not None:
            fit.analyses[kind] = ds
        elif "missing" not in (problem or ""):
            fit.notes.append(problem or "")
    return fit


def load_dataset(folder: str | os.PathLike) -> DatasetResults:
    """Read a dataset folder: ``activity.nc`` (required) and every ``fits/<model>`` folder.

    Raises
    ------
    ReportError
        ``activity.nc`` is missing or unreadable.
    """
    folder = Path(folder)
    path = folder / "activity.nc"
    if not path.is_file():
        raise ReportError(f"{folder}: no activity.nc (not a dataset results folder)")
    from cortexfit.core import convention
    from cortexfit.core.errors import SchemaError

    try:
        activity = convention.read_dataset(path, "activity")
    except SchemaError as exc:
        raise ReportError(str(exc)) from None
    fits_dir = folder / "fits"
    dirs = sorted(p for p in fits_dir.iterdir() if p.is_dir()) if fits_dir.is_dir() else []
    fits = [load_fit(d) for d in dirs]
    fits.sort(key=lambda f: (not math.isfinite(f.co_bps), -f.co_bps if math.isfinite(f.co_bps) else 0, f.name))
    return DatasetResults(name=folder.resolve().name, path=folder, activity=activity, fits=fits)


def find_datasets(root: str | os.PathLike) -> list[Path]:
    """Sub-folders of a results root that hold ``activity.nc`` (sorted by name).

    Examples
    --------
    >>> find_datasets("results")  # doctest: +SKIP
    [PosixPath('results/mc_maze_small'), PosixPath('results/sim_reach')]
    """
    root = Path(root)
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "activity.nc").is_file()) if root.is_dir() else []


# ------------------------------------------------------------------------------------------ dataset page
def dataset_page(data: DatasetResults) -> str:
    """The HTML of one dataset's report (sections of :mod:`cortexfit.report.sections`), logging each section.

    A section that raises is logged with its traceback and replaced by a note; the rest of the page stays.

    Examples
    --------
    >>> html = dataset_page(load_dataset("results/mc_maze_small"))  # doctest: +SKIP
    """
    from cortexfit.report import sections as S

    steps = (("1. The recording", S.recording), ("2. Models", S.models), ("3. Training curves", S.training),
             ("4. Latent trajectories", S.latents), ("5. Fixed points", S.fixed_points),
             ("6. Dynamics", S.dynamics), ("7. Model-data alignment", S.alignment))
    best = data.best
    sub = f"{data.activity.attrs.get('source_file', '')} · {len(data.fits)} fits" + (
        f" · best co-bps: {best.name} ({best.co_bps:.3f})" if best else "")
    page = H.Page(f"{data.name}: cortexfit report", subtitle=sub)
    for i, (title, build) in enumerate(steps, start=1):
        log.info("report %s: section %d/%d %s", data.name, i, len(steps), title.split(". ", 1)[-1])
        sec = page.section(title)
        try:
            build(data, sec)
        except Exception as exc:  # one broken section must not cost the whole report
            log.warning("report %s: section %r failed", data.name, title, exc_info=True)
            sec.add(H.note(f"This section could not be drawn ({type(exc).__name__}: {exc})."))
    return page.render()


# ------------------------------------------------------------------------------------------ index page
def _summary(folder: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"name": folder.name, "trials": None, "units": None, "bin_ms": None, "fits": {}}
    try:
        with xr.open_dataset(folder / "activity.nc", engine="h5netcdf") as ds:
            nd = "unit" if "unit" in ds.sizes else "roi"
            info.update(trials=int(ds.sizes.get("trial", 0)), units=int(ds.sizes.get(nd, 0)),
                        bin_ms=_num(ds.attrs.get("bin_width_s")) * 1000,
                        conditions=len(np.unique(ds["condition"].values)) if "condition" in ds.coords else None)
    except Exception as exc:  # noqa: BLE001 - any reader failure: a note, not a crash
        info["problem"] = f"activity.nc unreadable ({type(exc).__name__})"
    fits_dir = folder / "fits"
    for d in sorted(fits_dir.iterdir()) if fits_dir.is_dir() else []:
        try:
            info["fits"][d.name] = json.loads((d / "metrics.json").read_text())
        except (OSError, ValueError):
            continue
    return info


def index_page(root: Path, datasets: list[Path], out: Path) -> str:
    """HTML of the index across datasets (links relative to ``out``'s folder)."""
    page = H.Page("cortexfit results", subtitle=f"{len(datasets)} datasets in {root}")
    infos = [_summary(d) for d in datasets]
    rows, links, bold = [], [], []
    for i, info in enumerate(infos):
        scores = {m: _num(v.get("co_bps")) for m, v in info["fits"].items()}
        finite = {m: s for m, s in scores.items() if math.isfinite(s)}
        best = max(finite, key=finite.get) if finite else None
        report = datasets[i] / "report.html"
        links.append(Path(os.path.relpath(report, out.parent)).as_posix())
        status = "" if report.is_file() else " (report not built yet)"
        rows.append([info["name"] + status, H.fmt(info["trials"]), H.fmt(info["units"]), H.fmt(info.get("conditions")),
                     H.fmt(info["bin_ms"], 1), len(info["fits"]), best or H.MISSING,
                     H.fmt(finite.get(best) if best else None)])
        if best:
            bold += [(i, 6), (i, 7)]
    sec = page.section("Datasets")
    sec.add(H.link_table(["dataset (report)", "trials", "units", "conditions", "bin (ms)", "models", "best model",
                          "best co-bps"], rows, links, bold_cells=bold, numeric=(1, 2, 3, 4, 5, 7)))
    for info in infos:
        if "problem" in info:
            sec.add(H.note(f"{info['name']}: {info['problem']}"))
    models = sorted({m for info in infos for m in info["fits"]})
    sec = page.section("co-bps by model")
    if not models:
        sec.add(H.note("no fits with metrics.json yet"))
    else:
        rows, bold = [], []
        for i, info in enumerate(infos):
            scores = [_num(info["fits"].get(m, {}).get("co_bps")) for m in models]
            rows.append([info["name"], *[H.fmt(s) for s in scores]])
            if np.isfinite(scores).any():
                bold.append((i, 1 + int(np.nanargmax(scores))))
        sec.add(H.link_table(["dataset", *models], rows, links, bold_cells=bold,
                             numeric=range(1, len(models) + 1)))
        sec.add(H.para("co-bps: bits per spike of held-out units given held-in units (higher is better); "
                       "bold: best model of each dataset; –: not fitted or not applicable."))
    return page.render()


# -------------------------------------------------------------------------------------------------- run
def run(results: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the report of a dataset folder, or the index page of a results root, to ``out``.

    Parameters
    ----------
    results : path
        ``RESULTS_DIR/DATASET`` (holds ``activity.nc``) or ``RESULTS_DIR`` (sub-folders hold it).
    out : path
        HTML file to write (atomically).

    Raises
    ------
    ReportError
        ``results`` is neither a dataset folder nor a results root, or its activity.nc is unreadable.

    Examples
    --------
    >>> run("results/mc_maze_small", "results/mc_maze_small/report.html")  # doctest: +SKIP
    >>> run("results", "results/index.html")  # doctest: +SKIP
    """
    results, out = Path(results), Path(out)
    if not results.is_dir():
        raise ReportError(f"{results}: no such results folder")
    if (results / "activity.nc").is_file():
        data = load_dataset(results)
        log.info("%s: %d fits (%s)", results, len(data.fits), ", ".join(f.name for f in data.fits) or "none")
        text = dataset_page(data)
    else:
        datasets = find_datasets(results)
        if not datasets:
            raise ReportError(f"{results}: no activity.nc here or in its sub-folders (run `cortexfit ingest` first)")
        log.info("index of %d datasets in %s", len(datasets), results)
        text = index_page(results, datasets, out)
    H.write_atomic(out, text)
    log.info("wrote %s (%.0f kB)", out, out.stat().st_size / 1024)
    return out
