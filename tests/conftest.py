"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CORTEXFIT_SHARED_DATA", ROOT.parent / "shared" / "data"))

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of real recordings beside the checkout (``../shared/data``); skips the test where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _torch_one_thread():
    """Run torch on one thread in tests: the models are small, and thread hand-offs only cost time on the
    2-core CI machine. No-op if torch is not imported; restores the previous count afterwards."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def osc_activity(tmp_path_factory):
    """A small simulated activity file (24 trials x 30 bins x 10 units, two conditions) shared by the fit tests."""
    from cortexfit.core import convention
    from fit_factory import oscillator_activity

    ds, _ = oscillator_activity(n_trials=24, n_time=30, n_units=10, seed=0)
    return convention.write_dataset(ds, tmp_path_factory.mktemp("act") / "act.nc")
