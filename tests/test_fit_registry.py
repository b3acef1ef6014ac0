"""Tests of cortexfit.fit.registry: one table feeds the CLI, the workflow schema and the fit dispatch."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cortexfit.cli import build_parser
from cortexfit.core.errors import ConfigError
from cortexfit.fit import registry
from cortexfit.models import families

ROOT = Path(__file__).resolve().parents[1]


def test_every_entry_resolves_to_a_fit_function_per_mode():
    for name in registry.names():
        entry = registry.get(name)
        assert entry.modes and set(entry.modes) <= set(registry.MODES)
        for mode in entry.modes:
            assert callable(entry.fitter(mode))
    with pytest.raises(ConfigError, match="has no forecast mode"):
        registry.get("fa").fitter("forecast")
    with pytest.raises(ConfigError, match="valid models: esn, fa"):
        registry.get("gru")


def test_rnn_families_are_the_model_families():
    assert registry.rnn_families() == families()
    assert set(registry.gradient_trained()) < set(registry.rnn_families())
    assert set(registry.gpu_models()) == set(registry.gradient_trained())
    assert not set(registry.baselines()) & set(registry.rnn_families())


def test_cli_choices_come_from_the_registry():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["fit"]
    model = next(a for a in sub._actions if a.dest == "model")
    mode = next(a for a in sub._actions if a.dest == "mode")
    assert list(model.choices) == registry.names() and tuple(mode.choices) == registry.MODES


def test_config_schema_enum_matches_the_registry():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    enum = schema["properties"]["models"]["items"]["enum"]
    assert sorted(enum) == registry.names()
