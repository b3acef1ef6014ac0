"""jPCA: skew-symmetric fit, rotation frequencies, planes; Churchland et al. 2012 data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

from cortexfit.analysis.jpca import fit_linear, fit_skew_symmetric, jpca, r_squared, skew_basis
from cortexfit.core.errors import AnalysisError

DT = 0.01


def rotational_data(
    f_hz: float = 2.0,
    *,
    n_cond: int = 8,
    n_time: int = 41,
    n_neuron: int = 50,
    noise: float = 0.05,
    orthogonal: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """(condition, time, neuron): a plane rotating at ``f_hz``, a slower plane and a decaying dim, embedded."""
    rng = np.random.default_rng(seed)
    w1, w2 = 2 * np.pi * f_hz, 2 * np.pi * f_hz / 4
    m = np.zeros((5, 5))
    m[0, 1], m[1, 0] = -w1, w1
    m[2, 3], m[3, 2] = -w2, w2
    m[4, 4] = -2.0
    step = expm(m * DT)
    z = np.zeros((n_cond, n_time, 5))
    z[:, 0] = rng.normal(size=(n_cond, 5)) * np.array([1.0, 1.0, 0.4, 0.4, 0.3])
    for t in range(1, n_time):
        z[:, t] = z[:, t - 1] @ step.T
    if orthogonal:
        embed = np.linalg.qr(rng.normal(size=(n_neuron, 5)))[0].T * 3.0
    else:
        embed = rng.normal(size=(5, n_neuron)) * 0.4 + 0.6 * rng.normal(size=(1, n_neuron))
    return z @ embed + noise * rng.normal(size=(n_cond, n_time, n_neuron))


def test_skew_basis_spans_skew_matrices():
    b = skew_basis(5)
    assert b.shape == (10, 5, 5)
    assert np.allclose(b, -b.transpose(0, 2, 1))
    assert np.linalg.matrix_rank(b.reshape(10, -1)) == 10


def test_skew_fit_is_the_least_squares_optimum():
    rng = np.random.default_rng(3)
    x, dx = rng.normal(size=(200, 4)), rng.normal(size=(200, 4))
    m = fit_skew_symmetric(x, dx)
    assert np.allclose(m, -m.T)
    resid = dx - x @ m.T
    # normal equations: the residual is orthogonal to every skew direction
    for b in skew_basis(4):
        assert abs(np.sum(resid * (x @ b.T))) < 1e-8
    assert r_squared(x, dx, m) <= r_squared(x, dx, fit_linear(x, dx)) + 1e-12


def test_recovers_rotation_frequency_within_10_percent():
    res = jpca(rotational_data(2.0), dt=DT, n_pcs=6)
    assert res.frequencies_hz[0] == pytest.approx(2.0, rel=0.10)
    assert res.frequencies_hz[1] == pytest.approx(0.5, rel=0.10)
    assert res.r2_skew > 0.7 and res.r2_ratio > 0.95
    assert res.planes.shape == (3, 6, 2)
    basis = np.concatenate(list(res.planes), axis=1)
    assert np.allclose(basis.T @ basis, np.eye(6), atol=1e-8)
    # the top plane rotates counter-clockwise: the angle of every condition increases over time
    y = res.projections[:, :, 0]
    ang = np.unwrap(np.arctan2(y[..., 1], y[..., 0]), axis=1)
    assert np.all(ang[:, -1] - ang[:, 0] > 0)
    assert res.plane_variance_fraction[0] > 0.5


@pytest.mark.parametrize("f_hz", [1.0, 3.0])
def test_frequency_of_non_orthogonal_embedding_from_full_fit(f_hz):
    res = jpca(rotational_data(f_hz, orthogonal=False, seed=1), dt=DT, n_pcs=6)
    # the unconstrained operator's eigenvalues do not depend on the embedding's metric
    assert res.full_frequencies_hz[0] == pytest.approx(f_hz, rel=0.10)


def test_time_shuffle_destroys_rotations():
    data = rotational_data(2.0)
    shuffled = data[:, np.random.default_rng(0).permutation(data.shape[1])]
    assert jpca(shuffled, dt=DT).r2_skew < 0.2 < jpca(data, dt=DT).r2_skew


def test_bad_input_raises():
    with pytest.raises(AnalysisError, match="condition, time, neuron"):
        jpca(np.zeros((3, 4)), dt=DT)
    bad = rotational_data()
    bad[0, 0, 0] = np.nan
    with pytest.raises(AnalysisError, match="NaN"):
        jpca(bad, dt=DT)
    with pytest.raises(AnalysisError, match="n_pcs"):
        jpca(rotational_data(n_neuron=4, orthogonal=False), dt=DT, n_pcs=6)


def churchland(shared_data, t_max: float = 350.0) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    mat = loadmat(shared_data / "churchland2012_jpca_tensor.mat")
    t = mat["t"].ravel().astype(float)
    keep = (t >= -50) & (t <= t_max)
    return np.transpose(mat["dataTensor"][keep], (2, 0, 1)), t[keep]  # (condition, time, neuron)


def test_churchland_2012_rotations(shared_data):
    data, t = churchland(shared_data)
    assert data.shape == (10, 41, 50) and t[0] == -50 and t[-1] == 350
    res = jpca(data, dt=0.01, n_pcs=6)
    assert res.r2_skew > 0.3
    assert res.r2_ratio > 0.5
    assert res.plane_variance_fraction[0] > 0.1
    assert 0.5 < res.frequencies_hz[0] < 3.0  # ~1-2 Hz rotations in motor cortex
    rng = np.random.default_rng(0)
    shuffled = np.stack([c[rng.permutation(len(t))] for c in data])  # each condition's bins reordered
    control = jpca(shuffled, dt=0.01, n_pcs=6)
    assert control.r2_skew < 0.1 < res.r2_skew / 3
    assert control.r2_full < res.r2_full / 3
