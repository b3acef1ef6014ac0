"""Figure ``gradients``: vanishing gradients in a vanilla RNN vs gated memory in an LSTM.

Task (cue recall across a long lag): at t = 0 one of two cue symbols arrives together with a marker
channel; for the next ``L - 1`` steps a random distractor symbol (one-hot over the same two channels)
arrives every step; at ``t = L`` a go channel asks for the cue (chance 0.5).  Remembering the cue needs
information to survive ``L`` steps of dynamics, and learning it needs the gradient ``d loss / d s_0`` to
survive the same ``L`` Jacobian products.

Models (the project's ``build_dynamics``): ``vanilla`` tanh RNN with the project's default gain (no gain
picked to make it fail) and ``lstm`` with the chrono initialisation
(Tallec & Ollivier 2018: forget-gate bias ``log U(1, L-1)``, input-gate bias its negative, other biases 0),
both 32 units, Adam (lr 1e-2, batch 128, gradient norm clipped at 1).  The gradient norms are
:func:`cortexfit.analysis.dynamics.gradient_norms` (``||d s_t / d s_0||_2`` along task trajectories, with
the LSTM state ``s = (h, c)``).  Notes on the design: with the project's default vanilla gain 0.9 Adam
sometimes does find an attractor solution at this lag; with forget-gate bias 1 the LSTM's cell integrates
the bias drive into saturation and does not learn within a few hundred steps.

Examples
--------
>>> import tempfile, pathlib
>>> make(pathlib.Path(tempfile.mkdtemp()), quick=True).passed  # doctest: +SKIP
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from cortexfit.figures._common import FigureResult, numeric_check, render, seeded

if TYPE_CHECKING:
    from torch import Tensor

    from cortexfit.models.lstm import LSTMDynamics

LAYOUT = (1, 3, 14.0, 4.0)
BATCH, EVERY = 128, 10
NAME = "gradients"
TITLE = "Vanishing gradients: vanilla RNN vs LSTM on a long-lag cue-recall task"
N_CUES, HIDDEN = 2, 32


def cue_batch(batch: int, lag: int, generator):
    """Inputs (B, lag + 1, N_CUES + 2) and cue labels (B,) of the cue-recall task.

    Channels: the ``N_CUES`` symbols, the cue marker, the go signal.

    Examples
    --------
    >>> import torch
    >>> u, y = cue_batch(4, 10, torch.Generator().manual_seed(0))
    >>> u.shape, bool((u[:, 1:10, :2].sum(-1) == 1).all())
    (torch.Size([4, 11, 4]), True)
    """
    import torch

    cue = torch.randint(0, N_CUES, (batch,), generator=generator)
    u = torch.zeros(batch, lag + 1, N_CUES + 2)
    u[torch.arange(batch), 0, cue] = 1.0
    u[:, 0, N_CUES] = 1.0
    distract = torch.randint(0, N_CUES, (batch, lag - 1), generator=generator)
    u[:, 1:lag, :N_CUES] = torch.nn.functional.one_hot(distract, N_CUES).float()
    u[:, lag, N_CUES + 1] = 1.0
    return u, cue


def _models(lag: int, *, gated: bool = True):
    """The vanilla RNN (the project's default gain) and the chrono-initialised LSTM.

    ``gated=False`` (the broken control) replaces the LSTM by a second vanilla RNN under the name "lstm".
    """
    import torch

    from cortexfit.models import build_dynamics

    vanilla = build_dynamics("vanilla", input_size=N_CUES + 2, hidden_size=HIDDEN)
    if not gated:
        return {"vanilla": vanilla, "lstm": build_dynamics("vanilla", input_size=N_CUES + 2, hidden_size=HIDDEN)}
    lstm = cast("LSTMDynamics", build_dynamics("lstm", input_size=N_CUES + 2, hidden_size=HIDDEN, forget_bias=0.0))
    with torch.no_grad():  # chrono initialisation
        core, H = lstm.lstm, HIDDEN
        # nn.LSTM sets its parameters by name: typed Tensor | Module
        bias_ih, bias_hh = cast("tuple[Tensor, Tensor]", (core.bias_ih_l0, core.bias_hh_l0))
        b_f = torch.log(torch.empty(H).uniform_(1.0, float(lag - 1)))
        bias_ih.zero_()
        bias_hh.zero_()
        bias_ih[H : 2 * H] = b_f
        bias_ih[:H] = -b_f
    return {"vanilla": vanilla, "lstm": lstm}


def _hidden_sequence(net):
    """(B, T, I) -> (B, T, H) hidden states; for the LSTM its fused ``nn.LSTM`` (training needs only h)."""
    core = getattr(net, "lstm", None)
    if core is not None:
        return lambda u: core(u)[0]
    return lambda u: net.hidden(net(u))


def _grad_curve(net, lag: int, generator) -> np.ndarray:
    """log10 ||d s_t / d s_0|| for t = 0..lag, mean over 4 task trials."""
    import torch

    from cortexfit.analysis.dynamics import gradient_norms

    u, _ = cue_batch(4, lag, generator)
    with torch.no_grad():
        s1 = net(u[:, :1])[:, 0]  # state after the cue: the memory to be kept
    curve = gradient_norms(net, s1.detach(), u[:, 1:], max_lag=lag - 1)
    return curve.detach().double().numpy() / math.log(10)


def _train(net, lag: int, steps: int, generator) -> tuple[float, list[float]]:
    """Train ``net`` plus a linear readout on the cue-recall task; (test accuracy, loss every EVERY steps)."""
    import torch

    hidden_seq = _hidden_sequence(net)
    readout = torch.nn.Linear(HIDDEN, N_CUES)
    params = list(net.parameters()) + list(readout.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    history = []
    for it in range(steps):
        u, y = cue_batch(BATCH, lag, generator)
        logits = readout(hidden_seq(u)[:, -1])
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (it + 1) % EVERY == 0:
            history.append(loss.item())
    net.eval()
    with torch.no_grad():
        u, y = cue_batch(1000, lag, generator)
        acc = float((readout(hidden_seq(u)[:, -1]).argmax(1) == y).float().mean())
    return acc, history


@dataclass
class GradientsResult:
    """Per model seed: gradient-norm curves before and after training, test accuracies, loss histories.

    The dict fields hold the first model seed (plotted); ``accuracies`` and ``gaps`` hold every seed.
    """

    seed: int
    lag: int
    steps: int
    curves_init: dict[str, np.ndarray]
    curves_trained: dict[str, np.ndarray]
    accuracy: dict[str, float]
    history: dict[str, list[float]]
    accuracies: dict[str, np.ndarray]
    gaps: np.ndarray
    init_gaps: np.ndarray
    model_seeds: list[int]

    @property
    def gap(self) -> float:
        """log10 gradient norm at the full lag: trained LSTM minus trained vanilla RNN (first seed)."""
        return float(self.gaps[0])


def _one_seed(lag: int, steps: int, seed: int, gated: bool) -> tuple[dict, dict, dict, dict]:
    import torch

    curves_init, curves_trained, acc, history = {}, {}, {}, {}
    with seeded(seed):
        models = _models(lag, gated=gated)
        gen = torch.Generator().manual_seed(seed)
        for name, net in models.items():
            curves_init[name] = _grad_curve(net, lag, gen)
            acc[name], history[name] = _train(net, lag, steps, gen)
            curves_trained[name] = _grad_curve(net, lag, gen)
    return curves_init, curves_trained, acc, history


def compute(*, quick: bool, seed: int = 0, n_seeds: int | None = None, gated: bool = True) -> GradientsResult:
    """Train both models on the lag task for each model seed, recording gradient norms before and after.

    ``gated=False`` removes the gating (both models vanilla RNNs): the broken control, whose checks must fail.
    """
    lag, steps = (50, 200) if quick else (100, 300)
    n_seeds = n_seeds or 3
    model_seeds = [1000 * seed + k for k in range(n_seeds)]
    runs = [_one_seed(lag, steps, ms, gated) for ms in model_seeds]
    accs = {name: np.array([run[2][name] for run in runs]) for name in ("vanilla", "lstm")}
    gaps = np.array([float(run[1]["lstm"][-1] - run[1]["vanilla"][-1]) for run in runs])
    init_gaps = np.array([float(run[0]["lstm"][-1] - run[0]["vanilla"][-1]) for run in runs])
    curves_init, curves_trained, acc, history = runs[0]
    return GradientsResult(seed=seed, lag=lag, steps=steps, curves_init=curves_init, curves_trained=curves_trained,
                           accuracy=acc, history=history, accuracies=accs, gaps=gaps, init_gaps=init_gaps,
                           model_seeds=model_seeds)


def check(r: GradientsResult) -> list[dict]:
    """The numeric checks of the figure, over all model seeds (worst case or mean, as named).

    With the project's default vanilla gain, Adam sometimes finds an attractor solution even at lag 100
    (vanilla accuracies 0.5-1 across seeds), so the checks ask the LSTM to learn in every seed, compare the
    two models' accuracies on average, and test the mechanism itself at initialisation, where it does not
    depend on training luck.  Without gating (``gated=False``) the lowest "LSTM" accuracy over 3 seeds and
    the lowest gradient gap fail at seeds 0, 1, 2 in both modes (the accuracy difference alone does not:
    one of two vanilla RNNs may learn).
    """
    n = len(r.gaps)
    init_gaps = np.array(r.init_gaps)
    diff = float(r.accuracies["lstm"].mean() - r.accuracies["vanilla"].mean())
    return [
        numeric_check("lstm_accuracy_min", float(r.accuracies["lstm"].min()), lo=0.9,
                      description=f"LSTM test accuracy at lag {r.lag}, lowest of {n} model seeds"),
        numeric_check("lstm_minus_vanilla_accuracy_mean", diff, lo=0.15,
                      description=f"test accuracy at lag {r.lag}: LSTM minus vanilla RNN (default gain), mean of "
                                  f"{n} model seeds"),
        numeric_check("log10_grad_gap_at_init_min", float(init_gaps.min()), lo=1.5, unit="decades",
                      description=f"log10 ||ds_{r.lag}/ds_0|| at initialisation: LSTM minus vanilla RNN, lowest of "
                                  f"{n} model seeds (the vanilla gradient vanishes; measured 2.4-18 decades; two "
                                  "vanilla RNNs differ by -11 to +8 on single seeds, so the minimum over seeds, "
                                  "not the mean, separates them)"),
    ]


def record(r: GradientsResult) -> FigureResult:
    """The JSON record (params, values and checks) of a result."""
    return FigureResult(
        name=NAME,
        title=TITLE,
        params={"lag": r.lag, "train_steps": r.steps, "batch": BATCH, "hidden": HIDDEN, "cues": N_CUES,
                "optimizer": "Adam lr 1e-2, grad-norm clip 1", "vanilla_gain": "project default",
                "model_seeds": r.model_seeds,
                "lstm_init": "chrono: b_f = log U(1, lag-1), b_i = -b_f", "seed": r.seed,
                "models": "cortexfit.models vanilla and lstm; gradient norms from cortexfit.analysis.dynamics"},
        values={"accuracy": r.accuracy, "accuracy_per_seed": r.accuracies, "grad_gap_per_seed": r.gaps,
                "grad_gap_at_init_per_seed": r.init_gaps,
                "chance": 1.0 / N_CUES, "log10_grad_norm_init": r.curves_init,
                "log10_grad_norm_trained": r.curves_trained, "loss_history": r.history},
        checks=check(r),
    )


def plot(r: GradientsResult, fig, axes) -> None:
    """Gradient norm vs lag, training loss, and test accuracy."""
    lag, acc, chance = r.lag, r.accuracy, 1.0 / N_CUES
    ax = axes[0]
    lags = np.arange(lag)
    for name, c in (("vanilla", "C3"), ("lstm", "C0")):
        ax.plot(lags, r.curves_init[name], color=c, ls="--", lw=1, label=f"{name}, initial")
        ax.plot(lags, r.curves_trained[name], color=c, lw=1.6, label=f"{name}, trained")
    ax.set(xlabel="lag t (steps)", ylabel="log10 ||d s_t / d s_0||_2", title="gradient norm vs lag")
    ax.legend(fontsize=7)
    ax = axes[1]
    xs = (np.arange(len(r.history["lstm"])) + 1) * EVERY
    ax.plot(xs, r.history["vanilla"], color="C3", label="vanilla RNN")
    ax.plot(xs, r.history["lstm"], color="C0", label="LSTM")
    ax.axhline(math.log(N_CUES), color="0.5", ls=":", lw=1, label="chance (log 2)")
    ax.set(xlabel="training step", ylabel="cross-entropy (nats)", title=f"training on the lag-{lag} task")
    ax.legend()
    ax = axes[2]
    names = ["vanilla", "lstm"]
    ax.bar([0, 1], [acc[n] for n in names], color=["C3", "C0"], width=0.5)
    for i, n in enumerate(names):
        ax.text(i, acc[n] + 0.02, f"{acc[n]:.2f}", ha="center")
    ax.axhline(chance, color="0.5", ls=":", lw=1, label="chance")
    ax.set_xticks([0, 1], ["vanilla RNN", "LSTM"])
    ax.set(ylabel="test accuracy", ylim=(0, 1.1), title=f"recall the cue after {lag} steps")
    ax.legend(loc="upper left")


def make(out_dir: Path, *, quick: bool, seed: int = 0) -> FigureResult:
    """compute -> check -> plot; writes ``gradients.png`` and ``gradients.json`` and returns the record."""
    r = compute(quick=quick, seed=seed)
    return render(out_dir, record(r), lambda fig, axes: plot(r, fig, axes), layout=LAYOUT, quick=quick, seed=seed)
