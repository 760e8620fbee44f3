"""Run a function in a fresh Python process that imports no torch: COLMAP's stages run here.

pycolmap's native code and torch's do not always live together in one process: importing
torch before pycolmap can make ``extract_features`` abort in ``free()`` (colmap/colmap#3477),
and this project's CI saw a segfault in incremental mapping after the test process had
imported torch and Taichi. A crash in native code takes its whole process with it, so
:func:`call_in_child` runs the function in a child interpreter (``python -m
taichifield.capture.child``) and the parent turns a crash into one line; whatever the child
wrote to disk (COLMAP's ``database.db``) stays, so the same command resumes.

Protocol: the parent writes one JSON request ``{"target": "module:function", "kwargs": {...},
"progress": bool, "log_level": int}`` to the child's stdin; the child answers with JSON lines on
its stdout: ``{"progress": [stage, done, total]}`` (relayed to the parent's callback),
``{"log": [level, logger, message]}`` (re-logged in the parent), then one ``{"result": ...}`` or
``{"error": message, "type": class name}``. Native code printing to stdout goes to stderr
instead (the child points file descriptor 1 there), so it cannot break the protocol.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

from .. import errors

__all__ = ["ChildError", "call_in_child"]

log = logging.getLogger(__name__)


class ChildError(errors.TaichiFieldError):
    """The child process crashed, or failed with an error that is not one of taichifield's."""


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def call_in_child(target: str, kwargs: dict[str, Any], what: str,
                  progress: Optional[Callable[[str, int, int], None]] = None) -> Any:
    """``module:function(**kwargs)`` (JSON-typed arguments and result) in a child interpreter.

    Args:
        target: ``"package.module:function"``, importable in a fresh interpreter.
        kwargs: the function's keyword arguments (JSON types); ``progress`` is added when given.
        what: the file or folder the work is about; it starts the one-line error of a crash.
        progress: called with each ``(stage, done, total)`` the child reports.

    Raises:
        TaichiFieldError: the child raised one (same class and message).
        ChildError: the child died (by a signal or an exit status) or raised another exception.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH")) if p)
    request = {"target": target, "kwargs": kwargs, "progress": progress is not None,
               "log_level": logging.getLogger("taichifield").getEffectiveLevel()}
    proc = subprocess.Popen([sys.executable, "-m", "taichifield.capture.child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, text=True)
    answer: Optional[dict[str, Any]] = None
    stage = "start-up"
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request))
        proc.stdin.close()
        for line in proc.stdout:
            msg = json.loads(line)
            if "progress" in msg:
                stage = msg["progress"][0]
                if progress is not None:
                    progress(*msg["progress"])
            elif "log" in msg:
                level, name, text = msg["log"]
                logging.getLogger(name).log(level, "%s", text)
            else:
                answer = msg
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if answer is not None and "result" in answer:
        return answer["result"]
    if answer is not None:
        cls = getattr(errors, answer["type"], None)
        if isinstance(cls, type) and issubclass(cls, errors.TaichiFieldError):
            raise cls(answer["error"])
        raise ChildError(f"{what}: {answer['type']} in {target} ({stage}): {answer['error']}")
    died = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    raise ChildError(f"{what}: the child process running {target} died ({died}) during {stage}; "
                     "what it wrote is kept: run the same command again to resume")


class _Relay(logging.Handler):
    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        self.send({"log": [record.levelno, record.name, record.getMessage()]})


def main() -> None:
    """The child: read the request, run it, answer (module doc)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent reports it; the child just stops
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # native code printing to stdout must not corrupt the answers

    def send(msg: dict[str, Any]) -> None:
        channel.write(json.dumps(msg) + "\n")
        channel.flush()

    request = json.loads(sys.stdin.read())
    root = logging.getLogger("taichifield")
    root.setLevel(request["log_level"])
    root.addHandler(_Relay(send))
    root.propagate = False
    kwargs = dict(request["kwargs"])
    if request["progress"]:
        kwargs["progress"] = lambda stage, done, total: send({"progress": [stage, done, total]})
    module, _, name = request["target"].partition(":")
    try:
        import importlib

        result = getattr(importlib.import_module(module), name)(**kwargs)
    except Exception as e:  # noqa: BLE001 - every failure goes back to the parent as one answer
        if not isinstance(e, errors.TaichiFieldError) and root.isEnabledFor(logging.DEBUG):
            traceback.print_exc(file=sys.stderr)
        send({"error": str(e), "type": type(e).__name__})
        return
    send({"result": result})


if __name__ == "__main__":
    main()
