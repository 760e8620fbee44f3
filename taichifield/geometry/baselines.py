"""Classical surface reconstruction from oriented points: screened Poisson and Hoppe 1992.

* :func:`poisson_reconstruct` - Kazhdan & Hoppe 2013, screened Poisson (Open3D's
  ``create_from_point_cloud_poisson``), then low-density trimming: vertices whose
  octree density is below the ``trim_quantile`` quantile are removed (they are the
  surface Poisson invents far from any sample, e.g. closing holes of a scan).
* :func:`hoppe_reconstruct` - Hoppe et al. 1992, "Surface reconstruction from
  unorganized points": on a grid, ``f(x) = (x - p) . n`` with ``p, n`` the nearest
  oriented point (the signed distance to its tangent plane); our marching cubes
  extracts ``f = 0``; faces with a vertex farther than ``max_distance`` from every
  input point (cells where ``f`` is undefined in the paper) are dropped.

Both work in the input's coordinates and return ``(vertices (V, 3) float32, faces (F, 3) int64)``.
Open3D is imported inside the function.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ..errors import InputError, ResourceError

__all__ = ["poisson_reconstruct", "hoppe_reconstruct"]

log = logging.getLogger(__name__)


def poisson_reconstruct(
    points: np.ndarray,
    normals: np.ndarray,
    depth: int = 9,
    trim_quantile: float = 0.03,
    scale: float = 1.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Screened Poisson surface reconstruction with low-density trimming.

    Args:
        points: (N, 3); normals: (N, 3) outward.
        depth: octree depth (resolution 2^depth).
        trim_quantile: remove vertices whose density is below this quantile (0: keep all).
        scale: ratio of the reconstruction cube to the points' bounding cube.

    Returns:
        vertices (V, 3) float32, faces (F, 3) int64.
    """
    import open3d as o3d

    if not 2 <= int(depth) <= MAX_POISSON_DEPTH:
        raise InputError(f"Poisson reconstruction: --depth must be in 2..{MAX_POISSON_DEPTH}, got {depth}")
    if not 0.0 <= float(trim_quantile) < 1.0:
        raise InputError(f"Poisson reconstruction: --trim must be in [0, 1), got {trim_quantile}")
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, np.float64)))
    pcd.normals = o3d.utility.Vector3dVector(np.asarray(normals, np.float64))
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        mesh, density = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=depth, scale=scale)
    density = np.asarray(density)
    if trim_quantile > 0 and len(density):
        mesh.remove_vertices_by_mask(density < np.quantile(density, trim_quantile))
    mesh.remove_unreferenced_vertices()
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.triangles, np.int64)


MAX_POISSON_DEPTH = 14


def _memory_limit() -> float:
    """80% of physical memory in bytes (64 GB when the system does not say)."""
    try:
        return 0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0.8 * 64e9


def _keep_faces(verts: np.ndarray, faces: np.ndarray, keep_vertex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop faces touching a removed vertex, then unreferenced vertices."""
    faces = faces[keep_vertex[faces].all(axis=1)]
    used = np.zeros(len(verts), bool)
    used[faces.reshape(-1)] = True
    remap = np.cumsum(used) - 1
    return verts[used], remap[faces].astype(np.int64)


def hoppe_reconstruct(
    points: np.ndarray,
    normals: np.ndarray,
    resolution: int = 256,
    max_distance: float | None = None,
    padding: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Hoppe 1992: zero set of the signed distance to the nearest tangent plane.

    Args:
        points: (N, 3); normals: (N, 3) outward.
        resolution: grid vertices along the longest side of the bounding box.
        max_distance: faces with a vertex farther than this from the data are dropped
            (default: 2 grid cells plus the mean distance to the 8th neighbour, i.e.
            the paper's sampling density rho plus noise delta).
        padding: empty cells around the bounding box.

    Returns:
        vertices (V, 3) float32, faces (F, 3) int64 (input coordinates).
    """
    from scipy.spatial import cKDTree

    from .marching_cubes import marching_cubes

    pts = np.asarray(points, np.float64)
    nrm = np.asarray(normals, np.float64)
    if len(pts) < 4:
        raise InputError(f"Hoppe reconstruction needs at least 4 points, got {len(pts)}")
    if resolution - 2 * padding < 2:
        raise InputError(f"Hoppe reconstruction: --res must be at least {2 * padding + 2}, got {resolution}")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    cell = float((hi - lo).max()) / max(resolution - 1 - 2 * padding, 1)
    origin = lo - padding * cell
    shape = np.ceil((hi - origin) / cell).astype(int) + padding + 1
    # the dense float32 distance grid, plus about as much again for marching cubes
    need = 2.0 * 4 * float(np.prod(shape.astype(np.float64)))
    if need > _memory_limit():
        raise ResourceError(f"Hoppe reconstruction: --res {resolution} needs about {need / 1e9:,.1f} GB "
                            f"(grid {shape[0]}x{shape[1]}x{shape[2]}); this machine has {_memory_limit() / 0.8e9:,.1f} GB")
    tree = cKDTree(pts)
    if max_distance is None:
        d8, _ = tree.query(pts[:: max(1, len(pts) // 20000)], k=min(9, len(pts)), workers=-1)
        max_distance = 2.0 * cell + float(np.asarray(d8)[:, -1].mean())
    values = np.empty(shape, np.float32)
    gy, gz = np.meshgrid(np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    for i in range(shape[0]):  # one x-slab at a time bounds memory to Y*Z points
        q = origin + cell * np.stack([np.full(gy.shape, i), gy, gz], axis=-1).reshape(-1, 3)
        _, idx = tree.query(q, workers=-1)
        values[i] = np.einsum("mj,mj->m", q - pts[idx], nrm[idx]).reshape(gy.shape)
    verts, faces = marching_cubes(values, 0.0)
    verts = origin + np.asarray(verts, np.float64) * cell
    dist, _ = tree.query(verts, workers=-1)
    verts, faces = _keep_faces(verts, np.asarray(faces, np.int64), dist <= max_distance)
    return verts.astype(np.float32), faces
