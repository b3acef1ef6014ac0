"""Every mechanism figure's checks fail when its mechanism is removed (issue "checks that can fail").

Each figure module's ``compute`` takes an option that builds the broken variant
(:data:`cortexfit.figures.controls.NEGATIVE_CONTROLS`); its ``check`` must then report at least the named
checks as failed.  The intact variants pass in ``test_figures.py`` (the quick run at seed 0); seeds 1 and 2
and full mode are measured by ``cortexfit figures [--quick] --seed S`` and
``python -m cortexfit.figures.controls [--quick] --seeds 0 1 2`` (too slow for the suite).
"""

from __future__ import annotations

import pytest

from cortexfit.figures.controls import NEGATIVE_CONTROLS, main, run_control


def test_every_figure_has_a_broken_variant():
    from cortexfit import figures

    assert set(NEGATIVE_CONTROLS) == set(figures.names())


@pytest.mark.parametrize("name", list(NEGATIVE_CONTROLS))
def test_check_fails_without_the_mechanism(name):
    r = run_control(name, quick=True, seed=0)
    assert r["ok"], (name, r["options"], r["failed"], r["values"])


def test_controls_cli_exits_nonzero_when_a_control_passes(monkeypatch, capsys):
    """The runner itself can fail: a 'control' that leaves the mechanism intact passes its checks -> exit 1."""
    from cortexfit.figures import controls

    monkeypatch.setitem(controls.NEGATIVE_CONTROLS, "euler", ({"tau_scale": 1.0}, frozenset({"error_slope_loglog"})))
    assert main(["--quick", "--only", "euler"]) == 1
    assert "DID NOT FAIL: error_slope_loglog" in capsys.readouterr().out


def test_exposure_growth_check_fails_when_the_ss_forecast_drifts():
    """ss_error_growth_mean (not in the control's must-fail set: without SS it is TF's growth, 1.26-4.5 over
    seeds) fails on its own when the SS error grows with horizon, and passes when it stays flat."""
    import numpy as np

    from cortexfit.figures import exposure
    from cortexfit.figures._common import failed

    def result(growth):
        flat = np.full(300, 0.2)
        z = np.zeros((1, 2))
        return exposure.ExposureResult(
            quick=True, seed=0, steps=1, seq_len=100, horizon=300, clean=z, obs=z, preds={}, final_loss={},
            rmse={"tf": flat * 2, "ss": flat}, phase={}, ratios=np.array([0.5]), ss_growth=np.array([growth]),
            model_seeds=[0])

    assert "ss_error_growth_mean" not in failed(exposure.check(result(1.05)))
    assert "ss_error_growth_mean" in failed(exposure.check(result(2.0)))
