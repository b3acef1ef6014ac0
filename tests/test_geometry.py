"""Geometry stage: smoothing/averaging helpers, jPCA from an activity dataset, and run() end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from cortexfit.analysis import geometry
from cortexfit.core import convention
from cortexfit.core.errors import AnalysisError, ConfigError, CortexfitError

BIN = 0.01
F_HZ = 2.0


def latents(n_cond: int = 6, per_cond: int = 6, n_time: int = 60, seed: int = 0):
    """Per-trial 2-D rotation at F_HZ, one phase per condition, plus a slow ramp: (trial, time, 3)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_time) * BIN + BIN / 2
    phase = np.repeat(np.linspace(0, 2 * np.pi, n_cond, endpoint=False), per_cond)[:, None]
    phase = phase + 0.05 * rng.normal(size=phase.shape)
    lat = np.stack([np.cos(2 * np.pi * F_HZ * t + phase), np.sin(2 * np.pi * F_HZ * t + phase),
                    np.broadcast_to(t / t[-1], (len(phase), n_time))], -1)
    return t, np.repeat(np.arange(n_cond), per_cond), lat


def true_rates(n_unit: int = 30, seed: int = 0) -> np.ndarray:
    """Expected spikes per bin (trial, time, unit): the latents orthonormally embedded around 80 Hz."""
    embed = np.linalg.qr(np.random.default_rng(seed).normal(size=(n_unit, 3)))[0].T
    return np.clip(80 + 120 * latents(seed=seed)[2] @ embed, 1, None) * BIN


def activity(seed: int = 0) -> xr.Dataset:
    t, cond, _ = latents(seed=seed)
    counts = np.random.default_rng(seed + 1).poisson(true_rates(seed=seed)).astype("uint16")
    ds = convention.new_activity(counts, time=t, bin_width_s=BIN, align_event="move_onset_time")
    return ds.assign_coords(condition=("trial", np.array([f"c{c}" for c in cond])))


def splits(n_trial: int) -> np.ndarray:
    """Every third trial is a test trial (two per condition), some of the rest validation."""
    i = np.arange(n_trial)
    return np.where(i % 3 == 0, "test", np.where(i % 5 == 0, "valid", "train"))


def heldout_units(n_unit: int) -> np.ndarray:
    """Every third unit is held out (int8 flags, as fit.nc stores them)."""
    return (np.arange(n_unit) % 3 == 0).astype("int8")


def fit_dataset(act: xr.Dataset, states: np.ndarray | None, seed: int = 0, *, split: np.ndarray | None = None,
                heldout: np.ndarray | None = None) -> xr.Dataset:
    n_trial = act.sizes["trial"]
    rates = true_rates(seed=seed).astype("float32")
    ds = xr.Dataset(
        {"rates": (("trial", "time", "unit"), rates)},
        coords={"trial": act["trial"].values, "time": act["time"].values, "unit": act["unit"].values,
                "split": ("trial", splits(n_trial) if split is None else split),
                "heldout": ("unit", heldout_units(act.sizes["unit"]) if heldout is None else heldout)},
    )
    if states is not None:
        ds["states"] = (("trial", "time", "state"), states.astype("float32"))
    ds.attrs.update(convention.base_attrs("fit"))
    ds.attrs.update(model="test", mode="latent", seed=seed, device="cpu", activity_file="activity.nc",
                    activity_sha256="0" * 64, config="{}")
    return ds


def good_states(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + 100)
    _, _, lat = latents(seed=0)
    return np.tanh(lat @ rng.normal(size=(3, 12)) * 0.7) + 0.02 * rng.normal(size=(*lat.shape[:2], 12))


def bad_states(seed: int = 0) -> np.ndarray:
    """Condition-independent decaying states: no rotation, no relation to the data."""
    rng = np.random.default_rng(seed + 200)
    _, _, lat = latents(seed=0)
    decay = np.exp(-np.arange(lat.shape[1]) * BIN * np.array([[2.0], [6.0], [1.0]])).T  # (time, 3)
    z = rng.normal(size=(lat.shape[0], 1, 3)) * decay
    return np.tanh(z @ rng.normal(size=(3, 12))) + 0.02 * rng.normal(size=(*lat.shape[:2], 12))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("geometry")
    act = activity()
    convention.write_dataset(act, root / "activity.nc", "activity")
    for name, states in (("good", good_states()), ("bad", bad_states()), ("nostates", None)):
        (root / name).mkdir()
        convention.write_dataset(fit_dataset(act, states), root / name / "fit.nc", "fit")
    return root


@pytest.fixture(scope="module")
def results(files):
    out = {}
    for name in ("good", "bad"):
        geometry.run(files / "activity.nc", files / name, files / f"{name}.nc", window_ms=(100, 500))
        out[name] = convention.read_dataset(files / f"{name}.nc", kind="geometry")
    return out


def test_participation_ratio_and_pca_summary():
    assert geometry.participation_ratio(np.array([2.0, 2.0, 0.0])) == pytest.approx(2.0)
    assert geometry.participation_ratio(np.array([1.0, 0.0])) == pytest.approx(1.0)
    x = np.random.default_rng(0).normal(size=(500, 3)) * np.array([3.0, 3.0, 0.01])
    ratio, pr, scores = geometry.pca_summary(x)
    assert ratio[:2].sum() > 0.99 and 1.9 < pr < 2.1 and scores.shape == (500, 3)


def test_smoothing_respects_the_valid_mask():
    counts = np.full((1, 20, 2), 3, dtype="uint16")
    valid = np.ones_like(counts, dtype="int8")
    counts[0, 5:10, 0], valid[0, 5:10, 0] = 0, 0  # unobserved, not silent
    valid[0, :, 1] = 0
    ds = convention.new_activity(counts, time=np.arange(20) * BIN + BIN / 2, bin_width_s=BIN, valid=valid)
    rates = geometry.smoothed_rates(ds, smooth_ms=30)
    assert np.allclose(rates[0, :, 0], 300.0)  # 3 spikes / 10 ms everywhere it was observed
    assert np.all(np.isnan(rates[0, :, 1]))


def test_condition_average_groups_trials():
    ds = activity()
    avg = geometry.condition_average(ds, smooth_ms=0)
    assert avg.dims == ("condition", "time", "unit") and avg.sizes["condition"] == 6
    first = ds["activity"].values[ds["condition"].values == "c0"].mean(axis=0) / BIN
    assert np.allclose(avg.sel(condition="c0").values, first)


def test_jpca_from_activity_recovers_rotation_frequency():
    res = geometry.jpca_from_activity(activity(), n_pcs=4, smooth_ms=20, window=(0.1, 0.5))
    assert res.frequencies_hz[0] == pytest.approx(F_HZ, rel=0.10)
    assert res.r2_skew > 0.4 and res.r2_ratio > 0.9


def test_run_writes_geometry_dataset(results, files):
    ds = results["good"]
    assert ds.attrs["cortexfit_kind"] == "geometry" and ds.attrs["conditions_from"] == "condition"
    assert ds.sizes["condition"] == 6 and ds.sizes["jpc_plane"] == 3
    assert ds["jpca_time"].values[0] == pytest.approx(0.105) and ds["jpca_time"].values[-1] == pytest.approx(0.495)
    assert json.loads(ds.attrs["config"])["window_ms"] == [100, 500]
    assert float(ds["jpca_frequency_hz"][0]) == pytest.approx(F_HZ, rel=0.10)
    assert ds.attrs["jpca_r2_skew"] > 0.3 and ds.attrs["jpca_r2_skew"] > 0.9 * ds.attrs["jpca_r2_full"]
    main_plane = int(np.nanargmax(ds["state_jpca_plane_variance_fraction"].values))  # tanh adds faster harmonics
    assert float(ds["state_jpca_frequency_hz"][main_plane]) == pytest.approx(F_HZ, rel=0.15)
    assert 2 <= ds.attrs["data_participation_ratio"] <= 6  # 3 latent dims (+ noise) among 30 units
    assert ds["data_variance_explained"].sum() == pytest.approx(1.0)
    assert not list(files.glob("*.tmp"))


def test_alignment_metrics_prefer_the_matching_model(results):
    good, bad = results["good"], results["bad"]
    assert good.attrs["cca_cv_mean_corr"] > 0.35  # test trials x held-out units: fewer, noisier samples
    assert good.attrs["cca_cv_mean_corr_in_sample"] > 0.5
    assert good.attrs["cca_cv_mean_corr"] > good.attrs["cca_cv_mean_corr_shuffled"] + 0.1
    assert good.attrs["cca_cv_mean_corr"] > bad.attrs["cca_cv_mean_corr"] + 0.1
    assert good.attrs["procrustes_similarity"] > bad.attrs["procrustes_similarity"] + 0.2
    assert good.attrs["dsa_distance"] < 0.5 * bad.attrs["dsa_distance"]
    assert bad.attrs["state_jpca_r2_skew"] < good.attrs["state_jpca_r2_skew"]


def test_run_without_states_uses_rates(files, results):
    geometry.run(files / "activity.nc", files / "nostates", files / "nostates.nc", cca_folds=3)
    ds = convention.read_dataset(files / "nostates.nc", kind="geometry")
    assert ds.attrs["model_variable"] == "rates"
    # the "model" rates are the data's true rates: closer than the unrelated model
    assert ds.attrs["procrustes_similarity_in_sample"] > 0.7
    assert ds.attrs["procrustes_similarity"] > results["bad"].attrs["procrustes_similarity"] + 0.2
    assert 2 <= ds.attrs["dsa_rank"] <= 3  # noise-free 3-latent rates: the DMD rank is capped
    assert ds.attrs["dsa_distance"] < results["bad"].attrs["dsa_distance"]


def test_run_errors(files, tmp_path):
    with pytest.raises(ConfigError, match="unknown option"):
        geometry.run(files / "activity.nc", files / "good", tmp_path / "x.nc", smoothing=3)
    with pytest.raises(ConfigError, match="n_pcs"):
        geometry.run(files / "activity.nc", files / "good", tmp_path / "x.nc", n_pcs=1)
    with pytest.raises(CortexfitError, match="fit.nc"):
        geometry.run(files / "activity.nc", tmp_path / "missing", tmp_path / "x.nc")
    other = fit_dataset(activity(), good_states())
    other = other.assign_coords(trial=other["trial"].values + 1000)
    (tmp_path / "other").mkdir()
    convention.write_dataset(other, tmp_path / "other" / "fit.nc", "fit")
    with pytest.raises(AnalysisError, match="shares 0 trial ids"):
        geometry.run(files / "activity.nc", tmp_path / "other", tmp_path / "x.nc")
    assert not (tmp_path / "x.nc").exists()


def test_cli(files, tmp_path):
    from cortexfit.cli import main

    assert main(["geometry", str(files / "activity.nc"), str(files / "good"), str(tmp_path / "g.nc")]) == 0
    assert convention.read_dataset(tmp_path / "g.nc", kind="geometry").attrs["fit_dir"] == str(files / "good")
    assert main(["geometry", str(files / "activity.nc"), str(tmp_path / "nope"), str(tmp_path / "h.nc")]) == 1


def test_unobserved_units_do_not_break_the_analysis(caplog):
    act = activity()
    valid = act["valid"].values.copy()
    valid[act["condition"].values == "c1", :, 0] = 0  # unit 0 never observed in condition c1
    valid[:5, :20, 1] = 0  # unit 1 unobserved early in a few trials
    act["valid"] = (act["valid"].dims, valid)
    act["activity"] = act["activity"].where(valid == 1, 0)
    out = geometry.analyse(act, fit_dataset(act, good_states()), geometry.GeometryConfig(cca_folds=3))
    assert "dropping 1 units" in caplog.text
    scalars = [out.attrs[k] for k in geometry.SCALARS]
    assert np.all(np.isfinite(scalars)) and np.all(np.isfinite(out["jpca_projection"].values))


# ------------------------------------------------------------- alignment: test trials x held-out units
def copycat_case():
    """Activity whose held-out units are unrelated to its held-in units, and a 'model' whose states are a
    copy of the smoothed held-in activity: it read its answer and predicts nothing."""
    act = activity()
    held = heldout_units(act.sizes["unit"]).astype(bool)
    other = activity(seed=7)["activity"].values[np.random.default_rng(3).permutation(act.sizes["trial"])]
    counts = act["activity"].values.copy()
    counts[:, :, held] = other[:, :, held]  # held-out units: another recording, trials shuffled
    act["activity"] = (act["activity"].dims, counts)
    states = geometry.smoothed_rates(act)[:, :, ~held]
    return act, fit_dataset(act, states)


def test_alignment_scores_test_trials_and_heldout_units_not_the_encoders_input():
    act, fit = copycat_case()
    out = geometry.analyse(act, fit, geometry.GeometryConfig())
    a = out.attrs
    assert a["alignment_n_test_trials"] == 12 and a["alignment_n_heldout_units"] == 10 and a["alignment_note"] == ""
    assert "test trials (12)" in a["alignment_scope"] and "held-out units (10)" in a["alignment_scope"]
    # in sample the copy of the held-in activity looks like an excellent model ...
    assert a["cca_cv_mean_corr_in_sample"] > 0.8 and a["procrustes_similarity_in_sample"] > 0.8
    # ... on the units it never read it is no better than chance
    assert a["cca_cv_mean_corr"] < 0.3 and a["cca_cv_mean_corr"] < a["cca_cv_mean_corr_in_sample"] - 0.5
    assert a["procrustes_similarity"] < 0.5
    assert out["cca_corr_in_sample"].dims == ("cca_component",)


def test_alignment_heldout_selection_matches_fit_coords():
    from cortexfit.analysis.alignment import heldout_selection

    act = activity()
    fit = fit_dataset(act, good_states())
    fit = fit.assign_coords(unit=fit["unit"].values[::-1].copy())  # ids, not positions, say which unit
    trials, units = heldout_selection(act, fit)
    assert np.array_equal(trials, splits(act.sizes["trial"]) == "test")
    assert np.array_equal(units, heldout_units(act.sizes["unit"])[::-1].astype(bool))


@pytest.mark.parametrize("case", ["few_test_trials", "no_heldout_units"])
def test_alignment_without_enough_heldout_data_is_nan_with_a_note(case, caplog):
    act = activity()
    n_trial, n_unit = act.sizes["trial"], act.sizes["unit"]
    if case == "few_test_trials":
        fit = fit_dataset(act, good_states(), split=np.where(np.arange(n_trial) < 2, "test", "train"))
    else:
        fit = fit_dataset(act, good_states(), heldout=np.zeros(n_unit, "int8"))
    out = geometry.analyse(act, fit, geometry.GeometryConfig(cca_folds=3))
    a = out.attrs
    for key in ("cca_cv_mean_corr", "cca_cv_mean_corr_shuffled", "procrustes_similarity", "dsa_distance"):
        assert np.isnan(a[key]), key
    assert np.all(np.isnan(out["cca_corr"].values))
    assert "not computed" in a["alignment_note"] and "not computed" in caplog.text
    assert np.isfinite(a["cca_cv_mean_corr_in_sample"]) and np.isfinite(a["dsa_distance_in_sample"])


def test_dsa_variant_option(files, tmp_path):
    with pytest.raises(ConfigError, match="dsa_variant"):
        geometry.run(files / "activity.nc", files / "good", tmp_path / "x.nc", dsa_variant="nope")
