"""Tests for cortexfit.ingest: exact binning, validity, behaviour, imaging, session windows, CLI errors."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest

import nwb_factory as F
from cortexfit import cli
from cortexfit.core import convention
from cortexfit.core.errors import ConfigError, IngestError
from cortexfit.ingest import _coord_names, ingest_nwb, run

PMD_FILE = "sub-Jenkins_ses-small_desc-test_ecephys.nwb"
YU_FILE = "yu2009_pmd_reach.nwb"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ingest")
    return {
        "units": F.make_units_file(d / "units.nwb", gap_unit=1),
        "both": F.make_units_file(d / "both.nwb", behavior="both", nan_align=(2,), n_units=2),
        "reaches": F.make_units_file(d / "reaches.nwb", table_name="reaches", behavior=None, n_units=2),
        "imaging": F.make_imaging_file(d / "img.nwb"),
        "notrials": F.make_no_trials_file(d / "notrials.nwb"),
        "nounits": F.make_no_units_file(d / "nounits.nwb"),
        "dir": d,
    }


def _spikes(path):
    with h5py.File(path, "r") as f:
        st, ends = f["units/spike_times"][()], f["units/spike_times_index"][()]
    return np.split(st, ends[:-1])


def _edges(ds, align):
    k = np.arange(ds.sizes["time"] + 1)
    return align[:, None] + (ds.attrs["window_start_s"] + k * ds.attrs["bin_width_s"])[None, :]


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("window", [(-200.0, 400.0), (-600.0, 600.0)])  # back-to-back and overlapping windows
def test_counts_exact_and_valid(files, window, clip):
    ds = ingest_nwb(files["units"], align="go_time", window_ms=window, clip_to_trial=clip)
    start, stop = F.trial_times(6)
    edges = _edges(ds, start + F.GO_OFFSET)
    want = F.brute_counts(_spikes(files["units"]), edges)
    valid = ds.valid.values.astype(bool)
    np.testing.assert_array_equal(ds.activity.values[valid], want[valid])
    assert not ds.activity.values[~valid].any()  # invalid bins hold 0
    centres = (edges[:, :-1] + edges[:, 1:]) / 2
    in_trial = (centres >= start[:, None]) & (centres < stop[:, None])
    # obs_intervals are the trials: a window reaching into the neighbouring trial is observed there
    observed = ((centres[:, :, None] >= start) & (centres[:, :, None] < stop)).any(-1)
    np.testing.assert_array_equal(valid[:, :, 0], observed & in_trial if clip else observed)
    gap = in_trial[1] & (centres[1] < start[1] + 0.1)  # unit 1 unobserved for the first 100 ms of trial 1
    assert gap.sum() == 20
    np.testing.assert_array_equal(valid[1, :, 1], valid[1, :, 0] & ~gap)
    assert ds.activity.dtype == np.uint16 and ds.valid.dtype == np.int8
    assert ds.attrs["valid_rule"] == ("observed_and_in_trial" if clip else "observed")


def test_coords_and_attrs(files):
    ds = ingest_nwb(files["units"], align="go_time", window_ms=(-200, 400))
    assert ds.trial.values.tolist() == list(range(6))
    assert ds.condition.values.tolist() == ["left", "right"] * 3
    np.testing.assert_allclose(ds.go_time - ds.start_time, F.GO_OFFSET)
    assert ds.unit.values.tolist() == [1000, 1001, 1002, 1003]
    assert ds.area.values.tolist() == ["PMd", "M1", "PMd", "M1"]
    assert ds.electrode_group.values.tolist() == ["group_PMd", "group_M1"] * 2
    assert ds.heldout.values.tolist() == [False, True, False, True]
    assert ds.quality.values.tolist() == ["good", "good", "mua", "mua"]
    np.testing.assert_allclose(ds.time.values[[0, -1]], [-0.1975, 0.3975])
    assert ds.attrs["align_event"] == "go_time" and ds.attrs["bin_width_s"] == 0.005
    assert (ds.attrs["window_start_s"], ds.attrs["window_stop_s"]) == pytest.approx((-0.2, 0.4))
    assert json.loads(ds.attrs["config"])["window_ms"] == [-200.0, 400.0]
    assert ds.attrs["source_sha256"] == hashlib.sha256(files["units"].read_bytes()).hexdigest()
    convention.validate(ds, "activity")


def test_coord_name_collisions():
    t, u = _coord_names(["start_time", "quality", "unit"], ["quality", "area", "time"], "unit")
    assert t == {"start_time": "start_time", "quality": "trial_quality", "unit": "trial_unit"}
    assert u == {"quality": "unit_quality", "area": "area", "time": "unit_time"}


def test_areas_options(files):
    ds = ingest_nwb(files["units"], areas="unit-id:100x=M1")
    assert set(ds.area.values) == {"M1"}
    ds = ingest_nwb(files["units"], areas="column:quality")
    assert ds.area.values.tolist() == ["good", "good", "mua", "mua"]


def test_nan_alignment_dropped_and_default_window(files, caplog):
    with caplog.at_level(logging.WARNING, logger="cortexfit.ingest"):
        ds = ingest_nwb(files["both"], align="go_time")
    assert ds.trial.values.tolist() == [0, 1, 3, 4, 5]
    assert "dropped 1 of 6 trials" in caplog.text
    assert ds.sizes["time"] == round((F.TRIAL_LEN - F.GO_OFFSET) / 0.005)  # shortest stop - align
    assert ingest_nwb(files["both"], bin_ms=10).sizes["time"] == round(F.TRIAL_LEN / 0.01)


def _bin_means(f, ds):
    """Mean of f over the factory's 1 kHz behaviour samples inside each bin (trial, time); a sample within a
    millionth of a bin before an edge (float rounding of a shared grid) counts as on it."""
    t = np.arange(0.0, F.trial_times(6)[1][-1] + F.TRIAL_GAP, 0.001)
    edges = _edges(ds, ds.start_time.values) - 1e-6 * ds.attrs["bin_width_s"]
    return np.array([[f(t[(t >= a) & (t < b)]).mean() for a, b in zip(e[:-1], e[1:])] for e in edges])


def test_behavior_derived_velocity(files):
    ds = ingest_nwb(files["units"], window_ms=(0, 600))
    b = ds.behavior
    assert b.dims == ("trial", "time", "behavior_channel") and b.dtype == np.float32
    assert b.behavior_channel.values.tolist() == ["hand_pos_x", "hand_pos_y", "hand_vel_x", "hand_vel_y"]
    assert b.behavior_kind.values.tolist() == ["position"] * 2 + ["velocity"] * 2
    w = 2 * np.pi
    np.testing.assert_allclose(b.sel(behavior_channel="hand_pos_x"), _bin_means(lambda t: np.sin(w * t), ds),
                               atol=1e-6)
    np.testing.assert_allclose(b.sel(behavior_channel="hand_vel_y"), _bin_means(lambda t: -w * np.sin(w * t), ds),
                               atol=1e-3)


def test_behavior_velocity_present_not_derived(files):
    b = ingest_nwb(files["both"]).behavior
    kinds = dict(zip(b.behavior_channel.values, b.behavior_kind.values))
    assert kinds == {"hand_pos_x": "position", "hand_pos_y": "position", "hand_vel_x": "velocity",
                     "hand_vel_y": "velocity"}
    np.testing.assert_allclose(b.sel(behavior_channel="hand_vel_x"), 2.0)


@pytest.mark.parametrize("bin_ms,tol", [(100.0, 1e-5), (5.0, 0.0051)])
def test_imaging(files, bin_ms, tol):
    ds = ingest_nwb(files["imaging"], bin_ms=bin_ms)
    assert ds.activity.dims == ("trial", "time", "roi") and ds.activity.dtype == np.float32
    assert ds.attrs["signal"] == "dff" and ds.area.values.tolist() == ["M1"] * 3
    t = np.arange(int((F.trial_times(4)[1][-1] + F.TRIAL_GAP) * 30)) / 30.0
    edges = _edges(ds, ds.start_time.values) - 1e-6 * ds.attrs["bin_width_s"]  # a sample on an edge is in its bin
    for r in range(3):
        want = [[(r + t[(t >= a) & (t < b)]).mean() if bin_ms > 30 else r + (a + b) / 2 for a, b in
                 zip(e[:-1], e[1:])] for e in edges]
        np.testing.assert_allclose(ds.activity.isel(roi=r), want, atol=tol)
    assert ds.valid.values.all()


def test_session_windows(files):
    ds = ingest_nwb(files["notrials"], session_window_ms=1000, bin_ms=10)
    assert ds.trial.values.tolist() == [0, 1, 2]  # 3.5 s session -> 3 full windows
    np.testing.assert_allclose(ds.start_time, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(ds.stop_time, [1.0, 2.0, 3.0])
    assert ds.sizes["time"] == 100 and ds.attrs["align_event"] == "start_time"
    spikes = _spikes(files["notrials"])
    assert int(ds.activity.sum()) == sum(int(((s >= 0) & (s < 3.0)).sum()) for s in spikes)
    with pytest.raises(IngestError, match="session windows align to start_time"):
        ingest_nwb(files["notrials"], align="go_time")


def test_trials_table_in_processing(files):
    ds = ingest_nwb(files["reaches"], trials_table="reaches", align="go_time")
    assert ds.sizes["trial"] == 6 and "condition" in ds.coords
    # no trials: fixed windows over the observed span 0.5 .. 5.1 s
    assert ingest_nwb(files["reaches"], trials_table="none").start_time.values.tolist() == [0.5, 1.5, 2.5, 3.5]


def test_run_roundtrip(files, tmp_path):
    out = run(files["units"], tmp_path / "a.nc", align="go_time", window_ms=[-200, 400])
    back = convention.read_dataset(out, "activity")
    ds = ingest_nwb(files["units"], align="go_time", window_ms=[-200, 400])
    np.testing.assert_array_equal(back.activity, ds.activity)
    np.testing.assert_array_equal(back.behavior, ds.behavior)
    assert back.attrs["source_sha256"] == ds.attrs["source_sha256"] and back.condition.values[1] == "right"
    with pytest.raises(ConfigError, match="overwrite the input"):
        run(files["units"], files["units"])


def test_no_warnings_when_reading(files):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ingest_nwb(files["both"])


def _bad(files, name):
    d = files["dir"]
    if name == "text":
        (d / "text.nwb").write_text("hello")
        return d / "text.nwb"
    if name == "truncated":
        return F.truncate(files["units"], d / "trunc.nwb")
    if name == "plain":
        return F.make_plain_hdf5(d / "plain.nwb")
    p = d / f"{name}.nwb"
    p.write_bytes(files["units"].read_bytes())
    if name == "nan":
        F.patch(p, "units/spike_times", 5, float("nan"))
    elif name == "negative":
        F.patch(p, "units/spike_times", 0, -0.5)
    elif name == "nan_start":
        F.patch(p, "intervals/trials/start_time", 1, float("nan"))
    elif name == "stop_before_start":
        with h5py.File(p, "r") as f:
            start = f["intervals/trials/start_time"][()]
        F.patch(p, "intervals/trials/stop_time", [2, 4], start[[2, 4]] - 0.1)
    return p


BAD = [
    ("text", [], "not an HDF5/NWB file"),
    ("truncated", [], "truncated"),
    ("plain", [], "HDF5 file is not NWB"),
    ("nounits", [], "no units (spike times) and no imaging"),
    ("nan", [], r"NaN/inf spike times in unit(s) 1000"),
    ("negative", [], r"negative spike times in unit(s) 1000"),
    ("stop_before_start", [], "trial(s) 2, 4 have stop_time < start_time"),
    ("nan_start", [], "trial(s) 1 have no start_time/stop_time (NaN)"),
    ("units", ["--align", "move_time"], "no alignment column 'move_time' in 'trials' (available: start_time, "
                                        "stop_time, go_time)"),
    ("units", ["--window-ms", "5000", "6000"], "window 5000..6000 ms around 'start_time' lies outside the "
                                               "observed recording in every trial"),
    ("units", ["--clip-to-trial", "--window-ms", "5000", "6000"], "window 5000..6000 ms around 'start_time' lies "
                                                                  "outside every trial"),
    ("reaches", [], "no intervals table 'trials' (available: reaches;"),
    ("units", ["--areas", "regions"], "areas option 'regions' not understood"),
    ("units", ["--areas", "unit-id:1000=PMd"], "matches no pattern for unit id(s) 1001, 1002, 1003"),
    ("units", ["--bin-ms", "0"], "--bin-ms must be a positive number"),
]


@pytest.mark.parametrize("name,args,message", BAD, ids=[f"{b[0]}{'-' + '-'.join(b[1]) if b[1] else ''}"
                                                        for b in BAD])
def test_cli_bad_input(files, tmp_path, capsys, name, args, message):
    src = files[name] if name in files else _bad(files, name)
    out = tmp_path / "out.nc"
    assert cli.main(["ingest", str(src), str(out), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cortexfit ingest: error: ")
    assert message in err[0]
    assert src.name in err[0] or name == "units" and "--" in args[0]
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_ok(files, tmp_path):
    out = tmp_path / "ok.nc"
    assert cli.main(["-q", "ingest", str(files["units"]), str(out), "--align", "go_time"]) == 0
    assert convention.read_dataset(out).sizes["unit"] == 4


def test_import_does_not_pull_torch():
    code = "import cortexfit.ingest, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _independent_counts(path, align_col, lo_s, hi_s):
    """(trial, unit) spike counts in [align + lo, align + hi) with plain h5py + numpy."""
    with h5py.File(path, "r") as f:
        st, ends = f["units/spike_times"][()], f["units/spike_times_index"][()]
        align = f[f"intervals/trials/{align_col}"][()]
    per_unit = np.split(st, ends[:-1])
    return np.array([[((s >= a + lo_s) & (s < a + hi_s)).sum() for s in per_unit] for a in align])


def test_real_mc_maze(shared_data):
    path = shared_data / PMD_FILE
    ds = ingest_nwb(path, align="move_onset_time", window_ms=(-250, 450), areas="unit-id:1xxx=PMd,2xxx=M1")
    assert dict(ds.activity.sizes) == {"trial": 100, "time": 140, "unit": 107}
    want = _independent_counts(path, "move_onset_time", -0.25, 0.45)
    np.testing.assert_array_equal(ds.activity.sum("time").values, want)
    assert int(ds.activity.sum()) == want.sum()
    assert int(ds.activity.sum()) == 32897
    assert ds.valid.values.all() and ds.attrs["valid_rule"] == "observed"  # the window lies inside every trial
    areas = dict(zip(*np.unique(ds.area.values, return_counts=True)))
    assert areas == {"PMd": 52, "M1": 55}
    assert ds.split.values[0] == "test" and ds.heldout.dtype == bool
    assert set(ds.electrode_group.values) == {"electrode_group_PMd"}  # from the first electrode's row
    # the file's quirk: every unit's electrodes point into the PMd rows, so the electrodes table says PMd
    by_electrodes = ingest_nwb(path, align="move_onset_time", window_ms=(-250, 450))
    assert set(by_electrodes.area.values) == {"PMd"}


def test_real_yu2009(shared_data):
    path = shared_data / YU_FILE
    ds = ingest_nwb(path, window_ms=(0, 1000))
    assert dict(ds.activity.sizes) == {"trial": 112, "time": 200, "unit": 61}
    want = _independent_counts(path, "start_time", 0.0, 1.0)
    np.testing.assert_array_equal(ds.activity.sum("time").values, want)
    assert int(ds.activity.sum()) == 74038
    assert ds.valid.values.all() and ds.attrs["valid_rule"] == "observed"
    assert set(ds.condition.values) == {"reach1", "reach2"}
