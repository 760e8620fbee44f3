"""``taichifield train|eval|render|mesh nerf`` through Typer's CliRunner on a tiny procedural scene."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from taichifield.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("cli_nerf")
    scene = root / "scene"
    scene.mkdir()
    (scene / "scene.json").write_text(json.dumps(
        {"generator": "lego", "resolution": 16, "supersample": 1, "splits": {"train": 6, "val": 1, "test": 3}}))
    run = root / "run"
    res = runner.invoke(app, ["train", "nerf", str(scene), "--out", str(run), "--steps", "6", "--arch", "cpu",
                              "--log2-table-size", "12", "--target-samples", "4096", "--quiet"])
    assert res.exit_code == 0, res.output
    return scene, run, res.output


def test_train_writes_checkpoint_and_summary(trained) -> None:  # type: ignore[no-untyped-def]
    scene, run, output = trained
    assert "6 steps" in output and "ckpt.pt" in output
    assert (run / "ckpt.pt").is_file() and (scene / "transforms_train.json").is_file()
    assert json.loads((run / "metrics.json").read_text())["steps"] == 6
    assert (run / "curves.png").stat().st_size > 1000 and (run / "history.json").is_file()


def test_eval_json(trained) -> None:  # type: ignore[no-untyped-def]
    scene, run, _ = trained
    res = runner.invoke(app, ["eval", "nerf", str(run / "ckpt.pt"), str(scene), "--split", "test", "--limit", "2",
                              "--json", "--arch", "cpu"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["n_views"] == 2 and data["psnr"] > 5 and -1 <= data["ssim"] <= 1
    assert [r["view"] for r in data["per_view"]] == ["r_0.png", "r_1.png"]


def test_eval_grid_picture(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import imageio.v3 as iio
    import numpy as np

    scene, run, _ = trained
    res = runner.invoke(app, ["eval", "nerf", str(run), str(scene), "--limit", "2", "--grid", str(tmp_path / "g.png"),
                              "--arch", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    grid = np.asarray(iio.imread(tmp_path / "g.png"))
    assert grid.shape == (2 * 16, 3 * 16, 3)  # two views; ground truth | prediction | error
    gt, pred, err = grid[:16, :16].astype(int), grid[:16, 16:32].astype(int), grid[:16, 32:]
    expected = np.clip(np.abs(pred - gt).mean(-1) * 4, 0, 255)
    assert np.abs(err[..., 0].astype(int) - expected).max() <= 6  # the error panel is |pred - gt| x4


def test_render_split_and_orbit(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import imageio.v3 as iio

    scene, run, _ = trained
    out = tmp_path / "frames"
    res = runner.invoke(app, ["render", "nerf", str(run), "--scene", str(scene), "--split", "test",
                              "--out", str(out), "--arch", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["r_0.png", "r_1.png", "r_2.png"]
    assert iio.imread(out / "r_0.png").shape == (16, 16, 3)
    res = runner.invoke(app, ["render", "nerf", str(run), "--orbit", "--frames", "3", "--resolution", "12",
                              "--out", str(tmp_path / "orbit.mp4"), "--arch", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    written = tmp_path / "orbit.mp4"
    if not written.exists():
        written = tmp_path / "orbit.gif"
        assert "GIF" in res.output
    assert written.stat().st_size > 0


def test_mesh_nerf(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("taichifield.geometry.extract")
    scene, run, _ = trained
    res = runner.invoke(app, ["mesh", "nerf", str(run), "--res", "24", "--threshold", "0.5",
                              "--out", str(tmp_path / "m.ply"), "--arch", "cpu"])
    assert res.exit_code in (0, 2), res.output
    if res.exit_code == 0:
        assert (tmp_path / "m.ply").stat().st_size > 0
    else:
        assert "no density above" in res.output


def test_errors_are_one_line(tmp_path) -> None:
    res = runner.invoke(app, ["eval", "nerf", str(tmp_path / "missing.pt"), str(tmp_path), "--arch", "cpu"])
    assert res.exit_code == 2 and "no such checkpoint" in res.output
    res = runner.invoke(app, ["train", "nerf", str(tmp_path), "--encoding", "bogus", "--arch", "cpu"])
    assert res.exit_code == 2 and "--encoding" in res.output
    res = runner.invoke(app, ["render", "nerf", str(tmp_path / "x.pt"), "--out", str(tmp_path / "o"), "--arch", "cpu"])
    assert res.exit_code == 2
