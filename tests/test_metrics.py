"""Mesh metrics on shapes whose answers are worked out by hand (expected values in comments)."""

import json

import numpy as np
import pytest
import trimesh

from taichifield.errors import InputError
from taichifield.geometry.distance import closest_point_on_triangles, point_to_mesh
from taichifield.geometry.metrics import mesh_metrics, sample_surface


def cube(size: float = 1.0, offset=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64) * size + offset
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return v, f


def sag(v: np.ndarray, f: np.ndarray, radius: float) -> float:
    """Largest distance from a sphere of ``radius`` to the triangles inscribed in it: a
    triangle with circumradius rho lies in a plane sqrt(radius^2 - rho^2) from the centre."""
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    la, lb, lc = (np.linalg.norm(x, axis=1) for x in (b - c, c - a, a - b))
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    rho = la * lb * lc / (4 * area)
    return float(np.max(radius - np.sqrt(radius**2 - rho**2)))


def test_closest_point_on_triangle_regions():
    a, b, c = np.array([[0.0, 0, 0]]), np.array([[1.0, 0, 0]]), np.array([[0.0, 1, 0]])
    cases = {  # query -> closest point: face interior, each edge, each corner
        (0.2, 0.3, 5.0): (0.2, 0.3, 0.0), (0.5, -2.0, 1.0): (0.5, 0.0, 0.0), (-3.0, 0.5, 0.0): (0.0, 0.5, 0.0),
        (1.0, 1.0, 0.0): (0.5, 0.5, 0.0), (-1.0, -1.0, 0.0): (0.0, 0.0, 0.0), (3.0, -0.5, 0.0): (1.0, 0.0, 0.0),
        (-0.5, 3.0, 2.0): (0.0, 1.0, 0.0),
    }
    for q, want in cases.items():
        got = closest_point_on_triangles(np.array([q]), a, b, c)
        assert np.allclose(got, [want], atol=1e-12), (q, got)


def test_mesh_against_itself_is_zero_and_the_sampled_figure_is_not():
    v, f = cube()
    n = 50_000
    m = mesh_metrics(v, f, v, f, n_samples=n)
    # exact up to Open3D's float32 choice of the closest triangle: at most float32 rounding
    # of the unit cube's coordinates (2^-24) for the few samples where the choice matters
    assert m["chamfer_l1"] <= 2.0**-24 and m["hausdorff95"] <= 2.0**-24
    assert m["fscore@0.5%"] == m["fscore@1%"] == 1.0
    assert m["normal_consistency"] > 0.9999  # a sample on a cube edge may pick the other face
    assert m["diag"] == pytest.approx(np.sqrt(3))
    # the older sample-to-sample Chamfer has a floor: nearest-neighbour distance between
    # two independent uniform sample sets of density n / area is 0.5 * sqrt(area / n)
    floor = 0.5 * np.sqrt(6.0 / n)
    assert m["sampled_chamfer_l1"] == pytest.approx(floor, rel=0.1)


def test_sphere_against_a_larger_sphere_gives_the_radius_gap():
    r, eps = 1.0, 0.025
    pred = trimesh.creation.icosphere(subdivisions=4, radius=r)
    gt = trimesh.creation.icosphere(subdivisions=5, radius=r + eps)
    rot = trimesh.transformations.random_rotation_matrix(np.random.default_rng(1).random(3))[:3, :3]
    gt_v = gt.vertices @ rot.T  # no triangle of one mesh parallel to one of the other
    # every pred point is eps (+ its sag) inside the gt sphere, and each mesh is within its
    # sag of its sphere: all distances lie in eps +- (sag_pred + sag_gt)
    tol = sag(pred.vertices, pred.faces, r) + sag(gt_v, gt.faces, r + eps)
    assert tol < 0.002
    m = mesh_metrics(pred.vertices, pred.faces, gt_v, gt.faces, n_samples=50_000)
    for key in ("chamfer_l1", "accuracy", "completeness", "hausdorff95"):
        assert abs(m[key] - eps) <= tol, key
    diag = float(np.linalg.norm(np.ptp(gt_v, axis=0)))
    assert m["chamfer_l1_rel"] == pytest.approx(m["chamfer_l1"] / diag)
    # 0.5% of the diagonal (~0.0177) is below eps - tol, 1% (~0.0355) above eps + tol
    assert 0.005 * diag < eps - tol and 0.01 * diag > eps + tol
    assert m["fscore@0.5%"] == 0.0 and m["fscore@1%"] == 1.0
    assert m["normal_consistency"] > 0.99


def test_a_subset_is_asymmetric():
    """pred = the unit cube without its top face, gt = the cube. Every pred sample lies on
    gt (accuracy 0). A gt sample on the top face, (x, y, 1), is min(x, 1-x, y, 1-y) from pred
    (the side faces' top edges); that has P(m > t) = (1 - 2t)^2, mean 1/6, and the top face
    holds 1/6 of the gt samples."""
    v, f = cube()
    top = np.all(v[f][:, :, 2] == 1.0, axis=1)
    assert top.sum() == 2
    n = 100_000
    m = mesh_metrics(v, f[~top], v, f, n_samples=n)
    assert m["accuracy"] <= 2.0**-24
    expected = 1 / 36  # (1/6 of the samples) * (mean 1/6)
    second_moment = (1 / 6) * (1 / 24)  # E[m^2] = 1/24 on the top face
    se = np.sqrt((second_moment - expected**2) / n)
    assert m["completeness"] == pytest.approx(expected, abs=5 * se)
    assert m["chamfer_l1"] == pytest.approx(expected / 2, abs=3 * se)
    # 95th percentile of the gt->pred distances: (1/6) (1 - 2t)^2 = 0.05
    p95 = (1 - np.sqrt(0.3)) / 2
    assert m["hausdorff95"] == pytest.approx(p95, abs=0.01)
    for key, frac in (("0.5%", 0.005), ("1%", 0.01)):
        tau = frac * np.sqrt(3)
        recall = 1 - (1 - 2 * tau) ** 2 / 6
        assert m[f"precision@{key}"] == 1.0
        assert m[f"recall@{key}"] == pytest.approx(recall, abs=5 * np.sqrt(recall * (1 - recall) / n))
        assert m[f"fscore@{key}"] == pytest.approx(2 * recall / (1 + recall), abs=0.005)


def shifted_cube_distance(s: float) -> float:
    """Mean distance from the unit cube moved by s along x to the cube (either direction).

    Samples on the moved x = 1 + s face are s away. On the x = s face, inside the cube,
    (s, y, z) is min(s, y, 1-y, z, 1-z) away, with P(min(y, 1-y, z, 1-z) > t) = (1 - 2t)^2:
    mean (1 - (1 - 2s)^3) / 6. On each of the four other faces the overhang x in [1, 1+s]
    is x - 1 away: mean s^2 / 2. Six faces of equal area; the reverse direction mirrors it.
    """
    return ((1 - (1 - 2 * s) ** 3) / 6 + s + 4 * s**2 / 2) / 6


def test_shifted_cube():
    v, f = cube()
    s = 0.05 * np.sqrt(3)
    n = 50_000
    m = mesh_metrics(v + [s, 0, 0], f, v, f, n_samples=n)
    expected = shifted_cube_distance(s)
    se = s * np.sqrt(1 / 3 / n)  # the distances lie in [0, s], a third of them near s
    for key in ("accuracy", "completeness", "chamfer_l1"):
        assert m[key] == pytest.approx(expected, abs=5 * se), key
    assert m["chamfer_l1_rel"] == pytest.approx(expected / np.sqrt(3), abs=5 * se)
    flipped = mesh_metrics(v, f[:, ::-1], v, f, n_samples=20_000)
    assert flipped["normal_consistency"] > 0.9999  # |cos|: orientation-free


def test_point_to_mesh_matches_analytic_distances():
    v, f = cube()
    q = np.array([[0.5, 0.5, 2.0], [2.0, 2.0, 2.0], [0.5, 0.5, 0.4], [-1.0, 0.5, 0.5]])
    d, face = point_to_mesh(q, v, f)
    assert np.allclose(d, [1.0, np.sqrt(3), 0.4, 1.0], atol=1e-12)
    assert face.dtype == np.int64 and np.all((face >= 0) & (face < len(f)))


def test_empty_prediction_and_bad_input():
    v, f = cube()
    m = mesh_metrics(np.zeros((0, 3)), np.zeros((0, 3), int), v, f)
    assert m["chamfer_l1"] == float("inf") and m["chamfer_l1_rel"] == float("inf") and m["fscore@1%"] == 0.0
    with pytest.raises(InputError, match="no faces"):
        mesh_metrics(v, f, v, np.zeros((0, 3), int))
    with pytest.raises(InputError, match=r"\(V, 3\)"):
        mesh_metrics(v[:, :2], f, v, f)
    with pytest.raises(InputError, match="outside"):
        mesh_metrics(v, f + 10, v, f)
    with pytest.raises(InputError, match="gt.ply: .*zero-area"):
        mesh_metrics(v, f, np.zeros((3, 3)), np.array([[0, 1, 2]]), gt_name="gt.ply")


def test_samples_are_area_uniform_and_deterministic():
    v, f = cube()
    f2 = np.vstack([f, f + 8])
    big = np.vstack([v, v * 2 + [5, 0, 0]])  # second cube has 4x the area
    p, n = sample_surface(big, f2, 50_000, np.random.default_rng(0))
    share = np.mean(p[:, 0] > 2.5)
    assert share == pytest.approx(0.8, abs=0.01)
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0)
    a = mesh_metrics(v, f, big, f2, n_samples=1000, seed=3)
    b = mesh_metrics(v, f, big, f2, n_samples=1000, seed=3)
    assert a == b


def test_eval_mesh_cli(tmp_path):
    from typer.testing import CliRunner

    from taichifield.cli.main import app
    from taichifield.geometry.mesh_io import save_mesh

    v, f = cube()
    save_mesh(tmp_path / "a.ply", v, f)
    save_mesh(tmp_path / "b.obj", v + [0.01, 0, 0], f)
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "mesh", str(tmp_path / "a.ply"), str(tmp_path / "b.obj"), "--json", "--samples", "5000"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert m["chamfer_l1"] == pytest.approx(shifted_cube_distance(0.01), rel=0.15) and m["n_samples"] == 5000
    assert m["chamfer_l1_rel"] == pytest.approx(m["chamfer_l1"] / np.sqrt(3))
    res = runner.invoke(app, ["eval", "mesh", str(tmp_path / "a.ply"), str(tmp_path / "b.obj"), "--samples", "5000"])
    assert res.exit_code == 0, res.output
    for label in ("exact", "Chamfer-L1", "Hausdorff-95", "F@0.5%", "F@1%", "sampled"):
        assert label in res.stdout, label
    res = runner.invoke(app, ["eval", "mesh", str(tmp_path / "missing.ply"), str(tmp_path / "b.obj")])
    assert res.exit_code == 2 and "missing.ply" in res.output
