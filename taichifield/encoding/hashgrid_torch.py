"""The pure-torch reference of the hash grid (and the level layout both implementations share).

Same math as the Taichi kernels in :mod:`taichifield.encoding.hashgrid`: see that
module for the encoding (Mueller et al. 2022). Kept separate so the reference stays
readable next to nothing but plain torch.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["PRIMES", "level_resolutions", "level_meta", "hashgrid_reference"]

PRIMES = (1, 2654435761, 805459861)


def level_resolutions(n_levels: int, base_resolution: int, max_resolution: int) -> list[int]:
    """``N_l = floor(N_min * b**l)`` with the growth factor ``b`` of Eq. (3) (computed in float64)."""
    if n_levels == 1:
        return [int(base_resolution)]
    b = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))
    return [int(math.floor(base_resolution * b**l + 1e-9)) for l in range(n_levels)]


def level_meta(resolutions: Sequence[int], n_input_dims: int, log2_t: int) -> torch.Tensor:
    """(L, 2) int32 per-level ``(N_l, dense)``; dense when ``(N_l + 1)**d <= T``."""
    T = 1 << log2_t
    return torch.tensor([[r, int((r + 1) ** n_input_dims <= T)] for r in resolutions], dtype=torch.int32)


def hashgrid_reference(x: torch.Tensor, table: torch.Tensor, meta: torch.Tensor, log2_t: int, n_features: int) -> torch.Tensor:
    """Pure-torch hash grid with the same math as the Taichi kernels.

    Args:
        x: (N, d) points, d = 2 or 3; clamped to [0, 1].
        table: (L * T * F,) flat feature table.
        meta: (L, 2) int32: per level ``(N_l, dense)``.
        log2_t: log2 of the per-level table size T.
        n_features: F.

    Returns:
        (N, L * F) encoded features (differentiable w.r.t. ``table`` and ``x``).
    """
    n, d = x.shape
    L, F, T = meta.shape[0], n_features, 1 << log2_t
    res = meta[:, 0].to(torch.int64).to(x.device)  # (L,)
    dense = meta[:, 1].to(torch.bool).to(x.device)  # (L,)
    p = x.clamp(0.0, 1.0)[:, None, :] * res[None, :, None].to(x.dtype)  # (N, L, d)
    cell = torch.minimum(torch.floor(p).to(torch.int64), (res - 1)[None, :, None])  # (N, L, d)
    frac = p - cell.to(x.dtype)
    r1 = (res + 1)[None, :]  # (1, L)
    out = torch.zeros(n, L, F, dtype=table.dtype, device=x.device)
    tab = table.view(L, T, F)
    lvl = torch.arange(L, device=x.device)[None, :]
    for corner in range(1 << d):
        bits = [(corner >> k) & 1 for k in range(d)]
        c = [cell[..., k] + bits[k] for k in range(d)]  # each (N, L)
        w = torch.ones_like(frac[..., 0])
        for k in range(d):
            w = w * (frac[..., k] if bits[k] else 1.0 - frac[..., k])
        if d == 3:
            dense_idx = c[0] + r1 * (c[1] + r1 * c[2])
            hashed = c[0] ^ (c[1] * PRIMES[1]) ^ (c[2] * PRIMES[2])
        else:
            dense_idx = c[0] + r1 * c[1]
            hashed = c[0] ^ (c[1] * PRIMES[1])
        idx = torch.where(dense[None, :], dense_idx, hashed & (T - 1))  # (N, L)
        out = out + w[..., None] * tab[lvl, idx]  # (N, L, F)
    return out.reshape(n, L * F)
