"""Mip-NeRF 360's distortion loss on packed samples (Barron et al., 2022, eq. 15).

For one ray with sample weights ``w_i`` over intervals ``[s_i, s_{i+1}]`` of a normalised ray
distance ``s``::

    L_dist = sum_{i,j} w_i w_j |m_i - m_j|  +  1/3 sum_i w_i^2 (s_{i+1} - s_i)

with ``m_i`` the interval midpoints. It pulls each ray's weight into as short a stretch as
possible: floaters (small weight far from the surface) and fog cost the most, so it removes
the haze that few, far-apart training views leave in real captures. The double sum is
computed in O(S) from per-ray exclusive prefix sums of ``w`` and ``w m`` (samples are sorted
by ``t`` within a ray, so ``|m_i - m_j| = m_i - m_j`` for ``j < i``)::

    sum_{i,j} w_i w_j |m_i - m_j| = 2 sum_i w_i (m_i W_i - (wm)_i),
    W_i = sum_{j<i} w_j,  (wm)_i = sum_{j<i} w_j m_j.

Torch and differentiable (autograd through the cumulative sums; each ray's first sample comes
from :func:`~taichifield.render.volrend.pack_info`), so it is its own reference;
``tests/test_distortion.py`` checks it against the O(S^2) double sum, by hand and with a
float64 ``gradcheck``.

The distance ``s``: mip-NeRF 360 normalises ``t`` so that the loss does not depend on the
scene's scale and the background (``t`` up to 1e6 box units in a contracted scene) does not
dominate it. :func:`normalized_distance` maps ``t`` to ``s = t / (t + scale)`` in [0, 1):
linear near the camera (``~ t / scale``), like disparity far away.
"""

from __future__ import annotations

from typing import Optional

import torch

from .volrend import PackedInfo, pack_info

__all__ = ["distortion_loss", "distortion_reference", "normalized_distance"]


def normalized_distance(t: torch.Tensor, scale: float) -> torch.Tensor:
    """``s = t / (t + scale)`` (same shape as ``t``, ``t >= 0``): [0, inf) -> [0, 1)."""
    return t / (t + scale)


def distortion_loss(weights: torch.Tensor, s_starts: torch.Tensor, s_ends: torch.Tensor,
                    ray_indices: torch.Tensor, n_rays: int, packed_info: Optional[PackedInfo] = None) -> torch.Tensor:
    """Per-ray distortion loss (n_rays,) of packed samples (mip-NeRF 360 eq. 15).

    Args:
        weights: (S,) compositing weights ``T_i alpha_i``.
        s_starts, s_ends: (S,) normalised interval bounds, ascending within each ray.
        ray_indices: (S,) int, sorted (samples of one ray are contiguous).
        n_rays: number of rays; rays without samples get 0.
        packed_info: :func:`~taichifield.render.volrend.pack_info` of ``ray_indices`` when already computed.

    Returns:
        (n_rays,) loss, same dtype as ``weights``; differentiable in ``weights``, ``s_starts``
        and ``s_ends``.
    """
    out = weights.new_zeros((n_rays,))
    if weights.numel() == 0:
        return out
    ray = ray_indices.long()
    mid = 0.5 * (s_starts + s_ends)
    wm = weights * mid
    # exclusive prefix sums restarted at every ray: subtract the running total at the ray's first
    # sample (accumulated in float64 so that long batches stay exact)
    cw = torch.cumsum(weights.double(), 0) - weights.double()
    cwm = torch.cumsum(wm.double(), 0) - wm.double()
    offsets, _ = packed_info if packed_info is not None else pack_info(ray_indices, n_rays)
    start = offsets.long()[ray]
    W, WM = (cw - cw[start]).to(weights.dtype), (cwm - cwm[start]).to(weights.dtype)
    per_sample = 2.0 * weights * (mid * W - WM) + weights * weights * (s_ends - s_starts) / 3.0
    return out.index_add(0, ray, per_sample)


def distortion_reference(weights: torch.Tensor, s_starts: torch.Tensor, s_ends: torch.Tensor,
                         ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """The O(S^2) double sum of eq. 15, ray by ray (tests only): (n_rays,)."""
    out = []
    for r in range(n_rays):
        sel = ray_indices.long() == r
        w, m = weights[sel], 0.5 * (s_starts[sel] + s_ends[sel])
        bi = (w[:, None] * w[None, :] * (m[:, None] - m[None, :]).abs()).sum()
        uni = (w * w * (s_ends[sel] - s_starts[sel])).sum() / 3.0
        out.append(bi + uni)
    return torch.stack(out) if out else weights.new_zeros((0,))
