"""The LEGO scene's SDF as one fused Taichi kernel, with the bricks culled by a coarse grid.

The torch version in :mod:`taichifield.scenes.lego` is the reference (and what tests
compare against); this kernel evaluates the same function in one pass per point.

Culling: the scene box is cut into :data:`CULL_RES` cells, and each cell keeps a
bitmask of the bricks that can be the nearest one anywhere in it. With ``m`` the
cell's centre and ``r`` its half-diagonal, every brick SDF ``d_k`` is 1-Lipschitz, so
for ``x`` in the cell ``d_k(m) - r <= d_k(x) <= d_k(m) + r``. The nearest brick
``k*`` of ``x`` therefore satisfies ``d_k*(m) - r <= min_j d_j(m) + r``: bricks with
``d_k(m) > min_j d_j(m) + 2 r`` (plus a float32 margin) are never the minimum in the
cell and are skipped. The surviving bricks are visited in index order with the same
float32 arithmetic, so the culled SDF (and the nearest-brick index, ties included)
equals the brute-force one exactly. Points outside the grid visit every brick.
A typical point then evaluates 1-3 of the 9 bricks instead of all of them.

Device rule: the kernel runs where the points are (CPU, CUDA; Vulkan takes CPU
tensors) and returns its results on that device.
"""

# no `from __future__ import annotations`: Taichi reads kernel annotations at runtime

import taichi as ti
import torch

from .. import runtime
from .lego import BRICKS, EDGE_ROUNDING, PITCH, SCENE_BOUNDS, STUD_HEIGHT, STUD_RADIUS, brick_sdfs

__all__ = ["lego_sdf_taichi", "lego_sdf_func", "brick_table", "cull_grid", "scene_tables", "mean_candidates", "CULL_RES"]

CULL_RES = (20, 20, 10)
"""Cells of the culling grid along x, y, z over :data:`~taichifield.scenes.lego.SCENE_BOUNDS` (~0.1 wide)."""
CULL_MARGIN = 1e-4
"""Extra slack (world units) in the culling test, far above float32 rounding of ``d_k``."""

_CACHE: dict[tuple[str, int | None, bool], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def brick_table(device: torch.device) -> torch.Tensor:
    """(B, 8) float32 rows ``lo xyz, hi xyz, nx, ny`` for :data:`BRICKS`."""
    rows = []
    for b in BRICKS:
        lo, hi = b.box()
        rows.append([*lo, *hi, float(b.nx), float(b.ny)])
    return torch.tensor(rows, dtype=torch.float32, device=device)


def cull_grid(res: tuple[int, int, int] = CULL_RES) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cell candidate bricks, computed once in float64 on the CPU (see the module docstring).

    Returns:
        geometry (7,) float32 ``lo xyz, 1 / cell size xyz, 0``, and masks (nx*ny*nz,) int32
        (bit ``k`` set: brick ``k`` may be the nearest in that cell; x-major, z fastest).
    """
    lo = torch.tensor(SCENE_BOUNDS[0], dtype=torch.float64)
    hi = torch.tensor(SCENE_BOUNDS[1], dtype=torch.float64)
    n = torch.tensor(res, dtype=torch.float64)
    cell = (hi - lo) / n
    axes = [lo[a] + (torch.arange(res[a], dtype=torch.float64) + 0.5) * cell[a] for a in range(3)]
    centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    d = brick_sdfs(centres)  # (C, B)
    r = 0.5 * float(cell.norm())
    keep = d <= d.min(dim=-1, keepdim=True).values + 2.0 * r + CULL_MARGIN
    weights = torch.tensor([1 << k for k in range(len(BRICKS))], dtype=torch.int64)
    masks = (keep.to(torch.int64) * weights).sum(dim=-1).to(torch.int32)
    geometry = torch.cat([lo, 1.0 / cell, torch.zeros(1, dtype=torch.float64)]).to(torch.float32)
    return geometry, masks


def scene_tables(device: torch.device, cull: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(bricks (B, 8), grid geometry (7,), masks (C,)) on ``device``, cached per device.

    ``cull=False`` gives every cell all bricks (the brute-force SDF, for tests).
    """
    key = (device.type, device.index, cull)
    if key not in _CACHE:
        geometry, masks = cull_grid()
        if not cull:
            masks = torch.full_like(masks, (1 << len(BRICKS)) - 1)
        _CACHE[key] = (brick_table(device), geometry.to(device), masks.to(device))
    return _CACHE[key]


@ti.func
def _brick_sdf(x: ti.template(), bricks: ti.template(), k: ti.i32) -> ti.f32:  # type: ignore[valid-type]
    """Rounded box + limited-repetition studs of brick ``k`` (same as lego._box_sdf / _studs_sdf)."""
    lo = ti.Vector([bricks[k, 0], bricks[k, 1], bricks[k, 2]])
    hi = ti.Vector([bricks[k, 3], bricks[k, 4], bricks[k, 5]])
    c = 0.5 * (lo + hi)
    h = 0.5 * (hi - lo) - EDGE_ROUNDING
    q = ti.abs(x - c) - h
    qo = ti.max(q, 0.0)
    d_box = qo.norm() + ti.min(ti.max(q[0], ti.max(q[1], q[2])), 0.0) - EDGE_ROUNDING
    sx = x[0] - (lo[0] + 0.5 * PITCH)
    sy = x[1] - (lo[1] + 0.5 * PITCH)
    sx = sx - PITCH * ti.min(ti.max(ti.round(sx / PITCH), 0.0), bricks[k, 6] - 1.0)
    sy = sy - PITCH * ti.min(ti.max(ti.round(sy / PITCH), 0.0), bricks[k, 7] - 1.0)
    radial = ti.sqrt(sx * sx + sy * sy) - STUD_RADIUS
    vertical = ti.abs(x[2] - (hi[2] + 0.5 * STUD_HEIGHT)) - 0.5 * STUD_HEIGHT
    ro = ti.max(radial, 0.0)
    vo = ti.max(vertical, 0.0)
    d_stud = ti.sqrt(ro * ro + vo * vo) + ti.min(ti.max(radial, vertical), 0.0)
    return ti.min(d_box, d_stud)


@ti.func
def lego_sdf_func(x: ti.template(), bricks: ti.template(), n_bricks: ti.i32,  # type: ignore[valid-type]
                  geom: ti.template(), masks: ti.template()):  # type: ignore[valid-type]
    """(distance, nearest brick) at ``x``, visiting only the bricks of ``x``'s culling cell."""
    nx, ny, nz = ti.static(CULL_RES)
    gx = (x[0] - geom[0]) * geom[3]
    gy = (x[1] - geom[1]) * geom[4]
    gz = (x[2] - geom[2]) * geom[5]
    mask = (1 << n_bricks) - 1
    if gx >= 0.0 and gx < nx and gy >= 0.0 and gy < ny and gz >= 0.0 and gz < nz:
        ix = ti.min(ti.cast(gx, ti.i32), nx - 1)
        iy = ti.min(ti.cast(gy, ti.i32), ny - 1)
        iz = ti.min(ti.cast(gz, ti.i32), nz - 1)
        mask = masks[(ix * ny + iy) * nz + iz]
    best = 1e10
    best_k = 0
    for k in range(n_bricks):
        if (mask >> k) & 1:
            d = _brick_sdf(x, bricks, k)
            if d < best:
                best = d
                best_k = k
    return best, best_k


@ti.kernel
def _lego_sdf_kernel(
    p: ti.types.ndarray(ndim=2),
    bricks: ti.types.ndarray(ndim=2),
    n_bricks: ti.i32,
    geom: ti.types.ndarray(ndim=1),
    masks: ti.types.ndarray(ndim=1),
    out_d: ti.types.ndarray(ndim=1),
    out_idx: ti.types.ndarray(ndim=1),
):
    for i in range(p.shape[0]):
        x = ti.Vector([p[i, 0], p[i, 1], p[i, 2]])
        d, k = lego_sdf_func(x, bricks, n_bricks, geom, masks)
        out_d[i] = d
        out_idx[i] = k


def lego_sdf_taichi(p: torch.Tensor, return_brick: bool = False, *, cull: bool = True):  # type: ignore[no-untyped-def]
    """Same as :func:`taichifield.scenes.lego.lego_sdf` (float32), computed by a Taichi kernel.

    Args:
        p: (N, 3) world points (any float dtype; computed in float32), on the CPU or a
            CUDA device: the kernel runs there.
        return_brick: also return the nearest brick's index (N,) int32.
        cull: skip bricks by the culling grid (same result; ``False`` visits all, for tests).

    Returns:
        sdf (N,) float32 on ``p``'s device, or (sdf, brick) when ``return_brick``.
    """
    runtime.ensure_init()
    dev = p.device
    pts = p.detach().to(torch.float32).contiguous()
    n = pts.shape[0]
    d = torch.empty(n, dtype=torch.float32, device=dev)
    idx = torch.empty(n, dtype=torch.int32, device=dev)
    if n:
        bricks, geom, masks = scene_tables(dev, cull)
        _lego_sdf_kernel(pts, bricks, bricks.shape[0], geom, masks, d, idx)
    return (d, idx) if return_brick else d


def mean_candidates() -> float:
    """Average number of bricks per culling cell (how much the grid saves; 9 without it)."""
    _, masks = cull_grid()
    bits = torch.stack([(masks >> k) & 1 for k in range(len(BRICKS))]).sum(0)
    return float(bits.float().mean())

