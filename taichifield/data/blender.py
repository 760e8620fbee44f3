"""Blender / NeRF-synthetic scenes: ``transforms_{split}.json`` + RGBA PNGs.

Format (Mildenhall et al., 2020)::

    {"camera_angle_x": 0.6911,            # horizontal field of view, radians
     "frames": [{"file_path": "./train/r_0",          # relative, extension optional (.png)
                 "transform_matrix": [[...4x4 camera-to-world, OpenGL convention...]]}, ...]}

The focal length follows from the *actual* image width: ``fx = 0.5 W / tan(0.5 camera_angle_x)``
(so a 400 px copy of an 800 px dataset works as is); ``fy = fx`` unless ``camera_angle_y`` is
given; the principal point is the image centre. Scene box ``[-1.5, 1.5]^3``, near 2, far 6.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import InputError
from .loading import check_pose, check_views, downscale_images, read_image, read_json, require, stack_images
from .views import Views

__all__ = ["load_blender", "BLENDER_AABB", "BLENDER_NEAR", "BLENDER_FAR"]

BLENDER_AABB = ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))
BLENDER_NEAR = 2.0
BLENDER_FAR = 6.0


def _frame_image_path(root: Path, file_path: str) -> Path:
    p = root / file_path
    if p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".exr", ".bmp", ".tif", ".tiff", ".webp") and p.name:
        p = p.with_name(p.name + ".png")
    return p


def load_images(paths: Sequence[Path], source: Path) -> torch.Tensor:
    """Read frames in parallel (PIL decodes without the GIL); (n, H, W, C) uint8."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        images = list(pool.map(lambda p: read_image(p, source), paths))
    return stack_images(images, paths, source)


def load_blender(root: str | Path, split: str = "train", downscale: int = 1,
                 background: Sequence[float] = (1.0, 1.0, 1.0)) -> Views:
    """Load one split of a Blender-format scene.

    Args:
        root: the scene folder holding ``transforms_{split}.json``.
        split: ``train``, ``val`` or ``test`` (any name with a json file).
        downscale: integer area-filter factor (premultiplied alpha); intrinsics scale with it.
        background: default compositing colour stored in the views.

    Raises:
        InputError: missing/invalid json, missing keys, missing/unreadable images, mixed image
            sizes, non-rigid poses, fully transparent images or a box no camera sees
            (the message names the file).
    """
    root = Path(root)
    path = root / f"transforms_{split}.json"
    if not root.is_dir():
        raise InputError(f"{root}: scene folder not found")
    data = read_json(path)
    angle_x = require(data, "camera_angle_x", path)
    frames = require(data, "frames", path)
    if not isinstance(frames, list) or not frames:
        raise InputError(f"{path}: 'frames' must be a non-empty list")
    try:
        angle_x = float(angle_x)
    except (TypeError, ValueError):
        raise InputError(f"{path}: camera_angle_x is not a number") from None
    if not 0.0 < angle_x < math.pi:
        raise InputError(f"{path}: camera_angle_x {angle_x} is not in (0, pi)")
    paths, poses = [], []
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict):
            raise InputError(f"{path}: frame {i} is not an object")
        fp = require(fr, "file_path", path, f" in frame {i}")
        poses.append(check_pose(require(fr, "transform_matrix", path, f" in frame {i}"), path, f"frame {i} ({fp})"))
        paths.append(_frame_image_path(root, str(fp)))
    images = downscale_images(load_images(paths, path), int(downscale), path)
    n, H, W, _ = images.shape
    fx = 0.5 * W / math.tan(0.5 * angle_x)
    fy = fx
    if "camera_angle_y" in data:
        try:
            angle_y = float(data["camera_angle_y"])
        except (TypeError, ValueError):
            raise InputError(f"{path}: camera_angle_y is not a number") from None
        if not 0.0 < angle_y < math.pi:
            raise InputError(f"{path}: camera_angle_y {angle_y} is not in (0, pi)")
        fy = 0.5 * H / math.tan(0.5 * angle_y)
    views = Views(
        images=images,
        c2w=torch.from_numpy(np.stack(poses)).float(),
        fx=fx, fy=fy, cx=0.5 * W, cy=0.5 * H, width=int(W), height=int(H),
        file_names=[p.name for p in paths],
        aabb=torch.tensor(BLENDER_AABB, dtype=torch.float32),
        near=BLENDER_NEAR, far=BLENDER_FAR,
        background=tuple(float(b) for b in background),  # type: ignore[arg-type]
        distortion=None, source=str(path),
        meta={"format": "blender", "camera_angle_x": angle_x, "split": split, "downscale": int(downscale)},
    )
    check_views(views, path)
    return views
