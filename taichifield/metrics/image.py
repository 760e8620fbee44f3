"""Image quality metrics: PSNR and SSIM (Wang et al. 2004), in torch, on the images' device.

SSIM follows the usual NeRF evaluation (and ``skimage.metrics.structural_similarity``
with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``): an 11x11
Gaussian window (sigma 1.5), ``K1 = 0.01``, ``K2 = 0.03``, data range 1, per channel,
averaged over the pixels where the window fits entirely ("valid").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["ssim", "psnr", "psnr_images"]


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return (g / g.sum()).to(dtype)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03, data_range: float = 1.0) -> float:
    """Mean structural similarity of two images (H, W, C) (or (H, W)) in [0, data_range].

    ``SSIM = (2 mu_a mu_b + C1)(2 cov_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2))``
    with Gaussian-weighted local statistics, ``C_i = (k_i * data_range)^2``.
    """
    if a.device != b.device:
        raise ValueError(f"ssim: images are on {a.device} and {b.device}")
    if a.shape != b.shape:
        raise ValueError(f"ssim: images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    x = a.to(torch.float64)
    y = b.to(torch.float64)
    if x.dim() == 2:
        x, y = x[..., None], y[..., None]
    if min(x.shape[0], x.shape[1]) < window:
        raise ValueError(f"ssim: images of {x.shape[0]}x{x.shape[1]} are smaller than the {window}x{window} window")
    x = x.permute(2, 0, 1)[:, None]  # (C, 1, H, W)
    y = y.permute(2, 0, 1)[:, None]
    g = _gaussian_window(window, sigma, torch.float64, x.device)
    wx, wy = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, wx), wy)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return float(s.mean())


def psnr(mse: float | torch.Tensor) -> float | torch.Tensor:
    """PSNR in dB of a mean squared error on [0, 1] images, ``-10 log10(mse)`` (floored at
    1e-12); a tensor stays a tensor on its device (no host sync)."""
    if isinstance(mse, torch.Tensor):
        return -10.0 * torch.log10(mse.clamp_min(1e-12))
    return -10.0 * math.log10(max(mse, 1e-12))


def psnr_images(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1] of the same shape."""
    mse = float(((a.to(torch.float64) - b.to(torch.float64)) ** 2).mean())
    return -10.0 * math.log10(max(mse, 1e-12))
