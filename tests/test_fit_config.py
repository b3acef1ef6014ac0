"""Tests of cortexfit.fit.config: sections, presets and one-line errors."""

from __future__ import annotations

import pytest

from cortexfit import fit as fit_stage
from cortexfit.core.errors import ConfigError
from cortexfit.fit.config import FitConfig, load_config
from test_fit_run import _assert_one_line_error, fit_cli


def test_unknown_config_key_lists_valid_ones(osc_activity, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 3\n")
    assert fit_cli(osc_activity, tmp_path / "o", "--model", "lstm", "--config", str(cfg)) == 1
    _assert_one_line_error(capsys, f"{cfg}: train: unknown option(s) epochs", "max_epochs")
    assert not (tmp_path / "o").exists()
    with pytest.raises(ConfigError, match="valid options"):
        fit_stage.run(osc_activity, tmp_path / "o", model="rate", config={"model": {"family_options": {"gain": 1.0}}})
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("config, match", [
    ({"train": {"lr": "fast"}}, r"config: train: lr='fast' has the wrong type \(expected float\)"),
    ({"train": {"max_epochs": -1}}, "config: train: max_epochs must be >= 0"),
    ({"forecast": {"schedule": "exponential", "k": 2.0}}, "config: forecast: k must be in"),
    ({"optim": {}}, "unknown section 'optim'"),
    ({"train": {"lr": float("nan")}}, "config: train: lr must be finite"),
])
def test_bad_values_are_one_line_config_errors(config, match):
    with pytest.raises(ConfigError, match=match):
        load_config(config)


def test_file_preset_and_roundtrip(tmp_path):
    path = tmp_path / "fit.yaml"
    path.write_text("train:\n  max_epochs: 7\nesn:\n  alphas: [1, 10]\n")
    cfg = load_config(path)
    assert cfg.train.max_epochs == 7 and cfg.esn.alphas == (1.0, 10.0)
    assert load_config(cfg.to_dict()) == cfg
    assert load_config("smoke").train.max_epochs == 3 and load_config(None) == FitConfig()
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML/JSON"):
        load_config(bad)


def test_task_input_options():
    m = load_config({"model": {"event_inputs": ["go_cue_time", "go_cue_time"], "condition_inputs": True}}).model
    assert m.event_inputs == ("go_cue_time",) and m.condition_inputs and m.inputs == "auto"
    d = FitConfig().model
    assert d.event_inputs == () and d.condition_inputs is False  # no privileged or event inputs unless asked
    with pytest.raises(ConfigError, match="event_inputs"):
        load_config({"model": {"event_inputs": [""]}})
    with pytest.raises(ConfigError, match="condition_inputs"):
        load_config({"model": {"condition_inputs": "yes"}})
