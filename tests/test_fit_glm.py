"""Tests of cortexfit.fit.glm: the many-unit Poisson GLM."""

from __future__ import annotations

import numpy as np
import pytest

from cortexfit.fit.glm import fit_poisson_glm


def test_glm_matches_sklearn_poisson_regressor_and_masks_nan():
    from sklearn.linear_model import PoissonRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4))
    y = rng.poisson(np.exp(x @ rng.normal(0, 0.4, (4, 3)) - 0.5)).astype(float)
    w, b = fit_poisson_glm(x, y, alpha=0.05, tol=1e-10)
    for u in range(3):
        ref = PoissonRegressor(alpha=0.05, tol=1e-10, max_iter=2000).fit(x, y[:, u])
        assert np.allclose(w[:, u], ref.coef_, atol=1e-5) and b[u] == pytest.approx(ref.intercept_, abs=1e-5)
    y_nan = y.copy()
    y_nan[:200, 1] = np.nan  # NaN rows leave that unit's fit only
    w2, b2 = fit_poisson_glm(x, y_nan, alpha=0.05, tol=1e-10)
    ref = PoissonRegressor(alpha=0.05, tol=1e-10, max_iter=2000).fit(x[200:], y[200:, 1])
    assert np.allclose(w2[:, 1], ref.coef_, atol=1e-5) and b2[1] == pytest.approx(ref.intercept_, abs=1e-5)
    assert np.allclose(w2[:, 0], w[:, 0], atol=1e-6)
