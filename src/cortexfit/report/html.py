"""Assembly of self-contained HTML pages: inline CSS, base64 PNG figures, no scripts or external assets.

Examples
--------
>>> page = Page("demo", subtitle="a test page")
>>> sec = page.section("Numbers")
>>> sec.add(table(["a", "b"], [["1", "2"]], bold_rows={0}))
>>> "<strong>1</strong>" in page.render()
True
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cortexfit.core.fileio import write_text_atomic

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 1.5em 3em; color: #222; line-height: 1.4; }
header { border-bottom: 2px solid #4c72b0; margin-bottom: 1em; }
h1 { margin-bottom: 0.1em; } h2 { border-bottom: 1px solid #ddd; padding-top: 0.6em; } h3 { margin-bottom: 0.2em; }
.subtitle { color: #555; margin-top: 0; }
nav ol { columns: 2; font-size: 0.95em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #eef1f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #fff6d6; }
caption { caption-side: bottom; text-align: left; color: #555; font-size: 0.9em; padding-top: 0.3em; }
.row { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
figure { margin: 0.8em 0 1.4em; } figure img { max-width: 100%; height: auto; }
figcaption { color: #444; font-size: 0.9em; }
p.note { color: #7a5a00; background: #fff8e1; border-left: 3px solid #f0b400; padding: 0.3em 0.7em; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #cf222e; font-weight: bold; }
tr.fail td { background: #ffebe9; }
footer { margin-top: 2em; color: #777; font-size: 0.85em; border-top: 1px solid #ddd; }
"""

MISSING = "–"


def esc(value: Any) -> str:
    """HTML-escape ``str(value)``.

    Examples
    --------
    >>> esc("<a & b>")
    '&lt;a &amp; b&gt;'
    """
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """Format a table cell: ``–`` for None/NaN, ints as is, floats with ``digits`` decimals (or 3
    significant digits when very small or large).

    Examples
    --------
    >>> fmt(0.12345), fmt(None), fmt(float("nan")), fmt(1234), fmt(2.5e-6)
    ('0.123', '–', '–', '1234', '2.5e-06')
    """
    if value is None or isinstance(value, bool):
        return MISSING if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(x):
        return MISSING
    if x != 0 and (abs(x) < 10 ** -digits or abs(x) >= 1e6):
        return f"{x:.3g}"
    return f"{x:.{digits}f}"


def slug(text: str) -> str:
    """An HTML id from a title.

    Examples
    --------
    >>> slug("1. The recording")
    'the-recording'
    """
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-0123456789") or "section"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, bold_rows: Iterable[int] = (),
          caption: str | None = None, numeric: Iterable[int] = (),
          row_classes: Sequence[str | None] | None = None) -> str:
    """An HTML table; cells are escaped strings (format numbers with :func:`fmt` first).

    Rows in ``bold_rows`` get class ``best`` and bold cells; columns in ``numeric`` are right-aligned;
    ``row_classes[i]`` (when given and not None) is the CSS class of row ``i`` (e.g. ``"fail"``).

    Examples
    --------
    >>> table(["x"], [["1"]]).startswith("<table>")
    True
    """
    bold, num = set(bold_rows), set(numeric)
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>")
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            text = esc(cell)
            if i in bold:
                text = f"<strong>{text}</strong>"
            cells.append(f'<td class="num">{text}</td>' if j in num else f"<td>{text}</td>")
        cls = "best" if i in bold else (row_classes[i] if row_classes is not None else None)
        out.append(f'<tr class="{esc(cls)}">' if cls else "<tr>")
        out.append("".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def link_table(header: Sequence[str], rows: Iterable[Sequence[Any]], links: Sequence[str | None], *,
               bold_cells: Iterable[tuple[int, int]] = (), numeric: Iterable[int] = ()) -> str:
    """Like :func:`table`, with the first cell of row ``i`` linked to the relative URL ``links[i]``.

    Examples
    --------
    >>> 'href="a/report.html"' in link_table(["d"], [["a"]], ["a/report.html"])
    True
    """
    bold, num = set(bold_cells), set(numeric)
    out = ["<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            text = esc(cell)
            if j == 0 and links[i]:
                text = f'<a href="{esc(links[i])}">{text}</a>'
            if (i, j) in bold:
                text = f"<strong>{text}</strong>"
            cells.append(f'<td class="num">{text}</td>' if j in num else f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def image(png_base64: str, alt: str, caption: str | None = None) -> str:
    """An embedded PNG figure (``data:image/png;base64``) with alt text and an optional caption.

    Examples
    --------
    >>> image("AAAA", "a plot").count("data:image/png;base64,")
    1
    """
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{png_base64}" alt="{esc(alt)}">{cap}</figure>'


def row(*parts: str) -> str:
    """Put figures (or tables) side by side, wrapping on narrow screens."""
    return '<div class="row">' + "".join(parts) + "</div>"


def note(text: str) -> str:
    """A short highlighted note (e.g. why a part of the report is missing).

    Examples
    --------
    >>> note("no behavior")
    '<p class="note">no behavior</p>'
    """
    return f'<p class="note">{esc(text)}</p>'


def status(passed: bool) -> str:
    """A coloured PASS / FAIL marker (CSS classes ``pass`` and ``fail``).

    Examples
    --------
    >>> status(False)
    '<span class="fail">FAIL</span>'
    """
    return '<span class="pass">PASS</span>' if passed else '<span class="fail">FAIL</span>'


def bullets(items: Iterable[Any]) -> str:
    """An unordered list of escaped items (empty string for no items).

    Examples
    --------
    >>> bullets(["a < b"])
    '<ul><li>a &lt; b</li></ul>'
    """
    lis = "".join(f"<li>{esc(x)}</li>" for x in items)
    return f"<ul>{lis}</ul>" if lis else ""


def para(text: str) -> str:
    """A plain paragraph (escaped)."""
    return f"<p>{esc(text)}</p>"


def heading(text: str, level: int = 3) -> str:
    """A sub-heading inside a section."""
    return f"<h{level}>{esc(text)}</h{level}>"


@dataclass
class Section:
    """One titled section of a page; ``parts`` are HTML snippets from the helpers above."""

    title: str
    parts: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return slug(self.title)

    def add(self, part: str) -> None:
        self.parts.append(part)


@dataclass
class Page:
    """A self-contained HTML page: header, table of contents, sections, footer."""

    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        sec = Section(title)
        self.sections.append(sec)
        return sec

    def render(self) -> str:
        from cortexfit import __version__

        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        toc = "".join(f'<li><a href="#{s.anchor}">{esc(s.title)}</a></li>' for s in self.sections)
        body = "".join(f'<section id="{s.anchor}"><h2>{esc(s.title)}</h2>{"".join(s.parts)}</section>'
                       for s in self.sections)
        sub = f'<p class="subtitle">{esc(self.subtitle)}</p>' if self.subtitle else ""
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(self.title)}</title>"
            f"<style>{CSS}</style></head><body><header><h1>{esc(self.title)}</h1>{sub}</header>"
            f"<nav><ol>{toc}</ol></nav>{body}"
            f"<footer>cortexfit {esc(__version__)} · generated {esc(now)}</footer></body></html>\n"
        )


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file in the same folder and :func:`os.replace`.

    Examples
    --------
    >>> write_atomic("report.html", "<html></html>")  # doctest: +SKIP
    """
    return write_text_atomic(path, text)
