"""The mechanism figures of RNN theory, each with numeric checks (``cortexfit figures OUT_DIR``).

Each figure module (``cortexfit.figures.<module>``) defines ``NAME``, ``TITLE`` and
``make(out_dir, *, quick, seed) -> FigureResult``, which writes ``OUT_DIR/<name>.png`` and
``OUT_DIR/<name>.json`` (its check values and a pass/fail per check).  :func:`run` runs the selected
figures, writes ``OUT_DIR/index.html`` (figures embedded as base64, so it opens offline) and raises
:class:`~cortexfit.core.errors.ReportError` after writing everything if any check failed.

===============  ==========================================================================
name             what it shows
===============  ==========================================================================
euler            rate RNN with dt = tau is the vanilla RNN; Euler error vs dt is first order
chaos            largest Lyapunov exponent vs gain g (Sompolinsky, Crisanti & Sommers 1988)
echo_state       echo-state property vs spectral radius and input scale; memory capacity
gradients        ||d s_T / d s_t|| vs lag, vanilla RNN vs LSTM; a 100-step cue-recall task
dale             E/I (Dale) spectrum vs the Rajan-Abbott radius; a rank-one outlier
stp              Tsodyks-Markram facilitation/depression; working memory in facilitation
exposure         closed-loop error vs horizon: teacher forcing vs scheduled sampling
interference     catastrophic interference and elastic weight consolidation (EWC)
flipflop         fixed points of a 3-bit flip-flop RNN: 8 stable points and saddles
rotations        jPCA rotations in motor cortex (Churchland et al. 2012)
===============  ==========================================================================

Examples
--------
>>> import tempfile
>>> summary = run(tempfile.mkdtemp(), quick=True, only=["euler"])  # doctest: +SKIP
>>> summary["passed"], list(summary["figures"])  # doctest: +SKIP
(True, ['euler'])
"""

from __future__ import annotations

import base64
import importlib
import logging
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cortexfit.core.errors import ReportError
from cortexfit.figures._common import (
    FigureResult,
    compute_context,
    write_json,
    write_text,
)
from cortexfit.report import html as H

log = logging.getLogger(__name__)

#: Figure name -> module under ``cortexfit.figures`` (run in this order).
FIGURES: dict[str, str] = {
    "euler": "euler",
    "chaos": "chaos",
    "echo_state": "echo_state",
    "gradients": "gradients",
    "dale": "dale",
    "stp": "stp",
    "exposure": "exposure",
    "interference": "interference",
    "flipflop": "flipflop",
    "rotations": "rotations",
}


def names() -> list[str]:
    """Names of the registered figures, in run order.

    Examples
    --------
    >>> names()[:2]
    ['euler', 'chaos']
    """
    return list(FIGURES)


def _run_one(name: str, out_dir: Path, *, quick: bool, seed: int) -> FigureResult:
    """Run one figure; an exception becomes a failed result (its JSON still written) and is logged."""
    module = importlib.import_module(f"cortexfit.figures.{FIGURES[name]}")
    try:
        return module.make(out_dir, quick=quick, seed=seed)
    except Exception as exc:  # noqa: BLE001 - reported in the index and re-raised as ReportError by run()
        log.error("figure %s failed:\n%s", name, traceback.format_exc())
        result = FigureResult(name=name, title=getattr(module, "TITLE", name), error=f"{type(exc).__name__}: {exc}")
        return write_json(out_dir, result, quick=quick, seed=seed)


def run(out_dir: str | Path, quick: bool = False, only: Sequence[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """Run the figures, write PNG + JSON per figure and ``index.html``; fail loudly if a check fails.

    Parameters
    ----------
    out_dir
        Output folder (created if missing).
    quick
        Reduced sizes (the whole set in well under a minute on 2 CPU cores; used by the tests).
    only
        Figure names to run (default: all, see :func:`names`).
    seed
        Random seed shared by all figures (results are deterministic for a seed on CPU).

    Returns
    -------
    dict
        ``{"out_dir", "index", "passed", "figures": {name: {"passed", "png", "json", "seconds",
        "checks": {check: passed}, "error"}}}``.

    Raises
    ------
    ReportError
        Unknown figure name (before running anything), or, after everything is written, any failed check
        or figure.

    Examples
    --------
    >>> import tempfile
    >>> run(tempfile.mkdtemp(), quick=True, only=["dale"])["figures"]["dale"]["passed"]  # doctest: +SKIP
    True
    """
    selected = names() if not only else list(dict.fromkeys(only))
    unknown = [n for n in selected if n not in FIGURES]
    if unknown:
        raise ReportError(f"unknown figure(s) {', '.join(unknown)}; valid figures: {', '.join(names())}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    results: list[tuple[FigureResult, float, float]] = []
    with compute_context():
        for name in selected:
            log.info("figure %s ...", name)
            t0, c0 = time.perf_counter(), time.process_time()
            res = _run_one(name, out, quick=quick, seed=seed)
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
            log.info("figure %s: %s in %.1f s (%.1f s CPU)", name, "pass" if res.passed else "FAIL", secs, cpu)
            results.append((res, secs, cpu))
    index = write_text(out / "index.html", _index_html(results, quick=quick, seed=seed))
    summary = {
        "out_dir": str(out),
        "index": str(index),
        "passed": all(r.passed for r, *_ in results),
        "figures": {
            r.name: {
                "passed": r.passed,
                "png": str(r.png) if r.png else None,
                "json": str(r.json) if r.json else None,
                "seconds": round(s, 2),
                "cpu_seconds": round(c, 2),
                "checks": {c["name"]: c["passed"] for c in r.checks},
                "error": r.error,
            }
            for r, s, c in results
        },
    }
    failed = [
        f"{r.name} ({r.error or ', '.join(c['name'] for c in r.checks if not c['passed'])})"
        for r, *_ in results
        if not r.passed
    ]
    if failed:
        raise ReportError(f"{index}: failed figure checks: {'; '.join(failed)}")
    return summary


def _bounds(c: dict[str, Any]) -> str:
    lo = "-inf" if c["lo"] is None else f"{c['lo']:.4g}"
    hi = "inf" if c["hi"] is None else f"{c['hi']:.4g}"
    return f"[{lo}, {hi}]"


def _checks_table(checks: list[dict[str, Any]]) -> str:
    """The checks of one figure: value, unit, expected interval, PASS/FAIL (failed rows highlighted)."""
    rows = [[c["name"], f"{c['value']:.4g}", c["unit"], _bounds(c), "PASS" if c["passed"] else "FAIL",
             c["description"]] for c in checks]
    return H.table(["check", "value", "unit", "expected", "result", "what"], rows, numeric=[1],
                   row_classes=["pass" if c["passed"] else "fail" for c in checks])


def _figure_section(page: H.Page, r: FigureResult, secs: float) -> None:
    """One section of the index: status, files, the PNG inline, the checks table and the notes."""
    sec = page.section(f"{r.name}: {r.title}")
    sec.add(f"<p>{H.status(r.passed)} {secs:.1f} s. Files: {H.esc(r.name)}.png, {H.esc(r.name)}.json</p>")
    if r.error:
        sec.add(f'<p class="fail">error: {H.esc(r.error)}</p>')
    if r.png is not None and r.png.is_file():
        sec.add(H.image(base64.b64encode(r.png.read_bytes()).decode("ascii"), r.name))
    if r.checks:
        sec.add(_checks_table(r.checks))
    sec.add(H.bullets(r.notes))


def _index_html(results: list[tuple[FigureResult, float, float]], *, quick: bool, seed: int) -> str:
    """Self-contained HTML page (:class:`cortexfit.report.html.Page`): one section per figure, PNGs inline."""
    n_pass = sum(r.passed for r, *_ in results)
    page = H.Page("cortexfit mechanism figures",
                  subtitle=f"{'quick' if quick else 'full'} mode, seed {seed}: {n_pass} / {len(results)} figures "
                           "pass all checks")
    summary = page.section("Summary")
    summary.add(H.table(["figure", "title", "result", "seconds"],
                        [[r.name, r.title, "PASS" if r.passed else "FAIL", f"{secs:.1f}"] for r, secs, _ in results],
                        row_classes=["pass" if r.passed else "fail" for r, *_ in results], numeric=[3]))
    for r, secs, _cpu in results:
        _figure_section(page, r, secs)
    return page.render()
