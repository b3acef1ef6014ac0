"""Tests of cortexfit.core.defaults: the CLI, the library and the workflow schema show the same defaults."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml

from cortexfit import ingest, simulate
from cortexfit.cli import build_parser
from cortexfit.core import defaults

ROOT = Path(__file__).resolve().parents[1]


def test_datasets_schema_and_simulate_agree_with_the_defaults():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "datasets.schema.yaml").read_text())["properties"]
    assert float(schema["bin_ms"]["default"]) == defaults.BIN_MS
    assert schema["align"]["default"] == defaults.ALIGN
    assert schema["trials_table"]["default"] == defaults.TRIALS_TABLE
    assert schema["areas"]["default"] == defaults.AREAS
    assert schema["simulate"]["enum"] == ["", *defaults.SIMULATED_TASKS]
    assert tuple(simulate.TASKS) == defaults.SIMULATED_TASKS


def test_cli_and_library_use_the_same_defaults():
    args = build_parser().parse_args(["ingest", "in.nwb", "out.nc"])
    run_defaults = {k: p.default for k, p in inspect.signature(ingest.run).parameters.items()
                    if p.default is not inspect.Parameter.empty}
    for key in ("bin_ms", "align", "trials_table", "areas", "session_window_ms"):
        assert getattr(args, key) == run_defaults[key] == getattr(ingest.IngestConfig(), key)
