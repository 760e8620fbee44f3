"""Per-photo appearance (taichifield.train.appearance): centred affine colour transforms."""

from __future__ import annotations

import json

import torch

from taichifield.train.appearance import ImageAppearance
from tiny_scenes import lego_scene


def test_zero_codes_are_the_identity_and_codes_are_centred() -> None:
    app = ImageAppearance(4)
    rgb = torch.rand(10, 3, generator=torch.Generator().manual_seed(0))
    view = torch.arange(10) % 4
    assert torch.equal(app.apply(view, rgb), rgb)
    with torch.no_grad():
        app.raw.copy_(torch.randn(4, 12, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(app.codes().sum(0), torch.zeros(12), atol=1e-6)
    # a uniform shift of every photo is no change at all: the field keeps the average photo
    with torch.no_grad():
        app.raw.copy_(torch.ones(4, 12))
    assert torch.allclose(app.apply(view, rgb), rgb, atol=1e-6)


def test_learns_exposure_differences_between_photos() -> None:
    # photo 0 was shot darker (x0.8) and less blue (-0.025), photo 1 brighter (x1.2) and bluer (+0.025)
    g = torch.Generator().manual_seed(2)
    rgb = torch.rand(512, 3, generator=g) * 0.8
    view = torch.randint(0, 2, (512,), generator=g)
    seen = torch.where(view[:, None] == 0, 0.8 * rgb, 1.2 * rgb)
    seen[:, 2] += torch.where(view == 1, 0.025, -0.025)
    app = ImageAppearance(2)
    opt = torch.optim.Adam(app.parameters(), lr=0.1)  # code steps of 1e-3
    for _ in range(600):
        opt.zero_grad()
        ((app.apply(view, rgb) - seen) ** 2).mean().backward()
        opt.step()
    c = app.codes().detach()
    M = c[:, :9].reshape(2, 3, 3)
    # gains -0.2 / +0.2 about the average photo (x1.0), offsets -0.025 / +0.025 in blue
    assert torch.allclose(M[0].diagonal(), torch.full((3,), -0.2), atol=0.02)
    assert torch.allclose(M[1].diagonal(), torch.full((3,), 0.2), atol=0.02)
    assert abs(float(c[1, 11]) - 0.025) < 0.01 and abs(float(c[0, 11]) + 0.025) < 0.01
    assert app.summary()["max_gain"] > 0.15


def test_a_run_stores_and_resumes_the_codes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from taichifield.fields.nerf import NerfConfig
    from taichifield.train.checkpoint import load_checkpoint
    from taichifield.train.nerf import NerfTrainConfig, run_train_nerf

    scene = lego_scene(tmp_path / "lego", 16, train=5, test=1, render=["train", "test"])
    config = NerfTrainConfig(scene=str(scene), out=str(tmp_path / "run"), steps=6, grid_start=100, eval_views=1,
                             progress_images=False, model=NerfConfig(n_levels=4, log2_table_size=10, max_resolution=64),
                             target_samples=1 << 12, grid_resolution=16, render_steps=64, appearance=True)
    result = run_train_nerf(config)
    assert result.test_psnr is not None and result.test_psnr == result.test_psnr
    raw = load_checkpoint(tmp_path / "run" / "ckpt.pt", kind="nerf")["meta"]["trainer"]["appearance"]
    assert raw.shape == (5, 12) and bool((raw != 0).any())
    assert "max_gain" in json.loads((tmp_path / "run" / "metrics.json").read_text())["appearance"]
    run_train_nerf(NerfTrainConfig(scene=str(scene), steps=7, eval_views=0, progress_images=False),
                   resume=str(tmp_path / "run"))
    again = load_checkpoint(tmp_path / "run" / "ckpt.pt", kind="nerf")["meta"]["trainer"]["appearance"]
    assert float((again - raw).abs().max()) < float(raw.abs().max())
