"""Occupancy grid + marcher: against stratified sampling on an analytic sphere, updates, state."""

import math

import pytest
import torch

from taichifield.errors import CheckpointError
from taichifield.render.raymarch import OccupancyGrid
from taichifield.render.stratified import sample_stratified
from taichifield.render.volrend import volume_render

AABB = torch.tensor([[-1.5] * 3, [1.5] * 3])
RADIUS, SIGMA = 0.5, 20.0


def sphere_density(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.norm(dim=-1) < RADIUS, SIGMA, 0.0)


def sphere_colour(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([0.5 + 0.5 * x[:, 0], 0.5 + 0.5 * x[:, 1], torch.full_like(x[:, 0], 0.3)], -1).clamp(0, 1)


def _rays(n: int, seed: int = 0):
    """Rays from radius 4 aimed at random points near the origin (some miss the sphere)."""
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g)
    o = o / o.norm(dim=-1, keepdim=True) * 4.0
    d = torch.randn(n, 3, generator=g) * 0.4 - o
    return o, d / d.norm(dim=-1, keepdim=True)


def _render(o, d, t0, t1, ri):
    p = o[ri.long()] + (0.5 * (t0 + t1))[:, None] * d[ri.long()]
    rgb, _, opacity = volume_render(sphere_density(p), sphere_colour(p), t0, t1, ri, o.shape[0])
    return rgb, opacity


def _warm_grid(resolution=32, n_levels=1):
    grid = OccupancyGrid(AABB, resolution=resolution, n_levels=n_levels)
    g = torch.Generator().manual_seed(1)
    for step in range(0, 256, 16):
        assert grid.update(step, sphere_density, generator=g)
    return grid


def test_marcher_matches_stratified_on_a_sphere(arch):
    grid = _warm_grid()
    o, d = _rays(300)
    t0, t1, ri = grid.sample(o, d, 2.0, 6.0)
    s0, s1, si = sample_stratified(o, d, 2.0, 6.0, 1024, perturb=False)
    (c_m, a_m), (c_s, a_s) = _render(o, d, t0, t1, ri), _render(o, d, s0, s1, si)
    assert a_s.max() > 0.99 and (a_s < 0.01).any()  # both hits and misses in the bundle
    assert (a_m - a_s).abs().mean() < 0.01 and (a_m - a_s).abs().max() < 0.1
    assert (c_m - c_s).abs().mean() < 0.01
    assert t0.numel() * 10 < s0.numel()  # far fewer samples
    # packing: sorted by ray, increasing t within a ray, within [near, far] and the box
    assert torch.all(ri[1:] >= ri[:-1]) and torch.all(t1 > t0)
    same = ri[1:] == ri[:-1]
    assert torch.all(t0[1:][same] >= t1[:-1][same] - 1e-6)
    assert t0.min() >= 2.0 - 1e-5 and t1.max() <= 6.0 + 1e-5


def test_rays_missing_the_box_get_no_samples(arch):
    grid = OccupancyGrid(AABB, resolution=16)  # fresh: everything occupied
    o = torch.tensor([[0.0, 0.0, 4.0], [0.0, 0.0, 4.0], [5.0, 5.0, 5.0]])
    d = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    t0, t1, ri = grid.sample(o, d, 0.0, 10.0)
    assert set(ri.tolist()) == {1}
    # all cells occupied: uniform steps through the whole box, z from 1.5 to -1.5
    dt = grid.step_size
    assert ri.numel() == math.ceil(3.0 / dt)
    assert t0[0] == pytest.approx(2.5) and t1[-1] == pytest.approx(5.5, abs=1e-4)


def test_near_far_and_cap(arch):
    grid = OccupancyGrid(AABB, resolution=16)
    o, d = torch.tensor([[0.0, 0.0, 4.0]] * 2), torch.tensor([[0.0, 0.0, -1.0]] * 2)
    t0, t1, ri = grid.sample(o, d, torch.tensor([3.0, 4.0]), torch.tensor([3.5, 4.2]), step_size=0.1)
    assert (ri == 0).sum() == 5 and (ri == 1).sum() == 2
    t0, _, ri = grid.sample(o, d, 0.0, 10.0, max_samples_per_ray=7)
    assert ri.numel() == 14


def test_occupied_fraction_and_threshold():
    grid = _warm_grid(resolution=32)
    sphere_fraction = 4 / 3 * math.pi * RADIUS ** 3 / 27
    assert sphere_fraction < grid.occupied_fraction() < 2.0 * sphere_fraction
    mask = grid.occupied_mask()[0]
    assert mask[16, 16, 16] and not mask[0, 0, 0]
    # a density below the threshold is empty: sigma * step = 0.5 * 0.005 << 0.01 (and the
    # grid mean is higher because of a dense cube)
    faint = OccupancyGrid(AABB, resolution=8)
    faint.update(0, lambda x: torch.where(x[:, 0] > 1.0, 100.0, 0.5))
    assert 0.1 < faint.occupied_fraction() < 0.4


def test_update_schedule_and_ema():
    grid = OccupancyGrid(AABB, resolution=16, ema_decay=0.95)
    assert not grid.update(5, lambda x: torch.ones(x.shape[0]))
    assert grid.update(0, lambda x: torch.full((x.shape[0],), 10.0))
    assert torch.all(grid.density == 10.0)
    g = torch.Generator().manual_seed(0)
    assert grid.update(256, lambda x: torch.zeros(x.shape[0]), generator=g)
    values = grid.density.unique()
    assert torch.allclose(values, torch.tensor([9.5, 10.0]))  # only the chosen cells decayed
    decayed = (grid.density < 10.0).float().mean()
    assert 0.25 < decayed < 0.6  # a quarter uniform + a quarter from occupied cells (overlap)


def test_state_dict_roundtrip():
    grid = _warm_grid(resolution=16)
    state = grid.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    other = OccupancyGrid(AABB, resolution=16)
    other.load_state_dict(state)
    o, d = _rays(50)
    for a, b in zip(grid.sample(o, d, 2.0, 6.0), other.sample(o, d, 2.0, 6.0)):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="16"):
        OccupancyGrid(AABB, resolution=32).load_state_dict(state)


def test_cascades_cover_outside_the_box():
    # density only outside the level-0 box: a shell at |x|_inf in (1.875, 2.625), exactly two
    # level-1 cells thick, so every jittered point of those cells (and none of others) is in it
    shell = lambda x: torch.where((x.abs().max(dim=-1).values > 1.875) & (x.abs().max(dim=-1).values < 2.625), 50.0, 0.0)
    grid = OccupancyGrid(AABB, resolution=16, n_levels=2)
    grid.update(0, shell)
    mask = grid.occupied_mask()
    assert not mask[0].any() and mask[1].any()
    o, d = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    t0, t1, ri = grid.sample(o, d, 0.0, 10.0)
    # level-1 cells are 6/16 = 0.375 wide: the occupied ones span x in [1.875, 2.625]
    assert t0.min() >= 1.875 - 1e-4 and t1.max() <= 2.625 + grid.step_size and ri.numel() > 0


def test_perturb_shifts_samples():
    grid = OccupancyGrid(AABB, resolution=8)
    o, d = torch.tensor([[0.0, 0.0, 4.0]]), torch.tensor([[0.0, 0.0, -1.0]])
    a = grid.sample(o, d, 0.0, 10.0)[0]
    b = grid.sample(o, d, 0.0, 10.0, perturb=True, generator=torch.Generator().manual_seed(3))[0]
    shift = b[0] - a[0]
    assert 0 < shift < grid.step_size and torch.allclose(b[1:10] - a[1:10], shift.expand(9), atol=1e-5)


def test_update_treats_nan_and_negative_as_empty():
    grid = OccupancyGrid(AABB, resolution=8)
    bad = lambda x: torch.where(x[:, 0] > 0, torch.tensor(float("nan")), torch.tensor(-5.0))
    grid.update(0, bad)
    assert torch.all(grid.density == 0.0) and grid.occupied_fraction() == 0.0


def test_cone_marching_grows_the_step_in_outer_cascades():
    grid = OccupancyGrid.covering(torch.tensor([[-8.0] * 3, [8.0] * 3]), n_levels=3, resolution=16)
    assert torch.allclose(grid.aabb, torch.tensor([[-2.0] * 3, [2.0] * 3]))
    o, d = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    const = grid.sample(o, d, 0.0, 100.0, max_samples_per_ray=100000)
    cone0, cone1, _ = grid.sample(o, d, 0.0, 100.0, cone_angle=1 / 64)
    assert const[0].numel() == math.ceil(8.0 / grid.step_size)  # fresh grid: all occupied
    assert cone0.numel() * 4 < const[0].numel()
    lengths = cone1 - cone0
    assert torch.allclose(cone0[1:], cone1[:-1])  # contiguous: occupied everywhere
    assert torch.all(lengths[1:-1] >= lengths[:-2] - 1e-6) and lengths.max() > 10 * grid.step_size
    assert cone1[-1] == pytest.approx(8.0, abs=1e-4)
