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
def _torch_threads():
    """Keep torch to few threads in tests (the CI machine has 2 cores); no-op if torch is not imported."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(2)
    yield
