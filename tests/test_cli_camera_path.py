"""``taichifield render nerf --path-from-train / --path`` through Typer's CliRunner on a tiny procedural scene."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taichifield.cli.main import app
from tiny_scenes import lego_scene

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("cli_path")
    scene = Path(lego_scene(root / "scene", 16, train=6, test=1))
    run = root / "run"
    res = runner.invoke(app, ["train", "nerf", str(scene), "--out", str(run), "--steps", "4", "--arch", "cpu",
                              "--log2-table-size", "12", "--target-samples", "4096", "--quiet"])
    assert res.exit_code == 0, res.output
    return scene, run


def test_path_from_train_then_render(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import imageio.v3 as iio

    scene, run = trained
    path = tmp_path / "path.json"
    res = runner.invoke(app, ["render", "nerf", "--path-from-train", str(scene), "--frames", "6", "--out", str(path),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    assert "6-frame loop" in res.output and "6 training cameras" in res.output
    data = json.loads(path.read_text())
    assert data["loop"] is True and data["resolution"] == [16, 16] and len(data["keyframes"]) == 12
    assert data["period"] == pytest.approx(0.2) and data["fps"] == 30
    res = runner.invoke(app, ["render", "nerf", "--path-from-train", str(scene), "--out", str(path)])
    assert res.exit_code == 2 and "--overwrite" in res.output  # the user's edits are not replaced
    # a shorter, smaller edit of it renders to a GIF with one frame per 1/fps
    data.update(resolution=[12, 10], fps=10, period=0.5)
    path.write_text(json.dumps(data))
    gif = tmp_path / "path.gif"
    res = runner.invoke(app, ["render", "nerf", str(run), "--path", str(path), "--out", str(gif), "--arch", "cpu",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    assert "5 path frames" in res.output
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == 5 and frames.shape[1:3] == (10, 12)
    mp4 = tmp_path / "video.mp4"
    res = runner.invoke(app, ["render", "nerf", str(run), "--path", str(path), "--out", str(mp4), "--arch", "cpu",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    written = mp4 if mp4.exists() else tmp_path / "video.gif"  # GIF without imageio-ffmpeg
    assert written.stat().st_size > 0 and written.name in res.output


def test_bad_path_files_are_one_line_errors(trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, run = trained
    bad = tmp_path / "bad.json"
    cases = [
        ({"keyframes": [{"time": 0, "position": [4, 0, 1], "look_at": [0, 0, 0], "fov": 40}]}, "at least 2 keyframes"),
        ({"keyframes": [{"time": 1, "position": [4, 0, 1], "look_at": [0, 0, 0], "fov": 40},
                        {"time": 1, "position": [0, 4, 1], "look_at": [0, 0, 0], "fov": 40}]}, "increase strictly"),
        ({"keyframes": [{"time": 0, "position": [4, 0, 1], "fov": 40},
                        {"time": 1, "position": [0, 4, 1], "look_at": [0, 0, 0], "fov": 40}]}, "missing key 'look_at'"),
        ({"keyframes": [{"time": 0, "position": [4, 0, 1], "look_at": [0, 0, 0], "fov": 400},
                        {"time": 1, "position": [0, 4, 1], "look_at": [0, 0, 0], "fov": 40}]}, "'fov' is 400"),
    ]
    for data, message in cases:
        bad.write_text(json.dumps(data))
        res = runner.invoke(app, ["render", "nerf", str(run), "--path", str(bad), "--out", str(tmp_path / "v.gif"),
                                  "--arch", "cpu"])
        assert res.exit_code == 2, res.output
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: ") and message in lines[0], res.output
    assert not (tmp_path / "v.gif").exists()
    for args, message in [
        (["--path", str(tmp_path / "none.json"), "--out", str(tmp_path / "v.gif")], "file not found"),
        (["--path", str(bad), "--out", str(tmp_path / "v.avi")], "must end in .mp4 or .gif"),
        (["--path", str(bad), "--orbit", "--out", str(tmp_path / "v.gif")], "only one of"),
    ]:
        res = runner.invoke(app, ["render", "nerf", str(run), *args, "--arch", "cpu"])
        assert res.exit_code == 2 and message in res.output, res.output
    res = runner.invoke(app, ["render", "nerf", "--path", str(bad), "--out", str(tmp_path / "v.gif")])
    assert res.exit_code == 2 and "needs a CKPT" in res.output
    res = runner.invoke(app, ["render", "nerf", "--path-from-train", str(tmp_path), "--out", str(tmp_path / "p.txt")])
    assert res.exit_code == 2 and "must end in .json" in res.output
