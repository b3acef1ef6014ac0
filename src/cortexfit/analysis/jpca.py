"""jPCA: rotational structure of condition-averaged population trajectories (Churchland et al. 2012).

Written from the method's mathematics.  For condition-averaged data ``(condition, time, neuron)``:

1. optional soft normalisation, ``rate / (range + soft_norm)`` per neuron;
2. subtraction of the cross-condition mean at every time point;
3. projection onto the top ``k`` principal components, giving ``X`` ``(condition, time, k)``;
4. a least-squares fit of the linear dynamics ``dX/dt = M X`` with ``M`` skew-symmetric (solved directly in
   the ``k(k-1)/2`` free parameters) and, for comparison, with ``M`` unconstrained.  The derivative is the
   finite difference between consecutive bins divided by the bin width and ``X`` is the midpoint of the two
   bins, so a pure rotation of frequency ``f`` is recovered without the ``O(dt)`` bias of a forward
   difference;
5. the jPC planes: the real Schur decomposition of the skew matrix is block diagonal with 2x2 blocks
   ``[[0, w], [-w, 0]]``; each block's two Schur vectors span one plane, rotating at ``|w| / 2 pi`` Hz.
   Planes are ordered by ``|w|``, oriented so that the rotation is counter-clockwise, and turned within the
   plane so that the first axis follows the largest spread of the conditions' initial states.

All functions take plain numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import schur
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from cortexfit.core.errors import AnalysisError

__all__ = ["JPCAResult", "fit_linear", "fit_skew_symmetric", "jpca", "r_squared", "skew_basis"]


@dataclass(frozen=True)
class JPCAResult:
    """What :func:`jpca` found.  ``k`` = number of PCs, ``P`` = ``k // 2`` planes.

    Attributes
    ----------
    pcs : (neuron, k) orthonormal principal axes of the preprocessed data.
    pc_variance_explained : (k,) fraction of the data variance along each PC.
    m_skew, m_full : (k, k) fitted dynamics matrices (units 1/s when ``dt`` is in s).
    r2_skew, r2_full : fraction of the variance of ``dX/dt`` explained by each fit.
    frequencies_hz : (P,) rotation frequency of each plane.
    full_frequencies_hz : (P,) ``|imag eigenvalue| / 2 pi`` of ``m_full``, one per complex pair, largest
        first (zeros pad).  Unlike the skew fit, these do not depend on the embedding being orthogonal.
    planes : (P, k, 2) orthonormal basis of each jPC plane in PC coordinates.
    plane_variance_fraction : (P,) fraction of the total (cross-condition-mean-subtracted) data variance
        captured by each plane.
    projections : (condition, time, P, 2) every condition's trajectory in each plane.
    cc_mean : (time, neuron) the cross-condition mean that was subtracted.
    scale : (neuron,) soft-normalisation divisor (ones when not applied).
    """

    pcs: np.ndarray
    pc_variance_explained: np.ndarray
    m_skew: np.ndarray
    m_full: np.ndarray
    r2_skew: float
    r2_full: float
    frequencies_hz: np.ndarray
    full_frequencies_hz: np.ndarray
    planes: np.ndarray
    plane_variance_fraction: np.ndarray
    projections: np.ndarray
    cc_mean: np.ndarray
    scale: np.ndarray

    @property
    def neuron_planes(self) -> np.ndarray:
        """(P, neuron, 2) the jPC planes as orthonormal pairs of directions in neuron space."""
        return np.einsum("nk,pkj->pnj", self.pcs, self.planes)

    @property
    def r2_ratio(self) -> float:
        """``r2_skew / r2_full``: how much of the best linear fit the rotational fit captures."""
        return float(self.r2_skew / self.r2_full) if self.r2_full > 0 else float("nan")


def skew_basis(k: int) -> np.ndarray:
    """Basis of the ``k x k`` skew-symmetric matrices, shape ``(k(k-1)/2, k, k)``.

    Element ``p`` for the pair ``i < j`` has ``+1`` at ``[i, j]`` and ``-1`` at ``[j, i]``.

    Examples
    --------
    >>> skew_basis(3).shape
    (3, 3, 3)
    >>> bool(np.all(skew_basis(4) == -skew_basis(4).transpose(0, 2, 1)))
    True
    """
    i, j = np.triu_indices(k, 1)
    basis = np.zeros((len(i), k, k))
    basis[np.arange(len(i)), i, j] = 1.0
    basis[np.arange(len(i)), j, i] = -1.0
    return basis


def fit_skew_symmetric(x: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Least-squares skew-symmetric ``M`` for ``dx[n] = M @ x[n]`` (rows are samples).

    The problem is linear in the ``k(k-1)/2`` free entries of ``M``: ``dx = sum_p h_p x B_p^T``, so it is
    solved in those parameters directly with :func:`numpy.linalg.lstsq`.

    Parameters
    ----------
    x, dx : (n, k) states and their time derivatives.

    Returns
    -------
    (k, k) skew-symmetric matrix.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> m = np.array([[0.0, -2.0], [2.0, 0.0]])
    >>> x = rng.normal(size=(50, 2))
    >>> np.allclose(fit_skew_symmetric(x, x @ m.T), m)
    True
    """
    x = np.asarray(x, dtype=float)
    dx = np.asarray(dx, dtype=float)
    basis = skew_basis(x.shape[1])
    design = np.einsum("nk,pjk->njp", x, basis).reshape(-1, len(basis))  # column p: vec(x @ B_p.T)
    h, *_ = np.linalg.lstsq(design, dx.reshape(-1), rcond=None)
    return np.einsum("p,pij->ij", h, basis)


def fit_linear(x: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Unconstrained least-squares ``M`` for ``dx[n] = M @ x[n]``.

    Examples
    --------
    >>> m = np.array([[0.5, -2.0], [1.0, -0.1]])
    >>> x = np.random.default_rng(1).normal(size=(20, 2))
    >>> np.allclose(fit_linear(x, x @ m.T), m)
    True
    """
    mt, *_ = np.linalg.lstsq(np.asarray(x, float), np.asarray(dx, float), rcond=None)
    return mt.T


def r_squared(x: np.ndarray, dx: np.ndarray, m: np.ndarray) -> float:
    """Fraction of the variance of ``dx`` explained by ``x @ m.T`` (``1 - SSE / SS_tot``).

    Examples
    --------
    >>> x = np.eye(2)
    >>> r_squared(x, x, np.eye(2))
    1.0
    """
    dx = np.asarray(dx, float)
    resid = dx - np.asarray(x, float) @ np.asarray(m, float).T
    total = np.sum((dx - dx.mean(axis=0)) ** 2)
    return float(1.0 - np.sum(resid**2) / total) if total > 0 else float("nan")


def _oriented_planes(m_skew: np.ndarray, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Planes (P, k, 2) and angular velocities (P,) from the real Schur form of a skew matrix."""
    k = m_skew.shape[0]
    t, z = schur(m_skew, output="real")
    blocks = []
    i = 0
    while i < k:
        if i + 1 < k and abs(t[i + 1, i]) > 0:
            blocks.append((abs(t[i + 1, i]), i))
            i += 2
        else:
            i += 1
    # degenerate case (e.g. M = 0): take remaining Schur vectors pairwise with zero frequency
    used = {j for _, b in blocks for j in (b, b + 1)}
    rest = [j for j in range(k) if j not in used]
    planes, omegas = [], []
    for omega, b in sorted(blocks, key=lambda wb: -wb[0]):
        u, w = z[:, b].copy(), z[:, b + 1].copy()
        if u @ m_skew @ w > 0:  # want d(w-coord)/dt = +omega * u-coord: counter-clockwise
            w = -w
        planes.append(np.stack([u, w], axis=1))
        omegas.append(omega)
    for a, b in zip(rest[0::2], rest[1::2]):
        planes.append(z[:, [a, b]])
        omegas.append(0.0)
    planes_arr = np.array(planes[: k // 2]).reshape(-1, k, 2)
    for p, basis in enumerate(planes_arr):  # rotate within the plane: axis 1 along the initial states' spread
        y0 = x0 @ basis
        y0 = y0 - y0.mean(axis=0)
        _evals, evecs = np.linalg.eigh(y0.T @ y0)
        v = evecs[:, -1]
        c, s = v
        rot = np.array([[c, -s], [s, c]])  # a proper rotation keeps the counter-clockwise orientation
        planes_arr[p] = basis @ rot
    return planes_arr, np.array(omegas[: k // 2])


def _pair_frequencies(m: np.ndarray) -> np.ndarray:
    """``|imag|/2pi`` of the eigenvalues of ``m`` with positive imaginary part, largest first, (k//2,)."""
    imag = np.sort(np.linalg.eigvals(m).imag)[::-1]
    out = np.zeros(m.shape[0] // 2)
    pos = imag[imag > 1e-12][: len(out)]
    out[: len(pos)] = pos
    return out / (2 * np.pi)


@threadpool_limits.wrap(limits=1)  # small matrices: BLAS threads only add contention (40x slower)
def jpca(
    data: np.ndarray,
    *,
    dt: float,
    n_pcs: int = 6,
    soft_norm: float | None = None,
    subtract_cc_mean: bool = True,
) -> JPCAResult:
    """Run jPCA on condition-averaged data.

    Parameters
    ----------
    data : (condition, time, neuron) condition-averaged (smoothed) rates.
    dt : bin width in seconds (sets the units of ``M`` and the frequencies).
    n_pcs : number of principal components ``k`` to fit the dynamics in (Churchland: 6).
    soft_norm : if given, each neuron is divided by ``its range + soft_norm`` first (Churchland: 5 spikes/s).
    subtract_cc_mean : subtract the cross-condition mean at each time point (the standard choice).

    Returns
    -------
    JPCAResult

    Examples
    --------
    >>> t = np.arange(40) * 0.01
    >>> phase = np.linspace(0, 2 * np.pi, 8, endpoint=False)[:, None]
    >>> lat = np.stack([np.cos(2 * np.pi * 2 * t + phase), np.sin(2 * np.pi * 2 * t + phase)], -1)
    >>> embed = np.linalg.qr(np.random.default_rng(0).normal(size=(20, 2)))[0].T
    >>> res = jpca(lat @ embed, dt=0.01, n_pcs=2)
    >>> round(float(res.frequencies_hz[0]), 2), round(res.r2_skew, 3)
    (2.0, 1.0)
    """
    data = np.asarray(data, dtype=float)
    if data.ndim != 3:
        raise AnalysisError(f"jPCA needs (condition, time, neuron) data, got shape {data.shape}")
    n_cond, n_time, n_neuron = data.shape
    if not np.all(np.isfinite(data)):
        raise AnalysisError("jPCA data contain NaN or infinite values")
    if n_time < 3 or n_cond < 2:
        raise AnalysisError(f"jPCA needs >= 2 conditions and >= 3 time points, got {n_cond} x {n_time}")
    if n_pcs < 2 or n_pcs > min(n_neuron, n_cond * n_time):
        raise AnalysisError(f"jPCA n_pcs={n_pcs} must be in 2..{min(n_neuron, n_cond * n_time)}")
    if dt <= 0:
        raise AnalysisError(f"jPCA bin width dt must be positive, got {dt}")
    scale = np.ones(n_neuron)
    if soft_norm is not None:
        scale = np.ptp(data.reshape(-1, n_neuron), axis=0) + soft_norm
        scale[scale <= 0] = 1.0
        data = data / scale
    cc_mean = data.mean(axis=0) if subtract_cc_mean else np.zeros((n_time, n_neuron))
    centred = data - cc_mean
    flat = centred.reshape(-1, n_neuron)
    pca = PCA(n_components=n_pcs, svd_solver="full").fit(flat)
    pcs = pca.components_.T
    x = (flat - pca.mean_) @ pcs
    x = x.reshape(n_cond, n_time, n_pcs)
    dx = (np.diff(x, axis=1) / dt).reshape(-1, n_pcs)
    xm = (0.5 * (x[:, 1:] + x[:, :-1])).reshape(-1, n_pcs)
    m_skew = fit_skew_symmetric(xm, dx)
    m_full = fit_linear(xm, dx)
    planes, omegas = _oriented_planes(m_skew, x[:, 0])
    projections = np.einsum("ctk,pkj->ctpj", x, planes)
    total = np.sum((flat - flat.mean(axis=0)) ** 2)
    captured = np.sum((projections - projections.mean(axis=(0, 1))) ** 2, axis=(0, 1, 3))
    return JPCAResult(
        pcs=pcs,
        pc_variance_explained=np.asarray(pca.explained_variance_ratio_),
        m_skew=m_skew,
        m_full=m_full,
        r2_skew=r_squared(xm, dx, m_skew),
        r2_full=r_squared(xm, dx, m_full),
        frequencies_hz=omegas / (2 * np.pi),
        full_frequencies_hz=_pair_frequencies(m_full),
        planes=planes,
        plane_variance_fraction=captured / total if total > 0 else np.full(len(planes), np.nan),
        projections=projections,
        cc_mean=cc_mean,
        scale=scale,
    )
