"""What a fit does not show: which fits beat the mean-rate null and the smoothing baseline, and the warnings.

A model that predicts held-out units no better than their mean rates (co-bps <= 0), or an RNN that
predicts them no better than smoothing the held-in spikes does, has not learned the data: its fixed
points, jPCA planes, Lyapunov spectra and alignment scores describe the model, not the brain.  The report
says so at the top (:func:`warning_box`) and labels those fits' analyses (:func:`label`).

The verdicts come from each fit's ``metrics.json`` -- ``beats_null`` and ``beats_smoothing`` (written by
``cortexfit fit``; ``beats_smoothing`` null without a smoothing reference) -- and, where a file predates them,
from co-bps: ``co_bps > 0`` and ``co_bps >`` the smoothing baseline's co-bps (its ``smoothing_co_bps``, else
the ``smoothing`` fit folder's co-bps).

Examples
--------
>>> caveats = assess(load_dataset("results/mc_maze_small"))  # doctest: +SKIP
>>> caveats.warnings, caveats.uninformative  # doctest: +SKIP
(['No RNN beats the smoothing baseline ...'], {'rate': 'co-bps 0.250 <= smoothing baseline 0.310'})
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cortexfit.analysis.fitdir import as_float
from cortexfit.fit import registry
from cortexfit.report import html as H

if TYPE_CHECKING:
    from cortexfit.report import DatasetResults, ModelResults

__all__ = ["Caveats", "assess", "label", "section_label", "warning_box", "yes_no"]

SMOOTHING = "smoothing"
BOX_STYLE = ("border: 2px solid #cf222e; background: #ffebe9; color: #82071e; padding: 0.6em 1em; "
             "margin: 1em 0; border-radius: 4px")
LABEL_STYLE = ("display: inline-block; border: 1px solid #cf222e; background: #ffebe9; color: #82071e; "
               "padding: 0 0.4em; margin: 0.2em 0; font-size: 0.9em; font-weight: bold")


@dataclass
class Caveats:
    """Per fit ``beats_null`` / ``beats_smoothing`` (None: unknown), the page's warnings, and the fits whose
    analyses are uninformative with the reason."""

    beats_null: dict[str, bool | None] = field(default_factory=dict)
    beats_smoothing: dict[str, bool | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    uninformative: dict[str, str] = field(default_factory=dict)


def _is_rnn(fit: ModelResults) -> bool:
    return fit.folder.model_name not in registry.baselines()


def _flag(metrics: dict[str, Any], key: str) -> tuple[bool, bool | None]:
    """(whether ``metrics.json`` has ``key``, its value as bool or None)."""
    if key not in metrics:
        return False, None
    value = metrics[key]
    return True, (bool(value) if isinstance(value, bool | int) else None)


def _smoothing_co_bps(data: DatasetResults, fit: ModelResults) -> float:
    """The smoothing baseline's co-bps to compare ``fit`` with: its own ``smoothing_co_bps``, else the
    ``smoothing`` fit folder's co-bps (NaN when neither is known)."""
    own = as_float((fit.metrics or {}).get("smoothing_co_bps"))
    if math.isfinite(own):
        return own
    ref = next((f for f in data.fits if f.folder.model_name == SMOOTHING), None)
    return ref.co_bps if ref is not None else float("nan")


def _verdicts(data: DatasetResults, fit: ModelResults) -> tuple[bool | None, bool | None]:
    metrics = fit.metrics or {}
    co = fit.co_bps
    has, null = _flag(metrics, "beats_null")
    if not has:
        null = bool(co > 0) if math.isfinite(co) else None
    if fit.folder.model_name == SMOOTHING:
        return null, None
    has, smooth = _flag(metrics, "beats_smoothing")
    if not has or smooth is None:
        ref = _smoothing_co_bps(data, fit)
        smooth = bool(co > ref) if math.isfinite(co) and math.isfinite(ref) else None
    return null, smooth


def assess(data: DatasetResults) -> Caveats:
    """Verdicts for every fit with ``metrics.json``, the warnings of the page and the uninformative fits."""
    out = Caveats()
    scored = [f for f in data.fits if f.metrics is not None]
    for f in scored:
        out.beats_null[f.name], out.beats_smoothing[f.name] = _verdicts(data, f)
    known = {k: v for k, v in out.beats_null.items() if v is not None}
    if known and not any(known.values()):
        out.warnings.append(
            "No model beats the mean-rate null: every co-bps is <= 0, so no model predicts the held-out units "
            "better than their mean firing rates. The fixed points, jPCA planes, Lyapunov spectra and alignment "
            "scores below describe models that have not learned these data.")
    rnns = [f for f in scored if _is_rnn(f)]
    vs_smooth = {f.name: out.beats_smoothing[f.name] for f in rnns if out.beats_smoothing[f.name] is not None}
    if vs_smooth and not any(vs_smooth.values()):
        ref = next((f for f in data.fits if f.folder.model_name == SMOOTHING), None)
        ref_text = f" (co-bps {ref.co_bps:.3f})" if ref is not None and math.isfinite(ref.co_bps) else ""
        out.warnings.append(
            f"No RNN beats the smoothing baseline{ref_text}: smoothing the held-in spikes predicts the held-out "
            "units at least as well as every dynamical model, so their fixed points, jPCA planes and Lyapunov "
            "spectra are not evidence about the data's dynamics.")
    for f in scored:
        if out.beats_null[f.name] is False:
            out.uninformative[f.name] = f"co-bps {H.fmt(f.co_bps)} <= 0: no better than the mean-rate null"
        elif _is_rnn(f) and out.beats_smoothing[f.name] is False:
            ref_co = _smoothing_co_bps(data, f)
            out.uninformative[f.name] = (f"co-bps {H.fmt(f.co_bps)} <= smoothing baseline {H.fmt(ref_co)}: "
                                         "no better than smoothing")
    return out


def warning_box(caveats: Caveats) -> str:
    """The red box at the top of the page ('' without warnings)."""
    if not caveats.warnings:
        return ""
    items = "".join(f"<li>{H.esc(w)}</li>" for w in caveats.warnings)
    names = ", ".join(sorted(caveats.uninformative))
    tail = f"<p>Marked uninformative below: {H.esc(names)}.</p>" if names else ""
    return (f'<div class="warning" role="alert" style="{BOX_STYLE}"><strong>What these fits do not show</strong>'
            f"<ul>{items}</ul>{tail}</div>")


def label(caveats: Caveats, name: str) -> str:
    """' [uninformative]' for a figure title or table cell ('' for a fit that beats both); the reason is in
    the section's :func:`section_label`."""
    return " [uninformative]" if name in caveats.uninformative else ""


def yes_no(value: bool | None) -> str:
    """A table cell for a verdict: yes, no, or – when unknown."""
    return H.MISSING if value is None else ("yes" if value else "no")


def section_label(caveats: Caveats, what: str) -> str:
    """A visible label at the head of an analysis section naming its uninformative fits ('' if none)."""
    if not caveats.uninformative:
        return ""
    items = "; ".join(f"{name} ({reason})" for name, reason in sorted(caveats.uninformative.items()))
    return (f'<p class="uninformative" style="{LABEL_STYLE}">Uninformative {H.esc(what)}: '
            f"{H.esc(items)}</p>")
