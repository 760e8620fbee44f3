"""Nothing lost: SIGTERM saves and exits cleanly, SIGKILL leaves the last good checkpoint,
``--resume`` continues exactly, and non-finite losses/gradients never reach a checkpoint.

Training runs in real processes (``python -m taichifield.cli.main train ...``, or a small
driver calling the library where a test needs a hook: a signal at an exact step, a
checkpoint every step). Runs are tiny: a 16-wide SDF MLP on a few hundred points.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from taichifield.cli.main import app
from taichifield.errors import CheckpointError
from taichifield.runfolder import LOCK_NAME
from taichifield.train.checkpoint import load_checkpoint
from taichifield.train.loop import TrainingDiverged
from taichifield.train.sdf import SDFTrainConfig, train_sdf

ENV = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"} | {"OMP_NUM_THREADS": "1"}
CLI = [sys.executable, "-m", "taichifield.cli.main"]
TINY = {"hidden": 16, "layers": 2}

# A driver: train a tiny SDF; optionally Ctrl-C (SIGINT) itself after step K, checkpoint every step.
DRIVER = """
import json, os, signal, sys
from taichifield import runtime
runtime.init("cpu")
from taichifield.train.sdf import SDFTrainConfig, train_sdf
points, out, steps, term_at, every, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
cfg = SDFTrainConfig(steps=steps, batch_size=32, checkpoint_every=every, model_options={"hidden": 16, "layers": 2},
                     progress_images=False)
def on_step(step, stats):
    if step == term_at:
        os.kill(os.getpid(), signal.SIGINT)
    if step % 5 == 0:
        print("step", step, flush=True)
r = train_sdf(points, out, cfg, on_step=on_step, resume=resume)
print(json.dumps({"step": r.step, "stopped": r.stopped}), flush=True)
"""


def driver(points: Path, out: Path, steps: int, *, term_at: int = -1, every: int = 500, resume: bool = False) -> list[str]:
    return [sys.executable, "-c", DRIVER, str(points), str(out), str(steps), str(term_at), str(every), "1" if resume else "0"]


@pytest.fixture(scope="module")
def points(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = np.random.default_rng(0).normal(size=(300, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    path = tmp_path_factory.mktemp("pts") / "sphere.xyz"
    np.savetxt(path, np.hstack([0.5 * p, p]))
    return path


def tiny_config(steps: int) -> SDFTrainConfig:
    return SDFTrainConfig(steps=steps, batch_size=32, model_options=dict(TINY), progress_images=False)


def assert_finite_checkpoint(path: Path, kind: str = "sdf") -> dict[str, Any]:
    ckpt = load_checkpoint(path, kind)
    for name, t in ckpt["state"].items():
        if t.is_floating_point():
            assert bool(torch.isfinite(t).all()), f"{path}: non-finite {name}"
    return ckpt


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 240.0) -> None:
    """Poll until ``path`` exists; fail (and kill ``proc``) if ``proc`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"{path.name} never appeared (exit {proc.returncode}): {out}{err}")
        time.sleep(0.02)


# ----------------------------------------------------------------------------- SIGTERM / resume


def test_sigterm_on_cli_training_saves_and_exits_cleanly(points: Path, tmp_path: Path) -> None:
    """An external SIGTERM while `taichifield train sdf` runs: exit 0, a checkpoint, a summary."""
    run = tmp_path / "run"
    proc = subprocess.Popen([*CLI, "train", "sdf", str(points), "--out", str(run), "--steps", "1000000",
                             "--batch-size", "16", "--checkpoint-every", "1", "--no-preview", "--arch", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    # training is under way once the first checkpoint (written after step 1) exists
    wait_for(run / "ckpt.pt", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "(signal)" in out, out
    assert "Traceback" not in err
    ckpt = assert_finite_checkpoint(run / "ckpt.pt")
    assert 0 < ckpt["step"] < 1_000_000
    assert ckpt["optimizer"] is not None and ckpt["rng"] is not None
    assert f"{ckpt['step']} steps" in out


def test_resume_after_ctrl_c_equals_uninterrupted_run(points: Path, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) at step 7 of 16, then `train sdf --resume`: the same weights as 16 steps straight."""
    steps = 16
    full = tmp_path / "full"
    # in a process like the interrupted one (1 thread): this process's torch thread count depends
    # on which tests ran before, and a different sgemm split flips the Adam step of near-zero
    # gradients in the hash table
    proc = subprocess.run(driver(points, full, steps), capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr

    run = tmp_path / "interrupted"
    proc = subprocess.run(driver(points, run, steps, term_at=7), capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"step": 7, "stopped": "signal"}
    assert load_checkpoint(run / "ckpt.pt", "sdf")["step"] == 7

    proc = subprocess.run([*CLI, "train", "sdf", str(points), "--out", str(run), "--resume", "--steps", str(steps),
                           "--no-preview", "--quiet", "--arch", "cpu"], capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    a = load_checkpoint(full / "ckpt.pt", "sdf")
    b = load_checkpoint(run / "ckpt.pt", "sdf")
    assert a["step"] == b["step"] == steps
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        torch.testing.assert_close(b["state"][k], a["state"][k], rtol=0, atol=1e-6, msg=f"weights {k} differ")
    for ga, gb in zip(a["optimizer"]["param_groups"], b["optimizer"]["param_groups"]):
        assert gb["lr"] == pytest.approx(ga["lr"], rel=1e-9), "the lr schedule did not resume where it stopped"


# ----------------------------------------------------------------------------- SIGKILL


def test_sigkill_mid_checkpoint_leaves_a_readable_checkpoint(points: Path, tmp_path: Path) -> None:
    """SIGKILL inside a checkpoint write: the previous checkpoint is intact, the half-written
    temporary never becomes the checkpoint, and the run resumes to the end.

    ``TAICHIFIELD_TEST_BLOCK_IN_WRITE`` (taichifield/atomic.py) freezes the writer in the first
    overwrite of a file, with its temporary cut to half, and signals that through a marker file;
    the kill therefore always lands mid-write (checkpoint every step: step 1 is written, the
    write of step 2 is the one killed).
    """
    run = tmp_path / "run"
    ckpt_path = run / "ckpt.pt"
    marker = tmp_path / "blocked"
    proc = subprocess.Popen(driver(points, run, 1_000_000, every=1), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV | {"TAICHIFIELD_TEST_BLOCK_IN_WRITE": str(marker)})
    wait_for(marker, proc)
    half_written = Path(marker.read_text())
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # the kill landed mid-write: a partial temporary of ckpt.pt, which does not load, sits next to it
    assert half_written.parent == run and half_written.name.startswith(".ckpt.") and half_written.exists()
    with pytest.raises(CheckpointError):
        load_checkpoint(half_written, "sdf")
    # ... and ckpt.pt is the last complete checkpoint, step 1, with everything a resume needs
    ckpt = assert_finite_checkpoint(ckpt_path)
    assert ckpt["step"] == 1
    assert ckpt["optimizer"] is not None and ckpt["rng"] is not None
    step = ckpt["step"]
    final = step + 3
    proc = subprocess.run([*CLI, "train", "sdf", str(points), "--out", str(run), "--resume", "--steps", str(final),
                           "--no-preview", "--quiet", "--arch", "cpu"], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert assert_finite_checkpoint(ckpt_path)["step"] == final
    # the killed writer's temporary is swept by the next checkpoint write: only the run's own
    # outputs remain (and the run folder's lock file, taichifield/runfolder.py)
    assert not half_written.exists()
    assert sorted(p.name for p in run.iterdir() if p.name != LOCK_NAME) == ["ckpt.pt", "curves.png", "history.json"]


# ----------------------------------------------------------------------------- numerical safety


class _NaNGrad(torch.autograd.Function):
    """Identity forward; NaN gradient backward (a finite loss with poisoned gradients)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        return torch.full_like(g, float("nan"))


def _poison_igr(monkeypatch: pytest.MonkeyPatch, bad_calls: set[int] | None) -> list[int]:
    """Make igr_loss return NaN (odd bad calls) or NaN gradients (even ones) on ``bad_calls`` (None: always)."""
    import taichifield.train.losses as L

    real = L.igr_loss
    calls = [0]

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        loss, terms = real(*args, **kwargs)
        i = calls[0]
        calls[0] += 1
        if bad_calls is None or i in bad_calls:
            loss = loss * float("nan") if i % 2 else _NaNGrad.apply(loss)
        return loss, terms

    monkeypatch.setattr(L, "igr_loss", poisoned)
    return calls


def test_nan_loss_and_gradients_are_skipped_and_reported(points: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    _poison_igr(monkeypatch, {2, 3, 6})
    with caplog.at_level(logging.WARNING, logger="taichifield.train.loop"):
        result = train_sdf(points, tmp_path / "run", tiny_config(10))
    assert result.step == 10 and result.stopped == "steps"
    assert result.skipped_steps == 3
    warnings = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert len(warnings) == 3, warnings
    assert np.isfinite(result.last_stats["loss"])
    ckpt = assert_finite_checkpoint(tmp_path / "run" / "ckpt.pt")
    # the back-off (x0.5 per bad step) survives in the checkpoint, below the clean schedule
    lr_bad = ckpt["optimizer"]["param_groups"][0]["lr"]
    monkeypatch.undo()
    train_sdf(points, tmp_path / "clean", tiny_config(10))
    lr_clean = load_checkpoint(tmp_path / "clean" / "ckpt.pt", "sdf")["optimizer"]["param_groups"][0]["lr"]
    assert lr_bad == pytest.approx(lr_clean * 0.5**3, rel=1e-6)


def test_diverging_run_stops_with_one_error_and_no_nan_checkpoint(points: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    train_sdf(points, run, tiny_config(3))  # a good checkpoint from before the blow-up
    good = load_checkpoint(run / "ckpt.pt", "sdf")
    _poison_igr(monkeypatch, None)
    with pytest.raises(TrainingDiverged):
        train_sdf(points, run, tiny_config(60), resume=True)
    after = assert_finite_checkpoint(run / "ckpt.pt")
    assert after["step"] == good["step"], "a diverged run must not overwrite the last good checkpoint"
    # the CLI: one line, exit 2, no traceback, no checkpoint for a fresh run
    fresh = tmp_path / "fresh"
    res = CliRunner().invoke(app, ["train", "sdf", str(points), "--out", str(fresh), "--steps", "60", "--batch-size", "16",
                                   "--no-preview", "--arch", "cpu", "--quiet"])
    assert isinstance(res.exception, SystemExit) and res.exit_code == 2, res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "diverged" in errors[0], res.stderr
    assert not (fresh / "ckpt.pt").exists()


def test_nerf_corrupted_batch_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NeRF end to end: NaN pixels in two batches; steps skipped, reported in metrics.json, finite weights."""
    from PIL import Image

    import taichifield.data.rays as rays
    from taichifield.fields.nerf import NerfConfig
    from taichifield.train.nerf import NerfTrainConfig, run_train_nerf

    scene = tmp_path / "scene"
    (scene / "train").mkdir(parents=True)
    frames = []
    for i in range(2):  # two cameras 0.5 apart (a trainer refuses views without parallax)
        pose = [[1.0, 0, 0, 0.5 * i], [0, 1.0, 0, 0], [0, 0, 1.0, 4.0], [0, 0, 0, 1.0]]
        Image.fromarray(np.full((8, 8, 4), 100 + 50 * i, np.uint8)).save(scene / "train" / f"r_{i}.png")
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": pose})
    (scene / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))

    real = rays.pixels
    calls = [0]

    def corrupted(*args: Any, **kwargs: Any) -> torch.Tensor:
        px = real(*args, **kwargs)
        calls[0] += 1
        return px * float("nan") if calls[0] in (2, 4) else px

    monkeypatch.setattr(rays, "pixels", corrupted)
    run = tmp_path / "run"
    cfg = NerfTrainConfig(scene=str(scene), out=str(run), steps=5, eval_views=0, target_samples=256, init_rays=32,
                          grid_resolution=16, model=NerfConfig(log2_table_size=10, n_levels=4))
    result = run_train_nerf(cfg)
    assert result.step == 5
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["skipped_steps"] == 2
    assert_finite_checkpoint(run / "ckpt.pt", "nerf")
