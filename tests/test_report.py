"""Tests of ``cortexfit report``: dataset report, index page, errors and the CLI, on small synthetic folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cortexfit import cli, report
from cortexfit.core import convention
from cortexfit.core.errors import ReportError
from cortexfit.report import sections


def _activity(*, n_trials=12, n_time=24, n_units=10, seed=0, conditions=True, areas=True, behavior=False):
    rng = np.random.default_rng(seed)
    t = np.arange(n_time)
    phase = np.where(np.arange(n_trials) % 2 == 0, 0.0, np.pi / 2)
    z = np.stack([np.cos(2 * np.pi * t[None] / 16 + phase[:, None]), np.sin(2 * np.pi * t[None] / 16 + phase[:, None])], -1)
    rates = 0.5 * np.exp(z @ rng.normal(0, 0.8, (2, n_units)))
    valid = np.ones((n_trials, n_time, n_units), "int8")
    valid[0, -3:, 0] = 0  # an unobserved stretch
    counts = rng.poisson(rates) * valid
    ds = convention.new_activity(counts.astype("uint16"), time=(t + 0.5) * 0.01, bin_width_s=0.01, valid=valid,
                             align_event="move_onset_time", source_file="synthetic.nwb")
    if conditions:
        ds = ds.assign_coords(condition=("trial", np.where(phase == 0, "left", "right")))
    if areas:
        ds = ds.assign_coords(area=("unit", np.where(np.arange(n_units) < n_units // 2, "PMd", "M1")))
    if behavior:
        beh = rng.normal(size=(n_trials, n_time, 2)).astype("float32")
        ds["behavior"] = xr.DataArray(beh, dims=("trial", "time", "behavior_channel"),
                                      coords={"behavior_channel": ["hand_vel_x", "hand_vel_y"],
                                              "behavior_kind": ("behavior_channel", ["velocity", "velocity"])})
    return ds, z


def _fit(act: xr.Dataset, out: Path, *, model: str, metrics: dict, states: np.ndarray | None, history: str) -> None:
    out.mkdir(parents=True)
    n_tr, n_t, n_u = act.sizes["trial"], act.sizes["time"], act.sizes["unit"]
    fit = xr.Dataset({"rates": (("trial", "time", "unit"), np.full((n_tr, n_t, n_u), 0.4, "float32"))},
                     coords={"trial": act.trial, "time": act.time, "unit": act.unit,
                             "split": ("trial", np.select([np.arange(n_tr) % 3 == 1, np.arange(n_tr) % 4 == 0],
                                                          ["test", "valid"], "train")),
                             "heldout": ("unit", (np.arange(n_u) % 4 == 0).astype("int8"))})
    if "condition" in act.coords:
        fit = fit.assign_coords(condition=act.condition)
    if states is not None:
        fit["states"] = (("trial", "time", "state"), states.astype("float32"))
    fit.attrs.update(convention.base_attrs("fit"), model=model, mode="latent", seed=0, device="cpu",
                     activity_file="activity.nc", activity_sha256="0" * 64, config="{}")
    convention.write_dataset(fit, out / "fit.nc", "fit")
    base = {"co_bps": None, "fp_bps": None, "vel_r2": None, "psth_r2": None, "train_seconds": 1.0, "n_params": 10,
            "epochs": None, "device": "cpu", "model": model, "mode": "latent", "seed": 0}
    (out / "metrics.json").write_text(json.dumps({**base, **metrics}))
    (out / "history.csv").write_text(history)


def _analyses(fit_dir: Path, act_path: Path, n_state: int, rng: np.random.Generator) -> None:
    from cortexfit.analysis import geometry

    geometry.run(act_path, fit_dir, fit_dir / "geometry.nc", cca_folds=2, cca_components=2, n_common_dims=2,
                 dsa_rank=2, dsa_delays=2, n_pcs=2)
    n_pt, ev = 3, rng.normal(0, 0.5, (3, n_state)) + 1j * rng.normal(0, 0.3, (3, n_state))
    fp = xr.Dataset(
        {"xstar": (("point", "state"), rng.normal(size=(n_pt, n_state))), "q": ("point", [1e-12, 1e-11, np.nan]),
         "eig_real": (("point", "eig"), ev.real), "eig_imag": (("point", "eig"), ev.imag),
         "label": ("point", ["stable", "saddle", "unstable"]), "point_type": ("point", ["fixed", "fixed", "slow"]),
         "u_star": (("point", "input"), np.zeros((n_pt, 1))), "pc_projection": (("point", "pc"), rng.normal(size=(n_pt, 3))),
         "pc_explained_variance": ("pc", [0.6, 0.3, 0.1]),
         "trajectory_pc": (("trajectory", "time", "pc"), rng.normal(size=(2, 24, 3)).cumsum(1))},
        coords={"trajectory": ["left", "right"]},
        attrs={**convention.base_attrs("fixed_points"), "family": "rate", "inputs": "zero", "n_init": 64, "seed": 0,
               "n_stable": 1, "n_fixed": 2},
    )
    convention.write_dataset(fp, fit_dir / "fixed_points.nc", "fixed_points")
    w = rng.normal(0, 0.3, n_state) + 1j * rng.normal(0, 0.3, n_state)
    lags, steps = np.arange(30), np.arange(40)
    dyn = xr.Dataset(
        {"jacobian_eig_real": ("eig_jac", 0.9 * w.real), "jacobian_eig_imag": ("eig_jac", 0.9 * w.imag),
         "weight_eig_real": ("eig", w.real), "weight_eig_imag": ("eig", w.imag),
         "lyapunov": ("lyap", [-0.01, -0.2, np.nan]), "lyapunov_per_s": ("lyap", [-1.0, -20.0, np.nan]),
         "grad_norm": ("time_lag", np.exp(-0.05 * lags)), "echo_distance": ("echo_step", np.exp(-0.1 * steps))},
        coords={"time_lag_s": ("time_lag", lags * 0.01), "echo_time_s": ("echo_step", steps * 0.01)},
        attrs={**convention.base_attrs("dynamics"), "family": "rate", "dt_s": 0.01, "spectral_radius": 0.5,
               "bulk_radius": 0.4, "lyapunov_max_per_step": -0.01, "lyapunov_max_per_s": -1.0},
    )
    convention.write_dataset(dyn, fit_dir / "dynamics.nc", "dynamics")


def make_dataset(folder: Path, *, seed: int = 0, best: str = "smoothing", analyses: bool = True,
                 scores: dict | None = None, flags: dict | None = None, **kw) -> Path:
    """activity.nc + fits/rate (with analyses) + fits/smoothing (a baseline without analyses).

    ``scores`` overrides the co-bps of ``rate`` and ``smoothing``; ``flags`` adds keys to rate's metrics.json.
    """
    act, z = _activity(seed=seed, **kw)
    convention.write_dataset(act, folder / "activity.nc")
    rng = np.random.default_rng(seed)
    states = np.concatenate([np.tanh(z), rng.normal(0, 0.1, (*z.shape[:2], 4))], axis=-1)
    if scores is None:
        scores = {"rate": 0.25, "smoothing": 0.31} if best == "smoothing" else {"rate": 0.4, "smoothing": 0.31}
    _fit(act, folder / "fits" / "rate", model="rate", states=states,
         metrics={"co_bps": scores["rate"], "fp_bps": -0.05, "psth_r2": 0.52, "n_params": 3188, "epochs": 5,
                  **(flags or {})},
         history="epoch,train_loss,valid_loss,seconds\n" + "".join(
             f"{e},{1 / e:.3f},{1.1 / e:.3f},{e * 0.5}\n" for e in range(1, 6)))
    if analyses:
        _analyses(folder / "fits" / "rate", folder / "activity.nc", states.shape[-1], rng)
    _fit(act, folder / "fits" / "smoothing", model="smoothing", states=None,
         metrics={"co_bps": scores["smoothing"], "psth_r2": 0.4, "n_params": 797},
         history="epoch,train_loss,valid_loss,seconds\n")
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("results") / "ds_a", behavior=True)


def _images(text: str) -> int:
    return text.count("data:image/png;base64,")


def test_dataset_report(dataset: Path):
    out = report.run(dataset, dataset / "report.html")
    text = out.read_text()
    assert "could not be drawn" not in text  # no section failed
    rows = re.findall(r"<tr( class=\"best\")?>(.*?)</tr>", text)
    models = [(bool(cls), re.sub("<[^>]+>", "|", body)) for cls, body in rows if "rate" in body or "smoothing" in body]
    table = [(best, body) for best, body in models if "0.310" in body or "0.250" in body]
    assert [("smoothing" in b, best) for best, b in table] == [(True, True), (False, False)]  # sorted, best bold
    assert "<strong>smoothing</strong>" in text and "<strong>rate</strong>" not in text
    assert "3188" in table[1][1] and "-0.050" in table[1][1] and "0.520" in table[1][1]
    # recording (4 incl. behavior), training, trajectories, fixed points, dynamics
    assert _images(text) >= 8
    assert not re.search(r"(src|href)=\"(https?:)?//", text) and "<script" not in text
    assert "No fixed points for smoothing" in text and "No training curve for smoothing" in text
    assert "Procrustes" in text and "DSA" in text


def test_report_without_behavior_and_conditions(tmp_path: Path):
    folder = make_dataset(tmp_path / "ds", conditions=False, areas=False, best="rate")
    text = report.run(folder, tmp_path / "r.html").read_text()
    assert "No behavior in this dataset" in text and "could not be drawn" not in text
    assert "<strong>rate</strong>" in text and _images(text) >= 6


def test_tiny_nan_dataset(tmp_path: Path):
    act = convention.new_activity(np.array([[[1], [0]]], "uint16"), time=[0.005, 0.015], bin_width_s=0.01,
                              valid=np.array([[[1], [0]]], "int8"))
    convention.write_dataset(act, tmp_path / "activity.nc")
    _fit(act, tmp_path / "fits" / "vanilla", model="vanilla", states=np.full((1, 2, 3), np.nan),
         metrics={"co_bps": float("nan")}, history="epoch,train_loss,valid_loss,seconds\n1,nan,nan,0.1\n")
    (tmp_path / "fits" / "broken").mkdir()
    text = report.run(tmp_path, tmp_path / "report.html").read_text()
    assert "could not be drawn" not in text
    assert "broken: metrics.json missing" in text and _images(text) >= 3


def test_index_links_datasets(tmp_path: Path):
    make_dataset(tmp_path / "ds_a", analyses=False)
    make_dataset(tmp_path / "ds_b", seed=1, best="rate", analyses=False)
    (tmp_path / "logs").mkdir()  # not a dataset
    text = report.run(tmp_path, tmp_path / "index.html").read_text()
    assert 'href="ds_a/report.html"' in text and 'href="ds_b/report.html"' in text
    assert "logs" not in text
    ds_a = re.search(r"<tr><td><a href=\"ds_a/report.html\">.*?</tr>", text).group(0)
    ds_b = re.search(r"<tr><td><a href=\"ds_b/report.html\">.*?</tr>", text).group(0)
    assert "<strong>smoothing</strong>" in ds_a and "<strong>0.310</strong>" in ds_a
    assert "<strong>rate</strong>" in ds_b and "<strong>0.400</strong>" in ds_b


def test_missing_activity_raises(tmp_path: Path):
    (tmp_path / "ds" / "fits").mkdir(parents=True)
    out = tmp_path / "report.html"
    with pytest.raises(ReportError, match="activity.nc"):
        report.run(tmp_path / "ds", out)
    with pytest.raises(ReportError, match="no such results folder"):
        report.run(tmp_path / "absent", out)
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


def test_cli(tmp_path: Path, capsys):
    dataset = tmp_path / "ds"
    convention.write_dataset(_activity(n_trials=4, n_time=6, n_units=3)[0], dataset / "activity.nc")
    out = tmp_path / "cli.html"
    assert cli.main(["report", str(dataset), str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert cli.main(["report", str(tmp_path / "nothing"), str(tmp_path / "x.html")]) == 1
    assert "cortexfit report: error:" in capsys.readouterr().err


def _model_rows(text: str) -> list[str]:
    """Model names in the first cell of each row of the page's tables."""
    return re.findall(r"<tr(?: class=\"best\")?><td>(?:<strong>)?([a-z_]+)", text)


def test_models_filter_leaves_out_stale_fit(tmp_path: Path):
    folder = make_dataset(tmp_path / "ds", analyses=False)
    act = convention.read_dataset(folder / "activity.nc", "activity")
    _fit(act, folder / "fits" / "lstm", model="lstm", states=None, metrics={"co_bps": 0.9},
         history="epoch,train_loss,valid_loss,seconds\n")  # a stale fit the workflow no longer declares
    everything = report.run(folder, tmp_path / "all.html").read_text()
    assert "lstm" in _model_rows(everything)
    data = report.load_dataset(folder, models=["smoothing", "rate"])
    assert [f.name for f in data.fits] == ["smoothing", "rate"] and data.best.name == "smoothing"
    text = report.run(folder, tmp_path / "filtered.html", models=["smoothing", "rate"]).read_text()
    assert "lstm" not in text and "<strong>smoothing</strong>" in text
    index = report.run(tmp_path, tmp_path / "index.html", models=["smoothing", "rate"]).read_text()
    assert "lstm" not in index and "<strong>0.310</strong>" in index
    assert "0.900" in report.run(tmp_path, tmp_path / "index_all.html").read_text()


def test_models_filter_notes_a_missing_folder(tmp_path: Path):
    folder = make_dataset(tmp_path / "ds", analyses=False)
    text = report.run(folder, tmp_path / "r.html", models=["rate", "esn"]).read_text()
    assert "esn: requested with --models" in text and "smoothing" not in _model_rows(text)


def test_cli_models(tmp_path: Path):
    folder = make_dataset(tmp_path / "ds", analyses=False)
    out = tmp_path / "cli.html"
    assert cli.main(["report", str(folder), str(out), "--models", "rate"]) == 0
    text = out.read_text()
    assert "rate" in _model_rows(text) and "smoothing" not in _model_rows(text)


def test_latents_come_from_geometry_nc(dataset: Path):
    geo = convention.read_dataset(dataset / "fits" / "rate" / "geometry.nc", "geometry")
    names = [str(c) for c in geo["condition"].values]
    data_pca, data_jpca, state_pca, state_jpca = (
        sections._planes(geo, "data", names, "data") + sections._planes(geo, "state", names, "rate states"))
    np.testing.assert_array_equal(data_pca[1], geo["data_pc_projection"].values[..., :2])
    np.testing.assert_array_equal(data_jpca[1], geo["jpca_projection"].values[:, :, 0])
    np.testing.assert_array_equal(state_pca[1], geo["state_pc_projection"].values[..., :2])
    np.testing.assert_array_equal(state_jpca[1], geo["state_jpca_projection"].values[:, :, 0])
    assert f"{float(geo['state_jpca_frequency_hz'][0]):.2f} Hz" in state_jpca[0]
    assert state_jpca[0].startswith("rate states: jPCA plane 1")


def test_geometry_missing_variable_is_an_error(tmp_path: Path):
    folder = make_dataset(tmp_path / "ds")
    path = folder / "fits" / "rate" / "geometry.nc"
    geo = convention.read_dataset(path, "geometry").drop_vars("state_jpca_projection")
    geo.to_netcdf(path, engine="h5netcdf")  # a stale geometry.nc from before state_jpca_projection existed
    with pytest.raises(ReportError, match=r"geometry.nc.*lacks variable 'state_jpca_projection'.*cortexfit geometry"):
        report.run(folder, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


# --------------------------------------------------------------------- what a fit does not show
WARNING = '<div class="warning"'


def _section(text: str, title: str) -> str:
    """The HTML of the section whose heading contains ``title``."""
    return next(part for part in text.split("<section ")[1:] if title in part.split("</h2>")[0])


def test_warning_when_no_model_beats_the_null(tmp_path: Path):
    folder = make_dataset(tmp_path / "ds", scores={"rate": -0.12, "smoothing": -0.03})
    text = report.run(folder, tmp_path / "r.html").read_text()
    assert WARNING in text and text.index(WARNING) < text.index("<nav>")  # at the top, before the contents
    assert "No model beats the mean-rate null" in text and "could not be drawn" not in text
    for title in ("Latent trajectories", "Fixed points", "Dynamics", "Model-data alignment"):
        assert "Uninformative" in _section(text, title) and "rate (co-bps -0.120 &lt;= 0" in _section(text, title)
    assert "rate [uninformative]" in _section(text, "Model-data alignment")
    assert "<td>no</td>" in _section(text, "Models")  # beats null: no
    cav = report.load_dataset(folder).caveats
    assert cav.beats_null == {"smoothing": False, "rate": False} and set(cav.uninformative) == {"rate", "smoothing"}


def test_warning_when_no_rnn_beats_smoothing(dataset: Path):
    text = report.run(dataset, dataset / "report_smoothing.html").read_text()  # rate 0.25 < smoothing 0.31
    assert WARNING in text and "No RNN beats the smoothing baseline (co-bps 0.310)" in text
    assert "No model beats the mean-rate null" not in text
    assert "smoothing baseline 0.310" in _section(text, "Fixed points")
    assert list(report.load_dataset(dataset).caveats.uninformative) == ["rate"]


def test_no_warning_when_an_rnn_beats_both(tmp_path: Path):
    folder = make_dataset(tmp_path / "ds", best="rate")  # rate 0.40 > smoothing 0.31 > 0
    text = report.run(folder, tmp_path / "r.html").read_text()
    assert WARNING not in text and "Uninformative" not in text and "[uninformative]" not in text
    cav = report.load_dataset(folder).caveats
    assert cav.beats_null == {"rate": True, "smoothing": True} and cav.beats_smoothing["rate"] is True
    assert not cav.warnings


def test_metrics_json_flags_take_precedence(tmp_path: Path):
    # the fit stage compared rate with a smoothing baseline fitted on the same split: it did not beat it
    folder = make_dataset(tmp_path / "ds", best="rate", analyses=False,
                          flags={"beats_null": True, "beats_smoothing": False, "smoothing_co_bps": 0.45})
    cav = report.load_dataset(folder).caveats
    assert cav.beats_smoothing["rate"] is False and "smoothing baseline 0.450" in cav.uninformative["rate"]
    assert any("No RNN beats the smoothing baseline" in w for w in cav.warnings)
    # beats_smoothing null (no smoothing reference): computed from the smoothing fit folder instead
    folder = make_dataset(tmp_path / "ds2", best="rate", analyses=False, flags={"beats_smoothing": None})
    assert report.load_dataset(folder).caveats.beats_smoothing["rate"] is True


def test_alignment_table_shows_out_of_sample_and_in_sample(dataset: Path):
    text = report.run(dataset, dataset / "report_align.html").read_text()
    table = _section(text, "Model-data alignment")
    assert "test trials (4) x held-out units (3)" in table
    assert "CCA in-sample" in table and "Procrustes in-sample" in table and "DSA in-sample" in table


def test_ground_truth_table(tmp_path: Path):
    folder = make_dataset(tmp_path / "sim", analyses=False)
    assert "Ground truth" not in report.run(folder, tmp_path / "plain.html").read_text()  # recorded data: none
    truth = {"rate_r2": 0.871, "state_r2": 0.934, "cycle_r2": 0.812, "fixed_points_true": 8, "fixed_points_model": 9,
             "fixed_points_matched": 7, "dsa_to_teacher": 0.123, "rotation_freq_hz": 1.97,
             "rotation_freq_hz_true": 2.0, "notes": ["a note from the truth stage"]}
    (folder / "fits" / "rate" / "truth.json").write_text(json.dumps(truth))
    text = report.run(folder, tmp_path / "r.html").read_text()
    assert "8. Ground truth" in text and "could not be drawn" not in text
    row = re.search(r"<tr class=\"best\"><td><strong>rate.*?</tr>", text).group(0)
    for cell in ("0.871", "0.934", "0.812", "7 of 8 (9 stable in model)", "0.123", "1.97", "2.00"):
        assert cell in row, cell
    assert "a note from the truth stage" in text and "No truth.json for smoothing" in text
    (folder / "fits" / "rate" / "truth.json").write_text("[1, 2]")
    with pytest.raises(ReportError, match="truth.json: not a JSON object"):
        report.run(folder, tmp_path / "bad.html")
