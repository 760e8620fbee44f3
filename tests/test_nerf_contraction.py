"""Unbounded NeRF scenes: the contracted field coordinates, the automatic choice for captures with
background, and a tiny training run on an instant-ngp scene with aabb_scale 4 whose checkpoint
comes back with a contracted grid, a foreground box and far rays."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from taichifield.fields.nerf import NerfConfig, NerfField
from taichifield.render.contraction import CONTRACTED_FAR, foreground_box, has_background
from tiny_scenes import lego_scene

AABB = torch.tensor([[-1.0, -2.0, 0.0], [1.0, 2.0, 1.0]])


def test_contracted_field_coordinates() -> None:
    small = dict(n_levels=2, log2_table_size=8, max_resolution=16, implementation="torch")
    bounded = NerfField(NerfConfig(**small), AABB)
    unbounded = NerfField(NerfConfig(contraction=True, **small), AABB)
    g = torch.Generator().manual_seed(0)
    inside = AABB[0] + torch.rand(256, 3, generator=g) * (AABB[1] - AABB[0])
    assert torch.allclose(unbounded.normalize(inside), 0.25 + 0.5 * bounded.normalize(inside), atol=1e-6)
    far = torch.randn(256, 3, generator=g) * 1e4
    u = unbounded.normalize(far)
    assert bool(((u >= 0) & (u <= 1)).all()) and bool(((u - 0.5).abs().amax(-1) > 0.25).all())
    assert bool((bounded.density(far) == 0).all())  # the bounded field is empty outside its box
    assert bool((unbounded.density(far) > 0).all())  # the unbounded one is not


def test_automatic_choice_and_foreground_box() -> None:
    assert has_background({"format": "ngp", "aabb_scale": 16}) and has_background({"format": "colmap", "aabb_scale": 1})
    # photos in the unit box still show what lies beyond it; masked ones and Blender scenes do not
    assert has_background({"format": "ngp", "aabb_scale": 1}, has_alpha=False)
    assert not has_background({"format": "ngp", "aabb_scale": 1}, has_alpha=True)
    assert has_background({"format": "ngp", "aabb_scale": 4}, has_alpha=True)
    assert not has_background({"format": "blender"}) and not has_background({"format": "blender"}, has_alpha=True)
    box = foreground_box(torch.tensor([[-8.0, -8.0, -8.0], [8.0, 8.0, 24.0]]), 4.0)
    assert torch.equal(box, torch.tensor([[-2.0, -2.0, 4.0], [2.0, 2.0, 12.0]]))
    with pytest.raises(Exception, match="contraction"):
        NerfConfig(contraction="yes")  # type: ignore[arg-type]


def _ngp_scene(root: Path) -> Path:
    """The tiny procedural scene rewritten as one instant-ngp transforms.json with aabb_scale 4."""
    blender = Path(lego_scene(root / "lego", 16, train=7, test=1, render=["train", "test"]))
    scene = root / "ngp"
    frames = []
    for split in ("test", "train"):  # frame 0 is instant-ngp's held-out test view
        data = json.loads((blender / f"transforms_{split}.json").read_text())
        for f in data["frames"]:
            src = blender / (f["file_path"].lstrip("./") + ".png")
            dst = scene / "images" / f"{split}_{src.name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
            frames.append({"file_path": f"images/{dst.name}", "transform_matrix": f["transform_matrix"]})
    (scene / "transforms.json").write_text(json.dumps({
        "camera_angle_x": data["camera_angle_x"], "aabb_scale": 4, "scale": 0.25, "offset": [0.5, 0.5, 0.5],
        "frames": frames}))
    return scene


def test_tiny_training_on_a_capture_with_background(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from taichifield.data import load_scene
    from taichifield.pipelines.nerf import NerfModel
    from taichifield.train.nerf import NerfTrainConfig, run_train_nerf

    scene = _ngp_scene(tmp_path)
    views = load_scene(str(scene), "train", 1)
    assert views.meta["aabb_scale"] == 4 and has_background(views.meta)
    run = tmp_path / "run"
    result = run_train_nerf(NerfTrainConfig(
        scene=str(scene), out=str(run), steps=20, grid_start=4, eval_views=1, progress_images=False,
        model=NerfConfig(n_levels=4, log2_table_size=10, max_resolution=64), target_samples=1 << 12,
        grid_resolution=16, render_steps=64))
    assert result.step == 20 and result.train_psnr == result.train_psnr and result.train_psnr > 0
    assert result.test_psnr is not None and result.test_psnr == result.test_psnr
    model = NerfModel.load(run / "ckpt.pt", torch.device("cpu"))
    assert model.field.config.contraction is True and model.grid.contraction
    from taichifield.train.checkpoint import load_checkpoint
    from taichifield.train.configs import DISTORTION_WEIGHT

    # the automatic distortion loss is on for a contracted scene (and stored as resolved)
    assert DISTORTION_WEIGHT > 0 and load_checkpoint(run / "ckpt.pt")["config"]["train"]["distortion_weight"] == DISTORTION_WEIGHT
    expected = foreground_box(views.aabb, 4.0)
    assert torch.allclose(model.field.aabb, expected)
    assert float(model.meta["far"]) >= CONTRACTED_FAR * float((expected[1] - expected[0]).max())
    # rays from a training camera reach past the loader's box (the background) in the contracted grid
    o = views.c2w[:1, :3, 3].expand(4, 3).contiguous()
    d = torch.nn.functional.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    model.grid.bits.fill_(-1)
    t0, t1, _ = model.grid.sample(o, d, near=0.0, far=float(model.meta["far"]))
    assert float(t1.max()) > float(views.far)


def test_a_capture_with_a_camera_per_frame_trains_and_evaluates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Per-frame intrinsics (a COLMAP model with a camera per image) run through training, the
    progress render and the held-out evaluation with each view's own camera."""
    from taichifield.data import load_scene
    from taichifield.train.nerf import NerfTrainConfig, NerfTrainer

    scene = _ngp_scene(tmp_path)
    doc = json.loads((scene / "transforms.json").read_text())
    f = 0.5 * 16 / math.tan(0.5 * doc.pop("camera_angle_x"))
    for i, fr in enumerate(doc["frames"]):  # the same pinhole, written per frame, one principal point nudged
        fr.update(fl_x=f, fl_y=f, cx=8.0 + (1e-3 if i == 2 else 0.0), cy=8.0)
    (scene / "transforms.json").write_text(json.dumps(doc))
    trainer = NerfTrainer(NerfTrainConfig(
        scene=str(scene), out=str(tmp_path / "run"), steps=10, grid_start=4, eval_views=1, progress_images=True,
        model=NerfConfig(n_levels=4, log2_table_size=10, max_resolution=64), target_samples=1 << 12,
        grid_resolution=16, render_steps=64))
    assert trainer.views.cameras is not None and trainer.views.cameras.device == trainer.views.c2w.device
    result = trainer.run()
    assert result.step == 10 and result.test_psnr is not None and 5.0 < result.test_psnr < 60.0
    assert load_scene(str(scene), "all").camera(2)[2] == pytest.approx(8.001)


def test_distortion_loss_joins_the_training_loss(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from taichifield.train.nerf import NerfTrainConfig, NerfTrainer

    scene = _ngp_scene(tmp_path)

    def trainer(weight: float, out: str) -> NerfTrainer:
        return NerfTrainer(NerfTrainConfig(
            scene=str(scene), out=str(tmp_path / out), steps=3, grid_start=100, eval_views=0, progress_images=False,
            model=NerfConfig(n_levels=4, log2_table_size=10, max_resolution=64), target_samples=1 << 12,
            grid_resolution=16, render_steps=64, distortion_weight=weight))

    plain, with_dist = trainer(0.0, "plain"), trainer(1.0, "dist")
    assert all(torch.equal(a, b) for a, b in zip(plain.model.parameters(), with_dist.model.parameters()))
    torch.manual_seed(5)
    a = plain.step(0)
    torch.manual_seed(5)
    b = with_dist.step(0)
    # same rays, same photometric error: the difference is the (positive) distortion term
    assert float(b["loss"]) > float(a["loss"]) and float(b["psnr"]) == float(a["psnr"])
    moved = [not torch.equal(p, q) for p, q in zip(plain.model.field.parameters(), with_dist.model.field.parameters())]
    assert any(moved)
