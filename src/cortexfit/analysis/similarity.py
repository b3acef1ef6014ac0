"""Model-to-data similarity: cross-validated CCA, Procrustes and Dynamical Similarity Analysis (DSA).

All functions take plain numpy arrays shaped ``(trial, time, feature)`` (trials may equally be conditions)
or ``(sample, feature)``; the two systems compared must share the trials and times, not the features.

DSA (Ostrow et al. 2023) is implemented here from its definition rather than taken from the ``dsa-metric``
package (whose dependencies -- torch, pot, pydmd, omegaconf, ... -- are heavy for one metric):

1. delay (Hankel) embedding of each system with ``n_delays`` lags, per trial (no window crosses a trial);
2. reduced-rank DMD in the whitened coordinates of the paper: the SVD ``H = U S V^T`` of all embedded
   snapshots gives each snapshot the coordinates ``v = S_r^-1 U_r^T h`` (the rows of ``V_r``, rank ``r``),
   and the operator ``A_v`` (``v[t+1] ~ A_v v[t]``, within each trial) is fitted by least squares;
3. the angular Procrustes distance ``min_C arccos(<A_x, C A_y C^T> / (|A_x| |A_y|))`` between the two
   ``A_v`` over orthogonal ``C``, searched as ``C = C0 expm(S)`` with ``S`` skew-symmetric by L-BFGS on the
   exact gradient (adjoint Frechet derivative of the matrix exponential, from an eigendecomposition of
   ``S``).  Starting points ``C0``: identity, a reflection (the other component of the orthogonal group), a
   spectral guess that matches the eigenbases of the operators' symmetric parts, and random orthogonal
   matrices.

Whitening is what makes the distance a comparison of dynamics rather than of geometry: an invertible linear
re-coordination ``x' = M x`` (any ``M``, not only orthogonal ones) changes the whitened coordinates only by
an orthogonal matrix, so ``A_v`` only by an orthogonal similarity, which the Procrustes search removes.

The distance is 0 for a system and any linearly re-coordinated copy of it, and grows as the dynamics
differ.  :data:`DSA_VARIANTS` keeps the earlier variants of this module by name (see :func:`dsa_distance`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.spatial import procrustes
from sklearn.cross_decomposition import CCA
from sklearn.decomposition import PCA
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from cortexfit.core.errors import AnalysisError

__all__ = [
    "CCAResult",
    "DSA_VARIANTS",
    "angular_procrustes_distance",
    "cv_cca",
    "dmd_operator",
    "dsa_distance",
    "hankel_embed",
    "procrustes_similarity",
]


@dataclass(frozen=True)
class CCAResult:
    """Held-out canonical correlations: ``per_component`` (n_components,) averaged over folds, and
    ``per_fold`` (n_folds, n_components)."""

    per_component: np.ndarray
    per_fold: np.ndarray

    @property
    def mean(self) -> float:
        """Mean held-out canonical correlation over components and folds."""
        return float(np.mean(self.per_component))


def _as_3d(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise AnalysisError(f"{name} must be (trial, time, feature) or (time, feature), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise AnalysisError(f"{name} contains NaN or infinite values")
    return x


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_3d(x, "x"), _as_3d(y, "y")
    if x.shape[:2] != y.shape[:2]:
        raise AnalysisError(f"x and y must share (trial, time), got {x.shape[:2]} and {y.shape[:2]}")
    return x, y


def _reduce(train: np.ndarray, test: np.ndarray, max_dim: int) -> tuple[np.ndarray, np.ndarray]:
    d = min(max_dim, train.shape[1], train.shape[0] - 1)
    pca = PCA(n_components=d, svd_solver="full").fit(train)
    return pca.transform(train), pca.transform(test)


def cv_cca(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_components: int = 4,
    n_splits: int = 5,
    max_dim: int = 20,
    seed: int = 0,
) -> CCAResult:
    """Cross-validated canonical correlation between two systems, folding over trials.

    In each fold, both systems are reduced by PCA (fitted on the training trials) to at most ``max_dim``
    dims, :class:`sklearn.cross_decomposition.CCA` is fitted on the training trials' samples and the
    correlation of each pair of canonical variates is measured on the held-out trials.

    Parameters
    ----------
    x, y : (trial, time, feature) arrays sharing trial and time (trials may be conditions).
    n_components : number of canonical pairs.
    n_splits : folds over trials (at most the number of trials).
    max_dim : PCA dims kept per system before CCA.
    seed : shuffles the trials before folding.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(20, 30, 3))
    >>> x = z @ rng.normal(size=(3, 10)) + 0.1 * rng.normal(size=(20, 30, 10))
    >>> y = z @ rng.normal(size=(3, 6))
    >>> cv_cca(x, y, n_components=3).mean > 0.95
    True
    """
    x, y = _pair(x, y)
    n_trial = x.shape[0]
    if n_trial < 2:
        raise AnalysisError("cross-validated CCA needs at least 2 trials")
    folds = KFold(n_splits=min(n_splits, n_trial), shuffle=True, random_state=seed)
    with threadpool_limits(1):  # many small SVDs: BLAS threads only add contention
        per_fold = [_cca_fold(x, y, train, test, n_components, max_dim)
                    for train, test in folds.split(np.arange(n_trial))]
    per_fold_arr = np.array(per_fold)
    return CCAResult(per_component=np.nanmean(per_fold_arr, axis=0), per_fold=per_fold_arr)


def _cca_fold(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, n_components: int,
              max_dim: int) -> np.ndarray:
    """Held-out correlation of each canonical pair for one split of the trials."""
    xs_tr, xs_te = _reduce(x[train].reshape(-1, x.shape[2]), x[test].reshape(-1, x.shape[2]), max_dim)
    ys_tr, ys_te = _reduce(y[train].reshape(-1, y.shape[2]), y[test].reshape(-1, y.shape[2]), max_dim)
    k = min(n_components, xs_tr.shape[1], ys_tr.shape[1])
    cca = CCA(n_components=k, max_iter=1000).fit(xs_tr, ys_tr)
    u, v = cca.transform(xs_te, ys_te)
    corr = np.full(n_components, np.nan)
    for i in range(k):
        su, sv = u[:, i].std(), v[:, i].std()
        corr[i] = np.corrcoef(u[:, i], v[:, i])[0, 1] if su > 0 and sv > 0 else 0.0
    return corr


def procrustes_similarity(x: np.ndarray, y: np.ndarray, *, n_dims: int = 10) -> float:
    """``1 - disparity`` of :func:`scipy.spatial.procrustes` after PCA of both to the same dims.

    Both systems' samples (rows: trial x time) are reduced to ``d = min(n_dims, features...)`` principal
    components, then optimally translated, scaled and rotated (reflections allowed) onto each other.
    1 means identical shape up to those transforms; 0 means nothing in common.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(100, 5))
    >>> q = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    >>> round(procrustes_similarity(x, 3 * x @ q + 1), 6)
    1.0
    """
    x, y = _pair(x, y)
    xs, ys = x.reshape(-1, x.shape[2]), y.reshape(-1, y.shape[2])
    d = min(n_dims, xs.shape[1], ys.shape[1], xs.shape[0] - 1)
    if d < 1:
        raise AnalysisError("Procrustes similarity needs at least 2 samples and 1 feature")
    xs = PCA(n_components=d, svd_solver="full").fit_transform(xs)
    ys = PCA(n_components=d, svd_solver="full").fit_transform(ys)
    if np.allclose(xs, 0) or np.allclose(ys, 0):
        return float("nan")
    _, _, disparity = procrustes(xs, ys)
    return float(1.0 - disparity)


def hankel_embed(x: np.ndarray, n_delays: int) -> np.ndarray:
    """Delay-embed each trial: ``(trial, time, n) -> (trial, time - n_delays + 1, n * n_delays)``.

    Row ``t`` of a trial is ``[x[t], x[t+1], ..., x[t + n_delays - 1]]``.

    Examples
    --------
    >>> hankel_embed(np.arange(5.0).reshape(1, 5, 1), 2)[0]
    array([[0., 1.],
           [1., 2.],
           [2., 3.],
           [3., 4.]])
    """
    x = _as_3d(x, "x")
    n_trial, n_time, _n = x.shape
    if not 1 <= n_delays <= n_time - 1:
        raise AnalysisError(f"n_delays={n_delays} must be in 1..{n_time - 1} for {n_time} time points")
    windows = np.lib.stride_tricks.sliding_window_view(x, n_delays, axis=1)  # (trial, T', n, delays)
    return np.ascontiguousarray(windows.transpose(0, 1, 3, 2)).reshape(n_trial, n_time - n_delays + 1, -1)


#: DMD coordinates of :func:`dmd_operator`: ``"whitened"`` (Ostrow et al. 2023) or ``"projected"``.
DMD_BASES = ("whitened", "projected")


def dmd_operator(x: np.ndarray, *, n_delays: int = 10, rank: int = 10, basis: str = "whitened") -> np.ndarray:
    """Reduced-rank DMD operator of delay-embedded trajectories, ``(rank, rank)``.

    Parameters
    ----------
    x : (trial, time, n) trajectories (or (time, n)).
    n_delays : lags in the Hankel embedding.
    rank : number of leading singular directions of the embedded snapshots kept (capped by their rank).
    basis : ``"whitened"`` (default, Ostrow et al. 2023): the SVD ``H = U S V^T`` of all snapshots gives
        the coordinates ``v = S^-1 U^T h`` (rows of ``V``) in which ``A_v`` is fitted.  ``"projected"``
        (this module's earlier form): ``z = U^T h`` with ``U`` from the SVD of the predecessor snapshots only
        (``A_z = S A_v S^-1`` up to that difference: same eigenvalues, another basis).

    Examples
    --------
    >>> t = np.arange(100) * 0.05
    >>> x = np.stack([np.cos(t), np.sin(t)], -1)
    >>> a = dmd_operator(x, n_delays=1, rank=2)
    >>> np.round(np.abs(np.linalg.eigvals(a)), 6)
    array([1., 1.])
    """
    if basis not in DMD_BASES:
        raise AnalysisError(f"basis={basis!r} must be one of {DMD_BASES}")
    h = hankel_embed(x, n_delays)
    if basis == "projected":
        pre = h[:, :-1].reshape(-1, h.shape[2])
        post = h[:, 1:].reshape(-1, h.shape[2])
        u, s, _ = np.linalg.svd(pre.T, full_matrices=False)
        u = u[:, :_rank_kept(s, rank)]
        at, *_ = np.linalg.lstsq(pre @ u, post @ u, rcond=None)
        return at.T
    u, s, _ = np.linalg.svd(h.reshape(-1, h.shape[2]).T, full_matrices=False)
    keep = _rank_kept(s, rank)
    v = (h @ u[:, :keep]) / s[:keep]  # (trial, time', rank): the rows of V_r, trial by trial
    at, *_ = np.linalg.lstsq(v[:, :-1].reshape(-1, keep), v[:, 1:].reshape(-1, keep), rcond=None)
    return at.T


def _rank_kept(s: np.ndarray, rank: int) -> int:
    """Number of singular values kept: at most ``rank``, only those above ``1e-10`` of the largest."""
    keep = int(min(rank, np.sum(s > s[0] * 1e-10))) if s.size and s[0] > 0 else 0
    if keep < 1:
        raise AnalysisError("DMD needs non-constant trajectories")
    return keep


def _skew_from(params: np.ndarray, n: int) -> np.ndarray:
    s = np.zeros((n, n))
    s[np.triu_indices(n, 1)] = params
    return s - s.T


def angular_procrustes_distance(
    a: np.ndarray, b: np.ndarray, *, n_restarts: int = 8, seed: int = 0
) -> float:
    """``min_C arccos(<a, C b C^T> / (|a| |b|))`` over orthogonal ``C`` (radians, in ``[0, pi]``).

    Operators of different sizes are zero-padded to the larger size.  Each search writes
    ``C = C0 expm(S)`` with ``S`` skew-symmetric and runs L-BFGS on the exact gradient from ``S = 0``; the
    starting points ``C0`` are the identity, a reflection (the other component of the orthogonal group),
    a spectral guess (:func:`_spectral_start`) and ``n_restarts`` random orthogonal matrices.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(4, 4))
    >>> q = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    >>> angular_procrustes_distance(a, q @ a @ q.T) < 1e-4
    True
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = max(a.shape[0], b.shape[0])
    a = np.pad(a, ((0, n - a.shape[0]), (0, n - a.shape[1])))
    b = np.pad(b, ((0, n - b.shape[0]), (0, n - b.shape[1])))
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if norm == 0:
        raise AnalysisError("cannot compare a zero operator")
    if n == 1:
        return float(np.arccos(np.clip(a[0, 0] * b[0, 0] / norm, -1, 1)))
    rng = np.random.default_rng(seed)
    reflection = np.eye(n)
    reflection[0, 0] = -1.0
    starts = [np.eye(n), reflection, _spectral_start(a, b)]
    for _ in range(n_restarts):
        q, r = np.linalg.qr(rng.normal(size=(n, n)))
        starts.append(q * np.sign(np.diag(r)))  # Haar-distributed orthogonal matrix
    with threadpool_limits(1):  # tiny matrices: BLAS threads only add contention
        best = max(_best_cos(a, b, norm, c0) for c0 in starts)
    return float(np.arccos(np.clip(best, -1.0, 1.0)))


def _spectral_start(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Orthogonal ``C = U_a D U_b^T`` mapping the symmetric part of ``b`` onto that of ``a``.

    ``U`` are eigenvectors of the symmetric parts (eigenvalues sorted); the signs ``D`` are chosen so that
    the skew parts agree too (``D K_b D ~ K_a`` in those bases: the leading eigenvector of ``K_a * K_b``).
    Exact for orthogonally similar matrices whose symmetric parts have distinct eigenvalues.
    """
    _, ua = np.linalg.eigh((a + a.T) / 2)
    _, ub = np.linalg.eigh((b + b.T) / 2)
    ka, kb = ua.T @ ((a - a.T) / 2) @ ua, ub.T @ ((b - b.T) / 2) @ ub
    signs = np.sign(np.linalg.eigh(ka * kb)[1][:, -1])
    signs[signs == 0] = 1.0
    return (ua * signs) @ ub.T


def _expm_skew(s: np.ndarray):
    """``expm(s)`` of a skew-symmetric ``s`` and the adjoint of its Frechet derivative, via ``eigh(1j s)``.

    With ``s = V diag(i w) V^H``, the derivative in direction ``E`` is ``V ((V^H E V) * F) V^H`` with the
    divided differences ``F_jk = (e^{i w_j} - e^{i w_k}) / (i w_j - i w_k)`` (``e^{i w_j}`` on ties); its
    adjoint uses ``conj(F)``.
    """
    w, v = np.linalg.eigh(1j * s)  # 1j*s is Hermitian with real eigenvalues; s has eigenvalues -1j*w
    lam = -1j * w
    e = np.exp(lam)
    diff = lam[:, None] - lam[None, :]
    close = np.abs(diff) < 1e-9
    f = np.where(close, e[:, None], (e[:, None] - e[None, :]) / np.where(close, 1.0, diff))
    expm_s = ((v * e) @ v.conj().T).real

    def adjoint(g: np.ndarray) -> np.ndarray:
        return (v @ ((v.conj().T @ g @ v) * f.conj()) @ v.conj().T).real

    return expm_s, adjoint


def _best_cos(a: np.ndarray, b: np.ndarray, norm: float, c0: np.ndarray) -> float:
    """Largest ``<a, C b C^T> / norm`` reached by L-BFGS over ``C = c0 expm(S)`` from ``S = 0``."""
    n = a.shape[0]
    iu = np.triu_indices(n, 1)

    def neg_cos(params: np.ndarray) -> tuple[float, np.ndarray]:
        e, adjoint = _expm_skew(_skew_from(params, n))
        c = c0 @ e
        value = np.sum(a * (c @ b @ c.T))
        g_s = adjoint(c0.T @ (a @ c @ b.T + a.T @ c @ b))  # chain rule through C = c0 expm(S)
        return -value / norm, -(g_s[iu] - g_s.T[iu]) / norm

    opts = {"maxiter": 1000, "gtol": 1e-12, "ftol": 1e-15}
    res = minimize(neg_cos, np.zeros(len(iu[0])), jac=True, method="L-BFGS-B", options=opts)
    return -float(res.fun)


#: Variants of :func:`dsa_distance`: name -> (DMD basis, whether ``I`` is subtracted from the operators).
DSA_VARIANTS = {
    "ostrow": ("whitened", False),  # Ostrow et al. (2023): A_v in the whitened coordinates
    "projected_minus_identity": ("projected", True),  # this module's earlier default: A_z - I
    "projected": ("projected", False),  # this module's earlier center=False: A_z
}


def dsa_distance(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_delays: int = 10,
    rank: int = 10,
    variant: str = "ostrow",
    n_restarts: int = 8,
    seed: int = 0,
) -> float:
    """Dynamical Similarity Analysis distance between two systems (radians; 0 = same dynamics).

    ``x`` and ``y`` are (trial, time, features) trajectories; features may differ in number and basis.
    Each is delay-embedded and summarised by its reduced-rank DMD operator (:func:`dmd_operator`), and
    the operators are compared with :func:`angular_procrustes_distance`.

    ``variant`` (:data:`DSA_VARIANTS`):

    * ``"ostrow"`` (default): Ostrow et al. (2023) -- ``A_v`` fitted in the whitened coordinates (rows of
      ``V`` of ``H = U S V^T``).  0 for any invertible linear re-coordination ``x' = M x``.
    * ``"projected_minus_identity"``: the earlier default of this module -- ``A_z - I`` with ``z = U^T h``
      (unwhitened PCA coordinates).  Invariant only to orthogonal re-coordination: a non-orthogonal ``M``
      reshapes the PCA coordinates and so the operator, and the distance is no longer 0.
    * ``"projected"``: ``A_z`` (the earlier ``center=False``).

    Examples
    --------
    >>> t = np.arange(200) * 0.05
    >>> rot = np.stack([np.cos(t), np.sin(t)], -1)
    >>> m = np.array([[2.0, 0.5], [0.3, 0.7]])  # invertible, not orthogonal
    >>> dsa_distance(rot, rot @ m.T, n_delays=2, rank=4) < 1e-3
    True
    """
    if variant not in DSA_VARIANTS:
        raise AnalysisError(f"variant={variant!r} must be one of {sorted(DSA_VARIANTS)}")
    basis, minus_identity = DSA_VARIANTS[variant]
    with threadpool_limits(1):
        ax = dmd_operator(x, n_delays=n_delays, rank=rank, basis=basis)
        ay = dmd_operator(y, n_delays=n_delays, rank=rank, basis=basis)
    if minus_identity:
        ax, ay = ax - np.eye(len(ax)), ay - np.eye(len(ay))
    return angular_procrustes_distance(ax, ay, n_restarts=n_restarts, seed=seed)
