"""The shared training loop: budgets, checkpoints, signals, non-finite guard, RNG resume."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest
import torch

from taichifield.train import loop as loop_module
from taichifield.train.loop import (NonFiniteGuard, RunProgress, TrainingDiverged, adam, lr_schedule, rng_state, run_loop,
                                    set_rng_state)


def test_loop_runs_all_steps_and_saves_at_end():
    saved: list[int] = []
    seen: list[int] = []
    res = run_loop(lambda s: seen.append(s) or {"loss": float(s)}, start_step=3, total_steps=10,
                   save=saved.append, checkpoint_every=4)
    assert seen == list(range(3, 10))
    assert res.step == 10 and res.stopped == "steps"
    assert saved == [4, 8, 10]
    assert res.last_stats == {"loss": 9.0}


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The loop's ``time.monotonic`` replaced by a clock that only the test advances (seconds)."""
    clock = [100.0]  # not 0: the budget counts from the call, not from the clock's origin
    monkeypatch.setattr(loop_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    return clock


def test_loop_time_budget_stops_and_saves(fake_clock: list[float]):
    saved: list[int] = []

    def step(s: int) -> dict:
        fake_clock[0] += 0.25  # every step "takes" a quarter of a second
        return {}

    res = run_loop(step, start_step=7, total_steps=10**9, time_budget=1.0, save=saved.append,
                   checkpoint_seconds=1e9, checkpoint_every=10**9)
    assert res.stopped == "time_budget"
    assert res.step == 7 + 4  # 4 steps fit in 1 s, checked between steps
    assert res.seconds == 1.0
    assert saved == [res.step]


def test_loop_saves_every_checkpoint_seconds(fake_clock: list[float]):
    saved: list[int] = []

    def step(s: int) -> dict:
        fake_clock[0] += 0.25
        return {}

    res = run_loop(step, start_step=0, total_steps=5, save=saved.append, checkpoint_seconds=0.5, checkpoint_every=10**9)
    assert res.stopped == "steps"
    assert saved == [2, 4, 5]  # every 0.5 s of (fake) time, and once at the end


def test_loop_sigterm_saves_and_stops():
    saved: list[int] = []

    def step(s: int):
        if s == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return {}

    res = run_loop(step, start_step=0, total_steps=100, save=saved.append, checkpoint_every=10**9)
    assert res.stopped == "signal" and res.step == 6
    assert saved == [6]


def _bad_step(opt: torch.optim.Optimizer, w: torch.nn.Parameter, guard: NonFiniteGuard, bad: bool) -> bool:
    opt.zero_grad()
    loss = (w * (float("nan") if bad else 1.0)).sum()
    loss.backward()
    guard.step(loss)
    return guard.sync()


@pytest.mark.parametrize("make_opt", [lambda p: torch.optim.SGD(p, lr=0.1), lambda p: adam(p, lr=0.1)],
                         ids=["sgd-host-check", "fused-adam-device-skip"])
def test_nonfinite_guard_skips_and_backs_off(make_opt):
    w = torch.nn.Parameter(torch.ones(3))
    opt = make_opt([w])
    guard = NonFiniteGuard(opt, backoff=0.5, max_consecutive=3)
    assert not _bad_step(opt, w, guard, bad=True)
    assert torch.equal(w.detach(), torch.ones(3))  # no NaN leaked into the weights
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05) and guard.lr_scale == pytest.approx(0.5)
    assert _bad_step(opt, w, guard, bad=False)
    assert not torch.equal(w.detach(), torch.ones(3))  # a finite step is taken
    assert guard.total_skipped == 1
    with pytest.raises(TrainingDiverged, match="non-finite steps in a row"):
        for _ in range(3):
            _bad_step(opt, w, guard, bad=True)


def test_nonfinite_guard_counts_on_the_device_between_syncs():
    # what a GPU run does: several steps, one sync; the bad ones were skipped in the optimiser
    w = torch.nn.Parameter(torch.ones(3))
    opt = adam([w], lr=0.1)
    guard = NonFiniteGuard(opt, backoff=0.5, max_consecutive=3)
    for bad in (False, True, True, False):
        opt.zero_grad()
        loss = (w * (float("nan") if bad else 1.0)).sum()
        loss.backward()
        guard.step(loss)
    assert opt.state[w]["step"] == 2  # the two bad steps never counted as Adam steps
    assert torch.isfinite(w).all()
    assert guard.sync() and guard.total_skipped == 2 and guard.lr_scale == pytest.approx(0.25)
    for _ in range(3):  # three in a row, read at once, still diverge
        opt.zero_grad()
        (w * float("inf")).sum().backward()
        guard.step((w * float("inf")).sum())
    with pytest.raises(TrainingDiverged):
        guard.sync()


def test_rng_state_roundtrip():
    g = torch.Generator().manual_seed(1)
    state = rng_state(g)
    a = torch.rand(3), torch.rand(3, generator=g)
    set_rng_state(state, g)
    b = torch.rand(3), torch.rand(3, generator=g)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_guard_catches_one_bad_gradient_entry_among_many(bad):
    big = torch.nn.Parameter(torch.zeros(1 << 16))
    small = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([small, big], lr=0.1)
    guard = NonFiniteGuard(opt)
    big.grad, small.grad = torch.ones_like(big), torch.ones_like(small)
    assert float(guard.found_inf(torch.tensor(1.0))) == 0.0
    big.grad[12345] = bad
    assert float(guard.found_inf(torch.tensor(1.0))) == 1.0
    guard.step(torch.tensor(1.0))
    assert torch.equal(big.detach(), torch.zeros(1 << 16))  # nothing reaches the weights


def test_adam_is_fused_on_cpu_and_matches_the_unfused_update():
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(1000)), torch.nn.Parameter(torch.randn(7, 3))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    fused = adam(a, lr=1e-2, betas=(0.9, 0.99), eps=1e-15)
    plain = torch.optim.Adam(b, lr=1e-2, betas=(0.9, 0.99), eps=1e-15)
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    for _ in range(5):
        grads = [torch.randn_like(p) for p in a]
        for p, q, g in zip(a, b, grads):
            p.grad, q.grad = g.clone(), g.clone()
        fused.step()
        plain.step()
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    # same state layout: an unfused checkpoint loads into the fused optimizer
    fused.load_state_dict(plain.state_dict())
    # groups (as the NeRF trainer passes them) work too
    groups = adam([{"params": [a[0]], "lr": 1e-3}, {"params": [a[1]]}], lr=1e-2)
    assert groups.param_groups[0]["lr"] == 1e-3 and groups.defaults["fused"]


def test_run_progress_without_a_budget_is_the_step_fraction():
    p = RunProgress(200)
    assert [p(0), p(50), p(200), p(400)] == [0.0, 0.25, 1.0, 1.0]
    assert p(10) == 0.05  # a pure function of the step: resumed runs repeat the schedule exactly


def test_run_progress_of_an_old_checkpoint_starts_from_its_step(fake_clock: list[float]):
    """A checkpoint without a stored progress resumes at ``step / total_steps``."""
    p = RunProgress(200, time_budget=100.0, start=None, start_step=50)
    assert p(50) == pytest.approx(0.25)
    fake_clock[0] += 50.0
    assert p(51) == pytest.approx(0.25 + 0.75 * 0.5)


def test_run_progress_follows_the_time_budget_when_it_ends_the_run_first(fake_clock: list[float]):
    p = RunProgress(20000, time_budget=600.0)
    assert p(0) == 0.0  # the clock starts at the first call
    fake_clock[0] += 300.0
    assert p(10) == pytest.approx(0.5)  # 10 of 20000 steps, but half of the budget
    fake_clock[0] += 60.0
    assert p(12) == pytest.approx(0.6)
    assert p(15000) == pytest.approx(0.75)  # the steps can be ahead of the clock
    assert p(14000) == pytest.approx(0.75)  # and it never goes back
    fake_clock[0] += 1000.0
    assert p(16000) == 1.0


def test_run_progress_of_a_resumed_run_spends_its_new_budget_on_the_rest(fake_clock: list[float]):
    p = RunProgress(20000, time_budget=100.0, start=0.5)
    assert p(700) == pytest.approx(0.5)
    fake_clock[0] += 50.0
    assert p(800) == pytest.approx(0.75)


def test_nerf_lr_decays_within_a_time_budget(fake_clock: list[float]):
    """A 600 s CPU run makes ~1.4k of its 20k steps: its lr must still drop at 50/75/90% of the run."""
    from taichifield.train.nerf import _lr_factor

    w = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([w], lr=1e-2)
    progress = RunProgress(20000, time_budget=600.0)
    sched = lr_schedule(opt, 1e-2, lambda s: _lr_factor(progress(s), True), NonFiniteGuard(opt))
    lrs = []
    for _ in range(4):
        fake_clock[0] += 160.0  # 4 steps of 160 s: 27%, 53%, 80%, 100% of the budget
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([1e-2, 1e-2 * 0.33, 1e-2 * 0.33**2, 1e-2 * 0.33**3])


def test_the_cli_bar_follows_the_time_budget_when_it_ends_the_run_first() -> None:
    from taichifield.cli.common import Progress, run_fraction

    assert run_fraction(100, 20000, 150.0, 600.0) == 0.25  # 600 s budget: a quarter spent
    assert run_fraction(15000, 20000, 150.0, 600.0) == 0.75  # the steps are further
    assert run_fraction(100, 20000, 900.0, 600.0) == 1.0 and run_fraction(50, 200, 1e6, None) == 0.25
    assert run_fraction(3, None, 10.0, None) == 0.0
    bar = Progress("nerf", total=20000, quiet=True, unit="step", time_budget=600.0)
    with bar:
        bar.update(completed=10, info="loss 0.1")
    assert bar.completed == 10 and bar.info == "loss 0.1"
