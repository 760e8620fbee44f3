"""Real spherical harmonics of unit view directions (Instant-NGP's constants; Sloan 2013).

Degree ``D`` gives the ``D**2`` real SH basis functions of bands 0..D-1 evaluated at a
unit direction ``(x, y, z)``, ordered and signed exactly like tiny-cuda-nn's
``SphericalHarmonics`` encoding (which first maps its [0,1] inputs to [-1,1]; here
directions are taken as they are). Degrees 1..4 are supported (NeRF colour heads use 4).

Note:
    Directions are not renormalised: the polynomials are evaluated at the given vector.
    Pass unit vectors (``F.normalize(d, dim=-1)``).
"""

# no `from __future__ import annotations`: Taichi reads kernel annotations at runtime

from typing import Any, Literal, Sequence

import taichi as ti
import torch
from torch import nn

from .. import runtime
from ..bridge import TaichiOp

__all__ = ["SphericalHarmonicsEncoding", "sh_encode", "sh_reference", "MAX_DEGREE"]

MAX_DEGREE = 4


@ti.kernel
def _sh_fwd(d: ti.types.ndarray(ndim=2), degree: ti.template(), out: ti.types.ndarray(ndim=2)):
    for i in range(d.shape[0]):
        x, y, z = d[i, 0], d[i, 1], d[i, 2]
        out[i, 0] = 0.28209479177387814
        if ti.static(degree > 1):
            out[i, 1] = -0.48860251190291987 * y
            out[i, 2] = 0.48860251190291987 * z
            out[i, 3] = -0.48860251190291987 * x
        if ti.static(degree > 2):
            xy, yz, xz = x * y, y * z, x * z
            x2, y2, z2 = x * x, y * y, z * z
            out[i, 4] = 1.0925484305920792 * xy
            out[i, 5] = -1.0925484305920792 * yz
            out[i, 6] = 0.94617469575755997 * z2 - 0.31539156525251999
            out[i, 7] = -1.0925484305920792 * xz
            out[i, 8] = 0.54627421529603959 * x2 - 0.54627421529603959 * y2
        if ti.static(degree > 3):
            x2, y2, z2 = x * x, y * y, z * z
            out[i, 9] = 0.59004358992664352 * y * (-3.0 * x2 + y2)
            out[i, 10] = 2.8906114426405538 * x * y * z
            out[i, 11] = 0.45704579946446572 * y * (1.0 - 5.0 * z2)
            out[i, 12] = 0.3731763325901154 * z * (5.0 * z2 - 3.0)
            out[i, 13] = 0.45704579946446572 * x * (1.0 - 5.0 * z2)
            out[i, 14] = 1.4453057213202769 * z * (x2 - y2)
            out[i, 15] = 0.59004358992664352 * x * (-x2 + 3.0 * y2)


@ti.kernel
def _sh_bwd(d: ti.types.ndarray(ndim=2), degree: ti.template(), grad_out: ti.types.ndarray(ndim=2),
            grad_d: ti.types.ndarray(ndim=2)):
    """d(sum_j g_j Y_j)/d(x, y, z): the hand-differentiated polynomials of :func:`_sh_fwd`."""
    for i in range(d.shape[0]):
        x, y, z = d[i, 0], d[i, 1], d[i, 2]
        gx, gy, gz = 0.0, 0.0, 0.0
        if ti.static(degree > 1):
            a = 0.48860251190291987
            gy += -a * grad_out[i, 1]
            gz += a * grad_out[i, 2]
            gx += -a * grad_out[i, 3]
        if ti.static(degree > 2):
            b, c, e = 1.0925484305920792, 0.94617469575755997, 0.54627421529603959
            g4, g5, g6, g7, g8 = grad_out[i, 4], grad_out[i, 5], grad_out[i, 6], grad_out[i, 7], grad_out[i, 8]
            gx += b * y * g4 - b * z * g7 + 2.0 * e * x * g8
            gy += b * x * g4 - b * z * g5 - 2.0 * e * y * g8
            gz += -b * y * g5 + 2.0 * c * z * g6 - b * x * g7
        if ti.static(degree > 3):
            f, g, h, k, m = 0.59004358992664352, 2.8906114426405538, 0.45704579946446572, 0.3731763325901154, 1.4453057213202769
            x2, y2, z2 = x * x, y * y, z * z
            g9, g10, g11, g12 = grad_out[i, 9], grad_out[i, 10], grad_out[i, 11], grad_out[i, 12]
            g13, g14, g15 = grad_out[i, 13], grad_out[i, 14], grad_out[i, 15]
            gx += (-6.0 * f * x * y * g9 + g * y * z * g10 + h * (1.0 - 5.0 * z2) * g13
                   + 2.0 * m * x * z * g14 + 3.0 * f * (y2 - x2) * g15)
            gy += (3.0 * f * (y2 - x2) * g9 + g * x * z * g10 + h * (1.0 - 5.0 * z2) * g11
                   - 2.0 * m * y * z * g14 + 6.0 * f * x * y * g15)
            gz += (g * x * y * g10 - 10.0 * h * y * z * g11 + k * (15.0 * z2 - 3.0) * g12
                   - 10.0 * h * x * z * g13 + m * (x2 - y2) * g14)
        grad_d[i, 0] = gx
        grad_d[i, 1] = gy
        grad_d[i, 2] = gz


def _backward(saved: Sequence[Any], grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    d, degree = saved
    (g,) = grads
    if g is None:
        return [None, None]
    grad_d = torch.empty_like(d)
    _sh_bwd(d, degree, g.to(d.dtype).contiguous(), grad_d)
    return [grad_d, None]


_OP = TaichiOp(
    _sh_fwd,
    outputs=lambda d, degree: [torch.empty(d.shape[0], degree * degree, dtype=d.dtype, device=d.device)],
    backward=_backward,
    name="spherical_harmonics",
)


def sh_encode(dirs: torch.Tensor, degree: int = 4) -> torch.Tensor:
    """Taichi SH: (N, 3) unit directions -> (N, degree**2); differentiable (hand-written backward kernel)."""
    runtime.ensure_init()
    return _OP(dirs, degree)


def sh_reference(dirs: torch.Tensor, degree: int = 4) -> torch.Tensor:
    """Pure-torch SH, identical constants and order to :func:`sh_encode`."""
    x, y, z = dirs.unbind(-1)
    out = [0.0 * x + 0.28209479177387814]  # keeps the graph for degree 1 (gradient zero)
    if degree > 1:
        out += [-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x]
    if degree > 2:
        x2, y2, z2 = x * x, y * y, z * z
        out += [
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.94617469575755997 * z2 - 0.31539156525251999,
            -1.0925484305920792 * x * z,
            0.54627421529603959 * x2 - 0.54627421529603959 * y2,
        ]
    if degree > 3:
        out += [
            0.59004358992664352 * y * (-3.0 * x2 + y2),
            2.8906114426405538 * x * y * z,
            0.45704579946446572 * y * (1.0 - 5.0 * z2),
            0.3731763325901154 * z * (5.0 * z2 - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * z2),
            1.4453057213202769 * z * (x2 - y2),
            0.59004358992664352 * x * (-x2 + 3.0 * y2),
        ]
    return torch.stack(out, dim=-1)


class SphericalHarmonicsEncoding(nn.Module):
    """Real spherical harmonics: (N, 3) unit directions -> (N, degree**2).

    Args:
        degree: number of bands, 1..4 (4 gives 16 coefficients, as in Instant-NGP).
        implementation: ``"taichi"`` (forward and hand-written backward kernels) or ``"torch"``.

    Example:
        >>> SphericalHarmonicsEncoding(4)(F.normalize(torch.randn(8, 3), dim=-1)).shape   # (8, 16)
    """

    def __init__(self, degree: int = 4, implementation: Literal["taichi", "torch"] = "taichi") -> None:
        super().__init__()
        if not 1 <= degree <= MAX_DEGREE:
            raise ValueError(f"SphericalHarmonicsEncoding: degree must be in 1..{MAX_DEGREE}, not {degree}")
        if implementation not in ("taichi", "torch"):
            raise ValueError(f"SphericalHarmonicsEncoding: implementation must be 'taichi' or 'torch', not {implementation!r}")
        self.degree = degree
        self.implementation = implementation
        self.n_input_dims = 3
        self.output_dim = degree * degree

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        """Encode directions (N, 3) -> (N, degree**2)."""
        if dirs.dim() != 2 or dirs.shape[1] != 3:
            raise ValueError(f"SphericalHarmonicsEncoding: expected directions of shape (N, 3), got {tuple(dirs.shape)}")
        if self.implementation == "torch" or dirs.shape[0] == 0:
            return sh_reference(dirs, self.degree)
        return sh_encode(dirs, self.degree)

    def extra_repr(self) -> str:
        return f"degree={self.degree}, implementation={self.implementation!r}"
