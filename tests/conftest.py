"""Test fixtures: the Taichi runtime is initialised here, never at import.

* a test that asks for no arch runs on ``TAICHIFIELD_TEST_ARCH`` (default ``cpu``) / float32
  (autouse ``_taichi``); a test that asks for ``arch``, ``train_arch`` or ``f64`` gets that
  and the autouse fixture stays out of its way;
* ``f64``: CPU with float64 kernel locals, for ``torch.autograd.gradcheck``;
* ``arch``: parametrises a test over ``cpu``, ``vulkan`` and ``cuda`` (inference kernels);
* ``train_arch``: over ``cpu`` and ``cuda`` (training: Taichi autodiff needs one of them).

On the ``cuda`` legs torch's default device is the GPU for the test's duration, so tensors a
test creates live where the kernels run; ``device`` gives that device explicitly. The cuda
legs run whenever torch sees a GPU and Taichi's CUDA backend starts, and skip with that reason
otherwise. Vulkan is skipped where unavailable, unless ``TAICHIFIELD_REQUIRE_VULKAN=1`` (set by
CI), and CUDA likewise with ``TAICHIFIELD_REQUIRE_CUDA=1`` (set by ``bench/gpu_check.sh``).

Re-initialising Taichi happens only when the requested (arch, precision) changes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

from taichifield import runtime

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (sync_counter) import by name

_available: dict[str, bool] = {}
_REASONS = {
    "vulkan": "Taichi Vulkan backend unavailable (apt-get install mesa-vulkan-drivers libvulkan1)",
    "cuda": "no CUDA GPU: torch sees none or Taichi's CUDA backend does not start",
}


def use_arch(arch: str, default_fp: str = "float32") -> None:
    if (runtime.current_arch(), runtime._state.default_fp) != (arch, default_fp):
        runtime.init(arch, default_fp=default_fp)


def arch_available(name: str) -> bool:
    if name == "cpu":
        return True
    if name not in _available:
        if name == "cuda" and not torch.cuda.is_available():
            _available[name] = False
        else:
            try:
                runtime.init(name)
                _available[name] = True
            except runtime.ArchError:
                _available[name] = False
    return _available[name]


def _enter(name: str) -> Iterator[str]:
    if not arch_available(name):
        if os.environ.get(f"TAICHIFIELD_REQUIRE_{name.upper()}") == "1":
            pytest.fail(f"{name} required (TAICHIFIELD_REQUIRE_{name.upper()}=1) but unavailable")
        pytest.skip(_REASONS[name])
    use_arch(name)
    if name == "cuda":
        previous = torch.get_default_device()
        torch.set_default_device(runtime.device())
        try:
            yield name
        finally:
            torch.set_default_device(previous)
    else:
        yield name


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same random state (torch, numpy, random): a test whose data
    or jitter is random asserts on one fixed draw, so the suite cannot fail by chance."""
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _taichi(request: pytest.FixtureRequest) -> None:
    if {"arch", "train_arch", "f64"} & set(request.fixturenames):
        return  # the arch the test asked for wins
    use_arch(os.environ.get("TAICHIFIELD_TEST_ARCH", "cpu"))


@pytest.fixture
def f64() -> None:
    use_arch("cpu", "float64")


@pytest.fixture(params=["cpu", "vulkan", "cuda"])
def arch(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _enter(request.param)


@pytest.fixture(params=["cpu", "cuda"])
def train_arch(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _enter(request.param)


@pytest.fixture
def device() -> torch.device:
    """The device the running arch's kernels take (use with ``arch`` / ``train_arch``)."""
    return runtime.device()
