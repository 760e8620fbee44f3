"""The procedural LEGO scene: analytic SDF, Taichi SDF kernel, camera rig, first-use rendering."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from taichifield.errors import InputError
from taichifield.scenes import lego
from taichifield.scenes.lego_kernel import lego_sdf_taichi
from taichifield.scenes.prepare import is_procedural, prepare_scene, read_scene_spec


def _brick_centre(b: lego.Brick) -> list[float]:
    lo, hi = b.box()
    return [(a + c) / 2 for a, c in zip(lo, hi)]


def _stud_xy(b: lego.Brick) -> list[float]:
    lo, _ = b.box()
    return [lo[0] + 0.5 * lego.PITCH, lo[1] + 0.5 * lego.PITCH]


def test_sdf_signs_and_studs() -> None:
    red = lego.BRICKS[1]
    lo, hi = red.box()
    stud_x = lo[0] + 0.5 * lego.PITCH
    stud_y = lo[1] + 0.5 * lego.PITCH
    p = torch.tensor([
        _brick_centre(red),                                   # inside a brick
        [*_stud_xy(lego.BRICKS[-1]), 3.0],                    # far above the highest stud
        [stud_x, stud_y, hi[2] + 0.5 * lego.STUD_HEIGHT],     # inside a stud
        [stud_x + 0.5 * lego.PITCH, stud_y + 0.5 * lego.PITCH, hi[2] + 0.5 * lego.STUD_HEIGHT],  # between studs
        [stud_x, stud_y, hi[2] + 2 * lego.STUD_HEIGHT],       # above a stud
    ])
    d = lego.lego_sdf(p)
    assert d[0] < -0.05 and d[2] < 0
    top = lego.BRICKS[-1].box()[1][2] + lego.STUD_HEIGHT  # the highest stud
    assert d[1] == pytest.approx(3.0 - top, abs=1e-4)
    assert d[3] > 0.01 and d[4] == pytest.approx(lego.STUD_HEIGHT, abs=1e-4)
    # every brick's centre is inside and has that brick's colour
    centres = torch.tensor([_brick_centre(b) for b in lego.BRICKS])
    assert (lego.lego_sdf(centres) < 0).all()
    assert torch.allclose(lego.lego_albedo(centres), torch.tensor([b.color for b in lego.BRICKS]))


def test_taichi_sdf_kernel_on_every_arch(arch: str) -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.rand(2000, 3, generator=g) * 2.4 - 1.2
    d, brick = lego_sdf_taichi(p, return_brick=True)
    d_ref, _ = lego.lego_sdf_and_brick(p)
    assert torch.allclose(d, d_ref, atol=1e-5)
    colors = torch.tensor([b.color for b in lego.BRICKS])
    inside = d_ref < -1e-3  # away from ties between bricks, the nearest brick agrees
    assert torch.allclose(colors[brick.long()][inside], lego.lego_albedo(p)[inside])


def test_sdf_is_a_distance_bound() -> None:
    """|grad sdf| ~ 1 outside the model, and the Taichi kernel matches the torch reference."""
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4000, 3, generator=g) * 2.4 - 1.2
    d_ref = lego.lego_sdf(p)
    assert torch.allclose(lego_sdf_taichi(p), d_ref, atol=1e-5)
    q = p.clone().requires_grad_(True)
    lego.lego_sdf(q).sum().backward()
    outside = d_ref > 0.02
    norms = q.grad[outside].norm(dim=-1)
    assert (norms - 1).abs().max() < 1e-3


def test_camera_rig_is_deterministic_upper_hemisphere() -> None:
    a, b = lego.camera_rig("train", 50), lego.camera_rig("train", 50)
    assert torch.equal(a, b)
    assert not torch.equal(a, lego.camera_rig("val", 50))
    eye = a[:, :3, 3]
    assert torch.allclose(eye.norm(dim=-1), torch.full((50,), 4.0, dtype=eye.dtype))
    assert (eye[:, 2] > 0).all()
    # camera -z axis points at the origin, rotation is orthonormal
    fwd = -a[:, :3, 2]
    assert torch.allclose(fwd, -eye / 4.0, atol=1e-6)
    R = a[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=R.dtype).expand(50, 3, 3), atol=1e-6)
    assert lego.camera_rig("test", 200).shape == (200, 4, 4)


def _tiny_scene(tmp_path, **extra):  # type: ignore[no-untyped-def]
    spec = {"generator": "lego", "resolution": 16, "supersample": 1,
            "splits": {"train": 3, "val": 1, "test": 2}, **extra}
    (tmp_path / "scene.json").write_text(json.dumps(spec))
    return tmp_path


def test_prepare_scene_renders_blender_format_once(tmp_path) -> None:
    import imageio.v3 as iio

    folder = _tiny_scene(tmp_path)
    calls = []
    prepare_scene(folder, progress=lambda done, total, msg: calls.append((done, total)))
    assert calls[-1] == (6, 6)
    meta = json.loads((folder / "transforms_train.json").read_text())
    assert meta["camera_angle_x"] == pytest.approx(0.6911112070083618)
    assert len(meta["frames"]) == 3
    img = iio.imread(folder / "train" / "r_0.png")
    assert img.shape == (16, 16, 4) and img.dtype == np.uint8
    coverage = (img[..., 3] > 127).mean()
    assert 0.1 < coverage < 0.8  # the model fills part of the frame; corners are transparent
    assert img[0, 0, 3] == 0 and img[8, 8, 3] == 255
    stamp = (folder / "transforms_test.json").stat().st_mtime_ns
    calls.clear()
    prepare_scene(folder, progress=lambda *a: calls.append(a))
    assert calls == [] and (folder / "transforms_test.json").stat().st_mtime_ns == stamp
    # a new resolution re-renders
    prepare_scene(folder, splits=["test"], resolution=8)
    assert iio.imread(folder / "test" / "r_1.png").shape == (8, 8, 4)
    assert read_scene_spec(folder)["resolution"] == 8


def test_scene_spec_errors(tmp_path) -> None:
    assert not is_procedural(tmp_path)
    assert prepare_scene(tmp_path) == tmp_path  # real datasets untouched
    (tmp_path / "scene.json").write_text("{not json")
    with pytest.raises(InputError, match="scene.json"):
        read_scene_spec(tmp_path)
    (tmp_path / "scene.json").write_text(json.dumps({"generator": "teapot"}))
    with pytest.raises(InputError, match="unknown scene generator"):
        read_scene_spec(tmp_path)
    (tmp_path / "scene.json").write_text(json.dumps({"resolution": 0}))
    with pytest.raises(InputError, match="resolution"):
        read_scene_spec(tmp_path)


def test_interrupted_render_resumes_with_same_settings(tmp_path) -> None:
    folder = _tiny_scene(tmp_path)
    prepare_scene(folder, splits=["val"])
    (folder / "transforms_val.json").unlink()  # as if interrupted before the transforms file
    stamp = json.loads(json.dumps(__import__("taichifield.scenes.prepare", fromlist=["_stamp"])._stamp(read_scene_spec(folder), "val")))
    (folder / "val" / ".rendering.json").write_text(json.dumps(stamp))
    before = (folder / "val" / "r_0.png").stat().st_mtime_ns
    prepare_scene(folder, splits=["val"])
    assert (folder / "val" / "r_0.png").stat().st_mtime_ns == before
    assert (folder / "transforms_val.json").is_file() and not (folder / "val" / ".rendering.json").exists()


def test_gt_mesh_is_cached_and_bounded(tmp_path) -> None:
    from taichifield.scenes.prepare import lego_gt_mesh

    folder = _tiny_scene(tmp_path)
    v, f = lego_gt_mesh(folder, resolution=48)
    assert (folder / "cache" / "gt_mesh_48.ply").is_file()
    assert v.shape[1] == 3 and f.shape[1] == 3 and len(f) > 500
    lo, hi = torch.tensor(lego.SCENE_BOUNDS[0]), torch.tensor(lego.SCENE_BOUNDS[1])
    assert (v >= lo - 0.02).all() and (v <= hi + 0.02).all()
    assert (lego.lego_sdf(v).abs() < 0.05).all()  # vertices lie on the surface (to grid accuracy)
    v2, f2 = lego_gt_mesh(folder, resolution=48)  # from the cache
    assert v2.shape == v.shape and torch.equal(f2, f)
