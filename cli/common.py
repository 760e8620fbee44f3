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
from pathlib import Path
from typing import Annotated, Any, Callable, TypeVar

import typer

from taichifield.config import check_positive  # noqa: F401  (re-exported for the commands)

F = TypeVar("F", bound=Callable[..., Any])

ArchOption = Annotated[
    str,
    typer.Option("--arch", help="Taichi backend: auto (CUDA if available, else CPU), cpu, cuda or vulkan (inference only)."),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; only the final summary line.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed (torch, numpy, Taichi).")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output instead of refusing it.")]

log = logging.getLogger("taichifield.cli")


def config_option(config: Any, name: str, *flags: str, note: str = "", **kwargs: Any) -> Any:
    """A ``typer.Option`` whose help is the docstring under ``config``'s field ``name``
    (:meth:`taichifield.config.Config.field_doc`), so a default and its help text live once,
    in the config dataclass; give the default as ``= Config.default(name)``."""
    text = config.field_doc(name)
    return typer.Option(*flags, help=f"{text} {note}".strip(), **kwargs)


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


# Taichi's CUDA allocation failures are RuntimeErrors with the driver's words in them
_CUDA_OOM_WORDS = ("cuda out of memory", "cuda_error_out_of_memory", "out of cuda pre-allocated memory",
                   "cuda error out of memory")

#: command (its path after the program name) -> the options that lower its memory use
_OOM_HINTS = {
    "train nerf": "lower --target-samples (samples per step) or raise --downscale",
    "train sdf": "lower --batch-size",
    "train image": "lower --batch-size or use a smaller image",
    "mesh sdf": "lower --res",
    "mesh nerf": "lower --res",
    "reconstruct hoppe": "lower --res",
    "render sdf": "lower --width/--height",
    "render nerf": "lower --resolution or raise --downscale",
    "eval nerf": "raise --downscale",
    "view": "lower --sdf-res or --width/--height",
}

_current_run: list[Path] = []


def note_run(folder: Path) -> None:
    """Record the run folder the command trains into, so an out-of-memory error can point at
    its last checkpoint (which training never replaces with a half-written one)."""
    _current_run[:] = [Path(folder)]


def _is_cuda_out_of_memory(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    text = " ".join(str(exc).split()).lower()
    return isinstance(exc, RuntimeError) and any(w in text for w in _CUDA_OOM_WORDS)


def _command_name(fn: Callable[..., Any]) -> str:
    """``train_sdf_cmd`` / ``train_nerf_command`` -> ``"train sdf"`` / ``"train nerf"`` (the naming rule of cli/)."""
    return re.sub(r"_(cmd|command)$", "", fn.__name__).replace("_", " ")


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _cuda_oom_message(exc: BaseException, command: str) -> str:
    """One line: what was asked for, what the GPU holds, the option to lower, the checkpoint kept.

    Example: ``CUDA out of memory during train nerf (tried to allocate 2.00 GiB; GPU 0: 78.9 GiB
    of 79.3 GiB in use, peak 61.2 GiB by torch); lower --target-samples ...; the last
    checkpoint runs/x/ckpt.pt (step 1500) is kept: continue with --resume``
    """
    text = " ".join(str(exc).split())
    found = re.search(r"tried to allocate ([0-9.]+ ?[KMGT]?i?B)", text, re.IGNORECASE)
    facts = [f"tried to allocate {found.group(1)}"] if found else []
    try:
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            facts.append(f"GPU {torch.cuda.current_device()}: {_gib(total - free)} of {_gib(total)} in use, "
                         f"peak {_gib(torch.cuda.max_memory_allocated())} by torch")
    except Exception:  # noqa: BLE001 - the CUDA context may be unusable after the failure
        pass
    if not facts:
        facts.append(text[:120] or type(exc).__name__)
    command = command if command in _OOM_HINTS else ""  # e.g. the bench scripts' wrapper "run"
    where = f" during {command}" if command else ""
    hint = _OOM_HINTS.get(command, "lower --res, the image size or the batch size")
    line = f"CUDA out of memory{where} ({'; '.join(facts)}); {hint}"
    if _current_run:
        ckpt = _current_run[0] / "ckpt.pt"
        if ckpt.is_file():
            from taichifield.runfolder import run_progress

            progress = run_progress(ckpt)
            at = "" if progress is None else f" (step {progress[0]})"
            line += f"; the last checkpoint {ckpt}{at} is kept: continue with --resume"
        else:
            line += "; no checkpoint was written yet"
    return line


def cli_command(fn: F) -> F:
    """Turn library errors into one ``error: ...`` line and exit code 2, Ctrl-C into 130.

    * :class:`~taichifield.errors.TaichiFieldError` (bad input, checkpoint, arch, resource):
      its message, exit code 2;
    * ``OSError`` (missing, unreadable or unwritable files, a full disk): the file and the
      system's reason, exit code 2;
    * ``MemoryError``: what could not be allocated, exit code 2;
    * CUDA out of memory (``torch.cuda.OutOfMemoryError``, Taichi's CUDA allocation
      errors): what was asked for, what the GPU holds, which option lowers it, and the last
      checkpoint of the run (:func:`note_run`), which is kept; exit code 2;
    * anything else is a bug in taichifield: one line saying so, exit code 1; its traceback
      is shown with ``TAICHIFIELD_DEBUG=1`` (and always under pytest).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from taichifield.errors import TaichiFieldError

        _current_run.clear()
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
            if _is_cuda_out_of_memory(exc):
                err(_cuda_oom_message(exc, _command_name(fn)))
                raise typer.Exit(2) from None
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


def run_fraction(completed: float, total: float | None, elapsed: float, time_budget: float | None) -> float:
    """How far a run is, in [0, 1]: ``completed / total``, or the share of ``time_budget``
    spent when that is further (a time budget ends a run long before its step count)."""
    f = min(completed / total, 1.0) if total else 0.0
    if time_budget:
        f = max(f, min(elapsed / time_budget, 1.0))
    return f


class Progress:
    """A rich progress bar on a terminal; periodic plain log lines otherwise; nothing when quiet.

    With ``time_budget`` (seconds) the bar and its ETA follow :func:`run_fraction` (whichever
    of the steps or the budget ends the run first) and the count moves into the text.

    Example::

        with Progress("training", total=steps, quiet=quiet, unit="step") as bar:
            for step in range(steps):
                ...
                bar.update(1, info=f"loss {loss:.4f} psnr {psnr:.2f}")
    """

    def __init__(self, description: str, total: float | None, quiet: bool = False, unit: str = "it",
                 time_budget: float | None = None) -> None:
        self.description, self.total, self.quiet, self.unit = description, total, quiet, unit
        self.time_budget = time_budget
        self._t_first: float | None = None
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

            count = TextColumn("{task.percentage:>3.0f}%") if self.time_budget else MofNCompleteColumn()
            self._rich = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), count,
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=Console(stderr=True), transient=False,
            )
            self._rich.__enter__()
            from rich.markup import escape

            # escaped: "nerf [lego]" is the scene's name, not a rich style tag
            self._task = self._rich.add_task(escape(self.description), total=1.0 if self.time_budget else self.total,
                                             rate="", info="")
        return self

    def update(self, advance: float = 1, info: str | None = None, completed: float | None = None) -> None:
        self.completed = completed if completed is not None else self.completed + advance
        if info is not None:
            self.info = info
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        rate = f"{self.completed / elapsed:,.1f} {self.unit}/s"
        shown, info = self.completed, self.info
        if self.time_budget:  # the budget's clock starts with the first step, not at set-up
            if self._t_first is None:
                self._t_first = time.monotonic()
            shown = run_fraction(self.completed, self.total, time.monotonic() - self._t_first, self.time_budget)
            info = f"{self.unit} {self.completed:g} {self.info}"
        if self._rich is not None:
            self._rich.update(self._task, completed=shown, rate=rate, info=info)
        elif not self.quiet and time.monotonic() - self._last_log > 10.0:
            self._last_log = time.monotonic()
            total = f"/{self.total:g}" if self.total else ""
            share = f", {100 * shown:.0f}% of the run" if self.time_budget else ""
            typer.echo(f"{self.description}: {self.completed:g}{total} {self.unit} ({rate}{share}) {self.info}", err=True)

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
