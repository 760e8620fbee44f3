"""SDF fields: geometric init is a sphere SDF, SIREN init bounds, gradients (autograd vs FD)."""

from __future__ import annotations

import math

import pytest
import torch

from taichifield.fields.sdf import build_sdf_field, fd_derivatives, finite_difference_gradient


def _points(n: int = 2000, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 3), generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8


@pytest.mark.parametrize("activation", ["softplus", "relu"])
def test_geometric_init_is_a_sphere_sdf(activation: str) -> None:
    torch.manual_seed(0)
    field = build_sdf_field("relu", hidden=256, layers=4, radius=0.5, activation=activation)
    x = _points()
    with torch.no_grad():
        u = field(x)
    r = x.norm(dim=-1)
    # SAL's init is a sphere SDF up to O(1/sqrt(width)) noise: u ~ |x| - 0.5
    assert (u - (r - 0.5)).abs().mean() < 0.15
    assert torch.corrcoef(torch.stack([u, r]))[0, 1] > 0.8
    assert bool((u[r < 0.2] < 0).all()) and bool((u[r > 0.9] > 0).all())
    _, g = field.value_and_gradient(x, create_graph=False)
    assert (g.norm(dim=-1) - 1).abs().mean() < 0.3
    assert torch.nn.functional.cosine_similarity(g, x, dim=-1).mean() > 0.95


def test_hashgrid_field_starts_as_the_sphere_and_uses_finite_differences() -> None:
    torch.manual_seed(0)
    field = build_sdf_field("hashgrid", log2_table_size=12, n_levels=4, max_resolution=64)
    assert field.fd_step == pytest.approx(2 / 64)
    x = _points(500)
    u, g = field.value_and_gradient(x)
    assert (u - (x.norm(dim=-1) - 0.5)).abs().mean() < 0.15
    assert g.requires_grad  # differentiable w.r.t. the parameters (for the eikonal term)
    g.norm(dim=-1).sum().backward()
    assert field.encoding.table.grad.abs().sum() > 0  # the eikonal term reaches the hash table


def test_siren_init_bounds() -> None:
    field = build_sdf_field("siren", hidden=64, layers=3)
    first, second = field.linears[0], field.linears[1]
    assert first.weight.abs().max() <= 1 / 3
    assert second.weight.abs().max() <= math.sqrt(6 / 64) / 30 + 1e-9
    assert field(_points(10)).shape == (10,)


def test_finite_differences_match_autograd() -> None:
    torch.manual_seed(1)
    field = build_sdf_field("siren", hidden=32, layers=2).double()
    x = _points(50).double()
    u, g = field.value_and_gradient(x, create_graph=False)
    u_fd, g_fd = finite_difference_gradient(field, x, 1e-5)
    torch.testing.assert_close(u_fd, u)
    torch.testing.assert_close(g_fd, g, atol=1e-6, rtol=1e-5)


def _quadratic(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(3, 3, generator=g, dtype=torch.float64)
    return a + a.T, torch.randn(3, generator=g, dtype=torch.float64), torch.randn(2, generator=g, dtype=torch.float64)


def test_fd_schemes_on_a_quadratic_by_hand() -> None:
    """u = x^T A x + b.x (and a linear feature column): the gradient 2Ax + b (the tetrahedron's plus
    h times the mixed second derivatives (H_yz, H_xz, H_xy), its first-order error), the Laplacian
    2 tr A, the tetrahedron's mean value u + h^2 tr A (its stated u + h^2/2 lap u)."""
    a, b, w = _quadratic()
    x = _points(64).double()

    def fn(p: torch.Tensor) -> torch.Tensor:
        return torch.stack([((p @ a) * p).sum(1) + p @ b, p @ b * w[0] + w[1]], dim=1)

    u, grad, lap = fn(x)[:, 0], 2 * x @ a + b, 2 * torch.trace(a)
    # by hand: (h / 8) sum_k v_k (v_k^T H v_k) = h (H_yz, H_xz, H_xy), as sum_k v_kx v_ky v_kz = 4
    h = 0.05
    mixed = h * 2 * torch.stack([a[1, 2], a[0, 2], a[0, 1]])
    for scheme, expected in (("central", grad), ("tetrahedron", grad + mixed)):
        value, g, laplace = fd_derivatives(fn, x, h, scheme, laplacian=True)
        torch.testing.assert_close(value, fn(x), rtol=0, atol=1e-12)  # the centre's value and feature
        torch.testing.assert_close(laplace, lap.expand(64), rtol=0, atol=1e-9)
        torch.testing.assert_close(g, expected, rtol=0, atol=1e-10)
    value, g, laplace = fd_derivatives(fn, x, h, "tetrahedron")
    assert laplace is None
    torch.testing.assert_close(value[:, 0], u + h * h * torch.trace(a), rtol=0, atol=1e-12)
    torch.testing.assert_close(value[:, 1], fn(x)[:, 1], rtol=0, atol=1e-12)  # linear: the mean is exact
    torch.testing.assert_close(g, grad + mixed, rtol=0, atol=1e-10)


def test_fd_schemes_converge_at_their_order() -> None:
    """On u = sin(x) cos(2y) exp(z/2): central errors fall 4x when h halves, the tetrahedron's 2x
    (first order: h times the mixed second derivatives)."""
    x = _points(200).double()

    def fn(p: torch.Tensor) -> torch.Tensor:
        return (torch.sin(p[:, 0]) * torch.cos(2 * p[:, 1]) * torch.exp(p[:, 2] / 2))[:, None]

    true = torch.func.vmap(torch.func.grad(lambda q: fn(q[None])[0, 0]))(x)
    for scheme, order in (("central", 4.0), ("tetrahedron", 2.0)):
        errs = [float((fd_derivatives(fn, x, h, scheme)[1] - true).abs().max()) for h in (0.02, 0.01)]
        assert errs[0] / errs[1] == pytest.approx(order, rel=0.15), (scheme, errs)
    with pytest.raises(ValueError, match="scheme 'forward'"):
        fd_derivatives(fn, x, 0.01, "forward")


def test_double_backprop_gives_parameter_gradients_of_the_eikonal_term() -> None:
    field = build_sdf_field("relu", hidden=16, layers=2)
    _, g = field.value_and_gradient(_points(20))
    ((g.norm(dim=-1) - 1) ** 2).mean().backward()
    assert all(lin.weight.grad is not None for lin in field.linears)  # biases of the last layer do not move grad u
    assert field.linears[0].weight.grad.abs().sum() > 0


def test_unknown_model_or_option() -> None:
    with pytest.raises(ValueError, match="unknown SDF model"):
        build_sdf_field("nerf")
    with pytest.raises(ValueError, match="widht"):
        build_sdf_field("relu", widht=3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fitted_geometric_init_is_a_close_sphere_sdf(seed: int) -> None:
    # the plain SAL init at width 128 only reaches correlation ~0.87 with |x| - r; the
    # ridge refit of the last layer (init_fit) makes it a close sphere SDF in the whole cube
    torch.manual_seed(seed)
    plain = build_sdf_field("relu", hidden=128, layers=4, radius=0.5)
    torch.manual_seed(seed)
    field = build_sdf_field("relu", hidden=128, layers=4, radius=0.5, init_fit=True)
    x = torch.rand((4000, 3), generator=torch.Generator().manual_seed(seed + 10)) * 2 - 1
    with torch.no_grad():
        u, u_plain = field(x), plain(x)
    sphere = x.norm(dim=-1) - 0.5
    err, err_plain = (u - sphere).abs().mean(), (u_plain - sphere).abs().mean()
    assert torch.corrcoef(torch.stack([u, sphere]))[0, 1] > 0.99
    assert err < 0.04 and err < 0.5 * err_plain
    # only the last layer's weights change; its bias stays -r
    for a, b in zip(list(field.linears)[:-1], list(plain.linears)[:-1]):
        assert torch.equal(a.weight, b.weight)
    assert float(field.linears[-1].bias) == -0.5
    _, g = field.value_and_gradient(x, create_graph=False)
    assert (g.norm(dim=-1) - 1).abs().mean() < 0.1


def test_skip_connection_and_frequency_encoding_keep_the_sphere_and_use_autograd() -> None:
    torch.manual_seed(0)
    field = build_sdf_field("relu", hidden=64, layers=4, skip=2, n_frequencies=3, init_fit=True)
    assert field.fd_step is None  # torch encoding: double backprop, no finite differences
    assert field.linears[1].out_features == 64 - (3 + 18) and field.linears[2].in_features == 64
    x = _points(500)
    with torch.no_grad():
        u = field(x)
    assert torch.corrcoef(torch.stack([u, x.norm(dim=-1)]))[0, 1] > 0.98
    u, g = field.value_and_gradient(x)
    (gp,) = torch.autograd.grad(((g.norm(dim=-1) - 1) ** 2).mean(), field.linears[2].weight)
    assert gp.abs().sum() > 0  # the skip layer's weights get eikonal gradients
    with pytest.raises(ValueError, match="skip"):
        build_sdf_field("relu", layers=4, skip=4)
