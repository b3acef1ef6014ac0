"""Fixed and slow points of any :class:`~cortexfit.models.base.Dynamics` (the solver behind ``cortexfit fixed-points``).

Minimises the speed ``q(s) = 1/2 ||F(s, u*) - s||^2`` of the discrete-time map ``F = dynamics.step`` under a
constant input ``u*``, from a batch of initial states sampled from the model's own trajectories plus noise
(Sussillo & Barak 2013).  All candidates are optimised together as one batch, on GPU when present:

1. **Adam** (float32) on ``sum(q)`` until ``switch_fraction`` of the candidates have
   ``q < switch_q * scale^2``; every ``merge_every`` iterations, candidates that have coalesced (closer than
   ``premerge_tol * scale`` and each with ``||F(s) - s||`` below that radius) are merged into the lowest-``q``
   one, so the batch shrinks to the few distinct candidates;
2. **Levenberg-Marquardt** on ``G(s) = F(s) - s`` with batched autograd Jacobians (``vmap(jacrev)``) and
   ``torch.linalg.solve`` -- a float32 pass, then a float64 polish -- with per-candidate damping (each
   iteration tries the undamped Newton step first and keeps it where it lowers ``q``), so fixed
   points converge quadratically (Newton) while slow points (local minima of ``q`` with ``q > 0``) settle
   where ``q`` stops decreasing; candidates that meet (``unique_tol``) are merged as it goes;
3. candidates with ``q < slow_q * scale^2`` are kept (``point_type`` "fixed" below ``tol_q * scale^2``,
   else "slow"), those farther than ``outlier_distance`` mean radii from the initial states' centroid
   dropped, and duplicates (distance ``< unique_tol * scale`` under the same input) merged, keeping the
   lowest ``q``;
4. Jacobian eigenvalues at each point (LAPACK), the leading eigenvectors by inverse iteration (checked,
   full LAPACK decomposition where a check fails) and a label for the discrete-time map:
   ``stable`` (all ``|lambda| < 1``), ``unstable`` (all ``> 1``) or ``saddle``.

``scale`` is the RMS distance of the initial states from their centroid, so tolerances are unit-free.
The LSTM's joint ``(h, c)`` state, rate+STP's ``(h, u, x)`` and the ESN reservoir are handled alike.

Examples
--------
>>> import torch
>>> from cortexfit.models import build_dynamics
>>> net = build_dynamics("vanilla", input_size=1, hidden_size=2)
>>> with torch.no_grad():
...     _ = net.weight_hh.copy_(2 * torch.eye(2)); _ = net.bias.zero_()
>>> fps = find_fixed_points(net, torch.randn(64, 2, generator=torch.Generator().manual_seed(0)), torch.zeros(1))
>>> sorted(set(fps.label))
['saddle', 'stable', 'unstable']
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor

from cortexfit.analysis.eigen import _eig_top
from cortexfit.analysis.jacobians import batched_jacobian, frozen_copy
from cortexfit.core.errors import AnalysisError, ConfigError

if TYPE_CHECKING:
    from cortexfit.models.base import Dynamics

log = logging.getLogger(__name__)

#: During a stage of the search a progress line goes to the log at least this often (seconds).
LOG_EVERY_S = 15.0


class _Progress:
    """Progress lines of one stage (to the log, which Snakemake keeps): iteration, candidates done, elapsed
    time since the search began and a bound on the stage's time left (its remaining iterations at the mean
    pace so far), at most every :data:`LOG_EVERY_S` seconds."""

    def __init__(self, stage: str, max_iters: int, t0: float) -> None:
        self.stage, self.max_iters, self.t0 = stage, max_iters, t0
        self.start = self.last = time.perf_counter()

    def update(self, it: int, done: int, n: int, what: str = "done") -> None:
        now = time.perf_counter()
        if now - self.last < LOG_EVERY_S:
            return
        self.last = now
        left = (now - self.start) / max(it, 1) * (self.max_iters - it)
        log.info("fixed points: %s iteration %d/%d, %d/%d candidates %s, elapsed %.0f s, at most %.0f s left in "
                 "this stage", self.stage, it, self.max_iters, done, n, what, now - self.t0, left)


@dataclass(frozen=True, kw_only=True)
class FixedPointConfig:
    """Options of the fixed-point search (validated once); tolerances are relative to ``scale``.

    adam_lr : Adam step in units of ``scale / sqrt(S)``, halved for a candidate whose ``q`` has not improved
        for ``patience`` iterations.   adam_max_iters : cap on Adam iterations.
    switch_q, switch_fraction, stall_iters : Adam (in float32) stops once this fraction of the candidates
        has ``q < switch_q * scale^2`` or has stalled (``q`` not halved in ``stall_iters`` iterations).
    premerge_tol, merge_every : coalesced Adam candidates (closer than ``premerge_tol * scale``) are merged
        every ``merge_every`` iterations, so LM runs on the few distinct candidates (0 = never).
    lm_max_iters, lm_lambda0 : LM iteration cap and initial damping (relative to ``diag(J^T J)``).
    lm_stall_iters : an LM candidate above ``slow_q`` not halving ``q`` in this many iterations is done (it creeps
        along a slow manifold and would be discarded; Newton convergence halves ``q`` every step).
    tol_q : "fixed" below ``tol_q * scale^2`` (None: 1e-20 in float64, 1e-10 in float32).
    tol_dq : an LM candidate is done when an accepted step lowers ``q`` by less than this fraction.
    slow_q : keep points with ``q < slow_q * scale^2`` (the rest are discarded).
    unique_tol : merge points closer than ``unique_tol * scale``.
    outlier_distance : drop points farther than this many mean radii from the centroid.
    noise_scale : noise std added to sampled states, relative to the trajectories' per-coordinate std.
    n_eigenvectors, n_pcs : eigenvectors kept per point (largest ``|lambda|`` first); trajectory PCs projected on.
    dtype : "float64" (default) or "float32".   jacobian_chunk : candidates per Jacobian batch.
    """

    adam_lr: float = 1.0
    adam_max_iters: int = 2000
    switch_q: float = 1e-5
    switch_fraction: float = 0.9
    premerge_tol: float = 1e-2
    merge_every: int = 10
    patience: int = 20
    stall_iters: int = 100
    lm_max_iters: int = 100
    lm_stall_iters: int = 10
    lm_lambda0: float = 1e-3
    tol_q: float | None = None
    tol_dq: float = 1e-6
    slow_q: float = 1e-4
    unique_tol: float = 1e-3
    outlier_distance: float = 10.0
    noise_scale: float = 0.5
    n_eigenvectors: int = 3
    n_pcs: int = 10
    dtype: str = "float64"
    jacobian_chunk: int = 512

    def __post_init__(self) -> None:
        positive = ("adam_lr", "switch_q", "lm_lambda0", "tol_dq", "slow_q", "unique_tol", "outlier_distance")
        counts = ("n_pcs", "jacobian_chunk", "merge_every", "patience", "stall_iters", "lm_stall_iters")
        bad = [k for k in positive if not getattr(self, k) > 0] + [k for k in counts if getattr(self, k) < 1]
        non_negative = ("adam_max_iters", "lm_max_iters", "n_eigenvectors", "noise_scale", "premerge_tol")
        bad += [k for k in non_negative if getattr(self, k) < 0]
        bad += ["switch_fraction"] * (not 0 < self.switch_fraction <= 1)
        bad += ["tol_q"] * (self.tol_q is not None and not self.tol_q > 0)
        bad += ["dtype"] * (self.dtype not in ("float32", "float64"))
        if bad:
            raise ConfigError(f"fixed-points: invalid option(s) {', '.join(bad)} (see FixedPointConfig)")

    @property
    def tol_q_value(self) -> float:
        return self.tol_q if self.tol_q is not None else (1e-20 if self.dtype == "float64" else 1e-10)


@dataclass
class FixedPoints:
    """Unique fixed and slow points (numpy arrays; P points, S state, I input dims).

    xstar (P, S), u_star (P, I), q (P,), eigenvalues (P, S) complex sorted by decreasing modulus,
    eigenvectors (P, S, n_eigenvectors) complex (unit columns), label (P,) stable/saddle/unstable,
    point_type (P,) fixed/slow, init_index (P,) the initial state that produced each point; ``info`` holds
    counts, iterations, ``scale`` and timings.
    """

    xstar: np.ndarray
    u_star: np.ndarray
    q: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    label: np.ndarray
    point_type: np.ndarray
    init_index: np.ndarray
    info: dict[str, Any]

    def __len__(self) -> int:
        return len(self.q)

    @property
    def n_stable(self) -> int:
        """Number of stable *fixed* points (slow points excluded)."""
        return int(np.sum((self.label == "stable") & (self.point_type == "fixed")))


def _speed(dyn: Dynamics, x: Tensor, u: Tensor) -> Tensor:
    return 0.5 * (dyn.step(x, u) - x).square().sum(-1)


def _jacobians(dyn: Dynamics, x: Tensor, u: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    parts = [batched_jacobian(dyn, x[i : i + chunk], u[i : i + chunk], return_value=True)
             for i in range(0, len(x), chunk)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _adam(dyn: Dynamics, x0: Tensor, u: Tensor, cfg: FixedPointConfig, scale: float,
          t0: float | None = None) -> tuple[Tensor, Tensor, int]:
    """Batched Adam on sum(q), merging coalesced candidates every ``merge_every`` iterations.

    Returns the surviving candidates' states, their indices into ``x0`` and the iteration count.  Written
    out (a few lines) rather than ``torch.optim.Adam`` so that merged candidates simply leave the batch.
    """
    b1, b2, eps = 0.9, 0.999, 1e-8
    K = len(x0)
    switch, radius = cfg.switch_q * scale**2, cfg.premerge_tol * scale
    x, m, v = x0.clone(), torch.zeros_like(x0), torch.zeros_like(x0)
    lr = torch.full((K, 1), cfg.adam_lr * scale / x0.shape[1] ** 0.5, dtype=x0.dtype, device=x0.device)
    best = torch.full((K,), float("inf"), dtype=x0.dtype, device=x0.device)
    wait = torch.zeros(K, dtype=torch.long, device=x0.device)
    ref, since = best.clone(), wait.clone()
    idx = torch.arange(K, device=x0.device)
    progress = _Progress("Adam", cfg.adam_max_iters, time.perf_counter() if t0 is None else t0)
    what = f"slow or stalled (LM starts at {cfg.switch_fraction:.0%})"
    it = 0
    for it in range(1, cfg.adam_max_iters + 1):
        x.requires_grad_(True)
        q = _speed(dyn, x, u[idx])
        (g,) = torch.autograd.grad(q.sum(), x)
        x, q = x.detach(), q.detach()
        halved = q < ref / 2  # a candidate stalls when its q has not halved in `stall_iters` iterations
        ref, since = torch.where(halved, q, ref), torch.where(halved, 0, since + 1)
        n_slow = int(((q < switch) | (since > cfg.stall_iters)).sum())
        if n_slow / len(q) >= cfg.switch_fraction:
            break  # enough candidates slow (or stalled): hand over to LM
        progress.update(it, n_slow, len(q), what)
        better = q < best * (1 - 1e-3)  # per-candidate plateau: halve its step after `patience` idle steps
        best, wait = torch.where(better, q, best), torch.where(better, 0, wait + 1)
        cut = wait >= cfg.patience
        lr, wait = torch.where(cut[:, None], lr / 2, lr), torch.where(cut, 0, wait)
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        x -= lr * (m / (1 - b1**it)) / ((v / (1 - b2**it)).sqrt() + eps)
        if cfg.premerge_tol > 0 and it % cfg.merge_every == 0:
            keep = torch.as_tensor(_merge(x, u[idx], q, radius, max_q=radius**2 / 2), device=x.device)
            x, m, v, lr, best, wait, ref, since, idx = (t[keep] for t in (x, m, v, lr, best, wait, ref, since, idx))
    if cfg.premerge_tol > 0:
        keep = torch.as_tensor(_merge(x, u[idx], q, radius, max_q=radius**2 / 2), device=x.device)
        x, idx = x[keep], idx[keep]
    return x, idx, it


def _levenberg_marquardt(dyn: Dynamics, x: Tensor, u: Tensor, cfg: FixedPointConfig, tol: float, radius: float,
                         t0: float | None = None, *, creep_q: float = 0.0) -> tuple[Tensor, Tensor, Tensor, int]:
    """Batched LM on G(s) = F(s) - s with per-candidate damping, merging coalesced candidates as it goes.

    Candidates closer than ``radius`` (same input) are merged into the lowest-``q`` one before every iteration
    (``radius`` 0: never); one with ``q > creep_q`` not halving ``q`` in ``cfg.lm_stall_iters`` iterations is
    done.  Returns states, q, the survivors' indices into ``x`` and iterations.
    """
    K, S = x.shape
    x, rows = x.clone(), torch.arange(K, device=x.device)
    with torch.no_grad():
        q = _speed(dyn, x, u)
    lam = torch.full((K,), cfg.lm_lambda0, dtype=x.dtype, device=x.device)
    done = q < tol
    ref, since = q.clone(), torch.zeros(K, dtype=torch.long, device=x.device)
    progress = _Progress(f"Levenberg-Marquardt ({str(x.dtype).removeprefix('torch.')})", cfg.lm_max_iters,
                         time.perf_counter() if t0 is None else t0)
    it = 0
    for it in range(1, cfg.lm_max_iters + 1):
        if radius > 0:
            keep = torch.as_tensor(_merge(x, u, q, radius), device=x.device)
            x, u, q, lam, done, rows, ref, since = (t[keep] for t in (x, u, q, lam, done, rows, ref, since))
        idx = torch.nonzero(~done).squeeze(1)
        if len(idx) == 0:
            break
        x_new, q_new = _trial_steps(dyn, x[idx], u[idx], q[idx], lam[idx], cfg.jacobian_chunk)
        ok = torch.isfinite(q_new) & (q_new < q[idx])
        gain = torch.where(ok, (q[idx] - q_new) / q[idx].clamp_min(1e-300), torch.zeros_like(q_new))
        x[idx[ok]] = x_new[ok]
        q[idx[ok]] = q_new[ok]
        lam[idx] = torch.where(ok, lam[idx] / 3.0, lam[idx] * 4.0).clamp(1e-12, 1e12)
        halved = q[idx] < ref[idx] / 2
        ref[idx], since[idx] = torch.where(halved, q[idx], ref[idx]), torch.where(halved, 0, since[idx] + 1)
        creeping = (since[idx] >= cfg.lm_stall_iters) & (q[idx] > creep_q)  # it would be discarded anyway
        stalled = (ok & (gain < cfg.tol_dq)) | (lam[idx] >= 1e12) | creeping
        done[idx] = stalled | (q[idx] < tol)
        progress.update(it, int(done.sum()), len(done))
    return x, q, rows, it


def _trial_steps(dyn: Dynamics, x: Tensor, u: Tensor, q: Tensor, lam: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """One trial step per candidate (states and their ``q``), ``chunk`` candidates at a time.

    The Newton step ``(J - I)^{-1} G`` first (one LU of the square system, about a third of the work of the
    damped normal equations); where it does not lower ``q`` (or the system is singular) the Levenberg-Marquardt
    step ``(A^T A + lam diag(A^T A))^{-1} A^T G`` with ``A = J - I``, so damping still governs every step that
    Newton's cannot take.
    """
    xs, qs = [], []
    for i in range(0, len(x), chunk):
        xa, ua, qa, la = x[i : i + chunk], u[i : i + chunk], q[i : i + chunk], lam[i : i + chunk]
        A, F = batched_jacobian(dyn, xa, ua, return_value=True)
        A.diagonal(dim1=1, dim2=2).sub_(1.0)  # J - I, in place (a fresh tensor)
        G = (F - xa)[..., None]
        step, info = torch.linalg.solve_ex(A, G)
        x_new = xa - step[..., 0]
        with torch.no_grad():
            q_new = _speed(dyn, x_new, ua)
        b = torch.nonzero((info != 0) | ~torch.isfinite(q_new) | ~(q_new < qa)).squeeze(1)
        if len(b):
            Ab = A[b]
            AtA = Ab.transpose(1, 2) @ Ab
            d = torch.diagonal(AtA, dim1=1, dim2=2)
            damp = la[b, None] * (d + 1e-12 * d.mean(1, keepdim=True))  # Marquardt: scaled per coordinate
            rhs = Ab.transpose(1, 2) @ G[b]
            d.add_(damp)  # AtA + diag(damp), in place
            x_new[b] = xa[b] - torch.linalg.solve(AtA, rhs)[..., 0]
            with torch.no_grad():
                q_new[b] = _speed(dyn, x_new[b], ua[b])
        xs.append(x_new)
        qs.append(q_new)
    return torch.cat(xs), torch.cat(qs)


def _merge(x: Tensor, u: Tensor, q: Tensor, radius: float, *, max_q: float = float("inf")) -> np.ndarray:
    """Indices of one representative (lowest q) per cluster of points within ``radius`` under equal input.

    Only points with ``q < max_q`` take part; the others are kept as they are.
    """
    ok = q < max_q
    if int(ok.sum()) < 2:
        return np.arange(len(x))
    sub = torch.nonzero(ok).squeeze(1)
    close = torch.cdist(x[sub], x[sub]) < radius
    us = u[sub]
    if not bool((us == us[0]).all()):
        group = torch.unique(us, dim=0, return_inverse=True)[1]
        close &= group[:, None] == group[None, :]
    i, j = close.nonzero().T.cpu().numpy()
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(len(sub), len(sub)))
    _, comp = connected_components(graph, directed=False)
    order = np.lexsort((q[sub].cpu().numpy(), comp))
    first = np.r_[True, comp[order][1:] != comp[order][:-1]]
    keep = np.zeros(len(x), dtype=bool)
    keep[~ok.cpu().numpy()] = True
    keep[sub.cpu().numpy()[order[first]]] = True
    return np.flatnonzero(keep)


def classify(eigenvalues: np.ndarray) -> np.ndarray:
    """Label each row of eigenvalues of a discrete-time map: stable / saddle / unstable (unknown if NaN).

    Examples
    --------
    >>> classify(np.array([[0.5, 0.2], [1.5, 0.2], [2.0, 1.1]])).tolist()
    ['stable', 'saddle', 'unstable']
    """
    mag = np.abs(eigenvalues).reshape(len(eigenvalues), -1)
    unstable = np.where(mag.min(1, initial=np.inf) > 1, "unstable", "saddle")
    label = np.where(mag.max(1, initial=0) < 1, "stable", unstable)
    return np.where(np.isnan(mag).any(1), "unknown", label).astype(object)  # unknown: eig failed


def _check_inputs(dynamics: Dynamics, initial_states: Tensor, u_star: Tensor, dtype: torch.dtype
                  ) -> tuple[Tensor, Tensor]:
    """(starts, one input row per start) in ``dtype`` on the starts' device, shapes checked."""
    S = int(dynamics.state_size)
    if initial_states.dim() != 2 or initial_states.shape[1] != S or len(initial_states) == 0:
        raise AnalysisError(f"fixed points: initial_states must be (K, {S}) with K >= 1, "
                            f"got {tuple(initial_states.shape)}")
    x0 = initial_states.to(dtype)
    K = len(x0)
    u = u_star.to(device=initial_states.device, dtype=dtype)
    u = u.expand(K, -1).contiguous() if u.dim() == 1 else u
    if u.shape != (K, dynamics.input_size):
        raise AnalysisError(f"fixed points: u_star must be ({dynamics.input_size},) or ({K}, {dynamics.input_size}), "
                            f"got {tuple(u_star.shape)}")
    return x0, u


def _decompose(dyn: Dynamics, x: Tensor, u: Tensor, cfg: FixedPointConfig) -> tuple[np.ndarray, np.ndarray]:
    """Jacobian eigenvalues (sorted by decreasing modulus) and the leading ``n_eigenvectors`` eigenvectors."""
    S = x.shape[1]
    n_vec = min(cfg.n_eigenvectors, S)
    if not len(x):
        return np.zeros((0, S), complex), np.zeros((0, S, n_vec), complex)
    J = _jacobians(dyn, x, u, cfg.jacobian_chunk)[0]
    step = max(1, (1 << 24) // (max(n_vec, 1) * S * S))  # inverse iteration's complex matrices: ~256 MB at most
    parts = [_eig_top(J[i : i + step], n_vec) for i in range(0, len(J), step)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def find_fixed_points(dynamics: Dynamics, initial_states: Tensor, u_star: Tensor, *,
                      config: FixedPointConfig | None = None) -> FixedPoints:
    """Find the fixed and slow points of ``dynamics.step`` under constant input, from a batch of starts.

    Parameters
    ----------
    dynamics
        Any :class:`~cortexfit.models.base.Dynamics` (only ``step`` is used; it is copied, not modified).
    initial_states
        (K, S) starting states; the batch runs on their device.
    u_star
        (I,) constant input for every start, or (K, I) one per start (e.g. per-condition mean inputs).
    config
        :class:`FixedPointConfig`.

    Returns
    -------
    FixedPoints
        Unique points with ``q``, Jacobian eigen-decomposition and labels.

    Examples
    --------
    >>> import torch
    >>> from cortexfit.models import build_dynamics
    >>> net = build_dynamics("rate", input_size=2, hidden_size=8, g=0.5)
    >>> fps = find_fixed_points(net, torch.randn(32, 8), torch.zeros(2))
    >>> len(fps), fps.label[0], fps.point_type[0]
    (1, 'stable', 'fixed')
    """
    cfg = config or FixedPointConfig()
    t0 = time.perf_counter()
    dtype = getattr(torch, cfg.dtype)
    device = initial_states.device
    x0, u = _check_inputs(dynamics, initial_states, u_star, dtype)
    K = len(x0)
    dyn = frozen_copy(dynamics, device=device, dtype=dtype)
    centroid = x0.mean(0)
    radii = torch.linalg.vector_norm(x0 - centroid, dim=1)
    scale = float(radii.square().mean().sqrt().clamp_min(1e-12))

    log.info("fixed points: %d starts, %d-dimensional state, on %s: Adam (at most %d iterations) ...", K,
             x0.shape[1], device, cfg.adam_max_iters)
    fast = dyn if dtype == torch.float32 else frozen_copy(dynamics, device=device, dtype=torch.float32)
    x, reps, n_adam = _adam(fast, x0.float(), u.float(), cfg, scale, t0)
    t_adam = time.perf_counter() - t0
    log.info("fixed points: Adam done after %d iterations, %d candidates to refine, elapsed %.1f s", n_adam, len(x),
             t_adam)
    u = u[reps]
    tol = cfg.tol_q_value * scale**2
    if dtype != torch.float32:  # coarse float32 pass on the many candidates, float64 polish on the survivors
        x, _, rows, n_lm32 = _levenberg_marquardt(fast, x, u.float(), cfg, 1e-10 * scale**2, cfg.unique_tol * scale,
                                                  t0, creep_q=cfg.slow_q * scale**2)
        x, u, reps = x.to(dtype), u[rows], reps[rows]
        log.info("fixed points: Levenberg-Marquardt (float32) done after %d iterations, %d candidates, elapsed %.1f s",
                 n_lm32, len(x), time.perf_counter() - t0)
    x, q, rows, n_lm = _levenberg_marquardt(dyn, x, u, cfg, tol, cfg.unique_tol * scale, t0,
                                            creep_q=cfg.slow_q * scale**2)
    u, reps = u[rows], reps[rows]
    log.info("fixed points: Levenberg-Marquardt (%s) done after %d iterations, elapsed %.1f s; eigen-decomposition "
             "...", cfg.dtype, n_lm, time.perf_counter() - t0)

    far = torch.linalg.vector_norm(x - centroid, dim=1) > cfg.outlier_distance * float(radii.mean().clamp_min(1e-12))
    keep = torch.nonzero(torch.isfinite(q) & (q < cfg.slow_q * scale**2) & ~far).squeeze(1)
    unique = _merge(x[keep], u[keep], q[keep], cfg.unique_tol * scale)
    idx = keep[torch.as_tensor(unique, device=device, dtype=torch.long)]
    evals, evecs = _decompose(dyn, x[idx], u[idx], cfg)
    qu = q[idx].cpu().numpy()
    info = {"n_init": K, "scale": scale, "adam_iters": n_adam, "lm_iters": n_lm, "adam_seconds": t_adam,
            "seconds": time.perf_counter() - t0, "n_refined": len(reps), "n_converged": int((q < tol).sum()),
            "n_kept": len(keep), "n_outliers": int(far.sum()), "fixed_q_threshold": tol,
            "slow_q_threshold": cfg.slow_q * scale**2, "unique_distance": cfg.unique_tol * scale}
    fps = FixedPoints(xstar=x[idx].cpu().double().numpy(), u_star=u[idx].cpu().double().numpy(), q=qu,
                      eigenvalues=evals, eigenvectors=evecs, label=classify(evals),
                      point_type=np.where(qu < tol, "fixed", "slow").astype(object),
                      init_index=reps[idx].cpu().numpy(), info=info)
    log.info("fixed points: %d unique (%d stable fixed) from %d starts in %.2f s (Adam %d it, LM %d it)",
             len(fps), fps.n_stable, K, fps.info["seconds"], n_adam, n_lm)
    return fps
