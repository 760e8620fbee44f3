"""NeRF positional (frequency) encoding (Mildenhall et al. 2020, Eq. 4).

``gamma(x) = [x, sin(2^0 pi x), cos(2^0 pi x), ..., sin(2^{K-1} pi x), cos(2^{K-1} pi x)]``
applied to every coordinate. Layout of the output (N, d * (include_input + 2K)):
``[x (d), sin(2^0 pi x) (d), cos(2^0 pi x) (d), sin(2^1 pi x) (d), ...]``.

Note:
    Any real x is accepted (no clamping): the encoding is periodic beyond [0, 1]
    with period 2 in each coordinate for the sin/cos part.
"""

# no `from __future__ import annotations`: Taichi reads kernel annotations at runtime

import math
from typing import Any, Literal, Sequence

import taichi as ti
import torch
from torch import nn

from .. import runtime
from ..bridge import TaichiOp

__all__ = ["FrequencyEncoding", "frequency_encode", "frequency_reference"]


RESTART = 4
"""Octaves between exact sin/cos evaluations; the ones between use the double-angle recurrence."""


@ti.func
def _octave(s, c, scale, v, j):
    """(sin, cos) of ``scale * v`` for octave j from octave j-1's (s, c).

    Every RESTART-th octave is evaluated exactly; the others use sin 2a = 2 sin a cos a,
    cos 2a = 1 - 2 sin^2 a, whose error doubles per octave: restarting keeps it within a
    few ulps of the direct evaluation while calling sin/cos RESTART times less often.
    """
    s_new, c_new = 2.0 * s * c, 1.0 - 2.0 * s * s
    if j % RESTART == 0:
        s_new, c_new = ti.sin(scale * v), ti.cos(scale * v)
    return s_new, c_new


@ti.kernel
def _freq_fwd(x: ti.types.ndarray(ndim=2), n_freq: ti.i32, include: ti.i32, out: ti.types.ndarray(ndim=2)):
    d = x.shape[1]
    for i, k in ti.ndrange(x.shape[0], d):
        v = x[i, k]
        if include != 0:
            out[i, k] = v
        s, c, scale = 0.0, 0.0, math.pi
        for j in range(n_freq):
            s, c = _octave(s, c, scale, v, j)
            col = (include + 2 * j) * d + k
            out[i, col] = s
            out[i, col + d] = c
            scale *= 2.0


@ti.kernel
def _freq_bwd(
    x: ti.types.ndarray(ndim=2),
    n_freq: ti.i32,
    include: ti.i32,
    grad_out: ti.types.ndarray(ndim=2),
    grad_x: ti.types.ndarray(ndim=2),
):
    d = x.shape[1]
    for i, k in ti.ndrange(x.shape[0], d):
        v = x[i, k]
        g = 0.0
        if include != 0:
            g = grad_out[i, k]
        s, c, scale = 0.0, 0.0, math.pi
        for j in range(n_freq):
            s, c = _octave(s, c, scale, v, j)
            col = (include + 2 * j) * d + k
            g += scale * (grad_out[i, col] * c - grad_out[i, col + d] * s)
            scale *= 2.0
        grad_x[i, k] = g


def _outputs(x: torch.Tensor, n_freq: int, include: int) -> list[torch.Tensor]:
    return [torch.empty(x.shape[0], x.shape[1] * (include + 2 * n_freq), dtype=x.dtype, device=x.device)]


def _backward(saved: Sequence[Any], grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    x, n_freq, include = saved
    (g,) = grads
    if g is None:
        return [None, None, None]
    grad_x = torch.empty_like(x)
    _freq_bwd(x, n_freq, include, g.to(x.dtype).contiguous(), grad_x)
    return [grad_x, None, None]


_OP = TaichiOp(_freq_fwd, outputs=_outputs, backward=_backward, name="frequency_encoding")


def frequency_encode(x: torch.Tensor, n_frequencies: int, include_input: bool = True) -> torch.Tensor:
    """Taichi frequency encoding: x (N, d) -> (N, d * (include_input + 2 * n_frequencies)); differentiable in x."""
    runtime.ensure_init()
    return _OP(x, int(n_frequencies), int(include_input))


def frequency_reference(x: torch.Tensor, n_frequencies: int, include_input: bool = True) -> torch.Tensor:
    """Pure-torch frequency encoding, same layout as :func:`frequency_encode`."""
    scales = math.pi * (2.0 ** torch.arange(n_frequencies, dtype=x.dtype, device=x.device))  # (K,)
    arg = x[:, None, :] * scales[None, :, None]  # (N, K, d)
    sc = torch.stack([torch.sin(arg), torch.cos(arg)], dim=2).reshape(x.shape[0], -1)  # (N, K*2*d)
    return torch.cat([x, sc], dim=1) if include_input else sc


class FrequencyEncoding(nn.Module):
    """NeRF positional encoding: (N, d) -> (N, d * (include_input + 2 * n_frequencies)).

    Args:
        n_input_dims: d.
        n_frequencies: K; frequencies 2^0 pi ... 2^{K-1} pi.
        include_input: prepend x itself.
        implementation: ``"taichi"`` (Taichi kernel, hand-written backward) or ``"torch"``.

    Example:
        >>> FrequencyEncoding(3, 10)(torch.rand(8, 3)).shape   # (8, 63)
    """

    def __init__(
        self,
        n_input_dims: int = 3,
        n_frequencies: int = 10,
        include_input: bool = True,
        implementation: Literal["taichi", "torch"] = "taichi",
    ) -> None:
        super().__init__()
        if implementation not in ("taichi", "torch"):
            raise ValueError(f"FrequencyEncoding: implementation must be 'taichi' or 'torch', not {implementation!r}")
        if n_input_dims < 1 or n_frequencies < 0:
            raise ValueError("FrequencyEncoding: need n_input_dims >= 1 and n_frequencies >= 0")
        self.n_input_dims = n_input_dims
        self.n_frequencies = n_frequencies
        self.include_input = include_input
        self.implementation = implementation
        self.output_dim = n_input_dims * (int(include_input) + 2 * n_frequencies)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x`` (N, d) -> (N, output_dim)."""
        if x.dim() != 2 or x.shape[1] != self.n_input_dims:
            raise ValueError(f"FrequencyEncoding: expected x of shape (N, {self.n_input_dims}), got {tuple(x.shape)}")
        if self.implementation == "torch" or x.shape[0] == 0:
            return frequency_reference(x, self.n_frequencies, self.include_input)
        return frequency_encode(x, self.n_frequencies, self.include_input)

    def extra_repr(self) -> str:
        return f"n_input_dims={self.n_input_dims}, n_frequencies={self.n_frequencies}, include_input={self.include_input}, implementation={self.implementation!r}"
