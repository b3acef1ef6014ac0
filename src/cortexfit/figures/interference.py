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

from pathlib import Path

import numpy as np

from cortexfit.figures._common import FigureResult, check, figure, save_figure, seeded

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


def make(out_dir: Path, *, quick: bool, seed: int = 0) -> FigureResult:
    """Build the figure; returns the written :class:`FigureResult`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> r = make(pathlib.Path(tempfile.mkdtemp()), quick=True)  # doctest: +SKIP
    >>> r.values["accuracy_A_after_B"]["ewc"] > r.values["accuracy_A_after_B"]["plain"]  # doctest: +SKIP
    True
    """
    import torch
    from torch import nn

    steps, every = (150, 10) if quick else (300, 15)
    lam = 5000.0
    with seeded(seed) as rng:
        xtr, ytr, xte, yte, perm = _digits(rng)
        tasks = {
            "A": (torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr), torch.tensor(xte, dtype=torch.float32),
                  torch.tensor(yte)),
            "B": (torch.tensor(xtr[:, perm], dtype=torch.float32), torch.tensor(ytr),
                  torch.tensor(xte[:, perm], dtype=torch.float32), torch.tensor(yte)),
        }
        gen = torch.Generator().manual_seed(seed)

        def accuracy(net, task):
            _, _, x, y = tasks[task]
            with torch.no_grad():
                return float((net(x).argmax(1) == y).float().mean())

        def train(net, task, curve, penalty=None):
            x, y, _, _ = tasks[task]
            opt = torch.optim.Adam(net.parameters(), lr=1e-2)
            for it in range(steps):
                idx = torch.randint(0, len(y), (64,), generator=gen)
                loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
                if penalty is not None:
                    loss = loss + penalty(net)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if (it + 1) % every == 0:
                    curve.append((accuracy(net, "A"), accuracy(net, "B")))

        net = nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 10))
        curve_a: list[tuple[float, float]] = []
        train(net, "A", curve_a)
        acc_a = accuracy(net, "A")
        # diagonal Fisher of task A: squared gradients of log p(y_sampled | x), one example at a time
        xa = tasks["A"][0]
        fisher = [torch.zeros_like(p) for p in net.parameters()]
        n_fisher = 300 if quick else 600
        pick = torch.randint(0, len(xa), (n_fisher,), generator=gen)
        for i in pick:
            logits = net(xa[i : i + 1])
            y_s = torch.multinomial(torch.softmax(logits.detach(), 1), 1, generator=gen)[0]
            net.zero_grad()
            nn.functional.cross_entropy(logits, y_s).backward()
            for f, p in zip(fisher, net.parameters()):
                f += p.grad.detach() ** 2 / n_fisher
        anchor = [p.detach().clone() for p in net.parameters()]

        def ewc(model):
            return 0.5 * lam * sum((f * (p - a) ** 2).sum() for f, p, a in zip(fisher, model.parameters(), anchor))

        state_a = {k: v.clone() for k, v in net.state_dict().items()}
        results, curves = {}, {}
        for name, penalty in (("plain", None), ("ewc", ewc)):
            net.load_state_dict(state_a)
            curves[name] = []
            train(net, "B", curves[name], penalty)
            results[name] = {"A": accuracy(net, "A"), "B": accuracy(net, "B")}

    margin = 0.15 if quick else 0.2
    result = FigureResult(
        name=NAME,
        title=TITLE,
        params={"network": "MLP 64-128-10 tanh", "data": "sklearn digits 8x8, 70/30 split; B = fixed pixel permutation",
                "steps_per_task": steps, "batch": 64, "optimizer": "Adam lr 1e-2", "ewc_lambda": lam,
                "fisher_samples": n_fisher, "seed": seed},
        values={"accuracy_A_after_A": acc_a,
                "accuracy_A_after_B": {k: v["A"] for k, v in results.items()},
                "accuracy_B_after_B": {k: v["B"] for k, v in results.items()},
                "curve_task_A": curve_a, "curve_task_B": curves},
    )
    result.checks = [
        check("acc_A_after_A", acc_a, lo=0.9, description="task-A test accuracy after learning A"),
        check("forgetting_plain", acc_a - results["plain"]["A"], lo=0.2,
              description="drop of task-A accuracy after plain training on B (catastrophic interference)"),
        check("ewc_minus_plain_on_A", results["ewc"]["A"] - results["plain"]["A"], lo=margin,
              description=f"task-A accuracy after B: with EWC minus without (margin {margin})"),
        check("acc_B_with_ewc", results["ewc"]["B"], lo=0.7, description="EWC still learns task B"),
    ]

    with figure(1, 3, width=14, height=3.9) as (fig, axes):
        ca = np.array(curve_a)
        xs_a = np.arange(1, len(ca) + 1) * every
        for ax, name in ((axes[0], "plain"), (axes[1], "ewc")):
            cb = np.array(curves[name])
            xs_b = steps + np.arange(1, len(cb) + 1) * every
            ax.plot(np.r_[xs_a, xs_b], np.r_[ca[:, 0], cb[:, 0]], color="C0", label="task A (digits)")
            ax.plot(np.r_[xs_a, xs_b], np.r_[ca[:, 1], cb[:, 1]], color="C1", label="task B (permuted)")
            ax.axvline(steps, color="0.5", ls=":", lw=1)
            ax.text(steps * 0.5, 0.03, "train A", ha="center", fontsize=8)
            ax.text(steps * 1.5, 0.03, "train B", ha="center", fontsize=8)
            ax.set(xlabel="training step", ylabel="test accuracy", ylim=(0, 1.02),
                   title=("plain training (Adam): A is forgotten" if name == "plain" else f"EWC (lambda = {lam:g}): A is kept"))
            ax.legend(loc="center right")
        ax = axes[2]
        labels = ["A after A", "A after B", "B after B"]
        plain = [acc_a, results["plain"]["A"], results["plain"]["B"]]
        with_ewc = [acc_a, results["ewc"]["A"], results["ewc"]["B"]]
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
        return save_figure(fig, out_dir, result, quick=quick, seed=seed)
