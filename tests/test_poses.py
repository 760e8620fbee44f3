"""``taichifield poses`` on a procedural capture: a noise-textured cube inside a noise-textured
room, 24 views of 160x160 from known poses (our own numpy ray caster). The recovered poses must
match the known ones after a similarity (Umeyama) alignment; a video of the same views (with a
blurred copy next to each frame) registers too and keeps the sharp frames; bad inputs are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from taichifield.cameras import look_at
from taichifield.capture.frames import sharpness, window_bounds
from taichifield.capture.sfm import PosesConfig, PosesResult, check_poses_out, run_poses
from taichifield.data import load_scene
from taichifield.data.colmap import read_model
from taichifield.data.colmap_scene import model_frames
from taichifield.errors import InputError
from taichifield.metrics.poses import pose_agreement

pytest.importorskip("pycolmap", reason="the capture extra (pycolmap) is part of the dev install")

SIZE, FOCAL, N_VIEWS, RADIUS = 160, 150.0, 24, 2.6
CUBE_FREQ, ROOM_FREQ = 14.0, 4.0
_RNG = np.random.default_rng(7)
_LATTICE = _RNG.uniform(0, 1, (32, 32, 32, 3))


def _noise(p: np.ndarray, freq: float) -> np.ndarray:
    """(N, 3) colours: two octaves of trilinear value noise on a random colour lattice (wrapping), contrast-stretched."""
    flat = _LATTICE.reshape(-1, 3)
    out = np.zeros_like(p)
    for octave, weight in ((1.0, 0.6), (2.3, 0.4)):
        q = p * freq * octave + 100.0
        i = np.floor(q).astype(np.int64)
        f = q - i
        for corner in range(8):
            o = [(corner >> k) & 1 for k in range(3)]
            w = np.prod([f[:, k] if o[k] else 1 - f[:, k] for k in range(3)], axis=0)
            j = (((i[:, 0] + o[0]) % 32) * 32 + (i[:, 1] + o[1]) % 32) * 32 + (i[:, 2] + o[2]) % 32
            out += (weight * w)[:, None] * flat[j]
    return (out - 0.5) * 2.2 + 0.5  # stretched: the sum of octaves is greyish


def _render(c2w: np.ndarray) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8 view (2x2 supersampled) of the cube [-0.6, 0.6]^3 in a sphere room of radius 5."""
    s = (np.arange(2 * SIZE) + 0.5) / 2.0
    u, v = np.meshgrid(s, s)
    d = np.stack([(u - SIZE / 2) / FOCAL, -(v - SIZE / 2) / FOCAL, -np.ones_like(u)], -1).reshape(-1, 3)
    d = d @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.broadcast_to(c2w[:3, 3], d.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-0.6 - o) / d, (0.6 - o) / d
    tn, tf = np.minimum(t1, t2).max(1), np.maximum(t1, t2).min(1)
    hit = (tn < tf) & (tn > 0)
    b = (o * d).sum(1)
    t_room = -b + np.sqrt(b * b - (o * o).sum(1) + 25.0)
    p = o + np.where(hit, tn, t_room)[:, None] * d
    col = np.empty_like(p)
    col[hit] = _noise(p[hit], CUBE_FREQ)
    col[~hit] = _noise(p[~hit], ROOM_FREQ)
    face = np.abs(p[hit]) >= 0.6 - 1e-6  # faces shaded differently, as under a light
    col[hit] *= (0.55 + 0.45 * (face * np.array([0.3, 0.6, 1.0])).sum(1).clip(0, 1))[:, None]
    img = col.reshape(2 * SIZE, 2 * SIZE, 3).reshape(SIZE, 2, SIZE, 2, 3).mean((1, 3))
    return (img.clip(0, 1) * 255).round().astype(np.uint8)


def _poses() -> np.ndarray:
    out = []
    for i in range(N_VIEWS):
        a = 2 * np.pi * i / N_VIEWS
        elev = np.radians(18.0 if i % 2 == 0 else 38.0)
        eye = RADIUS * np.array([np.cos(a) * np.cos(elev), np.sin(a) * np.cos(elev), np.sin(elev)])
        out.append(look_at(torch.tensor(eye), torch.zeros(3, dtype=torch.float64), up=(0.0, 0.0, 1.0)).numpy())
    return np.stack(out)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, list[np.ndarray]]:
    from PIL import Image

    root = tmp_path_factory.mktemp("capture")
    photos = root / "photos"
    photos.mkdir()
    poses = _poses()
    views = [_render(m) for m in poses]
    for i, img in enumerate(views):
        Image.fromarray(img).save(photos / f"view_{i:02d}.png")
    return photos, poses, views


def _pose_errors(scene: Path, known: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per registered view: rotation error (degrees) and centre error (fraction of the rig diameter)."""
    got_names, c2w = model_frames(read_model(scene))
    agreement = pose_agreement(got_names, c2w, names, known, size=2 * RADIUS)
    return agreement.rotation_deg, agreement.centre, len(agreement.names)


def test_sharpness_prefers_the_sharp_image() -> None:
    img = (np.random.default_rng(0).uniform(0, 255, (40, 40, 3))).astype(np.uint8)
    blurred = ((img[:-2, :-2].astype(float) + img[1:-1, 1:-1] + img[2:, 2:]) / 3).astype(np.uint8)
    assert sharpness(img) > 2 * sharpness(blurred)
    assert window_bounds(10, None, 3).tolist() == [0, 3, 7, 10]
    assert window_bounds(10, 4, None).tolist() == [0, 4, 8, 10]


def test_the_report_names_rotation_jumps() -> None:
    result = PosesResult(given=3, registered=3, unregistered=[], mean_reprojection_error=0.5, points=10,
                         seconds=1.0, scene=Path("s"), jumps=[("0013.jpg", "0014.jpg", 174.0)])
    line = result.summary()
    assert "1 rotation jump > 90 deg" in line and "0013.jpg -> 0014.jpg (174 deg)" in line and "--matcher" in line
    result.jumps = []
    assert "jump" not in result.summary()


def test_poses_recovers_the_known_cameras(capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from taichifield.capture import child

    photos, poses, _ = capture
    in_child: list[str] = []
    real_call = child.call_in_child
    monkeypatch.setattr(child, "call_in_child", lambda target, *a, **k: in_child.append(target) or real_call(target, *a, **k))
    Image = __import__("PIL.Image", fromlist=["Image"])
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(photos.parent / "noise.png")
    photos_plus = tmp_path / "in"
    photos_plus.mkdir()
    for p in photos.iterdir():
        (photos_plus / p.name).write_bytes(p.read_bytes())
    (photos_plus / "zz_noise.png").write_bytes((photos.parent / "noise.png").read_bytes())
    stages: list[str] = []
    out = tmp_path / "scene"
    result = run_poses(photos_plus, out, PosesConfig(threads=1), progress=lambda s, d, n: stages.append(s))
    assert result.given == N_VIEWS + 1
    assert result.registered == N_VIEWS and result.unregistered == ["zz_noise.png"]
    assert 0 < result.mean_reprojection_error < 1.0 and result.points > 500
    assert {"frames", "features", "mapping", "export"} <= set(stages)  # relayed from the child
    assert in_child == ["taichifield.capture.mapping:colmap_stages"]  # COLMAP ran in a process without torch
    names = [f"view_{i:02d}.png" for i in range(N_VIEWS)]
    rot, centre, n = _pose_errors(out, poses, names)
    assert n == N_VIEWS and len(read_model(out).cameras) == 1  # features ran in chunks, on one shared camera
    assert np.median(rot) < 1.0 and np.median(centre) < 0.02, (np.median(rot), np.median(centre))
    # the scene reads back: transforms.json (normalised, OPENCV distortion, sharpness) and sparse/0 agree
    data = json.loads((out / "transforms.json").read_text())
    assert data["unregistered"] == ["zz_noise.png"] and all("sharpness" in f for f in data["frames"])
    assert data["poses"]["registered"] == N_VIEWS
    assert data["poses"]["rotation_jumps"] == [] and result.jumps == []  # a ring 15 deg apart per view
    assert result.breaks_found == [] and result.pairs_removed == 0 and "re-mapping" not in stages
    assert data["poses"]["flipped_runs"] == {"found": [], "left": 0, "pairs_removed": 0}
    assert not (out / ".unflip").exists()
    # the two-view rotations the flip check trusts are the known ones (OpenCV cam_b_from_cam_a)
    from taichifield.capture.flips import angle_deg, relative_rotations
    import pycolmap

    rel, _ = relative_rotations(pycolmap, out / "database.db", cameras=dict(pycolmap.Reconstruction(str(out / "sparse" / "0")).cameras))
    cv = {n: (poses[i][:3, :3] @ np.diag([1.0, -1.0, -1.0])).T for i, n in enumerate(names)}  # cam_from_world
    adjacent = [(a, b) for a, b in zip(names, names[1:]) if (a, b) in rel]
    assert len(adjacent) >= N_VIEWS - 3
    errs = [angle_deg(rel[(a, b)] @ (cv[b] @ cv[a].T).T) for a, b in adjacent]
    assert np.median(errs) < 2.0 and max(errs) < 10.0, errs
    via_json, via_model = load_scene(out / "transforms.json", "all"), load_scene(out / "sparse" / "0" / ".." / "..", "all")
    torch.testing.assert_close(via_json.c2w, via_model.c2w, atol=1e-5, rtol=0)
    lo, hi = via_json.aabb
    assert bool(((via_json.c2w[:, :3, 3] > lo) & (via_json.c2w[:, :3, 3] < hi)).all())
    assert abs(via_json.fx - FOCAL) < 0.03 * FOCAL
    ply = (out / "points3D.ply").read_bytes()
    assert ply.startswith(b"ply\n") and f"element vertex {result.points}".encode() in ply
    # a finished scene is refused without --overwrite; a leftover database resumes
    with pytest.raises(InputError, match="--overwrite"):
        check_poses_out(out, overwrite=False)
    (out / "transforms.json").unlink()
    assert check_poses_out(out, overwrite=False) is True


# run_poses with the flip check patched, in a process of its own: pycolmap runs in a process without
# torch (as run_poses does it, in a child), and the patches reach the mapping (isolate=False)
_PATCHED_RUN = r"""
import json, sys
import numpy as np
from taichifield.capture import flips
from taichifield.capture.sfm import PosesConfig, run_poses

calls = []

def pairs_of_the_first_view(rot, corr, rel, max_deg=90.0):
    first = sorted(rot)[0]
    return [k for k in rel if first in k]  # it cannot register again

def always_one_break(rotations, rel, max_deg=90.0):
    calls.append(len(rotations))
    first = sorted(rotations)[:2]
    return [(first[0], first[1], 180.0)], {n: np.eye(3) for n in rotations}

flips.contradicting_pairs, flips.sequence_breaks = pairs_of_the_first_view, always_one_break
photos, out, unflip = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
stages = []
r = run_poses(photos, out, PosesConfig(threads=1, unflip=unflip), progress=lambda s, d, n: stages.append(s), isolate=False)
import pycolmap
print(json.dumps({"calls": len(calls), "stages": stages, "registered": r.registered, "found": r.breaks_found,
                  "removed": r.pairs_removed, "left": r.breaks_left, "summary": r.summary(),
                  "pairs": pycolmap.Database.open(out + "/database.db").num_verified_image_pairs()}))
"""


def _patched_run(photos: Path, out: Path, unflip: bool) -> dict:  # type: ignore[type-arg]
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _PATCHED_RUN, str(photos), str(out), "1" if unflip else "0"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_second_mapping_that_does_not_help_is_dropped_and_the_database_kept(capture, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photos, _, _ = capture
    out = tmp_path / "scene"
    got = _patched_run(photos, out, unflip=True)
    assert got["calls"] == 2 and "re-mapping" in got["stages"]  # mapped again, one image short: the first model stands
    assert got["registered"] == N_VIEWS and got["found"][0][2] == 180.0
    assert got["removed"] == 0 and got["left"] == 1 and "mapping again did not help" in got["summary"]
    report = json.loads((out / "transforms.json").read_text())["poses"]["flipped_runs"]
    assert report["left"] == 1 and len(report["found"]) == 1 and report["pairs_removed"] == 0
    assert not (out / ".unflip").exists()
    off = _patched_run(photos, tmp_path / "off", unflip=False)
    assert off["calls"] == 0 and off["found"] == []  # --no-unflip: not looked for
    assert got["pairs"] == off["pairs"] > N_VIEWS  # the pairs went from the copy only


def test_poses_from_a_video_keeps_the_sharp_frames_and_registers(capture, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import imageio.v2 as iio
    from typer.testing import CliRunner

    from taichifield.cli.main import app

    _, poses, views = capture
    keep = list(range(N_VIEWS // 2))  # half the ring (12 views, the same 15 degree steps): a smaller second run
    frames = []
    for j, i in enumerate(keep):
        img = views[i].astype(float)
        blur = (img + np.roll(img, 2, 1) + np.roll(img, -2, 1) + np.roll(img, 4, 1)) / 4
        pair = [views[i], blur.astype(np.uint8)]
        frames += pair if j % 2 == 0 else pair[::-1]  # the sharp frame first, then second, in turn
    video = tmp_path / "walk.mp4"
    iio.mimwrite(video, frames, fps=8, quality=10, macro_block_size=16)
    out = tmp_path / "scene"
    res = CliRunner().invoke(app, ["poses", str(video), "--out", str(out), "--frames", str(len(keep)), "--threads", "1", "-q"])
    assert res.exit_code == 0, res.output
    assert f"{len(keep)}/{len(keep)} images registered" in res.output
    kept = sorted(p.name for p in (out / "images").iterdir())
    sharp_index = [2 * j + (0 if j % 2 == 0 else 1) for j in range(len(keep))]
    assert kept == [f"frame_{k + 1:05d}.jpg" for k in sharp_index]
    names = kept
    known = poses[keep]
    rot, centre, n = _pose_errors(out, known, names)
    assert n == len(keep) and np.median(rot) < 1.5 and np.median(centre) < 0.03, (np.median(rot), np.median(centre))
    again = CliRunner().invoke(app, ["poses", str(video), "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    (out / "transforms.json").unlink()  # as if interrupted after mapping: continue from database.db
    resumed = CliRunner().invoke(app, ["poses", str(video), "--out", str(out), "--threads", "1", "-q"])
    assert resumed.exit_code == 0 and resumed.output.startswith("resumed; "), resumed.output
    assert f"{len(keep)}/{len(keep)} images registered" in resumed.output
    assert sorted(p.name for p in (out / "images").iterdir()) == kept


def test_bad_inputs_are_refused_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from taichifield.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["poses", str(tmp_path / "missing"), "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "no such folder or video" in res.output and not (tmp_path / "s").exists()
    (tmp_path / "notes.txt").write_text("x")
    res = runner.invoke(app, ["poses", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "not a video" in res.output
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep me")
    res = runner.invoke(app, ["poses", str(tmp_path), "--out", str(full)])
    assert res.exit_code == 2 and "--overwrite" in res.output and (full / "mine.txt").read_text() == "keep me"
    res = runner.invoke(app, ["poses", str(tmp_path), "--out", str(tmp_path / "s"), "--frames", "0"])
    assert res.exit_code == 2 and "--frames must be a positive integer" in res.output
    with pytest.raises(InputError, match="at least 2 images"):
        (tmp_path / "one").mkdir()
        __import__("PIL.Image", fromlist=["Image"]).fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "one" / "a.png")
        run_poses(tmp_path / "one", tmp_path / "s2")


def test_pycolmap_is_imported_lazily_and_its_absence_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    code = ("import sys, taichifield, taichifield.capture, taichifield.data, taichifield.cli.main; "
            "assert 'pycolmap' not in sys.modules, 'pycolmap imported'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    from taichifield.capture.sfm import import_pycolmap, require_pycolmap

    monkeypatch.setitem(sys.modules, "pycolmap", None)  # as if not installed
    for check in (import_pycolmap, require_pycolmap):
        with pytest.raises(InputError, match=r"^taichifield poses needs pycolmap: pip install 'taichifield\[capture\]'$"):
            check()
    with pytest.raises(InputError, match="--camera-model must be one of"):
        PosesConfig(camera_model="FISHEYE")
