"""A trained NeuS model as one object: the SDF/colour field and its occupancy grid, and how to
render it (Wang et al. 2021, with instant-nsr-pl's occupancy-grid sampling).

Rendering a batch of rays: the occupancy grid's marcher (or, before the grid is built,
stratified samples between the ray's entry into and exit from the scene box), the field at
the interval midpoints (SDF, finite-difference gradient, colour), NeuS's alpha
(:func:`taichifield.render.neus_alpha.neus_alpha`) turned into the equivalent density
(:func:`~taichifield.render.neus_alpha.alpha_to_sigma`) and the Taichi
:func:`~taichifield.render.volrend.volume_render`. Normal maps composite the unit normals
with the same weights.

The grid is built from the SDF (:func:`sdf_density_fn`): a cell is occupied when the SDF at a
point in it is within the cell's diagonal plus a band ``band / inv_s`` where NeuS's opacity
is not yet negligible.

Example::

    model = NeuSModel.load("runs/lego-neus/ckpt.pt")
    img = model.render_view(c2w, 400, 400, fx, fy, 200, 200)                 # (H, W, 3)
    img, normals = model.render_color_and_normals(c2w, 400, 400, fx, fy, 200, 200)   # both, one pass
    verts, faces = extract_mesh(model.sdf, 512, model.bbox)
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import torch

from ..fields.neus import NeuSConfig, NeuSField
from ..render.raymarch import OccupancyGrid
from .grid_model import GridModel

__all__ = ["NeuSModel", "render_neus_rays", "sdf_density_fn", "box_interval"]

OCCUPIED_DENSITY = 10.0
"""What :func:`sdf_density_fn` reports for a cell near the surface. The grid's threshold is at most
its mean density (``min(density_threshold / step, mean)``), below this value unless every cell is
near the surface, so such cells are always occupied; a cell the surface has left decays (EMA 0.95
per update) below ``density_threshold / step`` (about 2 for a box of side 3) after some 30 updates."""


def box_interval(rays_o: torch.Tensor, rays_d: torch.Tensor, aabb: torch.Tensor, near: float, far: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-ray ``[t0, t1]`` (R,) x2: ``[near, far]`` clipped to the (2, 3) box (``t1 <= t0``: a miss)."""
    d = torch.where(rays_d.abs() < 1e-12, torch.full_like(rays_d, 1e-12), rays_d)
    ta, tb = (aabb[0] - rays_o) / d, (aabb[1] - rays_o) / d
    t0 = torch.minimum(ta, tb).amax(-1).clamp_min(near)
    t1 = torch.maximum(ta, tb).amin(-1).clamp_max(far)
    return t0, t1


def sdf_density_fn(field: NeuSField, grid: OccupancyGrid, band: float = 4.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """An :meth:`OccupancyGrid.update` density callable from the SDF: :data:`OCCUPIED_DENSITY` where
    ``|sdf| < cell diagonal + band / inv_s``, else 0. The full diagonal (not half) because the
    grid evaluates a jittered point anywhere in the cell."""
    cell = (grid.aabb[1] - grid.aabb[0]) / grid.resolution
    diag = float(cell.norm())

    def fn(x: torch.Tensor) -> torch.Tensor:
        limit = diag + band / float(field.inv_s())
        return (field.sdf(x).abs() < limit).float() * OCCUPIED_DENSITY

    return fn


def render_neus_rays(field: NeuSField, grid: OccupancyGrid | None, rays_o: torch.Tensor, rays_d: torch.Tensor, *,
                     near: float, far: float, step_size: float, background: torch.Tensor, perturb: bool = False,
                     cos_anneal_ratio: float = 1.0, n_samples: int = 64, normals: bool = False,
                     curvature: bool = False) -> dict[str, Any]:
    """Render rays (R, 3) (unit directions) through a NeuS field.

    Args:
        grid: the occupancy grid to march at ``step_size``; None: ``n_samples`` stratified
            intervals per ray across the scene box (before the grid is built).
        near, far: ray bounds; background: (3,) or (R, 3).
        perturb: jitter the samples (training). cos_anneal_ratio: NeuS's r in [0, 1].
        normals: also composite the unit normals (``normal`` (R, 3), not normalised).
        curvature: also return the SDF's Laplacian at the samples (the curvature term).

    Returns:
        dict: rgb (R, 3), depth (R,), opacity (R,), gradient (S, 3) (the SDF's gradient at the
        samples, for the eikonal term), n_samples (int), and ``normal`` (R, 3) and ``laplacian`` (S,)
        when asked.
        Even with no samples ``rgb`` is part of the field's graph when gradients are on.
    """
    from ..render.neus_alpha import alpha_to_sigma, neus_alpha
    from ..render.stratified import sample_stratified
    from ..render.volrend import pack_info, volume_render

    n_rays = rays_o.shape[0]
    if grid is None:
        t0, t1 = box_interval(rays_o, rays_d, field.aabb, near, far)
        t_starts, t_ends, ray_indices = sample_stratified(rays_o, rays_d, t0, torch.maximum(t0, t1), n_samples,
                                                          perturb=perturb)
        kept = torch.nonzero(t_ends > t_starts).squeeze(1)
        t_starts, t_ends, ray_indices = t_starts[kept], t_ends[kept], ray_indices[kept]
    else:
        t_starts, t_ends, ray_indices = grid.sample(rays_o, rays_d, near, far, step_size=step_size, perturb=perturb)
    bg = background.to(rays_o).expand(n_rays, 3) if background.dim() == 1 else background
    out: dict[str, Any] = {"n_samples": int(t_starts.numel())}
    if t_starts.numel() == 0:
        rgb = bg.clone()
        if torch.is_grad_enabled():
            rgb = rgb + 0.0 * sum(p.sum() for p in field.parameters())
        out.update(rgb=rgb, depth=rays_o.new_zeros(n_rays), opacity=rays_o.new_zeros(n_rays),
                   gradient=rays_o.new_zeros((0, 3)))
        if curvature:
            out["laplacian"] = rays_o.new_zeros((0,))
        if normals:
            out["normal"] = rays_o.new_zeros((n_rays, 3))
        return out
    ri = ray_indices.long()
    d = rays_d[ri]
    x = rays_o[ri] + d * (0.5 * (t_starts + t_ends))[:, None]
    f = field(x, d, laplacian=curvature)
    dt = t_ends - t_starts
    alpha = neus_alpha(f["sdf"], f["gradient"], d, dt, field.inv_s(), cos_anneal_ratio)
    sigma = alpha_to_sigma(alpha, dt)
    packed = pack_info(ray_indices, n_rays)
    rgb, depth, opacity = volume_render(sigma, f["rgb"], t_starts, t_ends, ray_indices, n_rays,
                                        background=bg, packed_info=packed)
    out.update(rgb=rgb, depth=depth, opacity=opacity, gradient=f["gradient"])
    if curvature:
        out["laplacian"] = f["laplacian"]
    if normals:
        out["normal"] = volume_render(sigma, f["normal"], t_starts, t_ends, ray_indices, n_rays, packed_info=packed)[0]
    return out


class NeuSModel(GridModel):
    """NeuS field + occupancy grid + the render settings they were trained with
    (:class:`~taichifield.pipelines.grid_model.GridModel`: ``field``, ``grid``, ``config``,
    ``meta``, ``step``; ``device``, ``bbox``, ``step_size``, ``background``)."""

    field: NeuSField
    grid: OccupancyGrid

    @classmethod
    def build(cls, model: NeuSConfig, aabb: torch.Tensor, grid_resolution: int,
              device: torch.device | None = None, **kwargs: Any) -> "NeuSModel":
        """A fresh model over ``aabb`` (2, 3) on ``device`` (default the runtime's)."""
        from .. import runtime

        dev = runtime.device() if device is None else torch.device(device)
        field = NeuSField(model, torch.as_tensor(aabb).cpu()).to(dev)
        grid = OccupancyGrid(aabb, resolution=grid_resolution, device=dev)
        return cls(field, grid, **kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device | None = None) -> "NeuSModel":
        """Rebuild a model from a ``kind="neus"`` checkpoint (or run folder), loaded with
        ``torch.load(weights_only=True)`` (:func:`taichifield.train.checkpoint.load_checkpoint`).

        Raises:
            CheckpointError: missing/invalid file, not a NeuS checkpoint, or weights that do
                not fit the checkpoint's config.
        """
        def restore_fd_step(model: "NeuSModel", ckpt: dict[str, Any]) -> None:
            model.field.fd_step = float(ckpt["meta"].get("fd_step", model.field.min_fd_step))

        return cls._from_checkpoint(path, device, "neus", "NeuS", NeuSConfig, after=restore_fd_step)

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        """World-unit SDF (N,) at world points (N, 3), without gradients (for meshing)."""
        with torch.no_grad():
            return self.field.sdf(x.to(self.device, torch.float32))

    def render_rays(self, rays_o: torch.Tensor, rays_d: torch.Tensor, *, background: torch.Tensor,
                    normals: bool = False, **kwargs: Any) -> dict[str, Any]:
        """:func:`render_neus_rays` with this model's grid, bounds and step (unless given)."""
        kwargs.setdefault("near", float(self.meta.get("near", 2.0)))
        kwargs.setdefault("far", float(self.meta.get("far", 6.0)))
        kwargs.setdefault("step_size", self.step_size)
        return render_neus_rays(self.field, self.grid, rays_o, rays_d, background=background, normals=normals, **kwargs)

    @torch.no_grad()
    def render_view(self, c2w: torch.Tensor, width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                    *, normals: bool = False, chunk: int = 4096, distortion: Any = None,
                    background: tuple[float, float, float] | None = None, **kwargs: Any) -> torch.Tensor:
        """One pinhole view (H, W, 3) float32 in [0, 1] on the CPU: colour on ``background``
        (default the training's evaluation background), or with ``normals`` the composited
        world normals mapped to ``(n + 1) / 2`` on black."""
        rgb, normal = self.render_color_and_normals(c2w, width, height, fx, fy, cx, cy, chunk=chunk,
                                                    distortion=distortion, background=background, **kwargs)
        return normal if normals else rgb

    @torch.no_grad()
    def render_color_and_normals(self, c2w: torch.Tensor, width: int, height: int, fx: float, fy: float, cx: float,
                                 cy: float, *, chunk: int = 4096, distortion: Any = None,
                                 background: tuple[float, float, float] | None = None,
                                 **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`render_view`'s colour and normal map (each (H, W, 3), CPU) from one pass over the samples."""
        from .. import cameras

        dev = self.device
        rays_o, rays_d = cameras.image_rays(c2w.reshape(4, 4).to(dev, torch.float32), width, height, fx, fy, cx, cy,
                                            distortion)
        bg = torch.tensor(self.background if background is None else background, dtype=torch.float32, device=dev)
        colors, normals = [], []
        for i in range(0, rays_o.shape[0], chunk):
            out = self.render_rays(rays_o[i:i + chunk], rays_d[i:i + chunk], background=bg, normals=True, **kwargs)
            colors.append(out["rgb"])
            normals.append(out["normal"] * 0.5 + 0.5 * out["opacity"][:, None])
        return tuple(torch.cat(p).reshape(height, width, 3).clamp(0, 1).cpu() for p in (colors, normals))  # type: ignore[return-value]


def default_focal(resolution: int, camera_angle_x: float = 0.6911112070083618) -> float:
    """Focal length (pixels) of a square view ``resolution`` wide with the Blender scenes' field of view."""
    return 0.5 * resolution / math.tan(0.5 * camera_angle_x)
