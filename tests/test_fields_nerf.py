"""The NeRF field: shapes, ranges, view dependence, box masking, truncated exp, both encodings."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from taichifield.fields.nerf import NerfConfig, NerfField, trunc_exp

AABB = torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]])
SMALL = dict(n_levels=4, log2_table_size=12, max_resolution=64)


def _field(**kw) -> NerfField:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return NerfField(NerfConfig(**{**SMALL, **kw}), AABB)


@pytest.mark.parametrize("encoding", ["hashgrid", "frequency"])
def test_shapes_ranges_and_gradients(encoding: str) -> None:
    field = _field(encoding=encoding)
    x = torch.rand(64, 3) * 2 - 1
    d = F.normalize(torch.randn(64, 3), dim=-1)
    rgb, sigma = field(x, d)
    assert rgb.shape == (64, 3) and sigma.shape == (64,)
    assert (rgb > 0).all() and (rgb < 1).all() and (sigma >= 0).all()
    (rgb.sum() + sigma.sum()).backward()
    for name, p in field.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_radiance_depends_on_view_density_does_not() -> None:
    field = _field()
    x = torch.rand(32, 3) - 0.5
    d1 = F.normalize(torch.randn(32, 3), dim=-1)
    rgb1, s1 = field(x, d1)
    rgb2, s2 = field(x, -d1)
    assert torch.equal(s1, s2)
    assert torch.allclose(s1, field.density(x))
    assert (rgb1 - rgb2).abs().max() > 1e-4


def test_zero_density_outside_box_and_normalisation() -> None:
    field = _field()
    x = torch.tensor([[0.0, 0.0, 0.0], [1.6, 0.0, 0.0], [0.0, -2.0, 0.0]])
    sigma = field.density(x)
    assert sigma[0] > 0 and sigma[1] == 0 and sigma[2] == 0
    assert torch.allclose(field.normalize(AABB), torch.tensor([[0.0] * 3, [1.0] * 3]))


def test_trunc_exp_clamps_gradient() -> None:
    x = torch.tensor([0.0, 2.0, 20.0], dtype=torch.float64, requires_grad=True)
    y = trunc_exp(x)
    assert torch.allclose(y, x.detach().exp())
    y.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([1.0, math.exp(2.0), math.exp(15.0)], dtype=torch.float64))


def test_config_round_trip_and_bad_encoding() -> None:
    cfg = NerfConfig(encoding="frequency", hidden=32)
    assert NerfConfig.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg
    with pytest.raises(ValueError, match="encoding"):
        NerfField(NerfConfig(encoding="none"), AABB)  # type: ignore[arg-type]


def test_taichi_and_torch_implementations_agree() -> None:
    a = _field(implementation="taichi")
    b = _field(implementation="torch")
    b.load_state_dict(a.state_dict())
    x = torch.rand(50, 3) * 2 - 1
    d = F.normalize(torch.randn(50, 3), dim=-1)
    ra, sa = a(x, d)
    rb, sb = b(x, d)
    assert torch.allclose(ra, rb, atol=1e-5) and torch.allclose(sa, sb, rtol=1e-4, atol=1e-6)
