"""Learnable SE(3) corrections of the training cameras (pose refinement; BARF, Lin et al. 2021;
nerfstudio's camera optimiser).

Each training view ``k`` gets a twist ``xi_k = (omega_k, tau_k)`` (rotation vector, translation)
in its *camera* frame, so the corrected pose right-multiplies the given one::

    c2w'_k = c2w_k [exp(omega_k^), tau_k; 0, 1]

and a ray ``(o, d)`` of view ``k`` with rotation ``R = c2w_k[:3, :3]`` becomes
``o' = o + R tau_k``, ``d' = R exp(omega_k^) R^T d``. Corrections start at zero (the given
poses) and are learned with the field by the same optimiser; the stored parameter is
``xi / POSE_SCALE`` so that Adam's step (about the learning rate per step, whatever the
gradient's size) moves a pose by ``POSE_SCALE * lr``: 2e-5 rad and 2e-5 box units per step
at the default lr 1e-2. Small on purpose: a CPU step holds a few hundred rays, i.e. a few
per view, so each view's gradient is mostly noise, and Adam turns noise into a random walk of
about ``lr sqrt(steps)`` (0.05 degrees after 2000 steps) while a consistent error is
still corrected by up to ``lr * steps`` (2.3 degrees). With BARF's 1e-3 per step the beer
capture's cameras wandered 1.3 degrees on average in 2000 steps (its poses are good to
~0.05 degrees) and the held-out PSNR fell from 29.12 to 24.42 dB.

Held-out views keep their given poses: refinement corrects the training cameras only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["POSE_SCALE", "PoseCorrections", "correct_rays", "so3_exp"]

POSE_SCALE = 0.002
"""Pose change per unit of the stored parameter (see the module docstring)."""


def so3_exp(omega: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) of rotation vectors ``omega`` (..., 3): ``exp(omega^)``
    (matrix exponential of the skew matrix; exact and differentiable at 0)."""
    zero = torch.zeros_like(omega[..., 0])
    wx, wy, wz = omega[..., 0], omega[..., 1], omega[..., 2]
    skew = torch.stack([zero, -wz, wy, wz, zero, -wx, -wy, wx, zero], dim=-1).reshape(*omega.shape[:-1], 3, 3)
    return torch.linalg.matrix_exp(skew)


def correct_rays(xi: torch.Tensor, c2w: torch.Tensor, view: torch.Tensor, rays_o: torch.Tensor,
                 rays_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays (m, 3) x2 of cameras ``c2w`` (n_views, 4, 4) corrected by camera-frame twists
    ``xi`` (n_views, 6) = (omega, tau): ``o + R tau``, ``R exp(omega^) R^T d`` (module docstring).
    ``view`` (m,) is each ray's view; differentiable in ``xi``."""
    rot = so3_exp(xi[:, :3])  # (n_views, 3, 3), once per step, then gathered
    R = c2w[:, :3, :3].to(xi.dtype)
    world = R @ rot @ R.transpose(1, 2)  # the correction expressed in world axes
    v = view.long()
    d = torch.einsum("mij,mj->mi", world[v], rays_d)
    o = rays_o + torch.einsum("mij,mj->mi", R[v], xi[v, 3:])
    return o, d


class PoseCorrections(nn.Module):
    """One camera-frame SE(3) correction per training view (module docstring).

    Args:
        n_views: number of training views.
        device: where the parameter lives (the rays' device).
    """

    def __init__(self, n_views: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.raw = nn.Parameter(torch.zeros(n_views, 6, device=device))
        """(n_views, 6) ``(omega, tau) / POSE_SCALE``."""

    def twists(self) -> torch.Tensor:
        """(n_views, 6) ``(omega, tau)``: rotation vectors (radians) and translations (world units)."""
        return self.raw * POSE_SCALE

    def apply(self, c2w: torch.Tensor, view: torch.Tensor, rays_o: torch.Tensor, rays_d: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrected rays (m, 3) x2 of views ``view`` (m,) int with given poses ``c2w`` (n_views, 4, 4).

        Args:
            c2w: (n_views, 4, 4) the given camera-to-world matrices.
            view: (m,) view index of each ray.
            rays_o, rays_d: (m, 3) the rays of the given poses.
        """
        return correct_rays(self.twists(), c2w, view, rays_o, rays_d)

    def corrected_c2w(self, c2w: torch.Tensor) -> torch.Tensor:
        """(n_views, 4, 4) the refined camera-to-world matrices ``c2w [exp(omega^), tau; 0, 1]``."""
        xi = self.twists().detach()
        T = torch.eye(4, dtype=c2w.dtype, device=c2w.device).repeat(c2w.shape[0], 1, 1)
        T[:, :3, :3] = so3_exp(xi[:, :3]).to(c2w.dtype)
        T[:, :3, 3] = xi[:, 3:].to(c2w.dtype)
        return c2w @ T

    def summary(self) -> dict[str, float]:
        """Mean and largest correction: rotation in degrees, translation in world units."""
        xi = self.twists().detach()
        angle = xi[:, :3].norm(dim=-1) * (180.0 / math.pi)
        shift = xi[:, 3:].norm(dim=-1)
        return {"mean_rotation_deg": float(angle.mean()), "max_rotation_deg": float(angle.max()),
                "mean_translation": float(shift.mean()), "max_translation": float(shift.max())}
