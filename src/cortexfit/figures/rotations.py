"""Figure ``rotations``: rotational dynamics in motor cortex found by jPCA (Churchland et al. 2012).

Condition-averaged rates around movement onset (the shared ``churchland2012_jpca_tensor.mat``: 61 times x
50 neurons x 10 reach conditions, window -50..350 ms) go through the project's
:func:`cortexfit.analysis.jpca.jpca`: cross-condition mean removed, 6 PCs, ``dX/dt = M X`` fitted with ``M``
skew-symmetric (pure rotation) and unconstrained.  Rotation explains most of what any linear dynamics
explains (``R2_skew / R2_full`` close to 1) and is concentrated in one plane, where the conditions rotate
the same way.  Without the shared file a simulated rotational population (two rotating planes embedded in
50 noisy neurons) stands in.

Examples
--------
>>> import tempfile, pathlib
>>> make(pathlib.Path(tempfile.mkdtemp()), quick=True).passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cortexfit.figures._common import (
    FigureResult,
    numeric_check,
    render,
    seeded,
    shared_data_dir,
)

LAYOUT = (1, 3, 14.0, 4.2)
NAME = "rotations"
TITLE = "jPCA: rotational dynamics of motor cortex around movement onset (Churchland et al. 2012)"
SHARED_FILE = "churchland2012_jpca_tensor.mat"
WINDOW_MS = (-50.0, 350.0)
N_SHUFFLES = 20


def simulated_rotations(rng: np.random.Generator, *, n_cond: int = 10, n_neurons: int = 50, dt: float = 0.01):
    """A (condition, time, neuron) tensor of two rotating planes (1.5 and 0.6 Hz) in noisy neurons.

    Examples
    --------
    >>> data, t = simulated_rotations(np.random.default_rng(0))
    >>> data.shape, float(t[0]), float(t[-1])
    ((10, 41, 50), -50.0, 350.0)
    """
    t_ms = np.arange(WINDOW_MS[0], WINDOW_MS[1] + 1e-9, dt * 1e3)
    ts = (t_ms - t_ms[0]) / 1e3
    phase = rng.uniform(0, 2 * np.pi, n_cond)[:, None]
    amp = rng.uniform(0.6, 1.2, n_cond)[:, None]
    growth = 1 - np.exp(-ts / 0.08)[None]
    lat = np.stack([
        amp * growth * np.cos(2 * np.pi * 1.5 * ts + phase), amp * growth * np.sin(2 * np.pi * 1.5 * ts + phase),
        0.4 * amp * np.cos(2 * np.pi * 0.6 * ts + 2 * phase), 0.4 * amp * np.sin(2 * np.pi * 0.6 * ts + 2 * phase),
    ], axis=-1)
    embed = np.linalg.qr(rng.standard_normal((n_neurons, 4)))[0].T
    common = np.sin(np.pi * ts / ts[-1])[None, :, None] * rng.uniform(0, 1, n_neurons)
    data = lat @ embed + common + 0.02 * rng.standard_normal((n_cond, len(ts), n_neurons))
    return data, t_ms


def load_data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """(condition, time, neuron) rates in the window, times in ms, and where they came from."""
    path = shared_data_dir() / SHARED_FILE
    if path.is_file():
        from scipy.io import loadmat

        mat = loadmat(path)
        t = np.asarray(mat["t"], float).ravel()
        sel = (t >= WINDOW_MS[0]) & (t <= WINDOW_MS[1])
        return np.transpose(np.asarray(mat["dataTensor"], float)[sel], (2, 0, 1)), t[sel], str(path)
    data, t = simulated_rotations(rng)
    return data, t, f"simulated rotational population ({path} absent)"


def random_walks(shape: tuple[int, int, int], rng: np.random.Generator, *, sigma_bins: float = 3.0) -> np.ndarray:
    """Smoothed Gaussian random walks (condition, time, neuron): smooth, but with no rotational structure.

    Examples
    --------
    >>> random_walks((2, 41, 5), np.random.default_rng(0)).shape
    (2, 41, 5)
    """
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(np.cumsum(rng.standard_normal(shape), axis=1), sigma_bins, axis=1)


def condition_shuffle(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each neuron's conditions permuted independently: single-neuron responses kept, population structure lost.

    Examples
    --------
    >>> d = np.arange(24.0).reshape(3, 4, 2)
    >>> bool(np.allclose(np.sort(condition_shuffle(d, np.random.default_rng(0))[:, 0, 0]), d[:, 0, 0]))
    True
    """
    out = np.empty_like(data)
    for n in range(data.shape[2]):
        out[:, :, n] = data[rng.permutation(data.shape[0]), :, n]
    return out


@dataclass
class RotationsResult:
    """The data, the jPCA fit (:class:`cortexfit.analysis.jpca` result) and the rotation statistics."""

    seed: int
    data: np.ndarray
    t_ms: np.ndarray
    source: str
    dt: float
    fit: Any
    share: float
    ccw: float
    shuffle_r2_skew: np.ndarray

    @property
    def proj(self) -> np.ndarray:
        """(condition, time, 2) projections in the top jPC plane."""
        return self.fit.projections[:, :, 0, :]


def ccw_fraction(proj: np.ndarray) -> float:
    """Share of (condition, time) steps whose in-plane velocity turns counter-clockwise.

    Examples
    --------
    >>> t = np.linspace(0, 3, 30)
    >>> ccw_fraction(np.stack([np.cos(t), np.sin(t)], -1)[None])
    1.0
    """
    vel = np.diff(proj, axis=1)
    mid = 0.5 * (proj[:, 1:] + proj[:, :-1])
    cross = mid[..., 0] * vel[..., 1] - mid[..., 1] * vel[..., 0]
    return float(np.mean(cross > 0))


def compute(*, quick: bool, seed: int = 0, data: str = "recorded", n_shuffles: int = N_SHUFFLES) -> RotationsResult:
    """jPCA of the (shared or simulated) population and of ``n_shuffles`` condition-shuffled controls.

    Quick and full are the same (jPCA is cheap).  ``data="random_walk"`` replaces the population by
    smoothed random walks of the same shape: the broken control, whose checks must fail.
    """
    from cortexfit.analysis.jpca import jpca

    with seeded(seed) as rng:
        rates, t_ms, source = load_data(rng)
    if data == "random_walk":
        rates, source = random_walks(rates.shape, np.random.default_rng(seed)), "smoothed random walks (control)"
    dt = float(np.median(np.diff(t_ms))) / 1e3
    res = jpca(rates, dt=dt, n_pcs=6)
    omega2 = (2 * np.pi * res.frequencies_hz) ** 2
    share = float(omega2[0] / omega2.sum())
    ccw = ccw_fraction(res.projections[:, :, 0, :])
    shuffle_rng = np.random.default_rng(10_000 + seed)
    shuffled = np.array([jpca(condition_shuffle(rates, shuffle_rng), dt=dt, n_pcs=6).r2_skew for _ in range(n_shuffles)])
    return RotationsResult(seed=seed, data=rates, t_ms=t_ms, source=source, dt=dt, fit=res, share=share, ccw=ccw,
                           shuffle_r2_skew=shuffled)


def check(r: RotationsResult) -> list[dict]:
    """The numeric checks of the figure."""
    return [
        numeric_check("r2_skew_over_shuffle_p95", r.fit.r2_skew / float(np.percentile(r.shuffle_r2_skew, 95)), lo=1.5,
                      description=f"R2 of the rotational fit of dX/dt / 95th percentile of the same R2 over "
                                  f"{len(r.shuffle_r2_skew)} condition-shuffled controls (each neuron's conditions "
                                  "permuted: rotations are a population property)"),
        numeric_check("r2_skew_over_full", r.fit.r2_ratio, lo=0.7,
                      description="R2 of the rotational (skew) fit / R2 of the unconstrained linear fit of dX/dt"),
        numeric_check("top_plane_rotation_share", r.share, lo=0.5,
                      description="fraction of the rotation strength (omega^2) in the top jPC plane "
                                  "(a clear top plane)"),
        numeric_check("top_plane_ccw_fraction", r.ccw, lo=0.7,
                      description="conditions rotate the same way in the top plane "
                                  "(fraction of counter-clockwise steps)"),
    ]


def record(r: RotationsResult) -> FigureResult:
    """The JSON record (params, values, notes and checks) of a result."""
    res = r.fit
    return FigureResult(
        name=NAME,
        title=TITLE,
        params={"data": r.source, "window_ms": WINDOW_MS, "bin_s": r.dt, "n_pcs": 6, "soft_norm": None,
                "method": "cortexfit.analysis.jpca.jpca (midpoint derivative, skew fit in k(k-1)/2 parameters)",
                "seed": r.seed},
        values={"shape_condition_time_neuron": r.data.shape, "r2_skew": res.r2_skew, "r2_full": res.r2_full,
                "r2_ratio": res.r2_ratio, "frequencies_hz": res.frequencies_hz,
                "full_frequencies_hz": res.full_frequencies_hz, "plane_variance_fraction": res.plane_variance_fraction,
                "top_plane_rotation_share": r.share, "top_plane_ccw_fraction": r.ccw,
                "pc_variance_explained": res.pc_variance_explained,
                "shuffle_r2_skew": r.shuffle_r2_skew},
        notes=["top_plane_rotation_share = omega_1^2 / sum_k omega_k^2 over the jPC planes",
               "ccw fraction: share of (condition, time) samples whose in-plane velocity turns counter-clockwise",
               "control: smoothed random walks have R2_skew ~1x the condition-shuffled p95 (threshold 1.5x); "
               "the recorded data ~2.6x"],
        checks=check(r),
    )


def _plot_plane(ax, r: RotationsResult) -> None:
    """Trajectories in the top jPC plane, coloured by their starting point."""
    proj = r.proj
    cmap = __import__("matplotlib").colormaps["RdYlGn_r"]
    order = np.argsort(np.argsort(proj[:, 0, 0]))
    for c in range(proj.shape[0]):
        col = cmap(order[c] / max(1, proj.shape[0] - 1))
        ax.plot(proj[c, :, 0], proj[c, :, 1], color=col, lw=1.3)
        ax.plot(proj[c, 0, 0], proj[c, 0, 1], "o", color=col, ms=4)
        ax.annotate("", xy=proj[c, -1], xytext=proj[c, -2],
                    arrowprops={"arrowstyle": "->", "color": col, "lw": 1.3})
    ax.set(xlabel="jPC 1 (a.u.)", ylabel="jPC 2 (a.u.)", aspect="equal",
           title=f"top jPC plane: {r.fit.frequencies_hz[0]:.2f} Hz, {r.ccw:.0%} ccw")


def plot(r: RotationsResult, fig, axes) -> None:
    """Three neurons' rates, the top jPC plane, and rotation frequency per plane."""
    data, res = r.data, r.fit
    ax = axes[0]
    var = data.var(axis=(0, 1))
    for k, n in enumerate(np.argsort(var)[::-1][:3]):
        for c in range(data.shape[0]):
            ax.plot(r.t_ms, data[c, :, n] + 0.6 * k * np.ptp(data[:, :, n]), color=f"C{k}", lw=0.7, alpha=0.8)
    ax.axvline(0, color="0.5", ls=":", lw=1)
    ax.set(xlabel="time from movement onset (ms)", ylabel="normalised rate (a.u., offset per neuron)",
           title="3 neurons, 10 conditions each")
    _plot_plane(axes[1], r)
    ax = axes[2]
    planes = np.arange(1, len(res.frequencies_hz) + 1)
    ax.bar(planes, res.frequencies_hz, 0.6, color=["C3"] + ["0.6"] * (len(planes) - 1))
    for p, f, v in zip(planes, res.frequencies_hz, res.plane_variance_fraction):
        ax.text(p, f + 0.02, f"{f:.2f} Hz\n{v:.0%} of variance", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(planes, [f"jPC plane {p}" for p in planes])
    ax.set(ylabel="rotation frequency (Hz)", ylim=(0, 1.35 * max(res.frequencies_hz.max(), 1e-3)),
           title=f"R2 of dX/dt: skew {res.r2_skew:.2f} / full {res.r2_full:.2f} = {res.r2_ratio:.2f}")


def make(out_dir: Path, *, quick: bool, seed: int = 0) -> FigureResult:
    """compute -> check -> plot; writes ``rotations.png`` and ``rotations.json`` and returns the record."""
    r = compute(quick=quick, seed=seed)
    return render(out_dir, record(r), lambda fig, axes: plot(r, fig, axes), layout=LAYOUT, quick=quick, seed=seed)
