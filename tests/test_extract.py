"""Narrow-band extraction equals dense marching cubes on the same grid, with fewer evaluations."""

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from taichifield.errors import InputError, ResourceError
from taichifield.geometry.extract import extract_mesh
from taichifield.geometry.marching_cubes import marching_cubes

BOX = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))


def sphere(p: torch.Tensor) -> torch.Tensor:
    return (p - torch.tensor([0.03, -0.02, 0.01])).norm(dim=-1) - 0.61


def torus(p: torch.Tensor) -> torch.Tensor:
    x, y, z = p.unbind(-1)
    return torch.sqrt((torch.sqrt(x**2 + y**2) - 0.5) ** 2 + z**2) - 0.2


def density_blobs(p: torch.Tensor) -> torch.Tensor:
    """A NeRF-like field: density minus a threshold, values up to ~100, not an SDF."""
    d1 = ((p - torch.tensor([0.45, 0.0, 0.0])) ** 2).sum(-1)
    d2 = ((p + torch.tensor([0.45, 0.1, 0.0])) ** 2).sum(-1)
    return 10.0 - 100.0 * (torch.exp(-d1 / 0.05) + torch.exp(-d2 / 0.03))


def dense(fn, R: int, level: float = 0.0):
    """Dense marching cubes on the same grid points extract_mesh uses."""
    r = torch.arange(R, dtype=torch.float32)
    idx = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)
    lo, cell = torch.tensor(BOX[0]), torch.full((3,), 2.0 / (R - 1))
    vol = fn(torch.addcmul(lo, idx, cell)).reshape(R, R, R)
    v, f = marching_cubes(vol, level)
    return lo.numpy() + v * cell.numpy(), f


def euler(faces: np.ndarray) -> int:
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return len(np.unique(faces)) - len(np.unique(e, axis=0)) + len(faces)


def assert_same_mesh(v, f, dv, df):
    assert v.dtype == np.float32 and f.dtype == np.int64
    assert len(v) == len(dv) and len(f) == len(df)
    assert euler(f) == euler(df)
    assert cKDTree(dv).query(v)[0].max() < 1e-5
    # same triangles: compare faces as sets of vertex positions
    key = lambda vv, ff: np.sort(np.round(vv[ff], 5).reshape(len(ff), -1), axis=0)  # noqa: E731
    assert np.allclose(key(v, f), key(dv, df), atol=2e-5)


@pytest.mark.parametrize("fn, R", [(sphere, 45), (torus, 50)], ids=["sphere", "torus"])
def test_matches_dense_marching_cubes(fn, R, arch):
    v, f = extract_mesh(fn, R, BOX)
    dv, df = dense(fn, R)
    assert_same_mesh(v, f, dv, df)


def test_non_sdf_field_found_by_sign_change_and_flood_fill():
    calls = []

    def counting(p):
        calls.append(p.shape[0])
        return density_blobs(p)

    R = 64
    v, f = extract_mesh(counting, R, BOX, batch_size=10_000)
    dv, df = dense(density_blobs, R)
    assert_same_mesh(v, f, dv, df)
    assert euler(f) == 4  # two separate spheres
    assert max(calls) <= 10_000
    assert sum(calls) < 0.6 * R**3  # a narrow band, not the dense grid


def test_evaluations_scale_with_area_not_volume():
    counts = {}
    for R in (64, 128):
        n = [0]

        def counting(p, n=n):
            n[0] += p.shape[0]
            return sphere(p)

        extract_mesh(counting, R, BOX)
        counts[R] = n[0]
    assert counts[128] < 5.0 * counts[64]  # dense would be 8x
    assert counts[128] < 0.4 * 128**3


def test_level_and_bbox_tensor_and_progress():
    seen = []
    bbox = torch.tensor(BOX)
    v, f = extract_mesh(sphere, 40, bbox, level=0.1, progress=lambda d, t: seen.append((d, t)))
    dv, df = dense(sphere, 40, level=0.1)
    assert_same_mesh(v, f, dv, df)
    assert seen and all(d <= t for d, t in seen) and seen[-1][0] == seen[-1][1]
    r = np.linalg.norm(v - np.array([0.03, -0.02, 0.01]), axis=1)
    assert np.allclose(r, 0.71, atol=0.01)


def test_outward_normals_in_world_coordinates():
    v, f = extract_mesh(sphere, 32, ((-1.0, -2.0, -1.0), (1.0, 1.0, 3.0)))
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    signed = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6
    assert np.isclose(signed, 4 / 3 * np.pi * 0.61**3, rtol=0.03)


def test_no_surface_gives_empty_mesh():
    v, f = extract_mesh(lambda p: p.norm(dim=-1) + 1.0, 32, BOX)
    assert v.shape == (0, 3) and f.shape == (0, 3)


def test_bad_arguments():
    with pytest.raises(InputError, match="resolution"):
        extract_mesh(sphere, 0, BOX)
    with pytest.raises(InputError, match="resolution"):
        extract_mesh(sphere, -5, BOX)
    with pytest.raises(ResourceError, match="GB"):
        extract_mesh(sphere, 100_000, BOX)
    with pytest.raises(InputError, match="bbox"):
        extract_mesh(sphere, 32, ((1, 1, 1), (0, 0, 0)))
    with pytest.raises(InputError, match="bbox"):
        extract_mesh(sphere, 32, (0, 1))
    with pytest.raises(InputError, match="values"):
        extract_mesh(lambda p: p[:1, 0], 16, BOX)
    with pytest.raises(InputError, match="NaN"):
        extract_mesh(lambda p: torch.where(p[:, 0] > 0.5, float("nan"), sphere(p)), 24, BOX)


def test_small_component_between_coarse_corners_found_by_lipschitz_seed():
    """A ball 2 cells wide changes no brick corner's sign; the SDF bound still seeds it."""
    centre = torch.tensor([0.5 + 2 / 63 * 4, -0.5, 0.1])  # mid-brick, far from the big sphere

    def two_balls(p):
        big = (p + 0.4).norm(dim=-1) - 0.3
        tiny = (p - centre).norm(dim=-1) - 0.05
        return torch.minimum(big, tiny)

    v, f = extract_mesh(two_balls, 64, BOX)
    dv, df = dense(two_balls, 64)
    assert_same_mesh(v, f, dv, df)
    assert euler(f) == 4


def sphere_error(v: np.ndarray) -> np.ndarray:
    return np.abs(np.linalg.norm(v - np.array([0.03, -0.02, 0.01]), axis=1) - 0.61)


@pytest.mark.parametrize("name, fn, steps", [
    ("sdf-autograd", sphere, 1),
    ("sdf-finite-differences", lambda p: sphere(p).detach(), 1),
    # not a distance: value ~ 2 r * distance; Newton converges quadratically
    ("squared", lambda p: ((p - torch.tensor([0.03, -0.02, 0.01])) ** 2).sum(-1) - 0.61**2, 2),
], ids=lambda x: x if isinstance(x, str) else "")
def test_projection_puts_vertices_on_the_sphere(name, fn, steps):
    v0, f0 = extract_mesh(fn, 32, BOX)
    v, f = extract_mesh(fn, 32, BOX, project_steps=steps)
    assert np.array_equal(f, f0)  # connectivity unchanged: still watertight
    before, after = sphere_error(v0), sphere_error(v)
    # linear interpolation of a sphere's field is off by up to ~cell^2 / (8 r) = 8e-4 here
    assert before.max() > 2e-4
    # one Newton step along the exact radial gradient lands on the sphere: float32 rounding
    assert after.max() < 1e-2 * before.max() and after.max() < 2e-6
    assert np.abs(v - v0).max() <= 2 / 31 + 1e-6  # at most one cell


def test_projection_moves_at_most_max_move_and_skips_flat_points():
    from taichifield.geometry.project import project_to_level_set

    pts = torch.tensor([[1.5, 0.0, 0.0], [0.0, 0.0, 0.0]])  # 0.89 outside; the centre: |grad| = 0 there

    def field(p):
        return p.norm(dim=-1) ** 2 - 0.61**2  # gradient 2p: zero at the centre

    x = project_to_level_set(pts, field, steps=3, max_move=0.1)
    assert torch.allclose(x[0], torch.tensor([1.4, 0.0, 0.0]))  # capped, straight toward the sphere
    assert torch.equal(x[1], pts[1])


def test_projection_bad_argument():
    with pytest.raises(InputError, match="project_steps"):
        extract_mesh(sphere, 16, BOX, project_steps=-1)


def test_a_density_blob_between_coarse_corners_is_found_when_the_field_is_no_distance() -> None:
    """A NeRF-like field (threshold - density): a dense ball of radius 1.5 cells centred between
    the coarse grid's corners. Its corners all read ``threshold`` far above any distance bound,
    so the SDF cull would skip its brick; ``distance_field=False`` must still mesh it."""
    import torch

    from taichifield.geometry.extract import extract_mesh

    R = 65  # cells of 1/32 in [-1, 1]; bricks of 8 cells, corners at multiples of 0.25
    centre = torch.tensor([0.125, 0.125, 0.125])  # the middle of a brick, 0.2165 from every corner
    radius = 1.5 / 32

    def density_field(x: torch.Tensor) -> torch.Tensor:
        sigma = 100.0 * (x - centre.to(x)).norm(dim=-1).lt(radius).float()
        return 10.0 - sigma  # negative inside, +10 elsewhere

    verts, faces = extract_mesh(density_field, R, ((-1, -1, -1), (1, 1, 1)), distance_field=False)
    assert len(faces) > 0
    assert np.abs(np.asarray(verts) - centre.numpy()).max() < radius + 2 / 32
