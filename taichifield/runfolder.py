"""Run folders and output files: nothing a user made is replaced silently, one writer per run.

Rules (README "Failure modes"):

* a run folder that holds a checkpoint (``RUN/ckpt.pt``) is refused unless the command
  continues it (``--resume``) or replaces it (``--overwrite``, which first removes the old
  run's own files, see :data:`RUN_ARTIFACTS`; other files in the folder are left alone);
* an existing output file is refused unless ``--overwrite``;
* a default run folder is timestamped and claimed with ``mkdir`` (a second claim of the
  same name, e.g. two runs started in the same second, gets a ``-2``, ``-3`` ... suffix);
* one process at a time trains into a run folder: :class:`RunLock` holds an exclusive
  ``fcntl.flock`` on ``RUN/.taichifield.lock`` for as long as the process runs. The kernel
  drops the lock when the process ends in any way (exit, crash, ``kill -9``), so a lock
  never outlives its holder; the file itself stays and only records the holder's PID for
  the message.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

from .errors import CheckpointError, InputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_NAME", "RUN_ARTIFACTS", "RunLock", "check_output_file", "check_output_folder", "check_run_folder",
    "claim_run_dir", "clear_run", "describe_run", "first_missing", "open_run", "run_progress",
]

log = logging.getLogger(__name__)

#: errors of a file system without flock support (some network mounts): run unlocked, with a warning
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)

LOCK_NAME = ".taichifield.lock"
#: what taichifield writes into a run folder (glob patterns); ``--overwrite`` removes these
RUN_ARTIFACTS = ("ckpt.pt", "metrics.json", "history.json", "curves.png", "preview.png", "reconstruction.png",
                 "ckpt.mesh*.ply", "progress")


def run_progress(ckpt: Path) -> tuple[int, int | None] | None:
    """(step reached, steps configured or None) of a checkpoint, or None if it cannot be read.

    Memory-mapped: the tensors are not read, so this is cheap even for a large run.
    """
    try:
        import torch

        data = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        config = data.get("config") or {}
        total = config.get("steps", (config.get("train") or {}).get("steps"))
        return int(data["step"]), (int(total) if total is not None else None)
    except Exception:  # noqa: BLE001 - a damaged checkpoint is still a run that must not be replaced
        return None


def describe_run(ckpt: Path) -> str:
    """"a finished run (ckpt.pt, step 500 of 500)" / "an unfinished run (...)" / "a run (ckpt.pt)"."""
    progress = run_progress(ckpt)
    if progress is None:
        return f"a run ({ckpt.name})"
    step, total = progress
    if total is None:
        return f"a run ({ckpt.name}, step {step})"
    state = "a finished" if step >= total else "an unfinished"
    return f"{state} run ({ckpt.name}, step {step} of {total})"


def _lock_holder(folder: Path) -> int | None:
    """PID of the live process holding ``folder``'s lock, 0 if unknown, None if not locked.

    Probes with a shared non-blocking flock on a read-only descriptor: writes nothing.
    """
    path = folder / LOCK_NAME
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, PermissionError):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        except OSError as exc:
            if exc.errno in _NO_LOCKS:
                return None
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _busy_error(folder: Path, pid: int) -> InputError:
    who = f"process {pid}" if pid else "another process"
    return InputError(f"{folder}: {who} is training into this run folder now; wait for it to finish "
                      "or choose another --out")


class RunLock:
    """An exclusive lock on a run folder, held until :meth:`release` or the process ends.

    Example::

        with RunLock.acquire(Path("runs/x")):
            train(...)
    """

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder, self._fd = folder, fd

    @classmethod
    def acquire(cls, folder: Path) -> "RunLock":
        """Create ``folder`` if needed and lock it; :class:`InputError` if another process holds it."""
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is None:
                raise OSError(errno.ENOSYS, "no fcntl module")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise _busy_error(folder, int(text) if text.isdigit() else 0) from None
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                os.close(fd)
                raise
            log.warning("%s: this file system cannot lock files (%s); the run folder is not protected "
                        "against a second writer", folder, exc.strerror)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(folder, fd)

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError, AttributeError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holds_run(out: Path, can_resume: bool) -> InputError:
    how = "continue it with --resume or replace it with --overwrite" if can_resume else \
        "replace it with --overwrite or choose another --out"
    return InputError(f"{out}: holds {describe_run(out / 'ckpt.pt')}; {how}")


def check_run_folder(out: Path, *, resume: bool, overwrite: bool, can_resume: bool = True) -> None:
    """Refuse ``out`` when another process trains into it, or when it holds a checkpoint and
    the command neither continues (``resume``) nor replaces (``overwrite``) it. Writes nothing.

    ``can_resume=False`` (``train image``) only changes the advice in the message."""
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other: continue the run or replace it")
    if out.is_dir():
        pid = _lock_holder(out)
        if pid is not None:
            raise _busy_error(out, pid)
    ckpt = out / "ckpt.pt"
    if resume and not ckpt.is_file():
        raise CheckpointError(f"{ckpt}: no such checkpoint file; there is no run to --resume")
    if not resume and not overwrite and ckpt.exists():
        raise _holds_run(out, can_resume)


def clear_run(out: Path) -> list[Path]:
    """Remove the files of an earlier run (:data:`RUN_ARTIFACTS`) from ``out``; returns them."""
    removed = []
    for pattern in RUN_ARTIFACTS:
        for p in sorted(out.glob(pattern)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    if removed:
        log.info("%s: replaced the earlier run (--overwrite): removed %s", out, ", ".join(p.name for p in removed))
    return removed


@contextlib.contextmanager
def open_run(out: Path, *, resume: bool = False, overwrite: bool = False,
             created: Path | None = None, can_resume: bool = True) -> Iterator[RunLock]:
    """Check ``out`` (:func:`check_run_folder`), lock it for the duration, and with
    ``overwrite`` (and no ``resume``) remove the earlier run's files once the lock is held.

    If the command fails before writing anything, the folders this call created (``out`` and
    any missing parents; ``created``: the topmost folder a caller such as :func:`claim_run_dir`
    made for it) are removed again, so a refused input leaves nothing behind.
    """
    check_run_folder(out, resume=resume, overwrite=overwrite, can_resume=can_resume)
    first_new = created or first_missing(out)
    lock = RunLock.acquire(out)
    try:
        # a run may have been written between the check and the lock: check again, holding it
        if not resume and not overwrite and (out / "ckpt.pt").exists():
            raise _holds_run(out, can_resume)
        if overwrite and not resume:
            clear_run(out)
        yield lock
    except BaseException:
        if first_new is not None:
            _remove_if_untouched(out, first_new)
        raise
    finally:
        lock.release()


def _remove_if_untouched(out: Path, first_new: Path) -> None:
    """Remove ``out`` (holding nothing but the lock file) and its parents up to ``first_new``."""
    with contextlib.suppress(OSError):
        if [p.name for p in out.iterdir()] != [LOCK_NAME]:
            return
        (out / LOCK_NAME).unlink()
        p = out
        while True:
            p.rmdir()
            if p == first_new:
                break
            p = p.parent


def first_missing(path: Path) -> Path | None:
    """The topmost folder of ``path`` (itself or a parent) that does not exist yet, or None."""
    return next((p for p in reversed([path, *path.parents]) if not p.exists()), None)


def claim_run_dir(base: Path) -> Path:
    """Create and return ``base``, or ``base-2``, ``base-3``, ... if taken (``mkdir`` is the claim,
    so two processes never get the same folder)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        candidate = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise InputError(f"{base}: 9999 run folders of this name exist already; choose --out")


def timestamped_run(method: str, name: str) -> Path:
    """The default run folder ``runs/<method>-<name>-<YYYYmmdd-HHMMSS>`` (not created)."""
    return Path("runs") / f"{method}-{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def claim_new_run(base: Path) -> tuple[Path, Path]:
    """Claim a fresh default run folder: ``base`` or ``base-2``, ... (:func:`claim_run_dir`).

    Returns:
        the folder, and the topmost folder this created (``runs/`` itself on a first run),
        which :func:`open_run` removes again when the run is refused before it starts.
    """
    created = first_missing(base)
    out = claim_run_dir(base)
    return out, created or out


def check_output_file(path: Path, overwrite: bool, option: str = "--out") -> None:
    """Refuse an existing output file unless ``overwrite`` (a folder in its place is left to the writer's error)."""
    if not overwrite and path.is_file():
        raise InputError(f"{path}: exists already; replace it with --overwrite or choose another {option}")


def check_output_folder(path: Path, overwrite: bool, option: str = "--out") -> None:
    """Refuse a non-empty output folder unless ``overwrite`` (its files could be earlier renders)."""
    if not overwrite and path.is_dir() and any(path.iterdir()):
        raise InputError(f"{path}: folder is not empty (earlier renders?); replace its files with --overwrite "
                         f"or choose another {option}")
