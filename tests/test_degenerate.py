"""Degenerate input is refused where it enters (issue 13, part 2): one line naming the file
and the problem, exit code 2, nothing written.

Point clouds: one point, a line, fewer than 10 distinct points (a planar patch is accepted).
Scenes: cameras at one spot (training), fully transparent frames, a box no camera sees.
SDF checkpoints: a field that never crosses the level (``mesh sdf`` writes no empty mesh).
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from taichifield.cli.main import app
from taichifield.data import load_scene
from taichifield.data.loading import _box_in_view, check_training_views
from taichifield.data.points import check_point_set, load_oriented_points
from taichifield.errors import InputError

runner = CliRunner()
PROPS = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def refused(args: Sequence[Any], absent: Sequence[Path] = ()) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        pytest.fail("".join(traceback.format_exception(res.exception)))
    assert res.exit_code == 2, f"exit {res.exit_code}: {res.output}"
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    for p in absent:
        assert not Path(p).exists(), f"{p} was written"
    return lines[0]


# ----------------------------------------------------------------------------- point clouds

coord = st.floats(-1e4, 1e4, allow_nan=False, width=64)
vec3 = st.tuples(coord, coord, coord).map(np.array)
unit = st.tuples(*[st.floats(-1, 1)] * 3).map(np.array).filter(lambda v: np.linalg.norm(v) > 0.1) \
    .map(lambda v: v / np.linalg.norm(v))


@PROPS
@given(p=vec3, n=st.integers(1, 300))
def test_one_point_repeated_is_refused(p: np.ndarray, n: int) -> None:
    with pytest.raises(InputError) as info:
        check_point_set(np.tile(p, (n, 1)), "c.xyz")
    assert str(info.value).startswith(f"c.xyz: all {n} points are the same point (")


@PROPS
@given(p=vec3, d=unit, length=st.floats(1.0, 1e3), t=st.lists(st.floats(0, 1), max_size=200))
def test_points_on_a_line_are_refused(p: np.ndarray, d: np.ndarray, length: float, t: list[float]) -> None:
    pts = p + length * np.r_[0.0, 1.0, t][:, None] * d
    with pytest.raises(InputError, match=r"^c\.xyz: all \d+ points lie on one line \("):
        check_point_set(pts, "c.xyz")


@PROPS
@given(p=vec3, u=unit, v=unit, n=st.integers(10, 300), seed=st.integers(0, 2**16))
def test_a_planar_patch_is_accepted(p: np.ndarray, u: np.ndarray, v: np.ndarray, n: int, seed: int) -> None:
    v = v - (v @ u) * u
    if np.linalg.norm(v) < 0.2:  # nearly parallel directions: take any perpendicular one
        v = np.cross(u, [1.0, 0, 0] if abs(u[0]) < 0.9 else [0, 1.0, 0])
    v /= np.linalg.norm(v)
    ab = np.random.default_rng(seed).uniform(-1, 1, size=(n, 2))
    ab[:2] = [[-1, -1], [1, 1]]  # the patch spans both directions
    ab[2] = [1, -1]
    check_point_set(p + ab[:, :1] * u + ab[:, 1:] * v, "c.xyz")  # no exception


@PROPS
@given(k=st.integers(3, 9), repeats=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_fewer_than_ten_distinct_points_are_refused(k: int, repeats: int, seed: int) -> None:
    distinct = np.random.default_rng(seed).normal(size=(k, 3))
    pts = np.repeat(distinct, repeats, axis=0)
    what = f"{k} points" if repeats == 1 else f"{k} distinct points (of {k * repeats})"
    with pytest.raises(InputError) as info:
        check_point_set(pts, "c.xyz")
    assert str(info.value) == f"c.xyz: only {what}; at least 10 are needed to fit a surface"


def _clouds(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the exact error line)."""
    rng = np.random.default_rng(0)
    c: dict[str, tuple[Path, str]] = {}
    p = d / "same.xyz"
    np.savetxt(p, np.tile([[1.5, -2.0, 3.25, 0.0, 0.0, 1.0]], (50, 1)))
    c["one_point"] = (p, f"error: {p}: all 50 points are the same point (1.5, -2, 3.25); "
                         "a surface needs points spread over at least a plane")
    p = d / "line.npy"
    np.save(p, np.outer(np.linspace(0, 1, 40), [3.0, 0.0, 4.0]) + [1.0, 1.0, 1.0])
    c["line"] = (p, f"error: {p}: all 40 points lie on one line (5 long, ")
    p = d / "few.ply"
    pts = rng.normal(size=(7, 3))
    p.write_text("ply\nformat ascii 1.0\nelement vertex 7\nproperty float x\nproperty float y\nproperty float z\n"
                 "end_header\n" + "".join(f"{a} {b} {c_}\n" for a, b, c_ in pts))
    c["seven_points"] = (p, f"error: {p}: only 7 points; at least 10 are needed to fit a surface")
    p = d / "dups.xyz"
    np.savetxt(p, np.repeat(rng.normal(size=(4, 3)), 25, axis=0))
    c["four_distinct"] = (p, f"error: {p}: only 4 distinct points (of 100); at least 10 are needed to fit a surface")
    return c


def test_degenerate_clouds_through_every_command(tmp_path: Path) -> None:
    for name, (path, expected) in _clouds(tmp_path).items():
        run, mesh = tmp_path / f"run_{name}", tmp_path / f"{name}.ply"
        cmds = [["train", "sdf", path, "--out", run, "--steps", 1, "--no-preview", "--arch", "cpu"],
                ["reconstruct", "hoppe", path, "--out", mesh, "--res", 16, "--arch", "cpu"],
                ["reconstruct", "poisson", path, "--out", mesh, "--depth", 4]]
        for cmd in cmds:
            line = refused(cmd, absent=[run, mesh])
            assert line.startswith(expected), f"{name} {cmd[:2]}: {line!r}"


def test_planar_cloud_trains(tmp_path: Path) -> None:
    g = np.stack(np.meshgrid(np.linspace(-1, 1, 12), np.linspace(-1, 1, 12)), -1).reshape(-1, 2)
    pts = np.c_[g, np.zeros(len(g)), np.zeros(len(g)), np.zeros(len(g)), np.ones(len(g))]
    np.savetxt(tmp_path / "sheet.xyz", pts)
    data = load_oriented_points(tmp_path / "sheet.xyz")
    assert len(data.points) == 144
    res = runner.invoke(app, ["train", "sdf", str(tmp_path / "sheet.xyz"), "--out", str(tmp_path / "run"),
                              "--steps", "2", "--batch-size", "32", "--no-preview", "--arch", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "ckpt.pt").is_file()


def test_points_without_normals_too_few_to_estimate() -> None:
    """The old rule (< 4 points without normals) is covered by the distinct-point count."""
    with pytest.raises(InputError, match="only 3 points"):
        check_point_set(np.eye(3), "c.xyz")


# ----------------------------------------------------------------------------- scenes


def _look_at(eye: Sequence[float], target: Sequence[float] = (0, 0, 0)) -> list[list[float]]:
    """OpenGL camera-to-world: the camera at ``eye`` looks down -z at ``target``."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    back = eye - target
    back /= np.linalg.norm(back)
    up = np.array([0.0, 0.0, 1.0]) if abs(back[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(back, right), back, eye
    return m.tolist()


def blender(root: Path, poses: list[list[list[float]]], alpha: int = 200, split: str = "train") -> Path:
    (root / split).mkdir(parents=True, exist_ok=True)
    frames = []
    for i, pose in enumerate(poses):
        img = np.full((8, 8, 4), 120, np.uint8)
        img[..., 3] = alpha
        Image.fromarray(img).save(root / split / f"r_{i}.png")
        frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": pose})
    (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    return root


GOOD_POSES = [_look_at((4.0, 0, 0.5)), _look_at((0, 4.0, 0.5)), _look_at((-4.0, 0, 1.0))]


def test_good_scene_loads(tmp_path: Path) -> None:
    views = load_scene(blender(tmp_path / "s", GOOD_POSES), "train")
    check_training_views(views)
    assert len(views) == 3


def test_cameras_at_one_spot_refused_for_training_only(tmp_path: Path) -> None:
    spot = [_look_at((0, 0, 4.0)), _look_at((0, 0, 4.0), (0.3, 0.2, 0.0)), _look_at((0, 0, 4.0), (-0.2, 0.1, 0))]
    scene = blender(tmp_path / "spot", spot)
    run = tmp_path / "run"
    line = refused(["train", "nerf", scene, "--out", run, "--steps", 1, "--arch", "cpu"], absent=[run])
    assert line == (f"error: {scene / 'transforms_train.json'}: all 3 training cameras sit at one spot (0, 0, 4); "
                    "a NeRF needs views from different positions (parallax) to recover depth")
    one = blender(tmp_path / "one", GOOD_POSES[:1])
    line = refused(["train", "nerf", one, "--out", run, "--steps", 1, "--arch", "cpu"], absent=[run])
    assert "the only training camera sits at one spot" in line
    assert len(load_scene(scene, "train")) == 3  # evaluation and rendering may use such a split


def test_fully_transparent_frames_refused(tmp_path: Path) -> None:
    scene = blender(tmp_path / "clear", GOOD_POSES, alpha=0)
    run = tmp_path / "run"
    line = refused(["train", "nerf", scene, "--out", run, "--steps", 1, "--arch", "cpu"], absent=[run])
    assert line == (f"error: {scene / 'transforms_train.json'}: every image of the split is fully transparent "
                    "(alpha 0 in all 3 frames); there is nothing to fit")
    # one transparent frame among others is fine (a view that misses the object)
    mixed = blender(tmp_path / "mixed", GOOD_POSES, alpha=0)
    Image.fromarray(np.full((8, 8, 4), 200, np.uint8)).save(mixed / "train" / "r_1.png")
    assert len(load_scene(mixed, "train")) == 3


def test_box_that_no_camera_sees_is_refused(tmp_path: Path) -> None:
    away = [_look_at((4.0, 0, 0), (8.0, 0, 0)), _look_at((0, 4.0, 0), (0, 9.0, 1.0))]  # looking away from the box
    far = [_look_at((20.0, 0, 0)), _look_at((0, 20.0, 0))]  # at it, but the box lies beyond far = 6
    box = "[-1.5, -1.5, -1.5] .. [1.5, 1.5, 1.5]"
    for name, poses in (("away", away), ("far", far)):
        scene = blender(tmp_path / name, poses)
        run = tmp_path / f"run_{name}"
        line = refused(["train", "nerf", scene, "--out", run, "--steps", 1, "--arch", "cpu"], absent=[run])
        assert line == (f"error: {scene / 'transforms_train.json'}: no camera sees the scene box {box} (within near 2 "
                        ".. far 6); check the poses (OpenGL: cameras look down -z) and the box")
    # instant-ngp: a box moved off to one side by its offset, cameras looking at the origin
    ngp = tmp_path / "ngp"
    (ngp / "images").mkdir(parents=True)
    frames = []
    for i, pose in enumerate(GOOD_POSES):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(ngp / "images" / f"{i}.png")
        frames.append({"file_path": f"images/{i}.png", "transform_matrix": pose})
    doc = {"fl_x": 10.0, "aabb_scale": 1, "scale": 0.33, "offset": [0.5, 0.5, 0.5], "frames": frames}
    (ngp / "transforms.json").write_text(json.dumps(doc))
    assert len(load_scene(ngp, "all")) == 3
    doc["offset"] = [0.5, -20.0, 0.5]  # moves the box 62 units up (world z), above every camera's view
    (ngp / "transforms.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"transforms\.json: no camera sees the scene box \[-1\.52, -1\.52, 60\.6\]"):
        load_scene(ngp, "all")


LO, HI = np.full(3, -1.5), np.full(3, 1.5)


@PROPS
@given(direction=unit, distance=st.floats(2.7, 5.9), target=st.tuples(*[st.floats(-1.4, 1.4)] * 3),
       fov=st.floats(0.2, 2.5))
def test_a_camera_looking_into_the_box_sees_it(direction: np.ndarray, distance: float, target: tuple, fov: float) -> None:
    """No false refusals: a camera within near..far that looks at any point of the box sees it."""
    eye = np.asarray(target) + distance * direction
    f = 0.5 * 8 / np.tan(0.5 * fov)
    assert _box_in_view(np.asarray(_look_at(eye, target)), f, f, 4.0, 4.0, 8, 8, LO, HI, 2.0, 6.0)


@PROPS
@given(direction=unit, distance=st.floats(2.7, 50.0), fov=st.floats(0.2, 3.0))
def test_a_camera_facing_away_does_not_see_the_box(direction: np.ndarray, distance: float, fov: float) -> None:
    """Outside the box's bounding sphere (radius 2.6), looking straight away: every box point is behind."""
    eye = distance * direction
    f = 0.5 * 8 / np.tan(0.5 * fov)
    assert not _box_in_view(np.asarray(_look_at(eye, eye + direction)), f, f, 4.0, 4.0, 8, 8, LO, HI, 0.0, 1e3)


# ----------------------------------------------------------------------------- SDF checkpoints


@pytest.fixture(scope="module")
def sdf_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from taichifield.train.sdf import SDFTrainConfig, train_sdf

    d = tmp_path_factory.mktemp("sdf")
    p = np.random.default_rng(0).normal(size=(300, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    np.savetxt(d / "ball.xyz", np.hstack([0.5 * p, p]))
    cfg = SDFTrainConfig(steps=1, batch_size=32, model="relu", model_options={"hidden": 16, "layers": 2})
    train_sdf(d / "ball.xyz", d / "run", cfg)
    return d / "run" / "ckpt.pt"


def test_mesh_sdf_level_never_crossed(sdf_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.ply"
    line = refused(["mesh", "sdf", sdf_ckpt, "--out", out, "--res", 16, "--level", 1000, "--arch", "cpu", "-q"],
                   absent=[out])
    assert line.startswith(f"error: {sdf_ckpt}: the surface never crosses level 1000 inside its box (the field is "
                           "below it, "), line
    assert line.endswith("on a 24^3 grid); no mesh written")
    assert not list(tmp_path.iterdir())


def test_mesh_sdf_field_without_a_zero_crossing(sdf_ckpt: Path, tmp_path: Path) -> None:
    """A checkpoint whose field is a positive constant: its last layer outputs 0.25 everywhere."""
    ckpt = torch.load(sdf_ckpt, weights_only=True)
    last = max(int(k.split(".")[1]) for k in ckpt["state"] if k.startswith("linears."))
    ckpt["state"][f"linears.{last}.weight"].zero_()
    ckpt["state"][f"linears.{last}.bias"].fill_(0.25)
    flat = tmp_path / "flat.pt"
    torch.save(ckpt, flat)
    out = tmp_path / "m.ply"
    line = refused(["mesh", "sdf", flat, "--out", out, "--res", 16, "--arch", "cpu", "-q"], absent=[out])
    assert line.startswith(f"error: {flat}: the surface never crosses level 0 inside its box (the field is above it, ")
    low, high = (float(v) for v in line.split("above it, ")[1].split(" on a")[0].split(" .. "))
    assert 0 < low <= high and high - low < 1e-3 * high  # a constant, in input units
