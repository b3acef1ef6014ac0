"""Exceptions a user can act on.

Every stage raises one subclass of :class:`CortexfitError`; the CLI catches the base class once and
prints ``cortexfit <stage>: error: <message>`` as one line with a non-zero exit code.  Messages name the
file and the problem, e.g. ``data/x.nwb: trials 3, 7 have stop_time < start_time``.
"""

from __future__ import annotations


class CortexfitError(Exception):
    """Base class for errors caused by bad input or configuration (not bugs)."""


class ConfigError(CortexfitError):
    """A configuration file or option is invalid."""


class SchemaError(CortexfitError):
    """A dataset does not follow the cortexfit xarray convention (see :mod:`cortexfit.core.convention`)."""


class IngestError(CortexfitError):
    """An NWB file cannot be turned into an activity dataset."""


class SimulateError(CortexfitError):
    """A simulated recording cannot be produced with the given options."""


class FitError(CortexfitError):
    """A model cannot be fitted to a dataset with the given options."""


class AnalysisError(CortexfitError):
    """A fitted model cannot be analysed (fixed points, geometry, dynamics)."""


class ReportError(CortexfitError):
    """A report or figure cannot be produced."""
