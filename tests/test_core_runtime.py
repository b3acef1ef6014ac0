"""Tests of cortexfit.core.runtime: device choice and thread limits."""

from __future__ import annotations

import pytest
import torch

from cortexfit.core.errors import ConfigError
from cortexfit.core.runtime import default_threads, limit_threads, resolve_device


def test_device_choice():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="valid devices: auto, cpu, cuda"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_limit_threads_restores(monkeypatch):
    before = torch.get_num_threads()
    with limit_threads(1, blas=True):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError):
        with limit_threads(0):
            pass
    monkeypatch.setenv("CORTEXFIT_THREADS", "3")
    assert default_threads() == 3
