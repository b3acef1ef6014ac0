"""Every mechanism figure's checks fail when its mechanism is removed (issue "checks that can fail").

Each figure module's ``compute`` takes an option that builds the broken variant; its ``check`` must then
report at least the named checks as failed.  The intact variants pass in ``test_figures.py`` (the quick
run at seed 0); seeds 1 and 2 are measured by ``cortexfit figures --quick --seed S`` (too slow for the suite).
"""

from __future__ import annotations

import importlib

import pytest

from cortexfit.figures._common import compute_context, failed

#: figure -> (compute options that remove the mechanism, checks that must then fail)
BROKEN = {
    "euler": ({"tau_scale": 1.1}, {"max_abs_diff_rate_vs_vanilla", "error_slope_loglog"}),
    "chaos": ({"gain_scale": 0.45}, {"lyap_at_g1.5", "g_zero_crossing", "lyap_at_g2"}),
    "echo_state": ({"rho_scale": 2.0}, {"distance_rho0.8_no_input"}),
    "gradients": ({"gated": False, "n_seeds": 1}, {"lstm_accuracy_min"}),
    "dale": ({"rank_one_overlap": 0.0}, {"outlier_rel_error", "outlier_over_bulk_radius"}),
    "stp": ({"facilitation": False}, {"reactivation_ratio", "u_cued_minus_u_other_at_readout"}),
    "exposure": ({"scheduled_sampling": False, "n_seeds": 1}, {"rmse_ratio_ss_over_tf_long_mean"}),
    "interference": ({"ewc_lambda": 0.0}, {"ewc_minus_plain_on_A"}),
    "flipflop": ({"trained": False}, {"n_stable_fixed_points", "corner_patterns_covered", "task_sign_accuracy"}),
    "rotations": ({"data": "random_walk"}, {"r2_skew_over_shuffle_p95", "r2_skew_over_full"}),
}


def test_every_figure_has_a_broken_variant():
    from cortexfit import figures

    assert set(BROKEN) == set(figures.names())


@pytest.mark.parametrize("name", list(BROKEN))
def test_check_fails_without_the_mechanism(name):
    options, must_fail = BROKEN[name]
    mod = importlib.import_module(f"cortexfit.figures.{name}")
    with compute_context():
        checks = mod.check(mod.compute(quick=True, seed=0, **options))
    bad = set(failed(checks))
    values = {c["name"]: round(c["value"], 4) for c in checks}
    assert must_fail <= bad, (name, options, values)
