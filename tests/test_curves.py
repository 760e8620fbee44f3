"""Training curves: recorded history survives a checkpoint and becomes a real picture."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np

from taichifield.train.curves import History, write_curves


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
