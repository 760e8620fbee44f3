"""``taichifield scene from-mesh``: a tiny icosphere becomes a Blender folder the loaders read, with the
object where the cameras look, and its ground-truth mesh normalised as stated."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from taichifield.cli.main import app

runner = CliRunner()
CENTER = np.array([1.0, 2.0, -3.0])
RADIUS = 2.5
ANGLE_X = 0.6911112070083618


def _icosphere(path: Path, subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    from taichifield.geometry.mesh_io import save_mesh

    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=RADIUS)
    v, f = np.asarray(m.vertices) + CENTER, np.asarray(m.faces)
    save_mesh(path, v, f)
    return v, f


@pytest.fixture(scope="module")
def scene(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("from_mesh")
    v, f = _icosphere(root / "ico.ply")
    out = root / "scene"
    res = runner.invoke(app, ["scene", "from-mesh", str(root / "ico.ply"), "--out", str(out), "--views", "4",
                              "--test-views", "1", "--resolution", "32", "--supersample", "2", "--arch", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    return root, out, v, f, res.output


def test_folder_loads_as_a_blender_scene(scene) -> None:  # type: ignore[no-untyped-def]
    from taichifield.data import load_scene
    from taichifield.data.blender import load_blender

    root, out, *_ , output = scene
    assert "4 train, 1 val, 1 test" in output and "gt_mesh.ply" in output
    for split, n in (("train", 4), ("val", 1), ("test", 1)):
        views = load_blender(out, split)
        assert len(views) == n and (views.width, views.height) == (32, 32) and views.has_alpha
        assert abs(views.fx - 16 / math.tan(ANGLE_X / 2)) < 1e-4
    assert len(load_scene(str(out), "train")) == 4  # the generic loader finds the format too
    assert "from-mesh" in (out / "README.txt").read_text()
    assert not (out / "scene.json").exists()  # not mistaken for a procedural scene


def test_views_show_the_object_where_the_cameras_look(scene) -> None:  # type: ignore[no-untyped-def]
    import imageio.v3 as iio

    _, out, *_ = scene
    # the unit ball seen from radius 4 fills a disc of radius tan(asin(1/4)) / tan(fov / 2) of the half width
    rho = math.tan(math.asin(0.25)) / math.tan(ANGLE_X / 2)
    expected = math.pi * rho**2 / 4
    for split in ("train", "val", "test"):
        meta = json.loads((out / f"transforms_{split}.json").read_text())
        assert meta["camera_angle_x"] == pytest.approx(ANGLE_X)
        for fr in meta["frames"]:
            c2w = np.array(fr["transform_matrix"])
            assert abs(np.linalg.norm(c2w[:3, 3]) - 4.0) < 1e-9  # on the sphere of radius 4 ...
            assert np.allclose(-c2w[:3, 2], -c2w[:3, 3] / 4.0, atol=1e-9)  # ... looking at the centre
            img = np.asarray(iio.imread(out / f"{fr['file_path']}.png"))
            alpha = img[..., 3] / 255.0
            assert img.shape == (32, 32, 4)
            assert alpha[15:17, 15:17].min() == 1.0  # centre pixels opaque
            assert alpha[0, 0] == 0 and alpha[-1, -1] == 0  # transparent background
            assert abs(alpha.mean() - expected) < 0.06, (alpha.mean(), expected)
            rgb = img[..., :3][alpha == 1].astype(float)
            assert rgb.std(axis=0).max() > 5  # shaded, not flat
    train = np.array([fr["transform_matrix"] for fr in json.loads((out / "transforms_train.json").read_text())["frames"]])
    assert train[:, 2, 3].min() < -1 and train[:, 2, 3].max() > 1  # train views from below and above


def test_gt_mesh_is_the_input_after_the_stated_normalisation(scene) -> None:  # type: ignore[no-untyped-def]
    from taichifield.geometry.mesh_io import load_mesh

    _, out, v, f, _ = scene
    meta = json.loads((out / "scene_from_mesh.json").read_text())
    center = 0.5 * (v.min(0) + v.max(0))
    scale = 1.0 / np.linalg.norm(v - center, axis=1).max()
    assert np.allclose(meta["center"], center) and meta["scale"] == pytest.approx(scale)
    gv, gf = load_mesh(out / "gt_mesh.ply")
    assert np.array_equal(gf, f)
    assert np.abs(gv - (v - center) * scale).max() < 1e-6
    assert abs(np.linalg.norm(gv, axis=1).max() - 1.0) < 1e-6  # fits the unit ball


def test_mesh_sdf_distances_and_normals(tmp_path) -> None:
    from taichifield.scenes.from_mesh import MeshSDF, normalize_mesh

    v, f = _icosphere(tmp_path / "ico.ply", subdivisions=4)
    vs, _, _ = normalize_mesh(v)
    sdf = MeshSDF(vs, f)
    dirs = torch.nn.functional.normalize(torch.randn(200, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    for r in (0.5, 1.3):
        d = sdf(dirs * r)
        assert d.shape == (200,) and torch.allclose(d, torch.full_like(d, r - 1.0), atol=5e-3)  # negative inside
    n = sdf.normals(dirs)
    assert (n * dirs).sum(-1).min() > 0.999


def test_bad_input_is_refused_in_one_line(scene, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, out, *_ = scene
    fast = ["--views", "1", "--test-views", "1", "--resolution", "8", "--arch", "cpu", "--quiet"]

    def refused(*args: str) -> str:
        res = runner.invoke(app, ["scene", "from-mesh", *fast, *args])  # later options win
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), res.output
        return lines[0]

    assert "no such file" in refused(str(tmp_path / "missing.ply"), "--out", str(tmp_path / "a"))
    cloud = tmp_path / "cloud.ply"
    cloud.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                     "property float z\nend_header\n0 0 0\n1 0 0\n0 1 0\n")
    assert "no faces" in refused(str(cloud), "--out", str(tmp_path / "b"))
    assert "not empty" in refused(str(root / "ico.ply"), "--out", str(out))  # an earlier scene is kept
    assert "--views" in refused(str(root / "ico.ply"), "--out", str(tmp_path / "c"), "--views", "0")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    res = runner.invoke(app, ["scene", "from-mesh", str(root / "ico.ply"), "--out", str(out), "--overwrite", *fast])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "transforms_train.json").read_text())["frames"][0]["file_path"] == "./train/r_0"
