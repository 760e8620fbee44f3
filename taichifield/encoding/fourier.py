"""Random Fourier features (Tancik et al. 2020, "Fourier Features Let Networks Learn
High Frequency Functions in Low Dimensional Domains", Sec. 6).

``gamma(x) = [cos(2 pi B x), sin(2 pi B x)]`` with a fixed ``B ~ N(0, sigma^2)`` of
shape (n_features, d). Output (N, 2 * n_features).

Note:
    This encoding is a matrix product followed by sin/cos: torch's BLAS matmul and
    vectorised sin/cos are as fast as anything a Taichi kernel would do on CPU, so it
    is implemented in torch only (autograd gives its gradient). Any real x is accepted.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FourierFeatureEncoding"]


class FourierFeatureEncoding(nn.Module):
    """Gaussian random Fourier features: (N, d) -> (N, 2 * n_features).

    Args:
        n_input_dims: d.
        n_features: rows of B (the mapping size m; output is 2m).
        sigma: standard deviation of B's entries (higher: higher frequencies).
        seed: seed of the private generator that draws B (the global RNG is untouched).

    Attributes:
        B: (n_features, d) fixed buffer (saved in the state dict).
        output_dim: ``2 * n_features``.

    Example:
        >>> FourierFeatureEncoding(2, 256, sigma=10.0)(torch.rand(8, 2)).shape   # (8, 512)
    """

    def __init__(self, n_input_dims: int = 2, n_features: int = 256, sigma: float = 10.0, seed: int = 0) -> None:
        super().__init__()
        if n_input_dims < 1 or n_features < 1 or sigma <= 0:
            raise ValueError("FourierFeatureEncoding: need n_input_dims >= 1, n_features >= 1 and sigma > 0")
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("B", torch.randn(n_features, n_input_dims, generator=gen) * sigma)
        self.n_input_dims = n_input_dims
        self.n_features = n_features
        self.sigma = sigma
        self.output_dim = 2 * n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x`` (N, d) -> (N, 2 * n_features)."""
        if x.dim() != 2 or x.shape[1] != self.n_input_dims:
            raise ValueError(f"FourierFeatureEncoding: expected x of shape (N, {self.n_input_dims}), got {tuple(x.shape)}")
        proj = (2.0 * math.pi) * (x @ self.B.to(x.dtype).T)  # (N, m)
        return torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)

    def extra_repr(self) -> str:
        return f"n_input_dims={self.n_input_dims}, n_features={self.n_features}, sigma={self.sigma}"
