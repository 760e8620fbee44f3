"""Shared CLI pieces: options, the runtime hand-off, error handling and progress bars.

Nothing heavy is imported at module level: ``taichifield --help`` must stay fast.
"""

from __future__ import annotations

import functools
import logging
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


def cli_command(fn: F) -> F:
    """Turn library errors into a one-line message and exit code 2, Ctrl-C into 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from taichifield.errors import TaichiFieldError

        try:
            return fn(*args, **kwargs)
        except TaichiFieldError as exc:
            err(str(exc))
            raise typer.Exit(2) from None
        except FileNotFoundError as exc:
            err(f"{exc.filename or exc}: no such file or directory")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


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
