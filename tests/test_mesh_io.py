"""Mesh readers/writers on small hand-written files, round trips, one-line errors."""

import numpy as np
import pytest
import torch

from taichifield.errors import InputError
from taichifield.geometry.mesh_io import load_mesh, save_mesh

# a unit square as one quad plus a triangle: fan-triangulated to 3 triangles
V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1]], dtype=np.float32)
F = np.array([[0, 1, 2], [0, 2, 3], [0, 1, 4]], dtype=np.int64)


def test_ascii_ply_with_extra_properties_and_quads(tmp_path):
    p = tmp_path / "m.ply"
    p.write_text(
        "ply\nformat ascii 1.0\ncomment hi\nelement vertex 5\nproperty float x\nproperty float y\n"
        "property float z\nproperty float confidence\nelement face 2\nproperty list uchar int vertex_indices\n"
        "end_header\n" + "".join(f"{x} {y} {z} 0.5\n" for x, y, z in V) + "4 0 1 2 3\n3 0 1 4\n"
    )
    v, f = load_mesh(p)
    assert v.dtype == np.float32 and f.dtype == np.int64
    assert np.array_equal(v, V) and np.array_equal(f, F)


@pytest.mark.parametrize("endian", ["<", ">"])
def test_binary_ply_with_other_elements(tmp_path, endian):
    name = {"<": "binary_little_endian", ">": "binary_big_endian"}[endian]
    header = (
        f"ply\nformat {name} 1.0\nelement vertex 5\nproperty double x\nproperty double y\nproperty double z\n"
        "property uchar red\nelement face 3\nproperty uchar flags\nproperty list uchar uint vertex_index\n"
        "element edge 1\nproperty int vertex1\nproperty int vertex2\nend_header\n"
    ).encode()
    vert = np.zeros(5, dtype=[("x", endian + "f8"), ("y", endian + "f8"), ("z", endian + "f8"), ("r", "u1")])
    vert["x"], vert["y"], vert["z"] = V.T
    face = np.zeros(3, dtype=[("fl", "u1"), ("n", "u1"), ("i", endian + "u4", (3,))])
    face["n"], face["i"] = 3, F
    edge = np.array([(0, 1)], dtype=[("a", endian + "i4"), ("b", endian + "i4")])
    p = tmp_path / "b.ply"
    p.write_bytes(header + vert.tobytes() + face.tobytes() + edge.tobytes())
    v, f = load_mesh(p)
    assert np.array_equal(v, V) and np.array_equal(f, F)


def test_binary_ply_mixed_polygons(tmp_path):
    header = (b"ply\nformat binary_little_endian 1.0\nelement vertex 5\nproperty float x\nproperty float y\n"
              b"property float z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n")
    body = V.astype("<f4").tobytes() + bytes([4]) + np.array([0, 1, 2, 3], "<i4").tobytes()
    body += bytes([3]) + np.array([0, 1, 4], "<i4").tobytes()
    p = tmp_path / "q.ply"
    p.write_bytes(header + body)
    v, f = load_mesh(p)
    assert np.array_equal(f, F)


def test_obj_with_slashes_negative_indices_and_quads(tmp_path):
    p = tmp_path / "m.obj"
    p.write_text(
        "# comment\no thing\n" + "".join(f"v {x} {y} {z}\n" for x, y, z in V)
        + "vn 0 0 1\nvt 0 0\nf 1/1/1 2/1/1 3/1/1 4/1/1\nf -5//1 -4//1 -1//1\n"
    )
    v, f = load_mesh(p)
    assert np.array_equal(v, V) and np.array_equal(f, F)


def test_off_with_comments_and_split_header(tmp_path):
    p = tmp_path / "m.off"
    p.write_text("OFF\n# a comment\n5 2 0\n" + "".join(f"{x} {y} {z}\n" for x, y, z in V) + "4 0 1 2 3\n3 0 1 4\n")
    v, f = load_mesh(p)
    assert np.array_equal(v, V) and np.array_equal(f, F)
    p.write_text("OFF 5 1 0\n" + "".join(f"{x} {y} {z}\n" for x, y, z in V) + "3 0 1 4\n")
    assert np.array_equal(load_mesh(p)[1], F[2:])


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".PLY"])
def test_round_trip_with_normals_and_colors(tmp_path, suffix):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((50, 3)).astype(np.float32)
    f = rng.integers(0, 50, (80, 3))
    n = rng.standard_normal((50, 3)).astype(np.float32)
    c = rng.random((50, 3))
    out = save_mesh(tmp_path / f"r{suffix}", torch.from_numpy(v), f, vertex_normals=n, vertex_colors=c)
    v2, f2 = load_mesh(out)
    assert np.allclose(v2, v, atol=1e-5) and np.array_equal(f2, f)
    assert [x.name for x in tmp_path.iterdir()] == [out.name]  # no temporary left behind


def test_ply_written_is_binary_with_normals_readable_by_trimesh(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    out = save_mesh(tmp_path / "t.ply", V, F, vertex_normals=np.tile([0, 0, 1.0], (5, 1)),
                    vertex_colors=np.full((5, 3), 255, np.uint8))
    assert b"binary_little_endian" in out.read_bytes()[:40]
    tm = trimesh.load(out, process=False)
    assert np.allclose(tm.vertices, V) and np.array_equal(tm.faces, F)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("none.ply", None, "no such file"),
        ("m.stl", b"solid", "unknown mesh format"),
        ("pc.ply", b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                   b"property float z\nend_header\n0 0 0\n", "no faces"),
        ("bad.ply", b"PLY?\n", "not a PLY"),
        ("hdr.ply", b"ply\nformat ascii 1.0\nelement vertex 1\n", "truncated PLY header"),
        ("trunc.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n"
                      b"property float y\nproperty float z\nelement face 1\n"
                      b"property list uchar int vertex_indices\nend_header\n\x00\x00", "corrupt PLY"),
        ("idx.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "out of range"),
        ("bad.obj", b"v 0 zero 0\nf 1 1 1\n", "malformed 'v'"),
        ("empty.obj", b"v 0 0 0\n", "no faces"),
        ("bad.off", b"NOFF?\n", "not an OFF"),
        ("short.off", b"OFF\n3 1 0\n0 0 0\n", "truncated OFF"),
    ],
)
def test_bad_files_raise_one_line_errors_naming_the_file(tmp_path, name, content, match):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(InputError, match=match) as info:
        load_mesh(p)
    msg = str(info.value)
    assert name in msg and "\n" not in msg


def test_save_refuses_bad_input(tmp_path):
    with pytest.raises(InputError, match="cannot write"):
        save_mesh(tmp_path / "m.stl", V, F)
    with pytest.raises(InputError, match=r"\(V, 3\)"):
        save_mesh(tmp_path / "m.ply", V[:, :2], F)
    with pytest.raises(InputError, match="out of range"):
        save_mesh(tmp_path / "m.ply", V, F + 10)
    with pytest.raises(InputError, match="vertex_normals"):
        save_mesh(tmp_path / "m.ply", V, F, vertex_normals=np.zeros((2, 3)))
    assert not any(tmp_path.iterdir())
