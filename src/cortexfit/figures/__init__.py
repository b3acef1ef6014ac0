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
import html
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


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _index_html(results: list[tuple[FigureResult, float, float]], *, quick: bool, seed: int) -> str:
    """Self-contained HTML page: one section per figure, PNG inline as base64, the checks as a table."""
    from cortexfit import __version__

    n_pass = sum(r.passed for r, *_ in results)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>cortexfit mechanism figures</title>",
        (
            "<style>body{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}"
            "table{border-collapse:collapse;font-size:13px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px}"
            ".pass{color:#1a7f37;font-weight:bold}.fail{color:#cf222e;font-weight:bold}img{max-width:100%}"
            "section{border-top:2px solid #ddd;margin-top:1.5em}</style></head><body>"
        ),
        (
            f"<h1>cortexfit mechanism figures</h1><p>cortexfit {html.escape(__version__)}, "
            f"{'quick' if quick else 'full'} mode, seed {seed}: <b>{n_pass} / {len(results)}</b> figures pass all "
            "checks.</p>"
        ),
        "<ul>",
    ]
    for r, *_ in results:
        cls = "pass" if r.passed else "fail"
        parts.append(f"<li><a href='#{r.name}'>{html.escape(r.name)}</a>: {html.escape(r.title)} "
                     f"<span class='{cls}'>{'PASS' if r.passed else 'FAIL'}</span></li>")
    parts.append("</ul>")
    for r, secs, _cpu in results:
        cls = "pass" if r.passed else "fail"
        parts.append(f"<section id='{r.name}'><h2>{html.escape(r.name)}: {html.escape(r.title)} "
                     f"<span class='{cls}'>{'PASS' if r.passed else 'FAIL'}</span></h2>")
        parts.append(f"<p>{secs:.1f} s. Files: {html.escape(r.name)}.png, {html.escape(r.name)}.json</p>")
        if r.error:
            parts.append(f"<p class='fail'>error: {html.escape(r.error)}</p>")
        if r.png is not None and r.png.is_file():
            b64 = base64.b64encode(r.png.read_bytes()).decode("ascii")
            parts.append(f"<img alt='{html.escape(r.name)}' src='data:image/png;base64,{b64}'>")
        if r.checks:
            parts.append("<table><tr><th>check</th><th>value</th><th>unit</th><th>expected</th><th>result</th>"
                         "<th>what</th></tr>")
            for c in r.checks:
                lo, hi = c["lo"], c["hi"]
                rng = f"[{_fmt(lo) if lo is not None else '-inf'}, {_fmt(hi) if hi is not None else 'inf'}]"
                ok = "pass" if c["passed"] else "fail"
                parts.append(f"<tr><td>{html.escape(c['name'])}</td><td>{_fmt(c['value'])}</td>"
                             f"<td>{html.escape(c['unit'])}</td><td>{rng}</td>"
                             f"<td class='{ok}'>{ok.upper()}</td><td>{html.escape(c['description'])}</td></tr>")
            parts.append("</table>")
        if r.notes:
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in r.notes) + "</ul>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)
