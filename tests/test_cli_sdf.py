"""CLI round trip on a tiny cloud: train sdf -> mesh sdf -> render sdf; reconstruct; errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from taichifield.geometry.mesh_io import load_mesh

runner = CliRunner()


@pytest.fixture
def cloud(tmp_path: Path) -> Path:
    d = np.random.default_rng(0).normal(size=(1500, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    path = tmp_path / "ball.xyz"
    np.savetxt(path, np.concatenate([10.0 + 2.0 * d, d], axis=1))
    return path


def test_train_mesh_render_round_trip(cloud: Path, tmp_path: Path) -> None:
    from PIL import Image

    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "sdf", str(cloud), "--out", str(run), "--steps", "60", "--batch-size", "256",
                              "--arch", "cpu", "--quiet", "--no-preview"])
    assert res.exit_code == 0, res.output
    assert "60 steps" in res.output and (run / "ckpt.pt").exists()
    assert (run / "curves.png").stat().st_size > 1000 and (run / "history.json").exists()


def test_train_writes_preview_of_the_current_surface(cloud: Path, tmp_path: Path) -> None:
    from PIL import Image

    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "sdf", str(cloud), "--out", str(run), "--steps", "20", "--batch-size", "128",
                              "--checkpoint-every", "10", "--arch", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    shots = sorted(p.name for p in (run / "progress").iterdir())
    assert shots == ["step_00010.png", "step_00020.png"]
    img = np.asarray(Image.open(run / "preview.png"))
    assert (img.sum(-1) < 600).mean() > 0.02  # the shaded surface is in the picture, not only background
    res = runner.invoke(app, ["mesh", "sdf", str(run / "ckpt.pt"), "--res", "32", "--out", str(tmp_path / "m.obj"), "--arch", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    verts, faces = load_mesh(tmp_path / "m.obj")
    assert len(faces) > 100
    # the mesh is in the input's coordinates: a ball of radius 2 around (10, 10, 10)
    r = np.linalg.norm(verts - 10.0, axis=1)
    assert abs(np.median(r) - 2.0) < 0.4
    res = runner.invoke(app, ["render", "sdf", str(run), "--out", str(tmp_path / "img.png"), "--width", "24", "--height", "16", "--arch", "cpu"])
    assert res.exit_code == 0, res.output
    img = np.asarray(Image.open(tmp_path / "img.png"))
    assert img.shape == (16, 24, 3)
    assert img[8, 12].sum() < img[0, 0].sum()  # the ball (shaded) is in the middle, white background at the corner


def test_reconstruct_hoppe_and_poisson(cloud: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["reconstruct", "hoppe", str(cloud), "--out", str(tmp_path / "h.ply"), "--res", "32", "--arch", "cpu"])
    assert res.exit_code == 0, res.output
    verts, _ = load_mesh(tmp_path / "h.ply")
    assert abs(np.median(np.linalg.norm(verts - 10.0, axis=1)) - 2.0) < 0.1
    import open3d  # noqa: F401  a required dependency (pyproject.toml): a broken install must fail, not skip
    res = runner.invoke(app, ["reconstruct", "poisson", str(cloud), "--out", str(tmp_path / "p.ply"), "--depth", "5"])
    assert res.exit_code == 0, res.output
    assert len(load_mesh(tmp_path / "p.ply")[1]) > 100


def test_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "empty.xyz"
    bad.write_text("")
    res = runner.invoke(app, ["train", "sdf", str(bad), "--out", str(tmp_path / "r"), "--arch", "cpu", "-q"])
    assert res.exit_code == 2 and "error:" in res.output and "empty.xyz" in res.output
    res = runner.invoke(app, ["mesh", "sdf", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "m.ply"), "--arch", "cpu"])
    assert res.exit_code == 2 and "nope.pt" in res.output
    res = runner.invoke(app, ["reconstruct", "hoppe", str(bad), "--out", str(tmp_path / "m.stl")])
    assert res.exit_code == 2 and "m.stl" in res.output


def test_help_has_examples() -> None:
    for group, cmd in (("train", "sdf"), ("mesh", "sdf"), ("render", "sdf"), ("reconstruct", "poisson"), ("reconstruct", "hoppe")):
        res = runner.invoke(app, [group, cmd, "--help"])
        assert res.exit_code == 0 and "Example" in res.output
