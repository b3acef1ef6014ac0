"""The ``simulate`` stage: recordings with known ground truth, written as NWB.

``cortexfit simulate {reach,flipflop} OUT.nwb [--seed N] [--n-trials N] [--session K] [--n-units N]`` calls
:func:`run`, which writes

* ``OUT.nwb``: electrodes (location = area, one electrode group per area), units (``spike_times``,
  ``obs_intervals`` = the whole session, ``electrodes``, ``area``), a trials table, behaviour in
  ``processing['behavior']`` and the task inputs in ``stimulus/presentation`` (flipflop: ``input_pulses``,
  the teacher's 3 input channels; reach: ``target_position`` (x, y) while the target is shown and
  ``go_cue``, 1 during the go-cue step), which ``cortexfit ingest`` reads into the ``stimulus`` variable;
* ``OUT.truth.nc``: the ground truth, kind ``truth`` (``rates`` in Hz and ``latents`` per trial, time bin
  and unit/latent; time = bin centres relative to the trial's alignment event, attrs ``align_event``,
  ``window_start_s``, ``window_stop_s`` and the task's parameters).  reach adds ``A`` (rot_out, rot_in) of
  ``dx/dt = A x`` in 1/s, ``readout``, ``log_baseline``, ``prep_states``, the task ``inputs`` (trial, time,
  channel) as written to ``stimulus/presentation`` and attrs ``rotation_freq_hz`` (the fastest plane) and
  ``plane_freqs_hz``; flipflop adds ``inputs``/``targets`` (trial, time, channel), the
  teacher ``W``, ``U``, ``b``, ``readout_weight``, ``readout_bias``, its 8 stable ``fixed_points``
  (fixed_point, latent; ordered by readout-sign corner), the ``saddle_points`` found and ``unit_readout``;
* flipflop only: ``OUT.teacher/model.pt``, the teacher RNN in the project's model format (family
  ``vanilla``, tanh), so ``cortexfit fixed-points OUT.teacher`` runs on it.

Sessions (issue 13, joint fits across sessions): ``session=K`` (``--session K``, ``K >= 1``) writes session
``K`` of the system of ``seed`` -- flipflop: the teacher trained from ``seed`` exactly as without a session
(``W``, ``U``, ``b``, readout, fixed points); reach: the same ``A``, planes and per-condition ``prep_states`` --
with its own units (``unit_readout`` / ``readout`` and target rates), trials, task inputs and spikes, all from a
generator seeded by ``(seed, task constant, K)``.  ``latents`` stay in the system's space (the teacher's hidden
state; reach's planes), so the truths of a seed's sessions are comparable.  The truth then has the attr
``session`` = K; without a session it has none and the output is the seed's single recording, bit for bit as
before sessions existed.  ``n_units`` (``--n-units N``) sets the number of units (attr ``n_units``).  The NWB
file's ``session_id`` is ``TASK-seedS`` or ``TASK-seedS-sessionK``; flipflop saves the (same) teacher beside
every session.  The workflow writes sessions as ``data/simulated/{task}_session{K}_units{N}.nwb``.

The modules: :mod:`~cortexfit.simulate.recording` (the shared recording model, NWB and teacher writing),
:mod:`~cortexfit.simulate.reach` and :mod:`~cortexfit.simulate.flipflop` (one per task).  Every output appears
only once complete (temp file in the same folder + ``os.replace``), and a failed run leaves none behind.
Importing this package does not import torch.

Examples
--------
>>> sorted(TASKS)
['flipflop', 'reach']
>>> run("reach", "data/simulated/reach.nwb", seed=0)            # doctest: +SKIP
PosixPath('data/simulated/reach.nwb')
>>> run("flipflop", "ff_session2_units40.nwb", seed=0, session=2, n_units=40)   # doctest: +SKIP
PosixPath('ff_session2_units40.nwb')
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cortexfit.core import convention
from cortexfit.core.errors import ConfigError, SimulateError
from cortexfit.simulate.flipflop import simulate_flipflop
from cortexfit.simulate.reach import simulate_reach
from cortexfit.simulate.recording import (
    Recording,
    check_session,
    save_teacher,
    teacher_dir,
    truth_path,
    write_nwb,
)

log = logging.getLogger("cortexfit.simulate")

#: Task name -> simulator (``seed``, ``n_trials`` keywords, and ``session``, ``n_units`` when given; returns a
#: :class:`Recording`).
TASKS: dict[str, Callable[..., Recording]] = {"reach": simulate_reach, "flipflop": simulate_flipflop}

__all__ = ["TASKS", "run", "teacher_dir", "truth_path"]


def _prepare_folder(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SimulateError(f"{out}: output folder is not writable ({exc.strerror or exc})") from None


def _write(rec: Recording, out: Path) -> None:
    """Write the truth, the NWB file and the teacher; on any failure remove what this call wrote."""
    truth, teacher = truth_path(out), teacher_dir(out)
    try:
        convention.write_dataset(rec.truth, truth, "truth")
        write_nwb(rec, out)
        save_teacher(rec, teacher)
    except BaseException as exc:
        for path in (truth, out):  # no truth without its recording, no recording without its teacher
            path.unlink(missing_ok=True)
        if rec.teacher is not None:
            (teacher / "model.pt").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                teacher.rmdir()  # only when empty
        if isinstance(exc, OSError):
            raise SimulateError(f"{out}: cannot write the simulated recording ({exc.strerror or exc})") from None
        raise


def run(task: str, out: str | os.PathLike, *, seed: int = 0, n_trials: int | None = None,
        session: int | None = None, n_units: int | None = None) -> Path:
    """Simulate ``task`` and write ``out`` (NWB), ``OUT.truth.nc`` and, for flipflop, ``OUT.teacher/model.pt``.

    Parameters
    ----------
    task : ``"reach"`` or ``"flipflop"`` (a key of :data:`TASKS`).
    out : the NWB file to write (must end with ``.nwb``).
    seed : random seed (same seed, same spike times).
    n_trials : number of trials (default: 160 for reach, 100 for flipflop).
    session : ``None`` (the recording of ``seed``) or ``k >= 1``: session ``k`` of the same system (the
        flip-flop teacher, or reach's dynamics and preparatory states) with its own units, trials and spikes.
    n_units : number of units (default: the task's own, 100 for reach, 60 for flipflop).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ConfigError
        Unknown task, bad ``out`` suffix or option.
    SimulateError
        The output folder is not writable, or the simulation or one of its outputs (the flip-flop teacher
        included) cannot be produced; then none of the outputs is left behind.

    Examples
    --------
    >>> run("reach", "reach.nwb", seed=1, n_trials=16)           # doctest: +SKIP
    PosixPath('reach.nwb')
    """
    if task not in TASKS:
        raise ConfigError(f"simulate: unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    out = Path(out)
    if out.suffix != ".nwb":
        raise ConfigError(f"{out}: the output file must end with .nwb")
    check_session(session, n_units)
    _prepare_folder(out)
    given = {k: v for k, v in (("session", session), ("n_units", n_units)) if v is not None}
    rec = TASKS[task](seed=seed, n_trials=n_trials, **given)
    _write(rec, out)
    rates = np.array([len(s) for s in rec.spike_times]) / rec.duration_s
    log.info("%s: %s%s, %d trials, %d units (mean rate %.1f Hz, %.1f-%.1f), truth in %s", out, task,
             "" if session is None else f" session {session} of seed {seed}",
             len(rec.trials["start_time"]), rec.n_units, rates.mean(), rates.min(), rates.max(), truth_path(out).name)
    return out
