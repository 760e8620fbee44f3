"""Camera rays on the fly from poses and intrinsics (nothing stored per pixel).

Pinhole camera, OpenGL convention (camera looks down ``-z``, ``+y`` up), optional OpenCV
radial-tangential distortion ``(k1, k2, p1, p2)`` removed by Newton iterations (as
instant-ngp's ``iterative_camera_undistortion``).

Example::

    idx = torch.randint(len(views), (4096,))
    px = torch.randint(views.width, (4096,)).float(); py = torch.randint(views.height, (4096,)).float()
    rays_o, rays_d = generate_rays(views, idx, px, py)
    target = pixels(views, idx, px, py)          # (4096, C) in [0, 1], alpha kept
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .views import Views

__all__ = ["generate_rays", "all_rays", "pixels", "undistort", "distort"]


def distort(x: torch.Tensor, y: torch.Tensor, coeffs: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV radial-tangential distortion of normalised image coordinates (any shape)."""
    k1, k2, p1, p2 = coeffs
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + k2 * r2)
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return xd, yd


def undistort(xd: torch.Tensor, yd: torch.Tensor, coeffs: Sequence[float],
              iterations: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert :func:`distort` by Newton's method on the 2x2 system (per point)."""
    k1, k2, p1, p2 = coeffs
    x, y = xd.clone(), yd.clone()
    for _ in range(iterations):
        fx, fy = distort(x, y, coeffs)
        fx, fy = fx - xd, fy - yd
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + k2 * r2)
        d = 2.0 * (k1 + 2.0 * k2 * r2)
        a = radial + d * x * x + 2.0 * p1 * y + 6.0 * p2 * x   # dxd/dx
        b = d * x * y + 2.0 * p1 * x + 2.0 * p2 * y            # dxd/dy = dyd/dx
        c = radial + d * y * y + 6.0 * p1 * y + 2.0 * p2 * x   # dyd/dy
        det = a * c - b * b
        det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
        x = x - (c * fx - b * fy) / det
        y = y - (a * fy - b * fx) / det
    return x, y


def generate_rays(views: Views, img_idx: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space rays through image points.

    The ray of ``(px, py)`` passes through the image point ``(px + 0.5, py + 0.5)`` (pixel
    units, origin at the image's top-left corner): integer ``px, py`` give pixel centres;
    add a jitter in ``[-0.5, 0.5)`` for anti-aliased training.

    Args:
        views: the split (intrinsics, poses, distortion).
        img_idx: (B,) long frame indices.
        px: (B,) float column indices.
        py: (B,) float row indices (downwards).

    Returns:
        rays_o (B, 3), rays_d (B, 3) unit length; float32 on ``views.c2w``'s device.
    """
    c2w = views.c2w[img_idx.to(views.c2w.device).long()]
    dev = c2w.device
    x = (px.to(dev, torch.float32) + 0.5 - views.cx) / views.fx
    y = (py.to(dev, torch.float32) + 0.5 - views.cy) / views.fy
    if views.distortion is not None:
        x, y = undistort(x, y, views.distortion)
    dirs_cam = torch.stack([x, -y, -torch.ones_like(x)], dim=-1)
    rays_d = torch.einsum("bij,bj->bi", c2w[:, :3, :3], dirs_cam)
    rays_d = rays_d / rays_d.norm(dim=-1, keepdim=True)
    return c2w[:, :3, 3].contiguous(), rays_d.contiguous()


def all_rays(views: Views, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays for every pixel of frame ``i``, row-major (``py`` outer, ``px`` inner).

    Returns:
        rays_o (H*W, 3), rays_d (H*W, 3); reshape results to (H, W, ...).
    """
    H, W = views.height, views.width
    py, px = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                            indexing="ij")
    idx = torch.full((H * W,), int(i), dtype=torch.long)
    return generate_rays(views, idx, px.reshape(-1), py.reshape(-1))


def pixels(views: Views, img_idx: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
           background: Optional[Sequence[float] | torch.Tensor] = None) -> torch.Tensor:
    """Pixel values at integer ``(px, py)`` (rounded down).

    Args:
        background: None keeps the raw channels (alpha included when present); a (3,)
            colour composites RGBA onto it.

    Returns:
        (B, C) float32 in [0, 1] (C = 3 when composited or the images are RGB, else 4).
    """
    dev = views.images.device
    ix = px.to(dev).long().clamp(0, views.width - 1)
    iy = py.to(dev).long().clamp(0, views.height - 1)
    val = views.images[img_idx.to(dev).long(), iy, ix].float() / 255.0
    if background is None or val.shape[-1] == 3:
        return val
    bg = torch.as_tensor(background, dtype=torch.float32, device=dev)
    a = val[:, 3:4]
    return val[:, :3] * a + bg * (1.0 - a)
