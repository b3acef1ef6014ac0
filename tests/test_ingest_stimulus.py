"""Tests of the task inputs ingest reads: ``stimulus/presentation`` series, ``--inputs`` series and event
columns, TTL / event-code series kept out of behaviour, and the errors for bad names and uncovered trials."""

from __future__ import annotations

import numpy as np
import pytest

import nwb_factory as F
from cortexfit import cli, simulate
from cortexfit.core import convention
from cortexfit.core.errors import IngestError
from cortexfit.ingest import ingest_nwb, run


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("stim")
    return {"full": F.make_units_file(d / "full.nwb", stimulus="full"),
            "partial": F.make_units_file(d / "partial.nwb", stimulus="partial"),
            "plain": F.make_units_file(d / "plain.nwb"), "dir": d}


@pytest.fixture(scope="module")
def reach(tmp_path_factory):
    out = tmp_path_factory.mktemp("reach") / "reach.nwb"
    simulate.run("reach", out, seed=0, n_trials=16)
    return out


def _edges(ds):
    k = np.arange(ds.sizes["time"] + 1)
    align = ds[ds.attrs["align_event"]].values
    return align[:, None] + (ds.attrs["window_start_s"] + k * ds.attrs["bin_width_s"])[None, :]


def test_stimulus_series_read_and_resampled_like_behaviour(files):
    ds = ingest_nwb(files["full"], bin_ms=20)
    convention.validate(ds, "activity")
    s = ds.stimulus
    assert s.dims == ("trial", "time", "stimulus_channel") and s.dtype == np.float32
    assert s.stimulus_channel.values.tolist() == ["light"] and s.stimulus_kind.values.tolist() == ["series"]
    t = np.arange(0.0, F.trial_times(6)[1][-1] + F.TRIAL_GAP, 0.001)
    light = np.zeros_like(t)
    for a in F.trial_times(6)[0] + F.GO_OFFSET:
        light[(t >= a - 1e-9) & (t < a + 0.1 - 1e-9)] = 1.0
    edges = _edges(ds) - 1e-6 * ds.attrs["bin_width_s"]
    want = [[light[(t >= a) & (t < b)].mean() for a, b in zip(e[:-1], e[1:])] for e in edges]
    np.testing.assert_allclose(s.sel(stimulus_channel="light"), want, atol=1e-6)
    assert s.values.max() == 1.0


def test_ttl_and_event_code_series_are_not_behaviour(files):
    ds = ingest_nwb(files["full"])
    chans = ds.behavior.behavior_channel.values.tolist()
    assert "joystick" in chans and not any("ttl" in c or "event" in c for c in chans)
    assert "light" not in chans


def test_inputs_event_column_is_a_pulse_in_the_bin_of_the_event(files):
    ds = ingest_nwb(files["full"], inputs="go_time", window_ms=(0, 600))
    assert ds.stimulus.stimulus_channel.values.tolist() == ["light", "go_time"]
    assert ds.stimulus.stimulus_kind.values.tolist() == ["series", "event"]
    pulse = ds.stimulus.sel(stimulus_channel="go_time").values
    k = int(round(F.GO_OFFSET / 0.005))  # go_time = start + 0.2 s: the bin starting there
    want = np.zeros_like(pulse)
    want[:, k] = 1.0
    np.testing.assert_array_equal(pulse, want)
    assert ds.attrs["config"].count("go_time") == 1  # the options record the inputs


def test_inputs_series_moves_out_of_behaviour(files):
    ds = ingest_nwb(files["full"], inputs=["joystick"])
    assert ds.stimulus.stimulus_channel.values.tolist() == ["light", "joystick"]
    assert "joystick" not in ds.behavior.behavior_channel.values.tolist()


def test_no_stimulus_no_variable(files):
    assert "stimulus" not in ingest_nwb(files["plain"]).data_vars


def test_unknown_input_name_is_one_line_error_and_no_output(files, capsys):
    out = files["dir"] / "bad.nc"
    rc = cli.main(["ingest", str(files["full"]), str(out), "--inputs", "go_time,go_cue_time"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and not out.exists()
    assert err.count("\n") == 0 and str(files["full"]) in err and "'go_cue_time'" in err
    assert "go_time" in err and "light" in err  # lists what the file has
    with pytest.raises(IngestError, match="not numeric"):
        ingest_nwb(files["full"], inputs="condition")


def test_uncovered_stimulus_names_the_trials(files):
    with pytest.raises(IngestError, match=r"'light' .* does not cover the window of 4 trial\(s\): 2, 3, 4, 5"):
        run(files["partial"], files["dir"] / "partial.nc")
    assert not (files["dir"] / "partial.nc").exists()


def test_simulated_reach_stimulus_matches_truth_and_go_cue(reach, tmp_path):
    out = run(reach, tmp_path / "a.nc", align="move_onset_time", window_ms=(-700, 450), inputs="go_cue_time")
    ds = convention.read_dataset(out, "activity")
    assert ds.stimulus.stimulus_channel.values.tolist() == ["go_cue", "target_position_x", "target_position_y",
                                                             "go_cue_time"]
    s = ds.stimulus
    # the go-cue series and the pulse built from the go_cue_time column agree bin by bin
    np.testing.assert_array_equal(s.sel(stimulus_channel="go_cue").values, s.sel(stimulus_channel="go_cue_time").values)
    assert (s.sel(stimulus_channel="go_cue_time").sum("time") == 1).all()
    # the truth's inputs (its own window around movement onset) equal the ingested stimulus there
    truth = convention.read_dataset(simulate.truth_path(reach), "truth")
    names = ["target_position_x", "target_position_y", "go_cue"]
    got = s.sel(time=truth.time.values, method="nearest").sel(stimulus_channel=names).values
    np.testing.assert_allclose(got, truth.inputs.sel(channel=names).values, atol=1e-7)
    angle = np.deg2rad(ds.reach_angle.values)
    np.testing.assert_allclose(s.sel(stimulus_channel="target_position_x").isel(time=-1), 0.08 * np.cos(angle),
                               atol=1e-6)


def test_datasets_sheet_inputs_column_reaches_the_ingest_command(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "datasets.tsv").write_text(
        "id\tnwb\tinputs\nrec1\trec1.nwb\tgo_cue_time, target_on_time\nrec2\trec2.nwb\t\n")
    (tmp_path / "config" / "config.yaml").write_text("datasets: config/datasets.tsv\nmodels: []\nreport: false\n")
    for name in ("rec1.nwb", "rec2.nwb"):
        (tmp_path / name).write_bytes(b"x")
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(tmp_path),
                          "--cores", "1", "-n", "-p"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    shells = [line for line in (out.stdout + out.stderr).splitlines() if "cortexfit ingest" in line]
    assert len(shells) == 2
    assert sum("--inputs 'go_cue_time, target_on_time'" in s for s in shells) == 1
    assert sum("--inputs" not in s for s in shells) == 1
