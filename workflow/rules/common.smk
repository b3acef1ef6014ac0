# Helpers shared by all rule files: config and datasets-sheet validation, paths, and the targets of `rule all`.
import re
import shlex
import sys
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

# `python -m cortexfit` with the interpreter running Snakemake, so rules work without an activated venv.
CORTEXFIT = f"{shlex.quote(sys.executable)} -m cortexfit"

validate(config, schema="../schemas/config.schema.yaml", set_default=True)

RESULTS = config["results"].rstrip("/")
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"


def _read_sheet(path):
    if not Path(path).is_file():
        raise WorkflowError(f"{path}: datasets sheet not found (config key 'datasets')")
    sheet = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    sheet.columns = [c.strip() for c in sheet.columns]
    if "id" not in sheet.columns or "nwb" not in sheet.columns:
        raise WorkflowError(f"{path}: the datasets sheet needs the columns 'id' and 'nwb'")
    rows = []
    for i, rec in enumerate(sheet.to_dict("records"), start=2):
        row = {k: v.strip() for k, v in rec.items() if v.strip() != ""}
        for key in ("window_start_ms", "window_stop_ms", "bin_ms"):
            if key in row:
                try:
                    row[key] = float(row[key])
                except ValueError:
                    raise WorkflowError(f"{path}: line {i}: {key} = {row[key]!r} is not a number") from None
        rows.append(row)
    if not rows:
        raise WorkflowError(f"{path}: the datasets sheet has no rows")
    frame = pd.DataFrame(rows)
    validate(frame, schema="../schemas/datasets.schema.yaml", set_default=True)
    frame = frame.set_index("id", drop=False)
    dup = frame.index[frame.index.duplicated()].unique().tolist()
    if dup:
        raise WorkflowError(f"{path}: duplicate dataset ids {dup}")
    return frame


DATASETS = _read_sheet(config["datasets"])


wildcard_constraints:
    dataset="|".join(map(re.escape, DATASETS.index)) if len(DATASETS) else "NONE",
    task="reach|flipflop",


def dataset_row(wildcards):
    return DATASETS.loc[wildcards.dataset]


def nwb_path(wildcards):
    """The NWB file of a dataset (a simulated one is produced by rule `simulate`)."""
    return dataset_row(wildcards)["nwb"]


def ingest_args(wildcards):
    """Command-line options of `cortexfit ingest` from the dataset's sheet row."""
    row = dataset_row(wildcards)
    args = [
        "--bin-ms", row["bin_ms"],
        "--align", row["align"],
        "--trials-table", row["trials_table"],
        "--areas", row["areas"],
    ]
    start, stop = row.get("window_start_ms"), row.get("window_stop_ms")
    if pd.notna(start) and pd.notna(stop):
        args += ["--window-ms", start, stop]
    return " ".join(shlex.quote(str(a)) for a in args)


def activity_path(dataset):
    return f"{RESULTS}/{dataset}/activity.nc"


RNN_FAMILIES = ("rate", "vanilla", "lstm", "esn")
MODELS = list(config["models"])
ANALYSES = list(config["analyses"])


def fit_dir(dataset, model):
    return f"{RESULTS}/{dataset}/fits/{model}"


def fit_args(wildcards):
    """Options of `cortexfit fit` from the config's `fit:` block."""
    opts = config["fit"]
    args = ["--mode", opts["mode"], "--seed", opts["seed"], "--device", opts["device"]]
    if opts["config"]:
        args += ["--config", opts["config"]]
    return " ".join(shlex.quote(str(a)) for a in args)


def analysis_outputs(dataset):
    """Analysis files of every fitted RNN family of a dataset."""
    names = {"fixed_points": "fixed_points.nc", "geometry": "geometry.nc", "dynamics": "dynamics.nc"}
    return [
        f"{fit_dir(dataset, m)}/{names[a]}" for m in MODELS if m in RNN_FAMILIES for a in ANALYSES
    ]


def dataset_outputs(wildcards):
    """Everything the report of one dataset reads."""
    d = wildcards.dataset
    return (
        [activity_path(d)]
        + [f"{fit_dir(d, m)}/metrics.json" for m in MODELS]
        + analysis_outputs(d)
        + teacher_outputs(d)
    )


def teacher_outputs(dataset):
    """Simulated flip-flop datasets also get the fixed points of their teacher network."""
    if DATASETS.loc[dataset].get("simulate") == "flipflop" and "fixed_points" in ANALYSES:
        return [f"{RESULTS}/{dataset}/teacher_fixed_points.nc"]
    return []


def all_targets():
    """What `rule all` builds: activity per dataset, then fits, analyses and reports as configured."""
    targets = [activity_path(d) for d in DATASETS.index]
    for d in DATASETS.index:
        targets += [f"{fit_dir(d, m)}/metrics.json" for m in MODELS]
        targets += analysis_outputs(d) + teacher_outputs(d)
    if config["report"]:
        targets += [f"{RESULTS}/{d}/report.html" for d in DATASETS.index] + [f"{RESULTS}/index.html"]
    return targets
