"""``taichifield train|eval|render|mesh neus`` through Typer's CliRunner on a tiny procedural scene;
the mesh of a barely trained model is checked against the field's initial sphere; bad input
gets one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from taichifield.cli.main import app
from tiny_scenes import lego_scene

runner = CliRunner()
SMALL = ["--log2-table-size", "12", "--target-samples", "2048", "--grid-resolution", "16", "--arch", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):  # type: ignore[no-untyped-def]
    """20 steps: 16 stratified, then 4 through the occupancy grid built from the SDF at step 16."""
    root = tmp_path_factory.mktemp("cli_neus")
    scene = Path(lego_scene(root / "scene", 16, train=6, test=2))
    run = root / "run"
    res = runner.invoke(app, ["train", "neus", str(scene), "--out", str(run), "--steps", "20", *SMALL])
    assert res.exit_code == 0, res.output
    return scene, run, res.output


def test_train_writes_the_run_folder(trained) -> None:  # type: ignore[no-untyped-def]
    import torch

    scene, run, output = trained
    assert "20 steps" in output and "ckpt.pt" in output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 20 and metrics["test_psnr"] > 5 and metrics["inv_s"] > 0
    assert (run / "curves.png").stat().st_size > 1000 and (run / "history.json").is_file()
    assert sorted(p.name for p in (run / "progress").iterdir()) == ["step_00020.png"]
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    assert ckpt["kind"] == "neus" and ckpt["meta"]["trainer"]["grid_ready"] is True


def test_resume_continues(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    scene, run, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    res = runner.invoke(app, ["train", "neus", "--resume", str(copy), "--steps", "22", *SMALL])
    assert res.exit_code == 0, res.output
    assert json.loads((copy / "metrics.json").read_text())["steps"] == 22
    res = runner.invoke(app, ["train", "neus", str(scene), "--out", str(copy), "--steps", "2", *SMALL])
    assert res.exit_code == 2 and "--overwrite" in res.output  # an existing run is not replaced silently


def test_eval_and_render(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import imageio.v3 as iio

    scene, run, _ = trained
    res = runner.invoke(app, ["eval", "neus", str(run), str(scene), "--limit", "2", "--json", "--arch", "cpu",
                              "--grid", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["n_views"] == 2 and data["psnr"] > 5 and [r["view"] for r in data["per_view"]] == ["r_0.png", "r_1.png"]
    assert iio.imread(tmp_path / "g.png").shape == (2 * 16, 3 * 16, 3)
    out = tmp_path / "normals"
    res = runner.invoke(app, ["render", "neus", str(run), "--scene", str(scene), "--normals", "--out", str(out),
                              "--arch", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["r_0.png", "r_1.png"] and "normal maps" in res.output
    img = np.asarray(iio.imread(out / "r_0.png"))
    assert img.shape == (16, 16, 3) and img.max() > 0  # the surface shows (black is empty space)
    grid = np.asarray(iio.imread(tmp_path / "g.png")).astype(int)
    assert np.abs(grid[:16, 32:] - img.astype(int)).max() <= 1  # the grid's third column is view 0's normal map
    res = runner.invoke(app, ["render", "neus", str(run), "--orbit", "--frames", "2", "--resolution", "8",
                              "--out", str(tmp_path / "orbit.gif"), "--arch", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "orbit.gif").stat().st_size > 0


def test_mesh_of_the_initial_sphere(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One training step at the warm-up lr leaves the field's geometric init: a sphere of radius
    0.5 x the box's half side (0.75 for the lego box [-1.5, 1.5]^3) about the box centre. The mesh
    is in scene coordinates, watertight, and every vertex is within 0.06 of that sphere, 0.025 on
    average (the init of a 64-wide one-layer MLP is a sphere to 0.015 on average, 0.05 at worst;
    marching cubes at 48^3 adds < 0.01)."""
    import trimesh

    from taichifield.geometry.mesh_io import load_mesh

    scene = lego_scene(tmp_path / "scene", 8, train=4, test=1)
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", "neus", scene, "--out", str(run), "--steps", "1", *SMALL])
    assert res.exit_code == 0, res.output
    out = tmp_path / "sphere.ply"
    res = runner.invoke(app, ["mesh", "neus", str(run), "--res", "48", "--out", str(out), "--arch", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    verts, faces = load_mesh(out)
    assert f"{len(faces)} faces" in res.output
    r = np.linalg.norm(verts, axis=1)
    assert np.abs(r - 0.75).max() < 0.06 and np.abs(r - 0.75).mean() < 0.025, (r.min(), r.max())
    assert trimesh.Trimesh(verts, faces, process=True).is_watertight


def test_short_training_finds_the_ball(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """30 steps on 12 RGBA views (16 px) of a ball (radius 0.6 about (0.2, -0.1, 0.1), test_cli_nerf's
    scene) move the surface from the init sphere (radius 0.75 about the origin, 0.16 from the ball
    on average) onto the ball: the mesh's vertices lie within 0.08 of it on average (0.04 measured)."""
    import trimesh

    from test_cli_nerf import BALL_CENTER, BALL_RADIUS, _write_ball_scene
    from taichifield.fields.neus import NeuSConfig
    from taichifield.geometry.mesh_io import load_mesh
    from taichifield.pipelines.neus_eval import mesh_neus
    from taichifield.train.neus import NeuSTrainConfig, run_train_neus

    _write_ball_scene(tmp_path / "scene", n_train=12, size=16)
    run_train_neus(NeuSTrainConfig(scene=str(tmp_path / "scene"), out=str(tmp_path / "run"), steps=30, warmup_steps=5,
                                   cos_anneal_steps=20, model=NeuSConfig(log2_table_size=12, n_levels=8, max_resolution=128),
                                   target_samples=1024, grid_resolution=32, render_steps=256, eval_views=0,
                                   progress_images=False))
    path, _, _ = mesh_neus(tmp_path / "run", tmp_path / "ball.ply", resolution=48)
    verts, faces = load_mesh(path)
    to_ball = np.abs(np.linalg.norm(verts - BALL_CENTER, axis=1) - BALL_RADIUS)
    to_init = np.abs(np.linalg.norm(verts, axis=1) - 0.75)
    assert to_ball.mean() < 0.08 and to_ball.mean() < 0.5 * to_init.mean(), (to_ball.mean(), to_init.mean())
    assert trimesh.Trimesh(verts, faces, process=True).is_watertight


def test_mesh_color_round_trips(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--color writes the colour network's value at each vertex (seen along its normal) into the
    PLY / OBJ, and it reads back as written (uchar: to 1/255)."""
    import torch

    from taichifield.geometry.mesh_io import load_mesh, read_vertex_colors
    from taichifield.pipelines.neus import NeuSModel
    from taichifield.pipelines.neus_eval import bake_neus_colors

    _, run, _ = trained
    for name in ("c.ply", "c.obj"):
        out = tmp_path / name
        res = runner.invoke(app, ["mesh", "neus", str(run), "--res", "32", "--color", "--out", str(out), "--arch", "cpu",
                                  "--quiet"])
        assert res.exit_code == 0, res.output
        assert "vertex colours" in res.output
        verts, faces = load_mesh(out)
        colors = read_vertex_colors(out)
        assert colors is not None and colors.shape == (len(verts), 3)
        with torch.no_grad():
            expected = bake_neus_colors(NeuSModel.load(run), verts, faces).numpy()
        assert np.abs(colors - expected).max() < 1.0 / 255 + 1e-3


def test_bad_input_is_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from taichifield.train.checkpoint import save_checkpoint

    for kind in ("nerf", "sdf"):
        save_checkpoint(tmp_path / f"{kind}.pt", kind, {"model": {}, "train": {}}, {})
        res = runner.invoke(app, ["mesh", "neus", str(tmp_path / f"{kind}.pt"), "--out", str(tmp_path / "m.ply"),
                                  "--arch", "cpu"])
        assert res.exit_code == 2 and f"this is a '{kind}' checkpoint, expected 'neus'" in res.output
        assert len(res.output.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": []}))
    res = runner.invoke(app, ["train", "neus", str(empty), "--out", str(tmp_path / "r"), "--arch", "cpu", "--quiet"])
    assert res.exit_code == 2 and res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    res = runner.invoke(app, ["mesh", "neus", str(tmp_path / "missing"), "--out", str(tmp_path / "m.obj"), "--arch", "cpu"])
    assert res.exit_code == 2 and "no such checkpoint" in res.output
    res = runner.invoke(app, ["mesh", "neus", str(tmp_path / "nerf.pt"), "--out", str(tmp_path / "m.stl"), "--arch", "cpu"])
    assert res.exit_code == 2 and ".ply or .obj" in res.output


def test_resume_after_sigterm_matches_uninterrupted_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Stopped by SIGTERM at step 10 and resumed, a run ends with the weights, occupancy grid and
    Adam state of an uninterrupted one, bit for bit on the CPU (grid updates at steps 0 and 16
    fall on both sides of the stop)."""
    import os
    import signal

    import torch

    from taichifield.fields.neus import NeuSConfig
    from taichifield.train.neus import NeuSTrainConfig, run_train_neus

    scene = lego_scene(tmp_path / "scene", 8, train=4, test=1)

    def config(out, steps):  # type: ignore[no-untyped-def]
        return NeuSTrainConfig(scene=scene, out=None if out is None else str(out), steps=steps, seed=3, grid_start=0,
                               model=NeuSConfig(log2_table_size=10, n_levels=4, max_resolution=64), target_samples=512,
                               grid_resolution=16, eval_views=0, progress_images=False)

    assert run_train_neus(config(tmp_path / "full", 20)).stopped == "steps"

    def stop_at_10(step: int, stats: dict) -> None:  # type: ignore[type-arg]
        if step == 10:
            os.kill(os.getpid(), signal.SIGTERM)

    part = run_train_neus(config(tmp_path / "part", 20), progress=stop_at_10)
    assert part.stopped == "signal" and part.step == 10
    assert run_train_neus(config(None, 20), resume=tmp_path / "part").step == 20
    a = torch.load(tmp_path / "full" / "ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "ckpt.pt", weights_only=True)
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k
    for p in a["optimizer"]["state"]:
        for name, value in a["optimizer"]["state"][p].items():
            assert torch.equal(value, b["optimizer"]["state"][p][name]), (p, name)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["meta"]["trainer"] == b["meta"]["trainer"]
