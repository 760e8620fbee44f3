"""Shared CLI pieces: options, the runtime hand-off, error handling and progress bars.

Nothing heavy is imported at module level: ``taichifield --help`` must stay fast.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import time
from typing import Annotated, Any, Callable, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

ArchOption = Annotated[
    str,
    typer.Option("--arch", help="Taichi backend: auto (CUDA if available, else CPU), cpu, cuda or vulkan (inference only)."),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; only the final summary line.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed (torch, numpy, Taichi).")]

log = logging.getLogger("taichifield.cli")


def err(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def _debug() -> bool:
    """Show tracebacks of unexpected errors: TAICHIFIELD_DEBUG=1, or under pytest (bugs must surface in tests)."""
    flag = os.environ.get("TAICHIFIELD_DEBUG", "")
    if flag:
        return flag not in ("0", "false", "no")
    return "PYTEST_CURRENT_TEST" in os.environ


# atomic_path writes ".{stem}.{pid}.XXXXXXXX.tmp{suffix}" next to the target: report the target
_TMP_NAME = re.compile(r"(^|/)\.([^/]+)\.[0-9]+\.[A-Za-z0-9_]{8}\.tmp((?:\.[^/.]*)?)$")


def _os_error_message(exc: OSError) -> str:
    name = exc.filename or exc.filename2
    what = (exc.strerror or str(exc) or type(exc).__name__).lower()
    if name is None:
        return what
    shown = _TMP_NAME.sub(r"\1\2\3", os.fspath(name))
    if isinstance(exc, FileExistsError) and os.path.isfile(name):
        what = "is a file, but a folder is needed there"
    return f"{shown}: {what}"


def _is_out_of_memory(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def cli_command(fn: F) -> F:
    """Turn library errors into one ``error: ...`` line and exit code 2, Ctrl-C into 130.

    * :class:`~taichifield.errors.TaichiFieldError` (bad input, checkpoint, arch, resource):
      its message, exit code 2;
    * ``OSError`` (missing, unreadable or unwritable files, a full disk): the file and the
      system's reason, exit code 2;
    * ``MemoryError``: what could not be allocated, exit code 2;
    * anything else is a bug in taichifield: one line saying so, exit code 1; its traceback
      is shown with ``TAICHIFIELD_DEBUG=1`` (and always under pytest).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from taichifield.errors import TaichiFieldError

        try:
            return fn(*args, **kwargs)
        except TaichiFieldError as exc:
            err(str(exc))
            raise typer.Exit(2) from None
        except OSError as exc:
            err(_os_error_message(exc))
            raise typer.Exit(2) from None
        except MemoryError as exc:
            detail = " ".join(str(exc).split())[:200] or "allocation failed"
            err(f"out of memory ({detail}); lower --res, the image size or the batch size")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if _is_out_of_memory(exc):  # torch reports failed allocations as RuntimeError
                detail = " ".join(str(exc).split())
                detail = detail[detail.find("tried to allocate"):][:120] if "tried to allocate" in detail else detail[:120]
                err(f"out of memory ({detail}); lower --res, the image size or the batch size")
                raise typer.Exit(2) from None
            if _debug():
                raise
            detail = " ".join(str(exc).split())[:160]
            err(f"internal error ({type(exc).__name__}: {detail}); this is a taichifield bug, "
                "rerun with TAICHIFIELD_DEBUG=1 for the traceback and please report it")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def check_positive(**options: float | None) -> None:
    """Refuse option values that are not positive finite numbers (None means "not given").

    Example: ``check_positive(steps=steps, time_budget=time_budget)`` raises
    ``InputError("--time-budget must be a positive number, got -1.0")``.
    """
    import math

    from taichifield.errors import InputError

    for name, value in options.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"--{name.replace('_', '-')} must be a positive number, got {value}")


def start_runtime(arch: str, seed: int | None = None) -> str:
    """The CLI's one call into the Taichi runtime; returns the arch in use."""
    from taichifield import runtime

    chosen = runtime.init(arch, random_seed=seed or 0)
    if seed is not None:
        import numpy as np
        import torch

        torch.manual_seed(seed)
        np.random.seed(seed)
    return chosen


class Progress:
    """A rich progress bar on a terminal; periodic plain log lines otherwise; nothing when quiet.

    Example::

        with Progress("training", total=steps, quiet=quiet, unit="step") as bar:
            for step in range(steps):
                ...
                bar.update(1, info=f"loss {loss:.4f} psnr {psnr:.2f}")
    """

    def __init__(self, description: str, total: float | None, quiet: bool = False, unit: str = "it") -> None:
        self.description, self.total, self.quiet, self.unit = description, total, quiet, unit
        self.completed = 0.0
        self._rich: Any = None
        self._task: Any = None
        self._t0 = 0.0
        self._last_log = 0.0
        self.info = ""

    def __enter__(self) -> "Progress":
        self._t0 = self._last_log = time.monotonic()
        if not self.quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                TimeElapsedColumn, TimeRemainingColumn,
            )

            self._rich = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=Console(stderr=True), transient=False,
            )
            self._rich.__enter__()
            self._task = self._rich.add_task(self.description, total=self.total, rate="", info="")
        return self

    def update(self, advance: float = 1, info: str | None = None, completed: float | None = None) -> None:
        self.completed = completed if completed is not None else self.completed + advance
        if info is not None:
            self.info = info
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        rate = f"{self.completed / elapsed:,.1f} {self.unit}/s"
        if self._rich is not None:
            self._rich.update(self._task, completed=self.completed, rate=rate, info=self.info)
        elif not self.quiet and time.monotonic() - self._last_log > 10.0:
            self._last_log = time.monotonic()
            total = f"/{self.total:g}" if self.total else ""
            typer.echo(f"{self.description}: {self.completed:g}{total} {self.unit} ({rate}) {self.info}", err=True)

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
