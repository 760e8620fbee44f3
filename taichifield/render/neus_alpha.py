"""NeuS's discrete opacity (Wang et al. 2021, Eq. 13) and its hand-off to the volume renderer.

For a sample at the midpoint of ``[t_i, t_i + dt_i]`` with signed distance ``s`` and
directional derivative ``c = d . grad s`` (``c < 0`` where the ray enters the surface), the SDF at
the interval's ends is estimated linearly, ``s_prev = s - c' dt / 2`` and ``s_next = s + c' dt / 2``,
with NeuS's *cos annealing* (the official code's ``cos_anneal_ratio`` r, 0 -> 1 during training)::

    c' = -(relu(-c / 2 + 1/2) (1 - r) + relu(-c) r)           (always <= 0)
    alpha = clamp((Phi(s_prev inv_s) - Phi(s_next inv_s) + eps) / (Phi(s_prev inv_s) + eps), 0, 1)

``Phi`` is the sigmoid (the logistic CDF), ``inv_s`` NeuS's learned sharpness and ``eps``
(1e-5 in NeuS's code) keeps the ratio finite where both CDFs vanish. Early in training
(r = 0) back faces and grazing rays still get some opacity, which lets the surface form.

The existing Taichi :func:`~taichifield.render.volrend.volume_render` composites densities; an
interval of density ``sigma`` has opacity ``1 - exp(-sigma dt)``, so each alpha becomes the
density that gives it exactly (:func:`alpha_to_sigma`)::

    sigma = -log(1 - min(alpha, 1 - 1e-6)) / dt

Then the renderer's weights ``T_i alpha_i`` with ``T_i = prod_{j<i} (1 - alpha_j)`` are NeuS's,
and its hand-written backward (gradcheck-tested) carries the gradient to alpha through this
pure-torch conversion. Nothing here is a new kernel.
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["neus_alpha", "alpha_to_sigma", "alpha_composite_reference", "ALPHA_MAX"]

ALPHA_MAX = 1.0 - 1e-6
"""Largest alpha turned into a density (a finite ``-log(1 - alpha)``)."""


def neus_alpha(sdf: torch.Tensor, gradient: torch.Tensor, dirs: torch.Tensor, dt: torch.Tensor,
               inv_s: torch.Tensor, cos_anneal_ratio: float = 1.0, eps: float = 1e-5) -> torch.Tensor:
    """NeuS alpha (S,) in [0, 1] of samples at interval midpoints (Eq. 13 with cos annealing).

    Args:
        sdf: (S,) signed distance at the midpoints.
        gradient: (S, 3) SDF gradient there (need not be unit; NeuS uses it as is).
        dirs: (S, 3) unit ray directions.
        dt: (S,) interval lengths.
        inv_s: () or (S,) sharpness.
        cos_anneal_ratio: r in [0, 1]; 1 is the plain linear estimate ``c' = min(c, 0)``.
        eps: the ratio's regulariser.
    """
    r = float(cos_anneal_ratio)
    true_cos = (dirs * gradient).sum(-1)
    iter_cos = -(torch.relu(-true_cos * 0.5 + 0.5) * (1.0 - r) + torch.relu(-true_cos) * r)
    half = iter_cos * dt * 0.5
    prev_cdf = torch.sigmoid((sdf - half) * inv_s)
    next_cdf = torch.sigmoid((sdf + half) * inv_s)
    return ((prev_cdf - next_cdf + eps) / (prev_cdf + eps)).clamp(0.0, 1.0)


def alpha_to_sigma(alpha: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """The density (S,) whose interval opacity ``1 - exp(-sigma dt)`` is ``alpha`` (S,), for
    intervals of length ``dt`` (S,) > 0; alpha is clamped to :data:`ALPHA_MAX`."""
    return -torch.log1p(-alpha.clamp(0.0, ALPHA_MAX)) / dt


def alpha_composite_reference(alpha: torch.Tensor, rgbs: torch.Tensor, ray_indices: torch.Tensor, n_rays: int,
                              background: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch alpha compositing (NeuS's own renderer), for tests: weights ``w_i = alpha_i
    prod_{j<i, same ray} (1 - alpha_j)``, colour ``sum w_i c_i + (1 - sum w_i) background``.

    Args:
        alpha: (S,); rgbs: (S, 3); ray_indices: (S,) sorted; background: None, (3,) or (n_rays, 3).

    Returns:
        rgb (n_rays, 3), opacity (n_rays,). (No early termination, unlike the Taichi renderer.)
    """
    ray = ray_indices.long()
    log_t = torch.log1p(-alpha.clamp(0.0, ALPHA_MAX))
    cs = torch.cumsum(log_t, 0)
    counts = torch.bincount(ray, minlength=n_rays)
    start = torch.cumsum(counts, 0) - counts  # each ray's first sample (rays are sorted)
    excl = cs - log_t - (cs[start[ray]] - log_t[start[ray]])
    w = alpha * torch.exp(excl)
    rgb = alpha.new_zeros((n_rays, 3)).index_add(0, ray, w[:, None] * rgbs)
    opacity = alpha.new_zeros((n_rays,)).index_add(0, ray, w)
    if background is not None:
        rgb = rgb + (1.0 - opacity)[:, None] * background.to(rgb).reshape(-1, 3)
    return rgb, opacity
