"""Shared pieces of the scene loaders: reading json, images and poses with one-line errors,
the premultiplied-alpha area filter behind ``--downscale``, and the checks that refuse
degenerate scenes (fully transparent images, a box no camera sees, cameras at one spot)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InputError

__all__ = ["read_json", "require", "read_image", "check_pose", "stack_images", "downscale_images", "check_views",
           "check_training_views"]


def read_json(path: Path) -> dict[str, Any]:
    """Parse a json object, raising :class:`InputError` naming the file on any problem."""
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid json ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a json object at the top level")
    return data


def require(data: dict[str, Any], key: str, path: Path, where: str = "") -> Any:
    """``data[key]`` or an :class:`InputError` naming the file and the missing key."""
    if key not in data:
        raise InputError(f"{path}: missing key {key!r}{where}")
    return data[key]


def read_image(path: Path, source: Path) -> np.ndarray:
    """(H, W, 3|4) uint8 image; grey becomes RGB, palette/16-bit images are converted.

    Raises:
        InputError: missing or unreadable image (the message names it and ``source``).
    """
    from PIL import Image

    try:
        found = path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        found = False
    if not found:
        raise InputError(f"{source}: image {str(path)[:200]} not found")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
            elif im.mode != "RGB":
                im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types (SyntaxError, struct.error, ...) on bad data
        detail = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise InputError(f"{source}: cannot read image {path} ({detail})") from None
    return arr


def check_pose(matrix: Any, path: Path, frame: str) -> np.ndarray:
    """A (4, 4) float rigid camera-to-world matrix (a 3x4 one gets the bottom row added).

    Raises:
        InputError: wrong shape, non-finite, or the rotation part is not orthonormal with
            determinant +1 (tolerance 1e-3), or the bottom row is not (0, 0, 0, 1).
    """
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{path}: transform_matrix of {frame} is not a numeric matrix") from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        raise InputError(f"{path}: transform_matrix of {frame} has shape {m.shape}, expected 4x4")
    if not np.all(np.isfinite(m)):
        raise InputError(f"{path}: transform_matrix of {frame} has non-finite entries")
    R = m[:3, :3]
    if (not np.allclose(R.T @ R, np.eye(3), atol=1e-3) or abs(np.linalg.det(R) - 1.0) > 1e-3
            or not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6)):
        raise InputError(f"{path}: transform_matrix of {frame} is not a rigid pose (rotation not orthonormal)")
    return m


def stack_images(images: Sequence[np.ndarray], names: Sequence[Path], source: Path) -> torch.Tensor:
    """(n, H, W, C) uint8; all frames must share one size. Mixed RGB/RGBA become RGBA."""
    if not images:
        raise InputError(f"{source}: no frames in this split")
    h, w = images[0].shape[:2]
    for img, name in zip(images, names):
        if img.shape[:2] != (h, w):
            raise InputError(f"{source}: image {name} is {img.shape[1]}x{img.shape[0]}, "
                             f"others are {w}x{h} (mixed sizes)")
    if any(img.shape[2] == 4 for img in images):
        images = [img if img.shape[2] == 4 else np.concatenate([img, np.full((h, w, 1), 255, np.uint8)], 2)
                  for img in images]
    return torch.from_numpy(np.stack(images))


def downscale_images(images: torch.Tensor, k: int, source: Path | str | None = None) -> torch.Tensor:
    """Area filter by an integer factor, with premultiplied alpha.

    RGB is multiplied by alpha, averaged over ``k x k`` blocks together with alpha, then
    divided by the averaged alpha, so transparent pixels' colours do not bleed into edges.
    Rows/columns beyond a multiple of ``k`` are cropped.

    Args:
        images: (n, H, W, C) uint8, C = 3 or 4.
        k: factor >= 1.
        source: the scene file, for the error message.

    Returns:
        (n, H // k, W // k, C) uint8.

    Raises:
        InputError: ``k`` is larger than the images.
    """
    if k == 1:
        return images
    n, H, W, C = images.shape
    h, w = H // k, W // k
    if h < 1 or w < 1:
        where = f"{source}: " if source is not None else ""
        raise InputError(f"{where}downscale {k} is larger than the {W}x{H} images (no pixels left)")
    x = images[:, : h * k, : w * k].float().view(n, h, k, w, k, C)
    if C == 4:
        a = x[..., 3:4] / 255.0
        rgb = (x[..., :3] * a).mean(dim=(2, 4))
        am = a.mean(dim=(2, 4))
        rgb = torch.where(am > 0, rgb / am.clamp_min(1e-12), torch.zeros_like(rgb))
        out = torch.cat([rgb, am * 255.0], dim=-1)
    else:
        out = x.mean(dim=(2, 4))
    return out.round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------- degenerate scenes

_BOX_EDGES = np.array([(a, b) for a in range(8) for b in range(8) if a < b and bin(a ^ b).count("1") == 1])


def _box_in_view(c2w: np.ndarray, fx: float, fy: float, cx: float, cy: float, width: int, height: int,
                 lo: np.ndarray, hi: np.ndarray, near: float, far: float) -> bool:
    """Whether the box ``[lo, hi]`` meets the camera's view frustum between ``near`` and ``far``.

    The box is clipped to the half-space in front of the camera, its vertices projected with
    the pinhole model (OpenGL: the camera looks down -z, image y grows downwards), and the
    projected convex polygon tested against the image rectangle (widened by 10% for lens
    distortion) by separating axes. Distances are along unit rays, as the marcher uses them.
    """
    centre = c2w[:3, 3]
    if np.all(centre >= lo) and np.all(centre <= hi):
        return True
    nearest = np.clip(centre, lo, hi)
    corners = np.array([[(hi if (i >> k) & 1 else lo)[k] for k in range(3)] for i in range(8)])
    if np.linalg.norm(nearest - centre) > far or np.linalg.norm(corners - centre, axis=1).max() < near:
        return False
    cam = (corners - centre) @ c2w[:3, :3]  # rows: R^T (x - c)
    depth = -cam[:, 2]
    eps = 1e-9 * float(np.linalg.norm(hi - lo))
    pts = [cam[depth >= eps]]
    a, b = _BOX_EDGES[:, 0], _BOX_EDGES[:, 1]
    cross = (depth[a] - eps) * (depth[b] - eps) < 0
    if cross.any():
        s = (eps - depth[a[cross]]) / (depth[b[cross]] - depth[a[cross]])
        pts.append(cam[a[cross]] + s[:, None] * (cam[b[cross]] - cam[a[cross]]))
    p = np.concatenate(pts)
    if len(p) == 0:
        return False  # the whole box is behind the camera
    d = -p[:, 2]
    uv = np.stack([cx + fx * p[:, 0] / d, cy - fy * p[:, 1] / d], axis=1)
    mx, my = 0.1 * width, 0.1 * height
    rect = np.array([[-mx, -my], [width + mx, -my], [width + mx, height + my], [-mx, height + my]])
    diff = (uv[:, None] - uv[None]).reshape(-1, 2)
    axes = np.concatenate([np.eye(2), np.stack([-diff[:, 1], diff[:, 0]], axis=1)])
    axes = axes[np.linalg.norm(axes, axis=1) > 0]
    pu, pr = uv @ axes.T, rect @ axes.T  # (points, axes), (4, axes)
    separated = (pu.max(0) < pr.min(0)) | (pr.max(0) < pu.min(0))
    return not bool(separated.any())


def check_views(views: Any, path: Path) -> None:
    """Refuse a split that no training or evaluation could use (any split, any command):

    * every image fully transparent (RGBA with alpha 0 everywhere): nothing to fit or compare;
    * no camera sees the scene box: no frustum meets the box between near and far.

    Args:
        views: a :class:`~taichifield.data.views.Views` (images (n, H, W, C) uint8, c2w (n, 4, 4)).
        path: the transforms file, for the message.
    """
    images = views.images
    if images.shape[-1] == 4 and int(images[..., 3].amax()) == 0:
        raise InputError(f"{path}: every image of the split is fully transparent (alpha 0 in all "
                         f"{images.shape[0]} frames); there is nothing to fit")
    aabb = views.aabb.detach().cpu().double().numpy()
    c2w = views.c2w.detach().cpu().double().numpy()
    for i, m in enumerate(c2w):
        fx, fy, cx, cy, _ = views.camera(i)
        if _box_in_view(m, fx, fy, cx, cy, views.width, views.height, aabb[0], aabb[1], views.near, views.far):
            return
    lo, hi = (", ".join(f"{v:.3g}" for v in row) for row in aabb)
    raise InputError(f"{path}: no camera sees the scene box [{lo}] .. [{hi}] (within near {views.near:g} .. far "
                     f"{views.far:g}); check the poses (OpenGL: cameras look down -z) and the box")


#: camera centres closer together than this fraction of the scene box are "one spot"
SPREAD_TOLERANCE = 1e-5


def check_training_views(views: Any, path: Path | str | None = None) -> None:
    """Refuse training views without parallax: all cameras at one spot (one camera included).

    A NeRF recovers depth from the same point seen from different positions; views that
    only rotate about one centre (or a single view) fit any depth equally well.
    Evaluation and rendering accept such splits (a one-view test split is fine).
    """
    source = path if path is not None else views.source
    centres = views.c2w[:, :3, 3].detach().cpu().double().numpy()
    box = float((views.aabb[1] - views.aabb[0]).max())
    spread = float(np.linalg.norm(centres - centres.mean(axis=0), axis=1).max())
    if spread <= SPREAD_TOLERANCE * box:
        x, y, z = centres[0]
        n = len(centres)
        who = "the only training camera sits" if n == 1 else f"all {n} training cameras sit"
        raise InputError(f"{source}: {who} at one spot ({x:.4g}, {y:.4g}, {z:.4g}); a NeRF needs views from "
                         "different positions (parallax) to recover depth")
