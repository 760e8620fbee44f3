"""Nothing a user made is replaced silently (issue 13, part 1), through real CLI invocations.

* a run folder holding ``ckpt.pt`` is refused without ``--resume`` / ``--overwrite``, with one
  line saying how to continue or replace it, and nothing in it changes;
* every command that writes a file refuses an existing one unless ``--overwrite``;
* default run folders are timestamped and never collide;
* two processes cannot train into one run folder at once, and a lock left by a
  ``kill -9``-ed process does not block the next run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from taichifield.cli.main import app
from tiny_scenes import lego_scene
from taichifield.runfolder import LOCK_NAME, RunLock, claim_run_dir
from taichifield.train.checkpoint import save_checkpoint

runner = CliRunner()
SDF_FAST = ["--steps", 2, "--batch-size", 32, "--no-preview", "--arch", "cpu", "-q"]


def run_cli(args: Sequence[Any]) -> Any:
    res = runner.invoke(app, [str(a) for a in args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        pytest.fail("".join(traceback.format_exception(res.exception)))
    return res


def ok(args: Sequence[Any]) -> Any:
    res = run_cli(args)
    assert res.exit_code == 0, res.output
    return res


def refused(args: Sequence[Any]) -> str:
    """The one ``error:`` line of a command that must exit with code 2."""
    res = run_cli(args)
    assert res.exit_code == 2, f"exit {res.exit_code}: {res.output}"
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder``: (mtime_ns, bytes)."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def ball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = np.random.default_rng(0).normal(size=(400, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    path = tmp_path_factory.mktemp("ball") / "ball.xyz"
    np.savetxt(path, np.hstack([0.5 * d, d]))
    return path


@pytest.fixture(scope="module")
def sdf_run(ball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("sdf") / "run"
    ok(["train", "sdf", ball, "--out", run, *SDF_FAST])
    return run


@pytest.fixture(scope="module")
def lego(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny procedural scene (rendered on first use by the command)."""
    return Path(lego_scene(tmp_path_factory.mktemp("lego") / "scene", 12, train=4, test=1))


NERF_FAST = ["--steps", 2, "--target-samples", 512, "--log2-table-size", 10, "--arch", "cpu", "-q"]


def fake_run(folder: Path, kind: str, step: int, steps: int) -> Path:
    """A run folder with a real checkpoint of ``kind`` at ``step`` of ``steps`` (no training)."""
    config = {"train": {"steps": steps}} if kind == "nerf" else {"steps": steps}
    save_checkpoint(folder / "ckpt.pt", kind, config, {"w": torch.zeros(2)}, step=step)
    return folder


# ----------------------------------------------------------------------------- run folders


def test_train_sdf_refuses_a_finished_run(ball: Path, sdf_run: Path) -> None:
    before = snapshot(sdf_run)
    line = refused(["train", "sdf", ball, "--out", sdf_run, *SDF_FAST])
    assert line == (f"error: {sdf_run}: holds a finished run (ckpt.pt, step 2 of 2); "
                    "continue it with --resume or replace it with --overwrite")
    assert snapshot(sdf_run) == before, "the refused command changed the run folder"


def test_train_sdf_resume_and_overwrite(ball: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok(["train", "sdf", ball, "--out", run, *SDF_FAST])
    res = ok(["train", "sdf", ball, "--out", run, "--resume", *SDF_FAST, "--steps", 4])  # the last --steps counts
    assert "4 steps" in res.stdout
    assert torch.load(run / "ckpt.pt", weights_only=True)["step"] == 4
    history = json.loads((run / "history.json").read_text())
    assert max(r["step"] for r in history) == 4
    stale = run / "progress" / "step_99999.png"  # as if from a longer earlier run
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    (run / "notes.txt").write_text("mine")
    assert refused(["train", "sdf", ball, "--out", run, "--resume", "--overwrite", *SDF_FAST]).endswith(
        "--resume and --overwrite exclude each other: continue the run or replace it")
    ok(["train", "sdf", ball, "--out", run, *SDF_FAST, "--overwrite"])
    assert torch.load(run / "ckpt.pt", weights_only=True)["step"] == 2  # a new run, not the 4-step one
    assert max(r["step"] for r in json.loads((run / "history.json").read_text())) == 2  # no rows of the old run
    assert not stale.exists(), "the replaced run's progress images were left behind"
    assert (run / "notes.txt").read_text() == "mine", "--overwrite removed a file taichifield did not write"


def test_train_sdf_unfinished_run_and_bad_input_with_overwrite(ball: Path, tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", "sdf", 300, 5000)
    line = refused(["train", "sdf", ball, "--out", run, *SDF_FAST])
    assert line == (f"error: {run}: holds an unfinished run (ckpt.pt, step 300 of 5000); "
                    "continue it with --resume or replace it with --overwrite")
    # --overwrite with bad input: refused before the old run is touched
    (tmp_path / "one.xyz").write_text("1 2 3\n" * 20)
    before = snapshot(run)
    line = refused(["train", "sdf", tmp_path / "one.xyz", "--out", run, *SDF_FAST, "--overwrite"])
    assert "same point" in line
    assert snapshot(run) == before


def test_train_nerf_refuses_and_overwrites(lego: Path, tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", "nerf", 1500, 20000)
    (run / "metrics.json").write_text("{}")
    before = snapshot(run)
    line = refused(["train", "nerf", lego, "--out", run, *NERF_FAST])
    assert line == (f"error: {run}: holds an unfinished run (ckpt.pt, step 1500 of 20000); "
                    "continue it with --resume or replace it with --overwrite")
    assert snapshot(run) == before
    ok(["train", "nerf", lego, "--out", run, *NERF_FAST, "--overwrite"])
    ckpt = torch.load(run / "ckpt.pt", weights_only=True)
    assert ckpt["kind"] == "nerf" and ckpt["step"] == 2
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2
    # resuming into another folder that holds a run would replace it: refused as well
    other = fake_run(tmp_path / "other", "nerf", 5, 10)
    line = refused(["train", "nerf", "--resume", run, "--out", other, *NERF_FAST])
    assert line.startswith(f"error: {other}: holds an unfinished run (ckpt.pt, step 5 of 10)")


def test_train_image_refuses_existing_run(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), np.uint8)).save(photo)
    run = fake_run(tmp_path / "run", "image", 1000, 1000)
    line = refused(["train", "image", photo, "--out", run, "--steps", 2, "--arch", "cpu", "-q"])
    assert line == (f"error: {run}: holds a finished run (ckpt.pt, step 1000 of 1000); "
                    "replace it with --overwrite or choose another --out")
    ok(["train", "image", photo, "--out", run, "--steps", 2, "--arch", "cpu", "-q", "--overwrite"])
    assert torch.load(run / "ckpt.pt", weights_only=True)["step"] == 2


def test_default_run_folders_never_collide(ball: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20260101-000000")  # two runs in the same second
    first = ok(["train", "sdf", ball, *SDF_FAST]).stdout
    second = ok(["train", "sdf", ball, *SDF_FAST]).stdout
    assert first.startswith("runs/sdf-ball-20260101-000000/ckpt.pt:"), first
    assert second.startswith("runs/sdf-ball-20260101-000000-2/ckpt.pt:"), second
    assert (tmp_path / "runs" / "sdf-ball-20260101-000000" / "ckpt.pt").is_file()
    # the claim itself: mkdir, so a folder taken by anyone (even empty) is skipped
    (tmp_path / "runs" / "x-3").mkdir()
    assert claim_run_dir(Path("runs/x")) == Path("runs/x")
    assert claim_run_dir(Path("runs/x")) == Path("runs/x-2")
    assert claim_run_dir(Path("runs/x")) == Path("runs/x-4")


# ----------------------------------------------------------------------------- output files


def test_every_output_file_is_refused_unless_overwrite(tmp_path: Path, sdf_run: Path, ball: Path) -> None:
    """The check comes first: an existing output is refused even before the input is read."""
    out = tmp_path / "exists"
    out.mkdir()
    missing = tmp_path / "missing.pt"
    frames = out / "frames"
    frames.mkdir()
    (frames / "r_0.png").write_bytes(b"earlier render")
    files = {name: out / name for name in ("m.ply", "m.obj", "i.png", "o.gif", "o.mp4", "g.png", "s.png")}
    for p in files.values():
        p.write_bytes(b"precious")
    cases = [
        (["mesh", "sdf", missing, "--out", files["m.ply"]], files["m.ply"], "--out"),
        (["mesh", "nerf", missing, "--out", files["m.obj"]], files["m.obj"], "--out"),
        (["render", "sdf", missing, "--out", files["i.png"]], files["i.png"], "--out"),
        (["render", "nerf", missing, "--orbit", "--out", files["o.gif"]], files["o.gif"], "--out"),
        (["render", "nerf", missing, "--orbit", "--out", files["o.mp4"]], files["o.mp4"], "--out"),
        (["reconstruct", "poisson", ball, "--out", files["m.ply"]], files["m.ply"], "--out"),
        (["reconstruct", "hoppe", ball, "--out", files["m.obj"]], files["m.obj"], "--out"),
        (["eval", "nerf", missing, tmp_path, "--grid", files["g.png"]], files["g.png"], "--grid"),
        (["eval", "mesh", missing, missing, "--grid", files["g.png"]], files["g.png"], "--grid"),
        (["view", ball, "--screenshot", files["s.png"]], files["s.png"], "--screenshot"),
    ]
    for args, target, option in cases:
        line = refused([*args, "--arch", "cpu"] if args[0] not in ("eval", "view") and args[1] != "poisson" else args)
        assert line == f"error: {target}: exists already; replace it with --overwrite or choose another {option}", args
    line = refused(["render", "nerf", missing, "--scene", tmp_path, "--out", frames])
    assert line == (f"error: {frames}: folder is not empty (earlier renders?); replace its files with --overwrite "
                    "or choose another --out")
    assert all(p.read_bytes() == b"precious" for p in files.values())
    assert (frames / "r_0.png").read_bytes() == b"earlier render"


def test_overwrite_replaces_output_files(tmp_path: Path, sdf_run: Path, ball: Path) -> None:
    from taichifield.geometry.mesh_io import load_mesh

    mesh, image, hoppe = tmp_path / "m.ply", tmp_path / "i.png", tmp_path / "h.ply"
    for p in (mesh, image, hoppe):
        p.write_bytes(b"old")
    ok(["mesh", "sdf", sdf_run, "--out", mesh, "--res", 16, "--level", 0.1, "--arch", "cpu", "-q", "--overwrite"])
    ok(["render", "sdf", sdf_run, "--out", image, "--width", 8, "--height", 8, "--arch", "cpu", "--overwrite"])
    ok(["reconstruct", "hoppe", ball, "--out", hoppe, "--res", 16, "--arch", "cpu", "--overwrite"])
    assert len(load_mesh(mesh)[1]) > 0 and len(load_mesh(hoppe)[1]) > 0
    assert Image.open(image).size == (8, 8)


# ----------------------------------------------------------------------------- one writer per run


HOLDER = ("import sys; from pathlib import Path; from taichifield.runfolder import RunLock; "
          "lock = RunLock.acquire(Path(sys.argv[1])); print('locked', flush=True); sys.stdin.read()")


def _hold_lock(folder: Path) -> subprocess.Popen[str]:
    """A second process that holds ``folder``'s run lock until its stdin closes or it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"  # blocks until it holds it
    return proc


def test_second_process_is_refused_and_a_killed_holder_does_not_block(ball: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    holder = _hold_lock(run)
    try:
        busy = (f"error: {run}: process {holder.pid} is training into this run folder now; "
                "wait for it to finish or choose another --out")
        assert refused(["train", "sdf", ball, "--out", run, *SDF_FAST]) == busy
        assert not (run / "ckpt.pt").exists()
        fake_run(run, "sdf", 1, 2)
        assert refused(["train", "sdf", ball, "--out", run, "--resume", *SDF_FAST]) == busy  # not "holds a run"
        assert refused(["train", "sdf", ball, "--out", run, "--overwrite", *SDF_FAST]) == busy
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # a crash: no chance to release anything
        holder.wait()
    assert (run / LOCK_NAME).read_text().strip() == str(holder.pid), "the dead holder's lock file is still there"
    res = ok(["train", "sdf", ball, "--out", run, "--overwrite", *SDF_FAST, "--steps", 3])
    assert "3 steps" in res.stdout


def test_training_holds_the_lock_while_it_runs(ball: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While ``train sdf`` trains, another process cannot lock its run folder; afterwards it can."""
    import taichifield.train.sdf as sdf_train

    run = tmp_path / "run"
    real = sdf_train.train_sdf
    seen: list[int] = []

    def probe() -> int:
        return subprocess.run([sys.executable, "-c", HOLDER, str(run)], input="", capture_output=True, text=True,
                              timeout=120).returncode

    def spying(*args: Any, **kwargs: Any) -> Any:
        seen.append(probe())  # during training
        return real(*args, **kwargs)

    monkeypatch.setattr(sdf_train, "train_sdf", spying)
    ok(["train", "sdf", ball, "--out", run, *SDF_FAST])
    assert seen and seen[0] != 0, "another process could lock the run folder while it was training"
    assert probe() == 0, "the lock outlived the command"


def test_lock_is_exclusive_within_one_process_too(tmp_path: Path) -> None:
    from taichifield.errors import InputError

    with RunLock.acquire(tmp_path / "r"):
        with pytest.raises(InputError, match=f"process {os.getpid()} is training"):
            RunLock.acquire(tmp_path / "r")
    RunLock.acquire(tmp_path / "r").release()


def test_file_system_without_locks_runs_unlocked_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """Some network mounts answer flock with ENOLCK: training still runs, and says it is unprotected."""
    import errno
    import fcntl

    import taichifield.runfolder as runfolder

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level("WARNING", logger="taichifield.runfolder"):
        lock = runfolder.RunLock.acquire(tmp_path / "r")
    lock.release()
    assert "cannot lock files (No locks available)" in caplog.text
    runfolder.check_run_folder(tmp_path / "r", resume=False, overwrite=False)  # the probe does not fail either
