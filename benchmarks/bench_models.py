"""Benchmark: the ``rate`` family's train step vs ``torch.nn.RNN``, and the ESN vs reservoirpy.

Rate network
    Train-step throughput (forward + backward + Adam step; batch 64, 140 steps, 107 inputs, loss = MSE of the
    hidden states to a fixed random target) of ``build_dynamics("rate")`` (tanh, no options: leaky,
    alpha = dt / tau = 0.1) and of ``torch.nn.RNN`` (tanh, no leak) at hidden sizes 128 and 512, with
    ``torch.set_num_threads(2)``.  Also the plain Python loop of the leaky cell under autograd (input
    projection hoisted out of the loop), the implementation the fast path replaces.  The contenders run
    interleaved, ``--rounds`` rounds of ``--seconds`` each; throughputs are medians over rounds and the
    ratios medians of the same-round ratios (robust to the bursts of load on a shared machine).

Echo-state network
    Mackey-Glass (tau = 17, Euler dt = 0.1, sampled every 1 time unit, scaled to [-1, 1]) one-step-ahead
    prediction: 50,000 steps, the first 40,000 to fit (100 warm-up steps left out), the last 10,000 to test.
    Same hyperparameters for both: 1000 units, spectral radius 0.9, leak rate 0.3, input scaling 1, ridge
    1e-6, 10% recurrent connectivity.  Time = reservoir construction + run + readout fit + predict.  Ours is the
    code ``cortexfit fit --model esn`` runs (``ESNDynamics`` forward and ``fit_readout``, on ``--esn-device``);
    for reference the same model run without time chunks (equal NRMSE shows the measured washout suffices) and
    on reservoirpy's own matrices (equal-error check).  reservoirpy 0.4.2 (``Reservoir >> Ridge``, CPU; the
    ``dev`` extra installs it) if importable, else its figures are null.  Both fits solve the same float64
    ridge problem (``X^T X`` of 40,000 x 1000 states), which bounds the attainable speed-up on a CPU.

The last line printed is one JSON object with every figure.

Usage: ``python benchmarks/bench_models.py [--rounds 12 --seconds 0.6 --sizes 128 512 --skip-esn]
[--esn-device cuda]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from cortexfit.models import build_dynamics

BATCH, STEPS, INPUTS = 64, 140, 107


def leaky_python_loop(H: int) -> torch.nn.Module:
    """The leaky cell as a plain Python loop under autograd, input projection hoisted (the old way)."""

    class Loop(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = torch.nn.Linear(INPUTS, H)
            self.W = torch.nn.Parameter(0.9 * torch.randn(H, H) / H**0.5)

        def forward(self, u):
            x, h, out = self.inp(u), u.new_zeros(u.shape[0], H), []
            for t in range(u.shape[1]):
                h = 0.9 * h + 0.1 * torch.tanh(x[:, t] + h @ self.W.t())
                out.append(h)
            return torch.stack(out, 1)

    return Loop()


def train_step_fn(model: torch.nn.Module, H: int, device: str):
    torch.manual_seed(0)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    u = torch.randn(BATCH, STEPS, INPUTS, device=device)
    target = torch.randn(BATCH, STEPS, H, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        out = model(u)
        out = out[0] if isinstance(out, tuple) else out
        ((out - target) ** 2).mean().backward()
        opt.step()

    return step


def steps_per_second(step, seconds: float, device: str) -> float:
    """Train steps per second over at least ``seconds`` (and at least one step)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 1:
        step()
        n += 1
    sync()
    return n / (time.perf_counter() - t0)


def bench_rate(sizes, seconds: float, rounds: int, device: str) -> dict:
    """Interleaved rounds of ``seconds`` per contender; ratios are medians of same-round ratios.

    A shared machine's load comes in bursts: contenders measured back to back in one round see about the same
    load, so the median of the per-round ratios is robust where best-of or mean throughputs are not.
    """
    out = {}
    for H in sizes:
        contenders = {
            "nn_rnn": train_step_fn(torch.nn.RNN(INPUTS, H, batch_first=True), H, device),
            "rate": train_step_fn(build_dynamics("rate", input_size=INPUTS, hidden_size=H), H, device),
            "python_loop": train_step_fn(leaky_python_loop(H), H, device),
        }
        for fn in contenders.values():  # warm-up
            fn()
        runs: dict[str, list[float]] = {k: [] for k in contenders}
        for _ in range(rounds):
            for name, fn in contenders.items():
                runs[name].append(steps_per_second(fn, seconds, device))
        for name, vals in runs.items():
            out[f"{name}_steps_per_s_h{H}"] = round(float(np.median(vals)), 3)
            out[f"{name}_steps_per_s_h{H}_best"] = round(max(vals), 3)
        for name in ("rate", "python_loop"):
            ratios = [a / b for a, b in zip(runs[name], runs["nn_rnn"])]
            out[f"{name}_vs_nn_rnn_h{H}"] = round(float(np.median(ratios)), 3)
            out[f"{name}_vs_nn_rnn_h{H}_rounds"] = [round(r, 3) for r in ratios]
        print(f"hidden {H}: " + ", ".join(f"{k} {np.median(v):.2f} steps/s" for k, v in runs.items())
              + f"; rate/nn.RNN {out[f'rate_vs_nn_rnn_h{H}']}", flush=True)
    return out


def mackey_glass(n: int, tau: float = 17.0, dt: float = 0.1, sub: int = 10, discard: int = 1000) -> np.ndarray:
    """Mackey-Glass series (beta 0.2, gamma 0.1, power 10), Euler steps of dt, every ``sub``-th kept, in [-1, 1]."""
    d = round(tau / dt)
    total = (n + discard) * sub
    x = np.empty(total + d)
    x[: d + 1] = 1.2
    for i in range(d, total + d - 1):
        xd = x[i - d]
        x[i + 1] = x[i] + dt * (0.2 * xd / (1.0 + xd**10) - 0.1 * x[i])
    s = x[d::sub][discard : discard + n]
    return 2.0 * (s - s.min()) / (s.max() - s.min()) - 1.0


def nrmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred.reshape(y.shape) - y) ** 2)) / np.std(y))


def bench_esn(units: int, steps: int, repeats: int, device: str) -> dict:
    """The pipeline's ``esn`` model (on ``device``) vs reservoirpy (CPU), Mackey-Glass one-step-ahead prediction.

    Ours is what ``cortexfit fit --model esn`` runs: :class:`cortexfit.models.esn.ESNDynamics` (its forward run
    over the whole series, time-parallel with a measured and checked washout) and its ``fit_readout`` (ridge
    with float64 sufficient statistics, :func:`cortexfit.models.readouts.fit_readout`), then the readout applied
    to the test states.  The two run interleaved, ``repeats`` rounds; the speed-up is the median of the
    same-round ratios.
    """
    import os

    from cortexfit.models.esn import reservoir_states

    series = mackey_glass(steps + 1)
    X, Y = series[:-1, None], series[1:, None]
    n_fit, warmup = int(0.8 * steps), 100
    hp = {"spectral_radius": 0.9, "leak_rate": 0.3, "input_scaling": 1.0, "ridge": 1e-6, "sparsity": 0.9}
    out: dict = {"esn_units": units, "esn_steps": steps, "esn_fit_steps": n_fit, "esn_device": device,
                 "esn_code": "cortexfit.models.esn.ESNDynamics forward + fit_readout (the esn family's fit path)",
                 "load_avg_1min_start": os.getloadavg()[0]}
    u = torch.as_tensor(X, dtype=torch.float32, device=device)[None]
    y_fit = torch.as_tensor(Y[warmup:n_fit], dtype=torch.float32, device=device)

    def ours(reservoir=None) -> tuple[float, float, dict]:
        t0 = time.perf_counter()
        dyn = build_dynamics("esn", input_size=1, hidden_size=units, seed=0, **hp).to(device)
        if reservoir is not None:
            for name, a in zip(("weight_hh", "weight_ih", "bias"), reservoir):
                a = a.toarray() if hasattr(a, "toarray") else np.asarray(a)
                buf = getattr(dyn, name)
                buf.copy_(torch.as_tensor(np.broadcast_to(a.reshape(-1) if name == "bias" else a, buf.shape).copy()))
        t1 = time.perf_counter()
        states = dyn(u)[0]
        t2 = time.perf_counter()
        readout = dyn.fit_readout(states[warmup:n_fit], y_fit)
        t3 = time.perf_counter()
        with torch.no_grad():
            pred = readout(states[n_fit:]).cpu().numpy()
        t4 = time.perf_counter()
        parts = {"build": t1 - t0, "run": t2 - t1, "readout": t3 - t2, "predict": t4 - t3}
        return t4 - t0, nrmse(pred, Y[n_fit:]), {"dyn": dyn, "states": states, **parts}

    try:
        import reservoirpy
        from reservoirpy.nodes import Reservoir, Ridge
    except ImportError:
        reservoirpy = None

    def theirs():
        assert reservoirpy is not None
        t0 = time.perf_counter()
        res = Reservoir(units, sr=hp["spectral_radius"], lr=hp["leak_rate"], input_scaling=hp["input_scaling"],
                        rc_connectivity=1 - hp["sparsity"], seed=0)
        model = res >> Ridge(ridge=hp["ridge"])
        model.fit(X[:n_fit], Y[:n_fit], warmup=warmup)
        pred = model.run(X[n_fit:])
        return time.perf_counter() - t0, nrmse(np.asarray(pred), Y[n_fit:]), res

    ours()  # warm-up: imports, first-touch allocations
    rounds = []
    for _ in range(repeats):
        mine = ours()
        rounds.append((mine, theirs() if reservoirpy is not None else None))
        print(f"esn round: ours {mine[0]:.3f} s (" + ", ".join(f"{k} {mine[2][k]:.3f}" for k in
              ("build", "run", "readout", "predict")) + f") nrmse {mine[1]:.3g}"
              + (f"; reservoirpy {rounds[-1][1][0]:.3f} s nrmse {rounds[-1][1][1]:.3g}" if rounds[-1][1] else ""),
              flush=True)
    best = min((r[0] for r in rounds), key=lambda m: m[0])
    out["esn_seconds"] = round(best[0], 3)
    out["esn_seconds_parts"] = {k: round(best[2][k], 3) for k in ("build", "run", "readout", "predict")}
    out["esn_nrmse"] = best[1]
    # the same model run sequentially (no time chunks): equal NRMSE shows the measured washout suffices
    dyn, states = best[2]["dyn"], best[2]["states"]
    t0 = time.perf_counter()
    exact = reservoir_states(u, dyn.weight_ih, dyn.bias, dyn.run_weight(), dyn.initial_state(1),
                             dyn.options.leak_rate, columns=1)[0]
    out["esn_exact_run_seconds"] = round(time.perf_counter() - t0, 3)
    out["esn_max_state_diff_vs_sequential"] = float((exact - states).abs().max())
    readout = dyn.fit_readout(exact[warmup:n_fit], y_fit)
    with torch.no_grad():
        out["esn_exact_nrmse"] = nrmse(readout(exact[n_fit:]).cpu().numpy(), Y[n_fit:])
    print(f"esn: best {out['esn_seconds']} s, nrmse {out['esn_nrmse']:.4g}; sequential run "
          f"{out['esn_exact_run_seconds']} s, nrmse {out['esn_exact_nrmse']:.4g}, largest state difference "
          f"{out['esn_max_state_diff_vs_sequential']:.2g}", flush=True)
    if reservoirpy is None:
        out.update(reservoirpy_version=None, reservoirpy_seconds=None, reservoirpy_nrmse=None,
                   esn_speedup_vs_reservoirpy=None, esn_nrmse_on_reservoirpy_matrices=None)
        return out
    theirs_runs = [r[1] for r in rounds]
    out["reservoirpy_version"] = reservoirpy.__version__
    out["reservoirpy_seconds"] = round(min(r[0] for r in theirs_runs), 3)
    out["reservoirpy_nrmse"] = theirs_runs[0][1]
    ratios = [t[0] / m[0] for m, t in rounds]
    out["esn_speedup_vs_reservoirpy"] = round(float(np.median(ratios)), 2)
    out["esn_speedup_rounds"] = [round(r, 2) for r in ratios]
    out["esn_speedup_best_times"] = round(out["reservoirpy_seconds"] / out["esn_seconds"], 2)
    res = theirs_runs[0][2]
    out["esn_nrmse_on_reservoirpy_matrices"] = ours((res.W, res.Win, res.bias))[1]
    out["load_avg_1min_end"] = os.getloadavg()[0]
    print(f"reservoirpy: best {out['reservoirpy_seconds']} s, nrmse {out['reservoirpy_nrmse']:.4g}; speed-up "
          f"{out['esn_speedup_vs_reservoirpy']} (median of rounds {out['esn_speedup_rounds']}); ours on its "
          f"matrices: nrmse {out['esn_nrmse_on_reservoirpy_matrices']:.4g}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.6, help="length of one throughput measurement")
    ap.add_argument("--rounds", type=int, default=12, help="interleaved rounds per hidden size")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved ESN rounds (median same-round ratio)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--esn-units", type=int, default=1000)
    ap.add_argument("--esn-steps", type=int, default=50_000)
    ap.add_argument("--esn-device", default="cpu", help="where our ESN runs (reservoirpy always runs on the CPU)")
    ap.add_argument("--skip-rate", action="store_true")
    ap.add_argument("--skip-esn", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result: dict = {"torch": torch.__version__, "threads": args.threads, "device": args.device,
                    "machine": platform.machine(), "batch": BATCH, "steps": STEPS, "inputs": INPUTS}
    if not args.skip_rate:
        result.update(bench_rate(args.sizes, args.seconds, args.rounds, args.device))
    if not args.skip_esn:
        result.update(bench_esn(args.esn_units, args.esn_steps, args.repeats, args.esn_device))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
