"""Point and mesh inputs -> oriented points, and the normalisation into the training cube.

Readers (chosen by extension, case-insensitive; PLY/OBJ/OFF through
:func:`taichifield.geometry.mesh_io.read_mesh_data`):

* ``.ply`` - ASCII or binary (little/big endian); ``vertex`` x y z [nx ny nz] and an
  optional ``face`` element (a PLY without faces is a point cloud).
* ``.obj`` - ``v`` / ``vn`` / ``f`` lines (polygons are fanned into triangles).
* ``.off`` - OFF (``NOFF``/``COFF`` headers accepted).
* ``.xyz`` / ``.txt`` / ``.pts`` - whitespace columns ``x y z [nx ny nz]``.
* ``.npy`` - an (N, 3) or (N, 6) array; ``.npz`` - arrays ``points`` (or ``xyz``,
  ``vertices``) and optionally ``normals`` and ``faces``.
* ``.conf`` - a Stanford range-scan alignment file (``bmesh FILE tx ty tz qx qy qz qw``):
  every listed scan is read and moved into the common frame, ``p @ R(q) + t``
  (row vectors; checked against the zippered bunny: 0.5 mm median).

A mesh input is sampled area-uniformly into oriented points (face normals); points
without normals get PCA normals, consistently oriented by MST propagation
(:mod:`taichifield.geometry.normals`).

Training happens in a normalised frame: ``x_n = (x - center) / scale`` with ``center``
the bounding-box centre and ``scale`` such that the data fills ``[-0.8, 0.8]^3`` of
the cube ``[-1, 1]^3`` (:class:`Normalization`); every output goes back through
:meth:`Normalization.to_input`.
"""

from __future__ import annotations

import logging
import os
import re
import tokenize
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry.mesh_io import read_mesh_data

__all__ = [
    "OrientedPoints",
    "Normalization",
    "read_geometry",
    "load_oriented_points",
    "sample_mesh",
    "POINT_SUFFIXES",
    "MIN_POINTS",
    "check_point_set",
    "validate_points_file",
]

log = logging.getLogger(__name__)

POINT_SUFFIXES = (".ply", ".obj", ".off", ".xyz", ".txt", ".pts", ".npy", ".npz", ".conf")

#: half-size of the cube the data is scaled into (inside the training cube [-1, 1]^3)
FILL = 0.8


@dataclass
class OrientedPoints:
    """Points with unit normals, in the input's own coordinates.

    Attributes:
        points: (N, 3) float32.
        normals: (N, 3) float32 unit normals (outward).
        source: the file they came from.
        mesh_vertices: (V, 3) float32 when the input was a mesh, else None.
        mesh_faces: (F, 3) int64 when the input was a mesh, else None.
    """

    points: np.ndarray
    normals: np.ndarray
    source: str
    mesh_vertices: np.ndarray | None = None
    mesh_faces: np.ndarray | None = None


@dataclass
class Normalization:
    """``x_n = (x - center) / scale``; stored in checkpoints as plain lists."""

    center: np.ndarray  # (3,)
    scale: float

    @classmethod
    def fit(cls, points: np.ndarray, fill: float = FILL) -> "Normalization":
        """Centre the bounding box; its longest half-side becomes ``fill``."""
        lo, hi = points.min(axis=0), points.max(axis=0)
        half = float((hi - lo).max()) / 2.0
        return cls(center=((lo + hi) / 2.0).astype(np.float64), scale=max(half, 1e-12) / fill)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) input coordinates -> normalised coordinates."""
        return ((np.asarray(x, np.float64) - self.center) / self.scale).astype(np.float32)

    def to_input(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) normalised coordinates -> input coordinates (float32)."""
        return (np.asarray(x, np.float64) * self.scale + self.center).astype(np.float32)

    def as_dict(self) -> dict[str, object]:
        return {"center": [float(c) for c in self.center], "scale": float(self.scale)}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> "Normalization":
        return cls(center=np.asarray(d["center"], np.float64), scale=float(d["scale"]))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- readers

def _read_columns(path: Path) -> tuple[np.ndarray, np.ndarray | None, None]:
    if not path.read_text(errors="replace").strip():
        return np.zeros((0, 3)), None, None
    arr = np.loadtxt(path, dtype=np.float64, ndmin=2, comments="#")
    return _split_columns(path, arr)


def _split_columns(path: Path, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, None]:
    if arr.size == 0:
        return np.zeros((0, 3)), None, None
    if arr.ndim != 2 or arr.shape[1] not in (3, 6):
        raise InputError(f"{path}: expected rows of x y z [nx ny nz], got shape {tuple(arr.shape)}")
    return arr[:, :3], (arr[:, 3:6] if arr.shape[1] == 6 else None), None


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    with np.load(path) as z:
        key = next((k for k in ("points", "xyz", "vertices", "verts") if k in z), None)
        if key is None:
            raise InputError(f"{path}: NPZ has none of the arrays 'points', 'xyz', 'vertices' (has {sorted(z.files)})")
        pts = np.asarray(z[key], np.float64)
        normals = np.asarray(z["normals"], np.float64) if "normals" in z else None
        faces = np.asarray(z["faces"], np.int64) if "faces" in z else None
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"{path}: '{key}' must have shape (N, 3), got {tuple(pts.shape)}")
    return pts, normals, faces


def _quat_to_matrix(qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    q = np.array([qw, qx, qy, qz]) / np.linalg.norm([qw, qx, qy, qz])
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _read_conf(path: Path) -> tuple[np.ndarray, np.ndarray | None, None]:
    chunks, normals = [], []
    for line in path.read_text(errors="replace").splitlines():
        tok = line.split()
        if len(tok) != 9 or tok[0] != "bmesh":
            continue
        t = np.array([float(v) for v in tok[2:5]])
        rot = _quat_to_matrix(*(float(v) for v in tok[5:9]))
        pts, nrm, _ = read_mesh_data(path.parent / tok[1])
        chunks.append(pts @ rot + t)
        normals.append(None if nrm is None else nrm @ rot)
    if not chunks:
        raise InputError(f"{path}: no 'bmesh FILE tx ty tz qx qy qz qw' lines in the .conf file")
    has_n = all(n is not None for n in normals)
    return np.concatenate(chunks), (np.concatenate(normals) if has_n else None), None  # type: ignore[arg-type]


def read_geometry(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read a point cloud or mesh file.

    Returns:
        points (N, 3) float64, normals (N, 3) float64 or None, faces (F, 3) int64 or None.

    Raises:
        InputError: missing/unreadable file, unknown extension, malformed content.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    suffix = p.suffix.lower()
    readers = {".ply": read_mesh_data, ".obj": read_mesh_data, ".off": read_mesh_data, ".xyz": _read_columns,
               ".txt": _read_columns, ".pts": _read_columns, ".npz": _read_npz, ".conf": _read_conf}
    if suffix not in readers and suffix != ".npy":
        raise InputError(f"{p}: unknown point/mesh format {suffix!r} (use one of {', '.join(POINT_SUFFIXES)})")
    try:
        if suffix == ".npy":
            points, normals, faces = _split_columns(p, np.asarray(np.load(p), np.float64))
        else:
            points, normals, faces = readers[suffix](p)
        return _check_shapes(p, points, normals, faces)
    except InputError:
        raise
    except _PARSE_ERRORS as exc:
        msg = re.sub(r"\s+", " ", str(exc)).strip()[:120] or type(exc).__name__
        raise InputError(f"{p}: cannot parse as {suffix[1:].upper()} ({msg})") from None


# what numpy/zipfile raise on corrupt files (np.load parses the .npy header with ast/tokenize)
_PARSE_ERRORS = (ValueError, IndexError, KeyError, TypeError, OSError, UnicodeDecodeError, EOFError, OverflowError,
                 SyntaxError, tokenize.TokenError, zipfile.BadZipFile, RecursionError)


def _check_shapes(path: Path, points: np.ndarray, normals: np.ndarray | None,
                  faces: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """points (N, 3) floats, normals (N, 3) or None, faces (F, 3) ints or None; else InputError."""
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"{path}: points need three coordinates each, got an array of shape {points.shape}")
    if normals is not None:
        normals = np.asarray(normals, np.float64)
        if normals.shape != points.shape:
            raise InputError(f"{path}: {len(normals)} normals of shape {normals.shape[1:]} for {len(points)} points")
    if faces is not None:
        faces = np.asarray(faces)
        if faces.size and (faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu"):
            raise InputError(f"{path}: faces must be (F, 3) vertex indices, got {faces.dtype} {faces.shape}")
        faces = faces.astype(np.int64).reshape(-1, 3)
    return points, normals, faces


def sample_mesh(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform samples of a triangle mesh with their face normals.

    Args:
        vertices: (V, 3); faces: (F, 3) int; n: number of samples.

    Returns:
        points (n, 3) float64, normals (n, 3) float64 (unit, by the faces' winding).
    """
    rng = np.random.default_rng(seed)
    tri = vertices[faces]  # (F, 3, 3)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    if not np.any(area > 0):
        raise InputError("mesh has only degenerate (zero-area) faces")
    idx = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[idx]
    pts = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    nrm = cross[idx] / np.maximum(area[idx], 1e-30)[:, None]
    return pts, nrm


#: fewest distinct points a point cloud may have: below this there is no surface to speak of
#: (PCA normals alone use 16 neighbours), and every result would be the model's guess
MIN_POINTS = 10
#: a cross extent below this fraction of the longest extent counts as zero: far below any
#: marching-cubes cell (1/512 of the box) the field could resolve
FLAT_TOLERANCE = 1e-4


def check_point_set(points: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Refuse a point cloud that has no surface to fit; planar sets are accepted.

    The rule: with ``e1 >= e2 >= e3`` the extents of the cloud along its principal axes
    (PCA of the centred points), a cloud is refused when

    * ``e1`` is zero: all points are one point;
    * ``e2 <= 1e-4 e1``: all points lie on one line (collinear) - a line or a point has no
      normal direction to orient and no area to reconstruct;
    * it has fewer than :data:`MIN_POINTS` distinct points.

    ``e3 = 0`` (all points in a plane) is accepted: a planar patch (a wall, a sheet, a
    terrain tile) is a real open surface. "Zero" allows for float32 rounding of the input:
    2^-19 times the largest coordinate magnitude.

    Args:
        points: (N, 3) finite coordinates; path: the file, for the message.

    Raises:
        InputError: ``<path>: <what is degenerate>``.
    """
    pts = np.asarray(points, np.float64)
    n = len(pts)
    noise = 2.0**-19 * float(np.abs(pts).max(initial=0.0))
    centred = pts - pts.mean(axis=0)
    _, axes = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues: axes[:, 2] is the longest
    proj = centred @ axes[:, ::-1]
    e1, e2, _ = np.ptp(proj, axis=0) if n else (0.0, 0.0, 0.0)
    if e1 <= noise:
        x, y, z = pts[0]
        raise InputError(f"{path}: all {n} points are the same point ({x:.6g}, {y:.6g}, {z:.6g}); "
                         "a surface needs points spread over at least a plane")
    if e2 <= max(FLAT_TOLERANCE * e1, noise):
        raise InputError(f"{path}: all {n} points lie on one line ({e1:.4g} long, {e2:.3g} across); "
                         "a line has no surface to fit (planar or 3-D point sets are accepted)")
    head = len(np.unique(pts[:1000], axis=0))  # enough distinct points up front: skip the full count
    distinct = head if head >= MIN_POINTS else len(np.unique(pts, axis=0))
    if distinct < MIN_POINTS:
        what = f"{n} points" if distinct == n else f"{distinct} distinct points (of {n})"
        raise InputError(f"{path}: only {what}; at least {MIN_POINTS} are needed to fit a surface")


def _unit_normals(path: Path, normals: np.ndarray) -> np.ndarray:
    """(N, 3) normals scaled to unit length; InputError naming the file for zero-length ones."""
    biggest = np.abs(normals).max(axis=1)  # rescale first: huge normals must not overflow the norm
    unit = normals / np.where(biggest > 0, biggest, 1.0)[:, None]
    length = np.linalg.norm(unit, axis=1)
    if np.any(length * biggest < 1e-12):
        raise InputError(f"{path}: {int((length * biggest < 1e-12).sum())} zero-length normals")
    return unit / length[:, None]


def _validated_geometry(p: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """:func:`read_geometry` plus every check of :func:`load_oriented_points` (normals unit length)."""
    points, normals, faces = read_geometry(p)
    if points.shape[0] == 0:
        raise InputError(f"{p}: no points in the file")
    if not np.isfinite(points).all():
        raise InputError(f"{p}: non-finite (NaN/inf) point coordinates")
    if np.abs(points).max() > 1e30:
        raise InputError(f"{p}: point coordinates up to {np.abs(points).max():.3g} are beyond float32 range")
    if normals is not None and not np.isfinite(normals).all():
        raise InputError(f"{p}: non-finite (NaN/inf) normals")
    if faces is not None and len(faces) == 0:
        faces = None
    if faces is None and p.suffix.lower() == ".off":
        raise InputError(f"{p}: mesh has no faces")
    if faces is not None:
        if faces.min() < 0 or faces.max() >= len(points):
            raise InputError(f"{p}: face indices out of range (0..{len(points) - 1})")
        tri = points[faces]
        if not np.any(np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) > 0):
            raise InputError(f"{p}: mesh has only degenerate (zero-area) faces")
        return points, normals, faces
    if normals is not None:
        normals = _unit_normals(p, normals)
    check_point_set(points, p)
    return points, normals, None


def validate_points_file(path: str | os.PathLike[str]) -> None:
    """Every input check of :func:`load_oriented_points` without its work (no normal
    estimation, no sampling): for commands that must refuse bad input before they touch
    their outputs. Raises :class:`InputError`."""
    _validated_geometry(Path(path))


def load_oriented_points(
    path: str | os.PathLike[str],
    *,
    n_samples: int = 100_000,
    max_points: int | None = 500_000,
    k_normals: int = 16,
    seed: int = 0,
) -> OrientedPoints:
    """Read ``path`` and return oriented points in the input's coordinates.

    Args:
        path: any format of :func:`read_geometry`.
        n_samples: samples drawn from a mesh input (area-uniform).
        max_points: point clouds larger than this are randomly subsampled.
        k_normals: neighbours for PCA normals when the file has none.
        seed: sampling seed.

    Raises:
        InputError: empty cloud, non-finite coordinates or normals, a mesh file
            (.off) with no faces, zero-length normals, a degenerate cloud
            (:func:`check_point_set`: one point, a line, fewer than 10 distinct points).
    """
    p = Path(path)
    points, normals, faces = _validated_geometry(p)
    mesh_v = mesh_f = None
    if faces is not None:
        mesh_v, mesh_f = points.astype(np.float32), faces
        try:
            points, normals = sample_mesh(points, faces, n_samples, seed)
        except InputError as exc:
            raise InputError(f"{p}: {exc}") from None
    else:
        if max_points is not None and len(points) > max_points:
            keep = np.random.default_rng(seed).choice(len(points), max_points, replace=False)
            points = points[keep]
            normals = None if normals is None else normals[keep]
        if normals is None:
            from ..geometry.normals import estimate_normals, orient_normals

            log.info("%s: estimating and orienting normals (k=%d)", p, k_normals)
            normals = orient_normals(points, estimate_normals(points, k=k_normals), k=k_normals)
    normals = _unit_normals(p, normals)
    return OrientedPoints(
        points=points.astype(np.float32), normals=normals.astype(np.float32), source=str(p),
        mesh_vertices=mesh_v, mesh_faces=mesh_f,
    )
