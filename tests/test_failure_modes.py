"""Bad input, command by command: a non-zero exit, one ``error: ...`` line naming the file
and the problem, no traceback and no output left behind (issue 6, "failure modes").

Commands run in-process through ``typer.testing.CliRunner`` (fast); a few run as real
processes to check what a user's terminal shows. Under pytest ``cli_command`` re-raises
unexpected exceptions (so a bug is a test failure with its traceback, not a tidy line);
``test_internal_error_is_one_line_for_users`` checks what users see instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from taichifield.cli.main import app
from taichifield.train.checkpoint import save_checkpoint

runner = CliRunner()

# ----------------------------------------------------------------------------- helpers


def run_cli(args: Sequence[Any]) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def expect_error(args: Sequence[Any], *must_name: Any, code: int = 2, absent: Sequence[Path] = ()) -> str:
    """Run a command that must fail cleanly; returns its one ``error:`` line."""
    res = run_cli(args)
    exc = res.exception
    if exc is not None and not isinstance(exc, SystemExit):
        tb = "".join(traceback.format_exception(exc))
        pytest.fail(f"{' '.join(map(str, args))}: unhandled {type(exc).__name__}\n{tb}")
    assert res.exit_code == code, f"exit {res.exit_code}, expected {code}; output:\n{res.output}"
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, f"expected one 'error:' line, got:\n{res.stderr}"
    assert "Traceback" not in res.output
    line = errors[0]
    assert len(line) < 400, line
    for name in must_name:
        assert str(name) in line, f"{name!r} not named in {line!r}"
    for p in absent:
        assert not Path(p).exists(), f"{p} was left behind"
        leftovers = list(Path(p).parent.glob(f".{Path(p).stem}.*")) if Path(p).parent.exists() else []
        assert not leftovers, f"temporary files left behind: {leftovers}"
    return line


def png(path: Path, w: int = 8, h: int = 8, channels: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, channels), 120, np.uint8)).save(path)
    return path


POSE = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 4.0], [0, 0, 0, 1.0]]


def _shifted(pose: list[list[float]], dx: float) -> list[list[float]]:
    """``pose`` moved by ``dx`` along x (views of a scene need parallax to train)."""
    return [[*row[:3], row[3] + (dx if r == 0 else 0.0)] for r, row in enumerate(pose)]


def blender_scene(root: Path, frames: list[dict[str, Any]] | None = None, n: int = 2, **extra: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if frames is None:
        frames = [{"file_path": f"./train/r_{i}", "transform_matrix": _shifted(POSE, 0.5 * i)} for i in range(n)]
        for i in range(n):
            png(root / "train" / f"r_{i}.png")
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames, **extra}))
    return root


def sphere_points(n: int = 300, seed: int = 0) -> np.ndarray:
    p = np.random.default_rng(seed).normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return np.hstack([0.5 * p, p])


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good and bad inputs shared by the tests (built once)."""
    d = tmp_path_factory.mktemp("inputs")
    f: dict[str, Path] = {}
    f["good_scene"] = blender_scene(d / "good")
    np.savetxt(d / "points.xyz", sphere_points())
    f["points"] = d / "points.xyz"
    (d / "tet.off").write_text("OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n")
    f["mesh"] = d / "tet.off"
    (d / "garbage.pt").write_bytes(b"this is not a checkpoint\n")
    f["garbage_ckpt"] = d / "garbage.pt"
    (d / "empty.pt").write_bytes(b"")
    f["empty_ckpt"] = d / "empty.pt"
    torch.save({"weights": torch.zeros(3)}, d / "other.pt")
    f["other_torch"] = d / "other.pt"
    torch.save({"format": "taichifield", "version": 99, "kind": "sdf", "config": {}, "state": {}}, d / "future.pt")
    f["future_ckpt"] = d / "future.pt"
    torch.save({"format": "taichifield", "kind": "sdf", "config": {}, "state": {}}, d / "noversion.pt")
    f["no_version_ckpt"] = d / "noversion.pt"
    (d / "not_a_run").mkdir()
    f["empty_run_dir"] = d / "not_a_run"
    (d / "a_file").write_text("x")
    f["a_file"] = d / "a_file"
    return f


@pytest.fixture(scope="module")
def sdf_ckpt(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (1-step, tiny) SDF checkpoint."""
    from taichifield.train.sdf import SDFTrainConfig, train_sdf

    run = tmp_path_factory.mktemp("sdf_run")
    cfg = SDFTrainConfig(steps=1, batch_size=32, model_options={"hidden": 16, "layers": 2})
    train_sdf(files["points"], run, cfg)
    return run / "ckpt.pt"


@pytest.fixture(scope="module")
def nerf_ckpt(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (1-step, tiny) NeRF checkpoint."""
    from taichifield.fields.nerf import NerfConfig
    from taichifield.train.nerf import NerfTrainConfig, run_train_nerf

    run = tmp_path_factory.mktemp("nerf_run")
    cfg = NerfTrainConfig(scene=str(files["good_scene"]), out=str(run), steps=1, eval_views=0, target_samples=256,
                          init_rays=32, grid_resolution=16, model=NerfConfig(log2_table_size=10, n_levels=4))
    run_train_nerf(cfg)
    return run / "ckpt.pt"


# ----------------------------------------------------------------------------- missing paths


def test_missing_input_for_every_command(tmp_path: Path, files: dict[str, Path], sdf_ckpt: Path, nerf_ckpt: Path) -> None:
    missing = tmp_path / "does_not_exist"
    out = tmp_path / "out"
    cases = [
        ["train", "sdf", missing.with_suffix(".ply"), "--out", out / "run", "--steps", 1],
        ["train", "nerf", missing, "--out", out / "run", "--steps", 1],
        ["train", "image", missing.with_suffix(".png"), "--out", out / "run", "--steps", 1],
        ["mesh", "sdf", missing.with_suffix(".pt"), "--out", out / "m.ply", "--res", 8],
        ["mesh", "nerf", missing.with_suffix(".pt"), "--out", out / "m.ply", "--res", 8],
        ["render", "sdf", missing.with_suffix(".pt"), "--out", out / "m.png"],
        ["render", "nerf", missing.with_suffix(".pt"), "--out", out / "frames", "--scene", files["good_scene"]],
        ["eval", "nerf", missing.with_suffix(".pt"), files["good_scene"]],
        ["eval", "mesh", missing.with_suffix(".ply"), files["mesh"]],
        ["eval", "mesh", files["mesh"], missing.with_suffix(".off")],
        ["reconstruct", "poisson", missing.with_suffix(".xyz"), "--out", out / "p.ply"],
        ["reconstruct", "hoppe", missing.with_suffix(".xyz"), "--out", out / "h.ply"],
        ["view", missing.with_suffix(".ply"), "--screenshot", out / "shot.png"],
        ["train", "sdf", files["points"], "--out", missing, "--resume", "--steps", 1],
        ["train", "nerf", "--resume", missing, "--steps", 1],
    ]
    for args in cases:
        expect_error(args, "does_not_exist")
    assert not out.exists(), list(out.rglob("*"))
    # a missing scene with a good checkpoint: named, nothing written
    expect_error(["eval", "nerf", nerf_ckpt, missing], "does_not_exist")
    expect_error(["render", "nerf", nerf_ckpt, "--scene", missing, "--out", out / "frames"], "does_not_exist")
    assert not out.exists()


# ----------------------------------------------------------------------------- scenes


def _bad_scenes(d: Path) -> dict[str, tuple[Path, str, str]]:
    """name -> (scene folder, text the error names, problem word)."""
    s: dict[str, tuple[Path, str, str]] = {}
    t = d / "truncated"
    t.mkdir()
    (t / "transforms_train.json").write_text('{"camera_angle_x": 0.69, "frames": [{"file_pa')
    s["truncated_json"] = (t, "transforms_train.json", "json")
    t = d / "not_object"
    t.mkdir()
    (t / "transforms_train.json").write_text("[1, 2, 3]")
    s["json_not_an_object"] = (t, "transforms_train.json", "object")
    t = d / "no_frames"
    t.mkdir()
    (t / "transforms_train.json").write_text('{"camera_angle_x": 0.69}')
    s["missing_frames_key"] = (t, "transforms_train.json", "frames")
    t = d / "binary_json"
    t.mkdir()
    (t / "transforms_train.json").write_bytes(b"\xff\xfe\x00garbage\x80")
    s["binary_json"] = (t, "transforms_train.json", "json")
    t = d / "bad_angle"
    blender_scene(t)
    (t / "transforms_train.json").write_text(json.dumps({"camera_angle_x": "wide", "frames": [
        {"file_path": "./train/r_0", "transform_matrix": POSE}]}))
    s["angle_not_a_number"] = (t, "transforms_train.json", "camera_angle_x")
    t = d / "ngp_truncated"
    t.mkdir()
    (t / "transforms.json").write_text('{"fl_x": 10, "frames": [')
    s["ngp_truncated_json"] = (t, "transforms.json", "json")
    t = d / "ngp_no_focal"
    png(t / "images" / "a.png")
    (t / "transforms.json").write_text(json.dumps({"frames": [{"file_path": "images/a.png", "transform_matrix": POSE}] * 2}))
    s["ngp_missing_focal"] = (t, "transforms.json", "fl_x")
    t = d / "ngp_wrong_size"
    png(t / "images" / "a.png")
    (t / "transforms.json").write_text(json.dumps({"fl_x": 10, "w": 64, "h": 64, "frames": [
        {"file_path": "images/a.png", "transform_matrix": POSE}] * 2}))
    s["ngp_w_h_mismatch"] = (t, "transforms.json", "64x64")
    t = blender_scene(d / "missing_image", [{"file_path": "./train/r_0", "transform_matrix": POSE}])
    s["missing_image"] = (t, "r_0.png", "not found")
    t = blender_scene(d / "garbage_image", [{"file_path": "./train/r_0", "transform_matrix": POSE}])
    (t / "train").mkdir()
    (t / "train" / "r_0.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    s["unreadable_image"] = (t, "r_0.png", "cannot read")
    t = blender_scene(d / "empty_image", [{"file_path": "./train/r_0", "transform_matrix": POSE}])
    (t / "train").mkdir()
    (t / "train" / "r_0.png").write_bytes(b"")
    s["zero_byte_image"] = (t, "r_0.png", "cannot read")
    t = blender_scene(d / "mixed", [{"file_path": f"./train/r_{i}", "transform_matrix": POSE} for i in range(2)])
    png(t / "train" / "r_0.png", 8, 8)
    png(t / "train" / "r_1.png", 16, 8)
    s["mixed_sizes"] = (t, "r_1.png", "mixed sizes")
    pose_cases = {
        "pose_scaled": (np.diag([2.0, 2.0, 2.0, 1.0]), "rigid"),
        "pose_sheared": (np.array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1.0]]), "rigid"),
        "pose_reflection": (np.diag([1.0, 1.0, -1.0, 1.0]), "rigid"),
        "pose_bad_bottom_row": (np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [1, 0, 0, 1.0]]), "rigid"),
        "pose_nan": (np.where(np.eye(4) > 0, np.nan, 0.0), "non-finite"),
        "pose_wrong_shape": (np.eye(3), "shape"),
    }
    for name, (m, word) in pose_cases.items():
        t = blender_scene(d / name, [{"file_path": "./train/r_0", "transform_matrix": m.tolist()}])
        png(t / "train" / "r_0.png")
        (t / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": [
            {"file_path": "./train/r_0", "transform_matrix": m.tolist()}]}).replace("NaN", "NaN"))
        s[name] = (t, "transforms_train.json", word)
    t = blender_scene(d / "pose_strings", [{"file_path": "./train/r_0", "transform_matrix": [["a"] * 4] * 4}])
    png(t / "train" / "r_0.png")
    s["pose_not_numeric"] = (t, "transforms_train.json", "numeric")
    return s


@pytest.fixture(scope="module")
def bad_scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str, str]]:
    return _bad_scenes(tmp_path_factory.mktemp("scenes"))


def test_bad_scenes_train_nerf(tmp_path: Path, bad_scenes: dict[str, tuple[Path, str, str]]) -> None:
    for name, (scene, named, word) in bad_scenes.items():
        run = tmp_path / name
        line = expect_error(["train", "nerf", scene, "--out", run, "--steps", 1, "--arch", "cpu"], named, absent=[run])
        assert word in line, f"{name}: {line!r} does not say {word!r}"


def test_bad_scenes_eval_and_render_nerf(tmp_path: Path, bad_scenes: dict[str, tuple[Path, str, str]], nerf_ckpt: Path) -> None:
    for name in ("truncated_json", "missing_image", "mixed_sizes", "pose_scaled"):
        scene, named, word = bad_scenes[name]
        line = expect_error(["eval", "nerf", nerf_ckpt, scene, "--split", "train"], named)
        assert word in line
        frames = tmp_path / f"frames_{name}"
        expect_error(["render", "nerf", nerf_ckpt, "--scene", scene, "--split", "train", "--out", frames], named,
                     absent=[frames])


# ----------------------------------------------------------------------------- points and meshes


def _bad_points(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, problem word)."""
    p: dict[str, tuple[Path, str]] = {}
    (d / "empty.xyz").write_text("")
    p["empty_xyz"] = (d / "empty.xyz", "no points")
    (d / "comments.xyz").write_text("# only a comment\n")
    p["comments_only_xyz"] = (d / "comments.xyz", "no points")
    (d / "empty.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                                 "property float z\nend_header\n")
    p["empty_ply"] = (d / "empty.ply", "no points")
    np.save(d / "empty.npy", np.zeros((0, 3)))
    p["empty_npy"] = (d / "empty.npy", "no points")
    a = sphere_points()
    a[5, 1] = np.nan
    np.savetxt(d / "nan.xyz", a)
    p["nan_coordinate_xyz"] = (d / "nan.xyz", "non-finite")
    a = sphere_points()
    a[7, 0] = np.inf
    np.save(d / "inf.npy", a)
    p["inf_coordinate_npy"] = (d / "inf.npy", "non-finite")
    a = sphere_points()
    a[9, 4] = np.nan
    np.savetxt(d / "nan_normal.xyz", a)
    p["nan_normal_xyz"] = (d / "nan_normal.xyz", "non-finite")
    a = sphere_points().astype("<f4")
    a[3, 5] = np.inf
    header = ("ply\nformat binary_little_endian 1.0\nelement vertex {}\nproperty float x\nproperty float y\n"
              "property float z\nproperty float nx\nproperty float ny\nproperty float nz\nend_header\n").format(len(a))
    (d / "inf_normal.ply").write_bytes(header.encode() + a.tobytes())
    p["inf_normal_binary_ply"] = (d / "inf_normal.ply", "non-finite")
    a = sphere_points()
    a[:, 3:] = 0.0
    np.savetxt(d / "zero_normals.xyz", a)
    p["zero_normals_xyz"] = (d / "zero_normals.xyz", "zero-length")
    (d / "nofaces.off").write_text("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")
    p["mesh_without_faces_off"] = (d / "nofaces.off", "no faces")
    (d / "bad_index.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n")
    p["face_index_out_of_range"] = (d / "bad_index.off", "out of range")
    (d / "flat.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n")
    p["degenerate_faces_only"] = (d / "flat.off", "degenerate")
    (d / "words.xyz").write_text("one two three\n")
    p["text_xyz"] = (d / "words.xyz", "parse")
    (d / "cols.xyz").write_text("1 2\n3 4\n")
    p["two_columns_xyz"] = (d / "cols.xyz", "x y z")
    (d / "trunc.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 100\nproperty float x\n"
                                  b"property float y\nproperty float z\nend_header\n\x00\x00\x80")
    p["truncated_binary_ply"] = (d / "trunc.ply", "")
    (d / "shape.stl").write_text("solid x\nendsolid x\n")
    p["unknown_extension"] = (d / "shape.stl", "format")
    return p


@pytest.fixture(scope="module")
def bad_points(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    return _bad_points(tmp_path_factory.mktemp("points"))


def test_bad_points_train_sdf(tmp_path: Path, bad_points: dict[str, tuple[Path, str]]) -> None:
    for name, (path, word) in bad_points.items():
        run = tmp_path / name
        line = expect_error(["train", "sdf", path, "--out", run, "--steps", 1, "--no-preview", "--arch", "cpu"],
                            path, absent=[run])
        assert word in line, f"{name}: {line!r} does not say {word!r}"


def test_bad_points_reconstruct(tmp_path: Path, bad_points: dict[str, tuple[Path, str]]) -> None:
    for name in ("empty_xyz", "nan_coordinate_xyz", "inf_normal_binary_ply", "mesh_without_faces_off"):
        path, word = bad_points[name]
        for method in ("poisson", "hoppe"):
            out = tmp_path / f"{name}_{method}.ply"
            line = expect_error(["reconstruct", method, path, "--out", out], path, absent=[out])
            assert word in line


def test_bad_meshes_eval_mesh(tmp_path: Path, files: dict[str, Path]) -> None:
    d = tmp_path
    (d / "cloud.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                                 "property float z\nend_header\n0 0 0\n1 0 0\n0 1 0\n")
    (d / "nofaces.off").write_text("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")
    (d / "nan.obj").write_text("v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n")
    (d / "index.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
    (d / "trunc.off").write_text("OFF\n4 4 0\n0 0 0\n1 0 0\n")
    (d / "flat.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n")
    cases = {"cloud.ply": "no faces", "nofaces.off": "no faces", "nan.obj": "NaN", "index.obj": "out of range",
             "trunc.off": "truncated", "flat.off": "area"}
    for name, word in cases.items():
        line = expect_error(["eval", "mesh", d / name, files["mesh"]], name)
        assert word in line, line
        expect_error(["eval", "mesh", files["mesh"], d / name], name)


# ----------------------------------------------------------------------------- checkpoints


class _Evil:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.target}",))


def test_bad_checkpoints(tmp_path: Path, files: dict[str, Path], sdf_ckpt: Path, nerf_ckpt: Path) -> None:
    out = tmp_path / "out"
    bad = {
        "garbage_ckpt": "not a loadable",
        "empty_ckpt": "not a loadable",
        "other_torch": "not a taichifield checkpoint",
        "future_ckpt": "newer",
        "no_version_ckpt": "version",
        "empty_run_dir": "no such checkpoint",
    }
    sdf_cmds = [["mesh", "sdf", "{ckpt}", "--out", out / "m.ply", "--res", 8],
                ["render", "sdf", "{ckpt}", "--out", out / "i.png", "--width", 8, "--height", 8]]
    nerf_cmds = [["mesh", "nerf", "{ckpt}", "--out", out / "m.ply", "--res", 8],
                 ["eval", "nerf", "{ckpt}", files["good_scene"], "--split", "train"],
                 ["render", "nerf", "{ckpt}", "--scene", files["good_scene"], "--split", "train", "--out", out / "frames"],
                 ["render", "nerf", "{ckpt}", "--orbit", "--frames", 2, "--resolution", 8, "--out", out / "o.gif"],
                 ["train", "nerf", "--resume", "{ckpt}", "--steps", 2]]
    for key, word in bad.items():  # every kind of bad file on two commands, two kinds on all
        for cmd in sdf_cmds + nerf_cmds if key in ("garbage_ckpt", "future_ckpt") else (sdf_cmds[0], nerf_cmds[0]):
            args = [files[key] if a == "{ckpt}" else a for a in cmd]
            line = expect_error(args, files[key].name)
            assert word in line, line
    # a checkpoint of the other kind
    for cmd in sdf_cmds:
        line = expect_error([nerf_ckpt if a == "{ckpt}" else a for a in cmd], nerf_ckpt)
        assert "'nerf' checkpoint, expected 'sdf'" in line
    for cmd in nerf_cmds:
        line = expect_error([sdf_ckpt if a == "{ckpt}" else a for a in cmd], sdf_ckpt)
        assert "'sdf' checkpoint, expected 'nerf'" in line
    run = tmp_path / "sdf_resume"
    run.mkdir()
    (run / "ckpt.pt").write_bytes(nerf_ckpt.read_bytes())
    expect_error(["train", "sdf", files["points"], "--out", run, "--resume", "--steps", 2, "--no-preview"], "expected 'sdf'")
    assert not out.exists(), list(out.rglob("*"))


@pytest.mark.parametrize("kind", ["sdf", "nerf"])
def test_checkpoint_with_wrong_contents(kind: str, tmp_path: Path) -> None:
    """The right kind and version, but a config/state that does not fit: CheckpointError, not a KeyError."""
    path = tmp_path / f"{kind}.pt"
    save_checkpoint(path, kind, {"model": "no such model"}, {"weights": torch.zeros(2)})
    cmd = ["mesh", kind, path, "--out", tmp_path / "m.ply", "--res", 8]
    line = expect_error(cmd, path, absent=[tmp_path / "m.ply"])
    assert "checkpoint" in line


def test_malicious_checkpoint_is_not_executed_by_any_command(tmp_path: Path, files: dict[str, Path]) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil" / "ckpt.pt"
    evil.parent.mkdir()
    torch.save({"format": "taichifield", "version": 1, "kind": "sdf", "config": {}, "state": {},
                "meta": _Evil(str(marker))}, evil)
    commands = [
        ["mesh", "sdf", evil, "--out", tmp_path / "m.ply", "--res", 8],
        ["render", "sdf", evil, "--out", tmp_path / "i.png"],
        ["mesh", "nerf", evil, "--out", tmp_path / "m.ply", "--res", 8],
        ["eval", "nerf", evil, files["good_scene"], "--split", "train"],
        ["train", "nerf", "--resume", evil, "--steps", 2],
        ["train", "sdf", files["points"], "--out", evil.parent, "--resume", "--steps", 2, "--no-preview"],
        ["view", evil, "--screenshot", tmp_path / "shot.png"],
    ]
    for args in commands:
        expect_error(args, evil)
        assert not marker.exists(), f"{args}: the crafted checkpoint ran code"
    # and in a real process, as a user would run it
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    proc = subprocess.run([sys.executable, "-m", "taichifield.cli.main", "mesh", "sdf", str(evil), "--out",
                           str(tmp_path / "m.ply"), "--arch", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not marker.exists() and not (tmp_path / "m.ply").exists()


# ----------------------------------------------------------------------------- resolutions and archs


def test_resolution_out_of_range(tmp_path: Path, files: dict[str, Path], sdf_ckpt: Path, nerf_ckpt: Path) -> None:
    out = tmp_path / "m.ply"
    for cmd in (["mesh", "sdf", sdf_ckpt], ["mesh", "nerf", nerf_ckpt]):
        for res in (0, -4, 1):
            line = expect_error([*cmd, "--out", out, f"--res={res}"], absent=[out])
            assert "resolution" in line and str(res) in line, line
        line = expect_error([*cmd, "--out", out, "--res", 100_000], absent=[out])
        assert "GB" in line, f"the refusal should give the memory estimate: {line!r}"


def test_hoppe_resolution_out_of_range(tmp_path: Path, files: dict[str, Path]) -> None:
    out = tmp_path / "h.ply"
    for res in (0, -4, 1):
        line = expect_error(["reconstruct", "hoppe", files["points"], "--out", out, f"--res={res}"], absent=[out])
        assert "res" in line, line
    line = expect_error(["reconstruct", "hoppe", files["points"], "--out", out, "--res", 100_000], absent=[out])
    assert "GB" in line or "TB" in line or "PB" in line, line


def test_other_bad_options(tmp_path: Path, files: dict[str, Path], sdf_ckpt: Path) -> None:
    out = tmp_path / "out"
    expect_error(["mesh", "sdf", sdf_ckpt, "--out", out / "m.stl", "--res", 8], "m.stl", absent=[out / "m.stl"])
    expect_error(["train", "sdf", files["points"], "--out", out / "r", "--loss", "magic", "--no-preview"], "magic")
    expect_error(["train", "sdf", files["points"], "--out", out / "r", "--model", "magic", "--no-preview"], "magic")
    expect_error(["train", "sdf", files["points"], "--out", out / "r", "--steps", 0, "--no-preview"], "--steps")
    expect_error(["train", "nerf", files["good_scene"], "--out", out / "r", "--encoding", "magic"], "magic")
    expect_error(["train", "nerf", files["good_scene"], "--out", out / "r", "--downscale", 0, "--steps", 1], "downscale")
    expect_error(["train", "image", files["points"], "--out", out / "r", "--encoding", "magic"], "magic")
    line = expect_error(["train", "nerf", files["good_scene"], "--out", out / "r", "--downscale", 64, "--steps", 1],
                        "transforms_train.json")
    assert "downscale 64 is larger than the 8x8 images" in line
    assert not out.exists()


OPTION_CASES = {  # id: (command after the input, the option the error must name)
    "render_sdf_width_0": (["render", "sdf", "{sdf}", "--out", "{out}/i.png", "--width", 0], "--width"),
    "render_sdf_height_negative": (["render", "sdf", "{sdf}", "--out", "{out}/i.png", "--height", -5], "--height"),
    "render_sdf_unknown_image_type": (["render", "sdf", "{sdf}", "--out", "{out}/i.txt", "--width", 8, "--height", 8], "i.txt"),
    "render_nerf_frames_0": (["render", "nerf", "{nerf}", "--orbit", "--frames", 0, "--out", "{out}/o.gif"], "--frames"),
    "render_nerf_resolution_0": (["render", "nerf", "{nerf}", "--orbit", "--frames", 2, "--resolution", 0,
                                  "--out", "{out}/o.gif"], "--resolution"),
    "train_nerf_steps_0": (["train", "nerf", "{scene}", "--out", "{out}/r", "--steps", 0], "--steps"),
    "train_nerf_target_samples_0": (["train", "nerf", "{scene}", "--out", "{out}/r", "--steps", 1, "--target-samples", 0],
                                    "--target-samples"),
    "train_nerf_table_too_big": (["train", "nerf", "{scene}", "--out", "{out}/r", "--steps", 1, "--log2-table-size", 40],
                                 "--log2-table-size"),
    "train_nerf_negative_time_budget": (["train", "nerf", "{scene}", "--out", "{out}/r", "--time-budget", -1], "--time-budget"),
    "train_sdf_negative_lr": (["train", "sdf", "{points}", "--out", "{out}/r", "--lr", -1, "--no-preview"], "--lr"),
    "train_sdf_nan_lr": (["train", "sdf", "{points}", "--out", "{out}/r", "--lr", "nan", "--no-preview"], "--lr"),
    "train_sdf_zero_time_budget": (["train", "sdf", "{points}", "--out", "{out}/r", "--time-budget", 0, "--no-preview"],
                                   "--time-budget"),
    "poisson_depth_0": (["reconstruct", "poisson", "{points}", "--out", "{out}/p.ply", "--depth", 0], "--depth"),
    "poisson_depth_30": (["reconstruct", "poisson", "{points}", "--out", "{out}/p.ply", "--depth", 30], "--depth"),
    "poisson_trim_2": (["reconstruct", "poisson", "{points}", "--out", "{out}/p.ply", "--trim", 2], "--trim"),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_out_of_range_options(case: str, tmp_path: Path, files: dict[str, Path], sdf_ckpt: Path, nerf_ckpt: Path) -> None:
    """Nonsense option values are refused up front, naming the option; nothing is written."""
    args, named = OPTION_CASES[case]
    out = tmp_path / "out"
    subst = {"{sdf}": sdf_ckpt, "{nerf}": nerf_ckpt, "{scene}": files["good_scene"], "{points}": files["points"]}
    argv = [subst.get(a, a) if not (isinstance(a, str) and a.startswith("{out}")) else a.replace("{out}", str(out))
            for a in args]
    expect_error([*argv, "--arch", "cpu"] if argv[0] != "reconstruct" or argv[1] == "hoppe" else argv, named)
    assert not out.exists(), list(out.rglob("*"))


ARCH_COMMANDS = {
    "train sdf": lambda f, t: ["train", "sdf", f["points"], "--out", t / "r", "--steps", 1, "--no-preview"],
    "train nerf": lambda f, t: ["train", "nerf", f["good_scene"], "--out", t / "r", "--steps", 1],
    "train image": lambda f, t: ["train", "image", f["good_scene"] / "train" / "r_0.png", "--out", t / "r", "--steps", 1],
    "mesh sdf": lambda f, t: ["mesh", "sdf", f["garbage_ckpt"], "--out", t / "m.ply"],
    "mesh nerf": lambda f, t: ["mesh", "nerf", f["garbage_ckpt"], "--out", t / "m.ply"],
    "render sdf": lambda f, t: ["render", "sdf", f["garbage_ckpt"], "--out", t / "i.png"],
    "render nerf": lambda f, t: ["render", "nerf", f["garbage_ckpt"], "--orbit", "--out", t / "o.gif"],
    "eval nerf": lambda f, t: ["eval", "nerf", f["garbage_ckpt"], f["good_scene"]],
    "reconstruct hoppe": lambda f, t: ["reconstruct", "hoppe", f["points"], "--out", t / "h.ply"],
}


@pytest.mark.parametrize("command", sorted(ARCH_COMMANDS))
def test_unknown_or_unavailable_arch(command: str, tmp_path: Path, files: dict[str, Path]) -> None:
    args = ARCH_COMMANDS[command](files, tmp_path)
    line = expect_error([*args, "--arch", "tpu"], "'tpu'")
    assert "unknown arch" in line and "cpu" in line
    if not torch.cuda.is_available():
        line = expect_error([*args, "--arch", "cuda"], "'cuda'")
        assert "unavailable" in line
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- outputs


def test_unwritable_output(tmp_path: Path, files: dict[str, Path], sdf_ckpt: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    line = expect_error(["mesh", "sdf", sdf_ckpt, "--out", blocker / "m.ply", "--res", 8], blocker)
    assert "folder" in line
    line = expect_error(["train", "sdf", files["points"], "--out", blocker / "run", "--steps", 1, "--no-preview",
                         "--batch-size", 16], blocker)
    line = expect_error(["reconstruct", "hoppe", files["points"], "--out", blocker / "h.ply", "--res", 24], blocker)
    assert blocker.read_text() == "x"


def test_output_that_is_a_folder(tmp_path: Path, sdf_ckpt: Path) -> None:
    folder = tmp_path / "m.ply"
    folder.mkdir()
    expect_error(["mesh", "sdf", sdf_ckpt, "--out", folder, "--res", 8], "m.ply")
    assert folder.is_dir() and not any(folder.iterdir())
    assert [p.name for p in tmp_path.iterdir()] == ["m.ply"], "temporary file left behind"


# ----------------------------------------------------------------------------- bugs vs users


def test_internal_error_is_one_line_for_users(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import taichifield.geometry.mesh_io as mesh_io

    def broken(path: Any) -> Any:
        raise KeyError("oops")

    monkeypatch.setattr(mesh_io, "load_mesh", broken)
    args = ["eval", "mesh", tmp_path / "a.ply", tmp_path / "b.ply"]
    # under pytest (and with TAICHIFIELD_DEBUG=1) a bug surfaces with its traceback ...
    assert isinstance(run_cli(args).exception, KeyError)
    monkeypatch.setenv("TAICHIFIELD_DEBUG", "1")
    assert isinstance(run_cli(args).exception, KeyError)
    # ... while a user gets one line and exit code 1
    monkeypatch.delenv("TAICHIFIELD_DEBUG")
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    line = expect_error(args, "KeyError", code=1)
    assert "internal error" in line and "TAICHIFIELD_DEBUG=1" in line


def test_failed_allocation_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import taichifield.geometry.mesh_io as mesh_io

    def numpy_oom(path: Any) -> Any:
        return np.empty((10**6, 10**6, 64))  # 512 TB: numpy's MemoryError, raised before touching memory

    def torch_oom(path: Any) -> Any:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 40000000000 bytes. Error code 12")

    args = ["eval", "mesh", tmp_path / "a.ply", tmp_path / "b.ply"]
    for fake in (numpy_oom, torch_oom):
        monkeypatch.setattr(mesh_io, "load_mesh", fake)
        line = expect_error(args)
        assert line.startswith("error: out of memory (") and "allocate" in line, line


def test_real_process_shows_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    missing = tmp_path / "nothing.ply"
    proc = subprocess.run([sys.executable, "-m", "taichifield.cli.main", "eval", "mesh", str(missing), str(missing)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {missing}: no such file"
    assert proc.stdout == ""


def test_orbit_video_needs_a_video_suffix(tmp_path):
    from typer.testing import CliRunner

    from taichifield.cli.main import app

    res = CliRunner().invoke(app, ["render", "nerf", str(tmp_path / "ckpt.pt"), "--orbit", "--out", str(tmp_path / "o.xyz")])
    assert res.exit_code == 2 and "must end in .mp4 or .gif" in res.output
    assert not (tmp_path / "o.xyz").exists()


# ----------------------------------------------------------------------------- CUDA out of memory


TORCH_OOM = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 7.79 GiB of which "
             "1.05 GiB is free. Of the allocated memory 5.90 GiB is allocated by PyTorch")
TAICHI_OOM = ("[cuda_driver.h:operator()@92] CUDA Error CUDA_ERROR_OUT_OF_MEMORY: out of memory while calling "
              "mem_alloc (cuMemAlloc_v2)")


def test_cuda_oom_in_training_keeps_the_last_checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        files: dict[str, Path]) -> None:
    """torch.cuda.OutOfMemoryError at step 3, after the checkpoint of step 2: one line with the
    request, the option to lower and the checkpoint kept; --resume then continues from step 2."""
    import taichifield.train.sdf as sdf_train

    real = sdf_train.train_sdf

    def runs_out_at_step_3(*args: Any, on_step: Any = None, **kwargs: Any) -> Any:
        def step(i: int, stats: dict[str, float]) -> None:
            if i == 3:
                raise torch.cuda.OutOfMemoryError(TORCH_OOM)
            on_step(i, stats)

        return real(*args, on_step=step, **kwargs)

    monkeypatch.setattr(sdf_train, "train_sdf", runs_out_at_step_3)
    run = tmp_path / "run"
    line = expect_error(["train", "sdf", files["points"], "--out", run, "--steps", 10, "--checkpoint-every", 2,
                         "--batch-size", 32, "--no-preview", "--arch", "cpu", "-q"])
    gpu = "" if not torch.cuda.is_available() else line.split("tried to allocate 2.00 GiB")[1].split(")")[0]
    assert line == (f"error: CUDA out of memory during train sdf (tried to allocate 2.00 GiB{gpu}); lower --batch-size; "
                    f"the last checkpoint {run / 'ckpt.pt'} (step 2) is kept: continue with --resume")
    assert torch.load(run / "ckpt.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(sdf_train, "train_sdf", real)
    res = run_cli(["train", "sdf", files["points"], "--out", run, "--resume", "--steps", 4, "--no-preview",
                   "--arch", "cpu", "-q"])
    assert res.exit_code == 0 and "4 steps" in res.stdout, res.output


def test_cuda_oom_before_any_checkpoint_and_in_meshing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       files: dict[str, Path], sdf_ckpt: Path) -> None:
    import taichifield.geometry.extract as extract
    import taichifield.train.nerf as nerf_train

    def taichi_oom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(TAICHI_OOM)

    monkeypatch.setattr(extract, "extract_mesh", taichi_oom)
    out = tmp_path / "m.ply"
    line = expect_error(["mesh", "sdf", sdf_ckpt, "--out", out, "--res", 8, "--arch", "cpu", "-q"], absent=[out])
    assert line.startswith("error: CUDA out of memory during mesh sdf (") and line.endswith("); lower --res"), line
    if not torch.cuda.is_available():  # the driver's words stand in for the numbers torch would give
        assert "CUDA_ERROR_OUT_OF_MEMORY" in line

    def torch_oom(*args: Any, **kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError(TORCH_OOM)

    monkeypatch.setattr(nerf_train, "run_train_nerf", torch_oom)
    run = tmp_path / "run"
    scene = blender_scene(tmp_path / "scene", [{"file_path": f"./train/r_{i}", "transform_matrix": m} for i, m in
                                               enumerate([POSE, [[1.0, 0, 0, 1.0], [0, 1.0, 0, 0], [0, 0, 1.0, 4.0],
                                                                 [0, 0, 0, 1.0]]])])
    for i in range(2):
        png(scene / "train" / f"r_{i}.png")
    line = expect_error(["train", "nerf", scene, "--out", run, "--steps", 5, "--arch", "cpu", "-q"])
    assert "lower --target-samples (samples per step) or raise --downscale; no checkpoint was written yet" in line
    assert line.startswith("error: CUDA out of memory during train nerf (tried to allocate 2.00 GiB")
