"""A Poisson GLM for many units at once (L-BFGS on scikit-learn's ``PoissonRegressor`` objective).

Used by the NLB baselines (:mod:`cortexfit.fit.baselines`) and the echo-state family's Poisson readout.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(500, 1))
>>> y = rng.poisson(np.exp(0.3 * x + 0.1)).astype(float)
>>> w, b = fit_poisson_glm(x, y, alpha=0.0)
>>> w.shape, b.shape
((1, 1), (1,))
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from cortexfit.core.errors import FitError


def fit_poisson_glm(
    x: np.ndarray,
    y: np.ndarray,
    *,
    alpha: float,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    max_iter: int = 500,
    tol: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``y[:, u] ~ Poisson(exp(x @ w[:, u] + b[u]))`` for all units at once.

    Minimises, per unit, scikit-learn's ``PoissonRegressor`` objective
    ``mean_i(exp(eta) - y eta) + alpha / 2 * ||w||^2`` (intercept not penalised) over the bins where ``y`` is
    not NaN, summed over units, with :func:`scipy.optimize.minimize` (L-BFGS-B).

    Parameters
    ----------
    x : numpy.ndarray
        ``(n, p)`` finite features.
    y : numpy.ndarray
        ``(n, units)`` counts; NaN entries are left out of that unit's fit.
    alpha : float
        L2 penalty.
    init : tuple of arrays, optional
        Starting ``(w, b)``; default ``w = 0`` and ``b = log(mean count)``.
    max_iter, tol : int, float
        L-BFGS iteration limit and gradient tolerance.

    Returns
    -------
    tuple of numpy.ndarray
        ``w`` of shape ``(p, units)`` and ``b`` of shape ``(units,)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 2))
    >>> y = rng.poisson(np.exp(x @ np.array([[0.5], [-0.3]]) + 0.2)).astype(float)
    >>> w, b = fit_poisson_glm(x, y, alpha=0.0)
    >>> np.round(w.ravel(), 1).tolist(), round(float(b[0]), 1)
    ([0.5, -0.3], 0.2)
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    p, units = x.shape[1], y.shape[1]
    observed = ~np.isnan(y)
    n_u = observed.sum(axis=0)
    if np.any(n_u == 0):
        raise FitError(f"Poisson GLM: {int((n_u == 0).sum())} unit(s) have no observed bins to fit")
    y0 = np.where(observed, y, 0.0)
    m = None if observed.all() else observed.astype(float)
    scale = 1.0 / n_u
    if init is None:
        b0 = np.log(np.maximum(y0.sum(axis=0) * scale, 1e-8))
        theta0 = np.concatenate([np.zeros(p * units), b0])
    else:
        theta0 = np.concatenate([np.asarray(init[0], float).ravel(), np.asarray(init[1], float)])

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: p * units].reshape(p, units)
        b = theta[p * units :]
        eta = np.minimum(x @ w + b, 30.0)
        mu = np.exp(eta)
        if m is not None:
            mu *= m
        loss = float(((mu - y0 * eta).sum(axis=0) * scale).sum()) + 0.5 * alpha * float((w**2).sum())
        resid = (mu - y0) * scale
        grad_w = x.T @ resid + alpha * w
        return loss, np.concatenate([grad_w.ravel(), resid.sum(axis=0)])

    sol = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": int(max_iter), "gtol": tol, "ftol": 1e-11})
    return sol.x[: p * units].reshape(p, units), sol.x[p * units :]


def glm_predict(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Expected counts ``exp(x @ w + b)`` of a fitted GLM (log-rate capped at 30)."""
    return np.exp(np.minimum(x @ w + b, 30.0))
