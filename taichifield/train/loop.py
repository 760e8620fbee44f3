"""The training loop skeleton shared by every trainer (image, NeRF, SDF).

It owns the things every serious trainer needs and none should re-implement:

* a step budget and a wall-clock budget (``--time-budget``: stop and save);
* periodic checkpoints (every N steps and every M seconds), and a final one;
* Ctrl-C / SIGTERM: finish the current step, save, return (``stopped="signal"``);
* numerical safety: a non-finite loss or gradient skips the step, halves the
  learning rate and is reported; too many in a row raise :class:`TrainingDiverged`;
* RNG state capture/restore so ``--resume`` continues exactly like an
  uninterrupted run (all randomness must come from the torch global RNG or
  generators passed to :func:`rng_state`).

The trainer provides callables; the loop knows no model (nerfacc style)::

    def step_fn(step: int) -> dict[str, float] | None:
        loss = ...; optimizer.zero_grad(); loss.backward()
        if not guard.check(loss): return None          # skipped
        optimizer.step(); return {"loss": loss.item()}

    result = run_loop(step_fn, start_step=0, total_steps=5000, time_budget=300,
                      save=lambda step: save_checkpoint(...), on_step=bar_update)
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch

from ..errors import TaichiFieldError

__all__ = [
    "adam",
    "TrainingDiverged",
    "NonFiniteGuard",
    "LoopResult",
    "run_loop",
    "rng_state",
    "set_rng_state",
    "stop_on_signals",
    "psnr",
]

log = logging.getLogger(__name__)


class TrainingDiverged(TaichiFieldError):
    """Too many consecutive non-finite losses/gradients, even after lowering the lr."""


class NonFiniteGuard:
    """Detects non-finite loss or gradients; skips the step and backs the lr off.

    Args:
        optimizer: its param groups' ``lr`` is multiplied by ``backoff`` on each bad step.
        backoff: lr factor per bad step.
        max_consecutive: bad steps in a row before :class:`TrainingDiverged`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, backoff: float = 0.5, max_consecutive: int = 20) -> None:
        self.optimizer = optimizer
        self.backoff = backoff
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total_skipped = 0

    def _params(self) -> Iterable[torch.Tensor]:
        for group in self.optimizer.param_groups:
            yield from group["params"]

    def check(self, loss: torch.Tensor) -> bool:
        """Call after ``backward()``; True means the step is safe to take."""
        finite = bool(torch.isfinite(loss).all())
        if finite:
            grads = [p.grad for p in self._params() if p.grad is not None]
            # one fused pass (10x cheaper than isfinite per tensor on a hash table); NaN/inf
            # propagate into the norms, and a norm that overflows float32 means a step
            # that would wreck the weights anyway
            finite = not grads or bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all())
        if finite:
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.total_skipped += 1
        self.optimizer.zero_grad(set_to_none=True)
        for group in self.optimizer.param_groups:
            group["lr"] *= self.backoff
        lr = self.optimizer.param_groups[0]["lr"]
        log.warning("non-finite loss or gradient: step skipped, lr lowered to %.3g", lr)
        if self.consecutive >= self.max_consecutive:
            raise TrainingDiverged(
                f"training diverged: {self.consecutive} non-finite steps in a row (lr now {lr:.3g}); "
                "try a lower --lr"
            )
        return False


@dataclass
class LoopResult:
    """What happened: ``stopped`` is 'steps', 'time_budget' or 'signal'."""

    step: int
    seconds: float
    stopped: str
    skipped_steps: int = 0
    last_stats: dict[str, float] = field(default_factory=dict)


class _StopFlag:
    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def stop_on_signals(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[_StopFlag]:
    """While active, SIGINT/SIGTERM set a flag instead of killing the process.

    A second SIGINT raises KeyboardInterrupt as usual. Outside the main thread
    (where Python cannot install handlers) this is a no-op flag.
    """
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.getsignal(s) for s in signums}

    def handler(signum: int, frame: Any) -> None:
        if flag and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.signum = signum
        log.warning("signal %d received: saving a checkpoint and stopping", signum)

    for s in signums:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_loop(
    step_fn: Callable[[int], dict[str, float] | None],
    *,
    start_step: int,
    total_steps: int,
    time_budget: float | None = None,
    save: Callable[[int], Any] | None = None,
    checkpoint_every: int = 1000,
    checkpoint_seconds: float = 120.0,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    guard: NonFiniteGuard | None = None,
) -> LoopResult:
    """Run ``step_fn(step)`` for steps ``start_step .. total_steps-1`` within the budgets.

    ``step_fn`` returns stats, or None for a skipped step (it still counts as a step,
    so a resumed run stays aligned with an uninterrupted one). ``save(step)`` is
    called with the number of completed steps: periodically, and once at the end.
    ``on_step(step, stats)`` is for progress reporting. Budgets are checked between
    steps; ``time_budget`` counts the seconds of this call only.
    """
    t0 = time.monotonic()
    last_save = t0
    step = start_step
    stats: dict[str, float] = {}
    stopped = "steps"
    with stop_on_signals() as stop:
        while step < total_steps:
            if stop:
                stopped = "signal"
                break
            if time_budget is not None and time.monotonic() - t0 >= time_budget:
                stopped = "time_budget"
                break
            out = step_fn(step)
            step += 1
            if out is not None:
                stats = out
            if on_step is not None:
                on_step(step, stats)
            now = time.monotonic()
            if save is not None and step < total_steps and (
                step % max(checkpoint_every, 1) == 0 or now - last_save >= checkpoint_seconds
            ):
                save(step)
                last_save = time.monotonic()
        if save is not None:
            save(step)
    return LoopResult(
        step=step,
        seconds=time.monotonic() - t0,
        stopped=stopped,
        skipped_steps=guard.total_skipped if guard else 0,
        last_stats=stats,
    )


def adam(params: Any, lr: float, **kwargs: Any) -> torch.optim.Adam:
    """``torch.optim.Adam``, fused (one pass per tensor instead of ~7) when every parameter
    is a floating-point CPU or CUDA tensor: 4-5x cheaper steps on a hash table. Same
    update rule and the same ``state_dict`` layout as the unfused version."""
    groups = list(params)
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = bool(tensors) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)
    return torch.optim.Adam(groups, lr=lr, fused=fused or None, **kwargs)


def rng_state(*generators: torch.Generator) -> dict[str, Any]:
    """Tensors-only RNG snapshot (checkpoint-safe under ``weights_only=True``)."""
    return {
        "torch": torch.get_rng_state(),
        "generators": [g.get_state() for g in generators],
    }


def set_rng_state(state: dict[str, Any] | None, *generators: torch.Generator) -> None:
    """Restore what :func:`rng_state` captured (no-op for None)."""
    if not state:
        return
    torch.set_rng_state(state["torch"])
    for g, s in zip(generators, state.get("generators", [])):
        g.set_state(s)


def psnr(mse: float) -> float:
    """PSNR in dB of a mean squared error on [0,1] images."""
    return -10.0 * math.log10(max(mse, 1e-12))
