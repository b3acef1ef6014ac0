"""Closed-form readouts of recurrent states: ridge with the penalty chosen by k-fold CV, and the ESN's state readout.

:func:`fit_readout` fits ``y = W s + b`` on reservoir (or any) states.  Sufficient statistics (Gram
matrices) are computed once per fold in one pass over the data, in float64 blocks of about 32 MB (no float64
copy of the data); every fold then needs ONE symmetric
eigendecomposition of its training Gram matrix, reused for the whole grid of ridge values, and the
validation error of every ridge value is evaluated in the eigenbasis without touching the data again.

Examples
--------
>>> import torch
>>> torch.manual_seed(0) is not None
True
>>> S = torch.randn(8, 50, 6)                      # 8 trials, 50 steps, 6 state dims
>>> Y = S @ torch.randn(6, 2) + 0.01 * torch.randn(8, 50, 2)
>>> ro = fit_readout(S, Y)
>>> float(((ro(S) - Y) ** 2).mean().detach()) < 1e-3
True
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from cortexfit.core.errors import FitError

#: Default ridge grid, relative to the mean eigenvalue of the centred training Gram matrix.
RELATIVE_ALPHAS = tuple(float(10.0**e) for e in range(-10, 2))


class RidgeReadout(nn.Linear):
    """Linear readout ``y = W s + b`` fitted in closed form; ``alpha`` and the CV curve are kept as attributes.

    Examples
    --------
    >>> ro = RidgeReadout(4, 2)
    >>> ro.spec()["out_features"]
    2
    """

    def __init__(self, in_features: int, out_features: int, *, alpha: float = float("nan")) -> None:
        super().__init__(in_features, out_features)
        self.alpha = float(alpha)
        self.alphas: list[float] = []
        self.cv_mse: list[float] = []

    def spec(self) -> dict:
        """Plain dict to rebuild the module (``class`` names it)."""
        return {"class": "RidgeReadout", "in_features": self.in_features, "out_features": self.out_features,
                "alpha": self.alpha}


def gram(X: Tensor, out: Tensor | None = None) -> Tensor:
    """``X^T X`` for (N, S) ``X``, added to ``out`` if given: BLAS ``syrk`` (half the work of a matmul) on CPU.

    Without ``out`` the full matrix is returned.  With ``out`` on the CPU, for float64 and S >= 64, only its
    upper triangle is updated (:func:`symmetrize` completes it); elsewhere a matmul updates all of it.

    Examples
    --------
    >>> X = torch.randn(50, 3, dtype=torch.float64)
    >>> torch.allclose(symmetrize(gram(X[25:], gram(X[:25]))), X.t() @ X)
    True
    """
    if X.device.type != "cpu" or X.dtype != torch.float64 or X.shape[1] < 64:
        return X.t() @ X if out is None else out.addmm_(X.t(), X)
    from scipy.linalg import blas

    A = X.numpy()  # C-ordered (N, S): A.T is Fortran-ordered (S, N), so syrk computes A.T @ A without a copy
    if out is None:
        return symmetrize(torch.from_numpy(blas.dsyrk(1.0, A.T, trans=0)))
    C = out.numpy().T  # ``out`` is symmetric in what we read: its transpose view is Fortran-ordered, no copy
    R = blas.dsyrk(1.0, A.T, beta=1.0, c=C, trans=0, lower=1, overwrite_c=1)  # lower of C = upper of ``out``
    if not np.shares_memory(R, C):  # f2py made a copy after all
        C[...] = R
    return out


def symmetrize(G: Tensor) -> Tensor:
    """The full symmetric matrix from the upper triangle of ``G`` (what :func:`gram` fills on the CPU)."""
    return torch.triu(G) + torch.triu(G, 1).t()


def _stats(X: Tensor, Y: Tensor, cx: Tensor, cy: Tensor, rows: int) -> tuple:
    """``(n, sum x, sum y, X^T X, X^T Y, sum y^2)`` of ``X - cx``, ``Y - cy`` in float64, ``rows`` rows at a time.

    Each block is shifted into one reused float64 buffer ``Z = [x, y, 1]``, so one symmetric rank-k update
    ``Z^T Z`` per block yields every statistic at once and no float64 copy of the data is ever made.
    """
    n, S = X.shape
    O = Y.shape[1]
    Z = torch.ones(min(rows, n), S + O + 1, dtype=torch.float64, device=X.device)
    G = torch.zeros(S + O + 1, S + O + 1, dtype=torch.float64, device=X.device)
    for r0 in range(0, n, rows):
        m = min(rows, n - r0)
        torch.sub(X[r0 : r0 + m], cx, out=Z[:m, :S])
        torch.sub(Y[r0 : r0 + m], cy, out=Z[:m, S : S + O])
        gram(Z[:m], G)
    G = symmetrize(G)
    return (float(G[-1, -1]), G[:S, -1], G[S:-1, -1], G[:S, :S], G[:S, S:-1],
            torch.diagonal(G[S:-1, S:-1]).clone())


def _finite_mean(x: Tensor, name: str) -> Tensor:
    """Float64 mean over all but the last axis; FitError if ``x`` holds a NaN or inf.

    A NaN or inf anywhere makes the mean non-finite, so the data are scanned once (no isfinite mask as large
    as the states); only a non-finite mean is checked element-wise, since huge finite values can overflow
    the float32 sum.
    """
    m = x.mean(dim=(0, 1))
    if not bool(torch.isfinite(m).all()):
        if not bool(torch.isfinite(x).all()):
            raise FitError(f"fit_readout: {name} contain NaN or inf (mask or fill them first)")
        m = x.mean(dim=(0, 1), dtype=torch.float64)
    return m.to(torch.float64)


def _as_2d(x: Tensor, name: str) -> Tensor:
    if x.dim() == 3:
        return x
    if x.dim() == 2:
        return x.unsqueeze(0)
    raise FitError(f"fit_readout: {name} must be (trials, time, dim) or (samples, dim), got {tuple(x.shape)}")


def _fold_ids(n_trials: int, n_time: int, k: int, device: torch.device) -> tuple[Tensor, bool]:
    """Fold index per trial (over trials) or, for a single sequence, per contiguous time block."""
    if n_trials >= k:
        return torch.arange(n_trials, device=device) % k, True
    return (torch.arange(n_time, device=device) * k) // n_time, False


def fit_readout(
    states: Tensor,
    targets: Tensor,
    alphas: list[float] | Tensor | None = None,
    *,
    folds: int = 5,
) -> RidgeReadout:
    """Ridge regression of ``targets`` on ``states`` with the ridge value picked by k-fold cross-validation.

    Parameters
    ----------
    states
        (B, T, S) trials of states, or (N, S) samples of one sequence.
    targets
        (B, T, O) or (N, O) (a 1-D (N,) target is treated as O = 1).
    alphas
        Ridge values (absolute, added to the centred ``X^T X``).  None: a grid relative to the mean eigenvalue
        of ``X^T X`` (:data:`RELATIVE_ALPHAS`).  One value: no cross-validation.
    folds
        k: folds over trials when there are at least k trials, else over contiguous blocks of time.

    Returns
    -------
    RidgeReadout
        On the states' device, float32 unless the states are float64; ``alpha`` is the chosen value,
        ``alphas``/``cv_mse`` the validation curve (mean squared error per output).

    Raises
    ------
    FitError
        Mismatched shapes, non-finite values or fewer than 2 samples per fold.

    Examples
    --------
    >>> import torch
    >>> X = torch.randn(200, 3)
    >>> ro = fit_readout(X, 2 * X[:, :1] + 1, alphas=[1e-6])
    >>> round(float(ro.bias.detach()), 3), round(float(ro.weight.detach()[0, 0]), 3)
    (1.0, 2.0)
    """
    if targets.dim() == 1:
        targets = targets.unsqueeze(-1)
    X, Y = _as_2d(states.detach(), "states"), _as_2d(targets.detach(), "targets")
    if X.shape[:2] != Y.shape[:2]:
        raise FitError(f"fit_readout: states {tuple(states.shape)} and targets {tuple(targets.shape)} do not match")
    B, T, S = X.shape
    O = Y.shape[-1]
    dev, f64 = X.device, torch.float64
    work = X.dtype if X.dtype in (torch.float32, torch.float64) else torch.float32
    # shift by the global means (ridge with intercept is shift invariant; improves float32 Gram accuracy)
    X = X.to(work)
    Y = Y.to(device=dev, dtype=work)
    cx, cy = _finite_mean(X, "states"), _finite_mean(Y, "targets")
    grid = None if alphas is None else torch.as_tensor(alphas, dtype=f64, device=dev).flatten()
    k = 1 if grid is not None and grid.numel() == 1 else max(2, int(folds))
    ids, over_trials = _fold_ids(B, T, k, dev)
    # float64 statistics of the shifted data in blocks of ~32 MB (all at once on a GPU)
    rows = max(256, (1 << 22) // S) if dev.type == "cpu" else B * T
    stats = []  # per fold: n, sx, sy, G, C, yy (float64)
    for f in range(k):
        if k == 1:
            Xf, Yf = X.reshape(-1, S), Y.reshape(-1, O)
        else:
            sel = ids == f
            Xf = (X[sel] if over_trials else X[:, sel]).reshape(-1, S)
            Yf = (Y[sel] if over_trials else Y[:, sel]).reshape(-1, O)
        if Xf.shape[0] < 2:
            raise FitError(f"fit_readout: fold {f} has fewer than 2 samples ({B} trials x {T} steps, {k} folds)")
        stats.append(_stats(Xf, Yf, cx, cy, rows))
    total = [sum(s[i] for s in stats) for i in range(6)]

    def centred(st):
        n, sx, sy, G, C, _ = st
        mx, my = sx / n, sy / n
        return G - n * torch.outer(mx, mx), C - n * torch.outer(mx, my), mx, my

    if grid is None:
        Gc_all = centred(total)[0]
        scale = float(torch.diagonal(Gc_all).mean().clamp(min=1e-30))
        grid = torch.tensor(RELATIVE_ALPHAS, dtype=f64, device=dev) * scale
    cv = torch.zeros(grid.numel(), dtype=f64, device=dev)
    if k > 1:
        for f in range(k):
            tr = [t - s for t, s in zip(total, stats[f])]
            Gc, Cc, mx, my = centred(tr)
            lam, V = torch.linalg.eigh(Gc)
            n, sx, sy, G, C, yy = stats[f]  # validation statistics, centred at the training means
            Gv = G - torch.outer(mx, sx) - torch.outer(sx, mx) + n * torch.outer(mx, mx)
            Cv = C - torch.outer(mx, sy) - torch.outer(sx, my) + n * torch.outer(mx, my)
            yyv = yy - 2 * my * sy + n * my * my
            A, Bv, M = V.t() @ Cc, V.t() @ Cv, V.t() @ Gv @ V
            d = 1.0 / (lam.clamp(min=0)[None, :] + grid[:, None])  # (n_alpha, S)
            DA = d[:, :, None] * A[None]  # (n_alpha, S, O)
            err = yyv.sum() - 2 * (d @ (A * Bv).sum(1)) + ((M @ DA) * DA).sum((1, 2))
            cv += err
        cv /= float(total[0]) * O
    best = int(torch.argmin(cv)) if k > 1 else 0
    alpha = float(grid[best])
    Gc, Cc, mx, my = centred(total)
    W = None
    if k == 1 and alpha > 0:  # one ridge value: a Cholesky solve is enough
        L, info = torch.linalg.cholesky_ex(Gc + alpha * torch.eye(S, dtype=f64, device=dev))
        W = torch.cholesky_solve(Cc, L) if int(info) == 0 else None
    if W is None:
        lam, V = torch.linalg.eigh(Gc)
        W = V @ ((V.t() @ Cc) / (lam.clamp(min=0) + alpha).clamp(min=1e-300)[:, None])  # (S, O)
    b = my + cy - (mx + cx) @ W
    out_dtype = torch.float64 if work == torch.float64 else torch.float32
    ro = RidgeReadout(S, O, alpha=alpha).to(device=dev, dtype=out_dtype)
    with torch.no_grad():
        ro.weight.copy_(W.t())
        ro.bias.copy_(b)
    ro.alphas = grid.tolist()
    ro.cv_mse = cv.tolist() if k > 1 else []
    return ro


class StateReadout(nn.Module):
    """Closed-form readout: ``log_rates = W s + b``; ``factors`` = projection on the states' top PCs.

    Examples
    --------
    >>> r = StateReadout(n_features=6, n_units=3, factors=2)
    >>> [t.shape for t in r(torch.zeros(4, 6))]
    [torch.Size([4, 2]), torch.Size([4, 3])]
    """

    pc_mean: Tensor
    pcs: Tensor

    def __init__(self, *, n_features: int, n_units: int, factors: int):
        super().__init__()
        self.n_features, self.n_units, self.factors = n_features, n_units, factors
        self.linear = nn.Linear(n_features, n_units)
        self.register_buffer("pc_mean", torch.zeros(n_features))
        self.register_buffer("pcs", torch.zeros(factors, n_features))

    def forward(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        return (feats - self.pc_mean) @ self.pcs.t(), self.linear(feats)

    def spec(self) -> dict:
        """Plain dict to rebuild the module."""
        return {"class": "StateReadout", "n_features": self.n_features, "n_units": self.n_units,
                "factors": self.factors}
