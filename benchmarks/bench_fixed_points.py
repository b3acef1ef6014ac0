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

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CORTEXFIT_SHARED_DATA", ROOT.parent / "shared" / "data")) / "flipflop_rnn100.pt"


def flipflop_pulses(n_trials: int, n_time: int, *, p: float = 0.01, seed: int = 0):
    """Random +-1 pulses on 3 channels with probability ``p`` per step (the flip-flop task's inputs)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    on = torch.rand(n_trials, n_time, 3, generator=g) < p
    sign = torch.where(torch.rand(n_trials, n_time, 3, generator=g) < 0.5, -1.0, 1.0)
    return on * sign


def timed(fn):
    """Run ``fn()``; return its result, wall seconds and CPU seconds of this process."""
    import torch

    w, c = time.perf_counter(), time.process_time()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - w, time.process_time() - c


def fpf_finder(rnn):
    """FixedPointFinder with the settings of its own flip-flop example."""
    sys.path.insert(0, os.environ["FPF_DIR"])
    from FixedPointFinderTorch import FixedPointFinderTorch

    return FixedPointFinderTorch(rnn, max_iters=10000, lr_init=1.0, outlier_distance_scale=10.0,
                                 verbose=False, super_verbose=False)


def run_fpf(rnn, x0):
    """FixedPointFinder from ``x0`` under zero input; returns (stable points, all unique points)."""
    import numpy as np

    with contextlib.redirect_stdout(io.StringIO()):
        unique, _ = fpf_finder(rnn).find_fixed_points(x0.astype(np.float32), np.zeros((1, 3), np.float32))
    return unique.xstar[np.asarray(unique.is_stable, dtype=bool)], unique.xstar


def match(a, b, tol: float) -> bool:
    """True when every point of ``a`` has one of ``b`` within ``tol`` and vice versa."""
    import numpy as np

    if len(a) != len(b):
        return False
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    return bool(len(a) == 0 or (d.min(1).max() < tol and d.min(0).max() < tol))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-init", type=int, default=1024)
    ap.add_argument("--noise", type=float, default=0.5, help="std of the noise added to sampled states")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch and BLAS (both finders)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each finder (best is reported)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy/torch load BLAS
        os.environ[var] = str(args.threads)
    import numpy as np
    import torch

    from cortexfit.analysis.fixed_points import find_fixed_points, sample_initial_states
    from cortexfit.models import from_torch_rnn

    if not DATA.is_file():
        sys.exit(f"bench_fixed_points: {DATA} not found")
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    ckpt = torch.load(DATA, weights_only=True)
    rnn = torch.nn.RNN(3, 100, nonlinearity="tanh", batch_first=True)
    rnn.load_state_dict({k.removeprefix("rnn."): v for k, v in ckpt["state_dict"].items() if k.startswith("rnn.")})
    net = from_torch_rnn(ckpt["state_dict"]).to(dev)
    with torch.no_grad():
        states = rnn(flipflop_pulses(64, 500, seed=args.seed))[0].numpy()
    x0 = sample_initial_states(states, args.n_init, noise_std=args.noise, generator=np.random.default_rng(args.seed))
    ours_fn = lambda: find_fixed_points(net, torch.as_tensor(x0, device=dev), torch.zeros(3, device=dev))
    use_fpf = bool(os.environ.get("FPF_DIR"))
    rnn = rnn.to(dev)

    # warm-up (lazy imports, allocator) of both, on a few starts, outside the timings
    find_fixed_points(net, torch.as_tensor(x0[:16], device=dev), torch.zeros(3, device=dev))
    if use_fpf:
        run_fpf(rnn, x0[:16])
    results = {"ours": [], "ref": []}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        results["ours"].append(timed(ours_fn))
        if use_fpf:
            results["ref"].append(timed(lambda: run_fpf(rnn, x0)))
    fps = results["ours"][0][0]
    ours = fps.xstar[(fps.label == "stable") & (fps.point_type == "fixed")]
    wall, cpu = min(r[1] for r in results["ours"]), min(r[2] for r in results["ours"])
    print(f"cortexfit: {len(fps)} unique points, {len(ours)} stable; best of {args.repeats}: {wall:.3f} s wall, "
          f"{cpu:.3f} s CPU (Adam {fps.info['adam_iters']} it, LM {fps.info['lm_iters']} it, "
          f"{fps.info['n_refined']} candidates refined)", file=sys.stderr)
    out = {"n_stable": len(ours), "n_stable_reference": None, "seconds": round(wall, 3), "reference_seconds": None,
           "speedup_vs_fixed_point_finder": None, "cpu_seconds": round(cpu, 3), "reference_cpu_seconds": None,
           "cpu_speedup": None, "same_stable_set": None, "n_points": len(fps), "n_points_reference": None}
    if use_fpf:
        (ref, ref_all), _, _ = results["ref"][0]
        rwall, rcpu = min(r[1] for r in results["ref"]), min(r[2] for r in results["ref"])
        print(f"FixedPointFinder: {len(ref_all)} unique points, {len(ref)} stable; best of {args.repeats}: "
              f"{rwall:.3f} s wall, {rcpu:.3f} s CPU", file=sys.stderr)
        out.update(n_stable_reference=len(ref), reference_seconds=round(rwall, 3), reference_cpu_seconds=round(rcpu, 3),
                   speedup_vs_fixed_point_finder=round(rwall / wall, 2), cpu_speedup=round(rcpu / cpu, 2),
                   same_stable_set=match(ours, ref, tol=1e-2), n_points_reference=len(ref_all))
    out.update(n_init=args.n_init, device=str(dev), threads=args.threads)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
