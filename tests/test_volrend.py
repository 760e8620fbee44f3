"""Volume rendering: hand-computed cases, kernel vs torch reference, gradcheck, vulkan forward."""

import math

import pytest
import torch

from taichifield.render.volrend import (
    pack_info,
    render_weights,
    visible_samples,
    volume_render,
    volume_render_reference,
)


def _random_packed(n_rays: int, max_samples: int, dtype=torch.float32, seed: int = 0, scale: float = 3.0):
    """Random packed samples; some rays empty, some dense enough to terminate early."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_samples + 1, (n_rays,), generator=g)
    counts[0] = 0  # an empty ray at the start and at the end
    counts[-1] = 0
    S = int(counts.sum())
    ray_indices = torch.repeat_interleave(torch.arange(n_rays), counts).to(torch.int32)
    deltas = torch.rand(S, generator=g, dtype=dtype) * 0.2 + 0.01
    # t's increasing within each ray
    t_ends = torch.cumsum(deltas, 0)
    t_starts = t_ends - deltas
    sigmas = torch.rand(S, generator=g, dtype=dtype) * scale
    sigmas[ray_indices == 1] *= 50.0  # ray 1 terminates early
    rgbs = torch.rand(S, 3, generator=g, dtype=dtype)
    return sigmas, rgbs, t_starts, t_ends, ray_indices


def test_two_samples_by_hand():
    # ray 0: sigma=1 on [0,1], sigma=2 on [1,1.5]; ray 1: empty
    sig = torch.tensor([1.0, 2.0])
    rgb = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    ts, te = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.5])
    ri = torch.tensor([0, 0], dtype=torch.int32)
    c, d, o = volume_render(sig, rgb, ts, te, ri, 2, background=torch.tensor([0.0, 0.0, 1.0]))
    w0 = 1 - math.exp(-1.0)                      # T_0 = 1
    w1 = math.exp(-1.0) * (1 - math.exp(-1.0))   # T_1 = e^-1, alpha_1 = 1 - e^-(2*0.5)
    assert torch.allclose(c[0], torch.tensor([w0, w1, 1 - w0 - w1]), atol=1e-6)
    assert torch.allclose(d[0], torch.tensor(w0 * 0.5 + w1 * 1.25), atol=1e-6)
    assert torch.allclose(o, torch.tensor([w0 + w1, 0.0]), atol=1e-6)
    assert torch.allclose(c[1], torch.tensor([0.0, 0.0, 1.0]))  # empty ray shows the background


def test_early_termination():
    # first sample is opaque (T after it = e^-20 < 1e-4): the second contributes nothing
    sig = torch.tensor([20.0, 5.0])
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    ts, te = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0])
    ri = torch.zeros(2, dtype=torch.int32)
    sig.requires_grad_(True)
    rgbs = rgb.clone().requires_grad_(True)
    c, d, o = volume_render(sig, rgbs, ts, te, ri, 1)
    w = render_weights(sig.detach(), ts, te, ri, 1)
    assert w[1] == 0.0
    c.sum().backward()
    assert rgbs.grad[1].abs().sum() == 0.0 and sig.grad[1] == 0.0


@pytest.mark.parametrize("background", [None, "shared", "per_ray"])
def test_kernel_matches_reference(background):
    sig, rgb, ts, te, ri = _random_packed(40, 30)
    n = 40
    bg = {None: None, "shared": torch.rand(3), "per_ray": torch.rand(n, 3)}[background]
    outs = []
    for fn in (volume_render, volume_render_reference):
        s = sig.clone().requires_grad_(True)
        c = rgb.clone().requires_grad_(True)
        b = None if bg is None else bg.clone().requires_grad_(True)
        out = fn(s, c, ts, te, ri, n, background=b)
        loss = (out[0] * torch.linspace(0.5, 1.5, 3)).sum() + 0.3 * out[1].sum() + 0.7 * out[2].sum()
        loss.backward()
        outs.append((out, s.grad, c.grad, None if b is None else b.grad))
    (o1, gs1, gc1, gb1), (o2, gs2, gc2, gb2) = outs
    for a, b in zip(o1, o2):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert torch.allclose(gs1, gs2, atol=1e-4, rtol=1e-3)
    assert torch.allclose(gc1, gc2, atol=1e-5, rtol=1e-4)
    if gb1 is not None:
        assert torch.allclose(gb1, gb2, atol=1e-5)


def test_gradcheck(f64):
    sig, rgb, ts, te, ri = _random_packed(6, 8, dtype=torch.float64, seed=3, scale=2.0)
    sig.requires_grad_(True)
    rgb.requires_grad_(True)
    bg = torch.rand(3, dtype=torch.float64, requires_grad=True)

    def fn(s, c, b):
        return volume_render(s, c, ts, te, ri, 6, background=b)

    assert torch.autograd.gradcheck(fn, (sig, rgb, bg))


def test_no_samples_at_all():
    empty = torch.zeros(0)
    c, d, o = volume_render(empty, torch.zeros(0, 3), empty, empty, torch.zeros(0, dtype=torch.int32), 3,
                            background=torch.ones(3))
    assert torch.equal(c, torch.ones(3, 3)) and torch.equal(o, torch.zeros(3)) and torch.equal(d, torch.zeros(3))


def test_forward_on_each_arch(arch):
    sig, rgb, ts, te, ri = _random_packed(30, 20, seed=5)
    got = volume_render(sig, rgb, ts, te, ri, 30, background=torch.ones(3))
    want = volume_render_reference(sig, rgb, ts, te, ri, 30, background=torch.ones(3))
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_pack_info(arch):
    # a first call leaves other values in device memory: on Vulkan, write-only buffers are not
    # uploaded, so empty rays must be zeroed by the kernel itself
    pack_info(torch.arange(6, dtype=torch.int32).repeat_interleave(5), 6)
    ri = torch.tensor([1, 1, 3, 3, 3, 4], dtype=torch.int32)
    offsets, counts = pack_info(ri, 6)
    assert offsets.tolist() == [0, 0, 0, 2, 5, 0] and counts.tolist() == [0, 2, 0, 3, 1, 0]


def test_visible_samples(arch):
    sig, rgb, ts, te, ri = _random_packed(30, 20, seed=7)
    keep = visible_samples(sig, ts, te, ri, 30)
    # expected: transmittance before the sample (exclusive per-ray sum) still >= 1e-4
    tau = (sig * (te - ts)).double()
    excl = torch.stack([tau[(ri == ri[i]) & (torch.arange(len(ri)) < i)].sum() for i in range(len(ri))])
    want = torch.exp(-excl) >= 1e-4
    assert (~want).any() and torch.equal(keep, want)
    opaque_only = visible_samples(sig, ts, te, ri, 30, alpha_threshold=0.5)
    alpha = 1 - torch.exp(-sig * (te - ts))
    assert torch.equal(opaque_only, want & (alpha > 0.5))


def test_ray_indices_out_of_range_are_refused():
    x = torch.ones(2)
    with pytest.raises(ValueError, match="ray_indices"):
        volume_render(x, torch.ones(2, 3), x * 0, x, torch.tensor([0, 3], dtype=torch.int32), 3)
