"""Procedural scenes: analytic geometry rendered into datasets on first use.

* :mod:`taichifield.scenes.lego` - the LEGO-brick scene (SDF, colours, shading, camera rig).
* :func:`prepare_scene` - render a ``scene.json`` folder into Blender-format views (cached,
  only the views asked for).
* :func:`trace_lego` - the fused, brick-culled Taichi tracer that renders them.
* :func:`lego_gt_mesh` - the scene's ground-truth mesh, for geometry evaluation.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "prepare_scene": ".prepare",
    "is_procedural": ".prepare",
    "read_scene_spec": ".prepare",
    "render_lego_view": ".prepare",
    "lego_gt_mesh": ".prepare",
    "lego_sdf": ".lego",
    "lego_albedo": ".lego",
    "camera_rig": ".lego",
    "lego_sdf_taichi": ".lego_kernel",
    "trace_lego": ".lego_trace",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taichifield.scenes' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
