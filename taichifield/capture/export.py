"""Write a posed scene from a COLMAP model: ``transforms.json`` (instant-ngp format) and ``points3D.ply``.

``transforms.json`` is :func:`taichifield.data.colmap_scene.colmap_transforms` (OpenGL poses,
normalised; ``fl_x, fl_y, cx, cy, k1, k2, p1, p2``; ``aabb_scale``/``scale``/``offset`` giving
the box; ``"normalization"``: the similarity to the capture's coordinates) plus per-frame
``sharpness``, the list of ``unregistered`` images and a ``"poses"`` summary of the run.
``points3D.ply`` holds the sparse points (binary little-endian, float xyz + uchar rgb) in
the same normalised scene frame as the poses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..data.colmap import read_model
from ..data.colmap_scene import colmap_transforms, model_frames
from ..data.normalize import Normalization
from ..metrics.poses import rotation_jumps

__all__ = ["write_scene", "write_points_ply"]


def write_points_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Binary PLY of (N, 3) float positions and (N, 3) uint8 colours, written atomically."""
    xyz = np.asarray(xyz, np.float32).reshape(-1, 3)
    rgb = np.asarray(rgb, np.uint8).reshape(-1, 3)
    rec = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    rec["x"], rec["y"], rec["z"] = xyz.T
    rec["r"], rec["g"], rec["b"] = rgb.T
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(rec.tobytes())


def write_scene(out: Path, sharpness: dict[str, float], result: Any) -> dict[str, Any]:
    """Write ``out/transforms.json`` and ``out/points3D.ply`` from ``out/sparse/0``; returns the json dict.

    Args:
        out: the scene folder.
        sharpness: ``{image name: variance of Laplacian}``.
        result: a :class:`~taichifield.capture.sfm.PosesResult` (for the summary keys).
    """
    model = read_model(out / "sparse" / "0")
    names, c2w = model_frames(model)
    jumps = [[a, b, round(d, 1)] for a, b, d in rotation_jumps(names, c2w)]
    data = colmap_transforms(model, "images", {n: {"sharpness": float(s)} for n, s in sharpness.items()})
    data["unregistered"] = list(result.unregistered)
    data["poses"] = {"given": result.given, "registered": result.registered, "points": result.points,
                     "mean_reprojection_error": result.mean_reprojection_error, "models": result.models,
                     "rotation_jumps": jumps,
                     "flipped_runs": {"found": [[a, b, round(d, 1)] for a, b, d in result.breaks_found],
                                      "left": result.breaks_left, "pairs_removed": result.pairs_removed}}
    with atomic_path(out / "transforms.json") as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2))
    norm = Normalization.from_dict(data["normalization"])
    write_points_ply(out / "points3D.ply", norm.points(model.points.xyz), model.points.rgb)
    return data
