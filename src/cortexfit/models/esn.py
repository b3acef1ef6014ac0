"""The ``esn`` family: a fixed random leaky reservoir; only a linear readout is trained, in closed form.

Update (leak rate ``a``)::

    x_t = (1 - a) x_{t-1} + a tanh(W x_{t-1} + W_in u_t + b)

``W`` is a sparse random matrix (fraction ``sparsity`` of zeros) scaled to ``spectral_radius``.  A spectral
radius below 1 is a heuristic for the echo-state property (the state forgets its start), not a guarantee: the
contraction of one step is bounded by the largest *singular* value of ``W`` (1.88 for a radius of 0.9 at the
defaults), which can exceed 1.  :func:`measure_washout` measures how long a given reservoir takes to forget.
``W_in`` is
uniform in ``[-input_scaling, input_scaling]``; ``b`` uniform in ``[-bias_scaling, bias_scaling]``.  All are
buffers drawn from their own generator seeded by ``seed`` (not trained by gradient).  Readouts are fitted by
:func:`~cortexfit.models.readouts.fit_readout` (ridge, k-fold CV over trials).

Examples
--------
>>> import torch
>>> from cortexfit.models import build_dynamics
>>> esn = build_dynamics("esn", input_size=2, hidden_size=50, spectral_radius=0.8, seed=1)
>>> u, y = torch.randn(6, 40, 2), torch.randn(6, 40, 1)
>>> readout = esn.fit_readout(esn(u), y)
>>> readout(esn(u)).shape
torch.Size([6, 40, 1])
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cortexfit.core.errors import ConfigError
from cortexfit.core.runtime import limit_threads
from cortexfit.models.base import Dynamics, register
from cortexfit.models.readouts import RidgeReadout, fit_readout

__all__ = ["ESNDynamics", "ESNOptions", "make_reservoir", "measure_washout", "run_reservoir", "run_reservoir_parallel"]


@dataclass(frozen=True, kw_only=True)
class ESNOptions:
    """Options of ``esn``.

    spectral_radius : of W (default 0.9).
    leak_rate : a in (0, 1].
    input_scaling, bias_scaling : half-widths of the uniform W_in and b.
    sparsity : fraction of zero entries of W in [0, 1).
    seed : reservoir seed (independent of the global torch seed).
    ridge : fixed ridge value for :meth:`ESNDynamics.fit_readout`; None = chosen by cross-validation.
    cv_folds : k of the k-fold cross-validation over trials.
    """

    spectral_radius: float = 0.9
    leak_rate: float = 0.5
    input_scaling: float = 1.0
    bias_scaling: float = 0.0
    sparsity: float = 0.9
    seed: int = 0
    ridge: float | None = None
    cv_folds: int = 5

    def __post_init__(self) -> None:
        checks = {
            "spectral_radius": self.spectral_radius > 0,
            "leak_rate": 0 < self.leak_rate <= 1,
            "input_scaling": self.input_scaling >= 0,
            "bias_scaling": self.bias_scaling >= 0,
            "sparsity": 0 <= self.sparsity < 1,
            "ridge": self.ridge is None or self.ridge >= 0,
            "cv_folds": self.cv_folds >= 2,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"model 'esn': invalid value for option {bad[0]}={getattr(self, bad[0])!r}")


def make_reservoir(n: int, n_in: int, o: ESNOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W (n, n), W_in (n, n_in), b (n,)) float64 arrays drawn from ``numpy.random.default_rng(o.seed)``.

    Examples
    --------
    >>> W, W_in, b = make_reservoir(100, 2, ESNOptions(spectral_radius=0.5))
    >>> round(float(np.abs(np.linalg.eigvals(W)).max()), 6)
    0.5
    """
    rng = np.random.default_rng(o.seed)
    W = rng.standard_normal((n, n)) * (rng.random((n, n)) >= o.sparsity)
    radius = _spectral_radius(W)
    if radius > 0:
        W *= o.spectral_radius / radius
    W_in = rng.uniform(-o.input_scaling, o.input_scaling, (n, n_in))
    b = rng.uniform(-o.bias_scaling, o.bias_scaling, n)
    return W, W_in, b


def _spectral_radius(W: np.ndarray) -> float:
    if W.shape[0] > 200:
        import scipy.sparse
        import scipy.sparse.linalg

        try:
            vals = scipy.sparse.linalg.eigs(scipy.sparse.csr_matrix(W), k=2, which="LM", return_eigenvectors=False,
                                            v0=np.ones(W.shape[0]), tol=1e-9, maxiter=50 * W.shape[0])
            return float(np.abs(vals).max())
        except scipy.sparse.linalg.ArpackNoConvergence:
            pass
    return float(np.abs(np.linalg.eigvals(W)).max())


def run_reservoir(X: Tensor, W: Tensor, x0: Tensor, leak: float) -> Tensor:
    """Iterate the reservoir over a time-major drive ``X = W_in u + b``: (T, B, N), (B, N) -> (T, B, N).

    ``W`` may be dense or sparse CSR.  The loop keeps states as (N, B) columns so each step is one
    ``addmm(X_t, W, x)`` (a sparse-times-dense product for CSR).  No autograd graph is recorded.

    Examples
    --------
    >>> X = torch.zeros(3, 1, 2)
    >>> run_reservoir(X, torch.eye(2), torch.ones(1, 2), 1.0)[-1]
    tensor([[0.5663, 0.5663]])
    """
    with torch.no_grad():
        Xn = X.permute(0, 2, 1).contiguous()  # (T, N, B)
        out = torch.empty_like(Xn)
        x = x0.t().contiguous()
        for t in range(Xn.shape[0]):
            z = torch.addmm(Xn[t], W, x).tanh_()
            if leak == 1.0:
                x = out[t].copy_(z)
            else:
                x = torch.lerp(x, z, leak, out=out[t])
    return out.permute(0, 2, 1)


def run_reservoir_parallel(X: Tensor, W: Tensor, x0: Tensor, leak: float, workers: int | None = None) -> Tensor:
    """:func:`run_reservoir` with the batch split over ``workers`` Python threads, one torch thread each (CPU).

    Independent loops in Python threads (torch releases the GIL) need no synchronisation per step, unlike
    intra-op threads, which wait for each other at every small product (very slow when the CPU is shared).
    ``workers`` None: ``torch.get_num_threads()``.  On other devices, or with one worker, a plain call.

    Examples
    --------
    >>> X, W = torch.randn(5, 4, 3), 0.5 * torch.eye(3)
    >>> torch.equal(run_reservoir_parallel(X, W, torch.zeros(4, 3), 0.5, workers=2),
    ...             run_reservoir(X, W, torch.zeros(4, 3), 0.5))
    True
    """
    workers = min(workers or torch.get_num_threads(), X.shape[1])
    if X.device.type != "cpu" or workers <= 1:
        return run_reservoir(X, W, x0, leak)
    bounds = np.linspace(0, X.shape[1], workers + 1).astype(int)
    parts = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    with limit_threads(1), ThreadPoolExecutor(workers) as pool:  # run_reservoir disables grad in each thread
        outs = list(pool.map(lambda ab: run_reservoir(X[:, ab[0] : ab[1]], W, x0[ab[0] : ab[1]], leak), parts))
    return torch.cat(outs, dim=1)


@register("esn")
class ESNDynamics(Dynamics):
    """Echo-state reservoir as a :class:`Dynamics` (state = reservoir activity, S = H).

    Examples
    --------
    >>> import torch
    >>> from cortexfit.models import build_dynamics
    >>> net = build_dynamics("esn", input_size=1, hidden_size=20)
    >>> [p for p in net.parameters()]
    []
    """

    Options = ESNOptions

    def __init__(self, *, input_size: int, hidden_size: int, options: ESNOptions | None = None) -> None:
        super().__init__(input_size=input_size, hidden_size=hidden_size, options=options)
        W, W_in, b = make_reservoir(self.hidden_size, self.input_size, self.options)
        self.register_buffer("weight_hh", torch.from_numpy(W).float())
        self.register_buffer("weight_ih", torch.from_numpy(W_in).float())
        self.register_buffer("bias", torch.from_numpy(b).float())

    def recurrent_weight(self) -> Tensor:
        """The fixed reservoir matrix W (H, H)."""
        return self.weight_hh

    def step(self, state: Tensor, u: Tensor) -> Tensor:
        """One leaky reservoir update (differentiable in ``state`` and ``u`` for Jacobians)."""
        a = self.options.leak_rate
        z = torch.tanh(state @ self.weight_hh.t() + u @ self.weight_ih.t() + self.bias)
        return z if a == 1.0 else (1.0 - a) * state + a * z

    def forward(self, u: Tensor, state0: Tensor | None = None) -> Tensor:
        """(B, T, I) -> (B, T, H) without an autograd graph (falls back to :meth:`step` if ``u`` needs grad)."""
        self._check_input(u)
        if u.requires_grad or (state0 is not None and state0.requires_grad):
            return self.forward_reference(u, state0)
        B, T = u.shape[:2]
        x0 = self.initial_state(B) if state0 is None else state0
        X = torch.addmm(self.bias, u.transpose(0, 1).reshape(T * B, -1), self.weight_ih.t()).view(T, B, -1)
        return run_reservoir_parallel(X, self.weight_hh, x0, self.options.leak_rate).transpose(0, 1)

    def fit_readout(self, states: Tensor, targets: Tensor, alphas: list[float] | None = None) -> RidgeReadout:
        """Ridge readout on states from :meth:`forward`; the ridge is ``options.ridge`` or chosen by CV.

        Examples
        --------
        >>> import torch
        >>> from cortexfit.models import build_dynamics
        >>> net = build_dynamics("esn", input_size=1, hidden_size=10, ridge=1e-3)
        >>> net.fit_readout(net(torch.randn(3, 20, 1)), torch.randn(3, 20, 2)).alpha
        0.001
        """
        if alphas is None and self.options.ridge is not None:
            alphas = [self.options.ridge]
        return fit_readout(states, targets, alphas, folds=self.options.cv_folds)


@torch.no_grad()
def measure_washout(W: Tensor, W_in: Tensor, b: Tensor, leak: float, inputs: Tensor, *, tol: float = 1e-7,
                    n_starts: int = 4, seed: int = 0) -> int | None:
    """Steps after which runs from different initial states agree to ``tol`` (the echo-state washout).

    The reservoir ``x <- (1 - leak) x + leak tanh(W x + W_in u + b)`` is driven by the same ``inputs``
    ``(T, I)`` from ``n_starts`` random states in [-1, 1]^N; the result is the first step from which the
    largest difference between runs stays below ``tol``, or None if they still differ after ``T`` steps.

    Examples
    --------
    >>> W = 0.5 * torch.eye(3); W_in = torch.ones(3, 1); b = torch.zeros(3)
    >>> measure_washout(W, W_in, b, 1.0, torch.zeros(100, 1), tol=1e-6)
    19
    """
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n_starts, W.shape[0], generator=gen, dtype=inputs.dtype) * 2 - 1
    drive = (inputs @ W_in.t() + b)[:, None].expand(-1, n_starts, -1)
    states = run_reservoir(drive.contiguous(), W, x0, leak)  # (T, n_starts, N)
    spread = (states - states[:, :1]).abs().amax(dim=(1, 2))
    above = torch.nonzero(spread >= tol).flatten()
    if len(above) == 0:
        return 0
    last = int(above[-1]) + 1
    return None if last >= len(spread) else last
