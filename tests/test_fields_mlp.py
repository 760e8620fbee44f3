"""nerf_head: a hand-computed case, float64 gradcheck, and agreement with NerfField's nn.Sequential MLPs."""

from __future__ import annotations

import math

import pytest
import torch

from taichifield.fields.mlp import nerf_head
from taichifield.fields.nerf import NerfConfig, NerfField

F64 = torch.float64


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_hand_computed_forward() -> None:
    # enc (1, 2) = [1, -2]; density: V1 = I -> relu [1, 0]; V2 = [[2, 0], [1, 1]] -> h = [2, 1]
    # logit 2, geo [1]; colour input [sh, geo] = [0.5, 1]; W1 = [[1, 1], [1, -1]] -> [1.5, -0.5]
    # -> relu [1.5, 0]; W2 = [[1, 0], [0, 1], [-1, 0]] -> [1.5, 0, -1.5] -> sigmoid
    enc = torch.tensor([[1.0, -2.0]], dtype=F64)
    sh = torch.tensor([[0.5]], dtype=F64)
    dw = [torch.eye(2, dtype=F64), torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=F64)]
    cw = [torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=F64), torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=F64)]
    logit, rgb = nerf_head(enc, sh, dw, cw)
    assert logit.tolist() == [2.0]
    assert torch.allclose(rgb, torch.tensor([[_sigmoid(1.5), 0.5, _sigmoid(-1.5)]], dtype=F64))


@pytest.mark.parametrize("n_density,n_color", [(2, 3), (3, 1), (1, 2)])
def test_gradcheck_float64(n_density: int, n_color: int) -> None:
    torch.manual_seed(0)
    n, e, s, g, hid = 9, 5, 4, 3, 6

    def weights(k: int, n_in: int, n_out: int) -> list[torch.Tensor]:
        dims = [n_in] + [hid] * (k - 1) + [n_out]
        return [torch.randn(dims[i + 1], dims[i], dtype=F64, requires_grad=True) for i in range(k)]

    enc = torch.randn(n, e, dtype=F64, requires_grad=True)
    sh = torch.randn(n, s, dtype=F64)
    dw = weights(n_density, e, 1 + g)
    cw = weights(n_color, s + g, 3)

    def fn(x: torch.Tensor, *w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return nerf_head(x, sh, w[:n_density], w[n_density:])

    assert torch.autograd.gradcheck(fn, (enc, *dw, *cw))
    # only the colour output (the density logit unused), and only the density logit
    assert torch.autograd.gradcheck(lambda x, *w: fn(x, *w)[1], (enc, *dw, *cw))
    assert torch.autograd.gradcheck(lambda x, *w: fn(x, *w)[0], (enc, *dw, *cw))


def test_agrees_with_the_fields_sequential_mlps() -> None:
    torch.manual_seed(1)
    field = NerfField(NerfConfig(n_levels=4, log2_table_size=12, max_resolution=64), torch.tensor([[-1.0] * 3, [1.0] * 3]))
    n = 300
    enc = torch.randn(n, field.pos_encoding.output_dim, requires_grad=True)
    sh = torch.randn(n, field.dir_encoding.output_dim)
    g_rgb, g_logit = torch.randn(n, 3), torch.randn(n)

    h = field.density_mlp(enc)
    rgb_ref = torch.sigmoid(field.color_mlp(torch.cat([sh, h[:, 1:]], dim=-1)))
    torch.autograd.backward([rgb_ref, h[:, 0]], [g_rgb, g_logit])
    params = field.mlp_parameters()
    ref_grads = [p.grad.clone() for p in params]
    ref_enc = enc.grad.clone()
    field.zero_grad()
    enc.grad = None

    dw = [m.weight for m in field.density_mlp if isinstance(m, torch.nn.Linear)]
    cw = [m.weight for m in field.color_mlp if isinstance(m, torch.nn.Linear)]
    logit, rgb = nerf_head(enc, sh, dw, cw)
    torch.autograd.backward([rgb, logit], [g_rgb, g_logit])
    assert torch.allclose(rgb, rgb_ref, atol=1e-6) and torch.allclose(logit, h[:, 0], atol=1e-6)
    assert torch.allclose(enc.grad, ref_enc, atol=1e-5)
    for p, ref in zip(params, ref_grads):
        assert torch.allclose(p.grad, ref, rtol=1e-4, atol=1e-5)


def test_weights_only_gradient_and_no_layers() -> None:
    enc = torch.randn(4, 3)  # no grad wanted for the encoding (e.g. a frozen one)
    dw = [torch.randn(2, 3, requires_grad=True)]
    cw = [torch.randn(3, 2 + 1, requires_grad=True)]
    logit, rgb = nerf_head(enc, torch.randn(4, 2), dw, cw)
    rgb.sum().backward()
    assert dw[0].grad is not None and dw[0].grad.abs().sum() > 0 and cw[0].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="layer"):
        nerf_head(enc, torch.randn(4, 2), [], cw)


def test_field_with_fused_mlp_matches_the_layers() -> None:
    kw = dict(n_levels=4, log2_table_size=12, max_resolution=64, implementation="torch")
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3])
    torch.manual_seed(2)
    ref = NerfField(NerfConfig(**kw, mlp="torch"), aabb)
    fused = NerfField(NerfConfig(**kw, mlp="fused"), aabb)
    fused.load_state_dict(ref.state_dict())  # same parameters: checkpoints load either way
    x = torch.rand(64, 3) * 2.4 - 1.2  # some points outside the box (density 0)
    d = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    (ra, sa), (rb, sb) = ref(x, d), fused(x, d)
    assert torch.allclose(ra, rb, atol=1e-6) and torch.allclose(sa, sb, rtol=1e-5, atol=1e-7)
    assert (sb == 0).any() and (sb > 0).any()
    (ra.square().sum() + sa.sum()).backward()
    (rb.square().sum() + sb.sum()).backward()
    for (name, pa), pb in zip(ref.named_parameters(), fused.parameters()):
        assert torch.allclose(pa.grad, pb.grad, rtol=1e-4, atol=1e-6), name
    with pytest.raises(Exception, match="mlp"):
        NerfConfig(mlp="tcnn")  # type: ignore[arg-type]
