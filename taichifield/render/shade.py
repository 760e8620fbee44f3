"""Shaded images of signed distance fields: orbit cameras, sphere tracing, Lambert shading.

:func:`render_sdf` traces one ray per pixel with
:func:`~taichifield.render.sphere_trace.sphere_trace`, takes the surface normal from a
normal callable (the field's gradient, by autograd or finite differences) and shades
it with a headlight-style Lambert model, ``albedo * (ambient + (1 - ambient) max(0, n . l))``.

Cameras (from :mod:`taichifield.cameras`) orbit a centre with the y axis up: azimuth
turns about +y (0 looks along -z from +z), elevation lifts the camera above the xz
plane (degrees). Rays, tracing, normals and shading all run on one device; only the
finished image comes back to the host.

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

from .. import cameras, runtime
from .sphere_trace import sphere_trace

__all__ = ["orbit_rays", "lambert_shade", "render_sdf", "save_image"]


def orbit_rays(
    center: Sequence[float],
    distance: float,
    azimuth: float,
    elevation: float,
    width: int,
    height: int,
    fov: float = 40.0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole rays of a camera on a y-up orbit, looking at ``center``.

    The eye is :func:`taichifield.cameras.orbit_eyes` with ``up="y"`` (azimuth 0 on +z,
    90 deg on +x); the pose is :func:`~taichifield.cameras.look_at` with world up +y
    (``-z`` within 0.1 deg of the poles, where +y is the viewing direction); square pixels
    with the principal point at the image centre.

    Args:
        center: (3,) look-at point; distance: camera-to-centre distance.
        azimuth, elevation: degrees; fov: vertical field of view in degrees.
        device: where the rays are built (default: the CPU).

    Returns:
        origins (H*W, 3), unit directions (H*W, 3), float32, row-major from the top-left pixel.
    """
    az = torch.tensor([math.radians(azimuth)], dtype=torch.float32, device=device)
    el = torch.tensor([math.radians(elevation)], dtype=torch.float32, device=device)
    eye = cameras.orbit_eyes(az, el, distance, center, up="y")[0]
    up = (0.0, 1.0, 0.0) if abs(math.radians(elevation)) < math.radians(89.9) else (0.0, 0.0, -1.0)
    c2w = cameras.look_at(eye, torch.tensor(center, dtype=torch.float32, device=device), up)
    f = cameras.focal_from_fov(math.radians(fov), height)
    return cameras.image_rays(c2w, width, height, f, f, 0.5 * width, 0.5 * height)


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
        (N, 3) float32 colours in [0, 1] on ``normals``' device; misses get ``background``.
    """
    dev = normals.device
    lam = (normals * light_dir.reshape(1, 3).to(dev)).sum(-1).clamp(min=0.0)
    col = torch.tensor(albedo, dtype=torch.float32, device=dev) * (ambient + (1 - ambient) * lam)[:, None]
    bg = torch.tensor(background, dtype=torch.float32, device=dev).expand_as(col)
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
    device: torch.device | str | None = None,
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
        device: where rays, tracing, normals and shading run (default
            :func:`taichifield.runtime.device`, where the fields live); ``sdf_fn`` and
            ``normal_fn`` get points there. Only the final image is copied to the host.

    Returns:
        (H, W, 3) uint8 image.
    """
    dev = torch.device(device) if device is not None else runtime.device()
    distance = radius / math.sin(math.radians(fov) / 2) * 1.05
    o, d = orbit_rays(center, distance, azimuth, elevation, width, height, fov, device=dev)
    near, far = max(distance - radius * 1.2, 0.0), distance + radius * 1.2

    def conservative(p: torch.Tensor) -> torch.Tensor:
        return step_scale * sdf_fn(p)

    eps = eps if eps is not None else radius * 1e-3
    t, hit = sphere_trace(conservative, o, d, near, far, max_steps, eps * step_scale, batch_size=batch_size)
    normals = torch.zeros_like(o)
    p = o[hit] + t[hit, None] * d[hit]
    if p.shape[0]:
        n = torch.cat([normal_fn(p[s:s + batch_size]).detach().float() for s in range(0, len(p), batch_size)])
        normals[hit] = torch.nn.functional.normalize(n.to(dev), dim=-1)
    # headlight from above-left of the camera
    light = torch.nn.functional.normalize(-d.mean(0) + torch.tensor([0.0, 0.5, 0.0], device=dev), dim=0)
    img = lambert_shade(normals, hit, light)
    return (img.reshape(height, width, 3).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def save_image(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write an (H, W, 3|4) uint8 image atomically (format from the suffix):
    :func:`taichifield.images.write_image`."""
    from ..images import write_image

    write_image(path, image)
