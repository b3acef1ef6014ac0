"""Figure ``interference``: catastrophic interference and elastic weight consolidation (Kirkpatrick et al. 2017).

A small network (MLP 64-128-10, tanh) learns task A (the 8x8 handwritten digits bundled with scikit-learn)
and then task B (the same digits with a fixed random permutation of the 64 pixels, as in permuted-MNIST).
Plain training on B overwrites the weights that solved A, and A's test accuracy collapses.  Elastic weight
consolidation adds ``(lambda / 2) sum_i F_i (theta_i - theta_A,i)^2`` to B's loss, with ``F`` the diagonal
Fisher information of A at the end of A (expected squared gradient of the log-likelihood, labels sampled
from the model), so the weights important for A stay put while the others learn B.

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

from cortexfit.figures._common import FigureResult, numeric_check, render, seeded

LAYOUT = (1, 3, 14.0, 3.9)
LAMBDA = 5000.0  # EWC strength
NAME = "interference"
TITLE = "Catastrophic interference and elastic weight consolidation (EWC)"


def _digits(rng: np.random.Generator):
    """Standardised 8x8 digits split 70/30, plus a fixed pixel permutation for task B."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1.0)
    order = rng.permutation(len(y))
    n_train = int(0.7 * len(y))
    perm = rng.permutation(x.shape[1])
    return x[order[:n_train]], y[order[:n_train]], x[order[n_train:]], y[order[n_train:]], perm


def _tasks(rng: np.random.Generator) -> dict:
    """Task name -> (x_train, y_train, x_test, y_test) tensors; B is A with permuted pixels."""
    import torch

    xtr, ytr, xte, yte, perm = _digits(rng)
    return {
        "A": (torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr), torch.tensor(xte, dtype=torch.float32),
              torch.tensor(yte)),
        "B": (torch.tensor(xtr[:, perm], dtype=torch.float32), torch.tensor(ytr),
              torch.tensor(xte[:, perm], dtype=torch.float32), torch.tensor(yte)),
    }


def _accuracy(net, tasks: dict, task: str) -> float:
    import torch

    _, _, x, y = tasks[task]
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def _train(net, tasks: dict, task: str, *, steps: int, every: int, generator, penalty=None) -> list[tuple]:
    """Adam on ``task`` (batch 64), optional extra loss ``penalty(net)``; (acc A, acc B) every ``every`` steps."""
    import torch
    from torch import nn

    x, y, _, _ = tasks[task]
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    curve = []
    for it in range(steps):
        idx = torch.randint(0, len(y), (64,), generator=generator)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        if penalty is not None:
            loss = loss + penalty(net)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (it + 1) % every == 0:
            curve.append((_accuracy(net, tasks, "A"), _accuracy(net, tasks, "B")))
    return curve


def _fisher(net, xa, n_samples: int, generator) -> list:
    """Diagonal Fisher of task A: squared gradients of log p(y_sampled | x), one example at a time."""
    import torch
    from torch import nn

    fisher = [torch.zeros_like(p) for p in net.parameters()]
    pick = torch.randint(0, len(xa), (n_samples,), generator=generator)
    for i in pick:
        logits = net(xa[i : i + 1])
        y_s = torch.multinomial(torch.softmax(logits.detach(), 1), 1, generator=generator)[0]
        net.zero_grad()
        nn.functional.cross_entropy(logits, y_s).backward()
        for f, p in zip(fisher, net.parameters()):
            f += p.grad.detach() ** 2 / n_samples
    return fisher


@dataclass
class InterferenceResult:
    """Accuracies after A and after B (plain vs EWC) and the learning curves."""

    quick: bool
    seed: int
    steps: int
    every: int
    n_fisher: int
    acc_a: float
    results: dict[str, dict[str, float]]
    curve_a: list[tuple[float, float]]
    curves: dict[str, list[tuple[float, float]]]


def compute(*, quick: bool, seed: int = 0, ewc_lambda: float = LAMBDA) -> InterferenceResult:
    """Learn A, estimate the Fisher, then learn B from the same start with and without EWC.

    ``ewc_lambda=0`` turns the EWC run into plain training (the broken control, whose checks must fail).
    """
    import torch
    from torch import nn

    steps, every = (150, 10) if quick else (300, 15)
    n_fisher = 300 if quick else 600
    with seeded(seed) as rng:
        tasks = _tasks(rng)
        gen = torch.Generator().manual_seed(seed)
        net = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 10))
        curve_a = _train(net, tasks, "A", steps=steps, every=every, generator=gen)
        acc_a = _accuracy(net, tasks, "A")
        fisher = _fisher(net, tasks["A"][0], n_fisher, gen)
        anchor = [p.detach().clone() for p in net.parameters()]

        def ewc(model):
            return 0.5 * ewc_lambda * sum((f * (p - a) ** 2).sum() for f, p, a in zip(fisher, model.parameters(), anchor))

        state_a = {k: v.clone() for k, v in net.state_dict().items()}
        results, curves = {}, {}
        for name, penalty in (("plain", None), ("ewc", ewc)):
            net.load_state_dict(state_a)
            curves[name] = _train(net, tasks, "B", steps=steps, every=every, generator=gen, penalty=penalty)
            results[name] = {"A": _accuracy(net, tasks, "A"), "B": _accuracy(net, tasks, "B")}
    return InterferenceResult(quick=quick, seed=seed, steps=steps, every=every, n_fisher=n_fisher, acc_a=acc_a,
                              results=results, curve_a=curve_a, curves=curves)


def check(r: InterferenceResult) -> list[dict]:
    """The numeric checks of the figure."""
    margin = 0.15 if r.quick else 0.2
    res = r.results
    return [
        numeric_check("acc_A_after_A", r.acc_a, lo=0.9, description="task-A test accuracy after learning A"),
        numeric_check("forgetting_plain", r.acc_a - res["plain"]["A"], lo=0.2,
                      description="drop of task-A accuracy after plain training on B (catastrophic interference)"),
        numeric_check("ewc_minus_plain_on_A", res["ewc"]["A"] - res["plain"]["A"], lo=margin,
                      description=f"task-A accuracy after B: with EWC minus without (margin {margin})"),
        numeric_check("acc_B_with_ewc", res["ewc"]["B"], lo=0.7, description="EWC still learns task B"),
    ]


def record(r: InterferenceResult) -> FigureResult:
    """The JSON record (params, values and checks) of a result."""
    return FigureResult(
        name=NAME,
        title=TITLE,
        params={"network": "MLP 64-128-10 tanh", "data": "sklearn digits 8x8, 70/30 split; B = fixed pixel permutation",
                "steps_per_task": r.steps, "batch": 64, "optimizer": "Adam lr 1e-2", "ewc_lambda": LAMBDA,
                "fisher_samples": r.n_fisher, "seed": r.seed},
        values={"accuracy_A_after_A": r.acc_a,
                "accuracy_A_after_B": {k: v["A"] for k, v in r.results.items()},
                "accuracy_B_after_B": {k: v["B"] for k, v in r.results.items()},
                "curve_task_A": r.curve_a, "curve_task_B": r.curves},
        checks=check(r),
    )


def plot(r: InterferenceResult, fig, axes) -> None:
    """Learning curves with plain training and with EWC, and the final accuracies."""
    steps, every, res = r.steps, r.every, r.results
    ca = np.array(r.curve_a)
    xs_a = np.arange(1, len(ca) + 1) * every
    for ax, name in ((axes[0], "plain"), (axes[1], "ewc")):
        cb = np.array(r.curves[name])
        xs_b = steps + np.arange(1, len(cb) + 1) * every
        ax.plot(np.r_[xs_a, xs_b], np.r_[ca[:, 0], cb[:, 0]], color="C0", label="task A (digits)")
        ax.plot(np.r_[xs_a, xs_b], np.r_[ca[:, 1], cb[:, 1]], color="C1", label="task B (permuted)")
        ax.axvline(steps, color="0.5", ls=":", lw=1)
        ax.text(steps * 0.5, 0.03, "train A", ha="center", fontsize=8)
        ax.text(steps * 1.5, 0.03, "train B", ha="center", fontsize=8)
        title = "plain training (Adam): A is forgotten" if name == "plain" else f"EWC (lambda = {LAMBDA:g}): A is kept"
        ax.set(xlabel="training step", ylabel="test accuracy", ylim=(0, 1.02), title=title)
        ax.legend(loc="center right")
    ax = axes[2]
    labels = ["A after A", "A after B", "B after B"]
    plain = [r.acc_a, res["plain"]["A"], res["plain"]["B"]]
    with_ewc = [r.acc_a, res["ewc"]["A"], res["ewc"]["B"]]
    xs = np.arange(3)
    ax.bar(xs - 0.2, plain, 0.4, color="0.6", label="plain")
    ax.bar(xs + 0.2, with_ewc, 0.4, color="C2", label="EWC")
    for x0, a, b in zip(xs, plain, with_ewc):
        ax.text(x0 - 0.2, a + 0.01, f"{a:.2f}", ha="center", fontsize=7)
        ax.text(x0 + 0.2, b + 0.01, f"{b:.2f}", ha="center", fontsize=7)
    ax.axhline(0.1, color="0.5", ls=":", lw=1, label="chance")
    ax.set_xticks(xs, labels)
    ax.set(ylabel="test accuracy", ylim=(0, 1.25), title="final accuracies")
    ax.legend(loc="upper center", ncol=3)


def make(out_dir: Path, *, quick: bool, seed: int = 0) -> FigureResult:
    """compute -> check -> plot; writes ``interference.png`` and ``interference.json`` and returns the record."""
    r = compute(quick=quick, seed=seed)
    return render(out_dir, record(r), lambda fig, axes: plot(r, fig, axes), layout=LAYOUT, quick=quick, seed=seed)
