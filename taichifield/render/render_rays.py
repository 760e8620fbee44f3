"""Render a batch of rays through a radiance field given as a callable (nerfacc style).

The pipeline: sample (stratified between near and far, or the occupancy-grid marcher),
evaluate the field on the packed samples, composite with :func:`volume_render`.

Example::

    def rgb_sigma_fn(t_starts, t_ends, ray_indices):
        ri = ray_indices.long()
        x = rays_o[ri] + rays_d[ri] * (0.5 * (t_starts + t_ends))[:, None]
        return field(x, rays_d[ri])                    # (S, 3) colours, (S,) densities

    out = render_rays(rays_o, rays_d, rgb_sigma_fn, grid=grid, near=2.0, far=6.0,
                      background=torch.ones(3))
    loss = ((out["rgb"] - target) ** 2).mean()
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch

from .raymarch import OccupancyGrid
from .stratified import sample_stratified
from .volrend import visible_samples, volume_render

__all__ = ["render_rays", "RgbSigmaFn", "SigmaFn"]

SigmaFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
RgbSigmaFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Bound = Union[float, torch.Tensor]


def render_rays(rays_o: torch.Tensor, rays_d: torch.Tensor, rgb_sigma_fn: RgbSigmaFn, *,
                grid: Optional[OccupancyGrid] = None, near: Bound, far: Bound, n_samples: int = 64,
                step_size: Optional[float] = None, background: Optional[torch.Tensor] = None,
                perturb: bool = False, generator: Optional[torch.Generator] = None,
                max_samples_per_ray: int = 1024, sigma_fn: Optional[SigmaFn] = None,
                alpha_threshold: float = 0.0, cone_angle: float = 0.0, return_samples: bool = False
                ) -> dict[str, Any]:
    """Sample, evaluate and composite a batch of rays.

    Args:
        rays_o: (n_rays, 3) origins.
        rays_d: (n_rays, 3) unit directions.
        rgb_sigma_fn: ``(t_starts (S,), t_ends (S,), ray_indices (S,) int32) -> (rgbs (S, 3),
            sigmas (S,))``; it looks up the rays itself (closure). Gradients flow through
            its outputs.
        grid: occupancy grid to march (skips empty space); None samples ``n_samples``
            stratified intervals per ray between near and far.
        near, far: floats or (n_rays,) tensors.
        n_samples: stratified samples per ray (only without a grid).
        step_size: marching step (only with a grid; default the grid's).
        background: None, (3,) or (n_rays, 3) colour behind the scene.
        perturb: jitter the samples (training).
        generator: torch generator for the jitter.
        max_samples_per_ray: marcher cap per ray.
        sigma_fn: optional ``(t_starts, t_ends, ray_indices) -> sigmas (S,)``, evaluated without
            gradients first to drop samples hidden behind surfaces (transmittance below 1e-4)
            before ``rgb_sigma_fn`` runs (nerfacc's culling): same image, fewer evaluations.
        alpha_threshold: with ``sigma_fn``, also drop samples whose alpha is at most this.
        cone_angle: grid marching only: step growing with distance (see
            :meth:`OccupancyGrid.sample`).
        return_samples: also return ``samples``: the composited ``(t_starts, t_ends,
            ray_indices, sigmas)`` (each (S,); ``sigmas`` in the field's graph), for losses
            on the samples' weights (e.g. :mod:`taichifield.render.distortion`).

    Returns:
        dict with ``rgb`` (n_rays, 3), ``depth`` (n_rays,) (expected ``t``, not normalised by
        opacity), ``opacity`` (n_rays,), all on ``rays_o.device``; ``n_marched`` (int, samples
        the sampler produced) and ``n_samples`` (int, samples given to ``rgb_sigma_fn``):
        both are tensor sizes the host knows already, so reading them costs no sync.

    Note:
        Everything runs on the rays' device: with a grid, ``rays_o``, ``rays_d`` and the grid
        must be on one device (:func:`taichifield.runtime.check_device`); nothing is moved.
        Host syncs: one to size the marched samples (grid) and, with ``sigma_fn``, one to
        size the kept ones.
    """
    n_rays = rays_o.shape[0]
    if grid is None:
        t_starts, t_ends, ray_indices = sample_stratified(
            rays_o, rays_d, near, far, n_samples, perturb=perturb, generator=generator)
    else:
        t_starts, t_ends, ray_indices = grid.sample(
            rays_o, rays_d, near, far, step_size=step_size, max_samples_per_ray=max_samples_per_ray,
            perturb=perturb, generator=generator, cone_angle=cone_angle)
    n_marched = int(t_starts.numel())
    if sigma_fn is not None and n_marched > 0:
        with torch.no_grad():
            sig = sigma_fn(t_starts, t_ends, ray_indices).reshape(-1)
        keep = visible_samples(sig, t_starts, t_ends, ray_indices, n_rays, alpha_threshold)
        kept = torch.nonzero(keep).squeeze(1)  # one sync sizes the kept samples; the gathers need none
        t_starts, t_ends, ray_indices = t_starts[kept], t_ends[kept], ray_indices[kept]
    if t_starts.numel() == 0:
        rgb = rays_o.new_zeros((n_rays, 3))
        opacity = rays_o.new_zeros((n_rays,))
        if background is not None:
            rgb = rgb + background.to(rgb).expand(n_rays, 3)
        out = {"rgb": rgb, "depth": rays_o.new_zeros((n_rays,)), "opacity": opacity,
               "n_marched": n_marched, "n_samples": 0}
        if return_samples:
            out["samples"] = (t_starts, t_ends, ray_indices, t_starts.new_zeros((0,)))
        return out
    rgbs, sigmas = rgb_sigma_fn(t_starts, t_ends, ray_indices)
    rgb, depth, opacity = volume_render(sigmas.reshape(-1), rgbs.reshape(-1, 3), t_starts, t_ends,
                                        ray_indices, n_rays, background=background)
    out = {"rgb": rgb, "depth": depth, "opacity": opacity, "n_marched": n_marched,
           "n_samples": int(t_starts.numel())}
    if return_samples:
        out["samples"] = (t_starts, t_ends, ray_indices, sigmas.reshape(-1))
    return out
