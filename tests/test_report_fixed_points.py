"""Section 5 of the report in the data's axes (:mod:`cortexfit.report.fixed_points`): a model's fixed-point rates
land where the data's rates are the same, old files fall back to the model-PC figure, and on a simulated
flip-flop the teacher's 8 stable points, read out through the simulation's units, sit where the data holds each
of the 8 memories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cortexfit import report, simulate
from cortexfit.analysis import fixed_points as afp
from cortexfit.analysis.population import condition_average, fill_nan
from cortexfit.core import convention
from cortexfit.report import fixed_points as FP
from cortexfit.report import html as H
from test_report import make_dataset


def _section_html(data) -> str:
    sec = H.Section("5. Fixed points")
    FP.section(data, sec)
    return "".join(sec.parts)


def test_model_points_in_data_axes_land_on_the_data(tmp_path: Path):
    folder = make_dataset(tmp_path / "ds")
    path = folder / "fits" / "rate" / "fixed_points.nc"
    act = convention.read_dataset(folder / "activity.nc", "activity")
    bw = float(act.attrs["bin_width_s"])
    avg = fill_nan(condition_average(act).values)  # Hz, (condition, time, unit)
    fp = convention.read_dataset(path, "fixed_points")
    # point k predicts the data's condition-average rates of condition 0 at bin 3 + 5 k, in counts per bin like
    # fit.nc (units in reverse order: the projection must match them by id)
    counts = np.stack([avg[0, 3 + 5 * k] for k in range(fp.sizes["point"])]) * bw
    fp["rates"] = (("point", "unit"), counts[:, ::-1], {"units": "count/bin"})
    fp = fp.assign_coords(unit=act["unit"].values[::-1])
    convention.write_dataset(fp, path, "fixed_points")

    data = report.load_dataset(folder)
    axes = FP.data_axes(data.activity)
    panels, old = FP.model_panels(data, axes)
    assert old == [] and len(panels) == 1
    pts = panels[0]["points"]
    np.testing.assert_allclose(pts, axes.trajectories[0, [3 + 5 * k for k in range(len(pts))]], atol=1e-8)
    # the model's trajectories: fit.nc holds 0.4 counts/bin everywhere = 40 Hz in every unit and bin
    model = panels[0]["model"]
    np.testing.assert_allclose(model, np.broadcast_to(axes.project(np.full((1, 10), 40.0), act["unit"].values),
                                                      model.shape), atol=1e-8)
    html = _section_html(data)
    assert html.count("<img") == 2 and "No unit rates" not in html


def test_old_fixed_points_file_falls_back_to_model_pcs(tmp_path: Path):
    folder = make_dataset(tmp_path / "ds")  # its fixed_points.nc has no rates, as files written before them
    html = _section_html(report.load_dataset(folder))
    assert html.count("<img") == 1 and "No unit rates in fixed_points.nc of rate" in html
    assert "could not be drawn" not in html


# ------------------------------------------------------------------------------------------ flip-flop
@pytest.fixture(scope="module")
def flipflop(tmp_path_factory) -> Path:
    """A simulated flip-flop (seed 0, 40 trials) as the workflow lays it out: activity.nc and the teacher's
    fixed points in the dataset folder, the truth beside the NWB file."""
    from cortexfit.ingest import run as ingest

    root = tmp_path_factory.mktemp("ff")
    nwb = simulate.run("flipflop", root / "data" / "flipflop.nwb", seed=0, n_trials=40)
    folder = root / "results" / "sim_flipflop"
    ingest(nwb, folder / "activity.nc", bin_ms=5, align="start_time")
    afp.run(nwb.with_suffix(".teacher"), folder / FP.TEACHER_FILE, n_init=256)
    return folder


def test_teacher_points_sit_on_the_data_of_their_memory(flipflop: Path):
    data = report.load_dataset(flipflop)
    axes = FP.data_axes(data.activity)
    panel, why = FP.teacher_panel(data, axes)
    assert why is None and panel is not None
    stable = (panel["label"] == "stable") & (panel["point_type"] == "fixed")
    assert stable.sum() == 8
    pts = panel["points"][stable]  # (8, 3) in the data's top PCs
    # which memory each teacher point holds: the sign of the teacher's task readout there
    truth = convention.read_dataset(FP.truth_file(data), "truth")
    tfp = convention.read_dataset(flipflop / FP.TEACHER_FILE, "fixed_points")
    out = tfp["xstar"].values[stable] @ truth["readout_weight"].values.T + truth["readout_bias"].values
    code = ((out > 0) * [4, 2, 1]).sum(1)
    assert sorted(code.tolist()) == list(range(8))
    # every data bin (trials are their own conditions here) goes to its nearest teacher point; it should be the
    # point of the memory the network holds then (the targets), away from the pulses (smoothing lags them)
    traj = axes.trajectories  # (trial, time, pc), trials in activity order
    assert traj.shape[:2] == (40, truth.sizes["time"])
    nearest = np.linalg.norm(traj[:, :, None, :] - pts[None, None], axis=-1).argmin(-1)
    target = ((truth["targets"].values > 0) * [4, 2, 1]).sum(-1)
    settled = np.ones(target.shape, bool)
    for lag in range(1, 16):  # 75 ms after the last change of the target
        settled[:, lag:] &= target[:, lag:] == target[:, :-lag]
    settled &= (truth["targets"].values != 0).all(-1)
    accuracy = float((code[nearest] == target)[settled].mean())
    assert settled.sum() > 2000 and accuracy > 0.8, accuracy
    # and on the data, not only in its direction: each point lies near the mean of the data bins holding its
    # memory, much nearer than the points are to each other (in counts per bin or sqrt-rates they are not)
    centres = np.stack([traj[settled & (target == c)].mean(0) for c in code])
    apart = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)[~np.eye(8, dtype=bool)].min()
    assert apart(pts) > 0.5 * apart(centres)
    assert np.linalg.norm(pts - centres, axis=1).max() < 0.25 * apart(pts)
    # and the page draws the teacher beside the (absent) models without a note
    html = _section_html(data)
    assert html.count("<img") == 1 and "teacher network" in html


def test_workflow_report_reads_the_flipflop_truth(tmp_path: Path):
    """The report rule takes a flip-flop's truth file (the teacher's unit readout) as an input; a reach
    dataset's report, without a teacher, does not."""
    from test_workflow import HEADER, _plan_sheet

    sheet = HEADER + ("ff\tdata/simulated/flipflop.nwb\tflipflop\tstart_time\t\t\t5\telectrodes\n"
                      "rc\tdata/simulated/reach.nwb\treach\tmove_onset_time\t-250\t450\t5\telectrodes\n")
    _, jobs = _plan_sheet(tmp_path, sheet, "models: [vanilla]\n")
    reports = {j["wildcards"]: j["input"] for j in jobs if j["rule"] == "report"}
    assert set(reports) == {"dataset=ff", "dataset=rc"}
    assert "data/simulated/flipflop.truth.nc" in reports["dataset=ff"].split(", ")
    assert "results/ff/teacher_fixed_points.nc" in reports["dataset=ff"].split(", ")
    assert "truth.nc" not in reports["dataset=rc"]
