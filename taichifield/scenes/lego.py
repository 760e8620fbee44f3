"""A procedural LEGO-brick scene: analytic SDF, per-brick colours, shading and a camera rig.

The shipped ``scenes/lego`` stands in for NeRF-synthetic's lego (which cannot be
downloaded here). It is a 10x10-stud base plate carrying eight bricks with studs,
some stacked up to four levels. Units follow real LEGO proportions scaled so one stud
pitch is 0.2: a brick is 0.24 tall, a plate 0.08, a stud 0.12 wide and 0.04 tall. The
model is centred on the origin, z up (Blender), inside ``[-1, 1]^2 x [-0.40, 0.68]``.

Everything is vectorised torch on ``(N, 3)`` points, so the same SDF drives the
project's sphere tracer (views), marching cubes (ground-truth mesh) and tests.

Shading (see :func:`shade`) is Lambert + Blinn-Phong specular under a fixed
world-space key light plus ambient, so radiance depends on the view direction.

Camera rig (see :func:`camera_rig`): like NeRF-synthetic, cameras look at the origin
from the upper hemisphere at radius ~4 with ``camera_angle_x = 0.6911``; train/val
poses are random (seeded) on the hemisphere, test poses follow a circle around the
object with a gently varying elevation (like the original test path). Poses are
OpenGL/Blender camera-to-world matrices (camera looks down its -z axis, +y up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..cameras import orbit_poses

__all__ = [
    "Brick",
    "BRICKS",
    "BASE_PLATE",
    "PITCH",
    "BRICK_HEIGHT",
    "PLATE_HEIGHT",
    "SCENE_BOUNDS",
    "lego_sdf",
    "lego_sdf_and_brick",
    "brick_sdfs",
    "lego_albedo",
    "lego_normals",
    "shade",
    "camera_rig",
]

PITCH = 0.2  # stud pitch (8 mm in real LEGO)
BRICK_HEIGHT = 0.24  # 9.6 mm
PLATE_HEIGHT = 0.08  # 3.2 mm
STUD_RADIUS = 0.06  # 4.8 mm diameter
STUD_HEIGHT = 0.04  # 1.7 mm
EDGE_ROUNDING = 0.006  # bevel radius of brick edges
BASE_Z = -0.40  # bottom of the base plate
BASE_STUDS = 10  # base plate is BASE_STUDS x BASE_STUDS studs
ORIGIN_XY = -0.5 * BASE_STUDS * PITCH  # world x/y of the base plate's corner



@dataclass(frozen=True)
class Brick:
    """A rectangular brick (or plate) on the stud grid.

    Attributes:
        sx, sy: first stud column/row it covers on the base plate (0..9).
        nx, ny: footprint in studs.
        level: 0 sits on the base plate, 1 on a level-0 brick, ...
        color: linear RGB albedo in [0, 1].
        height: BRICK_HEIGHT, or PLATE_HEIGHT for plates.
    """

    sx: int
    sy: int
    nx: int
    ny: int
    level: int
    color: tuple[float, float, float]
    height: float = BRICK_HEIGHT

    def box(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """(min corner, max corner) of the brick body, studs excluded."""
        z0 = BASE_Z + PLATE_HEIGHT + self.level * BRICK_HEIGHT if self.height == BRICK_HEIGHT else BASE_Z
        x0, y0 = ORIGIN_XY + self.sx * PITCH, ORIGIN_XY + self.sy * PITCH
        return (x0, y0, z0), (x0 + self.nx * PITCH, y0 + self.ny * PITCH, z0 + self.height)


BASE_PLATE = Brick(0, 0, BASE_STUDS, BASE_STUDS, 0, (0.30, 0.52, 0.28), height=PLATE_HEIGHT)
BRICKS: tuple[Brick, ...] = (
    BASE_PLATE,
    Brick(1, 1, 4, 2, 0, (0.80, 0.08, 0.07)),  # red 2x4
    Brick(6, 1, 2, 2, 0, (0.05, 0.25, 0.75)),  # blue 2x2
    Brick(2, 4, 2, 4, 0, (0.95, 0.78, 0.05)),  # yellow 2x4
    Brick(6, 6, 3, 2, 0, (0.35, 0.70, 0.90)),  # light blue 2x3
    Brick(3, 1, 2, 4, 1, (0.92, 0.45, 0.05)),  # orange 2x4 on red and yellow
    Brick(6, 1, 2, 2, 1, (0.90, 0.90, 0.88)),  # white 2x2 on blue
    Brick(3, 2, 2, 2, 2, (0.55, 0.15, 0.60)),  # purple 2x2 on orange
    Brick(3, 2, 1, 2, 3, (0.15, 0.15, 0.17)),  # black 1x2 on purple
)


def _bounds(bricks: tuple[Brick, ...], margin: float = 0.01) -> tuple[tuple[float, ...], tuple[float, ...]]:
    los = [b.box()[0] for b in bricks]
    his = [b.box()[1] for b in bricks]
    lo = tuple(min(p[k] for p in los) - margin for k in range(3))
    hi = tuple(max(p[k] for p in his) + (STUD_HEIGHT if k == 2 else 0.0) + margin for k in range(3))
    return lo, hi


# Axis-aligned box enclosing the model, studs included, with a 0.01 margin:
# about (-1.01, -1.01, -0.41) .. (1.01, 1.01, 0.69).
SCENE_BOUNDS = _bounds(BRICKS)


def _box_sdf(p: torch.Tensor, lo: tuple[float, ...], hi: tuple[float, ...], r: float) -> torch.Tensor:
    """Exact SDF of an axis-aligned box with edges rounded by ``r``: (N,3) -> (N,)."""
    c = torch.tensor([(a + b) * 0.5 for a, b in zip(lo, hi)], dtype=p.dtype, device=p.device)
    h = torch.tensor([(b - a) * 0.5 - r for a, b in zip(lo, hi)], dtype=p.dtype, device=p.device)
    q = (p - c).abs() - h
    outside = q.clamp(min=0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp(max=0)
    return outside + inside - r


def _studs_sdf(p: torch.Tensor, brick: Brick, top: float) -> torch.Tensor:
    """SDF of the brick's ``nx x ny`` studs on its top face (limited domain repetition)."""
    x0 = ORIGIN_XY + (brick.sx + 0.5) * PITCH
    y0 = ORIGIN_XY + (brick.sy + 0.5) * PITCH
    qx = p[:, 0] - x0
    qy = p[:, 1] - y0
    qx = qx - PITCH * torch.clamp(torch.round(qx / PITCH), 0, brick.nx - 1)
    qy = qy - PITCH * torch.clamp(torch.round(qy / PITCH), 0, brick.ny - 1)
    radial = torch.sqrt(qx * qx + qy * qy) - STUD_RADIUS
    vertical = (p[:, 2] - (top + 0.5 * STUD_HEIGHT)).abs() - 0.5 * STUD_HEIGHT
    outside = torch.stack([radial.clamp(min=0), vertical.clamp(min=0)], dim=-1).norm(dim=-1)
    return outside + torch.maximum(radial, vertical).clamp(max=0)


def lego_sdf_and_brick(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed distance to the model and the index (into :data:`BRICKS`) of the nearest brick.

    Args:
        p: (N, 3) world points.

    Returns:
        (sdf (N,), brick (N,) int64). The SDF is exact outside, a bound inside.
    """
    d, idx = brick_sdfs(p).min(dim=-1)
    return d, idx


def brick_sdfs(p: torch.Tensor) -> torch.Tensor:
    """Signed distance (N, B) of world points ``p`` (N, 3) to each brick of :data:`BRICKS` (body and studs).

    Each column is 1-Lipschitz (exact outside the brick, a bound inside); the scene's
    SDF is their minimum.
    """
    dists = []
    for brick in BRICKS:
        lo, hi = brick.box()
        d = _box_sdf(p, lo, hi, EDGE_ROUNDING)
        dists.append(torch.minimum(d, _studs_sdf(p, brick, hi[2])))
    return torch.stack(dists, dim=-1)


def lego_sdf(p: torch.Tensor) -> torch.Tensor:
    """Signed distance (N,) of world points ``p`` (N, 3); negative inside the bricks."""
    return lego_sdf_and_brick(p)[0]


def lego_albedo(p: torch.Tensor) -> torch.Tensor:
    """Albedo (N, 3) of the brick nearest to each point of ``p`` (N, 3)."""
    colors = torch.tensor([b.color for b in BRICKS], dtype=p.dtype, device=p.device)
    return colors[lego_sdf_and_brick(p)[1]]


def lego_normals(p: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Unit outward normals (N, 3): central differences of the SDF (one batched call)."""
    offsets = torch.eye(3, dtype=p.dtype, device=p.device) * eps
    q = torch.cat([p[:, None, :] + offsets, p[:, None, :] - offsets], dim=1)  # (N, 6, 3)
    d = lego_sdf(q.reshape(-1, 3)).reshape(-1, 6)
    n = d[:, :3] - d[:, 3:]
    return n / n.norm(dim=-1, keepdim=True).clamp(min=1e-12)


LIGHT_DIR = (0.45, -0.35, 0.82)  # world-space key light (normalised in shade)
AMBIENT = 0.28
DIFFUSE = 0.72
SPECULAR = 0.35
SHININESS = 32.0


def shade(albedo: torch.Tensor, normals: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
    """Lambert + Blinn-Phong radiance (N, 3) in [0, 1].

    ``c = a * (k_a + k_d max(n.l, 0)) + k_s max(n.h, 0)^s`` with ``h = normalize(l - v)``
    (``v`` the ray direction), so the specular highlight moves with the viewpoint.

    Args:
        albedo: (N, 3); normals: (N, 3) unit; view_dirs: (N, 3) unit ray directions.
    """
    light = torch.tensor(LIGHT_DIR, dtype=albedo.dtype, device=albedo.device)
    light = light / light.norm()
    lambert = (normals @ light).clamp(min=0)[:, None]
    half = light[None, :] - view_dirs
    half = half / half.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    spec = (normals * half).sum(-1).clamp(min=0).pow(SHININESS)[:, None]
    spec = spec * (lambert > 0)
    return (albedo * (AMBIENT + DIFFUSE * lambert) + SPECULAR * spec).clamp(0, 1)


def camera_rig(split: str, n: int, radius: float = 4.0, seed: int = 0) -> torch.Tensor:
    """Deterministic NeRF-synthetic-like poses (n, 4, 4), float64.

    train/val: azimuth uniform, elevation uniform in [8, 80] degrees (upper hemisphere),
    from a generator seeded by ``seed`` and the split. test: a full circle, azimuth
    evenly spaced, elevation ``30 + 10 sin(2 azimuth)`` degrees. Cameras look at the
    origin with z up (:func:`taichifield.cameras.orbit_poses`, azimuth 0 on +x).
    """
    if split == "test":
        az = torch.arange(n, dtype=torch.float64) * (2 * math.pi / max(n, 1))
        el = torch.deg2rad(30.0 + 10.0 * torch.sin(2 * az))
    elif split in ("train", "val"):
        g = torch.Generator().manual_seed(seed * 1000 + (1 if split == "train" else 2))
        az = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
        el = torch.deg2rad(8.0 + 72.0 * torch.rand(n, generator=g, dtype=torch.float64))
    else:
        raise ValueError(f"unknown split {split!r}")
    return orbit_poses(az, el, radius, up="z")
