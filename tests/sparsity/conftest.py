"""Shared fixtures of the sparsity tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run torch on one thread: with 2 cores shared by other jobs, OpenMP spin-waiting made a
    2-thread training step ~20x slower than a 1-thread one. Restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
