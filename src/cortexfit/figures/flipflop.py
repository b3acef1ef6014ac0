"""Figure ``flipflop``: fixed points of a 3-bit flip-flop RNN (Sussillo & Barak 2013).

Three input channels carry sparse +-1 pulses; each output must hold the sign of its channel's last pulse.
A trained network stores the 8 memories as 8 stable fixed points at the corners of a cube, joined by
saddles with one unstable direction (edges), two (faces) and three (centre).

The network is the trained ``flipflop_rnn100.pt`` from the shared data folder
(``$CORTEXFIT_SHARED_DATA`` or ``<repo>/../shared/data``) when present, loaded into the project's
``vanilla`` model with :func:`cortexfit.models.from_torch_rnn`; otherwise a small flip-flop RNN is trained
here.  Fixed points come from :func:`cortexfit.analysis.fixed_points.find_fixed_points` (zero input, starts
sampled from the network's trajectories plus noise) and are drawn in the top three principal components of
the trajectories.

Examples
--------
>>> import tempfile, pathlib
>>> make(pathlib.Path(tempfile.mkdtemp()), quick=True).passed  # doctest: +SKIP
True
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cortexfit.figures._common import (
    FigureResult,
    numeric_check,
    render,
    seeded,
    shared_data_dir,
)

LAYOUT = (1, 3, 15.0, 4.6)
SADDLE_COLOURS = ((1, "C3"), (2, "C1"), (3, "C4"))
NAME = "flipflop"
TITLE = "3-bit flip-flop: 8 stable fixed points and the saddles between them (Sussillo & Barak 2013)"
SHARED_FILE = "flipflop_rnn100.pt"
log = logging.getLogger(__name__)


def flipflop_batch(batch: int, steps: int, *, p: float, generator):
    """Inputs (B, T, 3) of +-1 pulses with probability ``p`` per step and channel, and targets (B, T, 3).

    Examples
    --------
    >>> import torch
    >>> u, y = flipflop_batch(2, 50, p=0.1, generator=torch.Generator().manual_seed(0))
    >>> u.shape, bool(set(y.unique().tolist()) <= {-1.0, 0.0, 1.0})
    (torch.Size([2, 50, 3]), True)
    """
    import torch

    pulse = torch.rand(batch, steps, 3, generator=generator) < p
    sign = torch.where(torch.rand(batch, steps, 3, generator=generator) < 0.5, -1.0, 1.0)
    u = pulse * sign
    y = torch.zeros_like(u)
    last = torch.zeros(batch, 3)
    for t in range(steps):
        last = torch.where(u[:, t] != 0, u[:, t], last)
        y[:, t] = last
    return u, y


def _train_small(hidden: int, iters: int, seed: int):
    """Train a small flip-flop RNN (the fallback when the shared network is absent): (dynamics, readout)."""
    import torch

    from cortexfit.models import build_dynamics

    gen = torch.Generator().manual_seed(seed)
    net = build_dynamics("vanilla", input_size=3, hidden_size=hidden, g=0.9)
    readout = torch.nn.Linear(hidden, 3)
    params = list(net.parameters()) + list(readout.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(iters):
        u, y = flipflop_batch(64, 100, p=0.05, generator=gen)
        loss = ((readout(net(u)) - y)[:, 10:] ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    log.info("flipflop: trained a %d-unit network, final MSE %.4f", hidden, loss.item())
    return net.eval(), readout.eval(), loss.item()


def load_network(quick: bool, seed: int):
    """The shared trained network if present, else a freshly trained small one: (net, readout, source)."""
    import torch

    from cortexfit.models import from_torch_rnn

    path = shared_data_dir() / SHARED_FILE
    if path.is_file():
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        sd = ckpt["state_dict"]
        net = from_torch_rnn(sd, nonlinearity="tanh").eval()
        readout = torch.nn.Linear(sd["readout.weight"].shape[1], 3)
        readout.load_state_dict({"weight": sd["readout.weight"], "bias": sd["readout.bias"]})
        return net, readout.eval(), str(path)
    hidden, iters = (24, 400) if quick else (48, 800)
    net, readout, mse = _train_small(hidden, iters, seed)
    return net, readout, f"trained here ({hidden} units, {iters} Adam steps, MSE {mse:.4f}; {path} absent)"


@dataclass
class FlipflopResult:
    """The task trials, the fixed points (:func:`find_fixed_points` result) and their classification."""

    seed: int
    source: str
    n_init: int
    u: np.ndarray
    y: np.ndarray
    out: np.ndarray
    traj: np.ndarray
    fps: Any
    patterns: set
    pc_traj: np.ndarray
    pc_fp: np.ndarray
    pca_variance: np.ndarray
    task_accuracy: float

    @property
    def fixed(self) -> np.ndarray:
        return self.fps.point_type == "fixed"

    @property
    def stable(self) -> np.ndarray:
        return self.fixed & (self.fps.label == "stable")

    @property
    def saddle(self) -> np.ndarray:
        return self.fixed & (self.fps.label == "saddle")

    @property
    def n_unstable(self) -> np.ndarray:
        return (np.abs(self.fps.eigenvalues) > 1).sum(1)


def untrained_network(hidden: int = 100):
    """A random vanilla RNN with a random readout (the broken control: no memories, no 8 attractors)."""
    import torch

    from cortexfit.models import build_dynamics

    net = build_dynamics("vanilla", input_size=3, hidden_size=hidden)
    return net.eval(), torch.nn.Linear(hidden, 3).eval(), f"untrained random vanilla RNN ({hidden} units; control)"


def compute(*, quick: bool, seed: int = 0, trained: bool = True) -> FlipflopResult:
    """Run the network on task trials, find its fixed points at zero input, project onto the top 3 PCs.

    ``trained=False`` uses :func:`untrained_network` (the broken control, whose checks must fail).
    """
    import torch
    from sklearn.decomposition import PCA

    from cortexfit.analysis.fixed_points import FixedPointConfig, find_fixed_points, sample_initial_states

    n_trials, n_init = (32, 256) if quick else (64, 1024)
    with seeded(seed) as rng:
        net, readout, source = load_network(quick, seed) if trained else untrained_network()
        gen = torch.Generator().manual_seed(seed)
        u, y = flipflop_batch(n_trials, 500, p=0.01, generator=gen)
        with torch.no_grad():
            states = net(u)
            out = readout(net.hidden(states))
        traj = states.double().numpy()
        noise = 0.5 * float(traj.reshape(-1, traj.shape[-1]).std(0).mean())
        init = sample_initial_states(traj, n_init, noise_std=noise, generator=rng)
        fps = find_fixed_points(net, torch.tensor(init), torch.zeros(3), config=FixedPointConfig())
    stable = (fps.point_type == "fixed") & (fps.label == "stable")
    with torch.no_grad():
        corners = readout(torch.tensor(fps.xstar[stable], dtype=torch.float32)).numpy()
    held = y != 0  # after each channel's first pulse
    task_acc = float((torch.sign(out)[held] == y[held]).float().mean())
    flat = traj.reshape(-1, traj.shape[-1])
    pca = PCA(n_components=3).fit(flat)
    return FlipflopResult(seed=seed, source=source, n_init=n_init, u=u.numpy(), y=y.numpy(), out=out.numpy(),
                          traj=traj, fps=fps, patterns={tuple(int(s) for s in np.sign(c)) for c in corners},
                          pc_traj=pca.transform(flat).reshape(n_trials, -1, 3),
                          pc_fp=pca.transform(fps.xstar) if len(fps) else np.zeros((0, 3)),
                          pca_variance=pca.explained_variance_ratio_, task_accuracy=task_acc)


def check(r: FlipflopResult) -> list[dict]:
    """The numeric checks of the figure."""
    all_corners = set(itertools.product((-1, 1), repeat=3))
    return [
        numeric_check("n_stable_fixed_points", int(r.stable.sum()), lo=8, hi=8,
                      description="stable fixed points (8 memories)"),
        numeric_check("corner_patterns_covered", len(r.patterns & all_corners), lo=8, hi=8,
                      description="distinct sign patterns of the readout at the stable points "
                                  "(all 8 corners of the cube)"),
        numeric_check("n_saddles", int(r.saddle.sum()), lo=1, description="saddle points found between the memories"),
        numeric_check("task_sign_accuracy", r.task_accuracy, lo=0.95,
                      description="sign of the output matches the target (after each channel's first pulse)"),
    ]


def record(r: FlipflopResult) -> FigureResult:
    """The JSON record (params, values and checks) of a result."""
    fixed, saddle, n_unstable = r.fixed, r.saddle, r.n_unstable
    return FigureResult(
        name=NAME,
        title=TITLE,
        params={"network": r.source, "task": "3 channels, +-1 pulses with p = 0.01 per step, 500-step trials",
                "fixed_point_finder": "cortexfit.analysis.fixed_points.find_fixed_points, zero input, default config",
                "n_init": r.n_init, "trials": len(r.u), "seed": r.seed},
        values={"n_points": len(r.fps), "n_stable": int(r.stable.sum()), "n_saddle": int(saddle.sum()),
                "saddles_by_unstable_dims": {int(k): int(np.sum(saddle & (n_unstable == k))) for k in (1, 2, 3)},
                "stable_readout_patterns": sorted(r.patterns), "task_sign_accuracy": r.task_accuracy,
                "pca_variance_explained": r.pca_variance,
                "max_q_fixed": float(r.fps.q[fixed].max()) if fixed.any() else None},
        checks=check(r),
    )


def _plot_task(ax, r: FlipflopResult) -> None:
    tt = np.arange(300)
    for c in range(3):
        ax.plot(tt, r.u[0, :300, c] * 0.6 + 3 * c, color="0.6", lw=0.8)
        target = np.where(r.y[0, :300, c] != 0, r.y[0, :300, c], np.nan)  # undefined before a pulse
        ax.plot(tt, target * 0.9 + 3 * c, color="k", lw=1, ls="--")
        ax.plot(tt, r.out[0, :300, c] * 0.9 + 3 * c, color=f"C{c}", lw=1.2)
    ax.plot([], [], color="0.6", label="input pulses")
    ax.plot([], [], "k--", label="target (after 1st pulse)")
    ax.plot([], [], color="C0", label="network output")
    ax.set_yticks([0, 3, 6], ["bit 1", "bit 2", "bit 3"])
    ax.set(xlabel="time step", title=f"the task (sign accuracy {r.task_accuracy:.3f})")
    ax.legend(loc="upper right", fontsize=7, ncol=3)


def _plot_pcs(ax, r: FlipflopResult) -> None:
    stable, saddle, n_unstable = r.stable, r.saddle, r.n_unstable
    for k in range(min(8, len(r.pc_traj))):
        ax.plot(*r.pc_traj[k].T, color="0.75", lw=0.5)
    ax.scatter(*r.pc_fp[stable].T, color="k", s=40, depthshade=False, label=f"stable ({int(stable.sum())})")
    for k, c in SADDLE_COLOURS:
        sel = saddle & (n_unstable == k)
        if sel.any():
            ax.scatter(*r.pc_fp[sel].T, color=c, marker="x", s=40, depthshade=False,
                       label=f"saddle, {k} unstable dim ({int(sel.sum())})")
    ax.set(xlabel="PC 1", ylabel="PC 2", zlabel="PC 3", title="fixed points in the top 3 PCs")
    ax.legend(loc="upper left", fontsize=6)


def _plot_eigenvalues(ax, r: FlipflopResult) -> None:
    fps, stable, n_unstable = r.fps, r.stable, r.n_unstable
    mods = np.abs(fps.eigenvalues[:, :6]) if len(fps) else np.zeros((0, 6))
    for i in np.where(r.fixed)[0]:
        col = "k" if stable[i] else dict(SADDLE_COLOURS).get(int(n_unstable[i]), "C5")
        ax.plot(np.arange(1, mods.shape[1] + 1), mods[i], "o-", color=col, ms=3, lw=0.6, alpha=0.7)
    ax.axhline(1, color="0.4", ls=":", lw=1, label="|lambda| = 1")
    ax.set(xlabel="eigenvalue rank", ylabel="|lambda| of the Jacobian",
           title="stability: top eigenvalues per point")
    ax.plot([], [], "ko-", ms=3, label="stable")
    for k, c in SADDLE_COLOURS:
        ax.plot([], [], "o-", color=c, ms=3, label=f"saddle, {k} unstable")
    ax.legend(fontsize=7)


def plot(r: FlipflopResult, fig, axes) -> None:
    """The task, the fixed points in 3D principal components, and the Jacobian eigenvalues per point."""
    _plot_task(axes[0], r)
    axes[1].remove()
    _plot_pcs(fig.add_subplot(1, 3, 2, projection="3d"), r)
    _plot_eigenvalues(axes[2], r)


def make(out_dir: Path, *, quick: bool, seed: int = 0) -> FigureResult:
    """compute -> check -> plot; writes ``flipflop.png`` and ``flipflop.json`` and returns the record."""
    r = compute(quick=quick, seed=seed)
    return render(out_dir, record(r), lambda fig, axes: plot(r, fig, axes), layout=LAYOUT, quick=quick, seed=seed)
