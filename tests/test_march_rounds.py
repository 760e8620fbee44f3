"""Inference in rounds (render_rays_rounds) gives render_rays' image with fewer evaluations."""

import pytest
import torch

from taichifield.render.march_rounds import render_rays_rounds
from taichifield.render.raymarch import OccupancyGrid
from taichifield.render.render_rays import render_rays

AABB = torch.tensor([[-1.5] * 3, [1.5] * 3])


def _rays(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g)
    o = o / o.norm(dim=-1, keepdim=True) * 4.0
    d = torch.randn(n, 3, generator=g) * 0.4 - o
    return o, d / d.norm(dim=-1, keepdim=True)


def _field(o, d, density):
    """Two nested soft shells (a translucent outer one, an opaque core); colour from position."""
    def fn(t0, t1, ri):
        x = o[ri.long()] + d[ri.long()] * (0.5 * (t0 + t1))[:, None]
        r = x.norm(dim=-1)
        sigma = density * ((r < 0.5).float() + 0.3 * ((r > 0.8) & (r < 1.0)).float())
        return torch.sigmoid(x * 3.0), sigma
    return fn


def _grid(density):
    grid = OccupancyGrid(AABB, resolution=32)
    f = lambda x: density * ((x.norm(dim=-1) < 0.55) | ((x.norm(dim=-1) > 0.75) & (x.norm(dim=-1) < 1.05))).float()
    for step in range(0, 128, 16):
        grid.update(step, f)
    return grid


@pytest.mark.parametrize("density,budget", [(400.0, 64), (0.5, 64), (400.0, 1 << 18)])
def test_rounds_match_render_rays(arch, density, budget):
    o, d = _rays(300)
    fn = _field(o, d, density)
    grid = _grid(density)
    bg = torch.tensor([0.2, 0.5, 0.9])
    ref = render_rays(o, d, fn, grid=grid, near=2.0, far=6.0, background=bg)
    out = render_rays_rounds(o, d, fn, grid=grid, near=2.0, far=6.0, background=bg, budget=budget)
    # Each round restarts the marcher at the last t_end, so a sample can land a float rounding
    # away from its place in one long march and fall on the other side of a density step:
    # rare and small (one sample of a translucent shell), hence the max/mean pair of bounds.
    for key, tol in (("rgb", 5e-3), ("opacity", 5e-3), ("depth", 1.5e-2)):
        err = (out[key] - ref[key]).abs()
        assert err.max() < tol and err.mean() < 2e-4, key
    assert out["n_rounds"] >= 2
    if density > 100:  # opaque core: rays stop at it, so far fewer samples are evaluated
        assert out["n_samples"] < 0.6 * ref["n_samples"]


def test_rounds_per_ray_bounds_and_misses(arch):
    o, d = _rays(50, seed=3)
    o = torch.cat([o, torch.tensor([[0.0, 0.0, 4.0]])])
    d = torch.cat([d, torch.tensor([[0.0, 1.0, 0.0]])])  # misses the box
    fn = _field(o, d, 400.0)
    grid = _grid(400.0)
    near = torch.full((51,), 2.0)
    far = torch.full((51,), 6.0)
    far[:10] = 3.2  # stops before the core
    ref = render_rays(o, d, fn, grid=grid, near=near, far=far)
    out = render_rays_rounds(o, d, fn, grid=grid, near=near, far=far, budget=64)
    assert torch.allclose(out["rgb"], ref["rgb"], atol=5e-3)
    assert out["opacity"][-1] == 0 and out["rgb"][-1].abs().max() == 0


def test_an_earlier_stop_changes_pixels_by_at_most_the_transmittance_left(arch):
    o, d = _rays(300, seed=5)
    fn = _field(o, d, 40.0)  # soft enough that rays spend many samples below 1e-2 transmittance
    grid = _grid(40.0)
    bg = torch.tensor([0.2, 0.5, 0.9])
    full = render_rays_rounds(o, d, fn, grid=grid, near=2.0, far=6.0, background=bg, budget=64)
    early = render_rays_rounds(o, d, fn, grid=grid, near=2.0, far=6.0, background=bg, budget=64,
                               min_transmittance=1e-2)
    assert early["n_samples"] < 0.9 * full["n_samples"]
    # a ray stopped with transmittance T < 1e-2 shows T * background instead of what was behind
    assert (early["rgb"] - full["rgb"]).abs().max() < 1e-2 + 1e-4
    assert (early["opacity"] - full["opacity"]).abs().max() < 1e-2 + 1e-4
