"""Scaling: the ``rate`` family's fit (seconds per epoch, peak memory) and the fixed-point search vs size.

Fit
    ``cortexfit.fit.run(..., model="rate")`` (the function a ``snakemake`` fit rule runs), latent mode, the
    default config but ``--epochs`` epochs (default 3) and no early stopping, on synthetic Poisson counts from
    smooth random latents.  One factor at a time from the base (100 recorded units, 100 trials, 100 bins of
    10 ms): units 100 / 300 / 1000, trials 100 / 400 / 1600, bins 100 / 400.  Seconds per epoch = the shortest
    gap between consecutive epoch ends (start-up and the final evaluation left out; the shortest, because other
    work on a shared machine only ever adds time, and with two threads a busy core stalls every parallel
    region of the other, so the slowdown comes in bursts far larger than the share of the CPU lost); peak memory =
    the fit process's peak resident set size, and that minus its size just before the fit (imports and data).
Fixed points
    :func:`cortexfit.analysis.fixed_point_solver.find_fixed_points` on a ``rate`` network (gain ``--g``) of
    100 / 300 / 1000 units from ``--n-init`` states of its own trajectories under random input pulses, zero
    input, the default search options.

Each measurement runs in its own process (a clean peak memory) with ``--threads`` torch/BLAS threads; on a
machine other work shares, ``--threads 1`` gives steadier ratios (with 2 threads a busy core stalls every
parallel region of the other: at the base size, under a load of 5, 1.5 s per epoch with 2 threads against
0.24-0.54 s with 1).  The timeout covers the whole process, the fit's start-up (data preparation, the
baselines it is scored against) and final evaluation included, not only its epochs.  For
each factor the table gives the growth per doubling, ``(t2 / t1) ** (1 / log2(n2 / n1))`` between its
smallest and largest size measured (1 = constant, 2 = linear, 4 = quadratic); a measurement that takes longer
than ``--timeout`` seconds is stopped and shown as ``> timeout`` (then the ratio is over the sizes that
finished).  The last line printed is one JSON object with every figure.

Usage: ``python benchmarks/bench_scaling.py [--epochs 3 --threads 2 --n-init 64 --g 1.5 --timeout 90 --quick]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = {"units": 100, "trials": 100, "bins": 100}
GRID = {"units": [100, 300, 1000], "trials": [100, 400, 1600], "bins": [100, 400]}
FP_SIZES = [100, 300, 1000]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def make_activity(path: Path, units: int, trials: int, bins: int, seed: int = 0) -> None:
    """Poisson counts (trial, bin, unit) from 4 smooth random latents through a random log-linear readout."""
    import numpy as np

    from cortexfit.core import convention

    rng = np.random.default_rng(seed)
    t = np.arange(bins) * 0.01
    phase = rng.uniform(0, 2 * np.pi, (trials, 1, 4))
    freq = rng.uniform(0.5, 3.0, (1, 1, 4))
    latents = np.sin(2 * np.pi * freq * t[None, :, None] + phase)
    rates = np.exp(latents @ (0.5 * rng.standard_normal((4, units))) - 1.5)
    counts = rng.poisson(rates).astype("uint16")
    convention.write_dataset(convention.new_activity(counts, time=t, bin_width_s=0.01), path)


def child_fit(spec: dict) -> dict:
    """One fit (in this process); seconds per epoch and memory."""
    from cortexfit import fit as fit_stage

    before = _rss_mb()
    ends: list[float] = []
    config = {"train": {"max_epochs": spec["epochs"], "patience": spec["epochs"] + 1}}
    fit_stage.run(spec["activity"], spec["out"], model="rate", config=config, device="cpu",
                  after_epoch=lambda epoch: ends.append(time.perf_counter()))
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    return {"seconds_per_epoch": min(gaps) if gaps else None, "epoch_gaps": [round(g, 3) for g in gaps],
            "epochs": len(ends),
            "peak_rss_mb": round(_rss_mb(), 1), "peak_rss_over_start_mb": round(_rss_mb() - before, 1)}


def child_fixed_points(spec: dict) -> dict:
    """One fixed-point search (in this process): seconds, points found, memory."""
    import torch

    from cortexfit.analysis.fixed_point_solver import find_fixed_points
    from cortexfit.models import build_dynamics

    n, n_init = spec["units"], spec["n_init"]
    torch.manual_seed(0)
    net = build_dynamics("rate", input_size=2, hidden_size=n, g=spec["g"])
    g = torch.Generator().manual_seed(0)
    pulses = (torch.rand(32, 200, 2, generator=g) < 0.05).float() * torch.sign(torch.randn(32, 200, 2, generator=g))
    with torch.no_grad():
        states = net(pulses).reshape(-1, net.state_size)
    x0 = states[torch.randint(len(states), (n_init,), generator=g)]
    x0 = x0 + 0.5 * states.std(0).mean() * torch.randn(x0.shape, generator=g)
    before = _rss_mb()
    t0 = time.perf_counter()
    fps = find_fixed_points(net, x0, torch.zeros(2))
    return {"seconds": round(time.perf_counter() - t0, 3), "n_points": len(fps), "n_stable": fps.n_stable,
            "adam_iters": fps.info["adam_iters"], "lm_iters": fps.info["lm_iters"],
            "n_refined": fps.info["n_refined"], "peak_rss_mb": round(_rss_mb(), 1),
            "peak_rss_over_start_mb": round(_rss_mb() - before, 1)}


def run_child(kind: str, spec: dict, threads: int, timeout: float) -> dict:
    """One measurement in a fresh process; ``{"timed_out": seconds}`` when it takes longer than ``timeout``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(spec)], env=env,
                              capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"timed_out": timeout}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def per_doubling(sizes: list[int], values: list[float | None]) -> float | None:
    """Growth factor per doubling of the size between the smallest and the largest size measured."""
    done = [(n, v) for n, v in zip(sizes, values) if v]
    if len(done) < 2:
        return None
    (n1, v1), (n2, v2) = done[0], done[-1]
    return round((v2 / v1) ** (1.0 / math.log2(n2 / n1)), 2)


def _fmt(r: dict, key: str, width: int, digits: int) -> str:
    if "timed_out" in r:
        text = f">{int(r['timed_out'])} s" if key in ("seconds", "seconds_per_epoch") else ""
        return f"{text:>{width}}"
    v = r.get(key)
    return f"{v:>{width}.{digits}f}" if isinstance(v, (int, float)) else f"{'-':>{width}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="epochs per fit (seconds per epoch from epochs 2..)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-init", type=int, default=64, help="initial states of the fixed-point search")
    ap.add_argument("--g", type=float, default=1.5, help="gain of the fixed-point test network")
    ap.add_argument("--quick", action="store_true", help="the two smallest sizes of each factor only")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds allowed per measurement (then '>')")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, spec = args.child[0], json.loads(args.child[1])
        print(json.dumps(child_fit(spec) if kind == "fit" else child_fixed_points(spec)))
        return
    grid = {k: v[:2] if args.quick else v for k, v in GRID.items()}
    fp_sizes = FP_SIZES[:2] if args.quick else FP_SIZES
    result: dict = {"machine": platform.machine(), "threads": args.threads, "epochs": args.epochs,
                    "load_avg_1min_start": os.getloadavg()[0], "fit": {}, "fixed_points": {}}
    t_all = time.perf_counter()
    print(f"{'factor':<8} {'size':>6} {'s/epoch':>9} {'peak MB':>9} {'+MB':>8}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        done: dict[tuple[int, int, int], dict] = {}
        for factor, sizes in grid.items():
            rows = []
            for n in sizes:
                dims = {**BASE, factor: n}
                key = (dims["units"], dims["trials"], dims["bins"])
                if key not in done:
                    name = "_".join(map(str, key))
                    act = Path(tmp) / f"act_{name}.nc"
                    make_activity(act, **dims)
                    done[key] = run_child("fit", {"activity": str(act), "out": str(Path(tmp) / f"fit_{name}"),
                                                  "epochs": args.epochs}, args.threads, args.timeout)
                r = done[key]
                rows.append(r)
                print(f"{factor:<8} {n:>6} {_fmt(r, 'seconds_per_epoch', 9, 3)} {_fmt(r, 'peak_rss_mb', 9, 0)} "
                      f"{_fmt(r, 'peak_rss_over_start_mb', 8, 0)}" + (f"  error: {r['error']}" if "error" in r else ""),
                      flush=True)
            result["fit"][factor] = {"sizes": sizes, "runs": rows,
                                     "seconds_per_epoch_per_doubling": per_doubling(
                                         sizes, [r.get("seconds_per_epoch") for r in rows]),
                                     "peak_rss_over_start_per_doubling": per_doubling(
                                         sizes, [r.get("peak_rss_over_start_mb") for r in rows])}
            print(f"{factor:<8} per doubling: time x{result['fit'][factor]['seconds_per_epoch_per_doubling']}, "
                  f"memory (over start) x{result['fit'][factor]['peak_rss_over_start_per_doubling']}", flush=True)
    print(f"\n{'fixed points':<12} {'units':>6} {'seconds':>9} {'points':>7} {'stable':>7} {'peak MB':>9}", flush=True)
    fp_rows = []
    for n in fp_sizes:
        r = run_child("fp", {"units": n, "n_init": args.n_init, "g": args.g}, args.threads, args.timeout)
        fp_rows.append(r)
        print(f"{'':<12} {n:>6} {_fmt(r, 'seconds', 9, 2)} {_fmt(r, 'n_points', 7, 0)} {_fmt(r, 'n_stable', 7, 0)} "
              f"{_fmt(r, 'peak_rss_mb', 9, 0)}" + (f"  error: {r['error']}" if "error" in r else ""), flush=True)
    result["fixed_points"] = {"sizes": fp_sizes, "n_init": args.n_init, "g": args.g, "runs": fp_rows,
                              "seconds_per_doubling": per_doubling(fp_sizes, [r.get("seconds") for r in fp_rows])}
    print(f"fixed points per doubling of units: time x{result['fixed_points']['seconds_per_doubling']}", flush=True)
    result["total_seconds"] = round(time.perf_counter() - t_all, 1)
    result["load_avg_1min_end"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
