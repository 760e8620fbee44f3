"""Pose refinement (taichifield.train.pose_refine): SE(3) corrections of the training cameras."""

from __future__ import annotations

import dataclasses
import json
import math

import torch

from taichifield.data import generate_rays, load_scene
from taichifield.train.pose_refine import POSE_SCALE, PoseCorrections, correct_rays, so3_exp
from tiny_scenes import lego_scene


def test_so3_exp_by_hand_and_orthonormal() -> None:
    a = 0.3
    R = so3_exp(torch.tensor([0.0, 0.0, a], dtype=torch.float64))
    want = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]],
                        dtype=torch.float64)
    assert torch.allclose(R, want, atol=1e-12)
    w = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.5
    Rs = so3_exp(w)
    assert torch.allclose(Rs @ Rs.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(16, 3, 3), atol=1e-10)
    assert torch.allclose(torch.linalg.det(Rs), torch.ones(16, dtype=torch.float64), atol=1e-10)
    # the rotation angle is the vector's length
    cos = (Rs.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2
    assert float(w.norm(dim=-1).max()) < math.pi
    assert torch.allclose(torch.arccos(cos.clamp(-1, 1)), w.norm(dim=-1), atol=1e-6)


def _views(tmp_path):  # type: ignore[no-untyped-def]
    scene = lego_scene(tmp_path / "lego", 16, train=5, test=1, render=["train"])
    return load_scene(str(scene), "train", 1)


def test_zero_corrections_leave_rays_alone_and_apply_matches_the_corrected_poses(tmp_path) -> None:  # type: ignore[no-untyped-def]
    views = _views(tmp_path)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, len(views), (64,), generator=g)
    px, py = torch.randint(0, views.width, (64,), generator=g), torch.randint(0, views.height, (64,), generator=g)
    o, d = generate_rays(views, idx, px, py)
    poses = PoseCorrections(len(views))
    o0, d0 = poses.apply(views.c2w, idx, o, d)
    assert torch.equal(o0, o) and torch.allclose(d0, d, atol=1e-6)  # R R^T d: rounding only
    with torch.no_grad():
        poses.raw.copy_(torch.randn(len(views), 6, generator=g) * 0.05 / POSE_SCALE)  # twists ~0.05 rad and units
    o1, d1 = poses.apply(views.c2w, idx, o, d)
    # the rays the refined cameras generate themselves
    refined = dataclasses.replace(views, c2w=poses.corrected_c2w(views.c2w))
    o2, d2 = generate_rays(refined, idx, px, py)
    assert torch.allclose(o1, o2, atol=1e-5) and torch.allclose(d1, d2, atol=1e-5)
    assert not torch.allclose(d1, d, atol=1e-3)  # and they did move
    # the corrected poses are still rigid
    R = refined.c2w[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(len(views), 3, 3), atol=1e-5)
    s = poses.summary()
    xi = poses.twists().detach()
    assert math.isclose(s["max_rotation_deg"], float(xi[:, :3].norm(dim=-1).max()) * 180 / math.pi, rel_tol=1e-5)


def test_gradcheck_float64() -> None:
    g = torch.Generator().manual_seed(2)
    c2w = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    c2w[:, :3, :3] = so3_exp(torch.randn(3, 3, dtype=torch.float64, generator=g))
    c2w[:, :3, 3] = torch.randn(3, 3, dtype=torch.float64, generator=g)
    view = torch.tensor([0, 2, 2, 1])
    o = torch.randn(4, 3, dtype=torch.float64, generator=g)
    d = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64, generator=g), dim=-1)
    xi = (torch.randn(3, 6, dtype=torch.float64, generator=g) * 0.3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: correct_rays(x, c2w, view, o, d), (xi,))


def test_a_run_learns_corrections_stores_and_resumes_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from taichifield.fields.nerf import NerfConfig
    from taichifield.train.checkpoint import load_checkpoint
    from taichifield.train.nerf import NerfTrainConfig, run_train_nerf

    scene = lego_scene(tmp_path / "lego", 16, train=5, test=1, render=["train", "test"])
    config = NerfTrainConfig(scene=str(scene), out=str(tmp_path / "run"), steps=6, grid_start=100, eval_views=0,
                             progress_images=False, model=NerfConfig(n_levels=4, log2_table_size=10, max_resolution=64),
                             target_samples=1 << 12, grid_resolution=16, render_steps=64, pose_refinement=True)
    run_train_nerf(config)
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt.pt", kind="nerf")
    raw = ckpt["meta"]["trainer"]["pose_corrections"]
    assert raw.shape == (5, 6) and bool((raw != 0).any())  # the photometric loss moved the cameras
    assert float(raw.abs().max()) * POSE_SCALE < 0.05  # by small steps
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["pose_refinement"]["max_rotation_deg"] > 0
    assert ckpt["config"]["train"]["distortion_weight"] == 0.0  # automatic: off for a bounded scene
    resumed = NerfTrainConfig(scene=str(scene), steps=7, eval_views=0, progress_images=False)
    run_train_nerf(resumed, resume=str(tmp_path / "run"))
    again = load_checkpoint(tmp_path / "run" / "ckpt.pt", kind="nerf")["meta"]["trainer"]["pose_corrections"]
    # one more step continues from the stored corrections, it does not restart at zero
    assert float((again - raw).abs().max()) < float(raw.abs().max())
