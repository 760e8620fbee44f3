"""Training curves: recorded history survives a checkpoint and becomes a real picture."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from taichifield.train.curves import History, write_curves, write_run_curves


def test_history_roundtrip_and_picture(tmp_path):
    h = History(every=2)
    for step in range(1, 21):
        h.record(step, {"loss": 1.0 / step, "psnr": 10 + step})
    assert [r["step"] for r in h.rows] == [float(s) for s in range(2, 21, 2)]
    h2 = History(every=2)
    h2.load_state_dict(h.state_dict())
    assert h2.rows == h.rows
    out = write_curves(h2, tmp_path / "curves.png", title="test")
    img = iio.imread(out)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
    # the plotted lines make the picture far from blank
    assert (np.asarray(img)[..., :3].mean(-1) < 200).mean() > 0.01


def test_empty_history_writes_nothing(tmp_path):
    assert write_curves(History(), tmp_path / "c.png") is None
    assert not (tmp_path / "c.png").exists()


def test_run_curves_merge_on_resume(tmp_path):
    import json

    first = History(every=1)
    for step in range(1, 6):
        first.record(step, {"loss": 1.0 / step, "psnr": 10.0 + step, "rays": 99.0})
    assert write_run_curves(tmp_path, first) == tmp_path / "curves.png"
    second = History(every=1)  # a resumed run re-records from step 4 on
    for step in range(4, 9):
        second.record(step, {"loss": 0.5 / step, "psnr": 20.0 + step})
    write_run_curves(tmp_path, second)
    rows = json.loads((tmp_path / "history.json").read_text())
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert rows[3]["psnr"] == 24.0  # the resumed run's value replaced the old one
    assert all("rays" not in r for r in rows)  # only loss and psnr are kept
    assert all(b["seconds"] >= a["seconds"] for a, b in zip(rows, rows[1:]))


def test_no_history_no_files(tmp_path):
    assert write_run_curves(tmp_path / "run", History()) is None
    assert not (tmp_path / "run").exists()


def test_train_image_cli_writes_curves(tmp_path):
    from typer.testing import CliRunner

    from taichifield.cli.main import app

    rng = np.random.default_rng(0)
    iio.imwrite(tmp_path / "photo.png", (rng.random((16, 16, 3)) * 255).astype(np.uint8))
    res = CliRunner().invoke(app, ["train", "image", str(tmp_path / "photo.png"), "--steps", "20",
                                   "--out", str(tmp_path / "run"), "--quiet", "--arch", "cpu"])
    assert res.exit_code == 0, res.output
    img = iio.imread(tmp_path / "run" / "curves.png")
    assert img.shape[0] > 100


@pytest.mark.parametrize("steps", [1, 7, 19, 20, 39, 60, 123, 199, 200, 777, 5000])
def test_history_for_steps_keeps_short_runs_visible(steps):
    """The documented rule: every 10th step, or about 20 evenly spaced points for runs under 200 steps."""
    h = History.for_steps(steps)
    for s in range(1, steps + 1):
        h.record(s, {"loss": 1.0 / s})
    recorded = [int(r["step"]) for r in h.rows]
    gap = recorded[0]
    assert recorded == list(range(gap, steps + 1, gap))  # evenly spaced from the first recorded step on
    assert steps - recorded[-1] < gap  # the end of the run is on the curve
    if steps < 20:
        assert recorded == list(range(1, steps + 1))  # a very short run shows every step
    elif steps < 200:
        assert 20 <= len(recorded) < 40  # about 20 points, never a near-empty curve
    else:
        assert gap == 10  # long runs: every 10th step
