"""The Snakemake workflow: config and sheet validation, the job graph, and an end-to-end ingest run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]


def _workdir(tmp_path: Path, sheet: str, extra_config: str = "") -> Path:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "datasets.tsv").write_text(sheet)
    (tmp_path / "config" / "config.yaml").write_text("datasets: config/datasets.tsv\n" + extra_config)
    return tmp_path


def _run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, "-d", str(workdir), "--cores", "1", *args],
                          capture_output=True, text=True, timeout=600)


HEADER = "id\tnwb\tsimulate\talign\twindow_start_ms\twindow_stop_ms\tbin_ms\tareas\n"


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
    pytest.importorskip("cortexfit.simulate")
    pytest.importorskip("cortexfit.ingest")
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
