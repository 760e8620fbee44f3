"""COLMAP scenes as :class:`~taichifield.data.views.Views`: ``SCENE/sparse/0`` + ``SCENE/images``.

The layout every COLMAP user has (``colmap mapper`` output next to the photos)::

    SCENE/images/<name>                       # the photos the model names
    SCENE/sparse/0/{cameras,images,points3D}.{bin,txt}

Frames are the registered images in name order; splits as instant-ngp scenes
(:mod:`taichifield.data.ngp`): test/val = every 8th frame (0, 8, ...), train = the rest, ``all``.
Poses are converted from COLMAP's ``cam_from_world`` (OpenCV axes) to OpenGL camera-to-world
and normalised (:mod:`taichifield.data.normalize`) from *all* registered cameras and the sparse
points, so every split of one model shares one scene frame. Cameras: SIMPLE_PINHOLE, PINHOLE,
SIMPLE_RADIAL, RADIAL and OPENCV map onto the project's pinhole + OpenCV ``(k1, k2, p1, p2)``
model (rays are undistorted by :func:`taichifield.cameras.undistort`). Images may each have their
own camera (COLMAP's default when mapping without ``single_camera``): the views then carry one
camera per view (:attr:`~taichifield.data.views.Views.cameras`); all must share one image size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..errors import InputError
from .blender import load_images
from .colmap import ColmapCamera, ColmapModel, find_model, read_model
from .loading import check_views, downscale_images
from .ngp import _select
from .normalize import Normalization, compute_normalization, opencv_w2c_to_opengl_c2w
from .views import Views, camera_fields

__all__ = ["SUPPORTED_MODELS", "camera_intrinsics", "model_frames", "image_cameras", "colmap_transforms",
           "is_colmap_scene", "load_colmap"]

SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")

Intrinsics = tuple[float, float, float, float, Optional[tuple[float, float, float, float]]]


def camera_intrinsics(cam: ColmapCamera, source: Path | str = "") -> Intrinsics:
    """``(fx, fy, cx, cy, distortion)`` of a COLMAP camera; distortion is OpenCV ``(k1, k2, p1, p2)`` or None.

    Raises:
        InputError: a model the project's camera cannot represent (fisheye, thin prism, FOV, FULL_OPENCV).
    """
    p = [float(v) for v in cam.params]
    if cam.model == "SIMPLE_PINHOLE":
        return p[0], p[0], p[1], p[2], None
    if cam.model == "PINHOLE":
        return p[0], p[1], p[2], p[3], None
    if cam.model == "SIMPLE_RADIAL":
        dist = (p[3], 0.0, 0.0, 0.0)
        return p[0], p[0], p[1], p[2], dist if any(dist) else None
    if cam.model == "RADIAL":
        dist = (p[3], p[4], 0.0, 0.0)
        return p[0], p[0], p[1], p[2], dist if any(dist) else None
    if cam.model == "OPENCV":
        dist = (p[4], p[5], p[6], p[7])
        return p[0], p[1], p[2], p[3], dist if any(dist) else None
    raise InputError(f"{source}: camera model {cam.model} is not supported ({', '.join(SUPPORTED_MODELS)}); "
                     "undistort the images first (colmap image_undistorter)")


def _sorted_images(model: ColmapModel) -> list[Any]:
    return sorted(model.images.values(), key=lambda im: im.name)


def image_cameras(model: ColmapModel) -> tuple[np.ndarray, int, int]:
    """Each registered image's camera, in name order (as :func:`model_frames`).

    Returns:
        (n, 8) float64 rows ``fx, fy, cx, cy, k1, k2, p1, p2`` and the shared ``width, height``.

    Raises:
        InputError: no registered images, an unsupported camera model, or cameras of different
            image sizes (the views are one stack of images).
    """
    images = _sorted_images(model)
    if not images:
        raise InputError(f"{model.path}: the COLMAP model has no registered images")
    rows, sizes = [], set()
    for im in images:
        cam = model.cameras[im.camera_id]  # read_model refuses images whose camera is missing
        fx, fy, cx, cy, dist = camera_intrinsics(cam, model.path)
        rows.append([fx, fy, cx, cy, *(dist or (0.0, 0.0, 0.0, 0.0))])
        sizes.add((cam.width, cam.height))
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h}" for w, h in sorted(sizes))
        raise InputError(f"{model.path}: the cameras have different image sizes ({listed}); one size is supported")
    (width, height), = sizes
    return np.asarray(rows, dtype=np.float64), int(width), int(height)


def model_frames(model: ColmapModel) -> tuple[list[str], np.ndarray]:
    """Registered image names in name order and their (n, 4, 4) OpenGL camera-to-world (capture coordinates)."""
    images = _sorted_images(model)
    c2w = np.stack([opencv_w2c_to_opengl_c2w(im.rotation(), im.tvec) for im in images]) if images else np.zeros((0, 4, 4))
    return [im.name for im in images], c2w


def _normalization(model: ColmapModel, c2w: np.ndarray) -> Normalization:
    return compute_normalization(c2w, model.points.xyz if len(model.points) else None)


def colmap_transforms(model: ColmapModel, images_dir: str = "images",
                      extra: Optional[dict[str, dict[str, Any]]] = None) -> dict[str, Any]:
    """An instant-ngp ``transforms.json`` dict of a model (read back by :func:`taichifield.data.load_ngp`).

    Poses are normalised (OpenGL, scene coordinates); ``scale`` 0.5 and ``offset`` 0.5 make the
    loader's box ``[-aabb_scale, aabb_scale]^3``; ``"normalization"`` holds the similarity to
    the capture's coordinates. ``extra`` maps image names to per-frame keys (e.g. ``sharpness``).
    One shared camera is written at the top level; cameras that differ per image are written
    into each frame (instant-ngp's per-frame ``fl_x .. p2``).
    """
    rows, width, height = image_cameras(model)
    names, c2w = model_frames(model)
    norm = _normalization(model, c2w)
    keys = ("fl_x", "fl_y", "cx", "cy", "k1", "k2", "p1", "p2")
    shared = bool(np.all(rows == rows[0]))
    camera = {k: float(v) for k, v in zip(keys, rows[0])} if shared else {}
    frames = [{"file_path": f"{images_dir}/{n}", "transform_matrix": m.tolist(),
               **({} if shared else {k: float(v) for k, v in zip(keys, r)}), **(extra or {}).get(n, {})}
              for n, m, r in zip(names, norm.poses(c2w), rows)]
    return {"camera_model": "OPENCV", **camera, "w": width, "h": height, "aabb_scale": norm.aabb_scale,
            "scale": 0.5, "offset": [0.5, 0.5, 0.5], "normalization": norm.to_dict(), "frames": frames}


def is_colmap_scene(path: str | Path) -> bool:
    """Whether ``path`` is a folder with a COLMAP model (itself, ``sparse/0`` or ``sparse``)."""
    return Path(path).is_dir() and find_model(path) is not None


def load_colmap(path: str | Path, split: str = "train", downscale: int = 1,
                background: Sequence[float] = (1.0, 1.0, 1.0)) -> Views:
    """Load a split of a COLMAP scene folder (see the module docstring).

    Args:
        path: the scene folder (holding ``sparse/0`` and ``images``).
        split: ``train``, ``test``/``val`` (every 8th registered image by name) or ``all``.
        downscale: integer area-filter factor; intrinsics scale with it.
        background: default compositing colour for RGBA frames.

    Returns:
        :class:`Views` in normalised scene coordinates; ``meta["normalization"]`` is the
        :meth:`~taichifield.data.normalize.Normalization.to_dict` of the capture similarity.

    Raises:
        InputError: no or a malformed model, an unsupported camera model, cameras of different
            sizes, missing images, or images whose size differs from the camera's.
    """
    root = Path(path)
    model = read_model(root)
    rows, width, height = image_cameras(model)
    names, c2w = model_frames(model)
    norm = _normalization(model, c2w)
    c2w = norm.poses(c2w)
    chosen = _select(len(names), split, model.path)
    if not chosen:
        raise InputError(f"{model.path}: split {split!r} has no frames ({len(names)} registered images)")
    image_dir = root / "images"
    if not image_dir.is_dir():
        raise InputError(f"{root}: no images/ folder next to the COLMAP model")
    paths = [image_dir / names[i] for i in chosen]
    images = load_images(paths, model.path)
    H0, W0 = int(images.shape[1]), int(images.shape[2])
    if (W0, H0) != (width, height):
        raise InputError(f"{image_dir}: images are {W0}x{H0} but the COLMAP camera is {width}x{height}")
    k = int(downscale)
    images = downscale_images(images, k, model.path)
    poses = torch.from_numpy(c2w[chosen]).float()
    aabb = torch.tensor(norm.aabb(), dtype=torch.float32)
    corners = torch.stack(torch.meshgrid(*[aabb[:, j] for j in range(3)], indexing="ij"), -1).reshape(-1, 3)
    far = float(torch.cdist(poses[:, :3, 3], corners).max())
    views = Views(
        images=images, c2w=poses, **camera_fields(rows[chosen], k),
        width=int(images.shape[2]), height=int(images.shape[1]),
        file_names=[p.name for p in paths], aabb=aabb, near=0.0, far=far,
        background=tuple(float(b) for b in background),  # type: ignore[arg-type]
        source=str(model.path),
        meta={"format": "colmap", "split": split, "downscale": k, "frame_indices": chosen,
              "aabb_scale": norm.aabb_scale, "normalization": norm.to_dict()},
    )
    check_views(views, model.path)
    return views
