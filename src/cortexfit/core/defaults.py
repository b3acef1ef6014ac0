"""Defaults that several layers show the user: one place each (CLI, library signatures, workflow schemas).

The workflow's datasets-sheet schema repeats them for Snakemake's validator; a test checks they agree.

Examples
--------
>>> BIN_MS, SIMULATED_TASKS
(5.0, ('reach', 'flipflop'))
"""

from __future__ import annotations

#: Ingest: bin width (ms), trials column to align to, trials table, area rule, window of sessions without trials.
BIN_MS = 5.0
ALIGN = "start_time"
TRIALS_TABLE = "trials"
AREAS = "electrodes"
SESSION_WINDOW_MS = 1000.0

#: Simulated recordings with ground truth (``cortexfit simulate TASK``); :data:`cortexfit.simulate.TASKS` maps them.
SIMULATED_TASKS = ("reach", "flipflop")
