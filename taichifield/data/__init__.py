"""Scenes: posed images as plain dataclasses of tensors, and rays generated from them.

``load_scene(path, split)`` reads either format:

* a folder with ``transforms_{split}.json`` -> Blender / NeRF-synthetic (:func:`load_blender`);
* a ``transforms.json`` file, or a folder holding one -> instant-ngp (:func:`load_ngp`);
* a folder with a COLMAP model (``sparse/0/cameras.bin|txt`` ...) and ``images/`` -> :func:`load_colmap`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import InputError
from .blender import load_blender
from .colmap_scene import is_colmap_scene, load_colmap
from .ngp import load_ngp
from .rays import all_rays, generate_rays, pixels
from .views import Views

__all__ = ["Views", "load_scene", "load_blender", "load_ngp", "load_colmap", "generate_rays", "all_rays", "pixels"]


def load_scene(path: str | Path, split: str = "train", downscale: int = 1,
               background: Sequence[float] = (1.0, 1.0, 1.0)) -> Views:
    """Load one split of a scene in Blender or instant-ngp format (detected from the files).

    Args:
        path: scene folder, or an instant-ngp ``transforms.json``.
        split: ``train``/``val``/``test`` (instant-ngp also ``all``; its test split is every
            8th frame, see :mod:`taichifield.data.ngp`).
        downscale: integer factor >= 1 (area filter with premultiplied alpha).
        background: (3,) colour in [0, 1] transparent pixels are composited on by default.

    Returns:
        :class:`Views` (``images`` uint8 (n, H, W, 3|4), ``c2w`` (n, 4, 4), intrinsics, box).

    Raises:
        InputError: the scene is missing or malformed (the message names the file).
    """
    try:
        k = int(downscale)
    except (TypeError, ValueError):
        raise InputError(f"downscale must be a positive integer, not {downscale!r}") from None
    if k < 1 or k != downscale:
        raise InputError(f"downscale must be a positive integer, not {downscale!r}")
    bg = tuple(float(b) for b in background)
    if len(bg) != 3:
        raise InputError(f"background must have 3 components, not {len(bg)}")
    p = Path(path)
    if p.is_file():
        if p.name.startswith("transforms_") and p.suffix == ".json":
            return load_blender(p.parent, split, k, bg)
        return load_ngp(p, split, k, bg)
    if not p.is_dir():
        raise InputError(f"{p}: scene not found")
    if (p / f"transforms_{split}.json").is_file():
        return load_blender(p, split, k, bg)
    if (p / "transforms.json").is_file():
        return load_ngp(p, split, k, bg)
    if is_colmap_scene(p):
        return load_colmap(p, split, k, bg)
    if list(p.glob("transforms_*.json")):
        raise InputError(f"{p}: no transforms_{split}.json (Blender scene without a {split!r} split)")
    raise InputError(f"{p}: not a scene (no transforms_{split}.json, transforms.json or COLMAP sparse/0)")
