"""The contracted occupancy grid (OccupancyGrid(contraction=True)): the Taichi marcher against a
float64 torch reference of its lattice, samples only in occupied contracted cells, bounded step
counts out to far = 1e3 box units, updates that find density far outside the box."""

from __future__ import annotations

import math

import torch

from taichifield.render.contraction import contract, to_box_units
from taichifield.render.raymarch import OccupancyGrid

AABB = torch.tensor([[-1.0, -0.5, 0.0], [1.0, 1.5, 1.0]])


def _rays(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    o = torch.rand(n, 3, generator=g) * 1.6 - 0.8 + torch.tensor([0.0, 0.5, 0.5])  # inside the box
    d = torch.randn(n, 3, generator=g)
    return o, d / d.norm(dim=-1, keepdim=True)


def _reference_lattice(o: torch.Tensor, d: torch.Tensor, near: float, far: float, dt: float) -> list[float]:
    """float64 sample starts of one ray with every cell occupied: step dt * max(1, m^2) at the start."""
    c, h = ((AABB[0] + AABB[1]) / 2).double(), ((AABB[1] - AABB[0]) / 2).double()
    o, d = o.double(), d.double()
    t, out = near, []
    while t < far:
        m = float(((o + t * d - c) / h).abs().max())
        step = dt * max(1.0, m * m)
        if t + 1e-3 * step >= far:
            break
        out.append(t)
        t += step
    return out


def _cell_of(grid: OccupancyGrid, x: torch.Tensor) -> torch.Tensor:
    q = contract(to_box_units(x.double(), grid.aabb.double()))
    R = grid.resolution
    ijk = ((q + 2) / 4 * R).floor().long().clamp(0, R - 1)
    return (ijk[:, 0] * R + ijk[:, 1]) * R + ijk[:, 2]


def test_all_occupied_lattice_matches_reference_and_is_bounded() -> None:
    grid = OccupancyGrid(AABB, resolution=32, contraction=True, device=torch.device("cpu"))
    o, d = _rays(16)
    far = 1e3
    t0, t1, ri = grid.sample(o, d, near=0.05, far=far)
    counts = torch.bincount(ri.long(), minlength=16)
    for r in range(16):
        ref = _reference_lattice(o[r], d[r], 0.05, far, grid.step_size)
        got = t0[ri == r].double()
        assert abs(len(ref) - len(got)) <= 1, (r, len(ref), len(got))
        k = min(len(ref), len(got))
        assert torch.allclose(got[:k], torch.tensor(ref[:k], dtype=torch.float64), rtol=2e-3, atol=1e-5)
        e = t1[ri == r]
        assert torch.equal(got[1:].float(), e[:-1])  # samples tile the ray: each starts where the last ended
        assert float(e[-1]) <= far
    # uniform steps in contracted space: the box costs ~ its width / dt, the rest of space ~ 2 / (dt / half)
    assert int(counts.max()) < 1024 and int(counts.min()) > 100


def test_samples_lie_in_occupied_cells_only() -> None:
    grid = OccupancyGrid(AABB, resolution=16, contraction=True, device=torch.device("cpu"))
    g = torch.Generator().manual_seed(3)
    occupied = torch.rand(grid.n_cells, generator=g) < 0.3
    bits = torch.zeros(grid.bits.numel() * 32, dtype=torch.int64)
    bits[:grid.n_cells] = occupied.long()
    words = (bits.view(-1, 32) << torch.arange(32)).sum(-1)
    grid.bits.copy_(((words + 2**31) % 2**32 - 2**31).to(torch.int32))
    assert torch.equal(grid.occupied_mask().reshape(-1), occupied)
    o, d = _rays(64, seed=4)
    t0, t1, ri = grid.sample(o, d, near=0.0, far=1e3, perturb=True, generator=torch.Generator().manual_seed(5))
    assert t0.numel() > 1000
    mid = o[ri.long()] + d[ri.long()] * (0.5 * (t0 + t1))[:, None]
    hits = occupied[_cell_of(grid, mid)]
    assert float(hits.float().mean()) > 0.995  # float32 kernel vs float64 check: boundary cases only
    # an all-empty grid gives no samples
    grid.bits.zero_()
    assert grid.sample(o, d, near=0.0, far=1e3)[0].numel() == 0


def test_update_finds_density_far_outside_the_box() -> None:
    grid = OccupancyGrid(AABB, resolution=32, contraction=True, device=torch.device("cpu"))
    def density(x: torch.Tensor) -> torch.Tensor:  # a wall of "background" from 10 box half-widths out along +x
        return 50.0 * ((x[:, 0] > 10.0) & ((x[:, 1:] - 0.5).abs().amax(-1) < 20.0)).float()

    grid.update(0, density, warmup_steps=1)
    assert 0 < grid.occupied_fraction() < 0.05
    o = torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]])
    d = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    t0, t1, ri = grid.sample(o, d, near=0.0, far=1e3)
    assert bool((ri == 0).any()) and not bool((ri == 1).any())
    mids = 0.5 * (t0 + t1)
    assert float(mids.min()) > 7.0  # from the wall on (contracted cells are coarse out there)


def test_bounded_grid_is_not_contracted() -> None:
    grid = OccupancyGrid(AABB, resolution=16, device=torch.device("cpu"))
    assert not grid.contraction and "contracted" not in repr(grid)
    o, d = _rays(8)
    t0, t1, _ = grid.sample(o, d, near=0.0, far=1e3)
    assert float(t1.max()) < 2 * math.sqrt(3) + 1e-3  # clipped to the box


def test_occupied_at_matches_the_marcher() -> None:
    for grid in (OccupancyGrid(AABB, resolution=16, contraction=True, device=torch.device("cpu")),
                 OccupancyGrid(AABB, resolution=16, n_levels=2, device=torch.device("cpu"))):
        g = torch.Generator().manual_seed(7)
        grid.bits.copy_(torch.randint(-2**31, 2**31 - 1, grid.bits.shape, generator=g, dtype=torch.int64).to(torch.int32))
        o, d = _rays(32, seed=8)
        t0, t1, ri = grid.sample(o, d, near=0.0, far=50.0)
        mid = o[ri.long()] + d[ri.long()] * (0.5 * (t0 + t1))[:, None]
        assert t0.numel() > 100 and float(grid.occupied_at(mid).float().mean()) > 0.995
    far_away = torch.tensor([[1e3, 0.0, 0.0]])
    assert not bool(grid.occupied_at(far_away)[0])  # outside the bounded grid's cascades
