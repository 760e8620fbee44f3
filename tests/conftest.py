"""Test fixtures: the Taichi runtime is initialised here, never at import.

* every test runs on CPU / float32 unless it asks otherwise (autouse ``_taichi``);
* ``f64``: CPU with float64 kernel locals, for ``torch.autograd.gradcheck``;
* ``arch``: parametrises a test over ``cpu`` and ``vulkan`` (inference kernels).
  Vulkan is skipped where unavailable, unless ``TAICHIFIELD_REQUIRE_VULKAN=1``
  (set by CI), where its absence is a failure.

Re-initialising Taichi happens only when the requested (arch, precision) changes.
"""

from __future__ import annotations

import os

import pytest

from taichifield import runtime

_vulkan_ok: bool | None = None


def use_arch(arch: str, default_fp: str = "float32") -> None:
    if (runtime.current_arch(), runtime._state.default_fp) != (arch, default_fp):
        runtime.init(arch, default_fp=default_fp)


def vulkan_available() -> bool:
    global _vulkan_ok
    if _vulkan_ok is None:
        try:
            runtime.init("vulkan")
            _vulkan_ok = True
        except runtime.ArchError:
            _vulkan_ok = False
    return _vulkan_ok


@pytest.fixture(autouse=True)
def _taichi() -> None:
    use_arch("cpu")


@pytest.fixture
def f64() -> None:
    use_arch("cpu", "float64")


@pytest.fixture(params=["cpu", "vulkan"])
def arch(request: pytest.FixtureRequest) -> str:
    name = request.param
    if name == "vulkan" and not vulkan_available():
        if os.environ.get("TAICHIFIELD_REQUIRE_VULKAN") == "1":
            pytest.fail("Vulkan required (TAICHIFIELD_REQUIRE_VULKAN=1) but unavailable")
        pytest.skip("Taichi Vulkan backend unavailable (apt-get install mesa-vulkan-drivers libvulkan1)")
    use_arch(name)
    return name
