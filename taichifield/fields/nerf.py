"""The NeRF radiance field: small MLPs over an input encoding (Instant-NGP's architecture).

``encoding="hashgrid"`` (Mueller et al. 2022, Sec. 5.4)::

    x in aabb --normalise--> [0,1]^3 --HashGrid--> (L*F) --MLP 64x1--> 16
        sigma = trunc_exp(h[0])            geometry feature g = h[1:16]
    d --SH(4)--> 16 ;  [SH(d), g] (31) --MLP 64x2--> 3 --sigmoid--> rgb

``encoding="frequency"`` is the original NeRF (Mildenhall et al. 2020): positional
encoding with 10 frequencies for x and 4 for d, a wider/deeper density MLP
(``freq_hidden`` x ``freq_layers``) and the same heads, for comparison.

Radiance depends on the view direction; density does not. Points outside the aabb
get zero density. The field is a plain module: renderers take callables built from it
(:meth:`NerfField.rgb_sigma`, :meth:`NerfField.density`).
"""

from __future__ import annotations

import math

from typing import Any

import torch
from torch import nn

from ..encoding import FrequencyEncoding, SphericalHarmonicsEncoding
from .configs import NerfConfig
from .mlp import nerf_head

__all__ = ["NerfConfig", "NerfField", "trunc_exp"]


class _TruncExp(torch.autograd.Function):
    """``exp(x)`` whose backward clamps ``x`` to at most 15 (Instant-NGP's density activation)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    """Truncated exponential: ``exp(x)`` forward, gradient ``exp(min(x, 15))``."""
    return _TruncExp.apply(x)


def _mlp(n_in: int, hidden: int, n_layers: int, n_out: int, bias: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    dim = n_in
    for _ in range(n_layers):
        layers += [nn.Linear(dim, hidden, bias=bias), nn.ReLU(inplace=True)]
        dim = hidden
    layers.append(nn.Linear(dim, n_out, bias=bias))
    return nn.Sequential(*layers)


class NerfField(nn.Module):
    """Density and view-dependent colour at points in a scene box.

    Args:
        config: the architecture.
        aabb: (2, 3) scene box ``[min, max]``; positions are normalised by it to [0, 1]^3.

    Example:
        >>> field = NerfField(NerfConfig(), torch.tensor([[-1.5] * 3, [1.5] * 3]))
        >>> rgb, sigma = field(torch.rand(8, 3), F.normalize(torch.randn(8, 3), dim=-1))
    """

    def __init__(self, config: NerfConfig, aabb: torch.Tensor) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3).clone())
        c = config
        out = 1 + c.geo_feat_dim
        if c.encoding == "hashgrid":
            self.pos_encoding: nn.Module = c.hash_grid(3, c.implementation)
            self.dir_encoding: nn.Module = SphericalHarmonicsEncoding(c.sh_degree, implementation=c.implementation)
            self.density_mlp = _mlp(self.pos_encoding.output_dim, c.hidden, c.density_layers, out, bias=False)
            self.color_mlp = _mlp(self.dir_encoding.output_dim + c.geo_feat_dim, c.hidden, c.color_layers, 3, bias=False)
        elif c.encoding == "frequency":
            self.pos_encoding = FrequencyEncoding(3, c.pos_frequencies, True, implementation=c.implementation)
            self.dir_encoding = FrequencyEncoding(3, c.dir_frequencies, True, implementation=c.implementation)
            self.density_mlp = _mlp(self.pos_encoding.output_dim, c.freq_hidden, c.freq_layers, out, bias=True)
            self.color_mlp = _mlp(self.dir_encoding.output_dim + c.geo_feat_dim, c.freq_hidden // 2, 1, 3, bias=True)
        else:
            raise ValueError(f"NerfConfig.encoding must be 'hashgrid' or 'frequency', not {c.encoding!r}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """World points (N, 3) -> box coordinates (N, 3) (inside the box: [0, 1]).

        With ``config.contraction``: ``(contract(q) + 2) / 4`` for ``q`` in box units
        (:func:`taichifield.render.contraction.contract`), so all of space lands in [0, 1]^3
        and the box in its middle half [0.25, 0.75]^3.
        """
        if self.config.contraction:
            from ..render.contraction import contract, to_box_units

            return (contract(to_box_units(x, self.aabb)) + 2.0) * 0.25
        return (x - self.aabb[0]) / (self.aabb[1] - self.aabb[0])

    def _geometry(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.normalize(x)
        inside = ((u >= 0) & (u <= 1)).all(dim=-1)
        h = self.density_mlp(self.pos_encoding(u.clamp(0, 1)))
        sigma = trunc_exp(h[:, 0]) * inside.to(h.dtype)
        return sigma, h[:, 1:]

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """Density sigma (N,) >= 0 at world points ``x`` (N, 3)."""
        return self._geometry(x)[0]

    def forward(self, x: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Colour and density at points ``x`` (N, 3) seen along unit directions ``dirs`` (N, 3).

        Returns:
            rgb (N, 3) in (0, 1), sigma (N,) >= 0.
        """
        if self.config.encoding == "hashgrid" and self.config.mlp == "fused":
            return self._forward_fused(x, dirs)
        sigma, geo = self._geometry(x)
        d = self.dir_encoding(dirs)  # SH (hash-grid model) or frequency encoding of unit directions
        rgb = torch.sigmoid(self.color_mlp(torch.cat([d.to(geo.dtype), geo], dim=-1)))
        return rgb, sigma

    def forward_visible(self, x: torch.Tensor, dirs: torch.Tensor, dt: torch.Tensor,
                        min_alpha: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` for inference: the colour MLP runs only on samples whose alpha
        ``1 - exp(-sigma dt)`` exceeds ``min_alpha`` (the others add at most that to a pixel;
        their colour is 0). ``dt`` (N,) are the samples' interval lengths.

        Returns:
            rgb (N, 3), sigma (N,) as :meth:`forward`.
        """
        if self.config.encoding == "hashgrid" and self.config.mlp == "fused":
            return self._forward_fused(x, dirs)
        sigma, geo = self._geometry(x)
        rgb = sigma.new_zeros((sigma.shape[0], 3))
        seen = torch.nonzero(sigma * dt > -math.log1p(-min_alpha)).squeeze(1)
        if seen.numel() > 0:
            d = self.dir_encoding(dirs[seen])
            rgb[seen] = torch.sigmoid(self.color_mlp(torch.cat([d.to(geo.dtype), geo[seen]], dim=-1))).to(rgb.dtype)
        return rgb, sigma

    def _forward_fused(self, x: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with both MLPs as one op (:func:`taichifield.fields.mlp.nerf_head`): same
        weights, same values; fewer ops and allocations per step."""
        u = self.normalize(x)
        inside = ((u >= 0) & (u <= 1)).all(dim=-1)
        dw = [m.weight for m in self.density_mlp if isinstance(m, nn.Linear)]
        cw = [m.weight for m in self.color_mlp if isinstance(m, nn.Linear)]
        logit, rgb = nerf_head(self.pos_encoding(u.clamp(0, 1)), self.dir_encoding(dirs), dw, cw)
        return rgb, trunc_exp(logit) * inside.to(logit.dtype)

    def mlp_parameters(self) -> list[nn.Parameter]:
        """The MLP weights (for weight decay); the encoding's table is excluded."""
        return list(self.density_mlp.parameters()) + list(self.color_mlp.parameters())

    def encoding_parameters(self) -> list[nn.Parameter]:
        return list(self.pos_encoding.parameters())
