"""Point/mesh readers, mesh sampling, normal handling and the normalisation (tiny files of our own)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from taichifield.data.points import Normalization, load_oriented_points, read_geometry, sample_mesh
from taichifield.errors import InputError

# a unit tetrahedron, outward winding
TET_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float64)
TET_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int64)


def _sphere(n: int = 400, seed: int = 0) -> np.ndarray:
    p = np.random.default_rng(seed).normal(size=(n, 3))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def _write_binary_ply(path: Path, v: np.ndarray, f: np.ndarray) -> None:
    head = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {len(v)}\nproperty float x\nproperty float y\n"
        f"property float z\nelement face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    body = b"".join(struct.pack("<3f", *p) for p in v) + b"".join(struct.pack("<B3i", 3, *t) for t in f)
    path.write_bytes(head.encode() + body)


def _outward(points: np.ndarray, normals: np.ndarray, center: np.ndarray) -> float:
    return float((np.einsum("ij,ij->i", points - center, normals) > 0).mean())


def test_ascii_ply_points_with_normals(tmp_path: Path) -> None:
    p = _sphere(50)
    rows = "\n".join(" ".join(f"{x:.6f}" for x in r) for r in np.concatenate([p, p], 1))
    path = tmp_path / "pts.ply"
    path.write_text(
        "ply\nformat ascii 1.0\nelement vertex 50\nproperty float x\nproperty float y\nproperty float z\n"
        "property float nx\nproperty float ny\nproperty float nz\nend_header\n" + rows + "\n"
    )
    data = load_oriented_points(path)
    assert data.points.shape == (50, 3) and data.mesh_faces is None
    np.testing.assert_allclose(data.normals, p, atol=1e-5)


def test_binary_ply_mesh_is_sampled_with_face_normals(tmp_path: Path) -> None:
    path = tmp_path / "tet.ply"
    _write_binary_ply(path, TET_V, TET_F)
    v, n, f = read_geometry(path)
    np.testing.assert_allclose(v, TET_V)
    np.testing.assert_array_equal(f, TET_F)
    data = load_oriented_points(path, n_samples=2000)
    assert data.points.shape == (2000, 3) and data.mesh_faces is not None
    assert _outward(data.points, data.normals, TET_V.mean(0)) == 1.0


def test_obj_off_mesh_and_obj_points(tmp_path: Path) -> None:
    obj = tmp_path / "tet.obj"
    obj.write_text("".join(f"v {a} {b} {c}\n" for a, b, c in TET_V) + "".join(f"f {a + 1}/1 {b + 1} {c + 1}\n" for a, b, c in TET_F))
    off = tmp_path / "tet.off"
    off.write_text("OFF\n4 4 0\n" + "".join(f"{a} {b} {c}\n" for a, b, c in TET_V) + "".join(f"3 {a} {b} {c}\n" for a, b, c in TET_F))
    for path in (obj, off):
        v, _, f = read_geometry(path)
        np.testing.assert_allclose(v, TET_V)
        np.testing.assert_array_equal(f, TET_F)
        data = load_oriented_points(path, n_samples=500)
        assert _outward(data.points, data.normals, TET_V.mean(0)) == 1.0
    p = _sphere(30)
    pts = tmp_path / "pts.obj"
    pts.write_text("".join(f"v {a} {b} {c}\nvn {a} {b} {c}\n" for a, b, c in p))
    data = load_oriented_points(pts)
    np.testing.assert_allclose(data.normals, p, atol=1e-6)


def test_quad_faces_are_fanned(tmp_path: Path) -> None:
    off = tmp_path / "quad.off"
    off.write_text("OFF\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    _, _, f = read_geometry(off)
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3]])


def test_xyz_npy_npz(tmp_path: Path) -> None:
    p = _sphere(200) * 3 + 5
    n = _sphere(200)
    np.savetxt(tmp_path / "a.xyz", np.concatenate([p, n], 1))
    np.save(tmp_path / "a.npy", np.concatenate([p, n], 1))
    np.savez(tmp_path / "a.npz", points=p, normals=n)
    for name in ("a.xyz", "a.npy", "a.npz"):
        data = load_oriented_points(tmp_path / name)
        np.testing.assert_allclose(data.points, p, atol=1e-5)
        np.testing.assert_allclose(data.normals, n, atol=1e-5)


def test_points_without_normals_get_outward_normals(tmp_path: Path) -> None:
    p = _sphere(600) * 2 - 1
    np.savetxt(tmp_path / "bare.xyz", p)
    data = load_oriented_points(tmp_path / "bare.xyz")
    assert _outward(data.points, data.normals, np.array([-1.0, -1, -1])) > 0.99
    np.testing.assert_allclose(np.linalg.norm(data.normals, axis=1), 1.0, atol=1e-5)


def test_conf_aligns_scans(tmp_path: Path) -> None:
    p = _sphere(40)
    q = (0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4))  # 90 degrees about z (qx qy qz qw)
    for name in ("s0.ply", "s1.ply"):
        rows = "\n".join(" ".join(f"{x:.7f}" for x in r) for r in p)
        (tmp_path / name).write_text(f"ply\nformat ascii 1.0\nelement vertex 40\nproperty float x\nproperty float y\nproperty float z\nend_header\n{rows}\n")
    (tmp_path / "scan.conf").write_text(
        "camera 0 0 0 0 0 0 1\nbmesh s0.ply 0 0 0 0 0 0 1\nbmesh s1.ply 1 2 3 " + " ".join(map(str, q)) + "\n"
    )
    v, _, f = read_geometry(tmp_path / "scan.conf")
    assert f is None and v.shape == (80, 3)
    np.testing.assert_allclose(v[:40], p, atol=1e-6)
    # row-vector convention: p @ R + t, with R the rotation matrix of q
    rot = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(v[40:], p @ rot + [1, 2, 3], atol=1e-5)


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("empty.xyz", "", "no points"),
        ("nan.xyz", "0 0 0\nnan 1 1\n1 1 1\n0 1 0\n", "non-finite"),
        ("nann.xyz", "0 0 0 0 0 1\n1 0 0 0 0 nan\n", "non-finite"),
        ("cols.xyz", "0 0 0 1\n1 1 1 1\n", "x y z"),
        ("noface.off", "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "no faces"),
        ("bad.off", "hello\n", "not an OFF"),
        ("bad.ply", "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nend_header\n0 0\n", "corrupt PLY"),
        ("zero.xyz", "0 0 0 0 0 0\n1 0 0 0 0 1\n", "zero-length"),
        ("range.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "out of range"),
        ("a.stl", "solid\n", "unknown point/mesh format"),
    ],
)
def test_bad_inputs_name_the_file(tmp_path: Path, name: str, content: str, problem: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_oriented_points(path)
    assert str(path) in str(info.value) and problem in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(InputError, match="no such file"):
        load_oriented_points("/nonexistent/points.ply")


def test_sample_mesh_is_area_uniform() -> None:
    # two triangles of areas 0.5 and 3: 6/7 of the samples land on the second
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0], [5, 0, 0], [2, 2, 0]], np.float64)
    f = np.array([[0, 1, 2], [3, 4, 5]])
    pts, nrm = sample_mesh(v, f, 20000, seed=1)
    frac = (pts[:, 0] >= 2 - 1e-9).mean()
    assert abs(frac - 6 / 7) < 0.015
    np.testing.assert_allclose(nrm, np.tile([0, 0, 1.0], (20000, 1)))


def test_normalization_round_trip() -> None:
    p = np.random.default_rng(0).uniform([-3, 10, 0], [5, 12, 1], size=(100, 3))
    norm = Normalization.fit(p)
    u = norm.to_unit(p)
    assert np.abs(u).max() == pytest.approx(0.8, abs=1e-5)
    np.testing.assert_allclose(norm.to_input(u), p, atol=1e-5)
    again = Normalization.from_dict(norm.as_dict())
    np.testing.assert_allclose(again.to_unit(p), u)
