"""``cortexfit report-group``: one HTML page on the multi-session fits of a group (``cortexfit fit-group``).

``run(group_dir, out)`` reads ``results/groups/<group>/<strategy>/<model>/`` for every strategy folder
(``joint``, ``continual-none``, ``continual-ewc``, ``continual-replay``; any other ``joint*`` or ``continual-*``
folder too) and writes a self-contained page:

* an overview of pooled co-bps / fp-bps per strategy and model;
* per strategy and model, each session's co-bps and fp-bps and, where ``sessions/<s>/truth.json`` exists
  (simulated sessions, ``cortexfit truth``), its state R², cycle R² and fixed points matched of true;
* joint fits against the single-session fits of the same model, ``results/<session>/fits/<model>/``
  (``metrics.json``, ``truth.json``), when those exist;
* continual fits: the forgetting matrices of ``forgetting.json`` as heatmaps (one panel per method, one figure
  per model and metric) and a table of drops with plain fine-tuning (``continual-none``) as the reference:
  each remedy's mean and max drop as a fraction of the reference's.

Drops are recomputed from the score matrix (own-fit score minus score after the last session, as
:func:`cortexfit.fit.continual.forgetting` does); stored drops that disagree with the matrix are noted.
Missing or unreadable files become notes; a group folder without strategy folders raises
:class:`~cortexfit.core.errors.ReportError`.

Examples
--------
>>> run("results/groups/g", "results/groups/g/report.html")  # doctest: +SKIP
>>> fraction_of_reference(0.1, 0.4)
0.25
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
from matplotlib.figure import Figure

from cortexfit.analysis.fitdir import as_float
from cortexfit.core.errors import ReportError
from cortexfit.report import figures as F
from cortexfit.report import html as H
from cortexfit.report.truth import read_truth

log = logging.getLogger(__name__)

__all__ = ["GroupFit", "drops", "find_fits", "fraction_of_reference", "group_page", "run"]

STRATEGY_ORDER = ("joint", "continual-none", "continual-ewc", "continual-replay")
REFERENCE = "none"  # the continual method the remedies are compared with
TOL = 1e-5  # stored drops are rounded to 6 decimals


@dataclass
class GroupFit:
    """One ``<strategy>/<model>`` folder: its metrics, forgetting matrices, per-session truths and notes."""

    strategy: str
    model: str
    path: Path
    metrics: dict[str, Any] | None = None
    forgetting: dict[str, Any] | None = None
    truths: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.strategy}/{self.model}"

    @property
    def method(self) -> str | None:
        """The continual method (``none``, ``ewc``, ``replay``) from the folder name; None for joint fits."""
        return self.strategy.split("-", 1)[1] if self.strategy.startswith("continual-") else None

    @property
    def sessions(self) -> list[str]:
        for src in (self.metrics, self.forgetting):
            if src and isinstance(src.get("sessions"), list):
                return [str(s) for s in src["sessions"]]
        d = self.path / "sessions"
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def _read_json(path: Path, notes: list[str], what: str) -> dict[str, Any] | None:
    try:
        value: Any = json.loads(path.read_text())
    except FileNotFoundError:
        value = "missing"
    except (OSError, ValueError) as exc:
        value = f"unreadable ({exc})"
    if not isinstance(value, dict):
        notes.append(f"{what}: {path.name} " + (value if isinstance(value, str) else "is not a JSON object"))
    return value if isinstance(value, dict) else None


def _truth(folder: Path, notes: list[str], what: str) -> dict[str, Any] | None:
    try:
        return read_truth(folder)
    except ReportError as exc:
        notes.append(f"{what}: {exc}")
        return None


def find_fits(group_dir: str | os.PathLike) -> list[GroupFit]:
    """Read every ``<strategy>/<model>`` folder of a group folder (strategies in :data:`STRATEGY_ORDER`).

    Raises
    ------
    ReportError
        ``group_dir`` is not a folder or holds no ``joint*`` / ``continual-*`` folder with a model folder.

    Examples
    --------
    >>> [f.label for f in find_fits("results/groups/g")]  # doctest: +SKIP
    ['joint/rate', 'continual-none/rate', 'continual-ewc/rate']
    """
    root = Path(group_dir)
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(("joint", "continual-"))] \
        if root.is_dir() else []
    order = {name: i for i, name in enumerate(STRATEGY_ORDER)}
    fits = []
    for sdir in sorted(found, key=lambda p: (order.get(p.name, len(order)), p.name)):
        for mdir in sorted(p for p in sdir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            fit = GroupFit(sdir.name, mdir.name, mdir)
            fit.metrics = _read_json(mdir / "metrics.json", fit.notes, fit.label)
            if fit.method is not None:
                fit.forgetting = _read_json(mdir / "forgetting.json", fit.notes, fit.label)
            fit.truths = {s: _truth(mdir / "sessions" / s, fit.notes, f"{fit.label} {s}") for s in fit.sessions}
            fits.append(fit)
    if not fits:
        raise ReportError(f"{root}: no joint/ or continual-*/ strategy folders with model folders "
                          "(run `cortexfit fit-group` first)")
    return fits


# ------------------------------------------------------------------------------------------ forgetting
def drops(matrix: Any) -> list[float | None]:
    """Per session ``j`` but the last: score right after fitting it minus score after the last session.

    Examples
    --------
    >>> drops([[0.5, None], [0.3, 0.6]])
    [0.2]
    """
    m = [[as_float(v) for v in row] for row in matrix or []]
    out: list[float | None] = []
    for j in range(len(m) - 1):
        own, last = (m[j][j], m[-1][j]) if j < len(m[j]) and j < len(m[-1]) else (math.nan, math.nan)
        out.append(own - last if math.isfinite(own) and math.isfinite(last) else None)
    return out


def _summary(d: list[float | None]) -> tuple[float | None, float | None]:
    if not d or any(v is None for v in d):
        return None, None
    vals = [float(v) for v in d if v is not None]
    return float(np.mean(vals)), float(np.max(vals))


def fraction_of_reference(drop: float | None, reference: float | None) -> float | None:
    """``drop / reference``: a remedy's forgetting as a fraction of plain fine-tuning's (None when the
    reference did not forget, i.e. its drop is missing or <= 0).

    Examples
    --------
    >>> fraction_of_reference(0.1, 0.4), fraction_of_reference(0.1, -0.02)
    (0.25, None)
    """
    if drop is None or reference is None or not math.isfinite(drop) or not reference > 0:
        return None
    return drop / reference


def heatmaps(matrices: dict[str, np.ndarray], sessions: list[str], metric: str) -> Figure:
    """One annotated heatmap per method: row ``i`` = after fitting session ``i``, column ``j`` = session
    ``j``'s score; NaN cells (not yet fitted) stay blank.  One colour scale across the panels.

    Examples
    --------
    >>> fig = heatmaps({"none": np.array([[0.5, np.nan], [0.1, 0.6]])}, ["s0", "s1"], "co_bps")
    """
    from matplotlib import colormaps

    n, k = len(sessions), max(1, len(matrices))
    fig = Figure(figsize=(1.0 + (0.75 * n + 1.2) * k, 0.6 * n + 1.4), layout="constrained")
    axes = fig.subplots(1, k, squeeze=False).ravel()
    finite = np.concatenate([m[np.isfinite(m)] for m in matrices.values()] or [np.array([])])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    cmap = colormaps["viridis"].with_extremes(bad="white")
    image = None
    for ax, (method, m) in zip(axes, matrices.items()):
        image = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1e-9)
        for (i, j), v in np.ndenumerate(m):
            if np.isfinite(v):
                dark = (v - lo) / (hi - lo) < 0.5 if hi > lo else True
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
        ax.set_xticks(range(n), sessions, rotation=45 if n > 4 else 0, fontsize=8)
        ax.set_yticks(range(n), [f"after {s}" for s in sessions], fontsize=8)
        ax.set_xlabel("session scored")
        ax.set_title(f"continual-{method}", fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=list(axes), label=metric, shrink=0.8)
    return fig


def _matrix(f: GroupFit, metric: str) -> np.ndarray:
    rows = ((f.forgetting or {}).get("scores") or {}).get(metric) or []
    n = len(f.sessions)
    m = np.full((n, n), np.nan)
    for i, row in enumerate(rows[:n]):
        for j, v in enumerate(row[:n]):
            m[i, j] = as_float(v)
    return m


def _forgetting_section(fits: list[GroupFit], sec: H.Section) -> None:
    for model in dict.fromkeys(f.model for f in fits):
        group = [f for f in fits if f.model == model and f.forgetting is not None]
        if not group:
            sec.add(H.note(f"{model}: no forgetting.json in any continual folder"))
            continue
        metrics = list(dict.fromkeys(m for f in group for m in (f.forgetting or {}).get("scores") or {}))
        sessions = group[0].sessions
        summary: dict[tuple[str, str], tuple[list[float | None], float | None, float | None]] = {}
        for f in group:
            fj = f.forgetting or {}
            if f.sessions != sessions:
                sec.add(H.note(f"{f.label}: sessions {f.sessions} differ from {group[0].label}'s {sessions}"))
            if fj.get("method", f.method) != f.method:
                sec.add(H.note(f"{f.label}: forgetting.json says method {fj.get('method')!r}"))
            for metric in metrics:
                d = drops((fj.get("scores") or {}).get(metric))
                mean, mx = _summary(d)
                summary[(f.method or "", metric)] = (d, mean, mx)
                stored = (fj.get("forgetting") or {}).get(metric) or {}
                for key, value in (("mean_drop", mean), ("max_drop", mx)):
                    s = as_float(stored.get(key))
                    if value is not None and math.isfinite(s) and abs(s - value) > TOL:
                        sec.add(H.note(f"{f.label}: forgetting.json's {metric} {key} {s:g} disagrees with its "
                                       f"score matrix ({value:.6g}); the table shows the matrix's"))
        sec.add(H.heading(f"{model}"))
        for metric in metrics:
            mats = {f.method or f.strategy: _matrix(f, metric) for f in group if f.sessions == sessions}
            sec.add(H.image(F.to_base64(heatmaps(mats, sessions, metric)), f"forgetting matrix {model} {metric}",
                            f"{model}, {metric}: row 'after s_i' holds every session's test-trial score after "
                            f"fitting session s_i in order; a column's fall below its diagonal cell is forgetting. "
                            f"Blank: not fitted yet."))
        rows, classes = [], []
        for metric in metrics:
            ref = summary.get((REFERENCE, metric))
            for f in group:
                d, mean, mx = summary[(f.method or "", metric)]
                rel = [fraction_of_reference(mean, ref[1] if ref else None),
                       fraction_of_reference(mx, ref[2] if ref else None)]
                rows.append([f"continual-{f.method}", metric, H.fmt(mean), H.fmt(mx),
                             ", ".join(f"{s}: {H.fmt(v)}" for s, v in zip(sessions, d)) or H.MISSING,
                             *(("reference" if f.method == REFERENCE else H.fmt(r)) for r in rel)])
                classes.append("best" if f.method == REFERENCE else None)
        sec.add(H.table(["method", "metric", "mean drop", "max drop", "drops per session", "mean drop / none's",
                         "max drop / none's"], rows, numeric=(2, 3, 5, 6), row_classes=classes,
                        caption="Drop of a session: its score right after it was fitted minus its score after the "
                                "last session (positive = forgotten; the last session cannot drop). Mean and max "
                                "over sessions. Last two columns: each remedy's drop as a fraction of plain "
                                "fine-tuning's (continual-none, the reference; 0 = no forgetting left, 1 = no "
                                "better than fine-tuning); –: the reference did not forget or a score is missing."))
        if not any(f.method == REFERENCE for f in group):
            sec.add(H.note(f"{model}: no continual-{REFERENCE} fit, so no reference for the remedies"))


# ------------------------------------------------------------------------------------------ sessions
def _session_table(f: GroupFit) -> str:
    m = f.metrics or {}
    per = m.get("per_session") or {}
    truth = any(t is not None for t in f.truths.values())
    rows = []
    for s in f.sessions:
        p, t = per.get(s) or {}, f.truths.get(s) or {}
        cells = [s, H.fmt(p.get("co_bps")), H.fmt(p.get("fp_bps")), H.fmt(p.get("epochs"))]
        if truth:
            matched = (f"{t['fixed_points_matched']} of {t.get('fixed_points_true')}"
                       if t.get("fixed_points_matched") is not None else H.MISSING)
            cells += [H.fmt(t.get("state_r2")), H.fmt(t.get("cycle_r2")), matched]
        rows.append(cells)
    rows.append(["pooled", H.fmt(m.get("pooled_co_bps")), H.fmt(m.get("pooled_fp_bps")), "",
                 *([""] * 3 if truth else [])])
    header = ["session", "co-bps", "fp-bps", "epochs", *(["state R²", "cycle R²", "fixed points matched"]
                                                          if truth else [])]
    return H.table(header, rows, bold_rows=[len(rows) - 1], numeric=range(1, len(header)))


def _joint_vs_single(f: GroupFit, group_dir: Path, sec: H.Section) -> None:
    per = (f.metrics or {}).get("per_session") or {}
    rows, missing = [], []
    for s in f.sessions:
        single = group_dir.parent.parent / s / "fits" / f.model
        if not (single / "metrics.json").is_file():
            missing.append(s)
            continue
        alone = _read_json(single / "metrics.json", [], s) or {}
        t_alone, t_joint = _truth(single, [], s) or {}, f.truths.get(s) or {}
        a, j = as_float(alone.get("co_bps")), as_float(per.get(s, {}).get("co_bps"))
        rows.append([s, H.fmt(a), H.fmt(j), H.fmt(j - a), H.fmt(t_alone.get("state_r2")),
                     H.fmt(t_joint.get("state_r2"))])
    if rows:
        sec.add(H.table(["session", "co-bps alone", "co-bps joint", "joint − alone", "state R² alone",
                         "state R² joint"], rows, numeric=range(1, 6),
                        caption=f"{f.model}: each session fitted on its own (results/<session>/fits/{f.model}) vs "
                                "in the joint fit; positive 'joint − alone' = the other sessions helped."))
    if missing:
        sec.add(H.note(f"{f.label}: no single-session fit results/<session>/fits/{f.model}/metrics.json for "
                       f"{', '.join(missing)}"))


def group_page(group_dir: Path, fits: list[GroupFit]) -> str:
    """The HTML of the group page (module docstring) for the folders :func:`find_fits` read."""
    names = list(dict.fromkeys(s for f in fits for s in f.sessions))
    page = H.Page(f"{group_dir.resolve().name}: multi-session fits",
                  subtitle=f"{len(names)} sessions ({', '.join(names)}) · {len(fits)} fits in {group_dir}")
    sec = page.section("1. Overview")
    pooled = [as_float((f.metrics or {}).get("pooled_co_bps")) for f in fits]
    best = [int(np.nanargmax(pooled))] if np.isfinite(pooled).any() else []
    sec.add(H.table(["strategy", "model", "sessions", "pooled co-bps", "pooled fp-bps", "train s", "parameters"],
                    [[f.strategy, f.model, len(f.sessions), H.fmt(p), H.fmt((f.metrics or {}).get("pooled_fp_bps")),
                      H.fmt((f.metrics or {}).get("train_seconds"), 1), H.fmt((f.metrics or {}).get("n_params"))]
                     for f, p in zip(fits, pooled)], bold_rows=best, numeric=range(2, 7),
                    caption="One row per fit-group run; bold: best pooled co-bps (bits per spike of held-out units, "
                            "pooled over sessions' test trials)."))
    sec = page.section("2. Sessions")
    sec.add(H.para("co-bps: bits per spike of held-out units on test trials given held-in units; fp-bps: forward "
                   "prediction; pooled (bold): weighted by each session's held-out (fp: forward) test spikes. Where "
                   "cortexfit truth ran on a session's fit: state R², true latents predicted from model states; cycle "
                   "R², the reverse; fixed points, stable teacher points matched by model points. –: missing."))
    for f in fits:
        sec.add(H.heading(f.label))
        if f.metrics is not None:
            sec.add(_session_table(f))
        without = [s for s, t in f.truths.items() if t is None]
        if without:
            sec.add(H.note(f"{f.label}: no truth.json for {', '.join(without)} (recorded data, or `cortexfit truth` "
                           "not run)"))
        for text in f.notes:
            sec.add(H.note(text))
    joint = [f for f in fits if f.method is None]
    if joint:
        sec = page.section("3. Joint vs single-session")
        for f in joint:
            _joint_vs_single(f, group_dir, sec)
    continual = [f for f in fits if f.method is not None]
    if continual:
        _forgetting_section(continual, page.section("4. Forgetting"))
    return page.render()


def run(group_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the report of ``results/groups/<group>`` to ``out`` (module docstring).

    Parameters
    ----------
    group_dir : path
        A group folder holding ``<strategy>/<model>/`` folders written by ``cortexfit fit-group``.
    out : path
        HTML file to write (atomically).

    Raises
    ------
    ReportError
        ``group_dir`` holds no strategy folder with a model folder.

    Examples
    --------
    >>> run("results/groups/g", "results/groups/g/report.html")  # doctest: +SKIP
    PosixPath('results/groups/g/report.html')
    """
    group_dir, out = Path(group_dir), Path(out)
    fits = find_fits(group_dir)
    log.info("group %s: %d fits (%s)", group_dir, len(fits), ", ".join(f.label for f in fits))
    H.write_atomic(out, group_page(group_dir, fits))
    log.info("wrote %s (%.0f kB)", out, out.stat().st_size / 1024)
    return out
