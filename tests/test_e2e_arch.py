"""The README's commands end to end on every training arch (cpu, and cuda where a GPU is).

train nerf (+ resume) -> eval nerf -> render nerf (mesh nerf: test_cli_nerf.py, which trains until there is a surface); train sdf (+ resume) -> mesh sdf
-> render sdf; train image. (That a resumed run ends with the weights of an uninterrupted one is
tested, per arch, in test_train_nerf.py and test_train_sdf.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from taichifield.cli.main import app
from tiny_scenes import lego_scene

runner = CliRunner()


def _ok(args: list[str]) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    return lego_scene(tmp_path_factory.mktemp("lego_e2e"), 16, train=8, test=2, render=("train", "test"))


def _steps(ckpt: Path) -> int:
    from taichifield.train.checkpoint import load_checkpoint

    return int(load_checkpoint(ckpt)["step"])


def test_nerf_commands(train_arch: str, scene: str, tmp_path: Path) -> None:
    common = ["--arch", train_arch, "--quiet", "--log2-table-size", 12]
    _ok(["train", "nerf", scene, "--out", tmp_path / "full", "--steps", 3, *common])
    _ok(["train", "nerf", "--resume", tmp_path / "full", "--steps", 6, "--arch", train_arch, "--quiet"])
    assert _steps(tmp_path / "full" / "ckpt.pt") == 6
    ev = json.loads(_ok(["eval", "nerf", tmp_path / "full", scene, "--split", "test", "--limit", 2, "--json",
                         "--arch", train_arch]))
    assert ev["n_views"] == 2 and np.isfinite(ev["psnr"])
    _ok(["render", "nerf", tmp_path / "full", "--scene", scene, "--split", "test", "--limit", 1,
         "--out", tmp_path / "renders", "--arch", train_arch, "--quiet"])
    assert len(list((tmp_path / "renders").glob("*.png"))) == 1


def test_sdf_commands(train_arch: str, tmp_path: Path) -> None:
    d = np.random.default_rng(0).normal(size=(800, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    cloud = tmp_path / "ball.xyz"
    np.savetxt(cloud, np.concatenate([0.5 * d, d], axis=1))
    common = ["--batch-size", 128, "--arch", train_arch, "--quiet", "--no-preview"]
    _ok(["train", "sdf", cloud, "--out", tmp_path / "full", "--steps", 20, *common])
    _ok(["train", "sdf", cloud, "--out", tmp_path / "full", "--steps", 60, "--resume", *common])
    assert _steps(tmp_path / "full" / "ckpt.pt") == 60
    _ok(["mesh", "sdf", tmp_path / "full", "--res", 32, "--out", tmp_path / "ball.ply", "--arch", train_arch, "-q"])
    from taichifield.geometry.mesh_io import load_mesh

    v, f = load_mesh(tmp_path / "ball.ply")
    assert len(f) > 100 and np.abs(np.linalg.norm(v, axis=1) - 0.5).mean() < 0.1
    _ok(["render", "sdf", tmp_path / "full", "--out", tmp_path / "ball.png", "--width", 24, "--height", 16,
         "--arch", train_arch])
    assert (tmp_path / "ball.png").stat().st_size > 0


def test_image_command(train_arch: str, tmp_path: Path) -> None:
    import imageio.v3 as iio

    y, x = np.mgrid[0:24, 0:24]
    iio.imwrite(tmp_path / "photo.png", np.stack([x * 10, y * 10, (x + y) * 5], -1).astype(np.uint8))
    out = _ok(["train", "image", tmp_path / "photo.png", "--steps", 20, "--out", tmp_path / "run",
               "--arch", train_arch, "--quiet"])
    assert "PSNR" in out and (tmp_path / "run" / "reconstruction.png").exists()
