"""Negative controls of the mechanism figures: every figure's checks must fail when its mechanism is removed.

Each figure module's ``compute`` takes an option that builds a broken variant (chaos without a chaotic
phase, an "LSTM" without gates, scheduled sampling that never feeds the model its own predictions, ...).
:data:`NEGATIVE_CONTROLS` names that option and the checks that must then fail; :func:`run_control` runs one
and says whether it failed as it must.  ``python -m cortexfit.figures.controls --quick --seeds 0 1 2``
runs them all (the test suite runs seed 0 in quick mode).

Examples
--------
>>> sorted(NEGATIVE_CONTROLS)[:3]
['chaos', 'dale', 'echo_state']
>>> run_control("euler", quick=True, seed=0)["ok"]  # doctest: +SKIP
True
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Sequence
from typing import Any

from cortexfit.figures._common import compute_context, failed

#: figure -> (compute options that remove the mechanism, checks that must then fail)
NEGATIVE_CONTROLS: dict[str, tuple[dict[str, Any], frozenset[str]]] = {
    "euler": ({"tau_scale": 1.1}, frozenset({"max_abs_diff_rate_vs_vanilla", "error_slope_loglog"})),
    "chaos": ({"gain_scale": 0.45}, frozenset({"lyap_at_g1.5", "g_zero_crossing", "lyap_at_g2"})),
    "echo_state": ({"rho_scale": 2.0}, frozenset({"distance_rho0.8_no_input"})),
    "gradients": ({"gated": False}, frozenset({"lstm_accuracy_min", "log10_grad_gap_at_init_min"})),
    "dale": ({"rank_one_overlap": 0.0}, frozenset({"outlier_rel_error", "outlier_over_bulk_radius"})),
    "stp": ({"facilitation": False}, frozenset({"reactivation_ratio", "u_cued_minus_u_other_at_readout"})),
    "exposure": ({"scheduled_sampling": False, "n_seeds": 1}, frozenset({"rmse_ratio_ss_over_tf_long_mean"})),
    "interference": ({"ewc_lambda": 0.0}, frozenset({"ewc_minus_plain_on_A"})),
    "flipflop": ({"trained": False},
                 frozenset({"n_stable_fixed_points", "corner_patterns_covered", "task_sign_accuracy"})),
    "rotations": ({"data": "random_walk"}, frozenset({"r2_skew_over_shuffle_p95", "r2_skew_over_full"})),
}


def run_control(name: str, *, quick: bool, seed: int = 0) -> dict[str, Any]:
    """Compute figure ``name``'s broken variant and check it.

    Returns
    -------
    dict
        ``name``, ``quick``, ``seed``, ``options``, ``must_fail`` and ``failed`` (check names, sorted),
        ``ok`` (every check in ``must_fail`` failed), ``values`` (check -> value) and ``seconds``.
    """
    if name not in NEGATIVE_CONTROLS:
        raise KeyError(f"no negative control for figure {name!r}; known: {', '.join(NEGATIVE_CONTROLS)}")
    options, must_fail = NEGATIVE_CONTROLS[name]
    module = importlib.import_module(f"cortexfit.figures.{name}")
    t0 = time.perf_counter()
    with compute_context():
        checks = module.check(module.compute(quick=quick, seed=seed, **options))
    bad = set(failed(checks))
    return {"name": name, "quick": quick, "seed": seed, "options": options, "must_fail": sorted(must_fail),
            "failed": sorted(bad), "ok": must_fail <= bad,
            "values": {c["name"]: float(c["value"]) for c in checks},
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the negative controls; one line per control and a final JSON line; exit 1 if any passed."""
    p = argparse.ArgumentParser(prog="python -m cortexfit.figures.controls", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="reduced sizes (as `cortexfit figures --quick`)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--only", nargs="*", default=None, help="figures to run (default: all)")
    args = p.parse_args(argv)
    results = []
    for name in args.only or list(NEGATIVE_CONTROLS):
        for seed in args.seeds:
            r = run_control(name, quick=args.quick, seed=seed)
            results.append(r)
            missing = sorted(set(r["must_fail"]) - set(r["failed"]))
            print(f"{name:13s} seed {seed}: {'fails as it must' if r['ok'] else 'DID NOT FAIL: ' + ', '.join(missing)}"
                  f" ({r['seconds']:.0f} s)", flush=True)
    print(json.dumps({"quick": args.quick, "seeds": args.seeds, "all_fail": all(r["ok"] for r in results),
                      "controls": results}))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
