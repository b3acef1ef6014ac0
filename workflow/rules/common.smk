# Helpers shared by the workflow files: config and datasets-sheet validation, paths, and the default targets.
# Which models exist and which have dynamics / want a GPU comes from the fit registry (cortexfit.fit.registry),
# the same table the `cortexfit fit --model` choices come from; nothing here copies a model list.
import os
import re
import shlex
import sys
from pathlib import Path

import pandas as pd
import yaml
from snakemake.utils import validate

from cortexfit.fit import registry
from cortexfit.ingest import dandi
from cortexfit.simulate.recording import teacher_dir, truth_path
from cortexfit.fit.config import PRESETS as FIT_PRESETS

# Rules call `cortexfit ...`; the folder of the interpreter running Snakemake goes first on the jobs' PATH, so
# `.venv/bin/snakemake` finds `.venv/bin/cortexfit` without an activated venv. (A prefix replaces Snakemake's
# default one, which is `set -euo pipefail;`.)
shell.prefix(f"set -euo pipefail; export PATH={shlex.quote(os.path.dirname(sys.executable))}:\"$PATH\"; ")

# ------------------------------------------------------------------------------------------------ config
CONFIG_SCHEMA = Path(workflow.current_basedir.get_path_or_uri(secret_free=True)) / ".." / "schemas" / "config.schema.yaml"

_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}


def _coerce(value, schema):
    """Values as users type them on `--config` (strings) -> the schema's types; anything else is left as is,
    for the validator to report. Snakemake passes `report=false` as the string 'false', and nested values of
    `--config fit="{seed: 1}"` as strings."""
    kind = schema.get("type")
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: _coerce(v, props[k]) if k in props else v for k, v in value.items()}
    if kind == "array":
        if value is None:
            return []
        if isinstance(value, str):  # models=rate,lstm
            value = [v for v in re.split(r"[,\s]+", value.strip("[] ")) if v]
        if isinstance(value, list):
            return [_coerce(v, schema.get("items", {})) for v in value]
        return value
    if kind == "boolean":
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
        return value
    if isinstance(value, str) and (kind == "integer" or "integer" in (kind or [])):
        return int(value) if re.fullmatch(r"[+-]?\d+", value.strip()) else value
    if isinstance(value, str) and kind == "number":
        try:
            return float(value)
        except ValueError:
            return value
    return value


def coerce_config(cfg, schema_path=CONFIG_SCHEMA):
    """The config with string spellings of booleans and numbers converted (see `_coerce`), in place."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    fixed = _coerce(dict(cfg), schema)
    cfg.clear()
    cfg.update(fixed)
    return cfg


coerce_config(config)
validate(config, schema="../schemas/config.schema.yaml", set_default=True)

RESULTS = config["results"].rstrip("/")
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"


# -------------------------------------------------------------------------------------------- datasets
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
    _localise_dandi(frame, path)
    return frame


# DANDI assets named in the sheet (`dandi:<dandiset>[@<version>]/<asset path>`): local path -> the spec as
# written. Their `nwb` cell becomes the local copy data/dandi/<dandiset>/<asset path>, which the rule
# dandi_download (workflow/rules/dandi.smk, `cortexfit fetch-dandi`) produces; ingest reads it like any file.
DANDI_ASSETS = {}


def _localise_dandi(frame, path):
    for i, (dataset, nwb) in enumerate(frame["nwb"].items(), start=2):
        if not dandi.is_spec(nwb):
            continue
        try:
            spec = dandi.parse_spec(nwb)
        except dandi.DandiError as exc:
            raise WorkflowError(f"{path}: line {i}: {exc}") from None
        local = dandi.local_path(spec)
        other = DANDI_ASSETS.setdefault(local, str(spec))
        if other != str(spec):
            raise WorkflowError(f"{path}: line {i}: {nwb} and {other} would both be downloaded to {local}")
        frame.loc[dataset, "nwb"] = local


DATASETS = _read_sheet(config["datasets"])


def dandi_spec(wildcards):
    """The `dandi:` spec of the sheet behind a local path data/dandi/<dandiset>/<asset>."""
    return DANDI_ASSETS[f"{dandi.LOCAL_ROOT}/{wildcards.dandiset}/{wildcards.asset}"]


def regex_of(names):
    """A wildcard constraint matching exactly `names` (one that matches nothing when empty)."""
    return "|".join(map(re.escape, names)) if len(names) else "(?!x)x"


def dataset_row(wildcards):
    return DATASETS.loc[wildcards.dataset]


def nwb_path(wildcards):
    """The NWB file of a dataset (a simulated one is produced by the simulate step)."""
    return dataset_row(wildcards)["nwb"]


def simulate_args(wildcards=None):
    """Options of `cortexfit simulate` from the config's `simulate` block (seed, optional number of trials)."""
    opts = config["simulate"]
    args = ["--seed", opts["seed"]]
    if opts.get("n_trials") is not None:
        args += ["--n-trials", opts["n_trials"]]
    return " ".join(shlex.quote(str(a)) for a in args)


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
    inputs = row.get("inputs")  # task inputs beyond the file's stimulus/presentation series
    if pd.notna(inputs) and str(inputs).strip():
        args += ["--inputs", str(inputs).strip()]
    return " ".join(shlex.quote(str(a)) for a in args)


def activity_path(dataset):
    return f"{RESULTS}/{dataset}/activity.nc"


# ---------------------------------------------------------------------------------------------- models
MODELS = list(config["models"])
ANALYSES = list(config["analyses"])
RNN_FAMILIES = registry.rnn_families()  # models with dynamics: the only ones the analyses accept
GPU_MODELS = registry.gpu_models()  # models that ask for the `gpu` resource
FIT_FILES = ("fit.nc", "model.pt", "history.csv", "metrics.json")  # what a fit writes and the report reads
ANALYSIS_FILES = {"fixed_points": "fixed_points.nc", "geometry": "geometry.nc", "dynamics": "dynamics.nc"}


def fit_dir(dataset, model):
    return f"{RESULTS}/{dataset}/fits/{model}"


def fit_options_file():
    """The fit options file named by `fit: config:` as a list of inputs: [] for none or a preset such as
    `smoke` (a name, not a file), [path] otherwise, so editing that file re-runs the fits."""
    name = config["fit"]["config"]
    if not name or (name in FIT_PRESETS and not Path(name).exists()):
        return []
    return [name]


def fit_args(wildcards):
    """Options of `cortexfit fit` from the config's `fit:` block. `--resume` continues a killed fit from its
    checkpoint (checkpoint.pt, not a declared output, so Snakemake leaves it in place); cortexfit only
    resumes a checkpoint of the same data, model, options and seed, and starts afresh otherwise."""
    opts = config["fit"]
    args = ["--mode", opts["mode"], "--seed", opts["seed"], "--device", opts["device"], "--resume"]
    if opts["config"]:
        args += ["--config", opts["config"]]
    return " ".join(shlex.quote(str(a)) for a in args)


def gpu_request(wildcards):
    """1 for models that use a GPU (registry.gpu_models()) unless the config pins the CPU; 0 otherwise."""
    return int(wildcards.model in GPU_MODELS and config["fit"]["device"] != "cpu")


def fit_priority(wildcards):
    """Gradient-trained fits first (2), then the ESN and baselines (1), then analyses and reports (0).

    The gradient fits are the longest jobs: started first, they run side by side while the short
    analyses fill the other cores, instead of one of them starting last and running alone.
    """
    return 2 if wildcards.model in GPU_MODELS else 1


def analysis_outputs(dataset):
    """Analysis files of every fitted RNN family of a dataset."""
    return [f"{fit_dir(dataset, m)}/{ANALYSIS_FILES[a]}" for m in MODELS if m in RNN_FAMILIES for a in ANALYSES]


def fit_outputs(dataset):
    """Every file of every configured fit of a dataset."""
    return [f"{fit_dir(dataset, m)}/{f}" for m in MODELS for f in FIT_FILES]


def teacher_outputs(dataset):
    """Simulated flip-flop datasets also get the fixed points of their teacher network."""
    if DATASETS.loc[dataset].get("simulate") == "flipflop" and "fixed_points" in ANALYSES:
        return [f"{RESULTS}/{dataset}/teacher_fixed_points.nc"]
    return []


def truth_file(dataset):
    """The ground truth `cortexfit simulate` writes beside a simulated dataset's NWB file (None otherwise)."""
    task = DATASETS.loc[dataset].get("simulate")
    return str(truth_path(DATASETS.loc[dataset]["nwb"])) if isinstance(task, str) and task else None


TRUTH_DATASETS = [d for d in DATASETS.index if truth_file(d) is not None]  # datasets with a ground truth


def truth_outputs(dataset):
    """Ground-truth comparison (truth.json) of every fitted RNN family of a dataset with a truth file."""
    if truth_file(dataset) is None:
        return []
    return [f"{fit_dir(dataset, m)}/truth.json" for m in MODELS if m in RNN_FAMILIES]


def _truth_inputs(dataset, folder):
    """What `cortexfit truth` reads besides fit.nc for a fit folder of `dataset`: the truth, the activity, the
    folder's and the teacher's fixed points."""
    inputs = {"truth": truth_file(dataset), "activity": activity_path(dataset), "teacher": teacher_outputs(dataset)}
    if "fixed_points" in ANALYSES:
        inputs["fixed_points"] = f"{folder}/{ANALYSIS_FILES['fixed_points']}"
    return inputs


def truth_inputs(wildcards):
    """`_truth_inputs` of a dataset's own fit folder."""
    return _truth_inputs(wildcards.dataset, fit_dir(wildcards.dataset, wildcards.model))


def teacher_arg(wildcards, input):
    """`--teacher-fixed-points F` when the dataset's teacher fixed points are an input, else nothing."""
    return f"--teacher-fixed-points {shlex.quote(str(input.teacher))}" if input.teacher else ""


def dataset_outputs(wildcards):
    """Everything the report of one dataset reads."""
    d = wildcards.dataset
    return [activity_path(d)] + fit_outputs(d) + analysis_outputs(d) + teacher_outputs(d) + truth_outputs(d)


def report_models_arg(wildcards=None):
    """`--models` of `cortexfit report`: exactly the configured models, so stale fit folders are ignored.
    (With no models configured the option is left out: `--models` needs at least one name.)"""
    return " ".join(["--models"] + [shlex.quote(m) for m in MODELS]) if MODELS else ""


# ----------------------------------------------------------------------------------------------- groups
# Datasets sharing a `group` in the sheet are sessions of one task: besides their own fits, each gradient-trained
# family in `models:` is fitted to all of them with one generator (`cortexfit fit-group`), jointly and one after
# another with every method of config `fit: continual: method:` (workflow/rules/groups.smk).
def _groups(frame):
    groups = {}
    if "group" in frame.columns:
        for dataset, group in frame["group"].items():
            if isinstance(group, str) and group:
                groups.setdefault(group, []).append(dataset)
    for group, members in groups.items():  # what one generator cannot share, said at parse time
        for key, what in (("bin_ms", "bin widths"), ("align", "alignment events")):
            values = {d: frame.loc[d].get(key) for d in members}
            if len({str(v) for v in values.values()}) > 1:
                pairs = ", ".join(f"{d}: {v}" for d, v in values.items())
                raise WorkflowError(f"{config['datasets']}: group {group} mixes {what} ({pairs}); its sessions "
                                    "must share them")
    return groups


GROUPS = _groups(DATASETS)  # group -> dataset ids, in sheet order (the order of a continual fit)
GROUP_MODELS = [m for m in MODELS if m in registry.gradient_trained()]
_METHODS = config["fit"]["continual"]["method"]
CONTINUAL_METHODS = [_METHODS] if isinstance(_METHODS, str) else list(_METHODS)


def group_strategies(group):
    """`joint` and `continual-<method>` (a group of one session is only fitted jointly, i.e. on its own)."""
    if len(GROUPS[group]) < 2:
        return ["joint"]
    return ["joint"] + [f"continual-{m}" for m in CONTINUAL_METHODS]


def group_dir(group, strategy, model):
    return f"{RESULTS}/groups/{group}/{strategy}/{model}"


def group_truth_files(group):
    """The sessions' truth files when every session of the group has one (simulated), else []."""
    files = [truth_file(d) for d in GROUPS[group]]
    return files if all(files) else []


def group_outputs(group):
    """Everything the group report reads: each strategy's fit, and per session its analyses and truth."""
    out = []
    for strategy in group_strategies(group):
        for m in GROUP_MODELS:
            base = group_dir(group, strategy, m)
            out.append(f"{base}/metrics.json")
            for d in GROUPS[group]:
                out += [f"{base}/sessions/{d}/{ANALYSIS_FILES[a]}" for a in ANALYSES]
                out += [f"{base}/sessions/{d}/truth.json"] if group_truth_files(group) else []
    return out


def group_fit_session_files(group, strategy):
    """The fit files of every session folder a group fit writes (pattern with the `{model}` wildcard)."""
    base = f"{RESULTS}/groups/{group}/{strategy}/{{model}}"
    return [f"{base}/sessions/{d}/{f}" for d in GROUPS[group] for f in FIT_FILES]


def group_session_truth_inputs(wildcards):
    """`_truth_inputs` of a session's fit folder inside a group fit."""
    base = group_dir(wildcards.group, wildcards.strategy, wildcards.model)
    return _truth_inputs(wildcards.session, f"{base}/sessions/{wildcards.session}")


def group_fit_args(wildcards):
    """Options of `cortexfit fit-group` from the config's `fit:` block and the strategy wildcard."""
    opts = config["fit"]
    args = ["--seed", opts["seed"], "--device", opts["device"]]
    if opts["config"]:
        args += ["--config", opts["config"]]
    if wildcards.get("method"):
        c = opts["continual"]
        args += ["--strategy", "continual", "--method", wildcards.method, "--ewc-lambda", c["ewc_lambda"],
                 "--replay-fraction", c["replay_fraction"]]
    return " ".join(shlex.quote(str(a)) for a in args)


def all_targets():
    """What the default target builds: activity per dataset, then fits, analyses and reports as configured."""
    targets = [activity_path(d) for d in DATASETS.index]
    for d in DATASETS.index:
        targets += [f"{fit_dir(d, m)}/metrics.json" for m in MODELS]
        targets += analysis_outputs(d) + teacher_outputs(d) + truth_outputs(d)
    for g in GROUPS:
        targets += group_outputs(g)
    if config["report"]:
        targets += [f"{RESULTS}/{d}/report.html" for d in DATASETS.index] + [f"{RESULTS}/index.html"]
        targets += [f"{RESULTS}/groups/{g}/report.html" for g in GROUPS if GROUP_MODELS]
    return targets
