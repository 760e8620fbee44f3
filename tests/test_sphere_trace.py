"""Sphere tracing against exact ray/sphere intersections, on every inference arch."""

import math

import pytest
import torch

from taichifield.errors import InputError
from taichifield.render.sphere_trace import sphere_trace, sphere_trace_normals

CENTER = torch.tensor([0.2, -0.1, 0.3])
RADIUS = 0.7


def sphere_sdf(p: torch.Tensor) -> torch.Tensor:
    return (p - CENTER).norm(dim=-1) - RADIUS


def exact_hits(o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First root t >= 0 of |o + t d - c| = r (d any length): the quadratic's smaller root
    when the origin is outside, the larger one when it is inside."""
    oc = o - CENTER
    a = (d * d).sum(-1)
    b = 2 * (oc * d).sum(-1)
    c = (oc * oc).sum(-1) - RADIUS**2
    disc = b * b - 4 * a * c
    sq = disc.clamp_min(0).sqrt()
    t0, t1 = (-b - sq) / (2 * a), (-b + sq) / (2 * a)
    t = torch.where(t0 >= 0, t0, t1)
    hit = (disc > 0) & (t1 >= 0)
    return t, hit


def random_rays(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    o = torch.randn(n, 3, generator=g) * 0.2 + torch.tensor([0.0, 0.0, -3.0])
    target = CENTER + (torch.rand(n, 3, generator=g) - 0.5) * 2.4  # some miss, some hit
    d = target - o
    d = d / d.norm(dim=-1, keepdim=True)
    return o, d


def test_matches_exact_intersections(arch):
    o, d = random_rays(2000, seed=1)
    t, hit = sphere_trace(sphere_sdf, o, d, near=0.0, far=10.0, max_steps=256, eps=1e-5)
    t_ref, hit_ref = exact_hits(o, d)
    # grazing rays converge slowly; compare away from the silhouette
    oc = o - CENTER
    dist_axis = (oc - (oc * d).sum(-1, keepdim=True) * d).norm(dim=-1)
    clear = (dist_axis - RADIUS).abs() > 0.02
    assert hit_ref[clear].any() and (~hit_ref[clear]).any()
    assert torch.equal(hit[clear], hit_ref[clear])
    both = clear & hit_ref
    assert torch.allclose(t[both], t_ref[both], atol=1e-4)
    assert torch.all(t[clear & ~hit_ref] == 10.0)
    assert t.dtype == torch.float32 and hit.dtype == torch.bool and t.shape == (2000,)


def test_ray_starting_inside_finds_the_exit(arch):
    o = CENTER.expand(4, 3).clone()
    d = torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 2.0], [0.6, 0.8, 0]])
    t, hit = sphere_trace(sphere_sdf, o, d, eps=1e-6)
    assert hit.all()
    expected = RADIUS / d.norm(dim=-1)  # t in units of |d|
    assert torch.allclose(t, expected, atol=1e-5)


def test_near_and_far_limits():
    o = torch.tensor([[0.2, -0.1, -3.0], [0.2, -0.1, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    t, hit = sphere_trace(sphere_sdf, o, d, near=0.0, far=2.0)  # surface at t = 2.6
    assert not hit.any() and torch.all(t == 2.0)
    # starting past the front surface (inside) finds the back one
    t, hit = sphere_trace(sphere_sdf, o, d, near=3.3, far=10.0, eps=1e-6)
    assert hit.all() and torch.allclose(t, torch.full((2,), 3.0 + 0.3 + 0.7), atol=1e-5)


def test_only_active_rays_are_evaluated_in_batches():
    calls: list[int] = []

    def counting(p: torch.Tensor) -> torch.Tensor:
        calls.append(p.shape[0])
        return sphere_sdf(p)

    o, d = random_rays(1000, seed=2)
    _, hit = sphere_trace(counting, o, d, max_steps=64, batch_size=300)
    assert max(calls) <= 300
    assert calls[0] == 300  # the first step sees all rays, in batches
    # later steps see fewer rays: total work well below max_steps * N
    assert sum(calls) < 0.5 * 64 * 1000
    assert calls[-1] < 1000


def test_max_steps_zero_and_empty_input():
    o, d = random_rays(5, seed=3)
    t, hit = sphere_trace(sphere_sdf, o, d, near=0.5, max_steps=0)
    assert torch.all(t == 0.5) and not hit.any()
    t, hit = sphere_trace(sphere_sdf, torch.zeros(0, 3), torch.zeros(0, 3))
    assert t.shape == (0,) and hit.shape == (0,)


def test_bad_input_raises():
    with pytest.raises(InputError, match="rays_o"):
        sphere_trace(sphere_sdf, torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(InputError, match="rays"):
        sphere_trace(sphere_sdf, torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(InputError, match="near"):
        sphere_trace(sphere_sdf, torch.zeros(1, 3), torch.ones(1, 3), near=2.0, far=1.0)


def test_normals_point_outward():
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(100, 3, generator=g), dim=-1)
    pts = CENTER + RADIUS * dirs
    n = sphere_trace_normals(sphere_sdf, pts, eps=1e-3)
    assert torch.allclose(n, dirs, atol=1e-3)
    assert math.isclose(float(n.norm(dim=-1).mean()), 1.0, rel_tol=1e-5)


def test_results_live_on_the_rays_device(monkeypatch):
    """t/hit come back where the rays are, and sdf_fn gets points there, whatever the runtime's device says."""
    from taichifield import runtime

    monkeypatch.setattr(runtime, "device", lambda: torch.device("cpu", 0))  # spelled with an index
    seen = []

    def recording(p: torch.Tensor) -> torch.Tensor:
        seen.append(p.device)
        return sphere_sdf(p)

    o, d = random_rays(50, seed=4)
    t, hit = sphere_trace(recording, o, d)
    assert t.device == o.device and hit.device == o.device
    assert seen and all(s == o.device for s in seen)
    with pytest.raises(InputError, match="rays_d on meta"):
        sphere_trace(sphere_sdf, o, torch.empty(50, 3, device="meta"))
