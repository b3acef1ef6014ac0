"""Model-to-data similarity: cross-validated CCA, Procrustes, delay embedding, DMD and DSA."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

from cortexfit.analysis.similarity import (
    DSA_VARIANTS,
    angular_procrustes_distance,
    cv_cca,
    dmd_operator,
    dsa_distance,
    hankel_embed,
    procrustes_similarity,
)
from cortexfit.core.errors import AnalysisError

DT = 0.01
W = 2 * np.pi * 2.0
ROTATION = np.array([[0.0, -W, 0.0], [W, 0.0, 0.0], [0.0, 0.0, -3.0]])  # 2 Hz rotation + decay
DECAY = np.diag([-3.0, -8.0, -1.0])  # no rotation


def simulate(m: np.ndarray, *, n_out: int = 10, seed: int, n_trial: int = 10, n_time: int = 60) -> np.ndarray:
    """(trial, time, n_out) trajectories of dz/dt = m z from random starts, orthonormally embedded + noise."""
    rng = np.random.default_rng(seed)
    step = expm(m * DT)
    z = np.zeros((n_trial, n_time, len(m)))
    z[:, 0] = rng.normal(size=(n_trial, len(m)))
    for t in range(1, n_time):
        z[:, t] = z[:, t - 1] @ step.T
    embed = np.linalg.qr(rng.normal(size=(n_out, len(m))))[0].T
    return z @ embed + 0.01 * rng.normal(size=(n_trial, n_time, n_out))


def test_cv_cca_high_for_shared_latents_low_for_independent():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 20, 3))
    x = z @ rng.normal(size=(3, 12)) + 0.2 * rng.normal(size=(30, 20, 12))
    y = np.tanh(z @ rng.normal(size=(3, 8)) * 0.5)
    shared = cv_cca(x, y, n_components=3)
    independent = cv_cca(x, rng.normal(size=y.shape), n_components=3)
    assert shared.per_fold.shape == (5, 3)
    assert shared.mean > 0.8
    assert abs(independent.mean) < 0.2


def test_procrustes_similarity():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 20, 6))
    q = np.linalg.qr(rng.normal(size=(6, 6)))[0]
    assert procrustes_similarity(x, 2.5 * x @ q - 1.0, n_dims=6) == pytest.approx(1.0, abs=1e-9)
    assert procrustes_similarity(x, rng.normal(size=(8, 20, 4)), n_dims=4) < 0.3
    with pytest.raises(AnalysisError, match="share"):
        procrustes_similarity(x, x[:, :5])


def test_hankel_embed_layout():
    x = np.arange(12.0).reshape(1, 6, 2)
    h = hankel_embed(x, 3)
    assert h.shape == (1, 4, 6)
    assert np.array_equal(h[0, 1], [2, 3, 4, 5, 6, 7])  # x[1], x[2], x[3]
    with pytest.raises(AnalysisError, match="n_delays"):
        hankel_embed(x, 6)


def test_dmd_recovers_the_linear_map():
    x = simulate(ROTATION, n_out=3, seed=2)
    eig = np.sort_complex(np.linalg.eigvals(dmd_operator(x, n_delays=1, rank=3)))
    true = np.sort_complex(np.linalg.eigvals(expm(ROTATION * DT)))
    assert np.allclose(eig, true, atol=5e-3)


def test_angular_procrustes_distance_is_invariant_to_orthogonal_conjugation():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(5, 5))
    rot = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    reflect = rot @ np.diag([-1.0, 1, 1, 1, 1])  # the other component of O(5)
    for q in (rot, reflect):
        assert angular_procrustes_distance(a, q @ a @ q.T) < 1e-4
    assert angular_procrustes_distance(a, a.T @ a) > 0.1
    # closed form for symmetric P vs -P: the best C pairs P's eigenvalues in opposite order
    spd = a @ a.T + np.eye(5)
    lam = np.linalg.eigvalsh(spd)
    expected = np.arccos(-np.sum(lam * lam[::-1]) / np.sum(lam**2))
    assert angular_procrustes_distance(spd, -spd) == pytest.approx(expected, abs=1e-6)


def test_dsa_zero_for_rotated_copy_positive_for_other_dynamics():
    x = simulate(ROTATION, seed=4)
    q = np.linalg.qr(np.random.default_rng(5).normal(size=(10, 10)))[0]
    kw = {"n_delays": 1, "rank": 3}
    rotated = dsa_distance(x, x @ q, **kw)
    same = dsa_distance(x, simulate(ROTATION, seed=6), **kw)  # same dynamics, other starts/embedding/noise
    other = dsa_distance(x, simulate(DECAY, seed=6), **kw)
    assert rotated < 1e-4
    for variant in DSA_VARIANTS:
        assert dsa_distance(x, x @ q, variant=variant, **kw) < 1e-4  # orthogonal copies: 0 in every variant
    assert other > 0.05
    assert other > 10 * same


def test_dsa_with_delays_separates_rotation_from_decay():
    x = simulate(ROTATION, seed=7)
    kw = {"n_delays": 4, "rank": 3}
    assert dsa_distance(x, simulate(ROTATION, seed=8), **kw) < dsa_distance(x, simulate(DECAY, seed=8), **kw)


# ---- known answers for DSA as Ostrow et al. (2023) define it: A_v in whitened coordinates, not A - I
TURN = np.pi / 6  # discrete-time maps, coarse enough that the operators are far from the identity
ROTATION_MAP = np.array([[0.98 * np.cos(TURN), -0.98 * np.sin(TURN), 0.0],
                         [0.98 * np.sin(TURN), 0.98 * np.cos(TURN), 0.0], [0.0, 0.0, 0.9]])
DECAY_MAP = np.diag([0.7, 0.5, 0.9])  # same slowest mode, no rotation


def iterate(a: np.ndarray, *, seed: int, n_trial: int = 10, n_time: int = 40) -> np.ndarray:
    """(trial, time, 3) trajectories of z[t+1] = a z[t] from random starts."""
    rng = np.random.default_rng(seed)
    z = np.zeros((n_trial, n_time, len(a)))
    z[:, 0] = rng.normal(size=(n_trial, len(a)))
    for t in range(1, n_time):
        z[:, t] = z[:, t - 1] @ a.T
    return z


def recoordinated(x: np.ndarray, *, seed: int, n_out: int = 10, noise: float = 1e-3) -> np.ndarray:
    """``x' = M x`` with a random, invertible, non-orthogonal ``M`` (n_out x 3), plus observation noise."""
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n_out, x.shape[-1])) * np.array([5.0, 1.0, 0.2])  # anisotropic: far from orthogonal
    return x @ m.T + noise * rng.normal(size=(*x.shape[:2], n_out))


KNOWN = {"n_delays": 1, "rank": 3}


def test_dsa_is_zero_for_a_non_orthogonally_recoordinated_copy():
    x = iterate(ROTATION_MAP, seed=0)
    copy = dsa_distance(x, recoordinated(x, seed=1), **KNOWN)
    rotation_vs_decay = dsa_distance(x, iterate(DECAY_MAP, seed=0), **KNOWN)
    assert rotation_vs_decay > 0.3  # radians
    assert copy < 0.05 * rotation_vs_decay


def test_dsa_compares_a_v_not_a_minus_identity():
    x = iterate(ROTATION_MAP, seed=2)
    a_v = [dmd_operator(z, n_delays=1, rank=3) for z in (x, recoordinated(x, seed=3))]
    # the whitened operators of a system and its re-coordinated copy are orthogonally similar
    assert angular_procrustes_distance(*a_v) < 1e-3
    assert dsa_distance(x, recoordinated(x, seed=3), **KNOWN) == pytest.approx(
        angular_procrustes_distance(*a_v), abs=1e-6)


def test_dsa_delays_keep_the_known_answers():
    x = iterate(ROTATION_MAP, seed=4)
    kw = {"n_delays": 3, "rank": 3}
    assert dsa_distance(x, recoordinated(x, seed=5), **kw) < 0.05 * dsa_distance(x, iterate(DECAY_MAP, seed=5), **kw)


def test_legacy_variant_is_kept_and_is_not_invariant_to_recoordination():
    x = iterate(ROTATION_MAP, seed=0)
    legacy = {"variant": "projected_minus_identity", **KNOWN}
    copy = dsa_distance(x, recoordinated(x, seed=1), **legacy)
    rotation_vs_decay = dsa_distance(x, iterate(DECAY_MAP, seed=0), **legacy)
    assert copy > 0.3 * rotation_vs_decay  # A_z - I in unwhitened PCA coordinates: not ~0 for x' = M x
    with pytest.raises(AnalysisError, match="variant"):
        dsa_distance(x, x, variant="nope")
    with pytest.raises(AnalysisError, match="basis"):
        dmd_operator(x, basis="nope")
