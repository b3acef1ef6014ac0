"""Tests for cortexfit.ingest.nwb: the h5py-based NWB reader against pynwb's view of the same files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import nwb_factory as F
from cortexfit.core.errors import IngestError
from cortexfit.ingest.nwb import NWBReader


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("nwb")
    unsorted = [[0.9, 0.6, 0.7], [0.55, 0.8]]
    return {
        "units": F.make_units_file(d / "units.nwb", behavior="both", gap_unit=1),
        "acq": F.make_units_file(d / "acq.nwb", behavior="acquisition", table_name="reaches", units_extra=False),
        "unsorted": F.make_units_file(d / "unsorted.nwb", n_units=2, spike_times=unsorted, behavior=None),
        "imaging": F.make_imaging_file(d / "img.nwb", n_rois=3),
        "fluo": F.make_imaging_file(d / "fluo.nwb", n_rois=2, kind="Fluorescence"),
        "dir": d,
    }


def test_units_match_pynwb(files):
    io, nwb = F.read_pynwb(files["units"])
    try:
        with NWBReader(files["units"]) as r:
            u = r.units()
        assert u.ids.tolist() == list(nwb.units.id[:])
        for i in range(len(u.ids)):
            np.testing.assert_array_equal(u.spike_times[u.bounds[i]:u.bounds[i + 1]], nwb.units["spike_times"][i])
            np.testing.assert_array_equal(u.obs[i], nwb.units["obs_intervals"][i])
        assert u.columns["heldout"].tolist() == list(nwb.units["heldout"][:])
        assert u.columns["quality"].tolist() == list(nwb.units["quality"][:])
        assert u.electrode_group.tolist() == [g.name for g in nwb.units["electrode_group"][:]]
        first_rows = [df.index[0] for df in nwb.units["electrodes"][:]]
        assert u.electrode_area.tolist() == [nwb.electrodes["location"][r] for r in first_rows]
        assert u.electrode_area.tolist() == ["PMd", "M1", "PMd", "M1"]
    finally:
        io.close()


def test_gap_unit_obs_intervals(files):
    with NWBReader(files["units"]) as r:
        u = r.units()
    start, _ = F.trial_times(6)
    assert u.obs[1][1, 0] == pytest.approx(start[1] + 0.1)
    assert u.obs[0][1, 0] == pytest.approx(start[1])


def test_unsorted_spikes_are_sorted(files):
    with NWBReader(files["unsorted"]) as r:
        u = r.units()
    assert u.spike_times.tolist() == [0.6, 0.7, 0.9, 0.55, 0.8]
    assert u.bounds.tolist() == [0, 3, 5]


def test_interval_tables_and_columns(files):
    with NWBReader(files["units"]) as r:
        assert set(r.interval_tables()) == {"trials"}
        t = r.table("trials")
    assert t.columns["condition"].dtype.kind == "U"
    assert t.columns["condition"][:2].tolist() == ["left", "right"]
    np.testing.assert_allclose(t.columns["start_time"], F.trial_times(6)[0])
    with NWBReader(files["acq"]) as r:
        assert r.interval_tables() == {"reaches": "/processing/behavior/reaches"}
        assert r.table("reaches").ids.tolist() == list(range(6))
        with pytest.raises(IngestError, match=r"no intervals table 'trials' \(available: reaches"):
            r.table("trials")


def test_behavior_series(files):
    with NWBReader(files["units"]) as r:
        beh = {s.name: s for s in r.behavior()}
    assert set(beh) == {"hand_pos", "hand_vel"}
    assert beh["hand_pos"].kind == "position" and beh["hand_pos"].channels == ["hand_pos_x", "hand_pos_y"]
    assert beh["hand_vel"].kind == "velocity"
    np.testing.assert_allclose(beh["hand_vel"].timestamps[:3], [0.0, 0.001, 0.002])  # from starting_time + rate
    np.testing.assert_allclose(beh["hand_pos"].data[:, 1], np.cos(2 * np.pi * beh["hand_pos"].timestamps))


def test_acquisition_behavior_skips_ephys(files):
    with NWBReader(files["acq"]) as r:
        beh = r.behavior()
        assert r.units().columns == {}
    assert [(s.name, s.kind, s.channels) for s in beh] == [("lever", "other", ["lever"])]


@pytest.mark.parametrize("key,signal", [("imaging", "dff"), ("fluo", "fluorescence")])
def test_imaging(files, key, signal):
    with NWBReader(files[key]) as r:
        assert r.units() is None
        (s,) = r.imaging()
    assert s.kind == signal
    assert s.area.tolist() == ["M1"] * s.data.shape[1]
    np.testing.assert_allclose(s.data[:, 1] - s.data[:, 0], 1.0)
    np.testing.assert_allclose(np.diff(s.timestamps), 1 / 30.0)


def test_bad_files(files):
    d = files["dir"]
    (d / "text.nwb").write_text("not hdf5")
    with pytest.raises(IngestError, match="not an HDF5/NWB file"):
        NWBReader(d / "text.nwb")
    with pytest.raises(IngestError, match="no such file"):
        NWBReader(d / "missing.nwb")
    with pytest.raises(IngestError, match=r"is not NWB 2.x \(no NWBFile"):
        NWBReader(F.make_plain_hdf5(d / "plain.h5"))
    old = d / "nwb1.nwb"
    old.write_bytes(files["units"].read_bytes())
    with h5py.File(old, "r+") as f:
        f.attrs["nwb_version"] = "NWB-1.0.6"
    with pytest.raises(IngestError, match=r"NWB version NWB-1.0.6 \(2.x needed\)"):
        NWBReader(old)
    with pytest.raises(IngestError, match="truncated"):
        with NWBReader(F.truncate(files["units"], d / "trunc.nwb")) as r:
            r.units()


@pytest.mark.parametrize("value,what", [(float("nan"), "NaN/inf"), (-1.0, "negative")])
def test_bad_spike_times(files, value, what):
    p = files["dir"] / f"bad{value}.nwb"
    p.write_bytes(files["unsorted"].read_bytes())
    F.patch(p, "units/spike_times", 3, value)  # first spike of unit 1001
    with NWBReader(p) as r, pytest.raises(IngestError, match=rf"{what} spike times in unit\(s\) 1001"):
        r.units()


@pytest.mark.parametrize("damage, message", [
    ("2d", r"column 'location' is not one value per electrode <HDF5 dataset \"location\": shape \(\d+, 2\)"),
    ("short", r"units use electrode \d+, electrodes column 'location' has 1$"),
])
def test_malformed_electrodes_column_is_named(files, tmp_path, damage, message):
    path = tmp_path / f"electrodes_{damage}.nwb"
    path.write_bytes(files["units"].read_bytes())
    with h5py.File(path, "r+") as f:
        table = f["general/extracellular_ephys/electrodes"]
        loc = table["location"][()]
        del table["location"]
        table["location"] = np.stack([loc, loc], 1) if damage == "2d" else loc[:1]
    with NWBReader(path) as r, pytest.raises(IngestError, match=message) as err:
        r.units()
    assert str(path) in str(err.value)
