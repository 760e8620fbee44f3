"""Triangle-mesh files: PLY (ascii and binary), OBJ and OFF readers; PLY/OBJ writers (with vertex colours).

Small numpy readers and writers, so reading a mesh needs neither Open3D nor trimesh.
Polygons are fan-triangulated on load. :func:`read_mesh_data` is the one parser: it
also returns vertex normals and accepts files without faces (point clouds), and serves
both :func:`load_mesh` and :func:`taichifield.data.points.read_geometry`. Every error
names the file and the problem in one line (:class:`~taichifield.errors.InputError`);
files are written atomically.

Example:
    >>> from taichifield.geometry.mesh_io import load_mesh, save_mesh
    >>> v, f = load_mesh("bunny.off")          # (V, 3) float32, (F, 3) int64
    >>> save_mesh("bunny.ply", v, f)           # binary little-endian PLY
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError

__all__ = ["load_mesh", "read_mesh_data", "read_vertex_colors", "save_mesh", "MESH_SUFFIXES"]

MESH_SUFFIXES = (".ply", ".obj", ".off")

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def _fan(polys: list[list[int]], name: str) -> np.ndarray:
    tris = [(p[0], p[k], p[k + 1]) for p in polys for k in range(1, len(p) - 1)]
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def _finish(path: Path, v: np.ndarray, f: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(v)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(f"{path}: vertices need three coordinates each, got an array of shape {v.shape}")
    if f is None:
        raise InputError(f"{path}: mesh has no faces (a point cloud?)")
    v = np.ascontiguousarray(v, dtype=np.float32)
    f = np.ascontiguousarray(f, dtype=np.int64).reshape(-1, 3)
    if len(f) == 0:
        raise InputError(f"{path}: mesh has no faces (a point cloud?)")
    if f.min() < 0 or f.max() >= len(v):
        raise InputError(f"{path}: face index out of range (file has {len(v)} vertices)")
    if not np.all(np.isfinite(v)):
        raise InputError(f"{path}: vertex coordinates contain NaN or infinity")
    return v, f


# ----------------------------------------------------------------------------- PLY
def _ply_header(fh: Any, path: Path) -> tuple[str, list[tuple[str, int, list[tuple]]]]:
    if fh.readline().strip() != b"ply":
        raise InputError(f"{path}: not a PLY file (no 'ply' magic)")
    fmt, elements = "", []
    while True:
        line = fh.readline()
        if not line:
            raise InputError(f"{path}: truncated PLY header (no end_header)")
        tok = line.decode("latin-1").split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "end_header":
            return fmt, elements
        try:
            if tok[0] == "format":
                fmt = tok[1]
            elif tok[0] == "element":
                elements.append((tok[1], int(tok[2]), []))
            elif tok[0] == "property" and tok[1] == "list":
                elements[-1][2].append((tok[4], _PLY_TYPES[tok[2]], _PLY_TYPES[tok[3]]))
            elif tok[0] == "property":
                elements[-1][2].append((tok[2], _PLY_TYPES[tok[1]]))
            else:
                raise ValueError(tok[0])
        except (IndexError, KeyError, ValueError):
            raise InputError(f"{path}: malformed PLY header line {line.decode('latin-1').strip()!r}") from None


def _ply_binary_element(fh: Any, count: int, props: list[tuple], endian: str, path: Path) -> dict[str, Any]:
    """Read one element; a list property comes back as a list of per-row arrays or an (N, k) array."""
    lists = [p for p in props if len(p) == 3]
    if not lists:
        dt = np.dtype([(p[0], endian + p[1]) for p in props])
        data = np.frombuffer(fh.read(dt.itemsize * count), dtype=dt, count=count)
        return {p[0]: data[p[0]] for p in props}
    if len(lists) == 1 and props[-1] is lists[0] and count > 0:
        # common case: scalars then one list; try "every list has the same length"
        start = fh.tell()
        head = np.dtype([(p[0], endian + p[1]) for p in props[:-1]])
        name, ct, it = lists[0]
        first = np.frombuffer(fh.read(head.itemsize + np.dtype(ct).itemsize), dtype=np.dtype(
            [*[(p[0], endian + p[1]) for p in props[:-1]], ("n", endian + ct)]), count=1)
        k = int(first["n"][0])
        dt = np.dtype([*[(p[0], endian + p[1]) for p in props[:-1]], ("n", endian + ct), (name, endian + it, (k,))])
        fh.seek(start)
        raw = fh.read(dt.itemsize * count)
        if len(raw) == dt.itemsize * count:
            data = np.frombuffer(raw, dtype=dt, count=count)
            if np.all(data["n"] == k):
                return {p[0]: data[p[0]] for p in props}
        fh.seek(start)
    out: dict[str, Any] = {p[0]: [] for p in props}  # general (slow) path
    for _ in range(count):
        for p in props:
            if len(p) == 2:
                out[p[0]].append(np.frombuffer(fh.read(np.dtype(p[1]).itemsize), endian + p[1])[0])
            else:
                n = int(np.frombuffer(fh.read(np.dtype(p[1]).itemsize), endian + p[1])[0])
                out[p[0]].append(np.frombuffer(fh.read(n * np.dtype(p[2]).itemsize), endian + p[2]))
    return out


def _ply_ascii_element(lines: list[bytes], props: list[tuple]) -> dict[str, Any]:
    if all(len(p) == 2 for p in props):
        if not lines:  # an empty element (e.g. a PLY with no vertices)
            return {p[0]: np.zeros(0) for p in props}
        arr = np.array(b" ".join(lines).split(), dtype=np.float64).reshape(len(lines), -1)
        return {p[0]: arr[:, i] for i, p in enumerate(props)}
    out: dict[str, Any] = {p[0]: [] for p in props}
    for line in lines:
        tok, i = line.split(), 0
        for p in props:
            if len(p) == 2:
                out[p[0]].append(float(tok[i]))
                i += 1
            else:
                n = int(tok[i])
                out[p[0]].append([int(t) for t in tok[i + 1:i + 1 + n]])
                i += 1 + n
    return out


_Arrays = tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]  # vertices, normals, faces, colours
_RGB = ("red", "green", "blue")


def _load_ply(path: Path) -> _Arrays:
    with open(path, "rb") as fh:
        fmt, elements = _ply_header(fh, path)
        data: dict[str, dict[str, Any]] = {}
        if fmt == "ascii":
            lines = [ln for ln in fh.read().splitlines() if ln.strip()]
            pos = 0
            for name, count, props in elements:
                if name in ("vertex", "face"):  # others (e.g. a scan's range_grid) are skipped
                    data[name] = _ply_ascii_element(lines[pos:pos + count], props)
                pos += count
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            endian = "<" if fmt == "binary_little_endian" else ">"
            for name, count, props in elements:
                data[name] = _ply_binary_element(fh, count, props, endian, path)
        else:
            raise InputError(f"{path}: unknown PLY format {fmt!r}")
    vert = data.get("vertex")
    if vert is None or not all(k in vert for k in "xyz"):
        raise InputError(f"{path}: PLY has no vertex element with x, y, z")
    v = np.stack([np.asarray(vert[k], dtype=np.float64) for k in "xyz"], axis=1)
    n = None
    if all(k in vert for k in ("nx", "ny", "nz")):
        n = np.stack([np.asarray(vert[k], dtype=np.float64) for k in ("nx", "ny", "nz")], axis=1)
    c = None
    if all(k in vert for k in _RGB):  # integer channels (uchar) scale by their maximum, floats are [0, 1]
        kind = dict(p[:2] for p in next(e[2] for e in elements if e[0] == "vertex"))["red"]
        scale = float(np.iinfo(kind).max) if np.dtype(kind).kind in "iu" else 1.0
        c = np.stack([np.asarray(vert[k], dtype=np.float64) for k in _RGB], axis=1) / scale
    face = data.get("face", {})
    idx = face.get("vertex_indices", face.get("vertex_index"))
    if idx is None:
        return v, n, None, c
    if isinstance(idx, np.ndarray) and idx.ndim == 2:
        f = idx.astype(np.int64) if idx.shape[1] == 3 else _fan(idx.tolist(), str(path))
    else:
        f = _fan([list(p) for p in idx], str(path))
    return v, n, f, c


# ----------------------------------------------------------------------- OBJ / OFF
def _load_obj(path: Path) -> _Arrays:
    verts: list[bytes] = []
    vnorms: list[bytes] = []
    polys: list[list[int]] = []
    with open(path, "rb") as fh:
        for line in fh:
            if line.startswith(b"v "):
                verts.append(line[2:])
            elif line.startswith(b"vn "):
                vnorms.append(line[3:])
            elif line.startswith(b"f "):
                ids = [int(t.split(b"/")[0]) for t in line[2:].split()]
                polys.append([i - 1 if i > 0 else len(verts) + i for i in ids])
    rows = [row.split() for row in verts]
    try:
        v = np.array([row[:3] for row in rows], dtype=np.float64) if verts else np.zeros((0, 3))
    except ValueError:
        raise InputError(f"{path}: malformed 'v' line (need three numbers)") from None
    c = None  # the common 'v x y z r g b' extension; values above 1 are read as 0..255
    if rows and all(len(row) >= 6 for row in rows):
        c = np.array([row[3:6] for row in rows], dtype=np.float64)
        c = c / 255.0 if c.max() > 1.0 else c
    n = None
    if vnorms and len(vnorms) == len(verts):  # only normals that map one-to-one onto the vertices
        try:
            n = np.array([row.split()[:3] for row in vnorms], dtype=np.float64)
        except ValueError:
            raise InputError(f"{path}: malformed 'vn' line (need three numbers)") from None
    return v, n, _fan(polys, str(path)) if polys else None, c


def _load_off(path: Path) -> _Arrays:
    with open(path, "rb") as fh:
        lines = [ln.split(b"#")[0].strip() for ln in fh]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].split()[0].upper().endswith(b"OFF"):  # OFF, NOFF, COFF, ...
        raise InputError(f"{path}: not an OFF file (no 'OFF' header)")
    head = lines[0].split()[1:] or lines.pop(1).split()
    nv, nf = int(head[0]), int(head[1])
    body = lines[1:]
    if len(body) < nv + nf:
        raise InputError(f"{path}: truncated OFF file ({len(body)} data lines, header promises {nv + nf})")
    v = np.array([ln.split()[:3] for ln in body[:nv]], dtype=np.float64).reshape(nv, 3)
    face_tok = [ln.split() for ln in body[nv:nv + nf]]
    if not face_tok:
        return v, None, None, None
    if all(len(t) >= 4 and t[0] == b"3" for t in face_tok):
        f = np.array([t[1:4] for t in face_tok], dtype=np.int64)
    else:
        f = _fan([[int(x) for x in t[1:1 + int(t[0])]] for t in face_tok], str(path))
    return v, None, f, None


def read_mesh_data(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read vertices, vertex normals and faces from PLY (ascii/binary), OBJ or OFF, by extension.

    Unlike :func:`load_mesh` this accepts files without faces (point clouds). Normals are
    PLY ``nx ny nz`` vertex properties, or OBJ ``vn`` lines when there is exactly one per
    ``v`` line (otherwise they belong to faces and are dropped); OFF gives none.

    Args:
        path: the file.

    Returns:
        vertices: (V, 3) float64 as stored; normals: (V, 3) float64 or None;
        faces: (F, 3) int64 (polygons fan-triangulated) or None when the file has none.
        Values are not range- or finiteness-checked.

    Raises:
        InputError: missing file, unknown extension, malformed/truncated content; the
            message names the file.
    """
    v, n, f, _ = _read(Path(path))
    return v, n, f


def read_vertex_colors(path: str | os.PathLike[str]) -> np.ndarray | None:
    """Vertex colours (V, 3) float64 in [0, 1] of a PLY (``red green blue`` vertex properties;
    uchar scaled by 1/255) or OBJ (``v x y z r g b`` lines), or None when the file has none
    (OFF: always None). Errors as :func:`read_mesh_data`."""
    return _read(Path(path))[3]


def _read(p: Path) -> _Arrays:
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    suffix = p.suffix.lower()
    readers = {".ply": _load_ply, ".obj": _load_obj, ".off": _load_off}
    if suffix not in readers:
        raise InputError(f"{p}: unknown mesh format {suffix or '(none)'!r}; use {', '.join(MESH_SUFFIXES)}")
    try:
        v, n, f, c = readers[suffix](p)
    except InputError:
        raise
    except (ValueError, IndexError, TypeError, KeyError, UnicodeDecodeError, OverflowError, EOFError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise InputError(f"{p}: corrupt {suffix[1:].upper()} file ({type(exc).__name__}: {detail})") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if f is not None and len(f) == 0:
        f = None
    if c is not None and (c.shape != v.shape or not np.all(np.isfinite(c))):
        c = None  # colours that do not map one-to-one onto the vertices are dropped
    return v, n, f, c


def load_mesh(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a triangle mesh from PLY (ascii/binary), OBJ or OFF, by extension.

    Args:
        path: the file.

    Returns:
        vertices: (V, 3) float32; faces: (F, 3) int64 (polygons fan-triangulated).

    Raises:
        InputError: missing file, unknown extension, malformed/truncated content, bad
            indices, or no faces; the message names the file.
    """
    v, _, f = read_mesh_data(path)
    return _finish(Path(path), v, f)


# --------------------------------------------------------------------------- write
def _colors_u8(colors: np.ndarray) -> np.ndarray:
    c = np.asarray(colors)
    if c.dtype.kind == "f":
        c = np.clip(np.round(c * 255.0), 0, 255)
    return c.astype(np.uint8)


def _write_ply(tmp: Path, v: np.ndarray, f: np.ndarray, n: np.ndarray | None, c: np.ndarray | None) -> None:
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    header = ["ply", "format binary_little_endian 1.0", "comment written by taichifield",
              f"element vertex {len(v)}", "property float x", "property float y", "property float z"]
    if n is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
        header += ["property float nx", "property float ny", "property float nz"]
    if c is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    vert = np.empty(len(v), dtype=fields)
    vert["x"], vert["y"], vert["z"] = v.T
    if n is not None:
        vert["nx"], vert["ny"], vert["nz"] = n.T
    if c is not None:
        vert["red"], vert["green"], vert["blue"] = _colors_u8(c)[:, :3].T
    face = np.empty(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face["n"], face["i"] = 3, f
    with open(tmp, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(vert.tobytes())
        fh.write(face.tobytes())


def _write_obj(tmp: Path, v: np.ndarray, f: np.ndarray, n: np.ndarray | None, c: np.ndarray | None) -> None:
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write("# written by taichifield\n")
        if c is not None:
            cf = _colors_u8(c)[:, :3].astype(np.float64) / 255.0
            np.savetxt(fh, np.hstack([v, cf]), fmt="v %.7g %.7g %.7g %.6g %.6g %.6g")
        else:
            np.savetxt(fh, v, fmt="v %.7g %.7g %.7g")
        if n is not None:
            np.savetxt(fh, n, fmt="vn %.6g %.6g %.6g")
            f1 = np.repeat(f + 1, 2, axis=1)
            np.savetxt(fh, f1, fmt="f %d//%d %d//%d %d//%d")
        else:
            np.savetxt(fh, f + 1, fmt="f %d %d %d")


def save_mesh(path: str | os.PathLike[str], vertices: Any, faces: Any, vertex_normals: Any = None,
              vertex_colors: Any = None) -> Path:
    """Write a triangle mesh atomically: binary little-endian PLY or OBJ, by extension.

    Args:
        path: ``.ply`` or ``.obj``.
        vertices: (V, 3) floats (numpy or torch). faces: (F, 3) ints.
        vertex_normals: optional (V, 3) floats.
        vertex_colors: optional (V, 3) floats in [0, 1] or uint8.

    Returns:
        The written path.

    Raises:
        InputError: unknown extension or mismatched shapes.
    """
    p = Path(path)
    arrays = [_np(a) for a in (vertices, faces, vertex_normals, vertex_colors)]
    v, f, n, c = arrays
    if v is None or v.ndim != 2 or v.shape[1] != 3 or f is None or f.ndim != 2 or f.shape[1] != 3:
        raise InputError(f"{p}: vertices must be (V, 3) and faces (F, 3)")
    for name, a in (("vertex_normals", n), ("vertex_colors", c)):
        if a is not None and (a.ndim != 2 or a.shape[0] != len(v) or a.shape[1] < 3):
            raise InputError(f"{p}: {name} must be ({len(v)}, 3), got {a.shape}")
    if len(f) and (f.min() < 0 or f.max() >= len(v)):
        raise InputError(f"{p}: face index out of range for {len(v)} vertices")
    writers = {".ply": _write_ply, ".obj": _write_obj}
    suffix = p.suffix.lower()
    if suffix not in writers:
        raise InputError(f"{p}: cannot write {suffix or 'files without an extension'}; use .ply or .obj")
    v = v.astype(np.float32)
    n = None if n is None else n[:, :3].astype(np.float32)
    with atomic_path(p) as tmp:
        writers[suffix](tmp, v, f.astype(np.int64), n, c)
    return p


def _np(a: Any) -> np.ndarray | None:
    if a is None:
        return None
    if "torch" in sys.modules and isinstance(a, sys.modules["torch"].Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)
