"""Matplotlib figure builders of the dataset report (Agg canvas, no pyplot state, robust to NaN and tiny data).

Every builder takes plain numpy arrays and returns a :class:`matplotlib.figure.Figure`; :func:`to_base64`
renders it as PNG for embedding in the HTML page.  Axes carry labels with units; panels without finite
data say so instead of failing.

Examples
--------
>>> import numpy as np
>>> fig = rate_histogram(np.array([1.0, 5.0, np.nan, 12.0]))
>>> to_base64(fig)[:8]
'iVBORw0K'
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

DPI = 90
LABEL_COLORS = {"stable": "#2ca02c", "saddle": "#ff7f0e", "unstable": "#d62728"}
MAX_LEGEND = 10


def to_base64(fig: Figure) -> str:
    """Render ``fig`` as PNG and return it base64-encoded (ASCII).

    Examples
    --------
    >>> len(to_base64(Figure(figsize=(1, 1)))) > 100
    True
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def condition_colors(n: int) -> list:
    """``n`` distinguishable colours: tab10 up to 10 conditions, a cyclic map beyond (e.g. reach angles).

    Examples
    --------
    >>> len(condition_colors(3)), len(condition_colors(24))
    (3, 24)
    """
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    return [colormaps["hsv"](i / n) for i in range(n)]


def _empty(ax: Axes, text: str = "no finite data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _grid(n: int, ncols: int, size: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(fig: Figure, labels: Sequence[str], colors: Sequence, title: str) -> None:
    if 0 < len(labels) <= MAX_LEGEND:
        handles = [Line2D([], [], color=c, lw=2) for c in colors]
        fig.legend(handles, [str(x) for x in labels], title=title, loc="outside right upper", fontsize=8)


# ------------------------------------------------------------------------------------------ recording
def units_per_area(areas: Sequence[str], counts: Sequence[int], *, neuron: str = "unit") -> Figure:
    """Bar chart of the number of units recorded in each brain area.

    Examples
    --------
    >>> fig = units_per_area(["M1", "PMd"], [55, 52])
    """
    fig = Figure(figsize=(max(3.0, 0.6 * len(areas) + 1.5), 2.8), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar([str(a) for a in areas], counts, color="#4c72b0")
    ax.bar_label(bars, fontsize=8)
    ax.margins(y=0.15)
    ax.set_xlabel("area")
    ax.set_ylabel(f"number of {neuron}s")
    ax.set_title(f"{neuron}s per area")
    return fig


def rate_histogram(values: np.ndarray, *, xlabel: str = "mean firing rate (Hz)") -> Figure:
    """Histogram of per-unit mean rates (NaN, e.g. never-observed units, are left out).

    Examples
    --------
    >>> fig = rate_histogram(np.array([1.0, 2.0, 30.0]))
    """
    fig = Figure(figsize=(4.0, 2.8), layout="constrained")
    ax = fig.subplots()
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size:
        ax.hist(v, bins=min(30, max(3, v.size // 2)), color="#4c72b0", edgecolor="white")
        ax.axvline(float(np.median(v)), color="k", ls="--", lw=1, label=f"median {np.median(v):.3g}")
        ax.legend(fontsize=8)
    else:
        _empty(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("number of units")
    ax.set_title("rate distribution across units")
    return fig


def raster(trials: Sequence[np.ndarray], titles: Sequence[str], time_ms: np.ndarray, area_of_row: Sequence[str],
           *, xlabel: str, signal: str = "spike_counts") -> Figure:
    """Binned rasters of a few trials: one panel per trial, (time x unit) counts, units sorted by area.

    ``trials`` holds (time, unit) arrays already sorted by area, NaN where a bin was not observed.

    Examples
    --------
    >>> fig = raster([np.ones((5, 3))], ["trial 0"], np.arange(5.0), ["M1", "M1", "PMd"], xlabel="time (ms)")
    """
    fig, axes = _grid(max(1, len(trials)), 3, (3.6, 3.4))
    bw = float(np.median(np.diff(time_ms))) if len(time_ms) > 1 else 1.0
    extent = (float(time_ms[0]) - bw / 2, float(time_ms[-1]) + bw / 2, len(area_of_row) - 0.5, -0.5) \
        if len(time_ms) else None
    areas = np.asarray(area_of_row, dtype=str)
    bounds = np.flatnonzero(areas[1:] != areas[:-1]) + 1 if len(areas) else np.array([], int)
    starts = np.r_[0, bounds]
    stops = np.r_[bounds, len(areas)]
    image = None
    for ax, counts, title in zip(axes, trials, titles):
        data = np.ma.masked_invalid(np.asarray(counts, dtype=float).T)
        if data.size == 0 or data.mask.all():
            _empty(ax)
        else:
            vmax = 3 if signal == "spike_counts" else float(np.nanpercentile(data.filled(np.nan), 99) or 1)
            from matplotlib import colormaps

            cmap = colormaps["Greys" if signal == "spike_counts" else "viridis"].with_extremes(bad="#f3c6c6")
            image = ax.imshow(data, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=vmax,
                              extent=extent)
        for b in bounds:
            ax.axhline(b - 0.5, color="#1f77b4", lw=0.8)
        ax.set_yticks([(a + b - 1) / 2 for a, b in zip(starts, stops)] if len(areas) else [])
        ax.set_yticklabels([areas[a] for a in starts] if len(areas) else [], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("unit (sorted by area)")
    if image is not None:
        label = "spikes per bin (clipped at 3)" if signal == "spike_counts" else "activity (a.u.)"
        fig.colorbar(image, ax=axes, label=label, shrink=0.8)
    return fig


def psth_grid(time_ms: np.ndarray, rates: np.ndarray, conditions: Sequence[str], unit_titles: Sequence[str],
              *, xlabel: str, ylabel: str = "rate (Hz)") -> Figure:
    """PSTHs of a few units: one panel per unit, one line per condition; ``rates`` is (condition, time, unit).

    Examples
    --------
    >>> fig = psth_grid(np.arange(4.0), np.ones((2, 4, 1)), ["a", "b"], ["unit 0"], xlabel="time (ms)")
    """
    n = max(1, rates.shape[2])
    fig, axes = _grid(n, 3, (3.0, 2.4))
    colors = condition_colors(len(conditions))
    for j, ax in enumerate(axes):
        if j >= rates.shape[2] or not np.isfinite(rates[..., j]).any():
            _empty(ax)
        else:
            for c, color in enumerate(colors):
                ax.plot(time_ms, rates[c, :, j], color=color, lw=1.2)
            ax.set_title(unit_titles[j], fontsize=9)
        ax.axvline(0, color="0.6", lw=0.8, ls=":")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    _legend(fig, conditions, colors, "condition")
    return fig


def behavior_traces(time_ms: np.ndarray, values: np.ndarray, conditions: Sequence[str], channels: Sequence[str],
                    *, xlabel: str) -> Figure:
    """Condition-averaged behavior channels vs time; ``values`` is (condition, time, channel).

    Examples
    --------
    >>> fig = behavior_traces(np.arange(3.0), np.zeros((2, 3, 1)), ["a", "b"], ["hand_pos_x"], xlabel="t (ms)")
    """
    return psth_grid(time_ms, values, conditions, list(channels), xlabel=xlabel, ylabel="value (channel units)")


# ------------------------------------------------------------------------------------------- models
def training_curves(histories: dict[str, dict[str, np.ndarray]]) -> Figure:
    """Train and validation loss vs epoch, one panel per model (``{model: {"epoch", "train_loss", ...}}``).

    Examples
    --------
    >>> fig = training_curves({"rate": {"epoch": np.arange(1, 4), "train_loss": np.ones(3),
    ...                                 "valid_loss": np.ones(3)}})
    """
    fig, axes = _grid(max(1, len(histories)), 3, (3.2, 2.6))
    for ax, (name, h) in zip(axes, histories.items()):
        epoch = np.asarray(h.get("epoch", []), dtype=float)
        drew = False
        for key, style in (("train_loss", "-"), ("valid_loss", "--")):
            y = np.asarray(h.get(key, np.full(len(epoch), np.nan)), dtype=float)
            ok = np.isfinite(y) & np.isfinite(epoch)
            if ok.any():
                ax.plot(epoch[ok], y[ok], style, marker="." if ok.sum() < 20 else None,
                        label=key.replace("_loss", ""))
                drew = True
        if drew:
            ax.legend(fontsize=8)
        else:
            _empty(ax)
        ax.set_title(name, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
    return fig


def trajectories(panels: Sequence[tuple[str, np.ndarray | None, str, str]], conditions: Sequence[str],
                 *, ncols: int = 2, max_traj: int = 24, legend_title: str = "condition") -> Figure:
    """Condition-averaged trajectories in 2-D planes, coloured by condition; a dot marks the start.

    ``panels`` holds ``(title, xy, xlabel, ylabel)`` with ``xy`` (condition, time, 2) or None (drawn as a note).

    Examples
    --------
    >>> fig = trajectories([("data PCA", np.zeros((2, 5, 2)), "PC1", "PC2")], ["a", "b"])
    """
    fig, axes = _grid(max(1, len(panels)), ncols, (3.4, 3.0))
    colors = condition_colors(len(conditions))
    for ax, (title, xy, xlabel, ylabel) in zip(axes, panels):
        if xy is None or not np.isfinite(xy).any():
            _empty(ax, "not available")
        else:
            for c in range(min(len(xy), max_traj)):
                ok = np.isfinite(xy[c]).all(axis=1)
                if ok.any():
                    color = colors[c % len(colors)] if colors else "k"
                    ax.plot(xy[c, ok, 0], xy[c, ok, 1], color=color, lw=1.2)
                    first = np.flatnonzero(ok)[0]
                    ax.plot(xy[c, first, 0], xy[c, first, 1], "o", color=color, ms=3)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    _legend(fig, conditions[:max_traj], colors[:max_traj], legend_title)
    return fig


def fixed_points(panels: Sequence[dict]) -> Figure:
    """Fixed/slow points in PC1-PC2 coloured by stability, over a few condition-averaged trajectories.

    Each panel is ``{"title", "points" (point, >=2), "label" (point,), "point_type" (point,),
    "traj" (trajectory, time, >=2), "xlabel", "ylabel"}``; optionally ``"traj_label"`` (legend entry of the grey
    trajectories) and ``"model"`` (trajectory, time, >=2), drawn dashed blue as "model".

    Examples
    --------
    >>> fig = fixed_points([{"title": "rate", "points": np.zeros((1, 2)), "label": np.array(["stable"]),
    ...                      "point_type": np.array(["fixed"]), "traj": np.zeros((1, 4, 2)),
    ...                      "xlabel": "PC1", "ylabel": "PC2"}])
    """
    fig, axes = _grid(max(1, len(panels)), 3, (3.4, 3.0))
    for ax, p in zip(axes, panels):
        traj = np.asarray(p.get("traj", np.zeros((0, 0, 2))), dtype=float)
        for k in range(min(len(traj), 8)):
            ok = np.isfinite(traj[k, :, :2]).all(axis=1)
            ax.plot(traj[k, ok, 0], traj[k, ok, 1], color="0.65", lw=0.9, zorder=1,
                    label=p.get("traj_label") if k == 0 else None)
        model = p.get("model")
        model = np.zeros((0, 0, 2)) if model is None else np.asarray(model, dtype=float)
        for k in range(min(len(model), 8)):
            ok = np.isfinite(model[k, :, :2]).all(axis=1)
            ax.plot(model[k, ok, 0], model[k, ok, 1], color="#1f77b4", lw=0.8, ls="--", zorder=2,
                    label="model" if k == 0 else None)
        pts = np.asarray(p["points"], dtype=float)
        labels = np.asarray(p["label"], dtype=str)
        kinds = np.asarray(p.get("point_type", np.full(len(pts), "fixed")), dtype=str)
        ok = np.isfinite(pts[:, :2]).all(axis=1) if pts.ndim == 2 and pts.shape[1] >= 2 else np.zeros(len(pts), bool)
        for lab in dict.fromkeys(labels[ok].tolist()):
            for kind, marker in (("fixed", "o"), ("slow", "x")):
                m = ok & (labels == lab) & ((kinds == kind) if kind == "slow" else (kinds != "slow"))
                if m.any():
                    ax.scatter(pts[m, 0], pts[m, 1], marker=marker, s=28, zorder=3,
                               color=LABEL_COLORS.get(lab, "#7f7f7f"), label=f"{lab} ({kind}, {m.sum()})")
        if ok.any() or p.get("traj_label") or len(model):
            ax.legend(fontsize=7)
        if not ok.any() and not len(traj):
            _empty(ax, "no fixed points")
        elif not ok.any():
            ax.text(0.5, 0.95, "no fixed points found", ha="center", va="top", transform=ax.transAxes, color="0.4")
        ax.set_title(p["title"], fontsize=9)
        ax.set_xlabel(p.get("xlabel", "PC1"))
        ax.set_ylabel(p.get("ylabel", "PC2"))
    return fig


def dynamics(spectra: dict[str, np.ndarray], lyap_per_s: np.ndarray, echo: tuple[np.ndarray, np.ndarray],
             grad: tuple[np.ndarray, np.ndarray], *, title: str) -> Figure:
    """Four diagnostics of one model: eigen-spectra with the unit circle, Lyapunov exponents, echo-state
    distance vs time and gradient norm vs lag (log scales).

    Examples
    --------
    >>> fig = dynamics({"Jacobian": np.array([0.5 + 0.1j])}, np.array([-1.0]),
    ...                (np.arange(3.0), np.ones(3)), (np.arange(3.0), np.ones(3)), title="rate")
    """
    fig = Figure(figsize=(13.0, 3.0), layout="constrained")
    ax_eig, ax_lyap, ax_echo, ax_grad = fig.subplots(1, 4)
    theta = np.linspace(0, 2 * np.pi, 200)
    ax_eig.plot(np.cos(theta), np.sin(theta), color="0.5", lw=0.8, ls="--", label="unit circle")
    for (name, ev), marker, color in zip(spectra.items(), ("o", "x", "+"), ("C0", "C3", "C2")):
        ev = np.asarray(ev)
        ev = ev[np.isfinite(ev)]
        style = {"facecolors": "none", "edgecolors": color} if marker == "o" else {"color": color}
        ax_eig.scatter(ev.real, ev.imag, s=16 if marker == "o" else 14, marker=marker, label=name, **style)
    ax_eig.set_aspect("equal", adjustable="datalim")
    ax_eig.legend(fontsize=7, loc="best")
    ax_eig.set(xlabel="Re(λ)", ylabel="Im(λ)", title="eigenvalues")
    lyap = np.asarray(lyap_per_s, dtype=float)
    if np.isfinite(lyap).any():
        ax_lyap.bar(np.arange(1, len(lyap) + 1), np.nan_to_num(lyap), color="#4c72b0")
        ax_lyap.axhline(0, color="k", lw=0.8)
    else:
        _empty(ax_lyap)
    ax_lyap.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_lyap.set(xlabel="exponent index", ylabel="Lyapunov exponent (1/s)", title="Lyapunov spectrum")
    for ax, (x, y), ylabel, ttl in ((ax_echo, echo, "mean state distance", "echo state (same input)"),
                                    (ax_grad, grad, "gradient norm ||∂s(t+L)/∂s(t)||", "gradient vs lag")):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
        if ok.any():
            ax.semilogy(x[ok] * 1000, y[ok], color="#4c72b0")
        else:
            _empty(ax)
        ax.set(xlabel="time lag (ms)" if ax is ax_grad else "time (ms)", ylabel=ylabel, title=ttl)
    fig.suptitle(title, fontsize=10)
    return fig
