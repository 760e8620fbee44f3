"""Huge-page-backed buffers: same values and shapes as plain torch allocations."""

import sys
from pathlib import Path

import pytest
import torch

from taichifield import memory


def _thp_available() -> bool:
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return sys.platform.startswith("linux") and path.exists() and "[never]" not in path.read_text()


def test_small_buffers_are_plain_and_large_ones_advised():
    small = memory.empty(16)
    assert small.shape == (16,) and not memory.advise_hugepages(small)
    big = memory.empty(memory.MIN_BYTES // 4 + 1024)
    assert big.dtype == torch.float32 and big.numel() == memory.MIN_BYTES // 4 + 1024
    advised = memory.advise_hugepages(big)  # never raises
    if _thp_available():
        assert advised


@pytest.mark.parametrize("n", [10, memory.MIN_BYTES // 8 + 7])
def test_zeros_like_is_zero_and_matches_shape_dtype(n):
    t = torch.randn(n, dtype=torch.float64)
    z = memory.zeros_like(t)
    assert z.shape == t.shape and z.dtype == torch.float64 and z.is_contiguous()
    assert torch.count_nonzero(z) == 0
