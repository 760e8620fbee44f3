"""Frequency, spherical-harmonics and Fourier-feature encodings: kernels vs references, gradcheck."""

# no `from __future__ import annotations`: this file uses Taichi-backed ops

import math

import pytest
import torch
import torch.nn.functional as F

from taichifield.encoding import FourierFeatureEncoding, FrequencyEncoding, SphericalHarmonicsEncoding
from taichifield.encoding.frequency import frequency_encode, frequency_reference
from taichifield.encoding.sh import sh_encode, sh_reference


def test_frequency_hand_computed():
    # x = 0.25, K = 2: [x, sin(pi/4), cos(pi/4), sin(pi/2), cos(pi/2)]
    x = torch.tensor([[0.25]])
    expected = torch.tensor([[0.25, math.sin(math.pi / 4), math.cos(math.pi / 4), 1.0, 0.0]])
    torch.testing.assert_close(frequency_encode(x, 2), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(frequency_reference(x, 2), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("include", [True, False])
def test_frequency_kernel_matches_reference(include):
    torch.manual_seed(0)
    enc = FrequencyEncoding(3, 6, include_input=include)
    x = (torch.rand(2000, 3) * 2 - 0.5).requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    a, b = enc(x), frequency_reference(xr, 6, include)
    assert a.shape == (2000, enc.output_dim) == (2000, 3 * (int(include) + 12))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(a)
    (a * g).sum().backward()
    (b * g).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, atol=1e-3, rtol=1e-4)


def test_frequency_high_octaves_as_accurate_as_direct_float32():
    # the kernel uses the double-angle recurrence between exact octaves: its error against a
    # float64 evaluation must stay at the level of torch's direct float32 sin/cos
    x = torch.rand(20000, 3, generator=torch.Generator().manual_seed(1))
    exact = frequency_reference(x.double(), 10)
    err_taichi = (frequency_encode(x, 10).double() - exact).abs().max().item()
    err_torch = (frequency_reference(x, 10).double() - exact).abs().max().item()
    assert err_taichi <= 2.0 * err_torch + 1e-6, (err_taichi, err_torch)


def test_frequency_gradcheck_float64(f64):
    x = torch.rand(9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: frequency_encode(x, 4, True), (x,))


def test_sh_hand_computed():
    # along +z: Y00, Y10 = 0.4886*z, Y20 = 0.9462 - 0.3154, Y30 = 0.3732*(5-3); x/y terms vanish
    d = torch.tensor([[0.0, 0.0, 1.0]])
    out = sh_encode(d, 4)[0]
    assert out.shape == (16,)
    torch.testing.assert_close(out[0], torch.tensor(0.28209479177387814))
    torch.testing.assert_close(out[2], torch.tensor(0.48860251190291987))
    torch.testing.assert_close(out[6], torch.tensor(0.94617469575755997 - 0.31539156525251999))
    torch.testing.assert_close(out[12], torch.tensor(0.3731763325901154 * 2.0))
    assert out[[1, 3, 4, 5, 7, 8, 9, 10, 11, 13, 14, 15]].abs().max() < 1e-7


def test_sh_is_orthonormal_on_the_sphere():
    # Monte-Carlo: E[Y_i Y_j] over uniform directions = delta_ij / (4 pi)
    gen = torch.Generator().manual_seed(0)
    d = F.normalize(torch.randn(200_000, 3, generator=gen, dtype=torch.float64), dim=-1)
    y = sh_reference(d, 4)
    gram = 4 * math.pi * (y.T @ y) / d.shape[0]
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.03, rtol=0)


@pytest.mark.parametrize("degree", [1, 2, 3, 4])
def test_sh_kernel_matches_reference(degree):
    torch.manual_seed(degree)
    d = F.normalize(torch.randn(3000, 3), dim=-1).requires_grad_(True)
    dr = d.detach().clone().requires_grad_(True)
    enc = SphericalHarmonicsEncoding(degree)
    a, b = enc(d), sh_reference(dr, degree)
    assert a.shape == (3000, degree * degree) == (3000, enc.output_dim)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    g = torch.randn_like(a)
    (a * g).sum().backward()
    (b * g).sum().backward()
    torch.testing.assert_close(d.grad, dr.grad, atol=1e-5, rtol=1e-4)


def test_sh_gradcheck_float64(f64):
    d = F.normalize(torch.randn(7, 3, dtype=torch.float64), dim=-1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: sh_encode(d, 4), (d,))


def test_sh_rejects_bad_degree_and_shape():
    with pytest.raises(ValueError, match="degree"):
        SphericalHarmonicsEncoding(5)
    with pytest.raises(ValueError, match="shape"):
        SphericalHarmonicsEncoding(2)(torch.rand(4, 2))


def test_fourier_features():
    enc = FourierFeatureEncoding(2, 64, sigma=10.0, seed=3)
    assert enc.output_dim == 128 and enc.B.shape == (64, 2)
    assert 5.0 < enc.B.std().item() < 15.0
    torch.testing.assert_close(enc.B, FourierFeatureEncoding(2, 64, sigma=10.0, seed=3).B)  # seeded
    assert not torch.equal(enc.B, FourierFeatureEncoding(2, 64, sigma=10.0, seed=4).B)
    x = torch.rand(5, 2)
    out = enc(x)
    proj = 2 * math.pi * x.double() @ enc.B.double().T  # float64 reference
    # float32 arguments reach |2 pi x B| ~ 1e2, where one rounding of the argument moves cos by
    # ~|arg| * 2^-24: the tolerance scales with the largest argument
    tol = 8 * float(proj.abs().max()) * torch.finfo(torch.float32).eps
    torch.testing.assert_close(out.double(), torch.cat([proj.cos(), proj.sin()], -1), atol=tol, rtol=0)
    torch.testing.assert_close(out[:, :64] ** 2 + out[:, 64:] ** 2, torch.ones(5, 64))
    assert "B" in enc.state_dict() and not list(enc.parameters())
