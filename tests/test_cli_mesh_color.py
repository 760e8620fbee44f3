"""``taichifield mesh nerf --color`` on a tiny NeRF of a ball whose colour is a known function of position."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from taichifield.cli.main import app

runner = CliRunner()
CENTER = np.array([0.1, -0.1, 0.0])
RADIUS = 0.6


def _surface_color(x: np.ndarray) -> np.ndarray:
    """Unlit colour of the ball's surface at points ``x`` (..., 3): 0.5 + 0.5 * the outward normal."""
    n = (x - CENTER) / np.linalg.norm(x - CENTER, axis=-1, keepdims=True)
    return 0.5 + 0.5 * n


def _write_scene(root: Path, n_views: int = 20, size: int = 24, angle_x: float = 0.69) -> None:
    """Blender folder (box [-1.5, 1.5]^3): cameras on a Fibonacci sphere of radius 4, the ball by ray casting."""
    from PIL import Image

    from taichifield.cameras import look_at

    import torch

    f = 0.5 * size / np.tan(0.5 * angle_x)
    frames = []
    (root / "train").mkdir(parents=True)
    for k in range(n_views):
        z = 1.0 - 2.0 * (k + 0.5) / n_views
        phi = np.pi * (3.0 - np.sqrt(5.0)) * k
        eye = 4.0 * np.array([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z])
        c2w = look_at(torch.tensor(eye), torch.zeros(3, dtype=torch.float64), (0.0, 0.0, 1.0)).numpy()
        u, v = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="xy")
        d = np.stack([(u - 0.5 * size) / f, -(v - 0.5 * size) / f, -np.ones_like(u)], -1) @ c2w[:3, :3].T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        o = eye - CENTER
        b = d @ o
        disc = b * b - (o @ o - RADIUS**2)
        t = -b - np.sqrt(np.maximum(disc, 0.0))
        rgba = np.concatenate([_surface_color(eye + t[..., None] * d), np.ones_like(t)[..., None]], -1)
        rgba[disc <= 0] = 0.0
        Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(root / "train" / f"r_{k}.png")
        frames.append({"file_path": f"./train/r_{k}", "transform_matrix": c2w.tolist()})
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": angle_x, "frames": frames}))


@pytest.fixture(scope="module")
def ball_run(tmp_path_factory):  # type: ignore[no-untyped-def]
    from taichifield.fields.nerf import NerfConfig
    from taichifield.train.nerf import NerfTrainConfig, run_train_nerf

    root = tmp_path_factory.mktemp("mesh_color")
    _write_scene(root / "scene")
    run = root / "run"
    run_train_nerf(NerfTrainConfig(scene=str(root / "scene"), out=str(run), steps=80, lr_decay=False,
                                   model=NerfConfig(n_levels=4, log2_table_size=12, max_resolution=128),
                                   target_samples=1 << 13, grid_resolution=32, render_steps=128, eval_views=0,
                                   progress_images=False))
    return run


def test_mesh_nerf_color_writes_the_balls_colours(ball_run, tmp_path, suffix: str = ".ply") -> None:
    # (OBJ export of the same colours: tests/test_mesh_colors.py)
    import trimesh

    from taichifield.geometry.mesh_io import load_mesh, read_vertex_colors

    out = tmp_path / f"m{suffix}"
    res = runner.invoke(app, ["mesh", "nerf", str(ball_run), "--res", "24", "--threshold", "2", "--color",
                              "--out", str(out), "--arch", "cpu"])
    assert res.exit_code == 0, res.output
    assert "vertex colours" in res.output
    verts, faces = load_mesh(out)
    colors = read_vertex_colors(out)
    assert colors is not None and colors.shape == verts.shape
    if suffix == ".ply":
        header = out.read_bytes().split(b"end_header")[0]
        assert b"property uchar red" in header
    # on the ball (its largest component; a short training may leave floaters elsewhere) the baked
    # colour follows the surface colour 0.5 + 0.5 n: per channel it correlates strongly, and
    # the mean error is a small part of the 0..1 range
    mesh = trimesh.Trimesh(verts, faces, process=False)
    parts = mesh.split(only_watertight=False)
    ball = max(parts, key=lambda m: m.area)
    on_ball = np.isin(np.arange(len(verts)), np.unique(faces[np.isin(np.arange(len(faces)), _face_ids(mesh, ball))]))
    expected = _surface_color(verts[on_ball])
    got = colors[on_ball]
    for k in range(3):
        assert np.corrcoef(got[:, k], expected[:, k])[0, 1] > 0.6, k
    assert np.abs(got - expected).mean() < 0.15, np.abs(got - expected).mean()


def _face_ids(mesh, part) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Indices in ``mesh`` of the faces of the split-off ``part`` (matched by face centroid)."""
    from scipy.spatial import cKDTree

    _, idx = cKDTree(mesh.triangles_center).query(part.triangles_center)
    return idx
