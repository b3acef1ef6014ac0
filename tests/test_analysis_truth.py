"""``cortexfit truth``: ground-truth recovery scores on synthetic fits with known answers, and the CLI's errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cortexfit import cli
from cortexfit.analysis import truth as T
from cortexfit.core import convention

DT = 0.005


def _truth(*, n_trials=24, n_steps=80, n_units=12, seed=0, align="move_time", freq=2.0, n_cond=4) -> xr.Dataset:
    """Rotating latents (2 planes + noise) per trial at 5 ms steps, rates exp(C z + b) in Hz."""
    rng = np.random.default_rng(seed)
    t = (np.arange(n_steps) - 20 + 0.5) * DT
    cond = np.arange(n_trials) % n_cond
    ph = 2 * np.pi * cond / n_cond + 0.1 * rng.normal(size=n_trials)
    w = 2 * np.pi * freq * t[None]
    z = np.stack([np.cos(w + ph[:, None]), np.sin(w + ph[:, None]),
                  0.5 * np.cos(0.6 * w - 2 * ph[:, None]), 0.5 * np.sin(0.6 * w - 2 * ph[:, None])], -1)
    z += 0.05 * rng.normal(size=z.shape)
    C = rng.normal(0, 0.5, (n_units, z.shape[-1]))
    rates = np.exp(np.log(rng.uniform(5, 30, n_units)) + z @ C.T)
    move = 1.0 + np.arange(n_trials) * 2.0
    ds = xr.Dataset({"rates": (("trial", "time", "unit"), rates.astype("float32"), {"units": "Hz"}),
                     "latents": (("trial", "time", "latent"), z.astype("float32"))},
                    coords={"trial": np.arange(n_trials), "time": t, "unit": np.arange(n_units),
                            "latent": np.arange(z.shape[-1]), "condition": ("trial", cond),
                            align: ("trial", move)})
    ds.attrs.update(convention.base_attrs("truth"), task="synthetic", seed=seed, dt_s=DT, align_event=align,
                    window_start_s=float(t[0] - DT / 2), window_stop_s=float(t[-1] + DT / 2),
                    rotation_freq_hz=freq)
    return ds


def _pairs(x: np.ndarray, first: np.ndarray, n_bins: int) -> np.ndarray:
    """Independent reference: 10 ms bins = means of two 5 ms steps, bin k of trial i from step first[i] + 2k."""
    idx = first[:, None] + 2 * np.arange(n_bins)[None]
    take = lambda j: np.take_along_axis(x, j[..., None], axis=1)
    return (take(idx) + take(idx + 1)) / 2


def _fit(truth: xr.Dataset, states_of, *, shift_steps=None, n_bins=30, event="go_time") -> xr.Dataset:
    """A fit.nc on 10 ms bins aligned to ``event`` = the truth's event - shift_steps * 5 ms (per trial)."""
    n = truth.sizes["trial"]
    shift = np.arange(n) % 3 if shift_steps is None else shift_steps
    first = 20 - 10 - shift  # bins start 50 ms before the event, which is shift steps before truth step 20
    rates = _pairs(truth["rates"].values.astype(float), first, n_bins)
    lat = _pairs(truth["latents"].values.astype(float), first, n_bins)
    centres = -0.05 + (np.arange(n_bins) + 0.5) * 0.01
    split = np.where(np.arange(n) % 4 == 0, "test", "train")
    fit = xr.Dataset({"rates": (("trial", "time", "unit"), (rates * 0.01).astype("float32"), {"units": "count/bin"}),
                      "states": (("trial", "time", "state"), states_of(lat).astype("float32"))},
                     coords={"trial": truth.trial.values, "time": ("time", centres, {"long_name": f"bin centre "
                                                                                     f"relative to {event}"}),
                             "unit": truth.unit.values, "split": ("trial", split),
                             "heldout": ("unit", (np.arange(truth.sizes["unit"]) % 3 == 0).astype("int8")),
                             "condition": truth.condition, event: ("trial", truth["move_time"].values - shift * DT),
                             "move_time": truth["move_time"]})
    fit.attrs.update(convention.base_attrs("fit"), model="rate", mode="latent", seed=0, device="cpu",
                     activity_file="activity.nc", activity_sha256="", config="{}")
    return fit


def _compare(fit, truth, **kw):
    return T.compare(fit, truth, act_event="go_time", bin_width_s=0.01, **kw)


M = np.array([[1.0, 0.5, 0.0, 0.2], [0.0, 2.0, 0.3, 0.0], [0.4, 0.0, 1.0, 0.0], [0.0, 0.1, 0.0, 0.7]])


def test_truth_onto_bins_known_answers():
    x = np.arange(8.0)[None, :, None].repeat(2, 0)  # steps of 5 ms holding 0..7, truth time from 0
    tt = (np.arange(8) + 0.5) * DT
    centres = np.array([0.005, 0.015, 0.025])  # 10 ms bins [0, 10), [10, 20), [20, 30) ms
    out = T.truth_onto_bins(x, tt, DT, centres, 0.01, np.array([0.0, 0.0025]))[..., 0]
    assert np.allclose(out[0], [0.5, 2.5, 4.5])
    assert np.allclose(out[1], [1.0, 3.0, 5.0])  # shifted by half a step: 1/4 x_j + 1/2 x_j+1 + 1/4 x_j+2
    late = T.truth_onto_bins(x, tt, DT, centres, 0.01, np.array([0.015, -0.001]))[..., 0]
    assert np.allclose(late[0, :2], [3.5, 5.5]) and np.isnan(late[0, 2])  # the last bin ends after the truth
    assert np.isnan(late[1, 0]) and np.allclose(late[1, 1:], [2.3, 4.3])  # the first starts before it


def test_rate_r2_uses_the_right_bins():
    truth = _truth()
    fit = _fit(truth, lambda z: z @ M)
    good = _compare(fit, truth)
    assert good["rate_r2"] > 0.999 and good["rate_r2_n_test_trials"] == 6
    wrong = fit.assign_coords(go_time=fit["move_time"])  # claims the bins sit on the truth's event: off by 0-2 steps
    assert _compare(wrong, truth)["rate_r2"] < good["rate_r2"] - 0.01


def test_invertible_map_recovers_states_and_rotation():
    truth = _truth()
    res = _compare(_fit(truth, lambda z: np.tanh(0) + z @ M + 3.0), truth)
    assert res["state_r2"] > 0.99 and res["cycle_r2"] > 0.99
    assert res["dsa_to_teacher"] < 0.05
    assert res["rotation_freq_hz_true"] == 2.0
    assert abs(res["rotation_freq_hz"] - res["rotation_freq_hz_latents"]) < 1e-6
    assert abs(res["rotation_freq_hz"] - 2.0) < 0.1


def test_invented_dimensions_lower_cycle_r2_only():
    truth = _truth()
    rng = np.random.default_rng(1)

    def extra(z):
        return np.concatenate([z @ M, 2.0 * rng.normal(size=(*z.shape[:2], 6))], -1)

    res = _compare(_fit(truth, extra), truth)
    assert res["state_r2"] > 0.95
    assert res["cycle_r2"] < 0.5 and res["cycle_r2"] < res["state_r2"] - 0.4


def test_fixed_points_matched_through_the_fitted_map():
    truth = _truth()
    fit = _fit(truth, lambda z: z @ M + 1.0)
    corners = np.array([[a, b, c, 0.0] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], float)
    model = (corners @ M + 1.0)[::-1]  # the same points in the model's coordinates, in another order
    res = _compare(fit, truth, teacher_points=corners, model_points=model)
    assert res["fixed_points_true"] == 8 and res["fixed_points_model"] == 8 and res["fixed_points_matched"] == 8
    assert res["fixed_points_tolerance"] == pytest.approx(T.MATCH_FRACTION * 2.0)
    assert max(res["fixed_points_distances"]) < 0.05
    shifted = _compare(fit, truth, teacher_points=corners, model_points=model + 0.6 * (corners[:1] @ M))
    assert shifted["fixed_points_matched"] == 0
    none = _compare(fit, truth)
    assert none["fixed_points_true"] is None and none["fixed_points_matched"] is None


def test_match_points_one_to_one():
    true = np.array([[0.0, 0.0], [1.0, 0.0]])
    n, dist = T.match_points(true, np.array([[0.05, 0.0], [0.1, 0.0]]), 0.25)
    assert n == 1 and dist[0] is not None and dist[1] is not None and dist[1] > 0.25
    assert T.match_points(true, np.zeros((0, 2)), 0.25) == (0, [None, None])


# ------------------------------------------------------------------------------------------ run and CLI
def _fit_dir(tmp_path: Path, truth: xr.Dataset, name="rate") -> Path:
    d = tmp_path / "fits" / name
    d.mkdir(parents=True)
    convention.write_dataset(_fit(truth, lambda z: z @ M), d / "fit.nc", "fit")
    return d


def _write_truth(path: Path, ds: xr.Dataset) -> Path:
    convention.write_dataset(ds, path, "truth")
    return path


def test_run_writes_every_key(tmp_path):
    truth = _truth()
    d = _fit_dir(tmp_path, truth)
    tp = _write_truth(tmp_path / "x.truth.nc", truth)
    code = cli.main(["truth", str(d), str(tp), str(d / "truth.json")])
    assert code == 0
    res = json.loads((d / "truth.json").read_text())
    assert set(T.KEYS) <= set(res) and res["model"] == "rate" and res["state_r2"] > 0.99
    assert res["fixed_points_true"] is None and any("teacher" in n for n in res["notes"])


def _fails(capsys, args, out: Path, needle: str) -> None:
    code = cli.main(["truth", *map(str, args)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("cortexfit truth: error:") and len(err.splitlines()) == 1, err
    assert needle in err, err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_cli_errors(tmp_path, capsys):
    truth = _truth()
    d = _fit_dir(tmp_path, truth)
    out = d / "truth.json"
    other = _write_truth(tmp_path / "other.truth.nc", _truth(seed=5))  # same layout, another recording
    _fails(capsys, [d, other, out], out, "not the truth of this recording")
    fewer = _write_truth(tmp_path / "fewer.truth.nc", _truth().isel(trial=slice(0, 10)))
    _fails(capsys, [d, fewer, out], out, "are not in the truth")
    moved = _truth()
    moved["move_time"] = moved["move_time"] + 0.5
    _fails(capsys, [d, _write_truth(tmp_path / "moved.truth.nc", moved), out], out, "another 'move_time'")
    _fails(capsys, [d, d / "fit.nc", out], out, "expected a 'truth' dataset")
    _fails(capsys, [d, tmp_path / "absent.truth.nc", out], out, "no such file")
    _fails(capsys, [tmp_path / "nofit", tmp_path / "other.truth.nc", out], out, "no such fit folder")
    act = convention.new_activity(np.zeros((24, 30, 12), "uint16"), time=np.arange(30) * 0.01, bin_width_s=0.01)
    convention.write_dataset(act, tmp_path / "activity.nc", "activity")
    fit = convention.read_dataset(d / "fit.nc")
    fit.attrs["activity_sha256"] = "0" * 64
    convention.write_dataset(fit, d / "fit.nc", "fit")
    good = _write_truth(tmp_path / "good.truth.nc", truth)
    _fails(capsys, [d, good, out, "--activity", tmp_path / "activity.nc"], out, "another activity file")


def test_run_with_activity_and_teacher_file(tmp_path):
    """With --activity the bins' event and width come from the activity (sha256 checked against fit.nc) and its
    observed rates must match the truth's; --teacher-fixed-points supplies the stable teacher points."""
    from cortexfit.core.fileio import file_sha256

    truth = _truth()
    fit = _fit(truth, lambda z: z @ M)
    counts = np.random.default_rng(0).poisson(fit["rates"].values).astype("uint16")
    act = convention.new_activity(counts, time=fit.time.values, bin_width_s=0.01, align_event="go_time")
    convention.write_dataset(act, tmp_path / "activity.nc", "activity")
    fit.attrs["activity_sha256"] = file_sha256(tmp_path / "activity.nc")
    fit["time"].attrs.pop("long_name")  # the event can only come from the activity now
    d = tmp_path / "fits" / "rate"
    convention.write_dataset(fit, d / "fit.nc", "fit")
    corners = np.array([[a, b, 0.0, 0.0] for a in (-1, 1) for b in (-1, 1)])
    fp = xr.Dataset({"xstar": (("point", "state"), corners), "q": ("point", np.zeros(4)),
                     "eig_real": (("point", "eig"), np.zeros((4, 4))), "eig_imag": (("point", "eig"), np.zeros((4, 4))),
                     "label": ("point", ["stable"] * 3 + ["saddle"]), "point_type": ("point", ["fixed"] * 4),
                     "u_star": (("point", "input"), np.zeros((4, 1))), "pc_projection": (("point", "pc"), np.zeros((4, 2)))},
                    attrs={**convention.base_attrs("fixed_points"), "family": "rate", "inputs": "zero", "n_init": 4,
                           "seed": 0, "n_stable": 3, "n_fixed": 4})
    convention.write_dataset(fp, tmp_path / "teacher_fp.nc", "fixed_points")
    convention.write_dataset(fp.assign(xstar=fp.xstar @ xr.DataArray(M, dims=("state", "s"))).rename(s="state"),
                             d / "fixed_points.nc", "fixed_points")  # the same points in the model's coordinates
    tp = _write_truth(tmp_path / "x.truth.nc", truth)
    assert cli.main(["truth", str(d), str(tp), str(d / "out.json")]) == 1  # no event without --activity
    T.run(d, tp, d / "truth.json", activity=tmp_path / "activity.nc", teacher_fixed_points=tmp_path / "teacher_fp.nc")
    res = json.loads((d / "truth.json").read_text())
    assert res["rate_r2"] > 0.999 and res["bin_width_s"] == 0.01
    assert res["fixed_points_true"] == 3 and res["fixed_points_model"] == 3 and res["fixed_points_matched"] == 3
