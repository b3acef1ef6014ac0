"""The dataset convention: validation, atomic compressed writes, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from cortexfit.core import convention
from cortexfit.core.errors import SchemaError


def _ds(**kw):
    rng = np.random.default_rng(0)
    counts = rng.poisson(1.0, size=(3, 4, 5)).astype("uint16")
    return convention.new_activity(counts, time=[0.0025, 0.0075, 0.0125, 0.0175], bin_width_s=0.005,
                               align_event="go_cue_time", config={"bin_ms": 5}, **kw)


def test_new_activity_is_valid_and_has_provenance():
    ds = _ds()
    convention.validate(ds, "activity")
    assert ds.activity.dims == ("trial", "time", "unit")
    assert ds.attrs["window_start_s"] == pytest.approx(0.0)
    assert ds.attrs["window_stop_s"] == pytest.approx(0.02)
    assert json.loads(ds.attrs["config"]) == {"bin_ms": 5}
    assert ds.time.attrs["units"] == "s"


def test_roundtrip_is_lossless_and_compressed(tmp_path):
    ds = _ds()
    ds = ds.assign_coords(condition=("trial", np.array(["a", "b", "a"])), area=("unit", np.array(["M1"] * 5)))
    path = convention.write_dataset(ds, tmp_path / "a.nc")
    back = convention.read_dataset(path, "activity")
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())
    assert back.attrs["source_file"] == ""
    with xr.open_dataset(path, engine="h5netcdf") as raw:
        assert raw["activity"].encoding.get("zlib") or raw["activity"].encoding.get("compression") == "gzip"
    assert not list(tmp_path.glob("*.tmp"))


def test_roi_dim_is_a_neuron_dim():
    ds = convention.new_activity(np.zeros((1, 2, 3), "float32"), time=[0.5, 1.5], bin_width_s=1.0,
                             signal="dff", neuron="roi")
    convention.validate(ds, "activity")
    assert convention.neuron_dim(ds) == "roi"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.drop_vars("valid"), "lacks variable 'valid'"),
        (lambda d: d.assign_attrs(signal="voltage"), "attr 'signal'"),
        (lambda d: d.assign(activity=d.activity.astype("float32")), "must be integers"),
        (lambda d: d.assign_coords(time=d.time.values[::-1]), "strictly increasing"),
        (lambda d: d.transpose("time", "trial", "unit"), "has dims"),
        (lambda d: d.assign_attrs(config="{not json"), "not a JSON string"),
        (lambda d: d.assign_attrs(cortexfit_kind="fit"), "expected a 'activity' dataset"),
    ],
)
def test_validate_rejects(mutate, message):
    with pytest.raises(SchemaError, match=message):
        convention.validate(mutate(_ds()), "activity")


def test_missing_attr_is_named():
    ds = _ds()
    del ds.attrs["source_sha256"]
    with pytest.raises(SchemaError, match="source_sha256"):
        convention.validate(ds)


def test_invalid_dataset_is_not_written(tmp_path):
    ds = _ds().drop_vars("valid")
    with pytest.raises(SchemaError):
        convention.write_dataset(ds, tmp_path / "bad.nc")
    assert list(tmp_path.iterdir()) == []


def test_read_names_the_file(tmp_path):
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"definitely not netcdf")
    with pytest.raises(SchemaError, match="junk.nc: not a readable netCDF"):
        convention.read_dataset(junk)
    with pytest.raises(SchemaError, match="no such file"):
        convention.read_dataset(tmp_path / "absent.nc")


def test_read_validates_kind(tmp_path):
    path = convention.write_dataset(_ds(), tmp_path / "a.nc")
    with pytest.raises(SchemaError, match="expected a 'truth' dataset"):
        convention.read_dataset(path, "truth")
