"""Property tests: the loaders either load finite, well-shaped arrays or raise InputError.

Random and mutated (bytes flipped, inserted, deleted, truncated; json values replaced,
keys dropped) transforms files, point clouds and meshes go through
``taichifield.data.load_scene`` (Blender and instant-ngp),
``taichifield.data.points.read_geometry`` / ``load_oriented_points`` and
``taichifield.geometry.mesh_io.load_mesh``. Any other exception is a bug: users feed the
tool their own files, and a traceback is not an error message.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from taichifield.data import load_scene
from taichifield.data.points import load_oriented_points, read_geometry
from taichifield.errors import InputError
from taichifield.geometry.mesh_io import load_mesh

# TAICHIFIELD_FUZZ_EXAMPLES=1000 for a long hunt; the default keeps the file under a minute
FUZZ = settings(max_examples=int(os.environ.get("TAICHIFIELD_FUZZ_EXAMPLES", "40")), deadline=None,
                derandomize=not os.environ.get("TAICHIFIELD_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ----------------------------------------------------------------------------- mutation


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few random byte edits, or truncated, or both."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "digit", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "digit" and data:  # numbers are where parsers break: 9, -, ., e, nan, inf
            data[pos:pos + 1] = draw(st.sampled_from([b"9", b"-", b".", b"e", b"nan", b"inf", b"99999999999", b" "]))
        elif op == "dup" and data:
            end = min(len(data), pos + draw(st.integers(1, 32)))
            data[pos:pos] = data[pos:end]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _check_loads_or_input_error(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; None if it raised InputError, else its result. Other exceptions fail the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's "input contained no data" and friends
        try:
            return fn()
        except InputError as exc:
            msg = str(exc)
            assert msg and "\n" not in msg.strip() and len(msg) < 500, f"not a one-line message: {msg!r}"
            return None


# ----------------------------------------------------------------------------- scenes

POSE = [[1.0, 0.0, 0.0, 0.5], [0.0, 0.0, -1.0, -4.0], [0.0, 1.0, 0.0, 0.3], [0.0, 0.0, 0.0, 1.0]]


def _blender_json() -> dict[str, Any]:
    return {"camera_angle_x": 0.69,
            "frames": [{"file_path": f"./train/r_{i}", "transform_matrix": POSE} for i in range(2)]}


def _ngp_json() -> dict[str, Any]:
    return {"fl_x": 10.0, "fl_y": 11.0, "cx": 4.0, "cy": 3.5, "w": 8, "h": 8, "k1": 0.01, "aabb_scale": 2,
            "scale": 0.5, "offset": [0.5, 0.5, 0.5],
            "frames": [{"file_path": f"images/{i}.png", "transform_matrix": POSE} for i in range(3)]}


def _scene_dir(tmp: Path) -> Path:
    for i in range(3):
        for folder, name in (("train", f"r_{i}.png"), ("images", f"{i}.png")):
            (tmp / folder).mkdir(exist_ok=True)
            Image.fromarray(np.full((8, 8, 4), 60 * i, np.uint8)).save(tmp / folder / name)
    return tmp


def _check_views(views: Any) -> None:
    n = len(views)
    assert n >= 1
    assert views.images.dtype.is_floating_point is False and views.images.ndim == 4
    assert views.images.shape[0] == n and views.images.shape[-1] in (3, 4)
    assert tuple(views.c2w.shape) == (n, 4, 4) and bool(views.c2w.isfinite().all())
    assert (views.height, views.width) == tuple(views.images.shape[1:3])
    for v in (views.fx, views.fy, views.cx, views.cy, views.near, views.far):
        assert math.isfinite(v)
    assert views.fx > 0 and views.fy > 0
    assert tuple(views.aabb.shape) == (2, 3) and bool(views.aabb.isfinite().all())
    assert bool((views.aabb[1] > views.aabb[0]).all())
    if views.distortion is not None:
        assert len(views.distortion) == 4 and all(math.isfinite(k) for k in views.distortion)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=12,
)


@st.composite
def mutated_json(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """A structurally mutated copy of ``base``: keys dropped, values replaced at any depth."""
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        node: Any = doc
        path_len = draw(st.integers(0, 3))
        for _ in range(path_len):  # walk down to a container
            if isinstance(node, dict) and node:
                child = node[draw(st.sampled_from(sorted(node)))]
            elif isinstance(node, list) and node:
                child = node[draw(st.integers(0, len(node) - 1))]
            else:
                break
            if not isinstance(child, (dict, list)):
                break
            node = child
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if draw(st.booleans()):
                del node[key]
            else:
                node[key] = draw(json_values)
        elif isinstance(node, list) and node:
            i = draw(st.integers(0, len(node) - 1))
            if draw(st.booleans()):
                del node[i]
            else:
                node[i] = draw(json_values)
    return doc


def _load_scene_text(kind: str, text: bytes, split: str) -> Any:
    with tempfile.TemporaryDirectory() as d:
        root = _scene_dir(Path(d))
        name = "transforms_train.json" if kind == "blender" else "transforms.json"
        (root / name).write_bytes(text)
        views = _check_loads_or_input_error(lambda: load_scene(root, split))
        if views is not None:
            _check_views(views)
        return views


def test_good_scenes_load() -> None:
    """The fuzzers' seeds are valid (otherwise they would only test the first check)."""
    assert _load_scene_text("blender", json.dumps(_blender_json()).encode(), "train") is not None
    assert _load_scene_text("ngp", json.dumps(_ngp_json()).encode(), "all") is not None


@pytest.mark.parametrize("kind", ["blender", "ngp"])
@FUZZ
@given(data=st.data())
def test_transforms_mutated_structure(kind: str, data: st.DataObject) -> None:
    base = _blender_json() if kind == "blender" else _ngp_json()
    doc = data.draw(mutated_json(base))
    text = json.dumps(doc, allow_nan=True).encode()
    _load_scene_text(kind, text, "train" if kind == "blender" else "all")


@pytest.mark.parametrize("kind", ["blender", "ngp"])
@FUZZ
@given(data=st.data())
def test_transforms_mutated_bytes(kind: str, data: st.DataObject) -> None:
    base = _blender_json() if kind == "blender" else _ngp_json()
    text = data.draw(mutated(json.dumps(base, indent=1).encode()))
    _load_scene_text(kind, text, "train" if kind == "blender" else "all")


@FUZZ
@given(doc=json_values)
def test_transforms_random_json(doc: Any) -> None:
    _load_scene_text("blender", json.dumps(doc).encode(), "train")
    _load_scene_text("ngp", json.dumps(doc).encode(), "all")


@FUZZ
@given(data=st.data())
def test_mutated_frame_images(data: st.DataObject) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 4), 7, np.uint8)).save(buf, format="PNG")
    with tempfile.TemporaryDirectory() as d:
        root = _scene_dir(Path(d))
        (root / "transforms_train.json").write_text(json.dumps(_blender_json()))
        (root / "train" / "r_1.png").write_bytes(data.draw(mutated(buf.getvalue())))
        views = _check_loads_or_input_error(lambda: load_scene(root, "train"))
        if views is not None:
            _check_views(views)


# ----------------------------------------------------------------------------- points and meshes


def _tet() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.3, 0.3, 0.3]], np.float64)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int64)
    n = np.array([[-1, -1, -1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], np.float64) / 1.0
    return v, f, n


def _cloud() -> tuple[np.ndarray, np.ndarray]:
    """12 points with normals: a point cloud needs at least 10 distinct, non-collinear points."""
    d = np.random.default_rng(3).normal(size=(12, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.round(0.5 * d, 4), np.round(d, 4)


def _seed_files() -> dict[str, bytes]:
    v, f, n = _tet()
    cv, cn = _cloud()
    out: dict[str, bytes] = {}
    head = (f"ply\nformat ascii 1.0\nelement vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
            f"property float nx\nproperty float ny\nproperty float nz\nelement face {len(f)}\n"
            "property list uchar int vertex_indices\nend_header\n")
    body = "".join(" ".join(f"{x:g}" for x in row) + "\n" for row in np.hstack([v, n]))
    body += "".join(f"3 {a} {b} {c}\n" for a, b, c in f)
    out["ascii.ply"] = (head + body).encode()
    vert = np.empty(len(v), [("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    vert["x"], vert["y"], vert["z"] = v.T
    face = np.empty(len(f), [("n", "u1"), ("i", "<i4", (3,))])
    face["n"], face["i"] = 3, f
    head = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(v)}\nproperty float x\nproperty float y\n"
            f"property float z\nelement face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n")
    out["binary.ply"] = head.encode() + vert.tobytes() + face.tobytes()
    head_be = head.replace("binary_little_endian", "binary_big_endian")
    out["bigendian.ply"] = head_be.encode() + vert.astype(vert.dtype.newbyteorder(">")).tobytes() + \
        face.astype([("n", "u1"), ("i", ">i4", (3,))]).tobytes()
    out["mesh.obj"] = ("".join(f"v {a:g} {b:g} {c:g}\n" for a, b, c in v) + "vn 0 0 1\n"
                       + "".join(f"f {a + 1}//1 {b + 1}//1 {c + 1}//1\n" for a, b, c in f) + "f 1 2 3 4\n").encode()
    out["mesh.off"] = (f"OFF\n{len(v)} {len(f) + 1} 0\n" + "".join(f"{a:g} {b:g} {c:g}\n" for a, b, c in v)
                       + "".join(f"3 {a} {b} {c}\n" for a, b, c in f) + "4 0 1 2 3\n").encode()
    out["cloud.xyz"] = "".join(" ".join(f"{x:g}" for x in row) + "\n" for row in np.hstack([cv, cn])).encode()
    buf = io.BytesIO()
    np.save(buf, np.hstack([cv, cn]))
    out["cloud.npy"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez(buf, points=v, normals=n, faces=f)
    out["mesh.npz"] = buf.getvalue()
    return out


SEEDS = _seed_files()
MESH_SEEDS = [k for k in SEEDS if k.endswith((".ply", ".obj", ".off"))]


def _check_geometry(result: Any) -> None:
    points, normals, faces = result
    assert isinstance(points, np.ndarray) and points.ndim == 2 and points.shape[1] == 3
    assert points.dtype.kind == "f"
    if normals is not None:
        assert normals.shape == points.shape
    if faces is not None:
        assert faces.ndim == 2 and faces.shape[1] == 3 and faces.dtype.kind in "iu"


def _check_oriented(op: Any) -> None:
    assert op.points.ndim == 2 and op.points.shape[1] == 3 and len(op.points) > 0
    assert op.normals.shape == op.points.shape
    assert np.isfinite(op.points).all() and np.isfinite(op.normals).all()
    assert np.allclose(np.linalg.norm(op.normals, axis=1), 1.0, atol=1e-3)
    if op.mesh_faces is not None:
        assert op.mesh_faces.min() >= 0 and op.mesh_faces.max() < len(op.mesh_vertices)


def _check_mesh(result: Any) -> None:
    v, f = result
    assert v.ndim == 2 and v.shape[1] == 3 and v.dtype == np.float32 and np.isfinite(v).all()
    assert f.ndim == 2 and f.shape[1] == 3 and f.dtype == np.int64 and len(f) > 0
    assert f.min() >= 0 and f.max() < len(v)


def _with_file(name: str, data: bytes, fn: Callable[[Path], Any]) -> Any:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(data)
        return fn(p)


def test_seed_files_load() -> None:
    for name, data in SEEDS.items():
        res = _with_file(name, data, read_geometry)
        _check_geometry(res)
        assert len(res[0]) == (12 if name.startswith("cloud") else 5), name
        _check_oriented(_with_file(name, data, lambda p: load_oriented_points(p, n_samples=64, k_normals=4)))
    for name in MESH_SEEDS:
        v, f = _with_file(name, SEEDS[name], load_mesh)
        _check_mesh((v, f))
        assert len(f) >= 4, name


@pytest.mark.parametrize("name", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_point_readers_mutated(name: str, data: st.DataObject) -> None:
    blob = data.draw(mutated(SEEDS[name]))

    def read(p: Path) -> None:
        res = _check_loads_or_input_error(lambda: read_geometry(p))
        if res is not None:
            _check_geometry(res)
        op = _check_loads_or_input_error(lambda: load_oriented_points(p, n_samples=64, k_normals=4))
        if op is not None:
            _check_oriented(op)

    _with_file(name, blob, read)


@pytest.mark.parametrize("name", MESH_SEEDS)
@FUZZ
@given(data=st.data())
def test_mesh_reader_mutated(name: str, data: st.DataObject) -> None:
    blob = data.draw(mutated(SEEDS[name]))

    def read(p: Path) -> None:
        res = _check_loads_or_input_error(lambda: load_mesh(p))
        if res is not None:
            _check_mesh(res)

    _with_file(name, blob, read)


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".off", ".xyz", ".npy", ".npz"])
@FUZZ
@given(blob=st.binary(max_size=200))
def test_readers_random_bytes(suffix: str, blob: bytes) -> None:
    def read(p: Path) -> None:
        res = _check_loads_or_input_error(lambda: read_geometry(p))
        if res is not None:
            _check_geometry(res)
        op = _check_loads_or_input_error(lambda: load_oriented_points(p, n_samples=64, k_normals=4))
        if op is not None:
            _check_oriented(op)
        if suffix in (".ply", ".obj", ".off"):
            m = _check_loads_or_input_error(lambda: load_mesh(p))
            if m is not None:
                _check_mesh(m)

    _with_file("f" + suffix, blob, read)


@FUZZ
@given(arr=st.lists(st.lists(st.floats(width=32), min_size=3, max_size=6), min_size=0, max_size=12))
def test_xyz_rows_with_any_floats(arr: list[list[float]]) -> None:
    """Ragged rows, NaN, inf, huge values: load finite oriented points or refuse."""
    text = "".join(" ".join(repr(x) for x in row) + "\n" for row in arr).encode()

    def read(p: Path) -> None:
        op = _check_loads_or_input_error(lambda: load_oriented_points(p, n_samples=64, k_normals=4))
        if op is not None:
            _check_oriented(op)

    _with_file("rows.xyz", text, read)
