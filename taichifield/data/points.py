"""Point and mesh inputs -> oriented points, and the normalisation into the training cube.

Readers (chosen by extension, case-insensitive):

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

__all__ = [
    "OrientedPoints",
    "Normalization",
    "read_geometry",
    "load_oriented_points",
    "sample_mesh",
    "POINT_SUFFIXES",
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

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def _read_ply(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise InputError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
    body_start = data.index(b"\n", end) + 1
    header = data[:end].decode("ascii", "replace").splitlines()
    fmt = ""
    elements: list[tuple[str, int, list[tuple[str, str, str | None]]]] = []  # name, count, props
    for line in header:
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            elements.append((tok[1], int(tok[2]), []))
        elif tok[0] == "property" and elements:
            if tok[1] == "list":
                elements[-1][2].append((tok[4], _PLY_TYPES[tok[3]], _PLY_TYPES[tok[2]]))
            else:
                elements[-1][2].append((tok[2], _PLY_TYPES[tok[1]], None))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise InputError(f"{path}: unsupported PLY format {fmt!r}")
    verts: dict[str, np.ndarray] = {}
    faces = None
    if fmt == "ascii":
        lines = data[body_start:].decode("ascii", "replace").splitlines()
        pos = 0
        for name, count, props in elements:
            chunk = lines[pos:pos + count]
            pos += count
            if name == "vertex":
                if any(p[2] is not None for p in props):
                    raise InputError(f"{path}: list properties on vertices are not supported")
                arr = np.loadtxt(chunk, dtype=np.float64, ndmin=2) if count else np.zeros((0, len(props)))
                verts = {p[0]: arr[:, i] for i, p in enumerate(props)}
            elif name == "face" and count:
                rows = [list(map(int, ln.split())) for ln in chunk]
                faces = _triangulate([r[1:1 + r[0]] for r in rows])
            elif name != "face":
                continue
    else:
        bo = "<" if fmt == "binary_little_endian" else ">"
        offset = body_start
        for name, count, props in elements:
            if all(p[2] is None for p in props):
                dt = np.dtype([(p[0], bo + p[1]) for p in props])
                arr = np.frombuffer(data, dtype=dt, count=count, offset=offset)
                offset += dt.itemsize * count
                if name == "vertex":
                    verts = {p[0]: arr[p[0]].astype(np.float64) for p in props}
                continue
            if len(props) == 1 and count:  # a single list property: try the all-triangles fast path
                _, item, cnt = props[0]
                dt = np.dtype([("n", bo + cnt), ("i", bo + item, (3,))])
                arr = np.frombuffer(data, dtype=dt, count=count, offset=offset) if len(data) - offset >= dt.itemsize * count else None
                if arr is not None and np.all(arr["n"] == 3):
                    offset += dt.itemsize * count
                    if name == "face":
                        faces = arr["i"].astype(np.int64)
                    continue
            polys, offset = _read_binary_lists(data, offset, count, props, bo)
            if name == "face":
                faces = _triangulate(polys)
    if "x" not in verts:
        raise InputError(f"{path}: PLY has no vertex x/y/z properties")
    points = np.stack([verts["x"], verts["y"], verts["z"]], axis=1)
    normals = np.stack([verts["nx"], verts["ny"], verts["nz"]], axis=1) if "nx" in verts else None
    return points, normals, faces


def _read_binary_lists(data: bytes, offset: int, count: int, props: list, bo: str) -> tuple[list[list[int]], int]:
    polys: list[list[int]] = []
    for _ in range(count):
        poly: list[int] = []
        for _name, item, cnt in props:
            if cnt is None:
                offset += np.dtype(item).itemsize
                continue
            n = int(np.frombuffer(data, bo + cnt, 1, offset)[0])
            offset += np.dtype(cnt).itemsize
            vals = np.frombuffer(data, bo + item, n, offset)
            offset += np.dtype(item).itemsize * n
            if not poly:
                poly = vals.astype(np.int64).tolist()
        polys.append(poly)
    return polys, offset


def _triangulate(polys: list[list[int]]) -> np.ndarray:
    tris = [(p[0], p[i], p[i + 1]) for p in polys for i in range(1, len(p) - 1)]
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    v: list[str] = []
    vn: list[str] = []
    polys: list[list[int]] = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("v "):
            v.append(line[2:])
        elif line.startswith("vn "):
            vn.append(line[3:])
        elif line.startswith("f "):
            idx = [int(t.split("/")[0]) for t in line[2:].split()]
            polys.append([i - 1 if i > 0 else len(v) + i for i in idx])
    points = np.loadtxt(v, dtype=np.float64, ndmin=2)[:, :3] if v else np.zeros((0, 3))
    normals = np.loadtxt(vn, dtype=np.float64, ndmin=2)[:, :3] if vn and len(vn) == len(v) else None
    return points, normals, _triangulate(polys) if polys else None


def _read_off(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    lines = [ln.split("#")[0].strip() for ln in path.read_text(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].split()[0].upper().endswith("OFF"):
        raise InputError(f"{path}: not an OFF file (first line is not 'OFF')")
    rest = lines[1:]
    if len(lines[0].split()) > 1:  # counts on the magic line
        rest = [lines[0].split(None, 1)[1]] + rest
    nv, nf = (int(t) for t in rest[0].split()[:2])
    points = np.loadtxt(rest[1:1 + nv], dtype=np.float64, ndmin=2)[:, :3] if nv else np.zeros((0, 3))
    polys = [[int(t) for t in ln.split()[1:1 + int(ln.split()[0])]] for ln in rest[1 + nv:1 + nv + nf]]
    return points, None, _triangulate(polys) if polys else None


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
        pts, nrm, _ = _read_ply(path.parent / tok[1])
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
    readers = {".ply": _read_ply, ".obj": _read_obj, ".off": _read_off, ".xyz": _read_columns,
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
            (.off) with no faces, zero-length normals.
    """
    p = Path(path)
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
    mesh_v = mesh_f = None
    if faces is not None:
        if faces.min() < 0 or faces.max() >= len(points):
            raise InputError(f"{p}: face indices out of range (0..{len(points) - 1})")
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
            if len(points) < 4:
                raise InputError(f"{p}: {len(points)} points without normals: too few to estimate normals")
            from ..geometry.normals import estimate_normals, orient_normals

            log.info("%s: estimating and orienting normals (k=%d)", p, k_normals)
            normals = orient_normals(points, estimate_normals(points, k=k_normals), k=k_normals)
    biggest = np.abs(normals).max(axis=1)  # rescale first: huge normals must not overflow the norm
    unit = normals / np.where(biggest > 0, biggest, 1.0)[:, None]
    length = np.linalg.norm(unit, axis=1)
    if np.any(length * biggest < 1e-12):
        raise InputError(f"{p}: {int((length * biggest < 1e-12).sum())} zero-length normals")
    normals = unit / length[:, None]
    return OrientedPoints(
        points=points.astype(np.float32), normals=normals.astype(np.float32), source=str(p),
        mesh_vertices=mesh_v, mesh_faces=mesh_f,
    )
