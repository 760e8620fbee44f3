"""A trained NeRF as one object: the radiance field and its occupancy grid (nerfacc's
field + estimator, kaolin-wisp's pipeline).

:class:`NerfModel` is an ``nn.Module``: ``.to(device)`` moves the field and the grid together
and ``state_dict()`` is what the checkpoint stores (``field.*`` and ``grid.*``, the layout
version-1 checkpoints already had). Rendering runs on the model's device; rays must be there.

Example::

    model = NerfModel.load("runs/lego/ckpt.pt")          # on runtime.device()
    out = model.render_rays(rays_o, rays_d, background=torch.ones(3))
    img = model.render_view(c2w, 400, 400, fx, fy, 200, 200)   # (H, W, 3) on the model's device
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..fields.nerf import NerfConfig, NerfField
from ..render.raymarch import OccupancyGrid
from .grid_model import GridModel

__all__ = ["NerfModel"]


class NerfModel(GridModel):
    """Radiance field + occupancy grid + the render settings they were trained with
    (:class:`~taichifield.pipelines.grid_model.GridModel`: ``field``, ``grid``, ``config``,
    ``meta``, ``step``; ``device``, ``bbox``, ``step_size``, ``background``)."""

    field: NerfField
    grid: OccupancyGrid

    @classmethod
    def build(cls, model: NerfConfig, aabb: torch.Tensor, grid_resolution: int,
              device: torch.device | None = None, **kwargs: Any) -> "NerfModel":
        """A fresh model over ``aabb`` (2, 3) on ``device`` (default the runtime's)."""
        from .. import runtime

        dev = runtime.device() if device is None else torch.device(device)
        field = NerfField(model, aabb).to(dev)
        grid = OccupancyGrid(aabb, resolution=grid_resolution, device=dev, contraction=bool(model.contraction))
        return cls(field, grid, **kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device | None = None) -> "NerfModel":
        """Rebuild a model from a ``kind="nerf"`` checkpoint (or run folder), any format version.

        Raises:
            CheckpointError: missing/invalid file, not a NeRF checkpoint, or weights that do
                not fit the checkpoint's config.
        """
        return cls._from_checkpoint(path, device, "nerf", "NeRF", NerfConfig)

    # ------------------------------------------------------------------ rendering
    def render_rays(self, rays_o: torch.Tensor, rays_d: torch.Tensor, *, background: torch.Tensor,
                    near: float | None = None, far: float | None = None, step_size: float | None = None,
                    perturb: bool = False, cull: bool = True) -> dict[str, Any]:
        """Render rays (R, 3) on the model's device: see
        :func:`taichifield.pipelines.nerf_render.render_nerf_rays` (defaults from :attr:`meta`)."""
        from .nerf_render import render_nerf_rays

        return render_nerf_rays(self.field, self.grid, rays_o, rays_d, background=background,
                                near=float(self.meta.get("near", 2.0)) if near is None else near,
                                far=float(self.meta.get("far", 6.0)) if far is None else far,
                                step_size=self.step_size if step_size is None else step_size,
                                perturb=perturb, cull=cull)

    def render_view(self, c2w: torch.Tensor, width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                    **kwargs: Any) -> torch.Tensor:
        """One pinhole view (H, W, 3) in [0, 1]: :func:`taichifield.pipelines.nerf_render.render_view`
        with this model's step size and background unless given."""
        from .nerf_render import render_view

        kwargs.setdefault("near", float(self.meta.get("near", 2.0)))
        kwargs.setdefault("far", float(self.meta.get("far", 6.0)))
        if "step_size" not in kwargs:
            kwargs["step_size"] = self.step_size
        kwargs.setdefault("background", self.background)
        return render_view(self.field, self.grid, c2w, width, height, fx, fy, cx, cy, **kwargs)
