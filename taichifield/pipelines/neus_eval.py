"""Using a trained NeuS model: PSNR/SSIM on a split, rendering a split or an orbit (colour or
normal maps), and the zero level set as a watertight mesh. The library ends of
``taichifield eval|render|mesh neus``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import InputError
from ..images import write_image
from .nerf_eval import EvalResult, score_views
from .neus import NeuSModel, default_focal

__all__ = ["evaluate_neus", "render_split_neus", "render_orbit_neus", "mesh_neus", "closed_sdf", "bake_neus_colors"]

ViewProgress = Callable[[int, int], None]
SceneProgress = Callable[[int, int, str], None]
PathArg = str | os.PathLike[str]


def _views(scene: str, split: str, downscale: int | None, model: NeuSModel, progress: SceneProgress | None,
           limit: int | None) -> Any:
    from ..data import load_scene
    from ..scenes.prepare import prepare_scene

    prepare_scene(scene, splits=[split], limits={split: limit}, progress=progress)
    return load_scene(scene, split, int(downscale if downscale is not None else model.meta.get("downscale", 1)))


def _render(model: NeuSModel, views: Any, i: int, normals: bool = False) -> torch.Tensor:
    fx, fy, cx, cy, dist = views.camera(i)
    return model.render_view(views.c2w[i], views.width, views.height, fx, fy, cx, cy,
                             distortion=dist, normals=normals, near=views.near, far=views.far)


def evaluate_neus(ckpt: PathArg, scene: str, split: str = "test", *, downscale: int | None = None,
                  limit: int | None = None, progress: ViewProgress | None = None,
                  scene_progress: SceneProgress | None = None, grid_image: PathArg | None = None) -> EvalResult:
    """PSNR and SSIM of the first ``limit`` views of ``split`` against ground truth on the training
    background (white), as :func:`taichifield.pipelines.nerf_eval.evaluate_nerf` does for a NeRF;
    ``grid_image``: a PNG with one row per view (at most 8): ground truth | prediction | normals."""
    model = NeuSModel.load(ckpt)
    views = _views(scene, split, downscale, model, scene_progress, limit)
    n = len(views) if limit is None else min(int(limit), len(views))
    if n < 1:
        raise InputError(f"{scene}: split {split!r} has no views to evaluate")
    return score_views(views, split, n, lambda i: _render(model, views, i), model.background,
                       third_tile=lambda i, pred, gt: _render(model, views, i, normals=True),
                       progress=progress, grid_image=grid_image)


def render_split_neus(ckpt: PathArg, scene: str, out_dir: PathArg, split: str = "test", *, downscale: int | None = None,
                      limit: int | None = None, normals: bool = False, progress: ViewProgress | None = None,
                      scene_progress: SceneProgress | None = None) -> list[Path]:
    """Write ``out_dir/<frame name>.png`` for the split's views: colour on white, or with ``normals``
    the world normals as ``(n + 1) / 2`` on black."""
    model = NeuSModel.load(ckpt)
    views = _views(scene, split, downscale, model, scene_progress, limit)
    n = len(views) if limit is None else min(int(limit), len(views))
    written = []
    for i in range(n):
        path = Path(out_dir) / (Path(views.file_names[i]).stem + ".png")
        write_image(path, _render(model, views, i, normals))
        written.append(path)
        if progress is not None:
            progress(i + 1, n)
    return written


def render_orbit_neus(ckpt: PathArg, out: PathArg, *, frames: int = 120, resolution: int = 400, radius: float = 4.0,
                      elevation: float = 30.0, fps: int = 30, normals: bool = False,
                      progress: ViewProgress | None = None) -> Path:
    """Novel views on a circle around the object (colour, or normal maps) into an MP4 (GIF without
    imageio-ffmpeg or for a ``.gif`` name); returns the path written."""
    import imageio.v2 as iio2

    from ..atomic import atomic_path
    from .nerf_render import orbit_poses

    model = NeuSModel.load(ckpt)
    poses = orbit_poses(frames, radius, elevation)
    f = default_focal(resolution)
    images = []
    for i in range(frames):
        img = model.render_view(poses[i], resolution, resolution, f, f, resolution / 2, resolution / 2, normals=normals)
        images.append((img * 255 + 0.5).to(torch.uint8).numpy())
        if progress is not None:
            progress(i + 1, frames)
    path = Path(out)
    if path.suffix.lower() != ".gif":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            path = path.with_suffix(".gif")
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            iio2.mimsave(tmp, images, format="GIF", duration=1000 / fps, loop=0)
        else:
            iio2.mimsave(tmp, images, format="FFMPEG", fps=fps, macro_block_size=1)
    return path


def closed_sdf(model: NeuSModel, resolution: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's SDF intersected with the scene box shrunk by 1.5 grid cells,
    ``max(sdf(x), box_sdf(x))``: still 1-Lipschitz, and positive on the grid's boundary, so the
    zero level set is closed even where the surface leaves the box."""
    lo, hi = model.bbox[0], model.bbox[1]
    inset = 1.5 * (hi - lo) / (resolution - 1)
    centre, half = (lo + hi) / 2, (hi - lo) / 2 - inset

    def fn(x: torch.Tensor) -> torch.Tensor:
        q = (x - centre).abs() - half
        box = q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)
        return torch.maximum(model.sdf(x), box)

    return fn


def bake_neus_colors(model: NeuSModel, vertices: Any, faces: Any) -> torch.Tensor:
    """Vertex colours (V, 3) in [0, 1] on the CPU: the colour network at each vertex (on the zero
    level set, where NeuS's opacity peaks), seen along the mesh's vertex normal (view direction
    ``-n``; :func:`taichifield.geometry.colors.bake_vertex_colors`), with the SDF's own normal
    and feature as its inputs."""
    from ..geometry.colors import bake_vertex_colors, vertex_normals

    dev = model.device
    v = torch.as_tensor(np.asarray(vertices), dtype=torch.float32).to(dev)
    n = vertex_normals(v, torch.as_tensor(np.asarray(faces), dtype=torch.int64).to(dev))
    return bake_vertex_colors(v, n, lambda x, d: model.field(x, d)["rgb"]).cpu()


def mesh_neus(ckpt: PathArg, out: PathArg, *, resolution: int = 512, color: bool = False,
              progress: ViewProgress | None = None) -> tuple[Path, int, int]:
    """Extract the SDF's zero level set over the scene box with narrow-band marching cubes
    (:func:`taichifield.geometry.extract.extract_mesh`, Lipschitz culling), in scene
    coordinates, closed by :func:`closed_sdf` (watertight); ``color``: with vertex colours
    (:func:`bake_neus_colors`). Returns (path, vertices, faces).

    Raises:
        CheckpointError: not a NeuS checkpoint. InputError: no surface in the box.
    """
    from ..geometry.extract import extract_mesh
    from ..geometry.mesh_io import save_mesh

    model = NeuSModel.load(ckpt)
    verts, faces = extract_mesh(closed_sdf(model, resolution), resolution, model.bbox.cpu(), level=0.0, progress=progress)
    if len(faces) == 0:
        raise InputError(f"{ckpt}: the SDF has no zero level set in the scene box")
    colors = None
    if color:
        with torch.no_grad():
            colors = bake_neus_colors(model, verts, faces).numpy()
    save_mesh(out, np.asarray(verts), np.asarray(faces), vertex_colors=colors)
    return Path(out), int(len(verts)), int(len(faces))
