"""Benchmark: cortexfit ingest vs nlb_tools' NWBDataset on the same alignment and 5 ms bins.

Cases: the two real recordings in ``../shared/data`` (skipped where absent) and a large simulated session
(300 units x 400 trials by default, written with pynwb to a temporary folder).  Every measurement runs in
its own fresh Python process:

* ``op_s``      the operation alone, imports excluded (ours: ``ingest_nwb`` -> xarray Dataset in memory;
                nlb_tools: ``NWBDataset(path)`` + ``resample(5)`` + ``make_trial_data`` aligned the same way);
* ``process_s`` the whole process seen from outside (interpreter start, imports, operation);
* ``peak_mb``   peak RSS above the RSS measured right after the imports: the kernel's high-water mark
                ``VmHWM`` is reset after the imports (``/proc/self/clear_refs``) and read after the operation.
                (``ru_maxrss`` is not used: Linux carries it over from the parent process across fork+exec.)

Medians over ``--repeats`` runs.  Spike counts of both tools are compared with an exact reference count
(all spikes with ``align + start <= t < align + stop`` per trial, by :func:`numpy.searchsorted`).  The last
line printed is one JSON object with every figure.

Usage: ``python benchmarks/bench_ingest.py [--repeats 5] [--large-units 300 --large-trials 400]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CORTEXFIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
BIN_MS = 5
CASES = {  # name -> (file, align column, window ms)
    "mc_maze_small": ("sub-Jenkins_ses-small_desc-test_ecephys.nwb", "move_onset_time", (-250, 450)),
    "yu2009": ("yu2009_pmd_reach.nwb", "start_time", (0, 1000)),
}


def _reset_peak() -> bool:
    """Reset this process's peak-RSS mark (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_bytes("VmHWM") > 0
    except OSError:
        return False


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def worker(tool: str, path: str, align: str, w0: float, w1: float) -> None:
    """Run one measurement in this (fresh) process and print its JSON result."""
    t_enter = time.perf_counter()
    import gc
    import resource

    import numpy as np
    import psutil

    if tool == "ours":
        from cortexfit.core import convention
        from cortexfit.ingest import ingest_nwb
    else:
        import logging
        import warnings

        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        from nlb_tools.nwb_interface import NWBDataset
    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    hwm_reset = _reset_peak()
    t0 = time.perf_counter()
    if tool == "ours":
        ds = ingest_nwb(path, bin_ms=BIN_MS, align=align, window_ms=(w0, w1))
        count = int(ds.activity.sum())
        shape = [int(n) for n in ds.activity.shape]
    else:
        ds = NWBDataset(path, split_heldout=False)
        ds.resample(BIN_MS)
        td = ds.make_trial_data(align_field=align, align_range=(w0, w1), allow_nans=True)
        count = int(np.nansum(td["spikes"].to_numpy(dtype=np.float64)))
        shape = [int(td["trial_id"].nunique()), int(len(td) // td["trial_id"].nunique()), td["spikes"].shape[1]]
    t1 = time.perf_counter()
    peak = _status_bytes("VmHWM") if hwm_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {"op_s": t1 - t0, "import_s": t0 - t_enter, "peak_mb": (peak - rss0) / 2**20, "count": count,
           "shape": shape, "rss_after_imports_mb": rss0 / 2**20, "peak_method": "VmHWM" if hwm_reset else
           "ru_maxrss"}
    if tool == "ours":
        with tempfile.TemporaryDirectory() as d:
            t2 = time.perf_counter()
            convention.write_dataset(ds, Path(d) / "a.nc")
            out["write_s"] = time.perf_counter() - t2
    print(json.dumps(out))


def measure(tool: str, path: Path, align: str, window: tuple[float, float], repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        cmd = [sys.executable, __file__, "--worker", tool, str(path), align, str(window[0]), str(window[1])]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{tool} on {path.name} failed:\n{proc.stderr[-2000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["process_s"] = wall
        runs.append(res)
    med = {k: statistics.median(r[k] for r in runs) for k in ("op_s", "process_s", "peak_mb", "import_s")}
    if "write_s" in runs[0]:
        med["write_s"] = statistics.median(r["write_s"] for r in runs)
    med.update(count=runs[0]["count"], shape=runs[0]["shape"], op_s_runs=[round(r["op_s"], 4) for r in runs])
    return med


def reference_count(path: Path, align: str, window: tuple[float, float]) -> int:
    """Exact count: every spike with align + w0 <= t < align + w1, per trial (plain h5py + numpy)."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        st = np.sort(f["units/spike_times"][()])
        a = f[f"intervals/trials/{align}"][()]
    a = a[np.isfinite(a)]
    lo, hi = a + window[0] / 1000, a + window[1] / 1000
    return int((np.searchsorted(st, hi, "left") - np.searchsorted(st, lo, "left")).sum())


def make_large(path: Path, n_units: int, n_trials: int, seed: int = 0) -> Path:
    """A long session like a lab's: units with spike_times/obs_intervals/electrodes/heldout, trials."""
    import datetime as dt
    import warnings

    import numpy as np
    from hdmf.common import DynamicTableRegion, ElementIdentifiers, VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    rng = np.random.default_rng(seed)
    nwb = NWBFile(session_description="simulated benchmark session", identifier="bench",
                  session_start_time=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    dev = nwb.create_device(name="array")
    grp = nwb.create_electrode_group(name="array", description="utah", location="M1", device=dev)
    for _ in range(96):
        nwb.add_electrode(group=grp, location="M1")
    start = np.arange(n_trials) * 1.5
    stop = start + 1.0
    nwb.add_trial_column(name="move_onset_time", description="movement onset")
    nwb.add_trial_column(name="condition", description="reach target")
    for i in range(n_trials):
        nwb.add_trial(start_time=start[i], stop_time=stop[i], move_onset_time=start[i] + 0.3 + 0.2 * rng.random(),
                      condition=f"target{i % 8}")
    end = stop[-1]  # nlb_tools needs every spike before the last obs_intervals end
    spikes = [np.sort(rng.uniform(0, end, rng.poisson(rng.uniform(2, 30) * end))) for _ in range(n_units)]
    # whole columns at once (VectorData + VectorIndex): pynwb's add_unit converts ragged lists element-wise
    st = VectorData(name="spike_times", description="spike times", data=np.concatenate(spikes))
    obs = VectorData(name="obs_intervals", description="observed", data=np.tile(np.c_[start, stop], (n_units, 1)))
    el = DynamicTableRegion(name="electrodes", description="electrode", data=np.arange(n_units) % 96,
                            table=nwb.electrodes)
    columns = [st, VectorIndex(name="spike_times_index", data=np.cumsum([len(x) for x in spikes]), target=st),
               obs, VectorIndex(name="obs_intervals_index", data=(np.arange(n_units) + 1) * n_trials, target=obs),
               el, VectorIndex(name="electrodes_index", data=np.arange(1, n_units + 1), target=el),
               VectorData(name="heldout", description="held-out unit", data=np.zeros(n_units, dtype=bool))]
    nwb.units = Units(name="units", id=ElementIdentifiers(name="id", data=np.arange(n_units)), columns=columns,
                      colnames=["spike_times", "obs_intervals", "electrodes", "heldout"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--large-repeats", type=int, default=3)
    ap.add_argument("--large-units", type=int, default=300)
    ap.add_argument("--large-trials", type=int, default=400)
    args = ap.parse_args()
    report: dict = {"machine": f"{platform.machine()} {os.cpu_count()} cpu, python {platform.python_version()}",
                    "bin_ms": BIN_MS, "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cases = {k: (DATA / f, a, w, args.repeats) for k, (f, a, w) in CASES.items() if (DATA / f).is_file()}
        t0 = time.perf_counter()
        large = make_large(Path(tmp) / "large.nwb", args.large_units, args.large_trials)
        print(f"wrote the large session in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        cases["large"] = (large, "move_onset_time", (-250, 450), args.large_repeats)
        for name, (path, align, window, reps) in cases.items():
            ours = measure("ours", path, align, window, reps)
            theirs = measure("nlb_tools", path, align, window, reps)
            ref = reference_count(path, align, window)
            case = {"file": path.name, "align": align, "window_ms": list(window), "ours": ours,
                    "nlb_tools": theirs, "reference_count": ref, "ours_count_exact": ours["count"] == ref,
                    "nlb_tools_count_error": theirs["count"] - ref,
                    "speedup": theirs["op_s"] / ours["op_s"],
                    "speedup_process": theirs["process_s"] / ours["process_s"],
                    "memory_ratio": ours["peak_mb"] / theirs["peak_mb"]}
            report["cases"][name] = case
            print(f"{name:14s} ours {ours['op_s'] * 1e3:8.1f} ms ({ours['process_s']:.2f} s process, "
                  f"{ours['peak_mb']:.0f} MB)  nlb_tools {theirs['op_s'] * 1e3:8.1f} ms ({theirs['process_s']:.2f} s, "
                  f"{theirs['peak_mb']:.0f} MB)  speedup {case['speedup']:.1f}x  counts ours {ours['count']} "
                  f"nlb {theirs['count']} reference {ref}", file=sys.stderr)
    c = report["cases"]
    if "mc_maze_small" in c:
        report["speedup_vs_nlb_tools"] = c["mc_maze_small"]["speedup"]
    if "yu2009" in c:
        report["speedup_vs_nlb_tools_yu2009"] = c["yu2009"]["speedup"]
    report["speedup_vs_nlb_tools_large"] = c["large"]["speedup"]
    report["memory_ratio_vs_nlb_tools_large"] = c["large"]["memory_ratio"]
    report["counts_exact"] = all(v["ours_count_exact"] for v in c.values())
    report["goal_met"] = (all(v["speedup"] >= 10 for v in c.values()) and report["memory_ratio_vs_nlb_tools_large"]
                          <= 1 / 3 and report["counts_exact"])
    print(json.dumps(report))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        tool, path, align, w0, w1 = sys.argv[2:7]
        worker(tool, path, align, float(w0), float(w1))
    else:
        main()
