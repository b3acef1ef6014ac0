"""``cortexfit report``: the self-contained HTML report of one dataset's results, or the index across datasets.

``run(results, out, models=None)`` looks at ``results``:

* a dataset folder (it holds ``activity.nc``) -> that dataset's report (:func:`dataset_page`):
  the recording, the models table, training curves, latent trajectories (PCA and jPCA planes), fixed
  points (in each model's state PCs and in the data's PCs, beside a flip-flop teacher's:
  :mod:`cortexfit.report.fixed_points`), dynamics diagnostics, model-data alignment scores and, where fits
  hold a ``truth.json`` (simulated datasets), the ground-truth table (:mod:`cortexfit.report.truth`);
* a results root (its sub-folders hold ``activity.nc``) -> an index page linking every dataset's
  ``<dataset>/report.html`` with its best model by co-bps and a co-bps table (datasets x models), and
  under "Groups" every ``groups/<group>/report.html`` (``cortexfit report-group``) there is.

With ``models`` (``--models``) only those ``fits/<model>`` folders are read, so a stale fit folder the
workflow no longer declares never shows up.  Fit folders are read with :mod:`cortexfit.analysis.fitdir` and
analysis files validated (:func:`cortexfit.core.convention.read_dataset`): an invalid one raises
:class:`~cortexfit.core.errors.ReportError` naming the file.  The report draws what the analyses wrote
(PCA and jPCA trajectories come from ``geometry.nc``); it recomputes nothing but condition-averaged PSTHs and
the data's PCA the fixed points are drawn in.

Pages are single HTML files (figures as base64 PNG, inline CSS, no scripts or external assets) written
atomically.  Missing pieces (a model without analyses, a dataset without behavior) are skipped with a
short note; a folder with neither layout raises :class:`~cortexfit.core.errors.ReportError`.

Layout read (written by the other stages)::

    DATASET/activity.nc
    DATASET/teacher_fixed_points.nc      (simulated flip-flop; with the truth file beside the NWB file)
    DATASET/fits/<model>/{metrics.json, history.csv, fit.nc, fixed_points.nc, geometry.nc, dynamics.nc, truth.json}
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cortexfit.analysis.fitdir import ANALYSES, FitFolder, as_float, best_of, read_fit_dir
from cortexfit.core import convention
from cortexfit.core.errors import ReportError, SchemaError
from cortexfit.report import caveats as C
from cortexfit.report import html as H
from cortexfit.report.truth import read_truth

log = logging.getLogger(__name__)

__all__ = ["ANALYSES", "DatasetResults", "ModelResults", "dataset_page", "find_datasets", "index_page",
           "load_dataset", "read_model_results", "run"]


@dataclass
class ModelResults:
    """One ``fits/<model>`` folder as the report sees it: the folder (metrics, history), its analyses and its
    ground-truth comparison (``truth.json``, None when absent)."""

    folder: FitFolder
    analyses: dict[str, xr.Dataset] = field(default_factory=dict)
    truth: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def metrics(self) -> dict[str, Any] | None:
        return self.folder.metrics

    @property
    def history(self) -> dict[str, np.ndarray] | None:
        return self.folder.history

    @property
    def notes(self) -> list[str]:
        return self.folder.notes

    @property
    def co_bps(self) -> float:
        """co-bps as a float (NaN where absent)."""
        return self.folder.co_bps


@dataclass
class DatasetResults:
    """A dataset folder: its activity dataset and its fits (sorted by co-bps, best first)."""

    name: str
    path: Path
    activity: xr.Dataset
    fits: list[ModelResults]
    notes: list[str] = field(default_factory=list)

    @property
    def best(self) -> ModelResults | None:
        """The fit with the highest finite co-bps (None if none has one)."""
        folder = best_of([f.folder for f in self.fits])
        return next(f for f in self.fits if f.folder is folder) if folder is not None else None

    @cached_property
    def caveats(self) -> C.Caveats:
        """Which fits beat the mean-rate null and the smoothing baseline (:mod:`cortexfit.report.caveats`)."""
        return C.assess(self)


def read_model_results(path: Path) -> ModelResults:
    """Read one fit folder and its analysis files (``<kind>.nc`` for each of :data:`ANALYSES`).

    Missing metrics or history become notes; an analysis file that is present but invalid raises.

    Raises
    ------
    ReportError
        An analysis file does not follow the convention of its kind (e.g. a stale file lacking a variable).

    Examples
    --------
    >>> read_model_results(Path("results/d/fits/rate")).co_bps  # doctest: +SKIP
    0.31
    """
    folder = read_fit_dir(path)
    result = ModelResults(folder, truth=read_truth(folder.path))
    for kind in ANALYSES:
        try:
            ds = folder.read_analysis(kind)
        except SchemaError as exc:
            raise ReportError(f"{exc} (re-run `cortexfit {kind.replace('_', '-')}` for this fit)") from None
        if ds is not None:
            result.analyses[kind] = ds
    return result


def fit_folders(dataset: Path, models: Sequence[str] | None = None) -> tuple[list[Path], list[str]]:
    """``fits/<model>`` folders of a dataset folder (only ``models`` when given), and notes on requested
    models without a folder."""
    fits_dir = dataset / "fits"
    if models is None:
        return (sorted(p for p in fits_dir.iterdir() if p.is_dir()) if fits_dir.is_dir() else []), []
    wanted = list(dict.fromkeys(models))
    found = [fits_dir / m for m in wanted if (fits_dir / m).is_dir()]
    notes = [f"{m}: requested with --models but {fits_dir / m} does not exist" for m in wanted
             if not (fits_dir / m).is_dir()]
    return found, notes


def load_dataset(folder: str | os.PathLike, *, models: Sequence[str] | None = None) -> DatasetResults:
    """Read a dataset folder: ``activity.nc`` (required) and its ``fits/<model>`` folders (only ``models``
    when given).

    Raises
    ------
    ReportError
        ``activity.nc`` is missing or unreadable, or an analysis file is invalid.
    """
    folder = Path(folder)
    path = folder / "activity.nc"
    if not path.is_file():
        raise ReportError(f"{folder}: no activity.nc (not a dataset results folder)")
    try:
        activity = convention.read_dataset(path, "activity")
    except SchemaError as exc:
        raise ReportError(str(exc)) from None
    dirs, notes = fit_folders(folder, models)
    fits = [read_model_results(d) for d in dirs]
    fits.sort(key=lambda f: (not math.isfinite(f.co_bps), -f.co_bps if math.isfinite(f.co_bps) else 0, f.name))
    return DatasetResults(name=folder.resolve().name, path=folder, activity=activity, fits=fits, notes=notes)


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
#: Sections drawing analyses of the fits, labelled with the fits whose analyses are uninformative.
UNINFORMATIVE_WHAT = {"4. Latent trajectories": "latent trajectories and jPCA planes",
                      "5. Fixed points": "fixed points", "6. Dynamics": "dynamics (spectra, Lyapunov exponents)",
                      "7. Model-data alignment": "alignment scores"}


def dataset_page(data: DatasetResults) -> str:
    """The HTML of one dataset's report (sections of :mod:`cortexfit.report.sections`), logging each section.

    A section that raises is logged with its traceback and replaced by a note; the rest of the page stays.
    When no model beats the mean-rate null, or no RNN the smoothing baseline, a warning box opens the page
    and the analysis sections label the fits that do not (:mod:`cortexfit.report.caveats`).

    Examples
    --------
    >>> html = dataset_page(load_dataset("results/mc_maze_small"))  # doctest: +SKIP
    """
    from cortexfit.report import fixed_points as FP
    from cortexfit.report import sections as S

    Step = tuple[str, Callable[[DatasetResults, H.Section], None]]
    steps: tuple[Step, ...] = (
        ("1. The recording", S.recording), ("2. Models", S.models), ("3. Training curves", S.training),
        ("4. Latent trajectories", S.latents), ("5. Fixed points", FP.section),
        ("6. Dynamics", S.dynamics), ("7. Model-data alignment", S.alignment))
    if any(f.truth is not None for f in data.fits):  # simulated datasets: the comparison with the ground truth
        from cortexfit.report.truth import ground_truth

        steps += (("8. Ground truth", ground_truth),)
    best = data.best
    sub = f"{data.activity.attrs.get('source_file', '')} · {len(data.fits)} fits" + (
        f" · best co-bps: {best.name} ({best.co_bps:.3f})" if best else "")
    page = H.Page(f"{data.name}: cortexfit report", subtitle=sub)
    caveats = data.caveats
    for text in caveats.warnings:
        log.warning("report %s: %s", data.name, text)
    for i, (title, build) in enumerate(steps, start=1):
        log.info("report %s: section %d/%d %s", data.name, i, len(steps), title.split(". ", 1)[-1])
        sec = page.section(title)
        if title in UNINFORMATIVE_WHAT:
            sec.add(C.section_label(caveats, UNINFORMATIVE_WHAT[title]))
        try:
            build(data, sec)
        except Exception as exc:  # one broken section must not cost the whole report
            log.warning("report %s: section %r failed", data.name, title, exc_info=True)
            sec.add(H.note(f"This section could not be drawn ({type(exc).__name__}: {exc})."))
    return page.render().replace("</header>", "</header>" + C.warning_box(caveats), 1)


# ------------------------------------------------------------------------------------------ index page
def _summary(folder: Path, models: Sequence[str] | None) -> dict[str, Any]:
    info: dict[str, Any] = {"name": folder.name, "trials": None, "units": None, "bin_ms": None, "fits": {}}
    try:
        with xr.open_dataset(folder / "activity.nc", engine="h5netcdf") as ds:
            nd = "unit" if "unit" in ds.sizes else "roi"
            info.update(trials=int(ds.sizes.get("trial", 0)), units=int(ds.sizes.get(nd, 0)),
                        bin_ms=as_float(ds.attrs.get("bin_width_s")) * 1000,
                        conditions=len(np.unique(ds["condition"].values)) if "condition" in ds.coords else None)
    except Exception as exc:  # noqa: BLE001 - any reader failure: a note, not a crash
        info["problem"] = f"activity.nc unreadable ({type(exc).__name__})"
    for d in fit_folders(folder, models)[0]:
        metrics = read_fit_dir(d).metrics
        if metrics is not None:
            info["fits"][d.name] = metrics
    return info


def index_page(root: Path, datasets: list[Path], out: Path, *, models: Sequence[str] | None = None) -> str:
    """HTML of the index across datasets (links relative to ``out``'s folder; only ``models`` when given)."""
    page = H.Page("cortexfit results", subtitle=f"{len(datasets)} datasets in {root}")
    infos = [_summary(d, models) for d in datasets]
    rows, links, bold = [], [], []
    for i, info in enumerate(infos):
        scores = {m: as_float(v.get("co_bps")) for m, v in info["fits"].items()}
        finite = {m: s for m, s in scores.items() if math.isfinite(s)}
        best = max(finite, key=lambda m: finite[m]) if finite else None
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
            row_scores = np.array([as_float(info["fits"].get(m, {}).get("co_bps")) for m in models])
            rows.append([info["name"], *[H.fmt(s) for s in row_scores]])
            if np.isfinite(row_scores).any():
                bold.append((i, 1 + int(np.nanargmax(row_scores))))
        sec.add(H.link_table(["dataset", *models], rows, links, bold_cells=bold,
                             numeric=range(1, len(models) + 1)))
        sec.add(H.para("co-bps: bits per spike of held-out units given held-in units (higher is better); "
                       "bold: best model of each dataset; –: not fitted or not applicable."))
    groups = sorted(p.parent for p in (root / "groups").glob("*/report.html"))
    if groups:  # multi-session fits (cortexfit report-group)
        sec = page.section("Groups")
        rows = [[g.name, ", ".join(sorted(d.name for d in g.iterdir() if d.is_dir()))] for g in groups]
        sec.add(H.link_table(["group (report)", "strategies"], rows,
                             [Path(os.path.relpath(g / "report.html", out.parent)).as_posix() for g in groups]))
    return page.render()


# -------------------------------------------------------------------------------------------------- run
def run(results: str | os.PathLike, out: str | os.PathLike, *, models: Sequence[str] | None = None) -> Path:
    """Write the report of a dataset folder, or the index page of a results root, to ``out``.

    Parameters
    ----------
    results : path
        ``RESULTS_DIR/DATASET`` (holds ``activity.nc``) or ``RESULTS_DIR`` (sub-folders hold it).
    out : path
        HTML file to write (atomically).
    models : names, optional
        Read only these ``fits/<model>`` folders (default: every folder in ``fits/``); the index page
        applies the same filter to every dataset.

    Raises
    ------
    ReportError
        ``results`` is neither a dataset folder nor a results root, or its activity.nc is unreadable.

    Examples
    --------
    >>> run("results/mc_maze_small", "results/mc_maze_small/report.html")  # doctest: +SKIP
    >>> run("results", "results/index.html")  # doctest: +SKIP
    >>> run("results/mc_maze_small", "report.html", models=["smoothing", "rate"])  # doctest: +SKIP
    """
    results, out = Path(results), Path(out)
    if not results.is_dir():
        raise ReportError(f"{results}: no such results folder")
    if (results / "activity.nc").is_file():
        data = load_dataset(results, models=models)
        log.info("%s: %d fits (%s)", results, len(data.fits), ", ".join(f.name for f in data.fits) or "none")
        text = dataset_page(data)
    else:
        datasets = find_datasets(results)
        if not datasets:
            raise ReportError(f"{results}: no activity.nc here or in its sub-folders (run `cortexfit ingest` first)")
        log.info("index of %d datasets in %s", len(datasets), results)
        text = index_page(results, datasets, out, models=models)
    H.write_atomic(out, text)
    log.info("wrote %s (%.0f kB)", out, out.stat().st_size / 1024)
    return out
