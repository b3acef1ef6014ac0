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
