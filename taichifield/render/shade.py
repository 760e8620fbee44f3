"""Shaded images of signed distance fields: orbit cameras, sphere tracing, Lambert shading.

:func:`render_sdf` traces one ray per pixel with
:func:`~taichifield.render.sphere_trace.sphere_trace`, takes the surface normal from a
normal callable (the field's gradient, by autograd or finite differences) and shades
it with a headlight-style Lambert model, ``albedo * (ambient + (1 - ambient) max(0, n . l))``.

Cameras orbit a centre with the y axis up: azimuth turns about +y (0 looks along -z
from +z), elevation lifts the camera above the xz plane (degrees).

Example:
    >>> sphere = lambda p: p.norm(dim=-1) - 1.0
    >>> normals = lambda p: torch.nn.functional.normalize(p, dim=-1)
    >>> img = render_sdf(sphere, normals, center=(0, 0, 0), radius=1.0, width=64, height=64)
    >>> img.shape, img.dtype                                # (64, 64, 3) uint8
"""

from __future__ import annotations

import math
import os
from typing import Callable, Sequence

import numpy as np
import torch

from ..atomic import atomic_path

__all__ = ["orbit_rays", "lambert_shade", "render_sdf", "save_image"]


def orbit_rays(
    center: Sequence[float],
    distance: float,
    azimuth: float,
    elevation: float,
    width: int,
    height: int,
    fov: float = 40.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole rays of a camera on an orbit, looking at ``center``.

    Args:
        center: (3,) look-at point; distance: camera-to-centre distance.
        azimuth, elevation: degrees; fov: vertical field of view in degrees.

    Returns:
        origins (H*W, 3), unit directions (H*W, 3), row-major from the top-left pixel.
    """
    az, el = math.radians(azimuth), math.radians(elevation)
    c = torch.tensor(center, dtype=torch.float32)
    back = torch.tensor([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    eye = c + distance * back
    forward = -back
    up0 = torch.tensor([0.0, 1.0, 0.0]) if abs(el) < math.radians(89.9) else torch.tensor([0.0, 0.0, -1.0])
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up0), dim=0)
    up = torch.linalg.cross(right, forward)
    f = 0.5 * height / math.tan(math.radians(fov) / 2)
    j, i = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    x = (i + 0.5 - width / 2) / f
    y = -(j + 0.5 - height / 2) / f
    d = forward + x[..., None] * right + y[..., None] * up
    d = torch.nn.functional.normalize(d.reshape(-1, 3), dim=-1)
    return eye.expand_as(d).contiguous(), d


def lambert_shade(
    normals: torch.Tensor,
    hit: torch.Tensor,
    light_dir: torch.Tensor,
    albedo: Sequence[float] = (0.75, 0.78, 0.85),
    ambient: float = 0.2,
    background: Sequence[float] = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Lambert shading of (N, 3) unit normals; (N,) bool hits; (3,) unit light direction.

    Returns:
        (N, 3) float32 colours in [0, 1]; misses get ``background``.
    """
    lam = (normals * light_dir.reshape(1, 3)).sum(-1).clamp(min=0.0)
    col = torch.tensor(albedo, dtype=torch.float32) * (ambient + (1 - ambient) * lam)[:, None]
    bg = torch.tensor(background, dtype=torch.float32).expand_as(col)
    return torch.where(hit[:, None], col, bg).clamp(0.0, 1.0)


def render_sdf(
    sdf_fn: Callable[[torch.Tensor], torch.Tensor],
    normal_fn: Callable[[torch.Tensor], torch.Tensor],
    center: Sequence[float],
    radius: float,
    *,
    width: int = 512,
    height: int = 512,
    azimuth: float = 30.0,
    elevation: float = 20.0,
    fov: float = 40.0,
    max_steps: int = 256,
    eps: float | None = None,
    step_scale: float = 0.7,
    batch_size: int = 2**16,
) -> np.ndarray:
    """Sphere-trace and shade an SDF seen from an orbit camera.

    Args:
        sdf_fn: (M, 3) -> (M,) signed distances (world units).
        normal_fn: (K, 3) surface points -> (K, 3) normals (normalised here).
        center: (3,) look-at point; radius: radius of a sphere holding the object
            (sets the camera distance so it fills the view, and near/far).
        width, height: image size; azimuth, elevation, fov: degrees.
        eps: hit threshold (default ``radius * 1e-3``).
        step_scale: the tracer steps ``step_scale * |u|``: a learned field's Lipschitz
            constant can exceed 1 near thin parts, and full steps then jump through them
            (the hit lands on the far side, facing away; seen on the bunny's ears).

    Returns:
        (H, W, 3) uint8 image.
    """
    from .sphere_trace import sphere_trace

    distance = radius / math.sin(math.radians(fov) / 2) * 1.05
    o, d = orbit_rays(center, distance, azimuth, elevation, width, height, fov)
    near, far = max(distance - radius * 1.2, 0.0), distance + radius * 1.2
    def conservative(p: torch.Tensor) -> torch.Tensor:
        return step_scale * sdf_fn(p)

    eps = eps if eps is not None else radius * 1e-3
    t, hit = sphere_trace(conservative, o, d, near, far, max_steps, eps * step_scale, batch_size=batch_size)
    t, hit = t.cpu(), hit.cpu()
    normals = torch.zeros_like(o)
    if bool(hit.any()):
        p = o[hit] + t[hit, None] * d[hit]
        n = torch.cat([normal_fn(p[s:s + batch_size]).detach().float().cpu() for s in range(0, len(p), batch_size)])
        normals[hit] = torch.nn.functional.normalize(n, dim=-1)
    # headlight from above-left of the camera
    light = torch.nn.functional.normalize(-d.mean(0) + torch.tensor([0.0, 0.5, 0.0]), dim=0)
    img = lambert_shade(normals, hit, light)
    return (img.reshape(height, width, 3).numpy() * 255 + 0.5).astype(np.uint8)


def save_image(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write an (H, W, 3|4) uint8 image atomically (format from the suffix, via Pillow)."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp)
