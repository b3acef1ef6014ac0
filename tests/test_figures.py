"""Tests of ``cortexfit figures``: every mechanism figure's checks pass in quick mode, and the runner's contract."""

from __future__ import annotations

import json
import sys
import types

import pytest

from cortexfit import figures
from cortexfit.core.errors import ReportError
from cortexfit.figures._common import (
    FigureResult,
    check,
    figure,
    save_figure,
    shared_data_dir,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The whole quick set, run once for this module (about 20 s of CPU)."""
    out = tmp_path_factory.mktemp("figures_quick")
    return out, figures.run(out, quick=True)


def test_quick_run_passes_every_check(quick_run):
    _, summary = quick_run
    assert summary["passed"] is True
    assert list(summary["figures"]) == figures.names()
    failed = {name: [c for c, ok in fig["checks"].items() if not ok] for name, fig in summary["figures"].items()}
    assert all(not bad for bad in failed.values()), failed


@pytest.mark.parametrize("name", figures.names())
def test_each_figure_writes_png_and_json(quick_run, name):
    out, _ = quick_run
    png, js = out / f"{name}.png", out / f"{name}.json"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 10_000  # a real multi-panel figure, not an empty canvas
    data = json.loads(js.read_text())
    assert data["name"] == name and data["quick"] is True and data["error"] is None
    assert len(data["checks"]) >= 2
    for c in data["checks"]:
        assert c["passed"] is True, (name, c)
        assert c["lo"] is not None or c["hi"] is not None
        lo = -float("inf") if c["lo"] is None else c["lo"]
        hi = float("inf") if c["hi"] is None else c["hi"]
        assert lo <= c["value"] <= hi
    assert not list(out.glob(f".{name}.*.tmp")), "temporary files left behind"


def test_index_embeds_every_figure(quick_run):
    out, summary = quick_run
    html = (out / "index.html").read_text()
    assert summary["index"] == str(out / "index.html")
    assert html.count("data:image/png;base64,") == len(figures.names())
    n = len(figures.names())
    assert f"{n} / {n} figures pass all checks" in html
    assert 'class="fail"' not in html
    assert "<nav>" in html and html.count("<section") == n + 1  # the report's Page: summary + one per figure


def test_headline_numbers(quick_run):
    """The numbers the figures are about, read back from the JSON files."""
    out, _ = quick_run

    def values(name):
        return json.loads((out / f"{name}.json").read_text())["values"]

    assert values("dale")["radius_formula"] == pytest.approx((0.8 * 0.5**2 + 0.2 * 1.5**2) ** 0.5)
    assert values("flipflop")["n_stable"] == 8
    grad = values("gradients")["accuracy_per_seed"]
    assert min(grad["lstm"]) > 0.9 and sum(grad["lstm"]) - sum(grad["vanilla"]) > 0
    interference = values("interference")
    assert interference["accuracy_A_after_B"]["ewc"] > interference["accuracy_A_after_B"]["plain"]
    stp = values("stp")["paired_pulse_ratio"]
    assert stp["facilitating"] > 1 > stp["depressing"]
    echo = values("echo_state")
    assert 0 < echo["mc_total"]["0.9"] <= 50


@pytest.mark.parametrize("name", figures.names())
def test_figure_modules_split_compute_check_plot(name):
    """Every module has the compute -> check -> plot steps that its make() composes."""
    import importlib
    import inspect

    mod = importlib.import_module(f"cortexfit.figures.{figures.FIGURES[name]}")
    for step in ("compute", "check", "plot", "record", "make"):
        assert callable(getattr(mod, step, None)), (name, step)
    assert list(inspect.signature(mod.compute).parameters)[:2] == ["quick", "seed"]
    src = inspect.getsource(mod)
    assert len(src.splitlines()) < 400


def test_unknown_figure_is_rejected_before_running(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ReportError, match="unknown figure.*nope.*valid figures: euler"):
        figures.run(out, quick=True, only=["euler", "nope"])
    assert not out.exists()


def _fake_module(monkeypatch, make):
    mod = types.ModuleType("cortexfit.figures._fake")
    mod.NAME, mod.TITLE, mod.make = "fake", "A fake figure", make
    monkeypatch.setitem(sys.modules, "cortexfit.figures._fake", mod)
    monkeypatch.setitem(figures.FIGURES, "fake", "_fake")


def test_failed_check_raises_after_writing_everything(tmp_path, monkeypatch):
    def make(out_dir, *, quick, seed=0):
        res = FigureResult(name="fake", title="A fake figure", checks=[check("too_small", 0.5, lo=1.0)])
        with figure(1, 1, width=3, height=2) as (fig, ax):
            ax.plot([0, 1], [0, 1])
            return save_figure(fig, out_dir, res, quick=quick, seed=seed)

    _fake_module(monkeypatch, make)
    with pytest.raises(ReportError, match=r"fake \(too_small\)"):
        figures.run(tmp_path, quick=True, only=["stp", "fake"])
    assert json.loads((tmp_path / "fake.json").read_text())["passed"] is False
    assert json.loads((tmp_path / "stp.json").read_text())["passed"] is True
    html = (tmp_path / "index.html").read_text()
    assert 'class="fail"' in html and "too_small" in html and html.count("data:image/png;base64,") == 2


def test_crashing_figure_is_reported(tmp_path, monkeypatch):
    def make(out_dir, *, quick, seed=0):
        raise RuntimeError("boom")

    _fake_module(monkeypatch, make)
    with pytest.raises(ReportError, match="RuntimeError: boom"):
        figures.run(tmp_path, quick=True, only=["fake"])
    data = json.loads((tmp_path / "fake.json").read_text())
    assert data["error"] == "RuntimeError: boom" and data["passed"] is False
    assert "boom" in (tmp_path / "index.html").read_text()


def test_deterministic_for_a_seed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    figures.run(a, quick=True, only=["dale", "echo_state"])
    figures.run(b, quick=True, only=["dale", "echo_state"])
    figures.run(c, quick=True, only=["dale"], seed=1)
    for name in ("dale", "echo_state"):
        assert (a / f"{name}.json").read_text() == (b / f"{name}.json").read_text()
    assert (a / "dale.json").read_text() != (c / "dale.json").read_text()


def test_cli_exit_codes(tmp_path, capsys):
    from cortexfit.cli import main

    assert main(["figures", str(tmp_path), "--quick", "--only", "stp"]) == 0
    assert (tmp_path / "stp.png").is_file()
    assert main(["figures", str(tmp_path), "--quick", "--only", "bogus"]) == 1
    assert "unknown figure(s) bogus" in capsys.readouterr().err


def test_check_bounds_and_nan():
    assert check("a", 1.0, lo=1.0, hi=1.0)["passed"]
    assert not check("a", 1.0001, hi=1.0)["passed"]
    assert not check("a", float("nan"), lo=0.0)["passed"]
    assert check("a", -5.0)["passed"]  # no bounds: informational


def test_fallbacks_without_shared_data(tmp_path, monkeypatch):
    """Without the shared recordings, rotations use a simulated population and still pass."""
    monkeypatch.setenv("CORTEXFIT_SHARED_DATA", str(tmp_path / "absent"))
    assert shared_data_dir() == tmp_path / "absent"
    figures.run(tmp_path / "out", quick=True, only=["rotations"])
    data = json.loads((tmp_path / "out" / "rotations.json").read_text())
    assert data["params"]["data"].startswith("simulated")


@pytest.mark.slow
def test_flipflop_trains_its_own_network_without_shared_data(tmp_path, monkeypatch):
    monkeypatch.setenv("CORTEXFIT_SHARED_DATA", str(tmp_path / "absent"))
    figures.run(tmp_path / "out", quick=True, only=["flipflop"])
    data = json.loads((tmp_path / "out" / "flipflop.json").read_text())
    assert data["params"]["network"].startswith("trained here") and data["values"]["n_stable"] == 8


@pytest.mark.realdata
def test_real_data_are_used_when_present(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("CORTEXFIT_SHARED_DATA", str(shared_data))
    figures.run(tmp_path, quick=True, only=["flipflop", "rotations"])
    ff = json.loads((tmp_path / "flipflop.json").read_text())
    rot = json.loads((tmp_path / "rotations.json").read_text())
    assert ff["params"]["network"].endswith("flipflop_rnn100.pt")
    assert rot["params"]["data"].endswith("churchland2012_jpca_tensor.mat")
    assert rot["values"]["shape_condition_time_neuron"] == [10, 41, 50]
