"""Rendering a trained NeRF: whole views, orbits, and loading checkpoints back into a field.

Shared by the trainer (final test PSNR) and the eval/render/mesh commands
(:mod:`taichifield.train.nerf_eval`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..fields.nerf import NerfConfig, NerfField
from ..errors import CheckpointError
from .checkpoint import load_checkpoint

__all__ = ["LoadedNerf", "load_nerf", "render_rays_chunked", "render_train_rays", "render_view", "orbit_poses", "make_grid", "rgb_sigma_fn"]


def make_grid(aabb: torch.Tensor, resolution: int = 128) -> Any:
    """The Instant-NGP occupancy grid over ``aabb`` (2, 3)."""
    from ..render.raymarch import OccupancyGrid

    return OccupancyGrid(aabb, resolution=resolution)


def rgb_sigma_fn(field: NerfField, rays_o: torch.Tensor, rays_d: torch.Tensor
                 ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The renderer's callable for a batch of rays (R, 3): packed samples -> (rgb (S, 3), sigma (S,)).

    Samples are evaluated at interval midpoints ``o + d (t_start + t_end) / 2``.
    """

    def fn(t_starts: torch.Tensor, t_ends: torch.Tensor, ray_indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ri = ray_indices.long()
        d = rays_d[ri]
        x = rays_o[ri] + d * (0.5 * (t_starts + t_ends))[:, None]
        return field(x, d)

    return fn


@dataclass
class LoadedNerf:
    """A field, its occupancy grid and the settings it was trained with."""

    field: NerfField
    grid: Any
    config: dict[str, Any]
    """The checkpoint's config: ``{"model": ..., "train": ..., "scene": ...}``."""
    meta: dict[str, Any]
    step: int

    @property
    def step_size(self) -> float:
        return float(self.meta["step_size"])

    @property
    def background(self) -> tuple[float, float, float]:
        return tuple(self.meta.get("eval_background", (1.0, 1.0, 1.0)))  # type: ignore[return-value]


def load_nerf(path: str | os.PathLike[str], device: torch.device | None = None) -> LoadedNerf:
    """Rebuild a field and its occupancy grid from a ``kind="nerf"`` checkpoint (or run folder).

    Raises:
        CheckpointError: missing/invalid file or not a NeRF checkpoint.
    """
    from .. import runtime

    ckpt = load_checkpoint(path, kind="nerf")
    try:
        device = device or runtime.device()
        cfg = ckpt["config"]
        model_cfg = NerfConfig.from_dict(cfg["model"])
        state = ckpt["state"]
        aabb = state["field.aabb"]
        field = NerfField(model_cfg, aabb).to(device)
        field.load_state_dict({k[len("field."):]: v for k, v in state.items() if k.startswith("field.")})
        field.eval()
        grid = make_grid(aabb.to(device), int(cfg["train"].get("grid_resolution") or 128))
        grid.load_state_dict({k[len("grid."):]: v.to(device) for k, v in state.items() if k.startswith("grid.")})
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:120]
        raise CheckpointError(f"{path}: NeRF checkpoint does not match its config ({type(exc).__name__}: {detail})") from None
    return LoadedNerf(field=field, grid=grid, config=cfg, meta=ckpt["meta"], step=int(ckpt["step"]))


def _density_fn(field: NerfField, rays_o: torch.Tensor, rays_d: torch.Tensor,
                marched: list[int]) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The renderer's culling callable: packed samples -> sigma (S,); counts the marched samples."""

    def fn(t_starts: torch.Tensor, t_ends: torch.Tensor, ray_indices: torch.Tensor) -> torch.Tensor:
        marched[0] = int(t_starts.numel())
        ri = ray_indices.long()
        return field.density(rays_o[ri] + rays_d[ri] * (0.5 * (t_starts + t_ends))[:, None])

    return fn


def render_train_rays(field: NerfField, grid: Any, rays_o: torch.Tensor, rays_d: torch.Tensor, *, near: float,
                      far: float, step_size: float, background: torch.Tensor, perturb: bool = False) -> dict[str, Any]:
    """Render a NerfField through :func:`taichifield.render.render_rays.render_rays` (nerfacc's recipe).

    Occupancy-grid marching (Instant-NGP), a no-grad density pass that drops samples behind
    opaque surfaces (:func:`~taichifield.render.volrend.visible_samples`), then the full
    field on the rest, composited by the Taichi
    :func:`~taichifield.render.volrend.volume_render`.

    Args:
        rays_o, rays_d: (R, 3) rays (unit directions). background: (R, 3) or (3,).
        near, far, step_size: the marcher's bounds and step.
        perturb: jitter the marched samples (training; uses the global torch RNG).

    Returns:
        dict: rgb (R, 3), depth (R,), opacity (R,), n_samples (int, marched samples),
        n_evaluated (int, samples through the full field). Even with no samples, ``rgb`` is
        part of the field's graph when gradients are on (so ``backward`` works).
    """
    from ..render.render_rays import render_rays

    marched = [0]
    out = render_rays(rays_o, rays_d, rgb_sigma_fn(field, rays_o, rays_d), grid=grid, near=near, far=far,
                      step_size=step_size, background=background, perturb=perturb,
                      sigma_fn=_density_fn(field, rays_o, rays_d, marched))
    rgb = out["rgb"]
    if torch.is_grad_enabled() and not rgb.requires_grad:
        rgb = rgb + 0.0 * sum(p.sum() for p in field.parameters())
    return {"rgb": rgb, "depth": out["depth"], "opacity": out["opacity"], "n_samples": marched[0],
            "n_evaluated": int(out["n_samples"])}


def render_rays_chunked(field: NerfField, grid: Any, rays_o: torch.Tensor, rays_d: torch.Tensor, *,
                        background: torch.Tensor, chunk: int = 8192, **march: float) -> dict[str, torch.Tensor]:
    """Inference rendering of many rays (R, 3) in chunks: rgb (R, 3), depth (R,), opacity (R,).

    ``march``: ``near``, ``far``, ``step_size`` as for :func:`render_train_rays`.
    """
    outs: dict[str, list[torch.Tensor]] = {"rgb": [], "depth": [], "opacity": []}
    with torch.no_grad():
        for i in range(0, rays_o.shape[0], chunk):
            o, d = rays_o[i:i + chunk], rays_d[i:i + chunk]
            bg = background.expand(o.shape[0], 3) if background.dim() == 1 else background[i:i + chunk]
            r = render_train_rays(field, grid, o, d, background=bg.contiguous(), **march)
            for k in outs:
                outs[k].append(r[k].reshape(o.shape[0], -1).squeeze(-1) if k != "rgb" else r[k])
    return {k: torch.cat(v) for k, v in outs.items()}


def render_view(
    loaded_field: NerfField,
    grid: Any,
    c2w: torch.Tensor,
    width: int,
    height: int,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    *,
    near: float,
    far: float,
    step_size: float,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    distortion: tuple[float, float, float, float] | None = None,
) -> torch.Tensor:
    """Render one pinhole view: (H, W, 3) float32 in [0, 1], composited on ``background``.

    Rays follow :func:`taichifield.data.rays.generate_rays` (pixel centres, OpenGL camera).
    """
    from ..data.rays import generate_rays
    from ..data.views import Views

    dev = next(loaded_field.parameters()).device
    views = Views(images=torch.zeros(1, 1, 1, 3, dtype=torch.uint8), c2w=c2w.reshape(1, 4, 4).float().to(dev),
                  fx=fx, fy=fy, cx=cx, cy=cy, width=width, height=height, file_names=["view.png"],
                  aabb=loaded_field.aabb.cpu(), near=near, far=far, distortion=distortion)
    py, px = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    idx = torch.zeros(height * width, dtype=torch.long)
    rays_o, rays_d = generate_rays(views, idx, px.reshape(-1), py.reshape(-1))
    bg = torch.tensor(background, dtype=torch.float32, device=dev)
    out = render_rays_chunked(loaded_field, grid, rays_o.to(dev), rays_d.to(dev), near=near, far=far,
                              step_size=step_size, background=bg)
    return out["rgb"].reshape(height, width, 3).clamp(0, 1).cpu()


def orbit_poses(n_frames: int, radius: float, elevation_deg: float = 30.0) -> torch.Tensor:
    """Cameras (n, 4, 4) on a circle around the z axis at ``elevation_deg``, looking at the origin."""
    from ..scenes.lego import look_at

    az = torch.arange(n_frames, dtype=torch.float64) * (2 * math.pi / max(n_frames, 1))
    el = torch.full_like(az, math.radians(elevation_deg))
    eye = radius * torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], dim=-1)
    return look_at(eye).float()
