"""The training loop skeleton shared by every trainer (image, NeRF, SDF).

It owns the things every serious trainer needs and none should re-implement:

* a step budget and a wall-clock budget (``--time-budget``: stop and save);
* periodic checkpoints (every N steps and every M seconds), and a final one;
* Ctrl-C / SIGTERM: finish the current step, save, return (``stopped="signal"``);
* numerical safety: a non-finite loss or gradient skips the step (decided on the device,
  no host sync), halves the learning rate and is reported; too many in a row raise
  :class:`TrainingDiverged`;
* stats stay tensors until they are logged (every ``log_every`` steps);
* RNG state capture/restore so ``--resume`` continues exactly like an
  uninterrupted run (all randomness must come from the torch global RNG or
  generators passed to :func:`rng_state`).

The trainer provides callables; the loop knows no model (nerfacc style)::

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        loss = ...; optimizer.zero_grad(); loss.backward()
        guard.step(loss); scheduler.step()              # skipped on the device if not finite
        return {"loss": loss.detach()}                  # read by the loop when it logs

    result = run_loop(step_fn, start_step=0, total_steps=5000, time_budget=300,
                      save=lambda step: save_checkpoint(...), on_step=bar_update)
"""

from __future__ import annotations

import contextlib
import logging
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
    "lr_schedule",
    "RunProgress",
    "log_interval",
    "LoopResult",
    "run_loop",
    "rng_state",
    "set_rng_state",
    "stop_on_signals",
]

log = logging.getLogger(__name__)


class TrainingDiverged(TaichiFieldError):
    """Too many consecutive non-finite losses/gradients, even after lowering the lr."""


class NonFiniteGuard:
    """Takes the optimiser step unless the loss or a gradient is non-finite, without a host sync.

    ``guard.step(loss)`` replaces ``optimizer.step()``. The finite test (one fused norm over
    all gradients) stays on the device: a fused Adam receives it as ``found_inf`` and skips
    the update in its kernel (the mechanism ``torch.amp.GradScaler`` uses), so a bad step
    costs no sync. The counters live on the device too; :meth:`sync` reads them (one sync),
    which the loop does every ``log_every`` steps (every step on the CPU, where reading is
    free). After a sync that saw bad steps, :attr:`lr_scale` is multiplied by ``backoff``
    once per bad step: trainers multiply their schedule by it (see :func:`lr_schedule`).

    Args:
        optimizer: the optimiser to step.
        backoff: lr factor per bad step.
        max_consecutive: bad steps in a row before :class:`TrainingDiverged`.
        lr_scale: the back-off carried over from a checkpoint.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, backoff: float = 0.5, max_consecutive: int = 20,
                 lr_scale: float = 1.0) -> None:
        self.optimizer = optimizer
        self.backoff = backoff
        self.max_consecutive = max_consecutive
        self.lr_scale = float(lr_scale)
        self.total_skipped = 0
        self.last_finite = True
        self._fused = all(g.get("fused") for g in optimizer.param_groups)
        self._counters: torch.Tensor | None = None  # [skipped, consecutive, max consecutive] since the last sync

    def _params(self) -> Iterable[torch.Tensor]:
        for group in self.optimizer.param_groups:
            yield from group["params"]

    def found_inf(self, loss: torch.Tensor) -> torch.Tensor:
        """() float32 on the loss's device: 1 when the loss or a gradient is non-finite."""
        bad = ~torch.isfinite(loss.detach()).all()
        grads = [p.grad for p in self._params() if p.grad is not None]
        if grads:
            # one fused pass (10x cheaper than isfinite per tensor on a hash table); NaN/inf
            # propagate into the norms, and a norm that overflows float32 means a step
            # that would wreck the weights anyway
            norms = torch.stack(torch._foreach_norm(grads))
            bad = bad | ~torch.isfinite(norms).all()
        return bad.float()

    def step(self, loss: torch.Tensor) -> None:
        """Call after ``backward()``: the optimiser step, skipped where it is not finite."""
        found = self.found_inf(loss)
        if self._counters is None:
            self._counters = torch.zeros(3, dtype=torch.float32, device=found.device)
        c = self._counters
        consecutive = (c[1] + 1.0) * found
        self._counters = torch.stack([c[0] + found, consecutive, torch.maximum(c[2], consecutive)])
        if self._fused:
            self.optimizer.found_inf = found  # type: ignore[attr-defined]
            self.optimizer.step()
        elif not bool(found):  # an unfused optimiser cannot skip on the device
            self.optimizer.step()

    def sync(self) -> bool:
        """Read the device counters (one host sync); back the lr off for the bad steps since the
        last sync. Returns whether the last step was finite.

        Raises:
            TrainingDiverged: ``max_consecutive`` bad steps in a row.
        """
        if self._counters is None:
            return self.last_finite
        skipped, consecutive, worst = (int(v) for v in self._counters.tolist())
        self._counters = torch.stack([self._counters[0] * 0, self._counters[1], self._counters[1]])
        self.last_finite = consecutive == 0
        if skipped:
            self.total_skipped += skipped
            self.lr_scale *= self.backoff ** skipped
            for group in self.optimizer.param_groups:  # the live lr too: the next step already backs off
                group["lr"] *= self.backoff ** skipped
            log.warning("non-finite loss or gradient: %d step(s) skipped, lr scale lowered to %.3g", skipped, self.lr_scale)
        if worst >= self.max_consecutive:
            raise TrainingDiverged(
                f"training diverged: {worst} non-finite steps in a row (lr scale now {self.lr_scale:.3g}); "
                "try a lower --lr"
            )
        return self.last_finite


GPU_LOG_EVERY = 25
"""Steps between host reads of the stats on a GPU (on the CPU every step: reading is free)."""


def log_interval(device: torch.device) -> int:
    """``log_every`` for :func:`run_loop` on ``device``: 1 on the CPU, :data:`GPU_LOG_EVERY` elsewhere."""
    return 1 if torch.device(device).type == "cpu" else GPU_LOG_EVERY


class RunProgress:
    """How far a run is, in [0, 1]: what every schedule (lr decay, annealing) reads.

    Without a time budget it is ``step / total_steps``: deterministic, so a resumed run
    continues exactly like an uninterrupted one. With ``--time-budget`` the budget usually
    ends the run long before ``total_steps`` (on the CPU a 600 s NeRF run makes ~1.4k of
    20k steps), and a step-only schedule would never decay; so it is
    ``max(step / total_steps, f0 + (1 - f0) * seconds / time_budget)``, with ``seconds``
    counted from the first call and ``f0`` the progress a resumed run had reached (its new
    budget covers the rest of the schedule); then it never decreases. Trainers store
    :attr:`last` in their checkpoints and pass it back as ``start`` (a checkpoint from before
    it was stored: None, and ``start_step / total_steps`` is used).
    """

    def __init__(self, total_steps: int, time_budget: float | None = None, start: float | None = None,
                 start_step: int = 0) -> None:
        self.total_steps = max(int(total_steps), 1)
        self.time_budget = float(time_budget) if time_budget else None
        f0 = start_step / self.total_steps if start is None else float(start)
        self.start = min(max(f0, 0.0), 1.0)
        self.last = self.start
        self._t0: float | None = None

    def __call__(self, step: int) -> float:
        """Progress at ``step`` (the clock starts at the first call)."""
        p = min(step / self.total_steps, 1.0)
        if self.time_budget is None:  # a pure function of the step
            self.last = p
            return p
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        p = max(p, self.start + (1.0 - self.start) * (now - self._t0) / self.time_budget)
        self.last = max(self.last, min(p, 1.0))
        return self.last


def lr_schedule(optimizer: torch.optim.Optimizer, base_lr: float, factor: Callable[[int], float],
                guard: NonFiniteGuard, start_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` whose factor is ``factor(step) * guard.lr_scale``: the schedule times the
    back-off owned by the guard (nothing infers the back-off from the optimiser's lr).

    Every group's base is ``base_lr`` (the configured lr, also after a resume, whose optimiser
    state holds a decayed one); the optimiser's lr is set for ``start_step``. Call
    ``scheduler.step()`` after each optimiser step."""
    for group in optimizer.param_groups:
        group["initial_lr"] = float(base_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step) * guard.lr_scale,
                                                  last_epoch=-1)
    scheduler.last_epoch = start_step
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = base * factor(start_step) * guard.lr_scale
    return scheduler


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


def _numbers(stats: dict[str, Any]) -> dict[str, float]:
    """Stats as Python floats: one host transfer per device for all tensor entries."""
    out = {k: float(v) for k, v in stats.items() if not isinstance(v, torch.Tensor)}
    by_device: dict[torch.device, list[str]] = {}
    for k, v in stats.items():
        if isinstance(v, torch.Tensor):
            by_device.setdefault(v.device, []).append(k)
    for keys in by_device.values():
        values = torch.stack([stats[k].detach().float().reshape(()) for k in keys]).tolist()
        out.update(zip(keys, values))
    return out


def run_loop(
    step_fn: Callable[[int], dict[str, Any] | None],
    *,
    start_step: int,
    total_steps: int,
    time_budget: float | None = None,
    save: Callable[[int], Any] | None = None,
    checkpoint_every: int = 1000,
    checkpoint_seconds: float = 120.0,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    guard: NonFiniteGuard | None = None,
    log_every: int = 1,
) -> LoopResult:
    """Run ``step_fn(step)`` for steps ``start_step .. total_steps-1`` within the budgets.

    ``step_fn`` returns stats (floats or 0-dim tensors, which stay on the device), or None
    for a skipped step (it still counts as a step, so a resumed run stays aligned with an
    uninterrupted one). Every ``log_every`` steps (and before each save and at the end)
    the loop reads the stats and the guard's counters: that is the only host sync the loop
    makes, so ``log_every=1`` suits the CPU and a larger value a GPU. ``save(step)`` is
    called with the number of completed steps: periodically, and once at the end.
    ``on_step(step, stats)`` gets the stats last read, as floats (progress reporting).
    Budgets are checked between steps; ``time_budget`` counts the seconds of this call only.
    """
    t0 = time.monotonic()
    last_save = t0
    step = start_step
    stats: dict[str, float] = {}
    pending: dict[str, Any] | None = None
    stopped = "steps"
    every = max(int(log_every), 1)

    def read() -> None:
        nonlocal stats, pending
        finite = guard.sync() if guard is not None else True
        if pending is not None and finite:
            stats = _numbers(pending)
        pending = None

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
                pending = out
            now = time.monotonic()
            due_save = save is not None and step < total_steps and (
                step % max(checkpoint_every, 1) == 0 or now - last_save >= checkpoint_seconds)
            if step % every == 0 or due_save:
                read()
            if on_step is not None:
                on_step(step, stats)
            if due_save:
                save(step)  # type: ignore[misc]
                last_save = time.monotonic()
        read()
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
    """Tensors-only RNG snapshot (checkpoint-safe under ``weights_only=True``): the torch CPU
    RNG, every CUDA device's default generator when CUDA is initialised (the NeRF step draws
    its rays there) and the given generators. numpy's RNG is not used by the trainers."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "generators": [g.get_state() for g in generators],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any] | None, *generators: torch.Generator) -> None:
    """Restore what :func:`rng_state` captured (no-op for None)."""
    if not state:
        return
    torch.set_rng_state(state["torch"])
    for g, s in zip(generators, state.get("generators", [])):
        g.set_state(s)
    if state.get("cuda") and torch.cuda.is_available():
        states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
