"""The image field: an input encoding followed by a small MLP, (N, 2) pixel coords -> (N, 3) RGB.

This is the classic encoding comparison (Tancik et al. 2020, Fig. 1; Mueller et al.
2022, Fig. 3): the same tiny MLP fits an image far better when its coordinates are
passed through Fourier features or a hash grid than when it sees raw ``(u, v)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .configs import IMAGE_ENCODINGS, ImageFieldConfig

__all__ = ["ENCODINGS", "ImageFieldConfig", "ImageField", "make_image_encoding"]

ENCODINGS = IMAGE_ENCODINGS
EncodingName = Literal["hashgrid", "fourier", "frequency", "none"]


class _Identity(nn.Module):
    """The ``none`` encoding: raw coordinates."""

    def __init__(self, n_input_dims: int = 2) -> None:
        super().__init__()
        self.output_dim = n_input_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def make_image_encoding(config: ImageFieldConfig) -> nn.Module:
    """The 2D encoding named by ``config.encoding``; it has an ``output_dim`` attribute."""
    name = config.encoding
    if name == "hashgrid":
        return config.hash_grid(2)
    if name == "fourier":
        from ..encoding import FourierFeatureEncoding

        return FourierFeatureEncoding(2, config.fourier_features, config.fourier_sigma, config.seed)
    if name == "frequency":
        from ..encoding import FrequencyEncoding

        return FrequencyEncoding(2, config.n_frequencies, include_input=True)
    if name == "none":
        return _Identity(2)
    raise ValueError(f"unknown encoding {name!r}: choose one of {', '.join(ENCODINGS)}")


class ImageField(nn.Module):
    """Encoding + MLP: (N, 2) coordinates in [0,1]^2 (x right, y down) -> (N, 3) RGB in (0, 1).

    Args:
        config: the architecture.

    Example:
        >>> field = ImageField(ImageFieldConfig(encoding="fourier"))
        >>> rgb = field(torch.rand(1024, 2))   # (1024, 3)
    """

    def __init__(self, config: ImageFieldConfig) -> None:
        super().__init__()
        self.config = config
        self.encoding = make_image_encoding(config)
        layers: list[nn.Module] = []
        width = self.encoding.output_dim
        for _ in range(config.n_hidden_layers):
            layers += [nn.Linear(width, config.hidden), nn.ReLU(inplace=True)]
            width = config.hidden
        layers.append(nn.Linear(width, 3))
        self.mlp = nn.Sequential(*layers)

    def forward(self, uv: torch.Tensor) -> torch.Tensor:
        """RGB (N, 3) at coordinates ``uv`` (N, 2)."""
        return torch.sigmoid(self.mlp(self.encoding(uv)))
