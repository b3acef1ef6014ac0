"""Tests for which bins cortexfit.ingest marks ``valid``: observed bins of a window padded beyond the trial
keep their spikes (continuous recordings, epochs tables), ``--clip-to-trial`` gives the old trial-clipped
mask, ``obs_intervals`` still mark unobserved bins, and the ``valid_rule`` attr names the rule."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import nwb_factory as F
from cortexfit import cli
from cortexfit.core import convention
from cortexfit.ingest import ingest_nwb, run, velocity_name

N_TRIALS = 6
WINDOW = (-400.0, 500.0)  # around go (start + 0.2 s): 0.2 s before start_time .. 0.1 s after stop_time
SESSION_END = float(F.trial_times(N_TRIALS)[1][-1] + F.TRIAL_GAP)


def _continuous_spikes(n_units: int = 3, seed: int = 7) -> list[np.ndarray]:
    """Spikes throughout the session, some exactly on edges of the padded bins, first and last near the
    session's ends (so the recorded span covers every window)."""
    rng = np.random.default_rng(seed)
    start, stop = F.trial_times(N_TRIALS)
    out = []
    for u in range(n_units):
        st = rng.uniform(0.0, SESSION_END, size=400 + 50 * u)
        edges = np.concatenate([start - 0.1, stop + 0.05, start - 0.2])  # padded-bin edges
        st = np.concatenate([st, np.round(edges, 4), [0.01, SESSION_END - 0.01]])
        out.append(np.sort(st))
    return out


LAYOUTS = {  # name -> make_units_file options, trials table to read
    "trials": (dict(obs_intervals=False), "trials"),
    "epochs": (dict(obs_intervals=False, table_name="epochs"), "epochs"),
    "session_obs": (dict(obs_intervals="session"), "trials"),
}


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    d = tmp_path_factory.mktemp("ingest_valid")
    spikes = _continuous_spikes()
    files = {name: F.make_units_file(d / f"{name}.nwb", n_units=len(spikes), n_trials=N_TRIALS,
                                     spike_times=spikes, behavior=None, **kw)
             for name, (kw, _) in LAYOUTS.items()}
    files["gap"] = F.make_units_file(d / "gap.nwb", n_units=len(spikes), n_trials=N_TRIALS, spike_times=spikes,
                                     behavior=None, obs_intervals="session", gap_unit=1)
    return files, spikes


def _stored_spikes(path):
    with h5py.File(path, "r") as f:
        st, ends = f["units/spike_times"][()], f["units/spike_times_index"][()]
    return np.split(st, ends[:-1])


def _grid(ds):
    """Brute-force bin edges and centres (trial, bin[+1]) and the trials' in-trial mask."""
    start, stop = F.trial_times(N_TRIALS)
    k = np.arange(ds.sizes["time"] + 1)
    edges = (start + F.GO_OFFSET)[:, None] + (ds.attrs["window_start_s"] + k * ds.attrs["bin_width_s"])[None, :]
    centres = (edges[:, :-1] + edges[:, 1:]) / 2
    return edges, centres, (centres >= start[:, None]) & (centres < stop[:, None])


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_padded_window_keeps_every_spike(sessions, layout):
    files, spikes = sessions
    ds = ingest_nwb(files[layout], align="go_time", window_ms=WINDOW, trials_table=LAYOUTS[layout][1])
    edges, _, in_trial = _grid(ds)
    np.testing.assert_array_equal(_stored_spikes(files[layout])[0], spikes[0])
    want = F.brute_counts(spikes, edges)
    np.testing.assert_array_equal(ds.activity.values, want)  # every bin, the padding included
    total = sum(int(((s[:, None] >= edges[:, 0]) & (s[:, None] < edges[:, -1])).sum()) for s in spikes)
    assert int(ds.activity.sum()) == total
    assert ds.valid.values.all()
    assert (~in_trial).sum() == N_TRIALS * 60  # 0.3 s of padding per trial in 5 ms bins
    assert int(ds.activity.values[~in_trial].sum()) > 100  # spikes the trial-clipped rule zeroed
    assert ds.attrs["valid_rule"] == "observed"


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_clip_to_trial_zeroes_padding(sessions, layout):
    files, spikes = sessions
    ds = ingest_nwb(files[layout], align="go_time", window_ms=WINDOW, trials_table=LAYOUTS[layout][1],
                    clip_to_trial=True)
    edges, _, in_trial = _grid(ds)
    want = F.brute_counts(spikes, edges)
    valid = ds.valid.values.astype(bool)
    np.testing.assert_array_equal(valid, np.broadcast_to(in_trial[:, :, None], valid.shape))
    np.testing.assert_array_equal(ds.activity.values[valid], want[valid])
    assert not ds.activity.values[~valid].any()
    assert ds.attrs["valid_rule"] == "observed_and_in_trial"


def test_obs_intervals_still_mark_unobserved(sessions):
    files, spikes = sessions
    ds = ingest_nwb(files["gap"], align="go_time", window_ms=WINDOW)
    edges, centres, in_trial = _grid(ds)
    t1 = F.trial_times(N_TRIALS)[0][1]
    gap = (centres >= t1 - 0.1) & (centres < t1 + 0.1)  # unit 1 unobserved 0.1 s either side of trial 1's start
    assert gap.sum() == 40 and (gap & ~in_trial).sum() == 20
    valid = ds.valid.values.astype(bool)
    np.testing.assert_array_equal(valid[:, :, 1], ~gap)
    assert valid[:, :, [0, 2]].all()
    want = F.brute_counts(spikes, edges)
    np.testing.assert_array_equal(ds.activity.values[valid], want[valid])
    assert not ds.activity.values[~valid].any() and want[:, :, 1][gap].sum() > 0


def test_recorded_span_limits_units_without_obs_intervals(tmp_path):
    # spikes only from 1.0 to 5.0 s, trials from 0.5 to 5.1 s: padding beyond those is outside the recording
    start, stop = F.trial_times(N_TRIALS)
    spikes = [np.linspace(1.0, 5.0, 200), np.linspace(1.2, 4.9, 100)]
    path = F.make_units_file(tmp_path / "late.nwb", n_units=2, n_trials=N_TRIALS, spike_times=spikes,
                             obs_intervals=False, behavior=None)
    ds = ingest_nwb(path, align="go_time", window_ms=WINDOW)
    edges, _, _ = _grid(ds)
    recorded = (edges[:, 1:] > start[0]) & (edges[:, :-1] <= stop[-1])
    assert not recorded[0].all() and not recorded[-1].all() and recorded[1:-1].all()
    np.testing.assert_array_equal(ds.valid.values[:, :, 0], recorded)
    np.testing.assert_array_equal(ds.activity.values, F.brute_counts(spikes, edges))


def test_cli_and_run_clip_flag(sessions, tmp_path):
    files, _ = sessions
    args = ["-q", "ingest", str(files["trials"]), "", "--align", "go_time", "--window-ms", *map(str, WINDOW)]
    for flag, rule in (([], "observed"), (["--clip-to-trial"], "observed_and_in_trial")):
        out = tmp_path / f"{rule}.nc"
        args[3] = str(out)
        assert cli.main(args + flag) == 0
        back = convention.read_dataset(out, "activity")
        assert back.attrs["valid_rule"] == rule
        assert back.attrs["config"].count(f'"clip_to_trial": {str(bool(flag)).lower()}') == 1
    out = run(files["trials"], tmp_path / "run.nc", align="go_time", window_ms=WINDOW, clip_to_trial=True)
    clipped = convention.read_dataset(out, "activity")
    observed = convention.read_dataset(tmp_path / "observed.nc", "activity")
    assert int(observed.activity.sum()) > int(clipped.activity.sum())
    assert int(clipped.valid.sum()) < int(observed.valid.sum()) == observed.valid.size


def test_old_files_without_valid_rule_still_read(sessions, tmp_path):
    files, _ = sessions
    ds = ingest_nwb(files["trials"], align="go_time", window_ms=WINDOW)
    del ds.attrs["valid_rule"]
    convention.validate(ds, "activity")


@pytest.mark.parametrize("name,velocity", [("hand_position", "hand_velocity"), ("hand_pos", "hand_vel"),
                                           ("cursorPos", "cursorVel"), ("EYE_POSITION", "EYE_VELOCITY"),
                                           ("Position", "Velocity"), ("finger", "finger_vel"),
                                           ("posture", "posture_vel")])
def test_velocity_name(name, velocity):
    assert velocity_name(name) == velocity


def test_derived_velocity_named_after_series(tmp_path):
    path = F.make_units_file(tmp_path / "hp.nwb", n_units=2, position_name="hand_position")
    b = ingest_nwb(path, window_ms=(0, 600)).behavior
    assert b.behavior_channel.values.tolist() == ["hand_position_x", "hand_position_y", "hand_velocity_x",
                                                  "hand_velocity_y"]
    assert b.behavior_kind.values.tolist() == ["position"] * 2 + ["velocity"] * 2
