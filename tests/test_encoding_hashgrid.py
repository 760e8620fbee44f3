"""HashGridEncoding: hand-computed indices, Taichi kernel vs torch reference, float64 gradcheck."""

# no `from __future__ import annotations`: this file uses Taichi-backed ops

import pytest
import torch

from taichifield.encoding import HashGridEncoding, hashgrid as hashgrid_module
from taichifield.encoding.hashgrid import hashgrid_encode, hashgrid_reference, level_meta, level_resolutions


def _vertex_table(L: int, log2_t: int, F: int, dtype=torch.float32) -> torch.Tensor:
    """Table whose feature f of entry e at level l is e + 1000 * l + 0.5 * f (so lookups reveal the index)."""
    T = 1 << log2_t
    e = torch.arange(T, dtype=dtype)
    t = torch.stack([e[None, :] + 1000.0 * torch.arange(L, dtype=dtype)[:, None] + 0.5 * f for f in range(F)], dim=-1)
    return t.reshape(-1).contiguous()


# N_l = floor(N_min * b**l), b = exp((ln N_max - ln N_min) / (L - 1))   (Mueller et al. 2022, Eq. 2-3),
# hand-computed with 50-digit decimals. 16 -> 2048 over 16 levels: b = 128**(1/15) = 2**(7/15), so
# N_l = floor(2**(4 + 7l/15)) = 16, 22.11, 30.55, 42.22, 58.35, 80.63, 111.43, 153.99, 212.80, 294.07,
# 406.37, 561.57, 776.05, 1072.43, 1482.00, 2048.
# 16 -> 512 over 16 levels: b = 2**(1/3), so every third level is an exact power of two
# (l = 3, 6, 9, 12 -> 32, 64, 128, 256): a round-off just below the integer would floor them to
# 31, 63, 127, 255.
# Note: tiny-cuda-nn counts grid *vertices* (scale = N_min * b**l - 1, resolution = ceil(scale) + 1;
# see its grid_scale comment); taichifield follows the paper's cell count, so these are not tcnn's values.
_PAPER_LEVELS = {
    (16, 16, 2048): [16, 22, 30, 42, 58, 80, 111, 153, 212, 294, 406, 561, 776, 1072, 1482, 2048],
    (16, 16, 512): [16, 20, 25, 32, 40, 50, 64, 80, 101, 128, 161, 203, 256, 322, 406, 512],
    (8, 4, 256): [4, 7, 13, 23, 43, 78, 141, 256],  # b = 64**(1/7): 7.25, 13.13, 23.78, 43.07, 78.02, 141.32
}


@pytest.mark.parametrize("config", sorted(_PAPER_LEVELS), ids=lambda c: f"L{c[0]}_{c[1]}-{c[2]}")
def test_level_resolutions_follow_eq3(config):
    assert level_resolutions(*config) == _PAPER_LEVELS[config]


def test_level_resolutions_single_level():
    assert level_resolutions(1, 16, 2048) == [16]


@pytest.mark.parametrize("impl", ["taichi", "torch"])
def test_dense_index_at_a_vertex(impl):
    # d=2, N_l=4, T=64: (4+1)^2=25 <= 64 -> dense; vertex (1,2) of x=(0.25,0.5) is entry 1 + 5*2 = 11
    meta = level_meta([4], 2, 6)
    assert meta.tolist() == [[4, 1]]
    table = _vertex_table(1, 6, 2)
    x = torch.tensor([[0.25, 0.5]])
    fn = hashgrid_encode if impl == "taichi" else hashgrid_reference
    out = fn(x, table, meta, 6, 2)
    torch.testing.assert_close(out, torch.tensor([[11.0, 11.5]]))


@pytest.mark.parametrize("impl", ["taichi", "torch"])
def test_hashed_index_at_a_vertex(impl):
    # d=3, N_l=4, T=16: 125 > 16 -> hashed. Eq. 4 (pi = 1, 2654435761, 805459861) at vertex (1,2,3), by hand:
    # mod 16 keeps the low 4 bits. pi_2 = 0x9E3779B1, pi_3 = 0x30025795, so
    # 1*1 -> 0001, 2*pi_2 -> 0x...62 -> 0010, 3*pi_3 -> 0x...BF -> 1111; XOR: 0001 ^ 0010 ^ 1111 = 1100 = 12.
    # (a sum instead of XOR would give 2, the primes on the wrong axes 6)
    meta = level_meta([4], 3, 4)
    assert meta.tolist() == [[4, 0]]
    expected = 12
    table = _vertex_table(1, 4, 1)
    x = torch.tensor([[0.25, 0.5, 0.75]])
    fn = hashgrid_encode if impl == "taichi" else hashgrid_reference
    out = fn(x, table, meta, 4, 1)
    torch.testing.assert_close(out, torch.tensor([[float(expected)]]))


def test_bilinear_interpolation_midpoint():
    # d=2, N_l=1, dense 2x2 vertices: entries 0,1 (y=0), 2,3 (y=1); centre = mean = 1.5
    meta = level_meta([1], 2, 4)
    table = _vertex_table(1, 4, 1)
    out = hashgrid_encode(torch.tensor([[0.5, 0.5], [0.25, 0.0]]), table, meta, 4, 1)
    torch.testing.assert_close(out, torch.tensor([[1.5], [0.25]]))


@pytest.fixture(params=["by_level", "atomic"])
def strategy(request, monkeypatch):
    """Both backward kernels: levels-in-parallel (CPU default) and atomic per (level, point) (GPU default)."""
    monkeypatch.setattr(hashgrid_module, "BACKWARD_STRATEGY", request.param)
    return request.param


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("log2_t", [8, 14])
def test_kernel_matches_reference(d, log2_t, strategy):
    torch.manual_seed(d * 100 + log2_t)
    enc = HashGridEncoding(d, n_levels=8, n_features=2, log2_table_size=log2_t, base_resolution=4, max_resolution=256)
    ref = HashGridEncoding(d, n_levels=8, n_features=2, log2_table_size=log2_t, base_resolution=4, max_resolution=256,
                           implementation="torch")
    assert bool(enc.meta[:, 1].any()) and not bool(enc.meta[:, 1].all())  # both dense and hashed levels
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    ref.load_state_dict(enc.state_dict())
    x = torch.rand(3000, d) * 1.2 - 0.1  # some points outside [0,1]: clamped
    x[0] = 1.0
    x[1] = 0.0
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = enc(xa), ref(xb)
    assert a.shape == (3000, enc.output_dim) == (3000, 16)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(a)
    (a * g).sum().backward()
    (b * g).sum().backward()
    torch.testing.assert_close(enc.table.grad, ref.table.grad, atol=1e-4, rtol=1e-4)
    # dL/dx sums terms of size ~N_l * |table| (up to ~1.6e3 here), so float32 rounding is relative to that
    # scale, not to each element: measured max error 2.4e-4 = 2 ulp at 1.6e3. Allow 8 ulp of the scale
    # (about 1.6e-3); the float64 test below checks the same gradient to 1e-9.
    scale = float(xb.grad.abs().max())
    torch.testing.assert_close(xa.grad, xb.grad, atol=8 * torch.finfo(torch.float32).eps * scale, rtol=1e-4)
    outside = ((x < 0) | (x > 1))
    assert torch.all(xa.grad[outside] == 0)


@pytest.mark.parametrize("d", [2, 3])
def test_x_grad_matches_reference_float64(f64, d, strategy):
    """The kernel's dL/dx equals the torch reference's to float64 precision (no tolerance to hide a bug)."""
    torch.manual_seed(d)
    kw = dict(n_levels=8, n_features=2, log2_table_size=8, base_resolution=4, max_resolution=256)
    enc = HashGridEncoding(d, **kw).double()
    ref = HashGridEncoding(d, **kw, implementation="torch").double()
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    ref.load_state_dict(enc.state_dict())
    x = torch.rand(2000, d, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = enc(xa), ref(xb)
    g = torch.randn_like(a)
    (a * g).sum().backward()
    (b * g).sum().backward()
    assert xb.grad.abs().max() > 100  # the fine levels dominate: a real, large gradient is compared
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-9, rtol=1e-12)
    torch.testing.assert_close(enc.table.grad, ref.table.grad, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("d", [2, 3])
def test_gradcheck_float64(f64, d, strategy):
    torch.manual_seed(d)
    meta = level_meta([2, 3, 5], d, 5)  # T=32: level 0 dense ((2+1)^d <= 32), the others hashed for d=3
    table = torch.empty(3 * 32 * 2, dtype=torch.float64).uniform_(-1, 1).requires_grad_(True)
    x = (torch.rand(12, d, dtype=torch.float64) * 0.9 + 0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, t: hashgrid_encode(x, t, meta, 5, 2), (x, table))
    ref = hashgrid_reference(x, table, meta, 5, 2)
    torch.testing.assert_close(hashgrid_encode(x, table, meta, 5, 2), ref)


def test_table_grad_not_doubled_and_accumulates():
    enc = HashGridEncoding(3, n_levels=4, log2_table_size=10, base_resolution=4, max_resolution=32)
    ref = HashGridEncoding(3, n_levels=4, log2_table_size=10, base_resolution=4, max_resolution=32, implementation="torch")
    ref.load_state_dict(enc.state_dict())
    x = torch.rand(500, 3)
    for _ in range(2):
        enc(x).square().sum().backward()
        ref(x).square().sum().backward()
    torch.testing.assert_close(enc.table.grad, ref.table.grad, atol=1e-7, rtol=1e-4)
    assert enc.table.grad.abs().sum() > 0


def test_x_grad_is_none_without_requires_grad():
    enc = HashGridEncoding(2, n_levels=2, log2_table_size=8, base_resolution=2, max_resolution=8)
    x = torch.rand(10, 2)
    enc(x).sum().backward()
    assert x.grad is None and enc.table.grad is not None


def test_module_contract():
    enc = HashGridEncoding()
    assert enc.output_dim == 32
    assert enc.table.shape == (16 * (1 << 19) * 2,)
    assert enc.table.abs().max() <= 1e-4
    assert enc.resolutions[0] == 16 and enc.resolutions[-1] == 2048
    with pytest.raises(ValueError, match="shape"):
        enc(torch.rand(4, 2))
    with pytest.raises(ValueError, match="n_input_dims"):
        HashGridEncoding(n_input_dims=4)
    assert enc(torch.rand(0, 3)).shape == (0, 32)


def test_forward_on_each_arch(arch):
    """Inference (rendering a trained field) runs on every arch, Vulkan included."""
    enc = HashGridEncoding(3, n_levels=4, log2_table_size=10, base_resolution=4, max_resolution=64)
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
        x = torch.rand(500, 3)
        ref = hashgrid_reference(x, enc.table, enc.meta, 10, 2)
        torch.testing.assert_close(enc(x), ref, atol=1e-5, rtol=1e-5)


def test_by_level_backward_zeroes_an_uninitialised_gradient(monkeypatch):
    # the CPU backward takes an uninitialised buffer and zeroes each level's slice itself:
    # hand it NaN-filled memory and the table gradient must still match the reference
    from taichifield import memory

    real_empty = memory.empty
    monkeypatch.setattr(memory, "empty", lambda *s, **kw: real_empty(*s, **kw).fill_(float("nan")))
    monkeypatch.setattr(hashgrid_module, "BACKWARD_STRATEGY", "by_level")
    enc = HashGridEncoding(3, n_levels=3, log2_table_size=9, base_resolution=4, max_resolution=16)
    ref = HashGridEncoding(3, n_levels=3, log2_table_size=9, base_resolution=4, max_resolution=16, implementation="torch")
    ref.load_state_dict(enc.state_dict())
    x = torch.rand(300, 3)
    enc(x).sum().backward()
    ref(x).sum().backward()
    assert torch.isfinite(enc.table.grad).all()
    torch.testing.assert_close(enc.table.grad, ref.table.grad, atol=1e-6, rtol=1e-5)
