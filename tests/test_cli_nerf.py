"""``taichifield train|eval|render|mesh nerf`` through Typer's CliRunner on a tiny procedural scene (and, for
``mesh nerf``, an analytically rendered ball whose mesh is checked against the ball)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from taichifield.cli.main import app
from tiny_scenes import lego_scene

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("cli_nerf")
    scene = Path(lego_scene(root / "scene", 16, train=6, test=3))
    run = root / "run"
    res = runner.invoke(app, ["train", "nerf", str(scene), "--out", str(run), "--steps", "6", "--arch", "cpu",
                              "--log2-table-size", "12", "--target-samples", "4096", "--quiet"])
    assert res.exit_code == 0, res.output
    return scene, run, res.output


def test_train_writes_checkpoint_and_summary(trained) -> None:  # type: ignore[no-untyped-def]
    scene, run, output = trained
    assert "6 steps" in output and "ckpt.pt" in output
    assert (run / "ckpt.pt").is_file() and (scene / "transforms_train.json").is_file()
    assert json.loads((run / "metrics.json").read_text())["steps"] == 6
    assert (run / "curves.png").stat().st_size > 1000 and (run / "history.json").is_file()


def test_eval_json(trained) -> None:  # type: ignore[no-untyped-def]
    scene, run, _ = trained
    res = runner.invoke(app, ["eval", "nerf", str(run / "ckpt.pt"), str(scene), "--split", "test", "--limit", "2",
                              "--json", "--arch", "cpu"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["n_views"] == 2 and data["psnr"] > 5 and -1 <= data["ssim"] <= 1
    assert [r["view"] for r in data["per_view"]] == ["r_0.png", "r_1.png"]


def test_eval_grid_picture(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import imageio.v3 as iio
    import numpy as np

    scene, run, _ = trained
    res = runner.invoke(app, ["eval", "nerf", str(run), str(scene), "--limit", "2", "--grid", str(tmp_path / "g.png"),
                              "--arch", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    grid = np.asarray(iio.imread(tmp_path / "g.png"))
    assert grid.shape == (2 * 16, 3 * 16, 3)  # two views; ground truth | prediction | error
    gt, pred, err = grid[:16, :16].astype(int), grid[:16, 16:32].astype(int), grid[:16, 32:]
    expected = np.clip(np.abs(pred - gt).mean(-1) * 4, 0, 255)
    assert np.abs(err[..., 0].astype(int) - expected).max() <= 6  # the error panel is |pred - gt| x4


def test_render_split_and_orbit(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import imageio.v3 as iio

    scene, run, _ = trained
    out = tmp_path / "frames"
    res = runner.invoke(app, ["render", "nerf", str(run), "--scene", str(scene), "--split", "test",
                              "--out", str(out), "--arch", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["r_0.png", "r_1.png", "r_2.png"]
    assert iio.imread(out / "r_0.png").shape == (16, 16, 3)
    res = runner.invoke(app, ["render", "nerf", str(run), "--orbit", "--frames", "3", "--resolution", "12",
                              "--out", str(tmp_path / "orbit.mp4"), "--arch", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    written = tmp_path / "orbit.mp4"
    if not written.exists():
        written = tmp_path / "orbit.gif"
        assert "GIF" in res.output
    assert written.stat().st_size > 0


# --- mesh nerf on a trained field of a known object -------------------------------------------

BALL_CENTER = np.array([0.2, -0.1, 0.1])
BALL_RADIUS = 0.6


def _look_at_origin(eye: np.ndarray) -> np.ndarray:
    """4x4 camera-to-world, OpenGL/Blender convention (the camera looks along its -z), z up."""
    back = eye / np.linalg.norm(eye)
    right = np.cross((0.0, 0.0, 1.0), back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, eye
    return c2w


def _render_ball(c2w: np.ndarray, size: int, angle_x: float) -> np.ndarray:
    """(size, size, 4) uint8 RGBA: an opaque ball, coloured by its normal, on a transparent background
    (ray-sphere intersection; pixel centres at +0.5)."""
    f = 0.5 * size / np.tan(0.5 * angle_x)
    u, v = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="xy")
    d = np.stack([(u - 0.5 * size) / f, -(v - 0.5 * size) / f, -np.ones_like(u)], -1) @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = c2w[:3, 3] - BALL_CENTER
    b = d @ o
    disc = b * b - (o @ o - BALL_RADIUS**2)
    hit = disc > 0
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    normal = (o + t[..., None] * d) / BALL_RADIUS
    rgba = np.concatenate([(0.5 + 0.5 * normal) * (1.0, 0.4, 0.2), np.ones_like(t)[..., None]], -1)
    rgba[~hit] = 0.0
    return (rgba * 255 + 0.5).astype(np.uint8)


def _write_ball_scene(root: Path, n_train: int = 24, size: int = 32) -> None:
    """A Blender folder (box [-1.5, 1.5]^3, near 2, far 6): cameras on a Fibonacci sphere of radius 4."""
    from PIL import Image

    angle_x = 0.69
    for split, n, offset in (("train", n_train, 0.0), ("test", 2, 0.5)):
        (root / split).mkdir(parents=True)
        frames = []
        for k in range(n):
            z = 1.0 - 2.0 * (k + 0.5) / n
            phi = np.pi * (3.0 - np.sqrt(5.0)) * (k + offset)
            c2w = _look_at_origin(4.0 * np.array([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z]))
            Image.fromarray(_render_ball(c2w, size, angle_x), "RGBA").save(root / split / f"r_{k}.png")
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": c2w.tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle_x, "frames": frames}))


@pytest.fixture(scope="module")
def trained_ball(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A NeRF of the ball, trained long enough (100 steps) that its density clearly separates the
    ball (interior median ~4) from empty space (99th percentile ~0.15)."""
    from taichifield.fields.nerf import NerfConfig
    from taichifield.train.nerf import NerfTrainConfig, run_train_nerf

    root = tmp_path_factory.mktemp("cli_nerf_ball")
    _write_ball_scene(root / "scene")
    run = root / "run"
    run_train_nerf(NerfTrainConfig(scene=str(root / "scene"), out=str(run), steps=100, lr_decay=False,
                                   model=NerfConfig(n_levels=4, log2_table_size=12, max_resolution=128),
                                   target_samples=1 << 13, grid_resolution=32, render_steps=128, eval_views=0,
                                   progress_images=False))
    return run


def test_mesh_nerf(trained_ball, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from taichifield.geometry.mesh_io import load_mesh

    # --threshold 2: the ball renders opaque through its 1.2-unit chord, which needs sigma * length
    # of about 3 (sigma ~2.5); 2 per unit (86% absorbed per unit) lies between empty space and the
    # interior. The default 10 suits a field trained for thousands of steps, not 100.
    # --res 24, an odd size: mesh nerf evaluates every brick of a density field (it is no
    # distance), so the ball is found even when no coarse brick corner falls inside it.
    out = tmp_path / "m.ply"
    res = runner.invoke(app, ["mesh", "nerf", str(trained_ball), "--res", "24", "--threshold", "2",
                              "--out", str(out), "--arch", "cpu"])
    assert res.exit_code == 0, res.output
    verts, faces = load_mesh(out)
    assert len(faces) > 100 and f"{len(faces)} faces" in res.output
    assert np.all(np.abs(verts) <= 1.5 + 1e-4)  # inside the scene box
    # after 100 steps, corners of the box no camera constrains may still hold density above 2
    # (small floaters): the largest component is the ball; its box is the ball's box (give or
    # take a cell, 0.13, and the field's blur), and most of its vertices lie on the sphere
    import trimesh

    ball = max(trimesh.Trimesh(verts, faces, process=True).split(only_watertight=False), key=lambda m: m.area)
    assert ball.area > 0.5 * sum(m.area for m in trimesh.Trimesh(verts, faces, process=True).split(only_watertight=False))
    verts = np.asarray(ball.vertices)
    lo, hi = verts.min(0), verts.max(0)
    assert np.all(np.abs(lo - (BALL_CENTER - BALL_RADIUS)) < 0.25), lo
    assert np.all(np.abs(hi - (BALL_CENTER + BALL_RADIUS)) < 0.25), hi
    r = np.linalg.norm(verts - BALL_CENTER, axis=1)
    assert abs(np.median(r) - BALL_RADIUS) < 0.1


def test_errors_are_one_line(tmp_path) -> None:
    res = runner.invoke(app, ["eval", "nerf", str(tmp_path / "missing.pt"), str(tmp_path), "--arch", "cpu"])
    assert res.exit_code == 2 and "no such checkpoint" in res.output
    res = runner.invoke(app, ["train", "nerf", str(tmp_path), "--encoding", "bogus", "--arch", "cpu"])
    assert res.exit_code == 2 and "--encoding" in res.output
    res = runner.invoke(app, ["render", "nerf", str(tmp_path / "x.pt"), "--out", str(tmp_path / "o"), "--arch", "cpu"])
    assert res.exit_code == 2
