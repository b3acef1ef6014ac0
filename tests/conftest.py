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
