"""Marching cubes on a sparse set of bricks: the narrow-band back end of :mod:`.extract`.

A brick is a block of ``B^3`` cells of a virtual ``R^3`` grid stored as its ``(B+1)^3``
corner values (an apron of one sample on its +x/+y/+z sides, shared with neighbours).
Every grid point and every grid edge has one *owner* among the active bricks that
contain it: the brick holding it at local coordinates ``< B`` when that brick is active,
else the first active one in a fixed order. Owners make the mesh seamless:

* :func:`canonicalise` copies each apron value from its owner, so the cells on both
  sides of a brick face see the same numbers and cut the face identically;
* triangles name their vertices by the owner's edge key
  ``(((slot * (B+1) + a) * (B+1) + b) * (B+1) + c) * 3 + axis``, and
  :func:`bricks_marching_cubes` merges equal keys into one vertex.

The case table and per-cell logic are those of :mod:`.marching_cubes`, so the result
equals dense marching cubes on the same grid (same vertices, same triangles).
"""

# no `from __future__ import annotations`: Taichi reads kernel annotations at runtime

import numpy as np
import taichi as ti
import torch

from ..errors import ResourceError
from .marching_cubes import exclusive_cumsum, tables
from .mc_kernels import _CORNERS, MIN_WEIGHT, cell_row, write_centre

__all__ = ["canonicalise", "bricks_marching_cubes"]

# cube edge -> (dx, dy, dz, axis) of the grid vertex that owns it
_EDGE_OWNER = [[0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [1, 0, 1, 1],
               [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 2], [1, 0, 0, 2], [1, 1, 0, 2], [0, 1, 0, 2]]


@ti.func
def _owner(gx: ti.i32, gy: ti.i32, gz: ti.i32, skip_axis: ti.i32, B: ti.i32, nb: ti.i32,
           brick_map: ti.template()) -> ti.math.ivec4:
    """(slot, local a, b, c) of the active brick owning grid point g (slot -1 if none).

    Along ``skip_axis`` (0-2, for an edge along that axis) only the home brick counts.
    """
    g = ti.math.ivec3(gx, gy, gz)
    res = ti.math.ivec4(-1, 0, 0, 0)
    for m in range(8):
        if res[0] < 0:
            ok = True
            bc = ti.math.ivec3(0)
            lc = ti.math.ivec3(0)
            for ax in ti.static(range(3)):
                alt = (m >> ax) & 1
                home = g[ax] // B
                if alt:
                    if g[ax] % B != 0 or home == 0 or ax == skip_axis:
                        ok = False
                    bc[ax] = home - 1
                    lc[ax] = B
                else:
                    if home >= nb:
                        ok = False
                    bc[ax] = home
                    lc[ax] = g[ax] % B
            if ok:
                slot = brick_map[bc[0], bc[1], bc[2]]
                if slot >= 0:
                    res = ti.math.ivec4(slot, lc[0], lc[1], lc[2])
    return res


@ti.kernel
def _canonicalise(vals: ti.types.ndarray(ndim=4), origin: ti.types.ndarray(), brick_map: ti.types.ndarray(ndim=3),
                  R: ti.i32):
    B = vals.shape[1] - 1
    nb = brick_map.shape[0]
    for n, a, b, c in ti.ndrange(vals.shape[0], B + 1, B + 1, B + 1):
        if a == B or b == B or c == B:
            gx, gy, gz = origin[n, 0] + a, origin[n, 1] + b, origin[n, 2] + c
            if gx < R and gy < R and gz < R:
                o = _owner(gx, gy, gz, -1, B, nb, brick_map)
                if o[0] >= 0 and o[0] != n:
                    vals[n, a, b, c] = vals[o[0], o[1], o[2], o[3]]


def canonicalise(vals: torch.Tensor, origin: torch.Tensor, brick_map: torch.Tensor, resolution: int) -> None:
    """Copy every apron value from its owner brick, in place.

    Args:
        vals: (N, B+1, B+1, B+1) float32 brick values.
        origin: (N, 3) int32 global grid index of each brick's local (0, 0, 0).
        brick_map: (nb, nb, nb) int32 slot of each brick, -1 when inactive.
        resolution: R, grid points per axis.
    """
    if vals.shape[0]:
        _canonicalise(vals, origin, brick_map, resolution)


@ti.kernel
def _count(vals: ti.types.ndarray(ndim=4), origin: ti.types.ndarray(), level: ti.f32, R: ti.i32,
           case_base: ti.types.ndarray(), case_ambig: ti.types.ndarray(), tri_table: ti.types.ndarray(),
           tcount: ti.types.ndarray(), ccount: ti.types.ndarray()):
    B = vals.shape[1] - 1
    for n, a, b in ti.ndrange(vals.shape[0], B, B):
        nt = 0
        nc = 0
        if origin[n, 0] + a < R - 1 and origin[n, 1] + b < R - 1:
            for c in range(B):
                if origin[n, 2] + c < R - 1:
                    d = ti.Vector([vals[n, a + _CORNERS[q][0], b + _CORNERS[q][1], c + _CORNERS[q][2]]
                                   for q in ti.static(range(8))]) - level
                    row = cell_row(d, case_base, case_ambig)
                    if row >= 0:
                        code = tri_table[row, 0]
                        nt += code & 15
                        nc += code >> 4
        tcount[n, a, b] = nt
        ccount[n, a, b] = nc


@ti.kernel
def _emit(vals: ti.types.ndarray(ndim=4), origin: ti.types.ndarray(), brick_map: ti.types.ndarray(ndim=3),
          level: ti.f32, R: ti.i32, case_base: ti.types.ndarray(), case_ambig: ti.types.ndarray(),
          tri_table: ti.types.ndarray(), toff: ti.types.ndarray(), coff: ti.types.ndarray(), centre_key0: ti.i32,
          keys: ti.types.ndarray(), centres: ti.types.ndarray()):
    B = vals.shape[1] - 1
    S = B + 1
    nb = brick_map.shape[0]
    for n, a, b in ti.ndrange(vals.shape[0], B, B):
        t = toff[n, a, b]
        nc = coff[n, a, b]
        ox, oy, oz = origin[n, 0], origin[n, 1], origin[n, 2]
        if ox + a < R - 1 and oy + b < R - 1:
            for c in range(B):
                if oz + c < R - 1:
                    d = ti.Vector([vals[n, a + _CORNERS[q][0], b + _CORNERS[q][1], c + _CORNERS[q][2]]
                                   for q in ti.static(range(8))]) - level
                    row = cell_row(d, case_base, case_ambig)
                    if row >= 0:
                        ids = ti.Vector([0] * 13)
                        for e in ti.static(range(12)):
                            dx, dy, dz, ax = ti.static(*_EDGE_OWNER[e])
                            o = _owner(ox + a + dx, oy + b + dy, oz + c + dz, ax, B, nb, brick_map)
                            ids[e] = (((o[0] * S + o[1]) * S + o[2]) * S + o[3]) * 3 + ax
                        code = tri_table[row, 0]
                        if code >> 4:
                            ids[12] = centre_key0 + nc
                            write_centre(centres, nc, d, ox + a, oy + b, oz + c)
                            nc += 1
                        for m in range(code & 15):
                            for q in ti.static(range(3)):
                                keys[t, q] = ids[tri_table[row, 1 + 3 * m + q]]
                            t += 1


def bricks_marching_cubes(vals: torch.Tensor, origin: torch.Tensor, brick_map: torch.Tensor, resolution: int,
                          level: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Marching cubes over canonicalised bricks.

    Args:
        vals, origin, brick_map, resolution: as for :func:`canonicalise` (already applied).
        level: iso-value.

    Returns:
        vertices: (V, 3) float32 in global grid-index coordinates.
        faces: (F, 3) int64, normals toward increasing values.
    """
    dev = vals.device
    n, S = vals.shape[0], vals.shape[1]
    B = S - 1
    if n * 3 * S**3 >= 2**31 - 2**24:
        raise ResourceError(f"extract_mesh: {n} surface bricks exceed the int32 vertex-key range; lower the resolution")
    case_base, case_ambig, tri_table = (t.to(dev) for t in tables())
    tcount = torch.empty((n, B, B), dtype=torch.int32, device=dev)
    ccount = torch.empty((n, B, B), dtype=torch.int32, device=dev)
    empty = (torch.zeros((0, 3), dtype=torch.float32, device=dev), torch.zeros((0, 3), dtype=torch.int64, device=dev))
    if n == 0:
        return empty
    _count(vals, origin, level, resolution, case_base, case_ambig, tri_table, tcount, ccount)
    offsets, totals = exclusive_cumsum(torch.stack([tcount, ccount], dim=-1))
    toff, coff = offsets[..., 0].contiguous(), offsets[..., 1].contiguous()
    n_faces, n_centres = totals.tolist()  # the one host sync before the emit pass
    if n_faces >= 2**31:
        raise ResourceError(f"extract_mesh: {n_faces} triangles exceed the int32 index range; lower the resolution")
    if n_faces == 0:
        return empty
    centre_key0 = n * 3 * S**3
    keys = torch.empty((n_faces, 3), dtype=torch.int32, device=dev)
    centres = torch.empty((max(n_centres, 1), 3), dtype=torch.float32, device=dev)
    _emit(vals, origin, brick_map, level, resolution, case_base, case_ambig, tri_table, toff, coff, centre_key0,
          keys, centres)
    uniq, inverse = torch.unique(keys.reshape(-1), return_inverse=True)
    faces = inverse.reshape(-1, 3).to(torch.int64)
    is_edge = uniq < centre_key0
    ek = uniq[is_edge].to(torch.int64)
    axis = ek % 3
    cell = ek // 3
    lc = cell % S
    lb = (cell // S) % S
    la = (cell // (S * S)) % S
    slot = cell // (S * S * S)
    local = torch.stack([la, lb, lc], dim=1)
    step = torch.nn.functional.one_hot(axis, 3)
    far = local + step
    v0 = vals[slot, la, lb, lc] - level
    v1 = vals[slot, far[:, 0], far[:, 1], far[:, 2]] - level
    w = (v0 / (v0 - v1)).clamp(MIN_WEIGHT, 1.0 - MIN_WEIGHT).unsqueeze(1)  # as mc_kernels.edge_weight
    edge_pos = origin[slot].to(torch.float32) + local.to(torch.float32) + w * step.to(torch.float32)
    verts = torch.empty((uniq.shape[0], 3), dtype=torch.float32, device=dev)
    verts[is_edge] = edge_pos
    if n_centres:
        verts[~is_edge] = centres[(uniq[~is_edge] - centre_key0).to(torch.int64)]
    return verts, faces
