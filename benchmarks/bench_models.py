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
    1e-6, 10% recurrent connectivity.  Time = reservoir construction + fit + predict.  Ours:
    :class:`esn_series.EchoStateNetwork` (benchmarks/esn_series.py) (on ``--esn-device``) with parallel time chunks
    (``--chunk``/``--washout``) and, for reference, the exact sequential run (equal NRMSE shows the washout
    suffices).  reservoirpy 0.4.2 (``Reservoir >> Ridge``, CPU) if importable, else its figures are null;
    ours is also run on reservoirpy's own matrices (equal-error check).  Both fits solve the same float64
    ridge problem (``X^T X`` of 40,000 x 1000 states), which bounds the attainable speed-up on a CPU.

The last line printed is one JSON object with every figure.

Usage: ``python benchmarks/bench_models.py [--rounds 12 --seconds 0.6 --sizes 128 512 --skip-esn]
[--esn-device cuda --esn-loop-threads 1]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from cortexfit.models import build_dynamics
from esn_series import EchoStateNetwork  # benchmark helper beside this file

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


def bench_esn(units: int, steps: int, chunk: int, washout: int, repeats: int, device: str,
              loop_threads: int | None = None) -> dict:
    """Ours (on ``device``) vs reservoirpy (CPU) on Mackey-Glass one-step-ahead prediction."""
    series = mackey_glass(steps + 1)
    X, Y = series[:-1, None], series[1:, None]
    n_fit = int(0.8 * steps)
    hp = {"spectral_radius": 0.9, "leak_rate": 0.3, "input_scaling": 1.0, "ridge": 1e-6, "sparsity": 0.9}
    out: dict = {"esn_units": units, "esn_steps": steps, "esn_fit_steps": n_fit, "esn_chunk": chunk,
                 "esn_washout": washout, "esn_device": device, "esn_loop_threads": loop_threads}

    def ours(**kw) -> tuple[float, float]:
        t0 = time.perf_counter()
        esn = EchoStateNetwork(units=units, warmup=100, device=device, loop_threads=loop_threads, **hp, **kw)
        esn.fit(X[:n_fit], Y[:n_fit])
        pred = esn.predict(X[n_fit:])
        return time.perf_counter() - t0, nrmse(pred, Y[n_fit:])

    runs = [ours(chunk_length=chunk, chunk_washout=washout) for _ in range(repeats)]
    out["esn_seconds"] = round(min(r[0] for r in runs), 3)
    out["esn_nrmse"] = runs[0][1]
    t_exact, e_exact = ours()
    out["esn_exact_seconds"], out["esn_exact_nrmse"] = round(t_exact, 3), e_exact
    print(f"esn: {out['esn_seconds']} s (exact sequential {t_exact:.2f} s), nrmse {out['esn_nrmse']:.3g}", flush=True)
    try:
        import reservoirpy
        from reservoirpy.nodes import Reservoir, Ridge
    except ImportError:
        out.update(reservoirpy_version=None, reservoirpy_seconds=None, reservoirpy_nrmse=None,
                   esn_speedup_vs_reservoirpy=None, esn_nrmse_on_reservoirpy_matrices=None)
        return out
    rpy_runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = Reservoir(units, sr=hp["spectral_radius"], lr=hp["leak_rate"], input_scaling=hp["input_scaling"],
                        rc_connectivity=1 - hp["sparsity"], seed=0)
        model = res >> Ridge(ridge=hp["ridge"])
        model.fit(X[:n_fit], Y[:n_fit], warmup=100)
        pred = model.run(X[n_fit:])
        rpy_runs.append((time.perf_counter() - t0, nrmse(np.asarray(pred), Y[n_fit:])))
    out["reservoirpy_version"] = reservoirpy.__version__
    out["reservoirpy_seconds"] = round(min(r[0] for r in rpy_runs), 3)
    out["reservoirpy_nrmse"] = rpy_runs[0][1]
    out["esn_speedup_vs_reservoirpy"] = round(out["reservoirpy_seconds"] / out["esn_seconds"], 2)
    _, same = ours(chunk_length=chunk, chunk_washout=washout, reservoir=(res.W, res.Win, res.bias))
    out["esn_nrmse_on_reservoirpy_matrices"] = same
    print(f"reservoirpy: {out['reservoirpy_seconds']} s, nrmse {out['reservoirpy_nrmse']:.3g}; "
          f"ours on its matrices: nrmse {same:.3g}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.6, help="length of one throughput measurement")
    ap.add_argument("--rounds", type=int, default=12, help="interleaved rounds per hidden size")
    ap.add_argument("--repeats", type=int, default=2, help="ESN repeats (best time counts)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--esn-units", type=int, default=1000)
    ap.add_argument("--esn-steps", type=int, default=50_000)
    ap.add_argument("--esn-device", default="cpu", help="where our ESN runs (reservoirpy always runs on the CPU)")
    ap.add_argument("--esn-loop-threads", type=int, default=None, help="torch threads in our reservoir loop")
    ap.add_argument("--chunk", type=int, default=2000, help="ESN parallel time-chunk length")
    ap.add_argument("--washout", type=int, default=200, help="ESN chunk overlap (the exact run checks it)")
    ap.add_argument("--skip-rate", action="store_true")
    ap.add_argument("--skip-esn", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result: dict = {"torch": torch.__version__, "threads": args.threads, "device": args.device,
                    "machine": platform.machine(), "batch": BATCH, "steps": STEPS, "inputs": INPUTS}
    if not args.skip_rate:
        result.update(bench_rate(args.sizes, args.seconds, args.rounds, args.device))
    if not args.skip_esn:
        result.update(bench_esn(args.esn_units, args.esn_steps, args.chunk, args.washout,
                                args.repeats, args.esn_device, args.esn_loop_threads))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
