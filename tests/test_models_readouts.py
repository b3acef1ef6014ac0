"""Tests of cortexfit.models.readouts: ridge readout with CV, and the ESN state readout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexfit.core.errors import FitError
from cortexfit.models import fit_readout


def _brute_force_cv(X, Y, alphas, k):
    """k-fold CV over trials by explicit centred ridge solves (the slow, obvious way)."""
    B = X.shape[0]
    ids = torch.arange(B) % k
    errs = []
    for a in alphas:
        sse = 0.0
        for f in range(k):
            tr, va = X[ids != f].reshape(-1, X.shape[-1]), X[ids == f].reshape(-1, X.shape[-1])
            ytr, yva = Y[ids != f].reshape(-1, Y.shape[-1]), Y[ids == f].reshape(-1, Y.shape[-1])
            mx, my = tr.mean(0), ytr.mean(0)
            Xc = tr - mx
            W = torch.linalg.solve(Xc.t() @ Xc + a * torch.eye(X.shape[-1], dtype=X.dtype), Xc.t() @ (ytr - my))
            sse += float((((va - mx) @ W + my - yva) ** 2).sum())
        errs.append(sse / (X.shape[0] * X.shape[1] * Y.shape[-1]))
    return errs


def test_fit_readout_cv_matches_brute_force():
    X = torch.randn(10, 30, 6, dtype=torch.float64)
    Y = X @ torch.randn(6, 2, dtype=torch.float64) + 0.5 * torch.randn(10, 30, 2, dtype=torch.float64) + 3.0
    alphas = [1e-3, 1.0, 30.0, 1e3]
    ro = fit_readout(X, Y, alphas, folds=5)
    np.testing.assert_allclose(ro.cv_mse, _brute_force_cv(X, Y, alphas, 5), rtol=1e-8)
    assert ro.alpha == alphas[int(np.argmin(ro.cv_mse))]
    # final fit: the centred ridge solution on all data
    Xf, Yf = X.reshape(-1, 6), Y.reshape(-1, 2)
    Xc = Xf - Xf.mean(0)
    W = torch.linalg.solve(Xc.t() @ Xc + ro.alpha * torch.eye(6, dtype=X.dtype), Xc.t() @ (Yf - Yf.mean(0)))
    torch.testing.assert_close(ro.weight.detach(), W.t())
    assert ro.weight.dtype == torch.float64


def test_fit_readout_picks_more_ridge_for_noisier_targets():
    X = torch.randn(12, 20, 15)
    w = torch.randn(15, 1)
    clean = fit_readout(X, X @ w + 0.01 * torch.randn(12, 20, 1))
    noisy = fit_readout(X[:, :4], X[:, :4] @ w + 5.0 * torch.randn(12, 4, 1))
    assert noisy.alpha > clean.alpha
    assert len(clean.cv_mse) == len(clean.alphas) > 5
    with pytest.raises(FitError, match="do not match"):
        fit_readout(X, torch.randn(12, 19, 1))


def test_fit_readout_single_sequence_and_float32_precision():
    # near-collinear float32 states: the float64 Gram keeps the tiny-ridge solution accurate
    t = torch.arange(4000, dtype=torch.float64)
    base = torch.stack([torch.sin(0.01 * t), torch.cos(0.013 * t)], 1)
    X = torch.cat([base, base @ torch.randn(2, 30, dtype=torch.float64) + 1e-4 * torch.randn(4000, 30,
                                                                                            dtype=torch.float64)], 1)
    y = (base @ torch.tensor([[1.5], [-0.5]], dtype=torch.float64))
    ro = fit_readout(X.float(), y.float(), alphas=[1e-8])
    with torch.no_grad():
        err = float(((ro(X.float()).double() - y) ** 2).mean().sqrt())
    assert err < 1e-4
    assert ro.weight.dtype == torch.float32


@pytest.mark.parametrize("alphas", [[1e-3], None])
def test_fit_readout_leaves_the_callers_tensors_unchanged(alphas):
    """float64 states and targets are read, not centred in place (one ridge value used to shift them)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(20, 15, 4, generator=g, dtype=torch.float64) + 5.0
    Y = X[..., :2] * 2 + 3.0
    X0, Y0 = X.clone(), Y.clone()
    fit_readout(X, Y, alphas=alphas)
    assert torch.equal(X, X0) and torch.equal(Y, Y0)


@pytest.mark.parametrize("where", ["nan_state", "inf_target", "opposite_infs"])
def test_non_finite_states_or_targets_are_refused(where):
    X, Y = torch.randn(300, 5), torch.randn(300, 2)
    if where == "nan_state":
        X[17, 3] = float("nan")
    elif where == "inf_target":
        Y[250, 1] = float("inf")
    else:  # +inf and -inf in one column: a plain sum would be nan, a careless check could miss the pair
        X[1, 0], X[2, 0] = float("inf"), float("-inf")
    with pytest.raises(FitError, match="NaN or inf"):
        fit_readout(X, Y, alphas=[1.0])


def test_huge_finite_values_are_not_mistaken_for_inf():
    X = torch.full((8, 3), 3e38) * torch.tensor([1.0, 1.0, -1.0])  # float32 sums overflow, the values are finite
    X[:, 1] = torch.arange(8.0)
    ro = fit_readout(X.double(), torch.arange(8.0, dtype=torch.float64)[:, None], alphas=[1e-9])
    assert torch.isfinite(ro.weight).all()
    fit_readout(X, torch.arange(8.0)[:, None], alphas=[1e-9])  # no FitError


def test_gram_accumulates_in_place_on_the_blas_path():
    # float64 with >= 64 columns takes BLAS syrk; adding a second block must update the first block's Gram
    from cortexfit.models.readouts import gram, symmetrize

    X = torch.randn(300, 70, dtype=torch.float64)
    G = gram(X[:100], torch.zeros(70, 70, dtype=torch.float64))
    G2 = gram(X[100:], G)
    assert G2.data_ptr() == G.data_ptr()
    assert torch.allclose(symmetrize(G2), X.t() @ X)
    assert not torch.allclose(symmetrize(gram(X[100:], torch.zeros(70, 70, dtype=torch.float64))), X.t() @ X)


def test_fit_readout_blocks_equal_the_one_pass_solution():
    # more rows than one ~32 MB block of 64 float64 columns (65,536 rows): the blocks must add up exactly
    from cortexfit.models import readouts

    torch.manual_seed(3)
    X = torch.randn(70_000, 64)
    Y = X[:, :3] @ torch.randn(3, 2) + 0.1 * torch.randn(70_000, 2)
    assert X.shape[0] > (1 << 22) // 64
    ro = fit_readout(X, Y, alphas=[1e-3])
    Xd, Yd = X.double(), Y.double()
    mx, my = Xd.mean(0), Yd.mean(0)
    W = torch.linalg.solve((Xd - mx).t() @ (Xd - mx) + 1e-3 * torch.eye(64, dtype=torch.float64),
                           (Xd - mx).t() @ (Yd - my))
    assert torch.allclose(ro.weight.detach().double(), W.t(), atol=1e-6)
    assert torch.allclose(ro.bias.detach().double(), my - mx @ W, atol=1e-6)
    n, sx, sy, G, C, yy = readouts._stats(X, Y, mx, my, rows=1000)
    assert n == 70_000 and torch.allclose(G, (Xd - mx).t() @ (Xd - mx))
