"""The ``cortexfit`` command.

Argument parsing only: each subcommand calls one library function, ``cortexfit.<stage>.run(...)``, with
the same arguments, so everything a Snakemake rule does is reachable from Python too.  Stage modules are
imported lazily, so ``cortexfit ingest`` never imports torch.

Errors caused by bad input (:class:`~cortexfit.core.errors.CortexfitError`) are printed as one line,
``cortexfit <stage>: error: <message>``, and exit with status 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from cortexfit import __version__
from cortexfit.core import defaults
from cortexfit.core.errors import CortexfitError
from cortexfit.core.runtime import DEVICES
from cortexfit.fit import registry

log = logging.getLogger("cortexfit")

# subcommand -> (module, function, help, argument builder)
_COMMANDS: dict[str, tuple[str, str, str, Callable[[argparse.ArgumentParser], None]]] = {}


def command(name: str, module: str, help: str, func: str = "run"):
    """Register a subcommand whose arguments are added by the decorated function."""

    def deco(builder: Callable[[argparse.ArgumentParser], None]):
        _COMMANDS[name] = (module, func, help, builder)
        return builder

    return deco


@command("simulate", "cortexfit.simulate", "write a simulated recording with known ground truth as NWB")
def _simulate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=defaults.SIMULATED_TASKS, help="which ground-truth system to simulate")
    p.add_argument("out", metavar="OUT.nwb", help="NWB file to write (ground truth goes to OUT.truth.nc)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--n-trials", type=int, default=None, help="number of trials (default: task's own)")
    p.add_argument("--session", type=int, default=None, metavar="K",
                   help="session K >= 1 of the system of --seed (same teacher / latent dynamics; its own units, "
                   "trials and spikes); default: the single recording of the seed")
    p.add_argument("--n-units", type=int, default=None, metavar="N",
                   help="number of recorded units (default: task's own)")


@command("ingest", "cortexfit.ingest", "bin an NWB session into a trial x time x unit activity dataset")
def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("nwb", metavar="IN.nwb")
    p.add_argument("out", metavar="OUT.nc")
    p.add_argument("--bin-ms", type=float, default=defaults.BIN_MS, help="bin width in ms (default %(default)s)")
    p.add_argument("--align", default=defaults.ALIGN, help="trials column to align to (default %(default)s)")
    p.add_argument(
        "--window-ms", type=float, nargs=2, metavar=("START", "STOP"), default=None,
        help="window around the alignment event in ms (default: the shortest trial from the event)",
    )
    p.add_argument(
        "--trials-table", default=defaults.TRIALS_TABLE,
        help="TimeIntervals table holding the trials; 'none' cuts the session into fixed windows",
    )
    p.add_argument(
        "--areas", default=defaults.AREAS,
        help="how units get brain areas: 'electrodes' (the default), 'column:NAME' (a units column), or a "
        "unit-id rule such as 'unit-id:1xxx=PMd,2xxx=M1'",
    )
    p.add_argument(
        "--session-window-ms", type=float, default=defaults.SESSION_WINDOW_MS,
        help="window length for sessions without a trials table (default %(default)s)",
    )
    p.add_argument(
        "--clip-to-trial", action="store_true",
        help="also mark bins outside the trial's [start_time, stop_time) invalid (and zero them); by default "
        "every bin where the unit was observed is valid, padding beyond the trial included",
    )
    p.add_argument(
        "--inputs", default=None, metavar="NAME[,NAME]",
        help="further task inputs beside the stimulus/presentation series: TimeSeries names, or trials columns "
        "of event times (e.g. go_cue_time: a pulse of 1 in the bin holding the event)",
    )


@command("fetch-dandi", "cortexfit.ingest.dandi", "download an NWB asset from the DANDI archive, verified by its checksum")
def _fetch_dandi_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="dandi:DANDISET[@VERSION]/PATH",
                   help="the asset, e.g. dandi:000128/sub-Jenkins/sub-Jenkins_ses-full_desc-test_ecephys.nwb")
    p.add_argument("out", metavar="OUT.nwb", help="where to write it (resumes from OUT.nwb.part)")
    p.add_argument("--api", default=None, metavar="URL",
                   help="DANDI API base URL (default: $CORTEXFIT_DANDI_API, else https://api.dandiarchive.org/api)")
    p.add_argument("--attempts", type=int, default=5, help="tries, each resuming the download (default 5)")


@command("fit", "cortexfit.fit", "fit a model family to an activity dataset")
def _fit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("activity", metavar="IN.nc")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--model", required=True, choices=registry.names(), metavar="MODEL",
                   help=f"model from the registry: {', '.join(registry.names())}")
    p.add_argument("--mode", choices=registry.MODES, default="latent")
    p.add_argument("--config", default=None, help="YAML/JSON file with model and training options")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR's last checkpoint")


@command("fit-group", "cortexfit.fit.group",
         "fit several sessions of one task with one generator, jointly or one after another (continual)")
def _fit_group_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("activity", metavar="IN.nc", nargs="+", help="one activity file per session, in fitting order")
    p.add_argument("--out", dest="out_dir", required=True, metavar="OUT_DIR",
                   help="folder to write (metrics.json, history.csv, sessions/<name>/ fit folders)")
    gt = ", ".join(registry.gradient_trained())
    p.add_argument("--model", required=True, choices=registry.gradient_trained(), metavar="MODEL",
                   help=f"the generator's family: {gt}")
    p.add_argument("--names", nargs="+", default=None, metavar="NAME",
                   help="session names (default: each file's folder name)")
    p.add_argument("--strategy", choices=["joint", "continual"], default="joint")
    p.add_argument("--method", choices=["none", "ewc", "replay"], default="none",
                   help="continual: plain fine-tuning, elastic weight consolidation, or replay")
    p.add_argument("--ewc-lambda", type=float, default=100.0, help="EWC strength (default %(default)s)")
    p.add_argument("--replay-fraction", type=float, default=0.5,
                   help="fraction of each earlier session's training trials replayed (default %(default)s)")
    p.add_argument("--truth", nargs="+", default=None, metavar="TRUTH.nc",
                   help="each session's ground truth: adds state R2 to the forgetting matrix")
    p.add_argument("--no-warm-start", dest="warm_start", action="store_false",
                   help="joint: fit all sessions from scratch at once (default: the first session alone, then the "
                   "others' read-in/read-out, then all together)")
    p.add_argument("--config", default=None, help="YAML/JSON file with model and training options")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=DEVICES, default="auto")


@command("fixed-points", "cortexfit.analysis.fixed_points", "find fixed and slow points of a fitted model")
def _fp_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("fit_dir", metavar="FIT_DIR")
    p.add_argument("out", metavar="OUT.nc")
    p.add_argument("--inputs", choices=["zero", "condition-mean"], default="zero")
    p.add_argument("--n-init", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=DEVICES, default="auto")


@command("geometry", "cortexfit.analysis.geometry", "PCA, jPCA and model-data alignment")
def _geometry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("activity", metavar="IN.nc")
    p.add_argument("fit_dir", metavar="FIT_DIR")
    p.add_argument("out", metavar="OUT.nc")


@command("dynamics", "cortexfit.analysis.dynamics", "spectra, Lyapunov exponents, echo-state and gradient tests")
def _dynamics_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("fit_dir", metavar="FIT_DIR")
    p.add_argument("out", metavar="OUT.nc")
    p.add_argument("--seed", type=int, default=0)


@command("truth", "cortexfit.analysis.truth", "compare a fitted model with a simulated recording's ground truth")
def _truth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("fit_dir", metavar="FIT_DIR")
    p.add_argument("truth", metavar="TRUTH.nc", help="the simulation's ground truth (kind 'truth')")
    p.add_argument("out", metavar="OUT.json")
    p.add_argument("--teacher-fixed-points", default=None, metavar="F",
                   help="fixed_points file of the teacher network (default: the truth's own fixed_points)")
    p.add_argument("--activity", default=None, metavar="A",
                   help="the activity file the model was fitted to (alignment event, bin width, observed rates)")


@command("report", "cortexfit.report", "write a self-contained HTML report for one dataset's results")
def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", metavar="RESULTS_DIR/DATASET")
    p.add_argument("out", metavar="OUT.html")
    p.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                   help="read only these fits/<MODEL> folders (default: all), so stale fits are left out; "
                   f"models: {', '.join(registry.names())}")


@command("report-group", "cortexfit.report.groups",
         "write a self-contained HTML report of a group's multi-session fits (joint, continual, forgetting)")
def _report_group_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("group_dir", metavar="GROUP_DIR", help="results/groups/<group> (holds <strategy>/<model>/ folders)")
    p.add_argument("out", metavar="OUT.html")


@command("figures", "cortexfit.figures", "reproduce the mechanism figures of RNN theory with numeric checks")
def _figures_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--quick", action="store_true", help="reduced sizes (seconds, for tests)")
    p.add_argument("--only", nargs="*", default=None, help="run only these figures (by name)")
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cortexfit",
        description="Fit RNN models to cortical recordings and compare their dynamics with the data.",
    )
    parser.add_argument("--version", action="version", version=f"cortexfit {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch and BLAS (default: all this process may use)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, _func, help_, builder) in _COMMANDS.items():
        builder(sub.add_parser(name, help=help_, description=help_))
    return parser


def _kwargs(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"command", "quiet", "threads"}
    return {k: v for k, v in vars(args).items() if k not in skip}


def _limit_threads(n: int) -> None:
    """Thread counts for torch (OpenMP) and BLAS, set before they load: torch reads ``OMP_NUM_THREADS`` at import.

    (Calling ``torch.set_num_threads`` after import instead made MKL's batched LU solve fail in the fixed-point
    search with 2 threads: "Parameter 6 was incorrect on entry to SLASWP".)
    """
    import os

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ["CORTEXFIT_THREADS"] = str(n)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    module_name, func_name, _help, _builder = _COMMANDS[args.command]
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        _limit_threads(args.threads)
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        func(**_kwargs(args))
    except CortexfitError as exc:
        print(f"cortexfit {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cortexfit {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
