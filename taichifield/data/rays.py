"""Camera rays on the fly from a split's poses and intrinsics (nothing stored per pixel).

The camera model (pinhole, OpenGL convention: the camera looks down ``-z``, ``+y`` up;
optional OpenCV radial-tangential distortion) lives in :mod:`taichifield.cameras`;
this module applies it to a :class:`~taichifield.data.views.Views` split and reads
the matching pixels. ``distort``/``undistort`` are re-exported from there.

Example::

    idx = torch.randint(len(views), (4096,))
    px = torch.randint(views.width, (4096,)).float(); py = torch.randint(views.height, (4096,)).float()
    rays_o, rays_d = generate_rays(views, idx, px, py)
    target = pixels(views, idx, px, py)          # (4096, C) in [0, 1], alpha kept
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..cameras import distort, image_rays, pixel_rays, undistort
from .views import Views

__all__ = ["generate_rays", "all_rays", "pixels", "undistort", "distort"]


def generate_rays(views: Views, img_idx: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space rays through image points (:func:`taichifield.cameras.pixel_rays` on a split).

    The ray of ``(px, py)`` passes through the image point ``(px + 0.5, py + 0.5)`` (pixel
    units, origin at the image's top-left corner): integer ``px, py`` give pixel centres;
    add a jitter in ``[-0.5, 0.5)`` for anti-aliased training.

    Args:
        views: the split (poses and each view's camera).
        img_idx: (B,) long frame indices.
        px: (B,) float column indices.
        py: (B,) float row indices (downwards).

    Returns:
        rays_o (B, 3), rays_d (B, 3) unit length; float32 on ``views.c2w``'s device.
    """
    idx = img_idx.to(views.c2w.device).long()
    return pixel_rays(views.c2w[idx], px, py, *views.ray_cameras(idx))


def all_rays(views: Views, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays for every pixel of frame ``i``, row-major (``py`` outer, ``px`` inner).

    Returns:
        rays_o (H*W, 3), rays_d (H*W, 3) on ``views.c2w``'s device; reshape results to (H, W, ...).
    """
    fx, fy, cx, cy, dist = views.camera(i)
    return image_rays(views.c2w[int(i)], views.width, views.height, fx, fy, cx, cy, dist)


def pixels(views: Views, img_idx: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
           background: Optional[Sequence[float] | torch.Tensor] = None) -> torch.Tensor:
    """Pixel values at integer ``(px, py)`` (rounded down).

    Args:
        background: None keeps the raw channels (alpha included when present); a (3,)
            colour composites RGBA onto it.

    Returns:
        (B, C) float32 in [0, 1] (C = 3 when composited or the images are RGB, else 4).
    """
    from .. import runtime
    from ..errors import DeviceError

    dev = views.images.device
    for t in (img_idx, px, py):  # the one device rule: indices live with the images, nothing is moved
        if not runtime.same_device(t.device, dev):
            raise DeviceError(f"pixels: indices are on {t.device}, the images on {dev}")
    ix = px.long().clamp(0, views.width - 1)
    iy = py.long().clamp(0, views.height - 1)
    val = views.images[img_idx.long(), iy, ix].float() / 255.0
    if background is None or val.shape[-1] == 3:
        return val
    bg = torch.as_tensor(background, dtype=torch.float32, device=dev)
    a = val[:, 3:4]
    return val[:, :3] * a + bg * (1.0 - a)
