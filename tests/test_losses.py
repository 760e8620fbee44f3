"""SDF losses: values on exact SDFs, gradients (gradcheck), targets from oriented points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from taichifield.train import losses as L


def _sphere_points(n: int, seed: int = 0) -> torch.Tensor:
    p = torch.randn((n, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return p / p.norm(dim=-1, keepdim=True)


def test_eikonal_is_zero_for_an_exact_sphere_sdf_and_positive_otherwise() -> None:
    x = torch.rand(500, 3, dtype=torch.float64) * 2 - 1
    x.requires_grad_(True)
    for scale, zero in ((1.0, True), (1.5, False)):
        u = scale * (x.norm(dim=-1) - 0.5)
        (g,) = torch.autograd.grad(u.sum(), x)
        term = float(L.eikonal_term(g))
        assert (term < 1e-12) if zero else term == pytest.approx(0.25, rel=1e-9)


def test_igr_loss_is_zero_on_the_exact_sdf() -> None:
    n = _sphere_points(100)
    loss, terms = L.igr_loss(torch.zeros(100, dtype=torch.float64), n, n, n)
    assert float(loss) == pytest.approx(0.0, abs=1e-20) and max(terms.values()) < 1e-20
    # wrong normals cost tau * |g - n| = 2 for flipped ones
    loss, terms = L.igr_loss(torch.zeros(100, dtype=torch.float64), -n, n, n, tau=1.0)
    assert float(loss) == pytest.approx(2.0)


def test_igr_and_siren_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(6, dtype=torch.float64, generator=g).requires_grad_(True)
    gs = torch.randn(6, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    n = torch.nn.functional.normalize(torch.randn(6, 3, dtype=torch.float64, generator=g), dim=-1)
    uo = torch.randn(5, dtype=torch.float64, generator=g).requires_grad_(True)
    go = torch.randn(5, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, c: L.igr_loss(a, b, n, c)[0], (u, gs, go))
    assert torch.autograd.gradcheck(lambda a, b, c, d: L.siren_loss(a, b, n, c, d)[0], (u, gs, uo, go))


def test_siren_terms() -> None:
    n = _sphere_points(50)
    u_off = torch.full((50,), 0.5, dtype=torch.float64)
    _, terms = L.siren_loss(torch.zeros(50, dtype=torch.float64), 2 * n, n, u_off, n)
    assert terms["surface"] == 0.0 and terms["normal"] == pytest.approx(0.0, abs=1e-12)
    assert terms["eikonal"] == pytest.approx(0.5)  # |2| - 1 on half of the points
    assert terms["offsurface"] == pytest.approx(np.exp(-50.0))


def test_deepsdf_clamps_at_delta() -> None:
    pred = torch.tensor([0.0, 0.5, -0.05, 0.2])
    target = torch.tensor([0.05, 0.3, -0.5, -0.2])
    loss, _ = L.deepsdf_loss(pred, target, delta=0.1)
    # |0-0.05| + |0.1-0.1| + |-0.05+0.1| + |0.1+0.1|
    assert float(loss) == pytest.approx((0.05 + 0 + 0.05 + 0.2) / 4)


def test_occupancy_loss_prefers_the_right_side() -> None:
    inside = torch.tensor([1.0, 0.0])
    good, _ = L.occupancy_loss(torch.tensor([-0.05, 0.05]), inside)
    bad, _ = L.occupancy_loss(torch.tensor([0.05, -0.05]), inside)
    assert float(good) < 0.01 < 4 < float(bad)


def test_signed_distance_targets_on_a_sphere() -> None:
    p = _sphere_points(20000).numpy()
    q = np.random.default_rng(1).uniform(-1.5, 1.5, size=(500, 3))
    s = L.signed_distance_targets(q, p, p)
    exact = np.linalg.norm(q, axis=1) - 1
    far = np.abs(exact) > 0.01  # within ~spacing^2 the tangent planes of a curved surface disagree
    assert far.sum() > 450 and np.all(np.sign(s[far]) == np.sign(exact[far]))
    np.testing.assert_allclose(s[far], exact[far], atol=0.03)


def test_off_surface_samples() -> None:
    surf = _sphere_points(1000).float()
    x = L.sample_off_surface(surf, torch.full((1000,), 0.01), 200, torch.Generator().manual_seed(0))
    assert x.shape == (1200, 3)
    assert (x[:1000] - surf).norm(dim=-1).mean() == pytest.approx(0.01 * 1.596, rel=0.1)  # chi(3) mean
    assert x[1000:].abs().max() <= 1.0
