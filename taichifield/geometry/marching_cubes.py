"""Marching cubes in Taichi: shared vertices, watertight, oriented, topology of skimage.

Lorensen & Cline (1987) with the face-consistent case table of :mod:`.mc_tables`
(ambiguous faces split by the asymptotic decider, Nielson & Hamann 1991), so a closed
level set inside the grid gives a closed, consistently oriented mesh with one vertex per
crossed grid edge.

The work is organised by grid rows ``(i, j)`` (all ``k``), as in Flying Edges
(Schroeder et al. 2015), so every pass is parallel and its output order deterministic
(kernels in :mod:`.mc_kernels`):

1. the signs ``value > level`` are packed 32 per word (the only pass over every voxel);
   per row, bit operations count the crossed edges its points own (their ``+x, +y, +z``
   edges) and find the k range where anything happens;
2. at non-empty cells only (set bits), the cell's table row and the row's triangle count;
3. exclusive prefix sums over rows give each row its first vertex and triangle id;
4. at set bits only, vertices (linear interpolation on the edge) and triangles; a
   vertex id is its row's first id plus the crossed edges its row owns below it.

Work follows the surface, not the volume, after the packing pass. Memory: the input,
one bit per voxel, and an int16 scratch array of the grid's shape (int32 on Vulkan),
written only at non-empty cells.

Example:
    >>> import numpy as np
    >>> from taichifield.geometry.marching_cubes import marching_cubes
    >>> g = np.mgrid[:32, :32, :32].astype(np.float32)
    >>> sdf = np.sqrt(((g - 15.5) ** 2).sum(0)) - 10
    >>> verts, faces = marching_cubes(sdf, 0.0)   # (V, 3) voxel coords, (F, 3) int64
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from .. import runtime
from ..errors import InputError
from . import mc_tables
from .mc_kernels import cases, emit, pack_signs, scan

__all__ = ["marching_cubes"]

log = logging.getLogger(__name__)

_TABLE_CACHE: dict[str, Any] = {}


def tables() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(case_base (256,), case_ambig (256,), tri_table (R, 1 + 3*MAX_TRI)) int32 torch tensors."""
    if not _TABLE_CACHE:
        _TABLE_CACHE["t"] = tuple(
            torch.from_numpy(np.ascontiguousarray(a)) for a in (mc_tables.CASE_BASE, mc_tables.CASE_AMBIG, mc_tables.TRI_TABLE)
        )
    return _TABLE_CACHE["t"]


def _as_volume(volume: Any) -> torch.Tensor:
    """A contiguous float32 (X, Y, Z) tensor on the kernels' device; InputError otherwise."""
    if isinstance(volume, torch.Tensor):
        vol = volume.detach()
    elif isinstance(volume, np.ndarray):
        if not (np.issubdtype(volume.dtype, np.number) or volume.dtype == np.bool_) or np.iscomplexobj(volume):
            raise InputError(f"marching_cubes: volume must be a real numeric array, got dtype {volume.dtype}")
        vol = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))
    else:
        raise InputError(f"marching_cubes: volume must be a numpy array or torch tensor, got {type(volume).__name__}")
    if vol.is_complex():
        raise InputError(f"marching_cubes: volume must be real, got dtype {vol.dtype}")
    if vol.dim() != 3:
        raise InputError(f"marching_cubes: volume must be 3-D (X, Y, Z), got shape {tuple(vol.shape)}")
    if min(vol.shape) < 2:
        raise InputError(f"marching_cubes: volume must be at least 2x2x2, got shape {tuple(vol.shape)}")
    return vol.to(runtime.device(), torch.float32).contiguous()


def marching_cubes(volume: Any, level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Extract the ``level`` isosurface of a regular grid as a triangle mesh.

    Args:
        volume: (X, Y, Z) numpy array or torch tensor of any real dtype (computed in
            float32), each dimension >= 2; non-contiguous input is copied.
        level: the iso-value. A level outside the data range gives an empty mesh.

    Returns:
        vertices: (V, 3) float32 in voxel-index coordinates (``vertices[:, 0]`` along
            axis 0), as ``skimage.measure.marching_cubes`` with unit spacing.
        faces: (F, 3) int64 vertex indices. Triangle normals (right-hand rule) point
            toward increasing values: outward for an SDF whose inside is negative
            (the same orientation as skimage's default output).

    Note:
        One vertex per crossed grid edge, shared by all cells around it (plus, rarely, a
        cell-centre vertex for the few tunnel-like cases, as Lewiner's MC33 adds), and a
        face-consistent case table, so a level set that closes inside the grid gives a
        watertight, consistently oriented mesh. A corner counts as inside when
        ``value > level``; a value exactly at the level puts a vertex on that corner
        (degenerate triangles are possible there, cracks are not).

    Raises:
        InputError: not a real 3-D array, a dimension < 2, or NaN/inf values.
    """
    runtime.ensure_init()
    vol = _as_volume(volume)
    level = float(level)
    X, Y, Z = vol.shape
    cuda = vol.device.type == "cuda"
    # CPU/Vulkan scratch is numpy: Taichi takes it zero-copy and no torch thread pool
    # wakes up between kernels; CUDA needs device tensors
    empty = (lambda shape, dt: torch.empty(shape, dtype=getattr(torch, dt), device=vol.device)) if cuda else \
        (lambda shape, dt: np.empty(shape, dtype=dt))
    if not cuda:
        vol = vol.numpy()
    case_base, case_ambig, tri_table = ((t.to(vol.device) if cuda else t.numpy()) for t in tables())
    # int16 codes (< 2^13) halve the scratch memory; Vulkan gets int32 (int16 is optional there)
    code = empty(vol.shape, "int32" if runtime.current_arch() == "vulkan" else "int16")
    counts = empty((X, Y, 6), "int32")
    bits = empty((X, Y, (Z + 31) // 32), "int32")
    pack_signs(vol, level, bits)
    scan(bits, Z, counts)
    cases(vol, level, bits, case_base, case_ambig, tri_table, code, counts)
    if bool(_host(counts)[:, :, 5].any()):
        raise InputError("marching_cubes: volume contains NaN or infinite values near the surface")
    offsets, totals = _exclusive_cumsum(_host(counts)[:, :, :3])
    n_edge_verts, n_faces, n_centres = totals
    offsets[:, :, 2] += n_edge_verts  # centre vertices come after the edge vertices
    verts = empty((n_edge_verts + n_centres, 3), "float32")
    faces = empty((n_faces, 3), "int32")
    if n_faces > 0:
        emit(vol, level, bits, tri_table, code, counts, torch.from_numpy(offsets).cuda() if cuda else offsets, verts, faces)
    else:
        verts = verts[:0]
    log.debug("marching_cubes: %s grid, %d vertices, %d faces", (X, Y, Z), len(verts), n_faces)
    return _host(verts), _host(faces).astype(np.int64)


def _host(a: Any) -> np.ndarray:
    return a.cpu().numpy() if isinstance(a, torch.Tensor) else a


def _exclusive_cumsum(counts: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Exclusive prefix sums over rows of (X, Y, C) counts: (X, Y, C) int32 and the C totals."""
    flat = counts.reshape(-1, counts.shape[-1]).astype(np.int64)
    inc = np.cumsum(flat, axis=0)
    totals = [int(x) for x in inc[-1]]
    if max(totals) >= 2**31:
        raise InputError(f"marching_cubes: {max(totals)} elements exceed the int32 index range")
    return np.ascontiguousarray((inc - flat).astype(np.int32).reshape(counts.shape)), totals
