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
from pathlib import Path

import numpy as np

from cortexfit.figures._common import FigureResult, check, figure, save_figure, seeded

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
    net = build_dynamics("rate", input_size=1, hidden_size=n, dale=True, frac_exc=n_exc / n).double()
    with torch.no_grad():
        net.weight_hh.copy_(torch.from_numpy(mag))
        net.col_scale.copy_(net.sign)  # exact +-1 column signs: no extra scaling
    return net


def _low_rank_model(chi: np.ndarray, m: np.ndarray, nvec: np.ndarray):
    """The project's rate model with ``rank=1``: ``W = 1 * chi + m n^T / N``."""
    import torch

    from cortexfit.models import build_dynamics

    n = len(chi)
    net = build_dynamics("rate", input_size=1, hidden_size=n, rank=1, g=1.0).double()
    with torch.no_grad():
        net.chi.copy_(torch.from_numpy(chi))
        net.m.copy_(torch.from_numpy(m[:, None]))
        net.n.copy_(torch.from_numpy(nvec[:, None]))
    return net


def make(out_dir: Path, *, quick: bool, seed: int = 0) -> FigureResult:
    """Build the figure; returns the written :class:`FigureResult`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> r = make(pathlib.Path(tempfile.mkdtemp()), quick=True)  # doctest: +SKIP
    >>> r.values["radius_formula"]  # doctest: +SKIP
    0.806225774829855
    """
    n, n_rep = (400, 2) if quick else (1000, 3)
    n_exc = round(F_EXC * n)
    radius_tol, outlier_tol = (0.10, 0.05) if quick else (0.05, 0.02)
    target_outlier = 3.0
    with seeded(seed) as rng:
        unbalanced = _dale_model(dale_magnitudes(n, n_exc, rng, balance=False), n_exc)
        balanced = _dale_model(dale_magnitudes(n, n_exc, rng, balance=True), n_exc)
        W_unb = unbalanced.recurrent_weight().detach().numpy()
        W = balanced.recurrent_weight().detach().numpy()
        # rank-one structure: m, n orthogonal to the all-ones vector (W 1 = 0), overlap n.m/N = target
        ones = np.ones(n) / math.sqrt(n)
        m = rng.standard_normal(n)
        z = rng.standard_normal(n)
        m -= ones * (ones @ m)
        z -= ones * (ones @ z) + m * (m @ z) / (m @ m)
        nvec = target_outlier * n * m / (m @ m) + 0.5 * z
        W_low = _low_rank_model(W, m, nvec).recurrent_weight().detach().numpy()
        extra = [_dale_model(dale_magnitudes(n, n_exc, rng, balance=True), n_exc) for _ in range(n_rep - 1)]
        radii_rep = [float(np.abs(np.linalg.eigvals(x.recurrent_weight().detach().numpy())).max()) for x in extra]
    ev_unb = np.linalg.eigvals(W_unb)
    ev = np.linalg.eigvals(W)
    ev_low = np.linalg.eigvals(W_low)
    f_emp = n_exc / n
    radius = math.sqrt(f_emp * SIGMA_E**2 + (1 - f_emp) * SIGMA_I**2)
    radii_rep = [float(np.abs(ev).max()), *radii_rep]
    bulk_radius = float(np.mean(radii_rep))
    predicted = float(nvec @ m / n)
    i_out = int(np.argmax(ev_low.real))
    outlier = complex(ev_low[i_out])
    rest = np.delete(ev_low, i_out)
    signs_ok = bool((W[:, :n_exc] >= 0).all() and (W[:, n_exc:] <= 0).all())
    row_sum = float(np.abs(W.sum(1)).max())

    result = FigureResult(
        name=NAME,
        title=TITLE,
        params={"N": n, "f_exc": f_emp, "mu_E": MU_E, "mu_I": MU_I, "sigma_E": SIGMA_E, "sigma_I": SIGMA_I,
                "entries": "gamma magnitudes, mean mu/sqrt(N), variance sigma^2/N; E columns >= 0, I columns <= 0",
                "balance": "each row's inhibitory weights rescaled so that the row sums to 0",
                "radius_formula": "r = sqrt(f sigma_E^2 + (1 - f) sigma_I^2)  [Rajan & Abbott 2006: "
                                  "sqrt(1 + f (alpha - 1)) with sigma_I = 1, alpha = sigma_E^2]",
                "rank_one": "W + m n^T / N with m, n orthogonal to 1; predicted outlier n.m/N",
                "models": "cortexfit.models rate (dale=True; rank=1, g=1)", "seed": seed},
        values={"radius_formula": radius, "radius_measured": bulk_radius, "radius_per_matrix": radii_rep,
                "outlier_predicted": predicted,
                "outlier_measured": [outlier.real, outlier.imag],
                "bulk_radius_with_rank_one": float(np.abs(rest).max()),
                "max_abs_eig_unbalanced": float(np.abs(ev_unb).max())},
        notes=[(f"measured radius = largest |eigenvalue| of a balanced matrix, mean over {n_rep} independent "
                "matrices (finite N overshoots the edge by ~2%)")],
    )
    result.checks = [
        check("radius_ratio", bulk_radius / radius, lo=1 - radius_tol, hi=1 + radius_tol,
              description=f"bulk radius / Rajan-Abbott formula ({radius:.4f}), balanced Dale matrices, N = {n}"),
        check("outlier_rel_error", abs(outlier - predicted) / abs(predicted), hi=outlier_tol,
              description=f"|outlier - n.m/N| / (n.m/N), predicted {predicted:.3f}"),
        check("dale_sign_violations", 0.0 if signs_ok else 1.0, hi=0.0,
              description="1 if any E column entry < 0 or I column entry > 0 in recurrent_weight(), else 0"),
        check("max_abs_row_sum", row_sum, hi=1e-9, description="balance: largest |row sum| of the balanced W"),
    ]

    with figure(1, 4, width=16, height=4.1) as (fig, axes):
        ax = axes[0]
        k = min(n, 100)
        idx = np.r_[np.arange(n_exc - int(0.8 * k), n_exc), np.arange(n_exc, n_exc + k - int(0.8 * k))]
        lim = np.abs(W[np.ix_(idx[:40], idx)]).max()
        img = ax.imshow(W[np.ix_(idx[:40], idx)] * math.sqrt(n), cmap="RdBu_r", vmin=-lim * math.sqrt(n),
                        vmax=lim * math.sqrt(n), aspect="auto", interpolation="nearest")
        ax.axvline(int(0.8 * k) - 0.5, color="k", lw=1)
        ax.set(xlabel=f"presynaptic unit ({int(0.8 * k)} E | {k - int(0.8 * k)} I shown)",
               ylabel="postsynaptic unit (40 shown)", title="W sqrt(N): E columns > 0, I columns < 0")
        fig.colorbar(img, ax=ax, label="weight x sqrt(N)")
        circle = np.exp(1j * np.linspace(0, 2 * np.pi, 200)) * radius
        for ax, vals, title in (
            (axes[1], ev_unb, "no row balance: outliers escape"),
            (axes[2], ev, f"rows balanced: r = {radii_rep[0]:.3f} (formula {radius:.3f})"),
        ):
            ax.plot(vals.real, vals.imag, ".", ms=2, color="C0", label="eigenvalues")
            ax.plot(circle.real, circle.imag, "r-", lw=1.2, label="Rajan-Abbott radius")
            ax.set(xlabel="Re(lambda)", ylabel="Im(lambda)", title=title, aspect="equal")
            ax.legend(loc="upper right", fontsize=7)
        lim = 1.6 * max(radius, abs(ev_unb).max())
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
        return save_figure(fig, out_dir, result, quick=quick, seed=seed)
