"""COLMAP sparse models: ``cameras``, ``images`` and ``points3D`` in ``.bin`` or ``.txt``.

Our own parser of COLMAP's documented output format (Schönberger & Frahm, "Structure-from-Motion
Revisited", CVPR 2016; https://colmap.github.io/format.html), so reading a model needs no pycolmap.

Binary layout (little-endian)::

    cameras.bin:  u64 n; n x (i32 camera_id, i32 model_id, u64 width, u64 height, f64 params[P(model)])
    images.bin:   u64 n; n x (i32 image_id, f64 qw qx qy qz, f64 tx ty tz, i32 camera_id, name NUL-terminated,
                             u64 n2d, n2d x (f64 x, f64 y, i64 point3D_id))
    points3D.bin: u64 n; n x (u64 point3D_id, f64 x y z, u8 r g b, f64 error, u64 L, L x (i32 image_id, i32 idx))

The text files hold the same fields, one record per line (images: two lines, the second the 2D
points), with ``#`` comments. A pose is COLMAP's ``cam_from_world``: ``x_cam = R(q) x_world + t``
in OpenCV camera axes (x right, y down, z forward); pixel ``(0.5, 0.5)`` is the centre of the
top-left pixel, as in :class:`~taichifield.data.views.Views`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from ..errors import InputError

__all__ = ["CAMERA_MODELS", "ColmapCamera", "ColmapImage", "ColmapPoints", "ColmapModel", "find_model",
           "read_model", "read_cameras", "read_images", "read_points3D", "qvec_to_rotmat", "rotmat_to_qvec"]

#: model id -> (name, number of parameters), COLMAP ``src/colmap/sensor/models.h``
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12), 11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
_MODEL_IDS = {name: (i, n) for i, (name, n) in CAMERA_MODELS.items()}


@dataclass
class ColmapCamera:
    """One intrinsic camera: ``params`` in COLMAP's order for ``model`` (e.g. OPENCV: fx fy cx cy k1 k2 p1 p2)."""

    id: int
    model: str
    width: int
    height: int
    params: np.ndarray
    """(P,) float64."""


@dataclass
class ColmapImage:
    """One registered image: its pose ``cam_from_world`` and its 2D keypoints."""

    id: int
    qvec: np.ndarray
    """(4,) float64 unit quaternion (w, x, y, z) of R in ``x_cam = R x_world + t``."""
    tvec: np.ndarray
    """(3,) float64 t."""
    camera_id: int
    name: str
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    """(K, 2) float64 keypoint positions in pixels."""
    point3D_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """(K,) int64 id of the 3D point each keypoint observes, -1 for none."""

    def rotation(self) -> np.ndarray:
        """(3, 3) R of ``cam_from_world``."""
        return qvec_to_rotmat(self.qvec)

    def centre(self) -> np.ndarray:
        """(3,) camera centre in world coordinates, ``-R^T t``."""
        return -self.rotation().T @ self.tvec


@dataclass
class ColmapPoints:
    """The sparse point cloud as arrays (N points)."""

    ids: np.ndarray
    """(N,) int64."""
    xyz: np.ndarray
    """(N, 3) float64 world positions."""
    rgb: np.ndarray
    """(N, 3) uint8 colours."""
    error: np.ndarray
    """(N,) float64 mean reprojection error in pixels (-1 when unknown)."""
    tracks: list[np.ndarray]
    """N arrays (L, 2) int64 of (image_id, point2D_idx)."""

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class ColmapModel:
    """A sparse reconstruction: cameras and images by id, and the points."""

    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: ColmapPoints
    path: Path = Path(".")


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """(3, 3) rotation of a (w, x, y, z) quaternion (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """(4,) (w, x, y, z) quaternion with w >= 0 of a (3, 3) rotation (eigenvector method)."""
    Rxx, Ryx, Rzx, Rxy, Ryy, Rzy, Rxz, Ryz, Rzz = np.asarray(R, dtype=np.float64).flat
    K = np.array([[Rxx - Ryy - Rzz, 0, 0, 0], [Ryx + Rxy, Ryy - Rxx - Rzz, 0, 0],
                  [Rzx + Rxz, Rzy + Ryz, Rzz - Rxx - Ryy, 0], [Ryz - Rzy, Rzx - Rxz, Rxy - Ryx, Rxx + Ryy + Rzz]]) / 3.0
    vals, vecs = np.linalg.eigh(K)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    return -q if q[0] < 0 else q


# ----------------------------------------------------------------------------- binary

class _Reader:
    """Little-endian reads with a one-line error on a truncated file."""

    def __init__(self, f: BinaryIO, path: Path) -> None:
        self.f, self.path = f, path

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise InputError(f"{self.path}: truncated COLMAP binary file")
        return struct.unpack("<" + fmt, data)

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        dt = np.dtype(dtype)
        data = self.f.read(dt.itemsize * count)
        if len(data) != dt.itemsize * count:
            raise InputError(f"{self.path}: truncated COLMAP binary file")
        return np.frombuffer(data, dtype=dt, count=count)

    def string(self) -> str:
        out = bytearray()
        while (c := self.f.read(1)) not in (b"\x00", b""):
            out += c
        if c == b"":
            raise InputError(f"{self.path}: truncated COLMAP binary file (image name)")
        return out.decode("utf-8", errors="replace")


def _model_of(key: int | str, path: Path) -> tuple[str, int]:
    if isinstance(key, int) or key.isdigit():
        if int(key) not in CAMERA_MODELS:
            raise InputError(f"{path}: unknown COLMAP camera model id {key}")
        return CAMERA_MODELS[int(key)]
    if key not in _MODEL_IDS:
        raise InputError(f"{path}: unknown COLMAP camera model {key!r}")
    return key, _MODEL_IDS[key][1]


def _cameras_bin(r: _Reader) -> dict[int, ColmapCamera]:
    cams = {}
    for _ in range(r.read("Q")[0]):
        cid, mid, w, h = r.read("iiQQ")
        name, n = _model_of(mid, r.path)
        cams[cid] = ColmapCamera(cid, name, int(w), int(h), r.array(np.dtype("<f8"), n).astype(np.float64))
    return cams


_P2D = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])


def _images_bin(r: _Reader) -> dict[int, ColmapImage]:
    images = {}
    for _ in range(r.read("Q")[0]):
        iid, qw, qx, qy, qz, tx, ty, tz, cid = r.read("idddddddi")
        name = r.string()
        pts = r.array(_P2D, r.read("Q")[0])
        images[iid] = ColmapImage(iid, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), cid, name,
                                  np.stack([pts["x"], pts["y"]], 1).astype(np.float64), pts["id"].astype(np.int64))
    return images


_P3D = np.dtype([("id", "<u8"), ("xyz", "<f8", 3), ("rgb", "u1", 3), ("err", "<f8"), ("n", "<u8")])


def _points_bin(r: _Reader) -> ColmapPoints:
    n = r.read("Q")[0]
    ids, xyz, rgb, err, tracks = np.zeros(n, np.int64), np.zeros((n, 3)), np.zeros((n, 3), np.uint8), np.zeros(n), []
    for i in range(n):
        rec = r.array(_P3D, 1)[0]
        ids[i], xyz[i], rgb[i], err[i] = rec["id"], rec["xyz"], rec["rgb"], rec["err"]
        tracks.append(r.array(np.dtype("<i4"), 2 * int(rec["n"])).reshape(-1, 2).astype(np.int64))
    return ColmapPoints(ids, xyz, rgb, err, tracks)


# ----------------------------------------------------------------------------- text

def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of the non-comment lines; image files keep their empty point lines."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    for no, line in enumerate(text.splitlines(), 1):
        if not line.lstrip().startswith("#"):
            yield no, line.split()


def _numbers(fields: list[str], path: Path, no: int, kind: type = float) -> list:
    try:
        return [kind(v) for v in fields]
    except ValueError:
        raise InputError(f"{path}:{no}: expected numbers, got {' '.join(fields)[:80]!r}") from None


def _cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    for no, f in _lines(path):
        if not f:
            continue
        if len(f) < 4:
            raise InputError(f"{path}:{no}: a camera line needs CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]")
        name, n = _model_of(f[1], path)
        cid, w, h = _numbers([f[0], f[2], f[3]], path, no, int)
        params = np.array(_numbers(f[4:], path, no), dtype=np.float64)
        if len(params) != n:
            raise InputError(f"{path}:{no}: camera model {name} takes {n} parameters, not {len(params)}")
        cams[cid] = ColmapCamera(cid, name, w, h, params)
    return cams


def _images_txt(path: Path) -> dict[int, ColmapImage]:
    images: dict[int, ColmapImage] = {}
    lines = list(_lines(path))
    while lines and not lines[-1][1]:
        lines.pop()
    i = 0
    while i < len(lines):
        no, f = lines[i]
        if not f:  # blank line between records
            i += 1
            continue
        if len(f) < 10:
            raise InputError(f"{path}:{no}: an image line needs IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        iid, cid = _numbers([f[0], f[8]], path, no, int)
        nums = np.array(_numbers(f[1:8], path, no), dtype=np.float64)
        pts = np.array(_numbers(lines[i + 1][1], path, lines[i + 1][0]) if i + 1 < len(lines) else [], np.float64)
        if len(pts) % 3:
            raise InputError(f"{path}:{lines[i + 1][0]}: POINTS2D must be (X, Y, POINT3D_ID) triples")
        pts = pts.reshape(-1, 3)
        images[iid] = ColmapImage(iid, nums[:4], nums[4:], cid, " ".join(f[9:]), pts[:, :2].copy(), pts[:, 2].astype(np.int64))
        i += 2
    return images


def _points_txt(path: Path) -> ColmapPoints:
    ids, xyz, rgb, err, tracks = [], [], [], [], []
    for no, f in _lines(path):
        if not f:
            continue
        if len(f) < 8 or (len(f) - 8) % 2:
            raise InputError(f"{path}:{no}: a point line needs POINT3D_ID X Y Z R G B ERROR TRACK[] pairs")
        ids.append(_numbers(f[:1], path, no, int)[0])
        xyz.append(_numbers(f[1:4], path, no))
        rgb.append(_numbers(f[4:7], path, no, int))
        err.append(_numbers(f[7:8], path, no)[0])
        tracks.append(np.array(_numbers(f[8:], path, no, int), np.int64).reshape(-1, 2))
    return ColmapPoints(np.array(ids, np.int64), np.array(xyz, np.float64).reshape(-1, 3),
                        np.array(rgb, np.int64).reshape(-1, 3).clip(0, 255).astype(np.uint8), np.array(err, np.float64), tracks)


# ----------------------------------------------------------------------------- files

def _read(folder: Path, stem: str, binary, text):  # type: ignore[no-untyped-def]
    b, t = folder / f"{stem}.bin", folder / f"{stem}.txt"
    if b.is_file():
        try:
            with b.open("rb") as f:
                return binary(_Reader(f, b))
        except (struct.error, ValueError, MemoryError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{b}: not a COLMAP binary file ({type(exc).__name__})") from None
    if t.is_file():
        return text(t)
    raise InputError(f"{folder}: no {stem}.bin or {stem}.txt (not a COLMAP model)")


def read_cameras(folder: str | Path) -> dict[int, ColmapCamera]:
    """Cameras of the model in ``folder`` (``cameras.bin`` preferred over ``cameras.txt``)."""
    return _read(Path(folder), "cameras", _cameras_bin, _cameras_txt)


def read_images(folder: str | Path) -> dict[int, ColmapImage]:
    """Registered images of the model in ``folder``."""
    return _read(Path(folder), "images", _images_bin, _images_txt)


def read_points3D(folder: str | Path) -> ColmapPoints:
    """Sparse points of the model in ``folder``; an empty cloud when the file is absent."""
    folder = Path(folder)
    if not any((folder / f"points3D.{s}").is_file() for s in ("bin", "txt")):
        return ColmapPoints(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0), [])
    return _read(folder, "points3D", _points_bin, _points_txt)


def find_model(path: str | Path) -> Path | None:
    """The model folder of a scene: ``path`` itself, ``path/sparse/0`` or ``path/sparse`` (first holding cameras)."""
    p = Path(path)
    for cand in (p, p / "sparse" / "0", p / "sparse"):
        if any((cand / f"cameras.{s}").is_file() for s in ("bin", "txt")):
            return cand
    return None


def read_model(path: str | Path) -> ColmapModel:
    """Read a whole model from its folder (or a scene folder holding ``sparse/0``).

    Raises:
        InputError: no model there, a malformed or truncated file, or an image whose camera is missing.
    """
    folder = find_model(path)
    if folder is None:
        raise InputError(f"{path}: no COLMAP model (cameras.bin/.txt in it, in sparse/0 or in sparse)")
    cams, images, points = read_cameras(folder), read_images(folder), read_points3D(folder)
    for im in images.values():
        if im.camera_id not in cams:
            raise InputError(f"{folder}: image {im.name} uses camera {im.camera_id}, which is not in the model")
    return ColmapModel(cams, images, points, folder)
