"""Joint fits on the shared real recordings (issue 13's smoke test), with the default fit options.

1. MC_Maze_Small split into two pseudo-sessions with disjoint random halves of its units
   (:func:`cortexfit.fit.sessions.split_units`): each half fitted alone (``cortexfit.fit.run``) and both jointly
   (``cortexfit.fit.group.run``, what the workflow's group rule runs), co-bps per session.
2. MC_Maze_Small and the Yu 2009 session (other animals, other tasks: a smoke test only), both binned at 5 ms
   over 0-700 ms after trial start, fitted jointly: co-bps per session, beside each fitted alone.

Reads ``../shared/data`` (or ``CORTEXFIT_SHARED_DATA``); writes into a temporary folder (``--keep DIR`` to keep
it).  The last line printed is one JSON object with every number.

Usage: ``python benchmarks/sessions_real.py [--model rate] [--seed 0] [--threads 2] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CORTEXFIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
FILES = {"mc_maze": ("sub-Jenkins_ses-small_desc-test_ecephys.nwb", "unit-id:1xxx=PMd,2xxx=M1"),
         "yu2009": ("yu2009_pmd_reach.nwb", "electrodes")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--keep", default=None, help="folder to write into (kept)")
    args = p.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    from cortexfit import fit, ingest
    from cortexfit.core import convention
    from cortexfit.fit import group
    from cortexfit.fit.sessions import split_units

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cortexfit-sessions-"))
    acts = {n: ingest.run(SHARED / f, work / n / "activity.nc", bin_ms=5, align="start_time", window_ms=(0, 700),
                          areas=areas) for n, (f, areas) in FILES.items()}
    halves = split_units(convention.read_dataset(acts["mc_maze"], "activity"), 2, seed=args.seed)
    for i, h in enumerate(halves):
        acts[f"mc_maze_half{i}"] = convention.write_dataset(h, work / f"mc_maze_half{i}" / "activity.nc")
    out: dict = {"model": args.model, "seed": args.seed, "single": {}, "joint": {}}
    for name, path in acts.items():
        t0 = time.perf_counter()
        m = fit.run(path, work / name / "fits" / args.model, model=args.model, seed=args.seed)
        out["single"][name] = {"co_bps": m["co_bps"], "units": convention.read_dataset(path).sizes["unit"],
                               "seconds": round(time.perf_counter() - t0, 1)}
    for label, names in (("mc_maze_halves", ["mc_maze_half0", "mc_maze_half1"]), ("mc_maze+yu2009",
                                                                                   ["mc_maze", "yu2009"])):
        t0 = time.perf_counter()
        m = group.run([acts[n] for n in names], work / "groups" / label / args.model, model=args.model, names=names,
                      seed=args.seed)
        out["joint"][label] = {"pooled_co_bps": m["pooled_co_bps"], "seconds": round(time.perf_counter() - t0, 1),
                               "co_bps": {n: m["per_session"][n]["co_bps"] for n in names}}
    for label, r in out["joint"].items():
        for n, v in r["co_bps"].items():
            print(f"{label:16s} {n:14s} joint co-bps {v:.4f}  alone {out['single'][n]['co_bps']:.4f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
