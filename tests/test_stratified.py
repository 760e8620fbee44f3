"""Stratified sampling and importance resampling."""

import torch

from taichifield.render.stratified import sample_importance, sample_stratified
from taichifield.render.volrend import render_weights


def test_stratified_tiles_near_far():
    o, d = torch.zeros(5, 3), torch.tensor([[0.0, 0.0, -1.0]]).expand(5, 3)
    for perturb in (False, True):
        t0, t1, ri = sample_stratified(o, d, 2.0, 6.0, 8, perturb=perturb, generator=torch.Generator().manual_seed(1))
        assert t0.shape == (40,) and ri.dtype == torch.int32
        assert torch.equal(ri, torch.arange(5, dtype=torch.int32).repeat_interleave(8))
        t0, t1 = t0.view(5, 8), t1.view(5, 8)
        assert torch.all(t0[:, 0] == 2.0) and torch.allclose(t1[:, -1], torch.full((5,), 6.0))
        assert torch.equal(t0[:, 1:], t1[:, :-1])  # contiguous, no gaps or overlaps
        assert torch.all(t1 > t0)
        if not perturb:
            assert torch.allclose(t1 - t0, torch.full((5, 8), 0.5))
        else:
            assert not torch.allclose(t1 - t0, torch.full((5, 8), 0.5))


def test_stratified_per_ray_bounds():
    o, d = torch.zeros(2, 3), torch.ones(2, 3)
    t0, t1, _ = sample_stratified(o, d, torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]), 4, perturb=False)
    assert torch.allclose(t0.view(2, 4)[1], torch.tensor([2.0, 2.5, 3.0, 3.5]))
    assert torch.allclose(t1.view(2, 4)[0], torch.tensor([1.25, 1.5, 1.75, 2.0]))


def test_stratified_midpoints_are_uniform_within_strata():
    g = torch.Generator().manual_seed(0)
    t0, t1, _ = sample_stratified(torch.zeros(4000, 3), torch.ones(4000, 3), 0.0, 1.0, 4, generator=g)
    mid = (0.5 * (t0 + t1)).view(-1, 4)
    # each midpoint stays in its stratum's neighbourhood and averages to the stratum centre
    assert torch.allclose(mid.mean(0), torch.tensor([0.125, 0.375, 0.625, 0.875]), atol=0.01)


def test_importance_concentrates_on_the_surface():
    # one ray with a thin opaque slab at t in [3.0, 3.25]; a second ray with no samples
    t0, t1, ri = sample_stratified(torch.zeros(1, 3), torch.ones(1, 3), 2.0, 6.0, 16, perturb=False)
    sig = torch.where((t0 >= 3.0) & (t1 <= 3.25), 10.0, 0.0)
    w = render_weights(sig, t0, t1, ri, 1)
    f0, f1, fi = sample_importance(t0, t1, ri, w, 32)
    assert f0.shape == (32,) and torch.all(fi == 0)
    assert torch.all(f1 >= f0) and torch.equal(f0[1:], f1[:-1])
    inside = ((f0 >= 3.0 - 1e-6) & (f1 <= 3.25 + 1e-6)).sum()
    assert inside >= 28  # nearly all the new samples land in the slab
    assert f0[0] >= 2.0 and f1[-1] <= 6.0


def test_importance_follows_the_pdf_and_skips_empty_rays():
    # two rays (0 and 2; ray 1 has none): weights 1:3 on two equal intervals
    t0 = torch.tensor([0.0, 1.0, 0.0, 1.0])
    t1 = torch.tensor([1.0, 2.0, 1.0, 2.0])
    ri = torch.tensor([0, 0, 2, 2], dtype=torch.int32)
    w = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f0, f1, fi = sample_importance(t0, t1, ri, w, 4, eps=0.0)
    assert torch.equal(fi, torch.tensor([0] * 4 + [2] * 4, dtype=torch.int32))
    # quantiles 0, .25, .5, .75, 1 of the CDF: ray 0 -> t = 0, 1, 1+1/3, 1+2/3, 2
    assert torch.allclose(f0[:4], torch.tensor([0.0, 1.0, 4 / 3, 5 / 3]), atol=1e-6)
    assert torch.allclose(f1[4:], torch.tensor([1 / 3, 2 / 3, 1.0, 2.0]), atol=1e-6)
    g = torch.Generator().manual_seed(0)
    p0, p1, _ = sample_importance(t0, t1, ri, w, 4, perturb=True, generator=g)
    assert torch.all(p1 >= p0) and not torch.allclose(p0, f0)
    e0, e1, ei = sample_importance(t0[:0], t1[:0], ri[:0], w[:0], 4)
    assert e0.numel() == 0 and ei.numel() == 0
