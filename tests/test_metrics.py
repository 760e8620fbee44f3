"""Mesh metrics on shapes with known answers."""

import numpy as np
import pytest

from taichifield.errors import InputError
from taichifield.geometry.metrics import mesh_metrics, sample_surface


def cube(size: float = 1.0, offset=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64) * size + offset
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return v, f


def test_identical_meshes_score_perfectly():
    v, f = cube()
    m = mesh_metrics(v, f, v, f, n_samples=100_000)
    assert m["chamfer_l1"] < 0.003  # only sampling noise
    assert m["fscore"] > 0.99
    assert m["normal_consistency"] > 0.98
    assert m["diag"] == pytest.approx(np.sqrt(3))


def test_shifted_mesh_distance_and_fscore():
    v, f = cube()
    shift = 0.05 * np.sqrt(3)  # 5% of the diagonal along x
    m = mesh_metrics(v + [shift, 0, 0], f, v, f, n_samples=20_000)
    # faces normal to x move by `shift`; the 4 other faces stay on their planes
    # (distance 0 up to sampling): the mean lies between shift/3 and shift
    assert 0.3 * 0.05 < m["chamfer_l1"] < 0.05
    assert m["fscore"] < 0.9
    flipped = mesh_metrics(v, f[:, ::-1], v, f, n_samples=20_000)
    assert flipped["normal_consistency"] > 0.98  # |cos|: orientation-free


def test_empty_prediction_and_bad_input():
    v, f = cube()
    m = mesh_metrics(np.zeros((0, 3)), np.zeros((0, 3), int), v, f)
    assert m["chamfer_l1"] == float("inf") and m["fscore"] == 0.0
    with pytest.raises(InputError, match="no faces"):
        mesh_metrics(v, f, v, np.zeros((0, 3), int))
    with pytest.raises(InputError, match=r"\(V, 3\)"):
        mesh_metrics(v[:, :2], f, v, f)


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
    import json

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
    assert 0 < m["chamfer_l1"] < 0.03 and m["n_samples"] == 5000  # sampling noise ~0.007
    res = runner.invoke(app, ["eval", "mesh", str(tmp_path / "missing.ply"), str(tmp_path / "b.obj")])
    assert res.exit_code == 2 and "missing.ply" in res.output
