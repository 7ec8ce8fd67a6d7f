"""Shared setup of the unified_grn tests: one torch thread per module (seeded tiny models: ``tiny_models``)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models: thread start-up costs more than it saves, and OpenMP spin-waits stall when
    # another process holds a core of the 2-core CI machine (a 10x slowdown was measured).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
