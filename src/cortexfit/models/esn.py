"""The ``esn`` family: a fixed random leaky reservoir; only a linear readout is trained, in closed form.

Update (leak rate ``a``)::

    x_t = (1 - a) x_{t-1} + a tanh(W x_{t-1} + W_in u_t + b)

``W`` is a sparse random matrix (fraction ``sparsity`` of zeros) scaled to ``spectral_radius``.  A spectral
radius below 1 is a heuristic for the echo-state property (the state forgets its start), not a guarantee: the
contraction of one step is bounded by the largest *singular* value of ``W`` (1.88 for a radius of 0.9 at the
defaults), which can exceed 1.  :func:`measure_washout` measures how long a given reservoir takes to forget.
``W_in`` is uniform in ``[-input_scaling, input_scaling]``; ``b`` uniform in ``[-bias_scaling, bias_scaling]``.
All are buffers drawn from their own generator seeded by ``seed`` (not trained by gradient).  The forward run
(:func:`reservoir_states`) uses ``W`` as sparse CSR on the CPU, runs column groups in parallel threads and cuts
few long sequences into time chunks whose washout is measured (:func:`probe_washout`) and checked at every
seam.  Readouts are fitted by :func:`~cortexfit.models.readouts.fit_readout` (ridge, k-fold CV over trials).

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
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cortexfit.core.errors import ConfigError
from cortexfit.core.runtime import limit_threads
from cortexfit.models.base import Dynamics, register
from cortexfit.models.readouts import RidgeReadout, fit_readout

__all__ = ["ESNDynamics", "ESNOptions", "make_reservoir", "measure_washout", "probe_washout", "reservoir_states",
           "run_reservoir"]


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

    ``W`` may be dense or sparse CSR.  The loop keeps states as (N, B) columns and writes each step in place
    into the output, with ``tanh(z) = 2 sigmoid(2 z) - 1`` (torch's vectorised float32 ``sigmoid`` is several
    times faster than its ``tanh``; the result differs by float rounding only).  No autograd graph.

    Examples
    --------
    >>> X = torch.zeros(3, 1, 2)
    >>> run_reservoir(X, torch.eye(2), torch.ones(1, 2), 1.0)[-1]
    tensor([[0.5663, 0.5663]])
    """
    with torch.no_grad():
        X2 = X.permute(0, 2, 1).mul(2.0).contiguous()  # (T, N, B), doubled for sigmoid(2 z)
        out = torch.empty_like(X2)
        x = x0.t().to(X2.dtype).contiguous()
        sparse = W.layout == torch.sparse_csr
        for t in range(X2.shape[0]):
            x = _step(X2[t], W, x, out[t], leak, sparse)
    return out.permute(0, 2, 1)


def _step(D2: Tensor, W: Tensor, x: Tensor, z: Tensor, leak: float, sparse: bool) -> Tensor:
    """One step on (N, columns) states, written into ``z``: ``z = lerp(x, tanh(D2 / 2 + W x), leak)``.

    ``D2`` is twice the drive ``W_in u + b``, so that ``tanh(a) = 2 sigmoid(2 a) - 1`` needs no extra product.
    """
    if sparse:
        torch.add(D2, torch.mm(W, x, out=z), alpha=2.0, out=z)
    else:
        torch.addmm(D2, W, x, alpha=2.0, out=z)
    z.sigmoid_().mul_(2.0).sub_(1.0)  # tanh
    if leak != 1.0:
        torch.lerp(x, z, leak, out=z)
    return z


def _agree_tol(dtype: torch.dtype) -> float:
    """States from two starts "agree" below this (about 10 float32 ulps of a unit state; far below in float64)."""
    return 1e-6 if dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-9


@torch.no_grad()
def probe_washout(W: Tensor, drive: Tensor, leak: float, *, tol: float | None = None, limit: int = 2000,
                  block: int = 32, seed: int = 0) -> int | None:
    """Washout measured on a drive ``(T, N)`` (= ``W_in u + b``), stopping as soon as the runs agree.

    Like :func:`measure_washout` (a zero start and three random starts in [-1, 1]^N, driven alike) but run in
    blocks of ``block`` steps that stop once the largest difference has stayed below ``tol`` (default
    :func:`_agree_tol` of the dtype) for a whole block; None if they still differ after ``limit`` steps.

    Examples
    --------
    >>> W, u = 0.5 * torch.eye(3, dtype=torch.float64), torch.zeros(100, 1, dtype=torch.float64)
    >>> W_in, b = torch.ones(3, 1, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    >>> probe_washout(W, u @ W_in.t() + b, 1.0), measure_washout(W, W_in, b, 1.0, u, tol=1e-9)
    (29, 30)
    """
    tol = _agree_tol(drive.dtype) if tol is None else tol
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(4, W.shape[0], generator=gen, dtype=torch.float64).mul_(2).sub_(1).to(drive)
    x[0] = 0
    last_above = -1
    for t0 in range(0, min(limit, drive.shape[0]), block):
        d = drive[t0 : min(t0 + block, limit)]
        states = run_reservoir(d[:, None].expand(-1, 4, -1), W, x, leak)
        x = states[-1]
        above = torch.nonzero((states - states[:, :1]).abs().amax(dim=(1, 2)) >= tol).flatten()
        if len(above):
            last_above = t0 + int(above[-1])
        elif t0 - last_above >= block:  # a whole block below tol
            return last_above + 1
    return None


def reservoir_states(u: Tensor, W_in: Tensor, b: Tensor, W: Tensor, x0: Tensor, leak: float, *,
                     workers: int | None = None, columns: int | None = None, tol: float | None = None) -> Tensor:
    """Reservoir states ``(B, T, N)`` for inputs ``u`` ``(B, T, I)`` from ``x0`` ``(B, N)``: the forward run.

    The work is split into column groups run in ``workers`` Python threads with one torch thread each (CPU;
    ``workers`` None: ``torch.get_num_threads()``): independent loops need no synchronisation per step, unlike
    intra-op threads, which wait for each other at every small product (very slow on a shared CPU).  Each
    loop computes the drive ``W_in u + b`` for blocks of 64 steps, keeps its states as ``(N, columns)`` and
    writes every step straight into the result (nothing of size ``T x N`` besides it).

    Few long sequences (fewer than ``columns`` / 2; default 16 per worker on the CPU, 1024 elsewhere) are also
    cut in time into chunks run side by side.  Chunk 0 starts from ``x0``; chunk ``c >= 1`` starts ``overlap``
    steps before its first step, from zeros.  The overlap is :func:`probe_washout` of the first sequence plus a
    quarter and is *checked* at every seam: the state a chunk reaches at the step before its own first one
    must agree (to ``tol``, as in the probe) with the previous chunk's; if a seam disagrees the run is redone
    with twice the overlap, then without chunks.  The states then match the sequential run to float rounding.

    Examples
    --------
    >>> W, W_in, b = 0.5 * torch.eye(3), torch.ones(3, 1), torch.zeros(3)
    >>> u, x0 = torch.randn(1, 3000, 1), torch.zeros(1, 3)
    >>> exact = run_reservoir((u @ W_in.t() + b).transpose(0, 1), W, x0, 0.5).transpose(0, 1)
    >>> fast = reservoir_states(u, W_in, b, W, x0, 0.5, workers=1, columns=8)
    >>> bool((fast - exact).abs().max() < 1e-6)
    True
    """
    B, T, _ = u.shape
    cpu = u.device.type == "cpu"
    workers = max(1, workers or torch.get_num_threads()) if cpu else 1
    columns = columns or (16 * workers if cpu else 1024)
    tol = _agree_tol(W.dtype) if tol is None else tol
    u = u.to(W.dtype)
    if B < columns // 2 and T >= 512:
        limit = min(T // 4, 4000)
        with limit_threads(1 if cpu else None):  # four columns: one thread is fastest
            w = probe_washout(W, torch.addmm(b, u[0, :limit], W_in.t()), leak, tol=tol, limit=limit)
        overlap = None if w is None else w + w // 4 + 8
        for _ in range(2):
            n = 0 if overlap is None else min(columns // B, T // (4 * overlap))
            if n < 2:
                break
            assert overlap is not None  # n >= 2 only with an overlap
            out = _run_groups(u, W_in, b, W, x0, leak, workers, n, -(-T // n), overlap, tol)
            if out is not None:
                return out
            overlap *= 2
    out = _run_groups(u, W_in, b, W, x0, leak, workers, 1, T, 0, tol)
    assert out is not None  # one chunk: no seams
    return out


def _run_groups(u: Tensor, W_in: Tensor, b: Tensor, W: Tensor, x0: Tensor, leak: float, workers: int, n: int,
                L: int, overlap: int, tol: float) -> Tensor | None:
    """One run of ``n`` chunks of ``L`` steps per sequence (see :func:`reservoir_states`); None if a seam disagrees.

    Chunk ``c`` runs steps ``[cL - overlap, (c + 1) L)`` and owns ``[cL, (c + 1) L)``; chunk 0 is set to ``x0``
    before its own first step (its ``overlap`` steps before are idle work).
    """
    B, T, I = u.shape
    N, span = W.shape[0], L + overlap
    up = torch.cat([u.new_zeros(B, overlap, I), u, u.new_zeros(B, n * L - T, I)], dim=1)  # u[t] = up[t + overlap]
    res = u.new_empty(B, n, L, N)
    seams = u.new_zeros(B, n, N)
    k = min(workers, n if n >= workers else B)
    if n >= workers:  # groups of chunks, all sequences
        groups = [(int(c0), int(c1), 0, B) for c0, c1 in itertools.pairwise(np.linspace(0, n, k + 1).astype(int))]
    else:  # groups of sequences, all chunks
        groups = [(0, n, int(b0), int(b1)) for b0, b1 in itertools.pairwise(np.linspace(0, B, k + 1).astype(int))]

    def work(g: tuple[int, int, int, int]) -> None:
        c0, c1, b0, b1 = g
        U = torch.stack([up[b0:b1, c * L : c * L + span] for c in range(c0, c1)])  # (nc, nb, span, I)
        U = U.permute(2, 0, 1, 3).reshape(span, -1, I)  # columns ordered (chunk, sequence)
        _run_columns(U, 2 * W_in, 2 * b, W, x0[b0:b1] if c0 == 0 else None, leak, res[b0:b1, c0:c1],
                     seams[b0:b1, c0:c1], overlap)

    if len(groups) == 1:
        with limit_threads(1 if u.device.type == "cpu" else None):
            work(groups[0])
    else:
        with limit_threads(1), ThreadPoolExecutor(len(groups)) as pool:
            list(pool.map(work, groups))
    if n > 1 and float((seams[:, 1:] - res[:, :-1, L - 1]).abs().max()) >= tol:
        return None
    return res.view(B, n * L, N)[:, :T]


@torch.no_grad()
def _run_columns(U: Tensor, W_in2: Tensor, b2: Tensor, W: Tensor, x0: Tensor | None, leak: float, dest: Tensor,
                 seam: Tensor, overlap: int, block: int = 64) -> None:
    """The loop of one column group: ``U`` (span, nc * nb, I) inputs, ``dest`` (nb, nc, L, N) owned states,
    ``seam`` (nb, nc, N) the states before step ``overlap``; ``W_in2``, ``b2`` are doubled (sigmoid(2 z))."""
    span, cols, I = U.shape
    nb, nc, _, N = dest.shape
    x, z = U.new_zeros(N, cols), U.new_empty(N, cols)
    sparse = W.layout == torch.sparse_csr
    for t0 in range(0, span, block):
        D = torch.addmm(b2, U[t0 : t0 + block].reshape(-1, I), W_in2.t())  # (steps * cols, N): 2 (W_in u + b)
        for t in range(t0, min(t0 + block, span)):
            if t == overlap:
                seam.copy_(x.t().view(nc, nb, N).transpose(0, 1))
                if x0 is not None:  # chunk 0 starts here
                    x[:, :nb] = x0.t()
            _step(D[(t - t0) * cols : (t - t0 + 1) * cols].t(), W, x, z, leak, sparse)
            if t >= overlap:
                dest[:, :, t - overlap].copy_(z.t().view(nc, nb, N).transpose(0, 1))
            x, z = z, x


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

    weight_hh: Tensor  # buffers: the fixed reservoir
    weight_ih: Tensor
    bias: Tensor

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

    def step_jacobian(self, state: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """``dF/ds = (1 - a) I + a diag(1 - z^2) W`` and ``F`` in closed form (no autograd: the fixed-point
        search and the dynamics diagnostics of a 400-unit reservoir spent most of their time in ``jacrev``)."""
        a = self.options.leak_rate
        z = torch.tanh(state @ self.weight_hh.t() + u @ self.weight_ih.t() + self.bias)
        J = (a * (1.0 - z * z)).unsqueeze(-1) * self.weight_hh
        if a != 1.0:
            J.diagonal(dim1=-2, dim2=-1).add_(1.0 - a)
        return J, (z if a == 1.0 else (1.0 - a) * state + a * z)

    def forward(self, u: Tensor, state0: Tensor | None = None) -> Tensor:
        """(B, T, I) -> (B, T, H) without an autograd graph (falls back to :meth:`step` if ``u`` needs grad)."""
        self._check_input(u)
        if u.requires_grad or (state0 is not None and state0.requires_grad):
            return self.forward_reference(u, state0)
        x0 = self.initial_state(u.shape[0]) if state0 is None else state0
        return reservoir_states(u, self.weight_ih, self.bias, self.run_weight(), x0, self.options.leak_rate)

    def run_weight(self) -> Tensor:
        """W as the forward run uses it: sparse CSR (32-bit indices) on the CPU when at most 30% of it is
        non-zero, else dense.

        Cached (not a buffer: the state dict keeps the dense W) and rebuilt when W changes or moves.
        """
        W = self.weight_hh
        key = (W.device, W.dtype, W.data_ptr(), W._version)
        cached = getattr(self, "_run_weight", None)
        if cached is None or cached[0] != key:
            run = W
            if W.device.type == "cpu" and int(torch.count_nonzero(W)) <= 0.3 * W.numel():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                    csr = W.to_sparse_csr()
                    run = torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(),
                                                  csr.shape)  # 32-bit indices: less to read per product
            cached = (key, run)
            self._run_weight = cached
        return cached[1]

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
    20
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
