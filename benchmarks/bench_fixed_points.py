"""Benchmark: fixed points of the 100-unit 3-bit flip-flop RNN, cortexfit vs FixedPointFinder (PyTorch).

Both finders start from the same ``--n-init`` noisy states (std ``--noise``) sampled from trajectories of
the network driven by random flip-flop pulses, under zero input, on the same device.  FixedPointFinder
(mattgolub/fixed-point-finder) lives outside the project: set ``FPF_DIR`` to its checkout; without it the
reference columns are null.  Its settings are those of its own flip-flop example (``max_iters=10000``,
``lr_init=1``, ``outlier_distance_scale=10``); it works in float32, cortexfit in float64.

Prints one final JSON line: n_stable, n_stable_reference, seconds, reference_seconds,
speedup_vs_fixed_point_finder, plus whether both found the same stable points (``same_stable_set``).

Usage::

    FPF_DIR=/work/fpf python benchmarks/bench_fixed_points.py [--n-init 1024] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cortexfit.analysis.fixed_points import find_fixed_points, sample_initial_states
from cortexfit.models import from_torch_rnn

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CORTEXFIT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "flipflop_rnn100.pt"


def flipflop_pulses(n_trials: int, n_time: int, *, p: float = 0.01, seed: int = 0) -> torch.Tensor:
    """Random +-1 pulses on 3 channels with probability ``p`` per step (the flip-flop task's inputs)."""
    g = torch.Generator().manual_seed(seed)
    on = torch.rand(n_trials, n_time, 3, generator=g) < p
    sign = torch.where(torch.rand(n_trials, n_time, 3, generator=g) < 0.5, -1.0, 1.0)
    return on * sign


def run_fpf(rnn: torch.nn.RNN, x0: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Time FixedPointFinder on ``rnn`` from ``x0``; returns seconds, stable points and all unique points."""
    sys.path.insert(0, os.environ["FPF_DIR"])
    from FixedPointFinderTorch import FixedPointFinderTorch  # noqa: PLC0415 - external, optional

    fpf = FixedPointFinderTorch(rnn, max_iters=10000, lr_init=1.0, outlier_distance_scale=10.0,
                                verbose=False, super_verbose=False)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        unique, _ = fpf.find_fixed_points(x0.astype(np.float32), np.zeros((1, 3), np.float32))
    seconds = time.perf_counter() - t0
    stable = np.asarray(unique.is_stable, dtype=bool)
    return seconds, unique.xstar[stable], unique.xstar


def match(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """True when every point of ``a`` has one of ``b`` within ``tol`` and vice versa."""
    if len(a) != len(b):
        return False
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    return bool(len(a) == 0 or (d.min(1).max() < tol and d.min(0).max() < tol))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-init", type=int, default=1024)
    ap.add_argument("--noise", type=float, default=0.5, help="std of the noise added to sampled states")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (both finders)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not DATA.is_file():
        sys.exit(f"bench_fixed_points: {DATA} not found")
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    ckpt = torch.load(DATA, weights_only=True)
    rnn = torch.nn.RNN(3, 100, nonlinearity="tanh", batch_first=True)
    rnn.load_state_dict({k.removeprefix("rnn."): v for k, v in ckpt["state_dict"].items() if k.startswith("rnn.")})
    net = from_torch_rnn(ckpt["state_dict"])
    with torch.no_grad():
        states = rnn(flipflop_pulses(64, 500, seed=args.seed))[0].numpy()
    x0 = sample_initial_states(states, args.n_init, noise_std=args.noise, generator=np.random.default_rng(args.seed))

    t0 = time.perf_counter()
    fps = find_fixed_points(net.to(dev), torch.as_tensor(x0, device=dev), torch.zeros(3, device=dev))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    ours = fps.xstar[(fps.label == "stable") & (fps.point_type == "fixed")]
    print(f"cortexfit: {len(fps)} unique points, {len(ours)} stable, {seconds:.2f} s "
          f"(Adam {fps.info['adam_iters']} it, LM {fps.info['lm_iters']} it)", file=sys.stderr)

    ref_s = ref_stable = same = None
    if os.environ.get("FPF_DIR"):
        ref_s, ref, ref_all = run_fpf(rnn.to(dev), x0)
        ref_stable = len(ref)
        same = match(ours, ref, tol=1e-2)
        print(f"FixedPointFinder: {len(ref_all)} unique points, {ref_stable} stable, {ref_s:.2f} s", file=sys.stderr)
    print(json.dumps({
        "n_stable": len(ours),
        "n_stable_reference": ref_stable,
        "seconds": round(seconds, 3),
        "reference_seconds": None if ref_s is None else round(ref_s, 3),
        "speedup_vs_fixed_point_finder": None if ref_s is None else round(ref_s / seconds, 2),
        "same_stable_set": same,
        "n_init": args.n_init,
        "device": str(dev),
        "threads": args.threads,
    }))


if __name__ == "__main__":
    main()
