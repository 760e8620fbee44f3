"""Atomic file output: write to a temporary file in the target folder, then rename.

A crash, Ctrl-C or SIGKILL mid-write leaves either the old file or nothing,
never a half-written one (``os.replace`` is atomic on POSIX within a filesystem).
A SIGKILL does leave the hidden temporary (``.NAME.PID.XXXX.tmp.SUFFIX``) behind; the
next write of the same file removes those whose writing process no longer exists.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary name keeps the suffix of ``path`` so writers that pick a format
    from the extension (imageio, Open3D) behave as for the final name. On any
    exception the temporary file is removed and ``path`` is left untouched.

    Example:
        >>> with atomic_path("mesh.ply") as tmp:
        ...     write_ply(tmp, vertices, faces)
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_orphans(final)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.stem}.{os.getpid()}.", suffix=f".tmp{final.suffix}", dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the final file the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        if _TEST_BLOCK_MARKER:
            _test_block_mid_write(tmp, final)
        with open(tmp, "rb") as fh:  # make the bytes durable before the rename
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


#: Test hook (tests/test_kill_resume.py): a marker path, read once at import; unset in normal use.
_TEST_BLOCK_MARKER = os.environ.get("TAICHIFIELD_TEST_BLOCK_IN_WRITE")


def _test_block_mid_write(tmp: Path, final: Path) -> None:
    """Freeze this process in the middle of overwriting ``final``, so a test can SIGKILL it there.

    With ``TAICHIFIELD_TEST_BLOCK_IN_WRITE=MARKER`` set, the first write in this process that
    replaces an existing file cuts its temporary to half its size (a partly written file),
    writes the temporary's path into ``MARKER`` and sleeps (10 min) before the rename.
    """
    global _TEST_BLOCK_MARKER
    if not final.exists():
        return
    marker, _TEST_BLOCK_MARKER = _TEST_BLOCK_MARKER, None  # once per process
    os.truncate(tmp, tmp.stat().st_size // 2)
    Path(marker + ".part").write_text(str(tmp))
    os.replace(marker + ".part", marker)  # the marker appears complete
    time.sleep(600)


def _sweep_orphans(final: Path) -> None:
    """Remove temporaries of ``final`` left by writers that were killed (their PID is gone)."""
    for stale in final.parent.glob(f".{glob.escape(final.stem)}.*.tmp{glob.escape(final.suffix)}"):
        pid_part = stale.name[len(final.stem) + 2:].split(".", 1)[0]
        if not pid_part.isdigit() or int(pid_part) == os.getpid():
            continue
        try:
            os.kill(int(pid_part), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                stale.unlink()
        except (PermissionError, OverflowError, OSError):
            continue  # alive (someone else's) or not a real PID: leave it
