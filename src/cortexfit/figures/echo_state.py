"""Figure ``echo_state``: the echo-state property and the memory capacity of a reservoir (Jaeger 2001).

Uses the project's ``esn`` family (``x <- tanh(W x + W_in u + b)``, leak 1, sparse ``W`` scaled to the
spectral radius ``rho``, ``W_in`` uniform in ``[-s, s]``).

* Echo-state property: two copies of a reservoir started from different states and driven by the same
  input forget their initial condition when the distance ``||x_a(t) - x_b(t)||`` shrinks to zero.  Without
  input this happens for ``rho < 1``; above 1 the autonomous reservoir keeps its own activity, and a strong
  enough input (large ``s``) drives the units into saturation and restores convergence.
* Memory capacity: a ridge readout of the states reconstructs the input ``k`` steps back;
  ``MC_k = corr^2(y_k, u_{t-k})`` on held-out data and ``MC = sum_k MC_k <= N`` for i.i.d. input.

Examples
--------
>>> import tempfile, pathlib
>>> make(pathlib.Path(tempfile.mkdtemp()), quick=True).passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cortexfit.figures._common import FigureResult, numeric_check, render

LAYOUT = (1, 3, 14.0, 4.0)
TAIL = 30  # distances are averaged over the last TAIL steps
MC_RHOS = (0.5, 0.9, 0.99)
NAME = "echo_state"
TITLE = "Echo-state property and memory capacity of a reservoir"
FLOOR = 1e-7  # float32 resolution of the reservoir states


def _reservoir(n: int, rho: float, scale: float, seed: int):
    from cortexfit.models import build_dynamics

    return build_dynamics("esn", input_size=1, hidden_size=n, spectral_radius=float(rho), input_scaling=float(scale),
                          leak_rate=1.0, sparsity=0.9, seed=seed)


def state_distance(n: int, rho: float, scale: float, *, steps: int, seed: int) -> np.ndarray:
    """Relative distance ``||x_a(t) - x_b(t)|| / ||x_a(0) - x_b(0)||`` of two copies under the same input.

    Examples
    --------
    >>> d = state_distance(50, 0.5, 0.0, steps=100, seed=0)
    >>> bool(d[-1] < 1e-6)
    True
    """
    import torch

    rng = np.random.default_rng(seed)
    u = torch.tensor(rng.uniform(-1.0, 1.0, (1, steps, 1)), dtype=torch.float32).expand(2, steps, 1)
    x0 = torch.tensor(rng.uniform(-1.0, 1.0, (2, n)), dtype=torch.float32)
    with torch.no_grad():
        xs = _reservoir(n, rho, scale, seed)(u, x0)
    return ((xs[0] - xs[1]).norm(dim=-1) / (x0[0] - x0[1]).norm()).double().numpy()


def memory_capacity(n: int, rho: float, *, seed: int, scale: float = 0.1, n_train: int = 2000,
                    n_test: int = 1000, washout: int = 200, ridge: float = 1e-8) -> np.ndarray:
    """``MC_k`` for ``k = 1 .. 2n`` (held-out squared correlation of a ridge reconstruction of ``u_{t-k}``).

    Examples
    --------
    >>> mc = memory_capacity(20, 0.9, seed=0, n_train=500, n_test=300)
    >>> bool(0 < mc.sum() <= 20)
    True
    """
    import torch

    rng = np.random.default_rng(seed + 7)
    kmax = 2 * n
    total = washout + n_train + n_test
    u = rng.uniform(-0.5, 0.5, total + kmax)
    with torch.no_grad():
        x = _reservoir(n, rho, scale, seed)(torch.tensor(u[None, :, None], dtype=torch.float32))[0]
    x = x.double().numpy()
    idx = np.arange(kmax + washout, total + kmax)
    targets = np.stack([u[idx - k] for k in range(1, kmax + 1)], axis=1)
    feats = np.c_[x[idx], np.ones(len(idx))]
    a, y = feats[:n_train], targets[:n_train]
    gram = a.T @ a
    w = np.linalg.solve(gram + ridge * np.trace(gram) / len(gram) * np.eye(len(gram)), a.T @ y)
    pred, true = feats[n_train:] @ w, targets[n_train:]
    pc, tc = pred - pred.mean(0), true - true.mean(0)
    return (pc * tc).sum(0) ** 2 / ((pc**2).sum(0) * (tc**2).sum(0))


@dataclass
class EchoStateResult:
    """Final distances over (rho, s), four distance curves, and the memory-capacity profiles."""

    seed: int
    n: int
    steps: int
    n_mc: int
    rhos: np.ndarray
    scales: np.ndarray
    final: np.ndarray
    curves: dict[tuple[float, float], np.ndarray]
    mcs: dict[float, np.ndarray]

    @property
    def mc_total(self) -> dict[str, float]:
        return {str(r): float(v.sum()) for r, v in self.mcs.items()}

    def tail_mean(self, key: tuple[float, float]) -> float:
        return float(self.curves[key][-TAIL:].mean())


def compute(*, quick: bool, seed: int = 0, rho_scale: float = 1.0) -> EchoStateResult:
    """Distances of two copies over a (rho, s) grid, example curves, and memory capacity at three rhos.

    ``rho_scale`` multiplies every reservoir's spectral radius (labels unchanged): 2 is the broken control
    where the "rho = 0.8" reservoir has radius 1.6 and loses the echo-state property; its checks must fail.
    """
    n, steps = (100, 250) if quick else (200, 400)
    n_mc = 50 if quick else 100
    rhos = np.round(np.linspace(0.5, 2.0, 7 if quick else 16), 3)
    scales = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0])
    final = np.zeros((len(rhos), len(scales)))
    for i, rho in enumerate(rhos):
        for j, s in enumerate(scales):
            final[i, j] = state_distance(n, rho * rho_scale, s, steps=steps, seed=seed)[-TAIL:].mean()
    curves = {key: state_distance(n, key[0] * rho_scale, key[1], steps=steps, seed=seed)
              for key in ((0.8, 0.0), (1.0, 0.0), (1.5, 0.0), (1.5, 2.0))}
    mcs = {rho: memory_capacity(n_mc, rho * rho_scale, seed=seed) for rho in MC_RHOS}
    return EchoStateResult(seed=seed, n=n, steps=steps, n_mc=n_mc, rhos=rhos, scales=scales, final=final,
                           curves=curves, mcs=mcs)


def check(r: EchoStateResult) -> list[dict]:
    """The numeric checks of the figure."""
    mc_total, n_mc = r.mc_total, r.n_mc
    return [
        numeric_check("distance_rho0.8_no_input", r.tail_mean((0.8, 0.0)), hi=1e-5,
                      description="relative distance at the end, rho = 0.8, zero input (echo-state property: -> 0)"),
        numeric_check("distance_rho1.5_no_input", r.tail_mean((1.5, 0.0)), lo=1e-2,
                      description="rho = 1.5, zero input: the autonomous reservoir keeps its own state "
                                  "(no convergence)"),
        numeric_check("distance_rho1.5_input2", r.tail_mean((1.5, 2.0)), hi=1e-4,
                      description="rho = 1.5 with strong input (s = 2): saturation restores convergence"),
        numeric_check("memory_capacity_le_N", mc_total["0.9"] / n_mc, hi=1.0, unit="fraction of N",
                      description=f"total memory capacity / N at rho = 0.9, N = {n_mc} (theory: <= 1)"),
        numeric_check("memory_capacity_min", mc_total["0.9"] / n_mc, lo=0.2, unit="fraction of N",
                      description="the reservoir remembers: total MC above 0.2 N at rho = 0.9"),
        numeric_check("memory_gain_rho0.9_vs_0.5", mc_total["0.9"] - mc_total["0.5"], lo=1.0, unit="steps",
                      description="MC(rho = 0.9) - MC(rho = 0.5): slower reservoir dynamics remember longer"),
    ]


def record(r: EchoStateResult) -> FigureResult:
    """The JSON record (params, values, notes and checks) of a result."""
    return FigureResult(
        name=NAME,
        title=TITLE,
        params={"N_distance": r.n, "steps": r.steps, "N_memory": r.n_mc, "leak": 1.0, "sparsity": 0.9,
                "input": "i.i.d. uniform; [-1, 1] x s for distances, [-0.5, 0.5] x 0.1 for memory",
                "memory_readout": "ridge 1e-8 x mean eigenvalue, 2000 train / 1000 test steps",
                "model": "cortexfit.models esn", "seed": r.seed},
        values={"rho": r.rhos, "input_scale": r.scales, "final_distance": r.final, "mc_total": r.mc_total,
                "mc_k": {str(k): v for k, v in r.mcs.items()}},
        notes=[f"distances are averaged over the last {TAIL} steps; values near {FLOOR:g} are float32 resolution"],
        checks=check(r),
    )


def plot(r: EchoStateResult, fig, axes) -> None:
    """Final-distance map, distance curves, and memory-capacity profiles."""
    rhos, scales = r.rhos, r.scales
    ax = axes[0]
    img = ax.imshow(np.log10(np.clip(r.final, FLOOR, None)), origin="lower", aspect="auto", cmap="viridis",
                    vmin=np.log10(FLOOR), vmax=0.5)
    ax.set_xticks(range(len(scales)), [f"{s:g}" for s in scales])
    ticks = np.arange(0, len(rhos), 2 if len(rhos) > 8 else 1)
    ax.set_yticks(ticks, [f"{rhos[t]:g}" for t in ticks])
    ax.set(xlabel="input scale s (W_in uniform in [-s, s])", ylabel="spectral radius rho",
           title=f"final distance of two initial states (N = {r.n})")
    fig.colorbar(img, ax=ax, label="log10 relative distance")
    ax = axes[1]
    for (rho, s), c in zip(r.curves, ("C0", "C1", "C3", "C2")):
        ax.semilogy(np.arange(1, r.steps + 1), np.clip(r.curves[(rho, s)], FLOOR / 10, None), color=c,
                    label=f"rho = {rho:g}, s = {s:g}")
    ax.axhline(FLOOR, color="0.6", ls=":", lw=1, label="float32 resolution")
    ax.set(xlabel="time step", ylabel="||x_a - x_b|| / ||x_a(0) - x_b(0)||", title="forgetting the initial state",
           ylim=(FLOOR / 10, 10))
    ax.legend(loc="center right", fontsize=7)
    ax = axes[2]
    mc_total = r.mc_total
    for rho, c in zip(MC_RHOS, ("C0", "C1", "C3")):
        ks = np.arange(1, len(r.mcs[rho]) + 1)
        ax.plot(ks, r.mcs[rho], color=c, label=f"rho = {rho:g}: MC = {mc_total[str(rho)]:.1f}")
    ax.axvline(r.n_mc, color="0.6", ls=":", lw=1, label=f"k = N = {r.n_mc}")
    ax.set(xlabel="delay k (steps)", ylabel="MC_k = corr^2(readout, u(t-k))", ylim=(-0.02, 1.05),
           title=f"memory capacity (N = {r.n_mc}, bound MC <= N)")
    ax.legend(fontsize=7)


def make(out_dir: Path, *, quick: bool, seed: int = 0) -> FigureResult:
    """compute -> check -> plot; writes ``echo_state.png`` and ``echo_state.json`` and returns the record."""
    r = compute(quick=quick, seed=seed)
    return render(out_dir, record(r), lambda fig, axes: plot(r, fig, axes), layout=LAYOUT, quick=quick, seed=seed)
