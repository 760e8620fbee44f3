"""Per-image appearance of the training photos: an affine colour transform per view.

Phone captures change exposure and white balance from photo to photo; a field trained on them
as they are puts the differences into view-dependent colour or floaters. Each training view
``k`` gets a 12-number appearance code, read as an affine map of the rendered colour
(Urban Radiance Fields' per-image exposure compensation, Rematas et al. 2022; the
"appearance embedding" of the issue, with a fixed linear decoder)::

    c'_k = (I + M_k) c + b_k            M_k (3, 3), b_k (3,)

The codes are centred over the training views (``M_k, b_k`` minus their means) so the field
keeps the *average* photo's appearance: held-out views are rendered with the identity
(``M = 0, b = 0``), as they have no code. As for pose refinement
(:mod:`taichifield.train.pose_refine`), the stored parameter is ``code / APPEARANCE_SCALE``,
so Adam moves a code by about ``APPEARANCE_SCALE * lr`` per step: 1e-4 at the default lr, so
a consistent exposure difference of 0.2 is learned in 2000 steps while the noise of a few rays
per view and step wanders only ~0.005 (with 1e-3 per step, the beer capture's training PSNR
at 360 s fell from 28.7 to 26.3 dB).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["APPEARANCE_SCALE", "ImageAppearance"]

APPEARANCE_SCALE = 0.01
"""Code change per unit of the stored parameter."""


class ImageAppearance(nn.Module):
    """One centred affine colour transform per training view (module docstring).

    Args:
        n_views: number of training views.
        device: where the parameter lives.
    """

    def __init__(self, n_views: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.raw = nn.Parameter(torch.zeros(n_views, 12, device=device))
        """(n_views, 12): ``M`` row-major (9) then ``b`` (3), divided by APPEARANCE_SCALE."""

    def codes(self) -> torch.Tensor:
        """(n_views, 12) centred codes (they sum to zero over the views)."""
        c = self.raw * APPEARANCE_SCALE
        return c - c.mean(dim=0, keepdim=True)

    def apply(self, view: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        """Colours (m, 3) of rays of views ``view`` (m,) int as their photo shows them."""
        c = self.codes()[view.long()]
        M, b = c[:, :9].reshape(-1, 3, 3), c[:, 9:]
        return rgb + torch.einsum("mij,mj->mi", M, rgb) + b

    def summary(self) -> dict[str, float]:
        """Largest departure from the average photo: of the gain ``|M|_max`` and the offset ``|b|_max``."""
        c = self.codes().detach()
        return {"max_gain": float(c[:, :9].abs().max()), "max_offset": float(c[:, 9:].abs().max())}
