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
from typing import Any, TypeVar

import numpy as np
import torch

from .. import runtime
from ..errors import InputError
from . import mc_tables
from .mc_kernels import cases, emit, pack_signs, scan

__all__ = ["marching_cubes", "marching_cubes_tensors", "exclusive_cumsum"]

log = logging.getLogger(__name__)

_TABLE_CACHE: dict[str, Any] = {}
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def tables() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(case_base (256,), case_ambig (256,), tri_table (R, 1 + 3*MAX_TRI)) int32 torch tensors."""
    if not _TABLE_CACHE:
        _TABLE_CACHE["t"] = tuple(
            torch.from_numpy(np.ascontiguousarray(a)) for a in (mc_tables.CASE_BASE, mc_tables.CASE_AMBIG, mc_tables.TRI_TABLE)
        )
    return _TABLE_CACHE["t"]


def _as_volume(volume: Any) -> torch.Tensor:
    """A contiguous float32 (X, Y, Z) tensor; InputError otherwise.

    A torch tensor stays on its device (:func:`runtime.check_device` refuses one the
    running arch cannot use); a numpy array becomes a tensor on :func:`runtime.device`.
    """
    if isinstance(volume, torch.Tensor):
        vol = volume.detach()
        runtime.check_device(vol, what="marching_cubes")
    elif isinstance(volume, np.ndarray):
        if not (np.issubdtype(volume.dtype, np.number) or volume.dtype == np.bool_) or np.iscomplexobj(volume):
            raise InputError(f"marching_cubes: volume must be a real numeric array, got dtype {volume.dtype}")
        vol = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32)).to(runtime.device())
    else:
        raise InputError(f"marching_cubes: volume must be a numpy array or torch tensor, got {type(volume).__name__}")
    if vol.is_complex():
        raise InputError(f"marching_cubes: volume must be real, got dtype {vol.dtype}")
    if vol.dim() != 3:
        raise InputError(f"marching_cubes: volume must be 3-D (X, Y, Z), got shape {tuple(vol.shape)}")
    if min(vol.shape) < 2:
        raise InputError(f"marching_cubes: volume must be at least 2x2x2, got shape {tuple(vol.shape)}")
    return vol.to(torch.float32).contiguous()


def marching_cubes(volume: Any, level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Extract the ``level`` isosurface of a regular grid as a triangle mesh.

    Args:
        volume: (X, Y, Z) numpy array or torch tensor of any real dtype (computed in
            float32), each dimension >= 2; non-contiguous input is copied. A tensor's
            kernels run on its device; a numpy array's on :func:`runtime.device`.
        level: the iso-value. A level outside the data range gives an empty mesh.

    Returns:
        vertices: (V, 3) float32 in voxel-index coordinates (``vertices[:, 0]`` along
            axis 0), as ``skimage.measure.marching_cubes`` with unit spacing.
        faces: (F, 3) int64 vertex indices. Triangle normals (right-hand rule) point
            toward increasing values: outward for an SDF whose inside is negative
            (the same orientation as skimage's default output).
        Both are numpy arrays (host memory); :func:`marching_cubes_tensors` returns
        them as tensors on the volume's device.

    Note:
        One vertex per crossed grid edge, shared by all cells around it (plus, rarely, a
        cell-centre vertex for the few tunnel-like cases, as Lewiner's MC33 adds), and a
        face-consistent case table, so a level set that closes inside the grid gives a
        watertight, consistently oriented mesh. A corner counts as inside when
        ``value > level``, so a value exactly at the level is outside (below), and a
        vertex sits at least :data:`~.mc_kernels.MIN_WEIGHT` of a cell away from both
        ends of its edge: vertices of different edges never coincide, no triangle has
        zero area, and the mesh stays watertight and manifold when coincident vertices
        are welded (as trimesh, Open3D and MeshLab do).

    Raises:
        InputError: not a real 3-D array, a dimension < 2, or NaN/inf values.
        DeviceError: a tensor on a device the running Taichi arch cannot use.
    """
    verts, faces = _mesh(volume, level)
    if isinstance(verts, torch.Tensor):
        return verts.cpu().numpy(), faces.cpu().numpy()
    return verts, faces


def marching_cubes_tensors(volume: Any, level: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`marching_cubes` with the mesh as tensors on the volume's device.

    Returns:
        vertices: (V, 3) float32, faces: (F, 3) int64, on ``volume.device`` (on
        :func:`runtime.device` for a numpy volume).
    """
    verts, faces = _mesh(volume, level)
    if isinstance(verts, np.ndarray):  # host memory: tensors share it
        return torch.from_numpy(verts), torch.from_numpy(faces)
    return verts, faces


def _mesh(volume: Any, level: float) -> tuple[Any, Any]:
    """The mesh as numpy arrays (volume on the CPU) or tensors on the volume's GPU."""
    runtime.ensure_init()
    vol = _as_volume(volume)
    dev = vol.device
    level = float(level)
    X, Y, Z = vol.shape
    on_host = dev.type == "cpu"
    # CPU/Vulkan scratch is numpy: Taichi takes it zero-copy and no torch thread pool
    # wakes up between kernels; on a GPU the scratch lives beside the volume
    if on_host:
        empty = lambda shape, dt: np.empty(shape, dtype=dt)  # noqa: E731
        vol_k: Any = vol.numpy()
        case_base, case_ambig, tri_table = (t.numpy() for t in tables())
    else:
        empty = lambda shape, dt: torch.empty(shape, dtype=getattr(torch, dt), device=dev)  # noqa: E731
        vol_k = vol
        case_base, case_ambig, tri_table = (t.to(dev) for t in tables())
    # int16 codes (< 2^13) halve the scratch memory; Vulkan gets int32 (int16 is optional there)
    code = empty(vol.shape, "int32" if runtime.current_arch() == "vulkan" else "int16")
    counts = empty((X, Y, 6), "int32")
    bits = empty((X, Y, (Z + 31) // 32), "int32")
    pack_signs(vol_k, level, bits)
    scan(bits, Z, counts)
    cases(vol_k, level, bits, case_base, case_ambig, tri_table, code, counts)
    offsets, totals = exclusive_cumsum(counts[:, :, :3])
    # one device-to-host copy: the NaN flag and the three totals together
    nan_flag = counts[:, :, 5].any()
    summary = [int(nan_flag), *totals.tolist()] if on_host else torch.cat(
        [nan_flag.reshape(1).to(torch.int64), totals]).tolist()
    if summary[0]:
        raise InputError("marching_cubes: volume contains NaN or infinite values near the surface")
    n_edge_verts, n_faces, n_centres = summary[1:]
    if max(n_edge_verts + n_centres, n_faces) >= 2**31:
        raise InputError(f"marching_cubes: {max(n_edge_verts + n_centres, n_faces)} elements exceed the int32 index range")
    offsets[:, :, 2] += n_edge_verts  # centre vertices come after the edge vertices
    verts = empty((n_edge_verts + n_centres, 3), "float32")
    faces = empty((n_faces, 3), "int32")
    if n_faces > 0:
        emit(vol_k, level, bits, tri_table, code, counts, offsets, verts, faces)
    else:
        verts = verts[:0]
    log.debug("marching_cubes: %s grid, %d vertices, %d faces", (X, Y, Z), len(verts), n_faces)
    return verts, (faces.astype(np.int64) if on_host else faces.to(torch.int64))


def exclusive_cumsum(counts: ArrayT) -> tuple[ArrayT, ArrayT]:
    """Exclusive prefix sums over the rows of ``counts``, where ``counts`` lives, without a host sync.

    A numpy array is summed by numpy (on a loaded 2-core CPU, torch's thread pool costs
    ~50 ms here against ~1 ms); a tensor by torch on its device.

    Args:
        counts: (..., C) integer numpy array or tensor; leading dimensions flattened in C order.

    Returns:
        offsets: (..., C) int32, each entry the sum of the entries before it (per channel);
        totals: (C,) int64 sums (check them against the int32 range once read).
    """
    if isinstance(counts, np.ndarray):
        flat = counts.reshape(-1, counts.shape[-1]).astype(np.int64)
        inc = np.cumsum(flat, axis=0)
        totals = inc[-1] if len(flat) else np.zeros(counts.shape[-1], np.int64)
        return np.ascontiguousarray((inc - flat).astype(np.int32).reshape(counts.shape)), totals
    flat = counts.reshape(-1, counts.shape[-1]).to(torch.int64)
    inc = torch.cumsum(flat, dim=0)
    totals = inc[-1] if flat.shape[0] else torch.zeros(counts.shape[-1], dtype=torch.int64, device=counts.device)
    return (inc - flat).to(torch.int32).reshape(counts.shape).contiguous(), totals
