"""welded_watertight: closed/manifold after merging coincident vertices."""

import numpy as np

from taichifield.geometry.metrics import welded_watertight

TET_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float64)
TET_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def test_closed_tetrahedron_is_watertight() -> None:
    assert welded_watertight(TET_F, TET_V)


def test_open_mesh_is_not() -> None:
    assert not welded_watertight(TET_F[:3], TET_V)


def test_per_face_vertex_copies_are_welded() -> None:
    # marching-cubes style: every face has its own three vertex copies
    v = TET_V[TET_F.reshape(-1)]
    f = np.arange(12).reshape(4, 3)
    assert welded_watertight(f, v)
    assert not welded_watertight(f[:3], v)


def test_empty_and_degenerate_meshes_are_not() -> None:
    assert not welded_watertight(np.zeros((0, 3), np.int64), TET_V)
    v = np.vstack([TET_V, TET_V[:1]])  # vertex 4 coincides with vertex 0
    f = np.vstack([TET_F, [[0, 4, 1]], [[0, 1, 4]]])  # a face collapsing to an edge after welding
    assert not welded_watertight(f, v)


def test_edge_in_four_faces_is_not() -> None:
    # two tetrahedra sharing only the edge 0-1: every edge count is even, but 0-1 is used 4 times
    v = np.vstack([TET_V, [[0, -1, 0], [0, 0, -1]]])
    f2 = np.array([[0, 4, 1], [0, 1, 5], [0, 5, 4], [1, 4, 5]])
    assert not welded_watertight(np.vstack([TET_F, f2]), v)
