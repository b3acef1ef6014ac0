"""Eigen-decompositions of batches of Jacobians for the fixed-point search (LAPACK, checked)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import Tensor


def _eig(J: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Batched eigen-decomposition with LAPACK (numpy, one BLAS thread: robust on the low-rank Jacobians of
    saturated networks, where torch's ``eig`` can fail); NaN where it fails."""
    from threadpoolctl import threadpool_limits

    A = J.detach().cpu().numpy()
    with threadpool_limits(1):
        try:
            return np.linalg.eig(A)
        except np.linalg.LinAlgError:
            w, v = np.full(A.shape[:2], np.nan, complex), np.full(A.shape, np.nan, complex)
            for k, a in enumerate(A):
                with contextlib.suppress(np.linalg.LinAlgError):
                    w[k], v[k] = np.linalg.eig(a)
            return w, v


def _eig_top(J: Tensor, n_vec: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues sorted by decreasing modulus and the ``n_vec`` leading unit eigenvectors of each ``J``.

    Eigenvalues alone (``torch.linalg.eigvals``: no eigenvector matrix, about a third of the full
    decomposition's time) and the few leading eigenvectors by two steps of inverse iteration, ``(J - mu I) v``
    solved at a shift ``mu`` a relative 1e-7 from each eigenvalue.  Any matrix whose eigenvalues are not finite
    or whose vectors miss ``||J v - lambda v|| <= 1e-6 ||J||`` is redone by :func:`_eig` (the full LAPACK
    decomposition), so the result is always checked.
    """
    K, S, _ = J.shape
    Jc = J.detach().cpu()
    try:
        w = torch.linalg.eigvals(Jc)
        bad = ~torch.isfinite(w).all(1)
    except RuntimeError:  # e.g. LAPACK did not converge on one matrix: redo all with numpy
        w, bad = torch.zeros(K, S, dtype=torch.complex128), torch.ones(K, dtype=torch.bool)
    order = torch.argsort(-w.abs(), dim=1, stable=True)
    w = torch.take_along_dim(w, order, 1)
    n_vec = min(n_vec, S)
    vecs = torch.zeros(K, S, n_vec, dtype=w.dtype)
    if n_vec:
        lam = w[:, :n_vec]  # (K, n)
        mu = lam + 1e-7 * lam.abs().clamp_min(1e-3) * (1 + 1j)
        M = Jc.to(w.dtype)[:, None] - mu[..., None, None] * torch.eye(S, dtype=w.dtype)  # (K, n, S, S)
        LU, piv, info = torch.linalg.lu_factor_ex(M)
        v = torch.ones(K, n_vec, S, 1, dtype=w.dtype)
        for _ in range(2):
            v = torch.linalg.lu_solve(LU, piv, v)
            v = v / torch.linalg.vector_norm(v, dim=2, keepdim=True)
        v = v[..., 0]  # (K, n, S)
        res = torch.linalg.vector_norm(v @ Jc.to(w.dtype).transpose(1, 2) - lam[..., None] * v, dim=2)  # (K, n)
        norm = torch.linalg.matrix_norm(Jc, ord=2 if S <= 8 else "fro").clamp_min(1e-30)
        bad |= (info != 0).any(1) | ~(res <= 1e-6 * norm[:, None].to(res.dtype)).all(1)
        vecs = v.transpose(1, 2)
    wn, vn = w.numpy().astype(complex), vecs.numpy().astype(complex)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten().numpy()
        ew, ev = _eig(J[torch.as_tensor(rows)])
        o = np.argsort(-np.abs(ew), axis=1, kind="stable")
        wn[rows], vn[rows] = np.take_along_axis(ew, o, 1), np.take_along_axis(ev, o[:, None, :n_vec], 2)
    return wn, vn
