"""taichifield: differentiable Taichi kernels for neural fields.

Importing this package is cheap: it starts no Taichi runtime and imports neither
torch-heavy submodules nor open3d. Public names are resolved lazily on first use.

    import taichifield as tf
    tf.init("auto")                                  # the one ti.init
    enc = tf.HashGridEncoding()                      # (N,3) in [0,1]^3 -> (N,32)
    verts, faces = tf.marching_cubes(volume, level=0.0)
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# Taichi prints a banner when imported; a library (and JSON-printing commands) should not.
os.environ.setdefault("ENABLE_TAICHI_HEADER_PRINT", "False")

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY: dict[str, str] = {
    "init": "taichifield.runtime",
    "current_arch": "taichifield.runtime",
    "device": "taichifield.runtime",
    "same_device": "taichifield.runtime",
    "check_device": "taichifield.runtime",
    "DeviceError": "taichifield.errors",
    "NerfModel": "taichifield.pipelines.nerf",
    "SDFModel": "taichifield.pipelines.sdf",
    "TaichiOp": "taichifield.bridge",
    "TaichiFieldError": "taichifield.errors",
    "InputError": "taichifield.errors",
    "CheckpointError": "taichifield.errors",
    "ArchError": "taichifield.errors",
    "HashGridEncoding": "taichifield.encoding",
    "FrequencyEncoding": "taichifield.encoding",
    "FourierFeatureEncoding": "taichifield.encoding",
    "SphericalHarmonicsEncoding": "taichifield.encoding",
    "volume_render": "taichifield.render.volrend",
    "OccupancyGrid": "taichifield.render.raymarch",
    "sample_stratified": "taichifield.render.stratified",
    "sphere_trace": "taichifield.render.sphere_trace",
    "marching_cubes": "taichifield.geometry.marching_cubes",
    "extract_mesh": "taichifield.geometry.extract",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taichifield' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
