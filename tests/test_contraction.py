"""mip-NeRF 360's scene contraction (taichifield.render.contraction): identity inside the box,
all of R^3 into the cube of half-size 2, continuous, monotone along rays, invertible."""

from __future__ import annotations

import math

import pytest
import torch

from taichifield.render.contraction import contract, from_box_units, to_box_units, uncontract

D = torch.float64


def _points(n: int = 4000, seed: int = 0) -> torch.Tensor:
    """Directions times radii spread over 1e-3 .. 1e6 (log-uniform), plus the axes and corners."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g, dtype=D)
    r = 10 ** (torch.rand(n, 1, generator=g, dtype=D) * 9 - 3)
    return torch.cat([d / d.norm(dim=-1, keepdim=True) * r, torch.eye(3, dtype=D) * 1e8, torch.full((1, 3), -1e9, dtype=D)])


@pytest.mark.parametrize("ord", [math.inf, 2.0])
def test_identity_inside_and_bounded_outside(ord) -> None:  # type: ignore[no-untyped-def]
    x = _points()
    c = contract(x, ord)
    n = x.abs().amax(-1) if math.isinf(ord) else x.norm(dim=-1)
    nc = c.abs().amax(-1) if math.isinf(ord) else c.norm(dim=-1)
    inside = n <= 1
    assert inside.any() and (~inside).any()
    assert torch.equal(c[inside], x[inside])
    assert bool((nc <= 2.0).all()) and bool((nc[~inside] > 1.0).all())
    assert torch.isfinite(c).all()
    # the cube variant keeps everything in [-2, 2]^3, its image fills the cube's corners
    assert float(c.abs().max()) <= 2.0


@pytest.mark.parametrize("ord", [math.inf, 2.0])
def test_continuous_and_monotone_along_rays(ord) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(1)
    d = torch.randn(64, 3, generator=g, dtype=D)
    d = d / (d.abs().amax(-1, keepdim=True) if math.isinf(ord) else d.norm(dim=-1, keepdim=True))  # |d| = 1
    s = torch.linspace(0.0, 50.0, 20001, dtype=D)
    c = contract(s[:, None, None] * d[None], ord)  # (S, 64, 3), crossing the unit boundary at s = 1
    jumps = (c[1:] - c[:-1]).norm(dim=-1)
    assert float(jumps.max()) <= (s[1] - s[0]) * math.sqrt(3) + 1e-12  # Lipschitz (no jump at the box)
    nc = c.abs().amax(-1) if math.isinf(ord) else c.norm(dim=-1)
    assert bool((nc[1:] >= nc[:-1] - 1e-15).all())  # radially monotone
    at_one = contract(d * (1 + 1e-12), ord)
    assert torch.allclose(at_one, d, atol=1e-10)


@pytest.mark.parametrize("ord", [math.inf, 2.0])
def test_uncontract_inverts(ord) -> None:  # type: ignore[no-untyped-def]
    x = _points()[:-4]
    x = x[(x.abs().amax(-1) if math.isinf(ord) else x.norm(dim=-1)) < 1e5]  # far points are lost to rounding
    assert torch.allclose(uncontract(contract(x, ord), ord), x, rtol=1e-6, atol=1e-9)


def test_gradients_are_finite() -> None:
    x = (_points(256) * 1.0).requires_grad_(True)
    contract(x).sum().backward()
    assert torch.isfinite(x.grad).all()  # type: ignore[arg-type]
    assert torch.autograd.gradcheck(contract, (torch.tensor([[0.3, -0.2, 0.5], [3.0, -1.0, 0.5]], dtype=D,
                                                            requires_grad=True),))


def test_box_units() -> None:
    aabb = torch.tensor([[-1.0, 0.0, 2.0], [3.0, 1.0, 6.0]], dtype=D)
    corners = torch.tensor([[-1.0, 0.0, 2.0], [3.0, 1.0, 6.0], [1.0, 0.5, 4.0]], dtype=D)
    q = to_box_units(corners, aabb)
    assert torch.allclose(q, torch.tensor([[-1.0] * 3, [1.0] * 3, [0.0] * 3], dtype=D))
    assert torch.allclose(from_box_units(q, aabb), corners)
