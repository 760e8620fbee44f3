"""Marching-cubes meshes stay watertight and manifold once coincident vertices are welded.

Fields here take the level *exactly* at many grid corners (integer-valued grids: planes
through grid points, spheres of a whole number of cells, random integers). Before the fix
every edge from such a corner to a corner above the level put its vertex on the corner:
welding (trimesh's ``merge_vertices``, Open3D, MeshLab) merged those vertices, collapsed
triangles to zero area and left edges with one or four faces. Both back ends are checked:
dense :func:`marching_cubes` and the narrow-band bricks of :func:`extract_mesh`, on each
arch of the ``arch`` fixture.
"""

import numpy as np
import pytest
import torch
import trimesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from taichifield.geometry.extract import extract_mesh
from taichifield.geometry.marching_cubes import marching_cubes

N = 21  # grid points per axis (an odd size: the centre 10 is a grid point)


def lattice(n: int = N) -> np.ndarray:
    """(3, n, n, n) integer grid coordinates as float32."""
    return np.mgrid[:n, :n, :n].astype(np.float32)


def box(g: np.ndarray, half: float = 7.0, centre: float = 10.0) -> np.ndarray:
    """L-inf distance to a cube whose faces pass through grid points (0 on them)."""
    return np.abs(g - centre).max(0) - half


def fields() -> dict[str, np.ndarray]:
    x, y, z = g = lattice()
    r2 = (x - 10) ** 2 + (y - 10) ** 2 + (z - 10) ** 2
    return {
        "box": box(g),
        "axis-plane": np.maximum(x - 10, box(g)),  # a half box: cut through a grid plane
        "diagonal-plane": np.maximum(x + y - 20, box(g)),
        "diagonal3-plane": np.maximum(x + y + z - 30, box(g)),
        "two-half-boxes": np.maximum(np.minimum(x - 10, 12 - x), box(g)),  # apart by a 2-cell slab
        "sphere-r2": r2 - 81.0,  # radius 9 cells, squared distance: 0 at the lattice points on it
        "sphere-rounded": np.round(np.sqrt(r2)) - 9.0,  # integer distances, many corners at 0
    }


EULER = {name: 4 if name == "two-half-boxes" else 2 for name in fields()}  # closed genus-0 pieces: 2 each


def weld(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge exactly coincident vertices (what trimesh does with process=True)."""
    uniq, inverse = np.unique(v, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1)[f]


def assert_manifold_after_welding(v: np.ndarray, f: np.ndarray) -> int:
    """Welded mesh: watertight, each edge in exactly two faces, consistent winding, no
    zero-area face, each vertex's faces one fan (a disk). Returns its Euler number."""
    assert len(f) > 0
    m = trimesh.Trimesh(v, f, process=True)
    assert m.is_watertight and m.is_winding_consistent
    assert np.all(m.area_faces > 0)
    wv, wf = weld(v, f)
    assert len(wv) == len(m.vertices)  # the same weld as trimesh's
    assert np.all(wf[:, 0] != wf[:, 1]) and np.all(wf[:, 1] != wf[:, 2]) and np.all(wf[:, 0] != wf[:, 2])
    edges = np.sort(np.concatenate([wf[:, [0, 1]], wf[:, [1, 2]], wf[:, [2, 0]]]), axis=1)
    uniq_edges, uses = np.unique(edges, axis=0, return_counts=True)
    assert np.all(uses == 2)
    a, b, c = (wv[wf[:, q]].astype(np.float64) for q in range(3))
    assert np.all(np.linalg.norm(np.cross(b - a, c - a), axis=1) > 0)
    # vertex manifold: around each vertex, the opposite edges of its faces form one cycle
    opposite: dict[int, list[tuple[int, int]]] = {}
    for tri in wf:
        for q in range(3):
            opposite.setdefault(int(tri[q]), []).append((int(tri[(q + 1) % 3]), int(tri[(q + 2) % 3])))
    for vid, link in opposite.items():
        nxt = dict(link)
        assert len(nxt) == len(link), vid  # each link vertex starts one link edge
        start, steps, cur = link[0][0], 0, nxt[link[0][0]]
        while cur != start:
            cur, steps = nxt[cur], steps + 1
            assert steps <= len(link), vid
        assert steps + 1 == len(link), vid  # one cycle through all of them: a disk
    return len(wv) - len(uniq_edges) + len(wf)


@pytest.mark.parametrize("name", list(fields()))
def test_dense_mesh_is_manifold_after_welding(name, arch):
    vol = fields()[name]
    assert (vol == 0).sum() > 50  # the field does hit the level at grid corners
    v, f = marching_cubes(vol, 0.0)
    assert assert_manifold_after_welding(v, f) == EULER[name]


def _grid_fn(vol: np.ndarray):
    """sdf_fn over world points that are exactly the grid points of ``vol`` (cell 1)."""
    table = torch.from_numpy(vol)

    def fn(p: torch.Tensor) -> torch.Tensor:
        i = p.round().long().cpu()
        return table[i[:, 0], i[:, 1], i[:, 2]].to(p.device)

    return fn


def _extract(vol: np.ndarray, level: float = 0.0):
    n = vol.shape[0]
    return extract_mesh(_grid_fn(vol), n, ((0.0, 0.0, 0.0), (n - 1.0, n - 1.0, n - 1.0)), level)


@pytest.mark.parametrize("name", list(fields()))
def test_narrow_band_mesh_is_manifold_after_welding(name, arch):
    vol = fields()[name]
    v, f = _extract(vol)
    assert assert_manifold_after_welding(v, f) == EULER[name]
    dv, df = marching_cubes(vol, 0.0)  # the bricks give the dense mesh, clamped vertices too
    assert len(v) == len(dv) and len(f) == len(df)
    assert np.allclose(np.sort(v, axis=0), np.sort(dv, axis=0), atol=1e-5)


def test_vertices_sit_off_the_corners_but_near_them():
    """A plane through grid points: the mesh lies within 2.5e-4 cells of it (the clamp is
    tiny) and no vertex is on a grid point."""
    x, y, z = g = lattice()
    v, f = marching_cubes(np.maximum(x + y - 20, box(g)), 0.0)
    inner = np.abs(v - 10).max(1) < 6.5  # away from the box faces
    assert inner.sum() > 100
    assert np.abs(v[inner, 0] + v[inner, 1] - 20).max() <= 2.5e-4
    assert np.abs(v - np.round(v)).max(1).min() > 0


def _closed(vals: np.ndarray) -> np.ndarray:
    """Pad with a layer above every value, so each component closes inside the grid."""
    return np.pad(vals, 1, constant_values=float(vals.max()) + 1.0).astype(np.float32)


int_grids = arrays(np.int8, st.tuples(st.integers(2, 6), st.integers(2, 6), st.integers(2, 6)),
                   elements=st.integers(-2, 2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vals=int_grids, level=st.integers(-1, 1))
def test_random_integer_fields_dense(vals, level, arch):
    vol = _closed(vals)
    v, f = marching_cubes(vol, float(level))
    if len(f):
        assert_manifold_after_welding(v, f)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vals=arrays(np.int8, st.just((9, 9, 9)), elements=st.integers(-1, 1)), level=st.integers(-1, 0))
def test_random_integer_fields_narrow_band(vals, level):
    vol = _closed(vals)  # 11^3: two bricks per axis, so faces and aprons between bricks are hit
    v, f = _extract(vol, float(level))
    if len(f):
        assert_manifold_after_welding(v, f)


def quantised_gyroid_ball(n: int = 40) -> np.ndarray:
    """A smooth field with handles, rounded to steps of 1/16: like a float32 network output,
    it is exactly 0 at many grid corners in a complex topology."""
    x = np.linspace(-2 * np.pi, 2 * np.pi, n, dtype=np.float32)
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    gyroid = np.sin(X) * np.cos(Y) + np.sin(Y) * np.cos(Z) + np.sin(Z) * np.cos(X)
    ball = 4.0 - np.sqrt(X**2 + Y**2 + Z**2)
    return (np.round(16 * np.minimum(gyroid, ball)) / 16).astype(np.float32)


def test_quantised_smooth_field_dense_and_narrow_band(arch):
    vol = quantised_gyroid_ball()
    assert (vol == 0).sum() > 200
    v, f = marching_cubes(vol, 0.0)
    chi = assert_manifold_after_welding(v, f)
    bv, bf = _extract(vol)
    assert assert_manifold_after_welding(bv, bf) == chi
    assert len(bv) == len(v) and len(bf) == len(f)
