"""Shared pieces of the scene loaders: reading json, images and poses with one-line errors,
and the premultiplied-alpha area filter behind ``--downscale``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import InputError

__all__ = ["read_json", "require", "read_image", "check_pose", "stack_images", "downscale_images"]


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
