"""instant-ngp / nerfstudio scenes: one ``transforms.json`` with explicit intrinsics.

Format (Müller et al., 2022, ``scripts/colmap2nerf.py``)::

    {"fl_x": 1200.0, "fl_y": 1200.0, "cx": 400.0, "cy": 300.0, "w": 800, "h": 600,
     "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,      # optional OpenCV distortion
     "aabb_scale": 4,                                  # optional scene box size (power of 2)
     "scale": 0.33, "offset": [0.5, 0.5, 0.5],         # optional, instant-ngp's normalisation
     "frames": [{"file_path": "images/0001.jpg", "transform_matrix": [[...4x4, OpenGL...]]}]}

``fl_y`` defaults to ``fl_x``; ``fl_x`` may instead come from ``camera_angle_x``; ``cx, cy``
default to the image centre; ``w, h`` (when given) must match the images. Any of these keys
may also be stored per frame (nerfstudio, instant-ngp), overriding the top level for that frame:
frames with different cameras load as per-view cameras (:attr:`Views.cameras`).

Splits: the file holds every frame. ``split="train"`` takes all frames except every 8th
(frame indices 0, 8, 16, ... in file order are held out), ``"test"`` and ``"val"`` take exactly
those held-out frames, ``"all"`` takes everything (train on every frame, as instant-ngp does).

Scene box: instant-ngp maps world ``x`` to ``x * scale + offset`` (after cycling the axes) and
uses a box of side ``aabb_scale`` centred at 0.5 there; the same box in this file's world
coordinates is centred at ``(0.5 - offset) / scale`` with half-size ``0.5 aabb_scale / scale``.
Near is 0; far is the largest distance from a camera to a box corner.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InputError
from .blender import load_images
from .loading import check_pose, check_views, downscale_images, read_json, require
from .views import Views, camera_fields

__all__ = ["load_ngp", "HOLDOUT_EVERY", "NGP_DEFAULT_SCALE"]

HOLDOUT_EVERY = 8
"""Every 8th frame (indices 0, 8, ...) is the test/val split of an instant-ngp scene."""
NGP_DEFAULT_SCALE = 0.33


def _float(data: dict[str, Any], key: str, path: Path, default: float | None = None) -> float:
    if key not in data:
        if default is None:
            raise InputError(f"{path}: missing key {key!r}")
        return default
    try:
        value = float(data[key])
    except (TypeError, ValueError):
        raise InputError(f"{path}: {key} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{path}: {key} is not finite")
    return value


def _select(n: int, split: str, path: Path) -> list[int]:
    if split == "all":
        return list(range(n))
    if split == "train":
        idx = [i for i in range(n) if i % HOLDOUT_EVERY != 0]
        return idx or list(range(n))  # fewer than 2 frames: train on what there is
    if split in ("test", "val"):
        return [i for i in range(n) if i % HOLDOUT_EVERY == 0]
    raise InputError(f"{path}: unknown split {split!r} for an instant-ngp scene (train, val, test or all)")


def _aabb(data: dict[str, Any], path: Path) -> torch.Tensor:
    aabb_scale = _float(data, "aabb_scale", path, 1.0)
    scale = _float(data, "scale", path, NGP_DEFAULT_SCALE)
    if aabb_scale <= 0 or scale <= 0:
        raise InputError(f"{path}: aabb_scale and scale must be positive")
    try:
        offset = np.asarray(data.get("offset", [0.5, 0.5, 0.5]), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        offset = np.zeros(0)
    if offset.shape != (3,) or not np.isfinite(offset).all():
        raise InputError(f"{path}: offset must be 3 finite numbers")
    # ngp coordinate i holds world coordinate (i + 1) % 3, so world j used ngp offset j - 1
    centre = (0.5 - np.roll(offset, 1)) / scale
    half = 0.5 * aabb_scale / scale
    return torch.tensor(np.stack([centre - half, centre + half]), dtype=torch.float32)


_INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2", "camera_angle_x")


def _frame_camera(data: dict[str, Any], frame: dict[str, Any], W0: int, H0: int, path: Path,
                  where: str) -> list[float]:
    """``fx, fy, cx, cy, k1, k2, p1, p2`` of one frame: its own intrinsic keys over the file's.

    Raises:
        InputError: no focal length, a non-positive one, or ``w, h`` that differ from the images.
    """
    d = {**data, **{k: frame[k] for k in _INTRINSICS if k in frame}}
    w = int(_float(d, "w", path, float(W0)))
    h = int(_float(d, "h", path, float(H0)))
    if (w, h) != (W0, H0):
        raise InputError(f"{path}: images are {W0}x{H0} but w, h say {w}x{h}{where}")
    if "fl_x" in d:
        fl_x = _float(d, "fl_x", path)
    elif "camera_angle_x" in d:
        fl_x = 0.5 * W0 / math.tan(0.5 * _float(d, "camera_angle_x", path))
    else:
        raise InputError(f"{path}: missing key 'fl_x' (or 'camera_angle_x'){where}")
    fl_y = _float(d, "fl_y", path, fl_x)
    if fl_x <= 0 or fl_y <= 0:
        raise InputError(f"{path}: focal lengths must be positive{where}")
    return [fl_x, fl_y, _float(d, "cx", path, 0.5 * W0), _float(d, "cy", path, 0.5 * H0),
            *(_float(d, k, path, 0.0) for k in ("k1", "k2", "p1", "p2"))]


def load_ngp(path: str | Path, split: str = "train", downscale: int = 1,
             background: Sequence[float] = (1.0, 1.0, 1.0)) -> Views:
    """Load a split of an instant-ngp ``transforms.json`` (a file or the folder holding it).

    Args:
        path: ``transforms.json`` or its folder; image paths are relative to its folder.
        split: ``train``, ``test``/``val`` (every 8th frame) or ``all``; see the module doc.
        downscale: integer area-filter factor (premultiplied alpha); intrinsics scale with it.
        background: default compositing colour for RGBA frames.

    Raises:
        InputError: missing/invalid json, missing keys, missing/unreadable images, mixed or
            mismatching image sizes, non-rigid poses, fully transparent images or a box no
            camera sees.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    data = read_json(path)
    frames = require(data, "frames", path)
    if not isinstance(frames, list) or not frames:
        raise InputError(f"{path}: 'frames' must be a non-empty list")
    chosen = _select(len(frames), split, path)
    if not chosen:
        raise InputError(f"{path}: split {split!r} has no frames ({len(frames)} frames in the file)")
    paths, poses = [], []
    for i in chosen:
        fr = frames[i]
        if not isinstance(fr, dict):
            raise InputError(f"{path}: frame {i} is not an object")
        fp = str(require(fr, "file_path", path, f" in frame {i}"))
        poses.append(check_pose(require(fr, "transform_matrix", path, f" in frame {i}"), path, f"frame {i} ({fp})"))
        paths.append(path.parent / fp)
    images = load_images(paths, path)
    H0, W0 = int(images.shape[1]), int(images.shape[2])
    rows = []
    for i in chosen:
        own = any(k in frames[i] for k in _INTRINSICS)
        rows.append(_frame_camera(data, frames[i], W0, H0, path, f" in frame {i}" if own else ""))
    k = int(downscale)
    images = downscale_images(images, k, path)
    c2w = torch.from_numpy(np.stack(poses)).float()
    aabb = _aabb(data, path)
    corners = torch.stack(torch.meshgrid(*[aabb[:, j] for j in range(3)], indexing="ij"), -1).reshape(-1, 3)
    far = float(torch.cdist(c2w[:, :3, 3], corners).max())
    views = Views(
        images=images, c2w=c2w,
        **camera_fields(rows, k),
        width=int(images.shape[2]), height=int(images.shape[1]),
        file_names=[p.name for p in paths], aabb=aabb, near=0.0, far=far,
        background=tuple(float(b) for b in background),  # type: ignore[arg-type]
        source=str(path),
        meta={"format": "ngp", "split": split, "downscale": k, "frame_indices": chosen,
              "aabb_scale": _float(data, "aabb_scale", path, 1.0),
              "normalization": data.get("normalization")},  # capture similarity (taichifield poses)
    )
    check_views(views, path)
    return views
