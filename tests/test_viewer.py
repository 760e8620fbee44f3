"""The Open3D viewer, off-screen: the object must cover a real part of the picture.

Runs headless: without DISPLAY the viewer starts a private Xvfb (CI installs xvfb).
Skipped where neither a display nor Xvfb exists.
"""

from __future__ import annotations

import os
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from taichifield.cli.main import app
from taichifield.geometry.mesh_io import save_mesh

pytestmark = pytest.mark.skipif(
    not (os.environ.get("DISPLAY") or shutil.which("Xvfb")), reason="needs a display or Xvfb"
)


def _sphere_points(n: int = 4000, r: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return (r * d).astype(np.float32), d.astype(np.float32)


def _coverage(path) -> float:
    """Fraction of pixels that differ from the white background."""
    img = np.asarray(iio.imread(path))[..., :3].astype(np.float32)
    return float((np.abs(img - 255.0).max(-1) > 20).mean())


def _view(tmp_path, *inputs: str) -> float:
    shot = tmp_path / "shot.png"
    res = CliRunner().invoke(app, ["view", *inputs, "--screenshot", str(shot), "--width", "320", "--height", "240"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output
    img = iio.imread(shot)
    assert img.shape[:2] == (240, 320)
    return _coverage(shot)


def test_view_mesh_screenshot(tmp_path):
    from skimage.measure import marching_cubes

    g = np.linspace(-1, 1, 32)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    v, f, _, _ = marching_cubes(np.sqrt(x**2 + y**2 + z**2) - 0.6, 0.0)
    save_mesh(tmp_path / "sphere.ply", v.astype(np.float32), f[:, ::-1].astype(np.int64))
    cov = _view(tmp_path, str(tmp_path / "sphere.ply"))
    assert 0.05 < cov < 0.95, cov


def test_view_point_cloud_screenshot(tmp_path):
    p, n = _sphere_points()
    np.savetxt(tmp_path / "cloud.xyz", np.concatenate([p, n], 1))
    cov = _view(tmp_path, str(tmp_path / "cloud.xyz"))
    assert 0.02 < cov < 0.95, cov


def test_view_sdf_checkpoint_screenshot(tmp_path):
    from taichifield.train.sdf import SDFTrainConfig, train_sdf

    p, n = _sphere_points(2000)
    np.savetxt(tmp_path / "cloud.xyz", np.concatenate([p, n], 1))
    train_sdf(tmp_path / "cloud.xyz", tmp_path / "run", SDFTrainConfig(steps=5, batch_size=256))
    ckpt = tmp_path / "run" / "ckpt.pt"
    shot = tmp_path / "shot.png"
    res = CliRunner().invoke(app, ["view", str(ckpt), "--sdf-res", "48", "--screenshot", str(shot),
                                   "--width", "320", "--height", "240"])
    assert res.exit_code == 0, res.output
    assert _coverage(shot) > 0.05
    assert (tmp_path / "run" / "ckpt.mesh48.ply").exists()  # cached next to the checkpoint


def test_view_without_display_or_screenshot_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    res = CliRunner().invoke(app, ["view", str(tmp_path / "x.ply")])
    assert res.exit_code == 2
    assert "--screenshot" in res.output and "Traceback" not in res.output


def test_view_missing_file(tmp_path):
    res = CliRunner().invoke(app, ["view", str(tmp_path / "nope.ply"), "--screenshot", str(tmp_path / "s.png")])
    assert res.exit_code == 2 and "nope.ply" in res.output
    assert not (tmp_path / "s.png").exists()


def test_view_bad_size_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(app, ["view", str(tmp_path / "x.ply"), "--width", "0", "--screenshot", str(tmp_path / "s.png")])
    assert res.exit_code == 2 and "--width must be a positive number" in res.output


def test_eval_mesh_grid_colours_the_error(tmp_path):
    from skimage.measure import marching_cubes

    g = np.linspace(-1, 1, 32)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    v, f, _, _ = marching_cubes(r - 0.6, 0.0)
    save_mesh(tmp_path / "gt.ply", v.astype(np.float32), f[:, ::-1].astype(np.int64))
    bumpy = r - 0.6 - 0.15 * (x > 0.3)  # the prediction bulges on one side
    v2, f2, _, _ = marching_cubes(bumpy, 0.0)
    save_mesh(tmp_path / "pred.ply", v2.astype(np.float32), f2[:, ::-1].astype(np.int64))
    res = CliRunner().invoke(app, ["eval", "mesh", str(tmp_path / "pred.ply"), str(tmp_path / "gt.ply"),
                                   "--samples", "5000", "--grid", str(tmp_path / "grid.png")])
    assert res.exit_code == 0, res.output
    img = np.asarray(iio.imread(tmp_path / "grid.png"))[..., :3].astype(int)
    red = (img[..., 0] > 150) & (img[..., 1] < 100) & (img[..., 2] < 100)
    assert red.sum() > 50  # the bulge is shown as error
    half = img.shape[1] // 2
    assert red[:, :half].sum() < red[:, half:].sum()  # ... on the prediction (right), not the reference
