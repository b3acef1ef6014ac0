"""Tests of cortexfit.models.defaults: data-derived family options."""

from __future__ import annotations

from cortexfit.models.defaults import RATE_TAU_BINS, family_defaults


def test_family_defaults_fill_only_what_is_unset():
    assert family_defaults("rate", {"tau": 0.1}, bin_width_s=0.005, seed=0) == {"tau": 0.1, "dt": 0.005}
    assert family_defaults("rate", {}, bin_width_s=0.01, seed=0)["tau"] == RATE_TAU_BINS * 0.01
    assert family_defaults("rate", {"dt": 0.1}, bin_width_s=0.01, seed=0)["tau"] == 0.1  # tau >= dt
    assert family_defaults("esn", {}, bin_width_s=0.01, seed=7) == {"seed": 7}
    assert family_defaults("esn", {"seed": 2}, bin_width_s=0.01, seed=7) == {"seed": 2}
    assert family_defaults("lstm", {"forget_bias": 0.5}, bin_width_s=0.01, seed=0) == {"forget_bias": 0.5}
