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


def _near_surface_points(n: int, seed: int) -> torch.Tensor:
    """Random points in and around the scene box, half of them pulled to within ~0.02 of the surface."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(lego.SCENE_BOUNDS[0]), torch.tensor(lego.SCENE_BOUNDS[1])
    p = lo - 0.2 + torch.rand(n, 3, generator=g) * (hi - lo + 0.4)
    q = p[: n // 2]
    for _ in range(3):  # a few projection steps onto the surface
        q = q - lego.lego_sdf(q)[:, None] * lego.lego_normals(q)
    p[: n // 2] = q + (torch.rand(n // 2, 3, generator=g) - 0.5) * 0.04
    return p


def test_culled_sdf_equals_brute_force_exactly() -> None:
    from taichifield.scenes.lego_kernel import mean_candidates

    p = _near_surface_points(20000, seed=5)
    d, k = lego_sdf_taichi(p, return_brick=True)
    d_all, k_all = lego_sdf_taichi(p, return_brick=True, cull=False)
    assert torch.equal(d, d_all) and torch.equal(k, k_all)  # same bricks visited in order: bit-identical
    assert torch.allclose(d, lego.lego_sdf(p), atol=2e-6)
    assert mean_candidates() < 4.0  # the grid really culls (9 bricks without it)


def _old_tracer_rgba(o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The previous first-use renderer: generic compacting sphere tracer on the brute-force SDF."""
    from taichifield.render.sphere_trace import sphere_trace, sphere_trace_normals

    brute = lambda p: lego_sdf_taichi(p, cull=False)  # noqa: E731
    lo = torch.tensor(lego.SCENE_BOUNDS[0]) - 0.01
    hi = torch.tensor(lego.SCENE_BOUNDS[1]) + 0.01
    inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t0, t1 = (lo - o) * inv, (hi - o) * inv
    t_in = torch.minimum(t0, t1).max(dim=-1).values.clamp(min=0)
    t_out = torch.maximum(t0, t1).min(dim=-1).values
    rgba = torch.zeros(o.shape[0], 4)
    through = (t_out > t_in).nonzero().squeeze(1)
    oo = o[through] + t_in[through, None] * d[through]
    length = t_out[through] - t_in[through]
    t, hit = sphere_trace(brute, oo, d[through], 0.0, float(length.max()) + 1e-3, max_steps=160, eps=2e-4)
    hit = hit & (t <= length + 1e-3)
    pts = oo[hit] + t[hit, None] * d[through][hit]
    normals = sphere_trace_normals(brute, pts, eps=5e-4)
    _, brick = lego_sdf_taichi(pts, return_brick=True, cull=False)
    colors = torch.tensor([b.color for b in lego.BRICKS])[brick.long()]
    idx = through[hit]
    rgba[idx, :3] = lego.shade(colors, normals, d[through][hit])
    rgba[idx, 3] = 1.0
    return rgba


def _view_rays(res: int, index: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    from taichifield import cameras

    c2w = lego.camera_rig("test", 20)[index].float()
    f = cameras.focal_from_fov(0.6911112070083618, res)
    return cameras.image_rays(c2w, res, res, f, f, 0.5 * res, 0.5 * res)


def test_fused_tracer_hits_the_analytic_surface_and_matches_the_old_tracer() -> None:
    from taichifield.scenes.lego_trace import trace_lego

    o, d = _view_rays(48)
    res = trace_lego(o, d)
    hit = res["hit"]
    assert 0.1 < hit.float().mean() < 0.9
    pts = o[hit] + res["t"][hit, None] * d[hit]
    assert lego.lego_sdf(pts).abs().max() < 2e-4 + 1e-5  # the hit criterion |u| < eps (+ float32 rounding of o + t d)
    # normals and colour: the in-kernel shading is lego.shade of the brick albedo
    assert torch.allclose(res["normal"][hit], lego.lego_normals(pts, eps=5e-4), atol=2e-3)
    colors = torch.tensor([b.color for b in lego.BRICKS])[res["brick"][hit]]
    assert torch.allclose(res["rgba"][hit, :3], lego.shade(colors, res["normal"][hit], d[hit]), atol=1e-5)
    assert torch.all(res["rgba"][~hit] == 0) and torch.all(res["rgba"][hit, 3] == 1)
    # over-relaxation and culling change the steps, not the picture
    plain = trace_lego(o, d, omega=1.0, cull=False)
    assert (plain["hit"] != hit).float().mean() < 0.002
    both = plain["hit"] & hit
    assert (plain["t"][both] - res["t"][both]).abs().max() < 2e-3
    old = _old_tracer_rgba(o, d)
    diff = (old - res["rgba"]).abs().amax(dim=-1)
    assert (diff > 2 / 255).float().mean() < 0.002 and diff.mean() < 1e-3


def test_fused_tracer_on_every_arch(arch: str) -> None:
    """Rays on the runtime's device: the kernel runs there, results stay there, hits are on the surface."""
    from taichifield import runtime
    from taichifield.scenes.lego_trace import trace_lego

    o, d = _view_rays(16)
    o, d = o.to(runtime.device()), d.to(runtime.device())
    res = trace_lego(o, d)
    assert all(v.device == o.device for v in res.values())
    assert res["t"].shape == (256,) and res["normal"].shape == (256, 3) and res["rgba"].shape == (256, 4)
    hit = res["hit"].cpu()
    assert 0.1 < hit.float().mean() < 0.9
    pts = (o.cpu() + res["t"].cpu()[:, None] * d.cpu())[hit]
    assert lego.lego_sdf(pts).abs().max() < 2e-4 + 1e-5
    empty = trace_lego(torch.zeros(0, 3, device=o.device), torch.zeros(0, 3, device=o.device))
    assert empty["hit"].shape == (0,)


def test_render_view_matches_the_old_renderer() -> None:
    from taichifield.scenes.prepare import render_lego_view

    res = 40
    img = render_lego_view(lego.camera_rig("test", 20)[7], res, 0.6911112070083618, supersample=1)
    o, d = _view_rays(res)
    old = _old_tracer_rgba(o, d).reshape(res, res, 4)
    a = old[..., 3:4]
    old = torch.cat([torch.where(a > 0, old[..., :3] / a.clamp(min=1e-8), torch.zeros_like(old[..., :3])), a], -1)
    assert img.shape == (res, res, 4) and img.device.type == "cpu"
    diff = (img - old).abs().amax(dim=-1)
    assert (diff > 2 / 255).float().mean() < 0.003


def test_test_views_are_rendered_only_when_asked_for(tmp_path) -> None:
    from taichifield.data import load_scene

    folder = _tiny_scene(tmp_path)
    calls = []
    prepare_scene(folder, splits=["train", "test"], limits={"test": 1},
                  progress=lambda done, total, msg: calls.append((done, total)))
    assert calls[-1] == (4, 4)  # 3 train views + 1 test view
    meta = json.loads((folder / "transforms_test.json").read_text())
    assert [f["file_path"] for f in meta["frames"]] == ["./test/r_0"]
    assert not (folder / "test" / "r_1.png").exists() and not (folder / "transforms_val.json").exists()
    assert len(load_scene(folder, "test")) == 1  # a normal Blender folder with the views rendered so far
    first = (folder / "test" / "r_0.png").stat().st_mtime_ns
    calls.clear()
    prepare_scene(folder, splits=["test"], limits={"test": 1}, progress=lambda *a: calls.append(a))
    assert calls == []
    prepare_scene(folder, splits=["test"], progress=lambda done, total, msg: calls.append((done, total)))
    assert calls == [(1, 1)]  # only the missing view
    assert (folder / "test" / "r_0.png").stat().st_mtime_ns == first
    test = load_scene(folder, "test")
    assert len(test) == 2
    # the lazily added view is the one the full rig would give
    assert torch.allclose(test.c2w[1], lego.camera_rig("test", 2)[1].float(), atol=1e-6)


def test_prepare_scene_under_an_indexed_runtime_device(tmp_path, monkeypatch) -> None:
    """The renderer follows its own tensors: a runtime device spelled with an index changes nothing."""
    from taichifield import runtime

    monkeypatch.setattr(runtime, "device", lambda: torch.device("cpu", 0))
    folder = _tiny_scene(tmp_path)
    prepare_scene(folder, splits=["test"], limits={"test": 1})
    assert (folder / "test" / "r_0.png").is_file()
