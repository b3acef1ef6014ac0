"""Figure ``dale``: eigenvalue spectra of excitatory/inhibitory networks (Rajan & Abbott 2006).

Setup (Rajan & Abbott, PRL 97, 188104): N units, a fraction ``f`` excitatory.  Entries of excitatory
columns have mean ``mu_E / sqrt(N)`` and variance ``sigma_E^2 / N``; inhibitory columns mean ``mu_I / sqrt(N)``
and variance ``sigma_I^2 / N``, with ``f mu_E + (1 - f) mu_I = 0``.  Imposing the balance condition on
every row (each row sums to zero) removes the outliers that the non-normal mean structure otherwise
produces, and the eigenvalues fill a disk of radius

    r = sqrt(f sigma_E^2 + (1 - f) sigma_I^2)

(in the paper's units ``sigma_I = 1``, ``sigma_E^2 = alpha``: ``r = sqrt(1 + f (alpha - 1))``).  Entries here
obey Dale's law strictly (gamma-distributed magnitudes, E columns >= 0, I columns <= 0), and the row balance
rescales each row's inhibitory weights.  The matrix is loaded into the project's ``rate`` model with
``dale=True`` (``W = |weight_hh| * sign``) and read back with ``recurrent_weight()``.  Adding a rank-one
structure ``m n^T / N`` (the model's ``rank=1`` option, ``W = g chi + m n^T / N`` with ``chi`` the Dale matrix,
``g = 1``) puts one outlier at ``n . m / N`` outside the bulk.

Examples
--------
>>> import tempfile, pathlib
>>> make(pathlib.Path(tempfile.mkdtemp()), quick=True).passed  # doctest: +SKIP
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from cortexfit.figures._common import FigureResult, numeric_check, render, seeded

if TYPE_CHECKING:
    from cortexfit.models.rate import RateDynamics

LAYOUT = (1, 4, 16.0, 4.1)
NAME = "dale"
TITLE = "E/I (Dale) network spectra: Rajan-Abbott radius and a rank-one outlier"
F_EXC, MU_E, SIGMA_E, SIGMA_I = 0.8, 1.0, 0.5, 1.5
MU_I = -F_EXC * MU_E / (1.0 - F_EXC)


def dale_magnitudes(n: int, n_exc: int, rng: np.random.Generator, *, balance: bool) -> np.ndarray:
    """(n, n) non-negative magnitudes |W|: gamma entries with the module's means and variances.

    With ``balance`` each row's inhibitory magnitudes are rescaled so that the signed row sums to zero.

    Examples
    --------
    >>> a = dale_magnitudes(50, 40, np.random.default_rng(0), balance=True)
    >>> bool(np.allclose(a[:, :40].sum(1), a[:, 40:].sum(1)))
    True
    """

    def gamma(mean: float, sd: float, shape: tuple[int, int]) -> np.ndarray:
        k = (mean / sd) ** 2
        return rng.gamma(k, sd**2 / mean, size=shape)

    root = math.sqrt(n)
    mag = np.empty((n, n))
    mag[:, :n_exc] = gamma(MU_E / root, SIGMA_E / root, (n, n_exc))
    mag[:, n_exc:] = gamma(abs(MU_I) / root, SIGMA_I / root, (n, n - n_exc))
    if balance:
        mag[:, n_exc:] *= (mag[:, :n_exc].sum(1) / mag[:, n_exc:].sum(1))[:, None]
    return mag


def _dale_model(mag: np.ndarray, n_exc: int):
    """The project's rate model with ``dale=True`` holding ``W = mag * sign``."""
    import torch

    from cortexfit.models import build_dynamics

    n = len(mag)
    net = cast("RateDynamics", build_dynamics("rate", input_size=1, hidden_size=n, dale=True, frac_exc=n_exc / n)).double()
    with torch.no_grad():
        net.weight_hh.copy_(torch.from_numpy(mag))
        net.col_scale.copy_(net.sign)  # exact +-1 column signs: no extra scaling
    return net


def _low_rank_model(chi: np.ndarray, m: np.ndarray, nvec: np.ndarray):
    """The project's rate model with ``rank=1``: ``W = 1 * chi + m n^T / N``."""
    import torch

    from cortexfit.models import build_dynamics

    n = len(chi)
    net = cast("RateDynamics", build_dynamics("rate", input_size=1, hidden_size=n, rank=1, g=1.0)).double()
    with torch.no_grad():
        net.chi.copy_(torch.from_numpy(chi))
        net.m.copy_(torch.from_numpy(m[:, None]))
        net.n.copy_(torch.from_numpy(nvec[:, None]))
    return net


@dataclass
class DaleResult:
    """The balanced / unbalanced / rank-one matrices, their spectra and the radius of repeated matrices."""

    quick: bool
    seed: int
    n: int
    n_exc: int
    W: np.ndarray
    ev_unb: np.ndarray
    ev: np.ndarray
    ev_low: np.ndarray
    radii: list[float]
    predicted: float

    @property
    def radius(self) -> float:
        """Rajan-Abbott radius for the realised excitatory fraction."""
        f = self.n_exc / self.n
        return math.sqrt(f * SIGMA_E**2 + (1 - f) * SIGMA_I**2)

    @property
    def outlier(self) -> complex:
        return complex(self.ev_low[int(np.argmax(self.ev_low.real))])

    @property
    def rest(self) -> np.ndarray:
        return np.delete(self.ev_low, int(np.argmax(self.ev_low.real)))


def _rank_one(n: int, target: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """m, n orthogonal to the all-ones vector (so W 1 = 0 still holds) with overlap n.m/N = ``target``."""
    ones = np.ones(n) / math.sqrt(n)
    m = rng.standard_normal(n)
    z = rng.standard_normal(n)
    m -= ones * (ones @ m)
    z -= ones * (ones @ z) + m * (m @ z) / (m @ m)
    return m, target * n * m / (m @ m) + 0.5 * z


def compute(*, quick: bool, seed: int = 0, rank_one_overlap: float = 3.0) -> DaleResult:
    """Spectra of unbalanced, balanced and balanced + rank-one Dale matrices (the project's rate model).

    ``rank_one_overlap`` is n.m/N, where the outlier should sit; 0 is the broken control without an outlier.
    """
    n, n_rep = (400, 2) if quick else (1000, 3)
    n_exc = round(F_EXC * n)
    with seeded(seed) as rng:
        W_unb = _dale_model(dale_magnitudes(n, n_exc, rng, balance=False), n_exc).recurrent_weight().detach().numpy()
        W = _dale_model(dale_magnitudes(n, n_exc, rng, balance=True), n_exc).recurrent_weight().detach().numpy()
        m, nvec = _rank_one(n, rank_one_overlap, rng)
        W_low = _low_rank_model(W, m, nvec).recurrent_weight().detach().numpy()
        extra = [_dale_model(dale_magnitudes(n, n_exc, rng, balance=True), n_exc) for _ in range(n_rep - 1)]
        radii_rep = [float(np.abs(np.linalg.eigvals(x.recurrent_weight().detach().numpy())).max()) for x in extra]
    ev = np.linalg.eigvals(W)
    return DaleResult(quick=quick, seed=seed, n=n, n_exc=n_exc, W=W, ev_unb=np.linalg.eigvals(W_unb), ev=ev,
                      ev_low=np.linalg.eigvals(W_low), radii=[float(np.abs(ev).max()), *radii_rep],
                      predicted=float(nvec @ m / n))


def check(r: DaleResult) -> list[dict]:
    """The numeric checks of the figure."""
    radius_tol, outlier_tol = (0.10, 0.05) if r.quick else (0.05, 0.02)
    W, n_exc = r.W, r.n_exc
    signs_ok = bool((W[:, :n_exc] >= 0).all() and (W[:, n_exc:] <= 0).all())
    return [
        numeric_check("radius_ratio", float(np.mean(r.radii)) / r.radius, lo=1 - radius_tol, hi=1 + radius_tol,
                      description=f"bulk radius / Rajan-Abbott formula ({r.radius:.4f}), balanced Dale matrices, "
                                  f"N = {r.n}"),
        numeric_check("outlier_rel_error", abs(r.outlier - r.predicted) / max(abs(r.predicted), 1e-12),
                      hi=outlier_tol, description=f"|outlier - n.m/N| / (n.m/N), predicted {r.predicted:.3f}"),
        numeric_check("outlier_over_bulk_radius", r.outlier.real / float(np.abs(r.rest).max()), lo=1.5,
                      description="real part of the rightmost eigenvalue / radius of the rest of the spectrum "
                                  "(a separated outlier; without the rank-one term it is ~1)"),
        numeric_check("dale_sign_violations", 0.0 if signs_ok else 1.0, hi=0.0,
                      description="1 if any E column entry < 0 or I column entry > 0 in recurrent_weight(), else 0"),
        numeric_check("max_abs_row_sum", float(np.abs(W.sum(1)).max()), hi=1e-9,
                      description="balance: largest |row sum| of the balanced W"),
    ]


def record(r: DaleResult) -> FigureResult:
    """The JSON record (params, values, notes and checks) of a result."""
    outlier = r.outlier
    return FigureResult(
        name=NAME,
        title=TITLE,
        params={"N": r.n, "f_exc": r.n_exc / r.n, "mu_E": MU_E, "mu_I": MU_I, "sigma_E": SIGMA_E, "sigma_I": SIGMA_I,
                "entries": "gamma magnitudes, mean mu/sqrt(N), variance sigma^2/N; E columns >= 0, I columns <= 0",
                "balance": "each row's inhibitory weights rescaled so that the row sums to 0",
                "radius_formula": "r = sqrt(f sigma_E^2 + (1 - f) sigma_I^2)  [Rajan & Abbott 2006: "
                                  "sqrt(1 + f (alpha - 1)) with sigma_I = 1, alpha = sigma_E^2]",
                "rank_one": "W + m n^T / N with m, n orthogonal to 1; predicted outlier n.m/N",
                "models": "cortexfit.models rate (dale=True; rank=1, g=1)", "seed": r.seed},
        values={"radius_formula": r.radius, "radius_measured": float(np.mean(r.radii)), "radius_per_matrix": r.radii,
                "outlier_predicted": r.predicted,
                "outlier_measured": [outlier.real, outlier.imag],
                "bulk_radius_with_rank_one": float(np.abs(r.rest).max()),
                "max_abs_eig_unbalanced": float(np.abs(r.ev_unb).max())},
        notes=[(f"measured radius = largest |eigenvalue| of a balanced matrix, mean over {len(r.radii)} independent "
                "matrices (finite N overshoots the edge by ~2%)")],
        checks=check(r),
    )


def _plot_matrix(fig, ax, r: DaleResult) -> None:
    """A block of W sqrt(N) around the E | I boundary."""
    n, n_exc, W = r.n, r.n_exc, r.W
    k = min(n, 100)
    idx = np.r_[np.arange(n_exc - int(0.8 * k), n_exc), np.arange(n_exc, n_exc + k - int(0.8 * k))]
    lim = np.abs(W[np.ix_(idx[:40], idx)]).max()
    img = ax.imshow(W[np.ix_(idx[:40], idx)] * math.sqrt(n), cmap="RdBu_r", vmin=-lim * math.sqrt(n),
                    vmax=lim * math.sqrt(n), aspect="auto", interpolation="nearest")
    ax.axvline(int(0.8 * k) - 0.5, color="k", lw=1)
    ax.set(xlabel=f"presynaptic unit ({int(0.8 * k)} E | {k - int(0.8 * k)} I shown)",
           ylabel="postsynaptic unit (40 shown)", title="W sqrt(N): E columns > 0, I columns < 0")
    fig.colorbar(img, ax=ax, label="weight x sqrt(N)")


def plot(r: DaleResult, fig, axes) -> None:
    """The matrix, the unbalanced and balanced spectra, and the rank-one outlier."""
    radius, outlier, rest, predicted = r.radius, r.outlier, r.rest, r.predicted
    _plot_matrix(fig, axes[0], r)
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 200)) * radius
    for ax, vals, title in (
        (axes[1], r.ev_unb, "no row balance: outliers escape"),
        (axes[2], r.ev, f"rows balanced: r = {r.radii[0]:.3f} (formula {radius:.3f})"),
    ):
        ax.plot(vals.real, vals.imag, ".", ms=2, color="C0", label="eigenvalues")
        ax.plot(circle.real, circle.imag, "r-", lw=1.2, label="Rajan-Abbott radius")
        ax.set(xlabel="Re(lambda)", ylabel="Im(lambda)", title=title, aspect="equal")
        ax.legend(loc="upper right", fontsize=7)
    lim = 1.6 * max(radius, abs(r.ev_unb).max())
    axes[1].set(xlim=(-lim, lim), ylim=(-lim, lim))
    axes[2].set(xlim=(-1.4 * radius, 1.4 * radius), ylim=(-1.4 * radius, 1.4 * radius))
    ax = axes[3]
    ax.plot(rest.real, rest.imag, ".", ms=2, color="C0", label="bulk")
    ax.plot(circle.real, circle.imag, "r-", lw=1.2, label="Rajan-Abbott radius")
    ax.plot([outlier.real], [outlier.imag], "o", color="C1", ms=7, label=f"outlier {outlier.real:.3f}")
    ax.plot([predicted], [0], "kx", ms=9, mew=2, label=f"n.m/N = {predicted:.3f}")
    ax.set(xlabel="Re(lambda)", ylabel="Im(lambda)", title="+ rank one m n^T / N", aspect="equal",
           xlim=(-1.3 * radius, max(1.3 * radius, 1.15 * predicted)), ylim=(-1.3 * radius, 1.3 * radius))
    ax.legend(loc="upper left", fontsize=7)


def make(out_dir: Path, *, quick: bool, seed: int = 0) -> FigureResult:
    """compute -> check -> plot; writes ``dale.png`` and ``dale.json`` and returns the record."""
    r = compute(quick=quick, seed=seed)
    return render(out_dir, record(r), lambda fig, axes: plot(r, fig, axes), layout=LAYOUT, quick=quick, seed=seed)
