"""Pinhole cameras: rays from a pose, look-at and orbit poses (the project's one camera model).

Convention (OpenGL / Blender, as NeRF-synthetic): a pose ``c2w`` is a (4, 4)
camera-to-world matrix whose columns are the camera's right (+x), up (+y) and back
(+z) axes and its centre; the camera looks down its local ``-z`` axis. Image
coordinates ``(u, v)`` start at the image's top-left corner with ``v`` growing
downwards, so pixel ``(px, py)`` has its centre at ``(px + 0.5, py + 0.5)``. The ray
through ``(u, v)`` has the camera-space direction
``((u - cx) / fx, -(v - cy) / fy, -1)`` (Hartley & Zisserman, *Multiple View Geometry*,
eq. 6.1, with the y and z axes flipped to OpenGL's), optionally after removing OpenCV's
radial-tangential distortion ``(k1, k2, p1, p2)`` by Newton iterations (as instant-ngp's
``iterative_camera_undistortion``).

Every function is plain torch: results are on the device (and, for poses, the dtype)
of the pose or eye tensors passed in; nothing is moved behind the caller's back.

Used by :mod:`taichifield.data.rays` (training and evaluation rays),
:mod:`taichifield.scenes` (the procedural scene's camera rig and views),
:mod:`taichifield.render.shade` (SDF previews) and the NeRF renderer and viewer.

Example:
    >>> c2w = look_at(torch.tensor([0.0, 0.0, 4.0]), torch.zeros(3), up=(0.0, 1.0, 0.0))
    >>> o, d = image_rays(c2w, 4, 4, fx=2.0, fy=2.0, cx=2.0, cy=2.0)   # (16, 3) each
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .errors import InputError

__all__ = [
    "focal_from_fov",
    "distort",
    "undistort",
    "camera_dirs",
    "pixel_rays",
    "image_rays",
    "look_at",
    "orbit_eyes",
    "orbit_poses",
]

Distortion = Optional[Sequence[float] | Sequence[torch.Tensor]]
"""OpenCV ``(k1, k2, p1, p2)``: four floats, four (B,) tensors (a camera per point) or None."""
Scalar = float | torch.Tensor
"""An intrinsic in pixels: one float for all points, or a (B,) tensor (a camera per point)."""


def focal_from_fov(fov: float, size: float) -> float:
    """Focal length in pixels of a field of view ``fov`` (radians) across ``size`` pixels: ``size / (2 tan(fov / 2))``."""
    return 0.5 * float(size) / math.tan(0.5 * float(fov))


def distort(x: torch.Tensor, y: torch.Tensor, coeffs: Sequence[Scalar]) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV radial-tangential distortion of normalised image coordinates (any shape).

    ``r^2 = x^2 + y^2``; ``x_d = x (1 + k1 r^2 + k2 r^4) + 2 p1 x y + p2 (r^2 + 2 x^2)`` and
    ``y_d = y (1 + k1 r^2 + k2 r^4) + p1 (r^2 + 2 y^2) + 2 p2 x y``.
    """
    k1, k2, p1, p2 = coeffs
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + k2 * r2)
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return xd, yd


def undistort(xd: torch.Tensor, yd: torch.Tensor, coeffs: Sequence[Scalar],
              iterations: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert :func:`distort` by Newton's method on the 2x2 system (per point, any shape; the
    coefficients are floats or tensors broadcasting with the points)."""
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


def camera_dirs(u: torch.Tensor, v: torch.Tensor, fx: Scalar, fy: Scalar, cx: Scalar, cy: Scalar,
                distortion: Distortion = None) -> torch.Tensor:
    """Camera-space directions (B, 3) through image points ``(u, v)`` (B,), not normalised.

    ``(u, v)`` are continuous image coordinates (pixel units, top-left corner origin,
    ``v`` down); the result is ``((u - cx) / fx, -(v - cy) / fy, -1)`` on ``u``'s device
    (after undistortion when ``distortion`` is given). Intrinsics and distortion coefficients
    are floats or (B,) tensors on ``u``'s device (one camera per point).
    """
    x = (u - cx) / fx
    y = (v - cy) / fy
    if distortion is not None:
        x, y = undistort(x, y, distortion)
    return torch.stack([x, -y, -torch.ones_like(x)], dim=-1)


def pixel_rays(c2w: torch.Tensor, px: torch.Tensor, py: torch.Tensor, fx: Scalar, fy: Scalar, cx: Scalar,
               cy: Scalar, distortion: Distortion = None) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space rays through pixels ``(px, py)``: centres at ``(px + 0.5, py + 0.5)``.

    Integer ``px, py`` give pixel centres; add a jitter in ``[-0.5, 0.5)`` for
    anti-aliased training.

    Args:
        c2w: (4, 4) one pose for all rays, or (B, 4, 4) one pose per ray.
        px: (B,) column indices; py: (B,) row indices (downwards); any device, moved to ``c2w``'s.
        fx, fy, cx, cy: intrinsics in pixels (principal point with the image-edge origin):
            floats, or (B,) tensors on ``c2w``'s device (a camera per ray).
        distortion: OpenCV ``(k1, k2, p1, p2)`` (floats or (B,) tensors) or None.

    Returns:
        rays_o (B, 3), rays_d (B, 3) unit length; float32 on ``c2w``'s device.
    """
    c2w = c2w.to(torch.float32)
    dev = c2w.device
    dirs_cam = camera_dirs(px.to(dev, torch.float32) + 0.5, py.to(dev, torch.float32) + 0.5, fx, fy, cx, cy, distortion)
    if c2w.dim() == 2:
        rays_d = dirs_cam @ c2w[:3, :3].T
        rays_o = c2w[:3, 3].expand_as(rays_d)
    else:
        rays_d = torch.einsum("bij,bj->bi", c2w[:, :3, :3], dirs_cam)
        rays_o = c2w[:, :3, 3]
    rays_d = rays_d / rays_d.norm(dim=-1, keepdim=True)
    return rays_o.contiguous(), rays_d.contiguous()


def image_rays(c2w: torch.Tensor, width: int, height: int, fx: float, fy: float, cx: float, cy: float,
               distortion: Distortion = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through every pixel centre of one view, row-major (``py`` outer, ``px`` inner).

    Args:
        c2w: (4, 4) pose; the rays are built on its device.

    Returns:
        rays_o (H*W, 3), rays_d (H*W, 3) unit length, float32; reshape results to (H, W, ...).
    """
    dev = c2w.device
    py, px = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=dev),
                            torch.arange(width, dtype=torch.float32, device=dev), indexing="ij")
    return pixel_rays(c2w, px.reshape(-1), py.reshape(-1), fx, fy, cx, cy, distortion)


def look_at(eye: torch.Tensor, target: torch.Tensor | Sequence[float], up: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """OpenGL camera-to-world poses of cameras at ``eye`` looking at ``target``.

    Columns: right ``= normalize(up x back)``, camera up ``= back x right``, back
    ``= normalize(eye - target)`` (the camera looks down ``-back``), centre ``eye``. The
    camera's up is the component of ``up`` orthogonal to the viewing direction, so
    ``up`` is the world's "up" for this caller: ``(0, 0, 1)`` for Blender's z-up scenes,
    ``(0, 1, 0)`` for y-up ones.

    Args:
        eye: (n, 3) or (3,) camera centres.
        target: (3,) or (n, 3) points looked at.
        up: (3,) world up direction (any length).

    Returns:
        (n, 4, 4) poses, or (4, 4) when ``eye`` is (3,); ``eye``'s dtype and device.

    Raises:
        InputError: ``up`` parallel to a viewing direction, or ``eye == target``.
    """
    single = eye.dim() == 1
    eye2 = eye.reshape(-1, 3)
    tgt = torch.as_tensor(target, dtype=eye.dtype, device=eye.device).expand_as(eye2)
    upv = torch.as_tensor(up, dtype=eye.dtype, device=eye.device).reshape(3).expand_as(eye2)
    back = eye2 - tgt
    back_n = back.norm(dim=-1, keepdim=True)
    right = torch.linalg.cross(upv, back / back_n.clamp(min=1e-30), dim=-1)
    right_n = right.norm(dim=-1, keepdim=True)
    if bool((back_n <= 0).any()) or bool((right_n < 1e-9 * upv.norm(dim=-1, keepdim=True)).any()):
        raise InputError(f"look_at: up {tuple(float(x) for x in upv[0])} is parallel to a viewing direction "
                         "(or a camera sits on its target)")
    back = back / back_n
    right = right / right_n
    cam_up = torch.linalg.cross(back, right, dim=-1)
    c2w = torch.zeros(eye2.shape[0], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, cam_up, back, eye2
    c2w[:, 3, 3] = 1.0
    return c2w[0] if single else c2w


_AXES = {"x": 0, "y": 1, "z": 2}


def orbit_eyes(azimuth: torch.Tensor, elevation: torch.Tensor, radius: float,
               target: Sequence[float] | torch.Tensor = (0.0, 0.0, 0.0), up: str = "z") -> torch.Tensor:
    """Camera centres (n, 3) on a sphere of ``radius`` around ``target``.

    With the world axes ``e_0, e_1, e_2`` (x, y, z) and ``up = e_k``, azimuth turns from
    ``a = e_{k+1}`` towards ``b = e_{k+2}`` (indices mod 3) and elevation lifts towards ``up``:
    ``eye = target + r (cos(el) (cos(az) a + sin(az) b) + sin(el) up)``. So for ``up="z"``
    (Blender) azimuth 0 is on +x and 90 deg on +y; for ``up="y"`` azimuth 0 is on +z and
    90 deg on +x.

    Args:
        azimuth, elevation: (n,) radians (dtype and device of the result).
        up: ``"x"``, ``"y"`` or ``"z"``.
    """
    if up not in _AXES:
        raise InputError(f"orbit_eyes: up must be one of x, y, z, not {up!r}")
    k = _AXES[up]
    el = elevation.to(azimuth.dtype)
    ce = el.cos()
    coords = [None, None, None]
    coords[(k + 1) % 3] = ce * azimuth.cos()
    coords[(k + 2) % 3] = ce * azimuth.sin()
    coords[k] = el.sin()
    c = torch.as_tensor(target, dtype=azimuth.dtype, device=azimuth.device)
    return c + radius * torch.stack(coords, dim=-1)  # type: ignore[arg-type]


def orbit_poses(azimuth: torch.Tensor, elevation: torch.Tensor, radius: float,
                target: Sequence[float] | torch.Tensor = (0.0, 0.0, 0.0), up: str = "z") -> torch.Tensor:
    """Poses (n, 4, 4) of cameras at :func:`orbit_eyes` looking at ``target`` with world up ``up``.

    Elevations of +-90 deg put ``up`` along the viewing direction and raise
    :class:`~taichifield.errors.InputError` (see :func:`look_at`).
    """
    eye = orbit_eyes(azimuth, elevation, radius, target, up)
    up_vec = torch.zeros(3, dtype=eye.dtype, device=eye.device)
    up_vec[_AXES[up]] = 1.0
    return look_at(eye, target, up_vec)
