"""Marching cubes against skimage on analytic fields: watertight, oriented, same topology."""

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes as sk_marching_cubes

from taichifield.errors import InputError
from taichifield.geometry import mc_tables
from taichifield.geometry.marching_cubes import marching_cubes
from taichifield.geometry.mc_kernels import MIN_WEIGHT


def grid(n: int, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    x = np.linspace(lo, hi, n, dtype=np.float32)
    return np.stack(np.meshgrid(x, x, x, indexing="ij"))


def sphere(n: int) -> np.ndarray:
    x, y, z = grid(n)
    return np.sqrt((x - 0.05) ** 2 + (y + 0.03) ** 2 + z**2) - 0.61


def torus(n: int) -> np.ndarray:
    x, y, z = grid(n)
    return np.sqrt((np.sqrt(x**2 + y**2) - 0.55) ** 2 + z**2) - 0.22


def genus2(n: int) -> np.ndarray:
    """Two tori fused side by side (genus 2), as a smooth implicit (not an exact SDF)."""
    x, y, z = grid(n, -1.3, 1.3)
    t1 = np.sqrt((np.sqrt((x - 0.5) ** 2 + y**2) - 0.45) ** 2 + z**2) - 0.18
    t2 = np.sqrt((np.sqrt((x + 0.5) ** 2 + y**2) - 0.45) ** 2 + z**2) - 0.18
    return np.minimum(t1, t2)


def gyroid(n: int) -> np.ndarray:
    x, y, z = grid(n, -6.0, 6.0)
    return np.sin(x) * np.cos(y) + np.sin(y) * np.cos(z) + np.sin(z) * np.cos(x)


def edge_use(faces: np.ndarray) -> np.ndarray:
    """How many faces use each undirected edge."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    return counts


def euler(verts: np.ndarray, faces: np.ndarray) -> int:
    used = np.unique(faces)
    return len(used) - len(edge_use(faces)) + len(faces)


def signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def assert_vertices_match_skimage(v: np.ndarray, sv: np.ndarray) -> None:
    """Each of our edge vertices (two integer coordinates) is one of skimage's, up to float
    noise; where skimage puts one within MIN_WEIGHT of a grid point, ours sits exactly
    MIN_WEIGHT from it (the documented floor), so there the two differ by < MIN_WEIGHT."""
    on_edge = (np.abs(v - np.round(v)) == 0).sum(1) == 2
    ev = v[on_edge]
    dist, idx = cKDTree(sv).query(ev)
    frac = np.abs(sv[idx] - np.round(sv[idx])).max(1)  # skimage's distance from the nearest grid point
    near_corner = frac < MIN_WEIGHT
    assert dist[~near_corner].max(initial=0.0) < 1e-4
    assert np.all(dist[near_corner] <= MIN_WEIGHT + 1e-5)
    assert np.abs(ev - np.round(ev)).max(1).min(initial=1.0) >= MIN_WEIGHT * (1 - 1e-3)


def directed_edges_unique(faces: np.ndarray) -> bool:
    """Consistent orientation: every directed edge occurs once (its twin runs the other way)."""
    d = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return len(np.unique(d, axis=0)) == len(d)


@pytest.mark.parametrize(
    "field, expected_euler", [(sphere, 2), (torus, 0), (genus2, -2)], ids=["sphere", "torus", "genus2"]
)
def test_closed_surfaces_match_skimage(field, expected_euler, arch):
    vol = field(40)
    v, f = marching_cubes(vol, 0.0)
    sv, sf, _, _ = sk_marching_cubes(vol, 0.0)
    assert v.dtype == np.float32 and f.dtype == np.int64 and v.shape[1] == 3 and f.shape[1] == 3
    # watertight: every edge shared by exactly two faces; no unused or duplicated vertices
    assert np.all(edge_use(f) == 2)
    assert len(np.unique(f)) == len(v)
    assert len(np.unique(v, axis=0)) == len(v)
    # topology
    assert euler(v, f) == euler(sv, sf) == expected_euler
    assert len(v) == len(sv) and len(f) == len(sf)
    # orientation: consistent, normals toward increasing values (outward for an SDF)
    assert directed_edges_unique(f)
    assert signed_volume(v, f) > 0
    assert np.isclose(signed_volume(v, f), signed_volume(sv, sf), rtol=1e-2)  # quads may split differently
    # same vertices as skimage (same edge interpolation)
    assert_vertices_match_skimage(v, sv)


def test_normals_point_toward_increasing_values():
    vol = -sphere(24)  # inside positive: normals must point inward now
    v, f = marching_cubes(vol, 0.0)
    assert signed_volume(v, f) < 0
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    n = np.cross(b - a, c - a)
    to_centre = (np.array([11.5, 11.5, 11.5]) + np.array([0.05, -0.03, 0.0]) * 11.5) - (a + b + c) / 3
    assert np.mean(np.einsum("ij,ij->i", n, to_centre) > 0) > 0.99


def test_gyroid_open_surface_topology_matches_skimage():
    vol = gyroid(48)
    v, f = marching_cubes(vol, 0.1)
    sv, sf, _, _ = sk_marching_cubes(vol, 0.1)
    assert len(v) == len(sv) and len(f) == len(sf)
    assert euler(v, f) == euler(sv, sf)
    assert np.all(edge_use(f) <= 2)
    assert directed_edges_unique(f)


def test_random_field_every_case_is_watertight(arch):
    """Noise hits ambiguous faces everywhere: still no cracks, consistent orientation."""
    rng = np.random.default_rng(0)
    vol = rng.standard_normal((18, 17, 16)).astype(np.float32)
    vol[[0, -1], :, :] = vol[:, [0, -1], :] = vol[:, :, [0, -1]] = 1.0  # closes every component
    v, f = marching_cubes(vol, 0.0)
    assert np.all(edge_use(f) == 2)
    assert directed_edges_unique(f)
    assert len(np.unique(f)) == len(v)
    sv, sf, _, _ = sk_marching_cubes(vol, 0.0)
    assert_vertices_match_skimage(v, sv)  # skimage's extra cell-centre vertices aside
    crossed = sum(int(((np.diff(vol > 0, axis=ax)) != 0).sum()) for ax in range(3))
    assert ((np.abs(v - np.round(v)) == 0).sum(1) == 2).sum() == crossed  # one vertex per crossed edge


def test_every_table_case_closes_inside_a_padded_cell():
    """Each of the 256 corner masks (all face decisions) on a 4^3 grid closes watertight."""
    for mask in range(1, 255):
        vol = np.ones((4, 4, 4), dtype=np.float32)
        for c, (dx, dy, dz) in enumerate(mc_tables.CORNERS):
            vol[1 + dx, 1 + dy, 1 + dz] = -1.0 if (mask >> c) & 1 else 1.0
            if (mask >> c) & 1 == 0:
                vol[1 + dx, 1 + dy, 1 + dz] = 0.5 + 0.1 * c  # vary products: both face decisions
        _, f = marching_cubes(vol, 0.0)
        assert np.all(edge_use(f) == 2), mask
        assert directed_edges_unique(f), mask


def test_torch_input_ints_and_non_contiguous():
    vol = sphere(20)
    v_ref, f_ref = marching_cubes(vol, 0.0)
    v, f = marching_cubes(torch.from_numpy(vol.copy()), 0.0)
    assert np.array_equal(v, v_ref) and np.array_equal(f, f_ref)
    big = np.zeros((40, 20, 20), dtype=np.float32)
    big[::2] = vol
    v, f = marching_cubes(big[::2], 0.0)  # a strided view
    assert np.array_equal(v, v_ref) and np.array_equal(f, f_ref)
    ints = (vol > 0).astype(np.int64)
    v, f = marching_cubes(ints, 0.5)
    sv, sf, _, _ = sk_marching_cubes(ints.astype(np.float64), 0.5)
    assert len(v) == len(sv) and euler(v, f) == euler(sv, sf)


def test_empty_results():
    vol = sphere(10)
    for level in (5.0, -5.0):  # outside the data range
        v, f = marching_cubes(vol, level)
        assert v.shape == (0, 3) and f.shape == (0, 3) and f.dtype == np.int64
    v, f = marching_cubes(np.zeros((2, 2, 2)), 0.0)  # constant volume
    assert v.shape == (0, 3) and f.shape == (0, 3)


def test_nan_far_from_the_surface_is_ignored():
    vol = sphere(16)
    vol[8, 8, 8] = np.nan  # deep inside (negative, as NaN counts): no sign change around it
    v, f = marching_cubes(vol, 0.0)
    assert np.isfinite(v).all() and np.all(edge_use(f) == 2)


def test_tiny_volume_single_cell():
    vol = np.ones((2, 2, 2), dtype=np.float32)
    vol[0, 0, 0] = -1.0
    v, f = marching_cubes(vol, 0.0)
    assert f.shape == (1, 3) and v.shape == (3, 3)
    assert np.allclose(np.sort(v.sum(axis=1)), 0.5)  # midpoints of the 3 edges at the corner
    n = np.cross(v[f[0, 1]] - v[f[0, 0]], v[f[0, 2]] - v[f[0, 0]])
    assert np.all(n > 0)  # toward the larger values, away from corner 0


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4, 4)), "3-D"),
        (np.zeros((1, 4, 4)), "2x2x2"),
        (np.where(np.arange(27).reshape(3, 3, 3) == 13, np.nan, np.arange(27).reshape(3, 3, 3) - 4.0), "NaN"),
        (np.array([[["a"]]]), "numeric"),
        (np.zeros((3, 3, 3), dtype=np.complex64), "real"),
        ([[[0.0]]], "numpy array or torch tensor"),
    ],
)
def test_bad_input_raises_input_error(bad, match):
    with pytest.raises(InputError, match=match):
        marching_cubes(bad, 0.0)


def test_tensors_come_back_on_the_volume_device_and_foreign_devices_are_refused(monkeypatch):
    from taichifield import runtime
    from taichifield.errors import DeviceError
    from taichifield.geometry.marching_cubes import marching_cubes_tensors

    vol = torch.from_numpy(sphere(20))
    v_ref, f_ref = marching_cubes(vol.numpy(), 0.0)
    v, f = marching_cubes_tensors(vol, 0.0)
    assert isinstance(v, torch.Tensor) and v.device == vol.device and f.dtype == torch.int64
    assert np.array_equal(v.numpy(), v_ref) and np.array_equal(f.numpy(), f_ref)
    # the runtime's device spelled with an index is the same device
    monkeypatch.setattr(runtime, "device", lambda: torch.device("cpu", 0))
    v, f = marching_cubes(vol, 0.0)
    assert np.array_equal(v, v_ref) and np.array_equal(f, f_ref)
    with pytest.raises(DeviceError, match="marching_cubes"):
        marching_cubes(torch.zeros((4, 4, 4), device="meta"), 0.0)
