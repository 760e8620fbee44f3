"""The child process that runs COLMAP (taichifield.capture.child): its answers, progress and log
records reach the parent; a taichifield error keeps its class and message; any other failure and a
crash are one line; the child imports no torch; native output on stdout cannot break the protocol."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from taichifield.capture.child import ChildError, call_in_child
from taichifield.errors import InputError

_JOBS = '''
import logging, os, signal, sys
from taichifield.errors import InputError

log = logging.getLogger("taichifield.jobs")

def count(n, progress):
    for i in range(n):
        progress("counting", i + 1, n)
    log.warning("counted %d", n)
    log.debug("not shown at the parent's level")
    print("python noise on stdout")
    os.write(1, b"native noise on stdout\\n")
    import taichifield.capture.mapping, taichifield.capture.flips  # what COLMAP's stages import
    return {"n": n, "torch": "torch" in sys.modules, "pid": os.getpid()}

def refuse(path):
    raise InputError(f"{path}: not a capture")

def fail():
    raise RuntimeError("boom")

def crash():
    os.kill(os.getpid(), signal.SIGSEGV)

def leave():
    sys.stdout.flush()
    os._exit(3)
'''


@pytest.fixture
def jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "childjobs.py").write_text(_JOBS)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return "childjobs"


def test_result_progress_and_logs_come_back(jobs: str, caplog: pytest.LogCaptureFixture) -> None:
    import os

    seen: list[tuple[str, int, int]] = []
    with caplog.at_level(logging.INFO, logger="taichifield"):
        got = call_in_child(f"{jobs}:count", {"n": 3}, "scene", progress=lambda *a: seen.append(a))
    assert got["n"] == 3 and got["pid"] != os.getpid()
    assert got["torch"] is False  # COLMAP's stages run without torch in their process
    assert seen == [("counting", 1, 3), ("counting", 2, 3), ("counting", 3, 3)]
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records if r.name == "taichifield.jobs"]
    assert records == [("taichifield.jobs", logging.WARNING, "counted 3")]


def test_errors_and_crashes_are_one_line(jobs: str) -> None:
    with pytest.raises(InputError, match=r"^/x/y: not a capture$"):
        call_in_child(f"{jobs}:refuse", {"path": "/x/y"}, "scene")
    with pytest.raises(ChildError, match=r"^scene: RuntimeError in childjobs:fail \(start-up\): boom$"):
        call_in_child(f"{jobs}:fail", {}, "scene")
    with pytest.raises(ChildError, match=r"^my/scene: the child process running childjobs:crash died \(signal SIGSEGV\) "
                                         r"during start-up; what it wrote is kept: run the same command again to resume$"):
        call_in_child(f"{jobs}:crash", {}, "my/scene")
    with pytest.raises(ChildError, match=r"died \(exit status 3\)"):
        call_in_child(f"{jobs}:leave", {}, "scene")
