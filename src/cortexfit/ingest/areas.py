"""Brain areas of units: the ``--areas`` option of ``cortexfit ingest``.

Three rules: ``electrodes`` (the location of each unit's first electrode, else of its electrode group),
``column:NAME`` (a column of the units table) and ``unit-id:PATTERN=AREA,...`` (unit ids matched digit by
digit, ``x`` for any digit; the first matching pattern wins).

Examples
--------
>>> parse_areas("column:region")
('column', 'region')
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from cortexfit.core.errors import ConfigError, IngestError
from cortexfit.ingest.nwb import Units

log = logging.getLogger("cortexfit.ingest")

__all__ = ["parse_areas", "unit_areas"]


def parse_areas(spec: str) -> tuple[str, str | list[tuple[str, str]] | None]:
    """Parse the ``areas`` option into ``("electrodes", None)``, ``("column", NAME)`` or ``("unit-id", rules)``.

    >>> parse_areas("unit-id:1xxx=PMd,2xxx=M1")
    ('unit-id', [('1xxx', 'PMd'), ('2xxx', 'M1')])
    """
    if spec == "electrodes":
        return "electrodes", None
    if spec.startswith("column:") and spec[7:].strip():
        return "column", spec[7:].strip()
    if spec.startswith("unit-id:"):
        rules: list[tuple[str, str]] = []
        for part in spec[8:].split(","):
            pat, sep, area = part.partition("=")
            pat, area = pat.strip().lower(), area.strip()
            if not sep or not area or not re.fullmatch(r"[0-9x]+", pat):
                raise ConfigError(f"areas rule {spec!r}: bad part {part!r} (expected e.g. 1xxx=PMd)")
            rules.append((pat, area))
        return "unit-id", rules
    raise ConfigError(
        f"areas option {spec!r} not understood (use 'electrodes', 'column:NAME' or 'unit-id:1xxx=PMd,2xxx=M1')"
    )


def unit_areas(units: Units, spec: str, path: str | Path) -> np.ndarray:
    """Brain area per unit according to the ``areas`` option (see :func:`parse_areas`).

    >>> u = Units(np.array([1001, 2002]), np.zeros(0), np.zeros(3, int), None, {}, None, np.array(["", ""]))
    >>> unit_areas(u, "unit-id:1xxx=PMd,2xxx=M1", "f.nwb").tolist()
    ['PMd', 'M1']
    """
    how, arg = parse_areas(spec)
    if how == "electrodes":
        area = np.where(units.electrode_area == "", "unknown", units.electrode_area)
        if (area == "unknown").any():
            log.warning("%s: %d unit(s) have no electrode or group location: area 'unknown'",
                        path, int((area == "unknown").sum()))
        return area.astype(str)
    if how == "column":
        if arg not in units.columns:
            raise IngestError(f"{path}: areas column '{arg}' not in the units table "
                              f"(columns: {', '.join(units.columns) or 'none'})")
        return np.asarray(units.columns[arg]).astype(str)
    assert isinstance(arg, list)  # how == "unit-id": the rules
    out = np.full(len(units.ids), "", dtype=object)
    for pat, name in arg:
        rx = re.compile(pat.replace("x", "[0-9]") + r"\Z")
        hit = np.array([out[i] == "" and rx.match(str(int(uid))) is not None for i, uid in enumerate(units.ids)])
        out[hit] = name
    missing = units.ids[out == ""]
    if len(missing):
        shown = ", ".join(map(str, missing[:20])) + (f" ... ({len(missing) - 20} more)" if len(missing) > 20 else "")
        raise IngestError(f"{path}: areas rule {spec!r} matches no pattern for unit id(s) {shown}")
    return out.astype(str)
