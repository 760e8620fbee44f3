"""Stratified sampling between near and far, and hierarchical (importance) resampling.

The original NeRF sampler (Mildenhall et al., 2020, Sec. 4 and 5.2), written for packed
samples: every function returns ``(t_starts, t_ends, ray_indices)`` with the samples of a
ray contiguous and sorted, ready for :func:`taichifield.render.volrend.volume_render`.

Example::

    t0, t1, ri = sample_stratified(rays_o, rays_d, 2.0, 6.0, 64)
    weights = render_weights(sigmas, t0, t1, ri, n_rays)          # coarse pass
    f0, f1, fi = sample_importance(t0, t1, ri, weights, 128)      # fine pass
"""

from __future__ import annotations

from typing import Optional, Union

import torch

__all__ = ["sample_stratified", "sample_importance"]

Bound = Union[float, torch.Tensor]


def _per_ray(value: Bound, n_rays: int, like: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        v = value.to(dtype=like.dtype, device=like.device).reshape(-1)
        return v.expand(n_rays) if v.numel() == 1 else v
    return torch.full((n_rays,), float(value), dtype=like.dtype, device=like.device)


def sample_stratified(rays_o: torch.Tensor, rays_d: torch.Tensor, near: Bound, far: Bound,
                      n_samples: int, perturb: bool = True,
                      generator: Optional[torch.Generator] = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n_samples`` intervals per ray that tile ``[near, far]`` (NeRF Eq. 2, stratified).

    Without ``perturb`` the intervals are the ``n_samples`` equal bins. With ``perturb`` every
    interior bin edge is jittered uniformly within +-half a bin, so intervals stay ordered,
    never overlap and still cover exactly ``[near, far]``; their midpoints (where a field is
    evaluated) are then random within each stratum, as in NeRF.

    Args:
        rays_o: (n_rays, 3) origins (only the count and device are used).
        rays_d: (n_rays, 3) directions; ``t`` is measured in units of ``|rays_d|``.
        near, far: floats or (n_rays,) tensors.
        n_samples: samples per ray, >= 1.
        perturb: jitter the edges (training) or not (evaluation).
        generator: torch generator for the jitter, of the rays' device (random numbers are
            drawn where the rays are).

    Returns:
        t_starts (n_rays*n_samples,), t_ends (n_rays*n_samples,), ray_indices
        (n_rays*n_samples,) int32.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, not {n_samples}")
    n_rays = rays_o.shape[0]
    like = rays_d if rays_d.is_floating_point() else rays_d.float()
    nr, fr = _per_ray(near, n_rays, like), _per_ray(far, n_rays, like)
    u = torch.arange(n_samples + 1, dtype=like.dtype, device=like.device).expand(n_rays, -1).clone()
    if perturb and n_samples > 1:
        jitter = torch.rand((n_rays, n_samples - 1), generator=generator, dtype=like.dtype, device=like.device)
        u[:, 1:-1] += jitter - 0.5
    edges = nr[:, None] + (fr - nr)[:, None] * (u / n_samples)
    t_starts = edges[:, :-1].reshape(-1).contiguous()
    t_ends = edges[:, 1:].reshape(-1).contiguous()
    ray_indices = torch.arange(n_rays, dtype=torch.int32, device=like.device).repeat_interleave(n_samples)
    return t_starts, t_ends, ray_indices


def sample_importance(t_starts: torch.Tensor, t_ends: torch.Tensor, ray_indices: torch.Tensor,
                      weights: torch.Tensor, n_samples: int, perturb: bool = False,
                      generator: Optional[torch.Generator] = None, eps: float = 1e-5
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hierarchical resampling by inverse transform sampling (NeRF Sec. 5.2, Eq. 5).

    Each ray's weights (plus ``eps``, so empty space keeps a little mass) define a piecewise
    constant PDF over its input intervals. ``n_samples + 1`` quantiles
    ``u_k = k / n_samples`` (jittered within their strata when ``perturb``) are mapped through
    the inverse CDF; consecutive ones become the ``n_samples`` new intervals, so they are
    ordered, cover the ray's sampled range and concentrate where the weights are high.
    Rays without input samples get no output samples.

    Args:
        t_starts, t_ends: (S,) packed input intervals.
        ray_indices: (S,) int, sorted.
        weights: (S,) non-negative weights (detached; e.g. :func:`render_weights` of a
            coarse pass).
        n_samples: new intervals per (non-empty) ray.
        perturb: stratified jitter of the quantiles.
        generator: torch generator for the jitter, of the rays' device (random numbers are
            drawn where the rays are).
        eps: added to every weight.

    Returns:
        t_starts (R*n_samples,), t_ends (R*n_samples,), ray_indices (R*n_samples,) int32,
        where R is the number of rays with input samples.
    """
    device, dtype = t_starts.device, t_starts.dtype
    if t_starts.numel() == 0:
        empty = t_starts.new_zeros((0,))
        return empty, empty.clone(), torch.zeros(0, dtype=torch.int32, device=device)
    ray = ray_indices.long()
    rays, inverse, counts = torch.unique_consecutive(ray, return_inverse=True, return_counts=True)
    R = rays.numel()
    w = weights.detach().double().clamp_min(0) + eps
    total = torch.zeros(R, dtype=torch.float64, device=device).index_add(0, inverse, w)
    pdf = w / total[inverse]
    cdf_end = torch.cumsum(pdf, 0)
    first = torch.cumsum(counts, 0) - counts
    base = cdf_end[first] - pdf[first]
    # per-ray CDF in [0, 1], shifted by the ray's rank so one searchsorted serves all rays
    cdf_end = cdf_end - base[inverse]
    cdf_end[torch.cumsum(counts, 0) - 1] = 1.0
    key_end = cdf_end + inverse.double() * 2.0
    u = torch.arange(n_samples + 1, dtype=torch.float64, device=device).expand(R, -1).clone()
    if perturb:
        u = u + (torch.rand((R, n_samples + 1), generator=generator, dtype=torch.float64, device=device) - 0.5)
        u = u.clamp(0, n_samples)
    u = u / n_samples
    keys = (u + torch.arange(R, dtype=torch.float64, device=device)[:, None] * 2.0).reshape(-1)
    idx = torch.searchsorted(key_end, keys, right=False)
    last = (torch.cumsum(counts, 0) - 1).repeat_interleave(n_samples + 1)
    idx = torch.minimum(idx, last)
    c_end = cdf_end[idx]
    c_start = c_end - pdf[idx]
    frac = ((u.reshape(-1) - c_start) / pdf[idx]).clamp(0, 1)
    t = (t_starts.double()[idx] + frac * (t_ends.double()[idx] - t_starts.double()[idx])).view(R, n_samples + 1)
    t = torch.cummax(t, dim=1).values  # guard against rounding: edges never decrease
    new_starts = t[:, :-1].reshape(-1).to(dtype).contiguous()
    new_ends = t[:, 1:].reshape(-1).to(dtype).contiguous()
    new_rays = rays.to(torch.int32).repeat_interleave(n_samples)
    return new_starts, new_ends, new_rays
