"""Training curves as a picture: ``RUN/curves.png`` (loss and PSNR against step and seconds).

A :class:`History` collects per-step scalars cheaply (every ``every`` steps) and
:func:`write_curves` draws them with matplotlib's Agg backend (no display needed),
atomically. Each trainer keeps one :class:`RunCurves` and writes ``RUN/history.json`` and
``RUN/curves.png`` with every checkpoint (the Python API writes the same run folder as the CLI).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_path

__all__ = ["History", "RunCurves", "write_curves", "write_run_curves"]


@dataclass
class History:
    """Scalars per recorded step. ``rows``: dicts with keys step, seconds and any metrics."""

    every: int = 10
    rows: list[dict[str, float]] = field(default_factory=list)
    seconds_offset: float = 0.0
    _t0: float = field(default_factory=time.monotonic)

    @classmethod
    def for_steps(cls, steps: int) -> "History":
        """A history recording every 10th step, or ~20 points for runs under 200 steps."""
        return cls(every=max(1, min(10, steps // 20)))

    def record(self, step: int, stats: dict[str, float], force: bool = False) -> None:
        if not stats or (not force and step % self.every):
            return
        row = {"step": float(step), "seconds": self.seconds_offset + time.monotonic() - self._t0}
        row.update({k: float(v) for k, v in stats.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint-safe (lists of floats): the rows as a table (the trainers continue
        curves across ``--resume`` through ``history.json`` instead, :func:`write_run_curves`)."""
        keys = sorted({k for r in self.rows for k in r})
        return {"keys": keys, "values": [[r.get(k, float("nan")) for k in keys] for r in self.rows]}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        keys = state["keys"]
        self.rows = [{k: v for k, v in zip(keys, vals) if not math.isnan(v)} for vals in state["values"]]
        if self.rows:
            self.seconds_offset = self.rows[-1]["seconds"]
            self._t0 = time.monotonic()


class RunCurves:
    """A run's curves: records the stats the loop reads and draws them into the run folder.

    Args:
        run_dir: the run folder. steps: the run's total steps (sets the recording interval).
        title: the picture's title. metrics: the stats kept and drawn.
    """

    def __init__(self, run_dir: str | os.PathLike[str], steps: int, title: str = "",
                 metrics: tuple[str, ...] = ("loss", "psnr")) -> None:
        self.run_dir, self.title, self.metrics = Path(run_dir), title, metrics
        self.history = History.for_steps(steps)

    def on_step(self, forward: Any = None) -> Any:
        """A ``run_loop`` ``on_step`` callback that records, then calls ``forward`` (if any)."""

        def callback(step: int, stats: dict[str, float]) -> None:
            self.history.record(step, stats)
            if forward is not None:
                forward(step, stats)

        return callback

    def write(self) -> Path | None:
        return write_run_curves(self.run_dir, self.history, title=self.title, metrics=self.metrics)


def write_run_curves(run_dir: str | os.PathLike[str], history: History, title: str = "",
                     metrics: tuple[str, ...] = ("loss", "psnr")) -> Path | None:
    """Merge ``history`` into ``RUN/history.json`` and draw ``RUN/curves.png``.

    A resumed run appends to what earlier runs recorded (rows at or after the first new
    step are replaced), and its seconds continue from theirs. Only ``metrics`` are kept.
    """
    import json

    if not history.rows:
        return None
    run = Path(run_dir)
    new = [{k: v for k, v in r.items() if k in ("step", "seconds", *metrics)} for r in history.rows]
    prior: list[dict[str, float]] = []
    hist_file = run / "history.json"
    if hist_file.exists():
        try:
            prior = [r for r in json.loads(hist_file.read_text()) if isinstance(r, dict) and "step" in r]
        except (OSError, ValueError):
            prior = []
    if new and prior:
        prior = [r for r in prior if r["step"] < new[0]["step"]]
        offset = prior[-1]["seconds"] if prior else 0.0
        new = [{**r, "seconds": r["seconds"] + offset} for r in new]
    merged = History(rows=prior + new)
    with atomic_path(hist_file) as tmp:
        tmp.write_text(json.dumps(merged.rows))
    return write_curves(merged, run / "curves.png", title=title)


def write_curves(history: History, path: str | os.PathLike[str], title: str = "") -> Path | None:
    """Plot every metric (loss on a log axis) against step and seconds; None if nothing recorded."""
    rows = history.rows
    metrics = sorted({k for r in rows for k in r} - {"step", "seconds"})
    if not rows or not metrics:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics), 2, figsize=(10, 2.6 * len(metrics)), squeeze=False)
    for i, name in enumerate(metrics):
        pts = [(r["step"], r["seconds"], r[name]) for r in rows if name in r]
        for j, (xi, xlabel) in enumerate(((0, "step"), (1, "seconds"))):
            ax = axes[i][j]
            ax.plot([p[xi] for p in pts], [p[2] for p in pts], lw=1.2)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(name)
            if "loss" in name and all(p[2] > 0 for p in pts):
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return out
