"""Tests for cortexfit.ingest.areas: the ``--areas`` rules that give units their brain area."""

from __future__ import annotations

import numpy as np
import pytest

from cortexfit.core.errors import ConfigError, IngestError
from cortexfit.ingest.areas import parse_areas, unit_areas
from cortexfit.ingest.nwb import Units


def test_parse_areas():
    assert parse_areas("electrodes") == ("electrodes", None)
    assert parse_areas("column:region") == ("column", "region")
    for bad in ("foo", "column:", "unit-id:1xxx", "unit-id:1a=PMd", "unit-id:1x=PMd,"):
        with pytest.raises(ConfigError, match="areas"):
            parse_areas(bad)


def test_unit_areas_rules():
    u = Units(np.array([1001, 2002, 3003]), np.zeros(0), np.zeros(4, int), None,
              {"region": np.array(["a", "b", "c"])}, None, np.array(["PMd", "", "M1"]))
    assert unit_areas(u, "electrodes", "f").tolist() == ["PMd", "unknown", "M1"]
    assert unit_areas(u, "column:region", "f").tolist() == ["a", "b", "c"]
    assert unit_areas(u, "unit-id:1xxx=PMd,xxxx=M1", "f").tolist() == ["PMd", "M1", "M1"]
    with pytest.raises(IngestError, match=r"unit id\(s\) 3003$"):
        unit_areas(u, "unit-id:1xxx=PMd,2xxx=M1", "f")
    with pytest.raises(IngestError, match=r"'nope' not in the units table \(columns: region\)"):
        unit_areas(u, "column:nope", "f")

