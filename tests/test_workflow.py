"""The Snakemake workflow: config and sheet validation, the job graph, and end-to-end runs (ingest; the
tiny `.test` configuration through fits, analyses and reports)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cortexfit.fit import registry

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]


def _workdir(tmp_path: Path, sheet: str, extra_config: str = "") -> Path:
    (tmp_path / "config").mkdir(parents=True)
    (tmp_path / "config" / "datasets.tsv").write_text(sheet)
    (tmp_path / "config" / "config.yaml").write_text("datasets: config/datasets.tsv\n" + extra_config)
    return tmp_path


def _run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, "-d", str(workdir), "--cores", "1", *args],
                          capture_output=True, text=True, timeout=600)


HEADER = "id\tnwb\tsimulate\talign\twindow_start_ms\twindow_stop_ms\tbin_ms\tareas\n"
ONE_REC = "id\tnwb\nrec1\trec1.nwb\n"


def _jobs(text: str) -> list[dict[str, str]]:
    """The jobs of a `snakemake -n -p` output: {"rule", "wildcards", "resources", "threads", "shell", ...}."""
    jobs: list[dict[str, str]] = []
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            jobs.append({"rule": m.group(1)})
            continue
        if not jobs:
            continue
        m = re.match(r"^    (\w+): (.*)$", line)
        if m:
            jobs[-1][m.group(1)] = m.group(2)
        elif line.startswith("Shell command: ") or (line.startswith("cortexfit") and "shell" not in jobs[-1]):
            jobs[-1]["shell"] = line.removeprefix("Shell command: ")
    return jobs


def _plan_sheet(tmp_path: Path, sheet: str, config: str, *placeholders: str) -> tuple[Path, list[dict[str, str]]]:
    """Dry-run (`-n -p`, 4 cores) a sheet whose recorded files `placeholders` exist as stubs: workdir and jobs."""
    work = _workdir(tmp_path, sheet, config)
    for name in placeholders:
        (work / name).write_bytes(b"x")
    out = _run(work, "-n", "-p", "--cores", "4")
    assert out.returncode == 0, out.stderr[-2000:]
    return work, _jobs(out.stdout + out.stderr)


def _plan(tmp_path: Path, config: str, *targets: str) -> tuple[subprocess.CompletedProcess, list[dict[str, str]]]:
    work = _workdir(tmp_path, ONE_REC, config)
    (work / "rec1.nwb").write_bytes(b"x")
    out = _run(work, "-n", "-p", "--cores", "4", *targets)
    return out, _jobs(out.stdout + out.stderr)


def test_default_config_plans_every_stage():
    out = subprocess.run([*SNAKEMAKE, "-d", str(ROOT), "-n", "--cores", "1", "--quiet", "rules"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for rule in ("simulate", "ingest", "fit", "fixed_points", "geometry", "dynamics", "report"):
        assert rule in out.stdout + out.stderr


def test_defaults_are_filled_from_schema(tmp_path):
    work = _workdir(tmp_path, "id\tnwb\nrec1\trec1.nwb\n", "models: []\nreport: false\n")
    (work / "rec1.nwb").write_bytes(b"x")
    out = _run(work, "-n", "-p")
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "--bin-ms 5" in text and "--align start_time" in text and "--areas electrodes" in text
    assert "--window-ms" not in text


@pytest.mark.parametrize(
    "sheet, needle",
    [
        (HEADER + "bad id\tx.nwb\t\tstart_time\t0\t100\t5\telectrodes\n", "pattern"),
        (HEADER + "a\tx.nwb\t\tstart_time\t0\t100\t-5\telectrodes\n", "exclusiveMinimum"),
        (HEADER + "a\tx.nwb\t\tstart_time\t0\t100\tfive\telectrodes\n", "bin_ms = 'five' is not a number"),
        (HEADER + "a\tx.nwb\tbogus\tstart_time\t0\t100\t5\telectrodes\n", "enum"),
        (HEADER + "a\tx.nwb\t\tstart_time\t0\t\t5\telectrodes\n", "window_stop_ms"),
        (HEADER + "a\tx.nwb\t\tstart_time\t0\t100\t5\tnowhere\n", "pattern"),
        (HEADER + "a\tx.nwb\t\tstart_time\t0\t100\t5\telectrodes\na\ty.nwb\t\tstart_time\t0\t1\t5\telectrodes\n",
         "duplicate dataset ids"),
    ],
)
def test_bad_sheet_is_rejected(tmp_path, sheet, needle):
    out = _run(_workdir(tmp_path, sheet), "-n")
    assert out.returncode != 0
    assert needle in out.stdout + out.stderr


def test_bad_config_key_is_rejected(tmp_path):
    work = _workdir(tmp_path, "id\tnwb\na\tx.nwb\n", "modells: [rate]\n")
    out = _run(work, "-n")
    assert out.returncode != 0
    assert "modells" in out.stdout + out.stderr


@pytest.mark.slow
def test_simulate_and_ingest_end_to_end(tmp_path):
    sheet = HEADER + "sim_reach\tdata/simulated/reach.nwb\treach\tmove_onset_time\t-250\t450\t5\telectrodes\n"
    work = _workdir(tmp_path, sheet, "models: []\nreport: false\n")
    out = _run(work)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    from cortexfit.core import convention

    ds = convention.read_dataset(work / "results" / "sim_reach" / "activity.nc", "activity")
    assert ds.sizes["trial"] >= 100 and ds.sizes["time"] == 140
    assert int(ds.activity.sum()) > 0
    assert (work / "results" / "logs" / "sim_reach" / "ingest.log").is_file()
    assert (work / "results" / "benchmarks" / "sim_reach" / "ingest.tsv").is_file()
    # A second run has nothing to do.
    again = _run(work, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    shutil.rmtree(work / "data")


def test_schema_models_are_the_registry():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    models = schema["properties"]["models"]
    assert sorted(models["items"]["enum"]) == registry.names()
    assert set(models["default"]) == set(registry.names())
    assert "RNN_FAMILIES = (" not in (ROOT / "workflow" / "rules" / "common.smk").read_text()


@pytest.mark.parametrize("spelling", ["false", "False", "no", "NO", "0", "off"])
def test_boolean_spellings_on_the_command_line(tmp_path, spelling):
    work = _workdir(tmp_path, ONE_REC)
    (work / "rec1.nwb").write_bytes(b"x")
    out = _run(work, "-n", "--config", "models=[]", f"report={spelling}")
    assert out.returncode == 0, out.stderr[-2000:]
    rules = {j["rule"] for j in _jobs(out.stdout + out.stderr)}
    assert "report" not in rules and "ingest" in rules


def test_bad_boolean_is_still_rejected(tmp_path):
    work = _workdir(tmp_path, ONE_REC)
    out = _run(work, "-n", "--config", "report=maybe")
    assert out.returncode != 0
    assert "boolean" in out.stdout + out.stderr


def test_nested_numbers_from_the_command_line(tmp_path):
    work = _workdir(tmp_path, ONE_REC, "models: [fa]\nreport: false\n")
    (work / "rec1.nwb").write_bytes(b"x")
    out = _run(work, "-n", "-p", "--config", "fit={seed: 7, threads: 1}", "simulate={seed: 3}")
    assert out.returncode == 0, out.stderr[-2000:]
    fits = [j for j in _jobs(out.stdout + out.stderr) if j["rule"] == "fit"]
    assert fits and "--seed 7" in fits[0]["shell"] and "cortexfit --threads 1 " in fits[0]["shell"]


def test_gpu_resource_only_for_gpu_models_and_threads_everywhere(tmp_path):
    out, jobs = _plan(tmp_path, "fit: {threads: 3}\n")
    assert out.returncode == 0, out.stderr[-2000:]
    heavy = [j for j in jobs if j["rule"] in ("fit", "fixed_points", "geometry", "dynamics")]
    assert {j["rule"] for j in heavy} == {"fit", "fixed_points", "geometry", "dynamics"}
    for job in heavy:
        model = re.search(r"model=(\w+)", job["wildcards"]).group(1)
        gpu = re.search(r"gpu=(\d+)", job.get("resources", ""))
        assert (int(gpu.group(1)) if gpu else 0) == int(model in registry.gpu_models() and job["rule"] in
                                                        ("fit", "fixed_points")), job
        assert job["threads"] == "3" and "cortexfit --threads 3 " in job["shell"], job
        if job["rule"] != "fit":
            assert model in registry.rnn_families()
    fits = {re.search(r"model=(\w+)", j["wildcards"]).group(1) for j in heavy if j["rule"] == "fit"}
    assert fits == set(registry.names())
    assert all("--resume" in j["shell"] for j in heavy if j["rule"] == "fit")
    # CPU pinned: nobody asks for a GPU.
    out, jobs = _plan(tmp_path / "cpu", "fit: {device: cpu}\n")
    assert out.returncode == 0 and not [j for j in jobs if "gpu=1" in j.get("resources", "")]


def test_gradient_fits_are_scheduled_first(tmp_path):
    # the longest jobs start first, so no long fit is left to run alone at the end of `make demo`
    out, jobs = _plan(tmp_path, "")
    assert out.returncode == 0, out.stderr[-2000:]
    prio = {}
    for job in jobs:
        model = re.search(r"model=(\w+)", job.get("wildcards", ""))
        prio.setdefault(job["rule"], {})[model.group(1) if model else None] = int(job.get("priority", 0))
    assert {m: p for m, p in prio["fit"].items() if m in registry.gpu_models()} == dict.fromkeys(
        registry.gpu_models(), 2)
    assert set(prio["fit"]) == set(registry.names())
    assert {p for m, p in prio["fit"].items() if m not in registry.gpu_models()} == {1}
    assert all(p == 0 for rule, ps in prio.items() if rule != "fit" for p in ps.values())


def test_analyses_only_for_rnn_families(tmp_path):
    for baseline in registry.baselines():
        out, _ = _plan(tmp_path / baseline, "", f"results/rec1/fits/{baseline}/dynamics.nc")
        assert out.returncode != 0
        assert "MissingRuleException" in out.stderr or "No rule to produce" in out.stdout + out.stderr


def test_fit_options_file_is_an_input_and_presets_are_not(tmp_path):
    out, _ = _plan(tmp_path / "file", "models: [fa]\nfit: {config: opts.yaml}\n")
    assert out.returncode != 0 and "opts.yaml" in out.stdout + out.stderr
    (tmp_path / "file" / "opts.yaml").write_text("train: {max_epochs: 1}\n")
    out = _run(tmp_path / "file", "-n", "-p")
    fits = [j for j in _jobs(out.stdout + out.stderr) if j["rule"] == "fit"]
    assert out.returncode == 0 and "opts.yaml" in fits[0]["input"] and "--config opts.yaml" in fits[0]["shell"]
    out, jobs = _plan(tmp_path / "preset", "models: [fa]\nfit: {config: smoke}\n")
    fits = [j for j in jobs if j["rule"] == "fit"]
    assert out.returncode == 0 and "--config smoke" in fits[0]["shell"] and "smoke" not in fits[0]["input"]


def test_report_reads_only_configured_models(tmp_path):
    out, jobs = _plan(tmp_path, "models: [fa, rate]\n")
    assert out.returncode == 0, out.stderr[-2000:]
    reports = [j for j in jobs if j["rule"] in ("report", "report_index")]
    assert len(reports) == 2
    for job in reports:
        assert job["shell"].split(">")[0].split("--models")[1].split() == ["fa", "rate"]
    report = next(j for j in reports if j["rule"] == "report")
    for name in ("fits/fa/metrics.json", "fits/rate/history.csv", "fits/rate/fit.nc", "fits/rate/dynamics.nc"):
        assert name in report["input"]


def test_figures_rule_declares_every_figure(tmp_path):
    from cortexfit.figures import names

    out, jobs = _plan(tmp_path, "", "figures_all")
    assert out.returncode == 0, out.stderr[-2000:]
    fig = next(j for j in jobs if j["rule"] == "figures")
    for name in names():
        assert f"results/figures/{name}.json" in fig["output"] and f"results/figures/{name}.png" in fig["output"]
    assert "results/figures/index.html" in fig["output"] and "log" in fig


def test_profile_keeps_rerun_incomplete():
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "default" / "profile.yaml").read_text())
    assert profile["rerun-incomplete"] is True


@pytest.mark.slow
def test_dot_test_config_end_to_end(tmp_path):
    """The `.test` configuration (one small simulated recording, one RNN, every analysis, the reports), run as
    `snakemake --cores 2` in a copy of the workflow; then the README's commands that need results."""
    for name in ("Snakefile", "workflow"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / name)
    shutil.copytree(ROOT / ".test" / "config", tmp_path / "config")
    cfg = yaml.safe_load((tmp_path / "config" / "config.yaml").read_text())
    (model,) = cfg["models"]
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    print(f".test workflow: {time.perf_counter() - t0:.0f} s")
    res = tmp_path / "results" / "sim_reach"
    from cortexfit.core import convention

    act = convention.read_dataset(res / "activity.nc", "activity")
    assert act.sizes["trial"] == cfg["simulate"]["n_trials"]
    metrics = json.loads((res / "fits" / model / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["epochs"] >= 1
    for key in ("co_bps", "fp_bps", "vel_r2", "psth_r2"):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), (key, metrics[key])
    for kind in ("fixed_points", "geometry", "dynamics"):
        convention.read_dataset(res / "fits" / model / f"{kind}.nc", kind)
    from cortexfit.analysis.truth import ALL_KEYS

    truth = json.loads((res / "fits" / model / "truth.json").read_text())  # the ground-truth comparison
    assert set(ALL_KEYS) <= set(truth) and truth["task"] == "reach" and truth["rotation_freq_hz_true"] == 2.0
    assert truth["n_trials"] == cfg["simulate"]["n_trials"] and truth["n_bins"] == 40 * truth["n_trials"]
    assert all(isinstance(truth[k], float) for k in ("rate_r2", "state_r2", "cycle_r2", "dsa_to_teacher"))
    page = (res / "report.html").read_text()
    assert model in page and "could not be drawn" not in page and "8. Ground truth" in page
    assert "sim_reach" in (tmp_path / "results" / "index.html").read_text()
    for log in ("fit_" + model, "fixed_points_" + model, "geometry_" + model, "dynamics_" + model, "truth_" + model,
                "report"):
        assert (tmp_path / "results" / "logs" / "sim_reach" / f"{log}.log").is_file()
    again = _run(tmp_path, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # The README's commands that read a finished run (`snakemake --report report.zip`), as written.
    from test_readme import ENV, readme_commands

    for cmd in [c for c in readme_commands() if c.needs_results]:
        done = subprocess.run(["bash", "-c", cmd.text], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, f"`{cmd.text}`: {done.stderr[-3000:]}"
    if (tmp_path / "report.zip").exists():
        import zipfile

        names = zipfile.ZipFile(tmp_path / "report.zip").namelist()
        assert any(n.endswith("metrics.json") for n in names) and any(n.endswith("report.html") for n in names)
    # Editing the fit options file re-runs the fit (and what depends on it).
    opts = tmp_path / cfg["fit"]["config"]
    opts.write_text(opts.read_text() + "# edited\n")
    rerun = _jobs(_run(tmp_path, "-n").stdout)
    assert "fit" in {j["rule"] for j in rerun}


def test_truth_rule_for_simulated_datasets_and_rnn_families(tmp_path):
    """`truth` jobs: every RNN family of a simulated dataset (not baselines, not recorded data), in `rule all`
    and among the report's inputs; the flip-flop's teacher fixed points are passed along."""
    sheet = HEADER + ("sim_ff\tdata/simulated/flipflop.nwb\tflipflop\tstart_time\t\t\t5\telectrodes\n"
                      "rec1\trec1.nwb\t\tstart_time\t0\t100\t5\telectrodes\n")
    work, jobs = _plan_sheet(tmp_path, sheet, "models: [fa, rate, lstm]\n", "rec1.nwb")
    truth = [j for j in jobs if j["rule"] == "truth"]
    assert sorted(re.search(r"model=(\w+)", j["wildcards"]).group(1) for j in truth) == ["lstm", "rate"]
    for job in truth:
        assert "dataset=sim_ff" in job["wildcards"] and "data/simulated/flipflop.truth.nc" in job["input"]
        assert "fixed_points.nc" in job["input"] and "teacher_fixed_points.nc" in job["input"]
        assert "--teacher-fixed-points results/sim_ff/teacher_fixed_points.nc" in job["shell"]
        assert "--activity results/sim_ff/activity.nc" in job["shell"] and "log" in job and "benchmark" in job
    report = next(j for j in jobs if j["rule"] == "report" and "sim_ff" in j["wildcards"])
    assert "fits/rate/truth.json" in report["input"] and "fits/lstm/truth.json" in report["input"]
    assert "truth.json" not in next(j for j in jobs if j["rule"] == "report" and "rec1" in j["wildcards"])["input"]
    for target in ("results/rec1/fits/rate/truth.json", "results/sim_ff/fits/fa/truth.json"):
        assert _run(work, "-n", target).returncode != 0


GROUP_HEADER = "id\tnwb\tsimulate\talign\tbin_ms\tareas\tgroup\n"


def test_group_fits_join_sessions_and_analyse_each_session(tmp_path):
    """Datasets sharing a `group`: one joint and one continual fit per method and gradient-trained family, each
    session's folder analysed and compared with its truth, a group report; baselines and ESN are not grouped."""
    sheet = GROUP_HEADER + "".join(
        f"ff_s{k}\tdata/simulated/flipflop_session{k}_units40.nwb\tflipflop\tstart_time\t5\telectrodes\tff3\n"
        for k in (1, 2)) + "rec1\trec1.nwb\t\tstart_time\t5\telectrodes\t\n"
    _, jobs = _plan_sheet(tmp_path, sheet, "models: [fa, esn, rate]\nfit: {continual: {method: [none, ewc]}}\n",
                          "rec1.nwb")
    joint = [j for j in jobs if j["rule"] == "fit_group_joint_ff3"]
    cont = [j for j in jobs if j["rule"] == "fit_group_continual_ff3"]
    assert len(joint) == 1 and "model=rate" in joint[0]["wildcards"]
    assert sorted(re.search(r"method=(\w+)", j["wildcards"]).group(1) for j in cont) == ["ewc", "none"]
    shell = joint[0]["shell"]
    assert "fit-group results/ff_s1/activity.nc results/ff_s2/activity.nc --out results/groups/ff3/joint/rate" in shell
    assert "--names ff_s1 ff_s2" in shell and "--truth data/simulated/flipflop_session1_units40.truth.nc" in shell
    ewc = next(j for j in cont if "method=ewc" in j["wildcards"])
    assert "--strategy continual --method ewc --ewc-lambda 100" in ewc["shell"]
    truth = [j for j in jobs if j["rule"] == "group_truth"]
    assert len(truth) == 3 * 2  # (joint, none, ewc) x 2 sessions
    one = next(j for j in truth if "strategy=continual-ewc" in j["wildcards"] and "session=ff_s2" in j["wildcards"])
    assert "data/simulated/flipflop_session2_units40.truth.nc" in one["input"]
    assert "results/groups/ff3/continual-ewc/rate/sessions/ff_s2/fixed_points.nc" in one["input"]
    geometry = next(j for j in jobs if j["rule"] == "group_geometry" and "session=ff_s1" in j["wildcards"])
    assert "results/ff_s1/activity.nc" in geometry["input"]
    report = next(j for j in jobs if j["rule"] == "group_report")
    assert "results/groups/ff3/continual-none/rate/sessions/ff_s2/truth.json" in report["input"]
    assert "results/groups/ff3/report.html" in next(j for j in jobs if j["rule"] == "report_index")["input"]


@pytest.mark.parametrize(("column", "values", "needle"), [
    ("bin_ms", ("5", "10"), "group g mixes bin widths (a: 5.0, b: 10.0)"),
    ("align", ("start_time", "go_cue_time"), "group g mixes alignment events (a: start_time, b: go_cue_time)"),
])
def test_group_sessions_must_share_bins_and_alignment(tmp_path, column, values, needle):
    rows = {"bin_ms": ("5", "5"), "align": ("start_time", "start_time")}
    rows[column] = values
    sheet = GROUP_HEADER + "".join(f"{d}\t{d}.nwb\t\t{rows['align'][i]}\t{rows['bin_ms'][i]}\telectrodes\tg\n"
                                   for i, d in enumerate("ab"))
    out = _run(_workdir(tmp_path, sheet, "models: [rate]\n"), "-n")
    assert out.returncode != 0 and needle in out.stdout + out.stderr


def test_a_group_of_one_is_fitted_on_its_own(tmp_path):
    sheet = GROUP_HEADER + "a\ta.nwb\t\tstart_time\t5\telectrodes\tsolo\n"
    _, jobs = _plan_sheet(tmp_path, sheet, "models: [vanilla]\n", "a.nwb")
    rules = [j["rule"] for j in jobs]
    assert "fit_group_joint_solo" in rules and "fit_group_continual_solo" not in rules


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_demo_limits_gpu_jobs_only_where_there_is_a_gpu():
    # without a CUDA device the GPU families' fits must not queue one at a time behind an imaginary card
    import torch

    out = subprocess.run(["make", "-n", "demo", f"BIN={Path(sys.executable).parent}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    line = next(x for x in out.stdout.splitlines() if "snakemake --cores" in x)
    n = torch.cuda.device_count()
    assert ("--resources gpu=" in line) == (n > 0), line
    assert not n or f"--resources gpu={n}" in line
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "default" / "profile.yaml").read_text())
    assert "gpu" not in str(profile.get("resources", "")), "the profile must not cap the gpu resource itself"
