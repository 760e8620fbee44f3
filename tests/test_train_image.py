"""Image fitting: the encoding comparison on a generated photo-like image, run folder contents, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from taichifield.errors import InputError
from taichifield.fields.image import ImageFieldConfig
from taichifield.train.checkpoint import load_checkpoint
from taichifield.train.image import ImageTrainConfig, load_image, pixel_coords, train_image

SIZE = 64


def _photo(path: Path, size: int = SIZE) -> Path:
    """A photo-like RGB image: smooth gradients, a sharp-edged disc, a checker texture and fine stripes."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(20 * x) * np.cos(14 * y)], -1)
    img[(x - 0.55) ** 2 + (y - 0.45) ** 2 < 0.06] *= 0.3
    checker = ((np.arange(size)[:, None] // 4 + np.arange(size)[None, :] // 4) % 2).astype(float)
    img[..., 1] += 0.3 * checker * (x < 0.5)
    img[..., 0] += 0.25 * np.sin(2 * np.pi * 12 * (x + y)) * (y > 0.6)
    iio.imwrite(path, (np.clip(img, 0, 1) * 255).astype(np.uint8))
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _photo(tmp_path_factory.mktemp("img") / "photo.png")


@pytest.fixture
def one_thread():
    """Tiny MLPs on 4k pixels: torch's intra-op threads cost more than they give on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fit(photo: Path, out: Path, encoding: str, steps: int) -> float:
    cfg = ImageTrainConfig(photo=str(photo), out=str(out), steps=steps, seed=0,
                           field=ImageFieldConfig(encoding=encoding, fourier_features=128, log2_table_size=12))
    return train_image(cfg).psnr


def test_hashgrid_and_fourier_beat_raw_coordinates(photo, tmp_path, one_thread):
    steps = 100
    psnr = {e: _fit(photo, tmp_path / e, e, steps) for e in ("none", "fourier", "hashgrid", "frequency")}
    # measured (64x64, 100 steps): none 14.4 dB, frequency 17.9, fourier 31.0, hashgrid 38.3
    assert psnr["hashgrid"] >= psnr["none"] + 8.0, psnr
    assert psnr["fourier"] >= psnr["none"] + 8.0, psnr
    assert psnr["frequency"] >= psnr["none"] + 1.5, psnr


def test_run_folder_contents(photo, tmp_path, one_thread):
    out = tmp_path / "run"
    cfg = ImageTrainConfig(photo=str(photo), out=str(out), steps=5, batch_size=1000,  # random-batch path
                           field=ImageFieldConfig(encoding="hashgrid"))
    result = train_image(cfg)
    recon = iio.imread(out / "reconstruction.png")
    assert recon.shape == (SIZE, SIZE, 3) and recon.dtype == np.uint8
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["encoding"] == "hashgrid" and metrics["steps"] == 5
    assert metrics["psnr"] == pytest.approx(result.psnr)
    ckpt = load_checkpoint(out / "ckpt.pt", "image")
    assert ckpt["step"] == 5 and ckpt["config"]["field"]["max_resolution"] == SIZE
    assert "encoding.table" in ckpt["state"]
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_pixel_coords_are_pixel_centres():
    c = pixel_coords(2, 4)
    assert c.shape == (8, 2)
    torch.testing.assert_close(c[0], torch.tensor([0.125, 0.25]))
    torch.testing.assert_close(c[-1], torch.tensor([0.875, 0.75]))


def test_load_image_variants_and_errors(tmp_path):
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[0, 0, 3] = 255  # one opaque red pixel, the rest transparent -> white
    iio.imwrite(tmp_path / "a.png", rgba)
    img = load_image(tmp_path / "a.png")
    assert img.shape == (3, 4, 3)
    torch.testing.assert_close(img[0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(img[1, 1], torch.ones(3))
    iio.imwrite(tmp_path / "g.png", np.full((5, 6), 128, np.uint8))
    assert load_image(tmp_path / "g.png").shape == (5, 6, 3)
    with pytest.raises(InputError, match="missing.png: no such image file"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(InputError, match="bad.png: not a readable image"):
        load_image(tmp_path / "bad.png")


def test_cli_train_image(photo, tmp_path, one_thread):
    from typer.testing import CliRunner

    from taichifield.cli.main import app

    runner = CliRunner()
    out = tmp_path / "cli_run"
    res = runner.invoke(app, ["train", "image", str(photo), "--encoding", "fourier", "--steps", "3",
                              "--out", str(out), "--arch", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "PSNR" in res.output and (out / "reconstruction.png").exists() and (out / "ckpt.pt").exists()
    bad = runner.invoke(app, ["train", "image", str(photo), "--encoding", "siren", "--out", str(out)])
    assert bad.exit_code == 2 and "siren" in bad.output
    missing = runner.invoke(app, ["train", "image", str(tmp_path / "nope.png"), "--out", str(tmp_path / "fresh"), "--arch", "cpu"])
    assert missing.exit_code == 2 and "nope.png: no such image file" in missing.output
