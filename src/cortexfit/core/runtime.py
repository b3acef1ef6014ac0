"""Where and how heavy stages compute: device choice and thread limits (one helper each).

Examples
--------
>>> resolve_device("cpu")
'cpu'
>>> with limit_threads(1):
...     pass
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from cortexfit.core.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``.

    Raises :class:`~cortexfit.core.errors.ConfigError` for an unknown name or for ``"cuda"`` on a machine
    without CUDA (one line saying what to use instead).

    Examples
    --------
    >>> resolve_device("tpu")
    Traceback (most recent call last):
    ...
    cortexfit.core.errors.ConfigError: unknown device 'tpu'; valid devices: auto, cpu, cuda
    """
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; valid devices: {', '.join(DEVICES)}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device cuda was requested but CUDA is not available to torch on this machine "
                          f"(torch {torch.__version__}); use --device cpu or auto")
    return device


def default_threads() -> int:
    """Threads a stage may use: ``$CORTEXFIT_THREADS``, else the CPUs this process may run on."""
    env = os.environ.get("CORTEXFIT_THREADS", "")
    if env.strip().isdigit() and int(env) >= 1:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def limit_threads(n: int | None, *, blas: bool = False) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (and BLAS threads when ``blas``), then restore.

    ``n=None`` leaves the counts as they are.  Torch is only touched when it is already imported, so a
    torch-free stage stays torch-free.
    """
    import sys

    if n is None:
        yield
        return
    if n < 1:
        raise ConfigError(f"threads must be >= 1, got {n}")
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with contextlib.ExitStack() as stack:
            if blas:
                from threadpoolctl import threadpool_limits

                stack.enter_context(threadpool_limits(limits=n, user_api="blas"))
            yield
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)
