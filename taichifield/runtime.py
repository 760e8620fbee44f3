"""The Taichi runtime: the one place in taichifield that calls ``ti.init``.

``import taichifield`` starts nothing. The CLI (or a test fixture, or the user)
calls :func:`init` once; library ops call :func:`ensure_init`, which initialises
with ``arch="auto"`` if nobody did.

Arch choice:
    ``auto``   CUDA when both torch and Taichi see a GPU, else CPU (x64). Never fails.
    ``cpu``    Taichi's LLVM CPU backend; tensors live on the CPU.
    ``cuda``   Taichi CUDA; tensors must be CUDA tensors (see :func:`device`).
    ``vulkan`` Taichi Vulkan (inference kernels only: Taichi has no autodiff on
               ndarrays there); tensors live on the CPU and Taichi copies them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass
from typing import Any

from .errors import ArchError, DeviceError

__all__ = [
    "ArchError",
    "DeviceError",
    "ARCHES",
    "init",
    "ensure_init",
    "current_arch",
    "device",
    "same_device",
    "check_device",
    "is_initialized",
    "supports_autodiff",
]

log = logging.getLogger(__name__)

ARCHES = ("auto", "cpu", "cuda", "vulkan")


@dataclass
class _State:
    arch: str | None = None
    default_fp: str = "float32"
    debug: bool = False


_state = _State()


def _import_taichi() -> Any:
    # Taichi prints a banner on import unless told not to; a library should be quiet.
    os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "False")
    import taichi as ti

    return ti


def _torch_sees_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch missing or broken
        return False


def _try_init(ti: Any, arch_name: str, **kwargs: Any) -> bool:
    """ti.init with ``arch_name``; True when Taichi really got that arch (it falls back silently)."""
    want = {"cpu": ti.cpu, "cuda": ti.cuda, "vulkan": ti.vulkan}[arch_name]
    # ti.init print()s "[Taichi] Starting on arch=..." to stdout; a library must not
    # (it would corrupt e.g. `eval nerf --json` output).
    with contextlib.redirect_stdout(io.StringIO()):
        ti.init(arch=want, **kwargs)
    got = ti.lang.impl.current_cfg().arch
    return got == want or (arch_name == "cpu" and got == ti.x64)


def init(arch: str = "auto", debug: bool = False, default_fp: str = "float32", random_seed: int = 0) -> str:
    """Initialise Taichi and return the arch actually in use (``"cpu"``, ``"cuda"`` or ``"vulkan"``).

    Args:
        arch: one of :data:`ARCHES`.
        debug: Taichi debug mode (bounds checks); slow.
        default_fp: ``"float32"`` or ``"float64"``: the precision of float literals and
            local variables inside kernels. Tests use float64 for ``gradcheck``.
        random_seed: seed for ``ti.random``.

    Raises:
        ArchError: unknown arch, or an explicitly requested arch that is unavailable.
    """
    arch = arch.lower().strip()
    if arch == "x64":
        arch = "cpu"
    if arch not in ARCHES:
        raise ArchError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHES)}")
    if default_fp not in ("float32", "float64"):
        raise ArchError(f"default_fp must be 'float32' or 'float64', not {default_fp!r}")
    ti = _import_taichi()
    kwargs = dict(
        debug=debug,
        default_fp=ti.f64 if default_fp == "float64" else ti.f32,
        random_seed=random_seed,
        offline_cache=True,
        log_level=ti.WARN,
    )
    if arch == "auto":
        chosen = "cpu"
        if _torch_sees_cuda() and _try_init(ti, "cuda", **kwargs):
            chosen = "cuda"
        else:
            _try_init(ti, "cpu", **kwargs)
    else:
        if arch == "cuda" and not _torch_sees_cuda():
            raise ArchError("arch 'cuda' is unavailable: torch sees no CUDA GPU (use --arch auto or cpu)")
        if not _try_init(ti, arch, **kwargs):
            _try_init(ti, "cpu", **kwargs)
            _state.arch = "cpu"
            raise ArchError(f"arch {arch!r} is unavailable on this machine (use --arch auto or cpu)")
        chosen = arch
    _state.arch, _state.default_fp, _state.debug = chosen, default_fp, debug
    log.info("taichi initialised: arch=%s default_fp=%s", chosen, default_fp)
    return chosen


def ensure_init() -> str:
    """Initialise with ``arch="auto"`` unless :func:`init` already ran; return the arch."""
    if _state.arch is None:
        return init("auto")
    return _state.arch


def is_initialized() -> bool:
    return _state.arch is not None


def current_arch() -> str | None:
    """The arch in use, or None before :func:`init`."""
    return _state.arch


def supports_autodiff() -> bool:
    """Taichi autodiff on ndarrays works on CPU and CUDA only."""
    return ensure_init() in ("cpu", "cuda")


def device() -> "Any":
    """The torch device whose tensors the kernels take directly, with its index.

    ``cuda:<current>`` for the CUDA arch (``torch.cuda.current_device()``), else ``cpu``
    (Vulkan kernels take CPU tensors; Taichi copies them to the GPU and back).
    Use it as the default for *new* allocations only: kernels follow their input tensors,
    and devices are compared with :func:`same_device`, never by ``==`` on their names.
    """
    import torch

    if ensure_init() == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _index(dev: "Any") -> int:
    import torch

    if dev.type == "cuda":
        return torch.cuda.current_device() if dev.index is None else int(dev.index)
    return 0  # one CPU device: "cpu" and "cpu:0" are the same


def same_device(a: "Any", b: "Any") -> bool:
    """True when ``a`` and ``b`` (devices, device strings or tensors) are the same device,
    compared by type and index: ``cuda`` and ``cuda:0`` are the same while 0 is current,
    ``cpu`` and ``cpu:0`` always are (``torch.device("cuda") != torch.device("cuda:0")``)."""
    import torch

    da = a.device if isinstance(a, torch.Tensor) else torch.device(a)
    db = b.device if isinstance(b, torch.Tensor) else torch.device(b)
    return da.type == db.type and _index(da) == _index(db)


def check_device(*tensors: "Any", what: str = "kernel input") -> "Any":
    """The one device rule: kernels run where their input tensors are.

    Checks that every tensor (None entries are ignored) is on one device and that the
    running arch's kernels take tensors there (:func:`device`: CUDA tensors under arch
    cuda, CPU tensors under cpu and vulkan). Nothing is moved; results of the kernel are
    allocated on the returned device.

    Returns:
        the tensors' ``torch.device``.

    Raises:
        DeviceError: tensors on different devices, or on a device the arch cannot use.
    """
    present = [t for t in tensors if t is not None]
    if not present:
        return device()
    first = present[0].device
    for t in present[1:]:
        if not same_device(t.device, first):
            raise DeviceError(f"{what}: tensors are on {first} and {t.device}; put them on one device")
    want = device()
    if not same_device(first, want):
        raise DeviceError(
            f"{what}: tensors are on {first}, but Taichi (arch {current_arch()}) runs kernels on "
            f"{want} tensors; move them there (tensor.to({str(want)!r})) or start Taichi with that arch"
        )
    return first
