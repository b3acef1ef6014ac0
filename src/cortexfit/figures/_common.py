"""Shared helpers of the mechanism figures: checks, plot style, atomic PNG + JSON output, shared data.

Every figure module is split in three steps that its ``make(out_dir, *, quick, seed) -> FigureResult``
composes with :func:`render`:

* ``compute(*, quick, seed, ...)`` returns a typed result (a dataclass of arrays and numbers; keyword
  options build the variant with the mechanism removed, used by the tests);
* ``check(result)`` returns the numeric checks (a list of :func:`numeric_check` dicts);
* ``plot(result, fig, axes)`` draws the panels.

:func:`render` writes ``<name>.png`` and ``<name>.json`` through :func:`save_figure` (temp file +
``os.replace``, so a reader never sees a half-written file).

Examples
--------
>>> c = check("slope", 1.02, lo=0.8, hi=1.2, unit="1", description="log-log slope of error vs dt")
>>> c["passed"]
True
>>> failed([c, check("x", 0.0, lo=1.0)])
['x']
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cortexfit.core.errors import ReportError
from cortexfit.core.fileio import atomic_path

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

STYLE: dict[RcKeyType, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.linewidth": 1.4,
}


def check(
    name: str,
    value: float,
    *,
    lo: float | None = None,
    hi: float | None = None,
    unit: str = "",
    description: str = "",
) -> dict[str, Any]:
    """One numeric check: ``lo <= value <= hi`` (either bound may be absent); NaN always fails.

    Parameters
    ----------
    name
        Short identifier (unique within a figure).
    value
        The measured number.
    lo, hi
        Inclusive bounds; ``None`` = unbounded on that side.
    unit
        Unit of ``value`` for display.
    description
        One sentence saying what is measured and why the bounds.

    Returns
    -------
    dict
        Plain JSON-able ``{"name", "value", "lo", "hi", "unit", "description", "passed"}``.

    Examples
    --------
    >>> check("ratio", 0.5, lo=1.0)["passed"]
    False
    """
    v = float(value)
    ok = math.isfinite(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
    return {
        "name": name,
        "value": v,
        "lo": None if lo is None else float(lo),
        "hi": None if hi is None else float(hi),
        "unit": unit,
        "description": description,
        "passed": bool(ok),
    }


#: The constructor of one numeric check under a name that leaves ``check`` free for the figure modules.
numeric_check = check


def failed(checks: list[dict[str, Any]]) -> list[str]:
    """Names of the checks that did not pass (empty when all pass)."""
    return [c["name"] for c in checks if not c["passed"]]


@dataclass
class FigureResult:
    """What one figure produced: its files, checks and the numbers behind the plot.

    Examples
    --------
    >>> r = FigureResult(name="x", title="X", checks=[check("a", 1.0, lo=0.0)])
    >>> r.passed
    True
    """

    name: str
    title: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    png: Path | None = None
    json: Path | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        """True when there is no error and every check passed."""
        return self.error is None and all(c["passed"] for c in self.checks)

    def to_json(self, *, quick: bool, seed: int) -> dict[str, Any]:
        """Plain dict written to ``<name>.json``."""
        return _plain(
            {
                "name": self.name,
                "title": self.title,
                "quick": quick,
                "seed": seed,
                "passed": self.passed,
                "error": self.error,
                "checks": self.checks,
                "params": self.params,
                "notes": self.notes,
                "values": self.values,
            }
        )


def _plain(obj: Any) -> Any:
    """Numpy/torch scalars and arrays -> JSON types; non-finite floats -> None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "detach"):  # torch tensor
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _atomic_write(path: Path, write) -> None:
    """Write via ``write(fh)`` into a temp file beside ``path``, then ``os.replace`` it into place."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


def write_text(path: Path, text: str) -> Path:
    """Atomically write a UTF-8 text file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_text(pathlib.Path(tempfile.mkdtemp()) / "a.txt", "hi")
    >>> p.read_text()
    'hi'
    """
    path = Path(path)
    _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    return path


@contextlib.contextmanager
def figure(nrows: int = 1, ncols: int = 3, *, width: float = 12.0, height: float = 3.6, **kw) -> Iterator[tuple]:
    """A styled ``(fig, axes)`` pair that is always closed afterwards.

    Examples
    --------
    >>> with figure(1, 2) as (fig, axes):
    ...     len(axes)
    2
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), **kw)
        try:
            yield fig, axes
        finally:
            plt.close(fig)


def save_figure(fig, out_dir: Path, result: FigureResult, *, quick: bool, seed: int) -> FigureResult:
    """Write ``<name>.png`` (from ``fig``) and ``<name>.json`` (from ``result``) atomically.

    The checks' pass/fail is summarised in the figure's suptitle-free footer so the PNG alone tells the story.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with figure(1, 1, width=3, height=2) as (fig, ax):
    ...     _ = ax.plot([0, 1])
    ...     r = save_figure(fig, d, FigureResult(name="demo", title="Demo"), quick=True, seed=0)
    >>> sorted(p.name for p in d.iterdir())
    ['demo.json', 'demo.png']
    """
    out_dir = Path(out_dir)
    if result.checks:
        footer = "   ".join(f"{'PASS' if c['passed'] else 'FAIL'} {c['name']} = {c['value']:.4g}"
                             for c in result.checks)
        fig.text(0.01, 0.005, footer, fontsize=7, color="0.3", ha="left", va="bottom")
    fig.suptitle(result.title, fontsize=11, fontweight="bold")
    fig.tight_layout(rect=(0, 0.04 if result.checks else 0, 1, 0.95))
    png = out_dir / f"{result.name}.png"
    _atomic_write(png, lambda fh: fig.savefig(fh, format="png"))
    result.png = png
    return write_json(out_dir, result, quick=quick, seed=seed)


def render(
    out_dir: Path,
    record: FigureResult,
    draw: Callable[[Any, Any], None],
    *,
    layout: tuple[int, int, float, float],
    quick: bool,
    seed: int,
) -> FigureResult:
    """Draw ``record``'s figure with ``draw(fig, axes)`` on a ``(nrows, ncols, width, height)`` grid and save.

    The composition step of every figure module: ``make`` = ``compute`` -> ``check`` -> ``plot`` -> this.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> r = render(d, FigureResult(name="demo", title="Demo"), lambda fig, ax: ax.plot([0, 1]),
    ...            layout=(1, 1, 3.0, 2.0), quick=True, seed=0)
    >>> r.png.name, r.json.name
    ('demo.png', 'demo.json')
    """
    nrows, ncols, width, height = layout
    with figure(nrows, ncols, width=width, height=height) as (fig, axes):
        draw(fig, axes)
        return save_figure(fig, out_dir, record, quick=quick, seed=seed)


def write_json(out_dir: Path, result: FigureResult, *, quick: bool, seed: int) -> FigureResult:
    """Write ``<name>.json`` atomically (also used for a figure that raised, with ``result.error`` set)."""
    path = Path(out_dir) / f"{result.name}.json"
    text = json.dumps(result.to_json(quick=quick, seed=seed), indent=1, allow_nan=False)
    write_text(path, text + "\n")
    result.json = path
    return result


def shared_data_dir() -> Path:
    """Folder of the shared recordings: ``$CORTEXFIT_SHARED_DATA`` or ``<repo>/../shared/data``.

    Examples
    --------
    >>> isinstance(shared_data_dir(), Path)
    True
    """
    env = os.environ.get("CORTEXFIT_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[np.random.Generator]:
    """Seed torch (forking its global RNG so callers are unaffected) and yield a numpy Generator.

    Examples
    --------
    >>> with seeded(0) as rng:
    ...     a = rng.normal()
    >>> with seeded(0) as rng:
    ...     b = rng.normal()
    >>> a == b
    True
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield np.random.default_rng(seed)


_FLUSH_DEPTH = [0]


@contextlib.contextmanager
def flush_denormal() -> Iterator[None]:
    """Flush denormal floats to zero in torch while inside (re-entrant; restores the default afterwards).

    Decaying activity (ordered networks, contracting reservoirs) reaches ~1e-40, where denormal
    arithmetic is tens of times slower.

    Examples
    --------
    >>> with flush_denormal():
    ...     pass
    """
    import torch

    _FLUSH_DEPTH[0] += 1
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        _FLUSH_DEPTH[0] -= 1
        if _FLUSH_DEPTH[0] == 0:
            torch.set_flush_denormal(False)


@contextlib.contextmanager
def compute_context() -> Iterator[None]:
    """One torch and one BLAS thread, denormals flushed: how every figure computes.

    The figures use small matrices, where threads only add overhead (and oversubscribed BLAS threads on a
    shared machine are many times slower); one thread also keeps results reproducible.  The thread limit
    is :func:`cortexfit.core.runtime.limit_threads`; flushing denormals keeps decaying (ordered) dynamics
    fast and the numbers identical to earlier runs.

    Examples
    --------
    >>> with compute_context():
    ...     pass
    """
    import torch  # noqa: F401 - imported first so that limit_threads also limits torch's threads

    from cortexfit.core.runtime import limit_threads

    with limit_threads(1, blas=True), flush_denormal():
        yield


def require(cond: bool, message: str) -> None:
    """Raise :class:`ReportError` with ``message`` unless ``cond`` (for a figure that cannot run at all)."""
    if not cond:
        raise ReportError(message)
