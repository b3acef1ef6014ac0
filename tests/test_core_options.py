"""Tests of cortexfit.core.options: the one mapping -> dataclass parser."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from cortexfit.core.errors import ConfigError
from cortexfit.core.options import parse_options, type_ok


@dataclasses.dataclass(frozen=True, kw_only=True)
class Opts:
    lr: float = 0.1
    steps: int = 3
    act: Literal["tanh", "relu"] = "tanh"
    sizes: tuple = (1, 2)
    limit: int | None = None

    def __post_init__(self):
        if self.steps < 1:
            raise ConfigError("steps must be >= 1")


def test_widening_lists_and_defaults():
    o = parse_options(Opts, {"lr": 1, "sizes": [4, 5], "limit": None}, where="s")
    assert o == Opts(lr=1.0, sizes=(4, 5)) and isinstance(o.lr, float)
    assert parse_options(Opts, None, where="s") == Opts()


@pytest.mark.parametrize("values, match", [
    ({"epochs": 1, "zz": 2}, r"^s: unknown option\(s\) epochs, zz; valid options: act, limit, lr, sizes, steps$"),
    ({"steps": True}, r"^s: steps=True has the wrong type \(expected int\)$"),
    ({"act": "gelu"}, r"^s: act='gelu' has the wrong type"),
    ({"lr": float("inf")}, r"^s: lr must be finite"),
    ({"steps": 0}, r"^s: steps must be >= 1$"),
    ([1, 2], r"^s: must be a mapping of options, got list$"),
])
def test_one_line_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        parse_options(Opts, values, where="s")


def test_type_ok_is_strict_about_bool():
    assert not type_ok(True, float) and not type_ok(1.5, int) and type_ok(2, float) and type_ok(None, int | None)
