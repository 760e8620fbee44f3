"""Using a trained NeRF: PSNR/SSIM on a split, rendering a split, an orbit or a camera path, density meshes.

These are the library ends of ``taichifield eval|render|mesh nerf``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..atomic import atomic_path
from ..camera_path import CameraPath, load_camera_path
from ..images import write_image
from ..errors import InputError
from .nerf import NerfModel
from .nerf_render import load_nerf, orbit_poses, render_view
from ..metrics.image import psnr_images, ssim

__all__ = ["EvalResult", "evaluate_nerf", "score_views", "render_split", "render_orbit", "render_path", "mesh_nerf"]

log = logging.getLogger(__name__)

ViewProgress = Callable[[int, int], None]
SceneProgress = Callable[[int, int, str], None]
PathArg = str | os.PathLike[str]


@dataclass
class EvalResult:
    """Mean and per-view metrics of one split."""

    split: str
    n_views: int
    psnr: float
    ssim: float
    per_view: list[dict[str, float | str]]

    def to_dict(self) -> dict[str, object]:
        return {"split": self.split, "n_views": self.n_views, "psnr": self.psnr, "ssim": self.ssim,
                "per_view": self.per_view}


def _load_views(scene: str, split: str, downscale: int | None, loaded: NerfModel, progress: Callable | None, limit: int | None = None):  # type: ignore[no-untyped-def]
    from ..data import load_scene
    from ..scenes.prepare import prepare_scene

    prepare_scene(scene, splits=[split], limits={split: limit}, progress=progress)  # only the views asked for
    k = int(downscale if downscale is not None else loaded.meta.get("downscale", 1))
    return load_scene(scene, split, k)


def _render_index(loaded: NerfModel, views, i: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    far = views.far
    if loaded.field.config.contraction:  # an unbounded scene: rays reach its background (the trained far)
        far = max(far, float(loaded.meta.get("far", far)))
    fx, fy, cx, cy, dist = views.camera(i)
    return render_view(loaded.field, loaded.grid, views.c2w[i], views.width, views.height, fx, fy, cx, cy,
                       near=views.near, far=far, step_size=loaded.step_size, background=loaded.background,
                       distortion=dist)


GRID_ROWS = 8
"""Views shown in an ``eval nerf --grid`` picture."""


def evaluate_nerf(ckpt: PathArg, scene: str, split: str = "test", *, downscale: int | None = None,
                  limit: int | None = None, progress: ViewProgress | None = None,
                  scene_progress: SceneProgress | None = None, grid_image: PathArg | None = None) -> EvalResult:
    """Render the first ``limit`` views of ``split`` and score them against the ground truth.

    Ground truth is composited on the training background (white); PSNR per view is
    averaged (the usual NeRF protocol), SSIM is :func:`taichifield.metrics.image.ssim`.
    ``downscale`` defaults to the training downscale. ``grid_image``: also write a PNG with one
    row per view (at most :data:`GRID_ROWS`): ground truth | prediction | error
    (mean absolute RGB error, x4, black = exact).
    """
    loaded = load_nerf(ckpt)
    views = _load_views(scene, split, downscale, loaded, scene_progress, limit)
    n = len(views) if limit is None else min(int(limit), len(views))
    if n < 1:
        raise InputError(f"{scene}: split {split!r} has no views to evaluate")
    return score_views(views, split, n, lambda i: _render_index(loaded, views, i), loaded.background,
                       third_tile=_error_tile, progress=progress, grid_image=grid_image)


def _error_tile(i: int, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean absolute RGB error x4 as grey, ``(H, W, 3)`` on the CPU (black = exact)."""
    return ((pred.cpu() - gt.cpu()).abs().mean(-1, keepdim=True) * 4).clamp(0, 1).expand(-1, -1, 3)


def score_views(views: Any, split: str, n: int, render: Callable[[int], torch.Tensor], background: float,
                *, third_tile: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor],
                progress: ViewProgress | None = None, grid_image: PathArg | None = None) -> EvalResult:
    """Score the first ``n`` views of a loaded split; the loop ``eval nerf`` and ``eval neus`` share.

    ``render(i)`` returns view ``i`` as ``(H, W, 3)`` in [0, 1] on any device; ground truth is
    ``views.rgb(background, index=i)``. PSNR per view is averaged (the usual NeRF protocol), SSIM
    is :func:`taichifield.metrics.image.ssim` (NaN below 11 px). ``grid_image``: a PNG with one row
    per view (at most :data:`GRID_ROWS`): ground truth | prediction | ``third_tile(i, pred, gt)``.
    """
    rows: list[dict[str, float | str]] = []
    tiles: list[torch.Tensor] = []
    for i in range(n):
        pred = render(i).cpu()
        gt = views.rgb(background, index=i).cpu()
        if grid_image is not None and i < GRID_ROWS:
            tiles.append(torch.cat([gt, pred, third_tile(i, pred, gt).cpu()], dim=1))
        rows.append({"view": views.file_names[i], "psnr": psnr_images(pred, gt),
                     "ssim": ssim(pred, gt) if min(views.width, views.height) >= 11 else float("nan")})
        if progress is not None:
            progress(i + 1, n)
    if grid_image is not None:
        write_image(Path(grid_image), torch.cat(tiles, dim=0))
    mean = lambda key: sum(float(r[key]) for r in rows) / len(rows)  # noqa: E731
    return EvalResult(split, n, mean("psnr"), mean("ssim"), rows)


def render_split(ckpt: PathArg, scene: str, out_dir: PathArg, split: str = "test", *, downscale: int | None = None,
                 limit: int | None = None, progress: ViewProgress | None = None,
                 scene_progress: SceneProgress | None = None) -> list[Path]:
    """Write ``out_dir/<frame file name>.png`` for the split's views, in order (RGB on white)."""
    loaded = load_nerf(ckpt)
    views = _load_views(scene, split, downscale, loaded, scene_progress, limit)
    n = len(views) if limit is None else min(int(limit), len(views))
    out = Path(out_dir)
    written = []
    for i in range(n):
        name = Path(views.file_names[i]).stem + ".png"
        write_image(out / name, _render_index(loaded, views, i))
        written.append(out / name)
        if progress is not None:
            progress(i + 1, n)
    return written


def render_orbit(ckpt: PathArg, out: PathArg, *, frames: int = 120, resolution: int = 400, radius: float = 4.0,
                 elevation: float = 30.0, camera_angle_x: float = 0.6911112070083618, fps: int = 30,
                 progress: ViewProgress | None = None) -> Path:
    """Render novel views on a circle around the object into a video.

    MP4 needs ``imageio-ffmpeg``; without it (or for a ``.gif`` name) a GIF is written
    next to the requested name. Returns the path actually written.
    """
    import math

    loaded = load_nerf(ckpt)
    poses = orbit_poses(frames, radius, elevation)
    f = 0.5 * resolution / math.tan(0.5 * camera_angle_x)
    near, far = float(loaded.meta.get("near", 2.0)), float(loaded.meta.get("far", 6.0))
    images = []
    for i in range(frames):
        img = render_view(loaded.field, loaded.grid, poses[i], resolution, resolution, f, f, resolution / 2,
                          resolution / 2, near=near, far=far, step_size=loaded.step_size, background=loaded.background)
        images.append((img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
        if progress is not None:
            progress(i + 1, frames)
    return _write_video(Path(out), images, fps)


def _write_video(path: Path, images: list, fps: float) -> Path:  # type: ignore[type-arg]
    """Write uint8 frames (H, W, 3) as MP4, or as GIF for a ``.gif`` name or without imageio-ffmpeg."""
    import imageio.v2 as iio2

    if path.suffix.lower() != ".gif":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            log.warning("imageio-ffmpeg is not installed: writing a GIF instead of %s", path.name)
            path = path.with_suffix(".gif")
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            iio2.mimsave(tmp, images, format="GIF", duration=1000 / fps, loop=0)
        else:
            iio2.mimsave(tmp, images, format="FFMPEG", fps=fps, macro_block_size=1)
    return path


def render_path(ckpt: PathArg, camera_path: PathArg | CameraPath, out: PathArg, *,
                progress: ViewProgress | None = None) -> Path:
    """Render a keyframed camera path (:mod:`taichifield.camera_path`) into a video.

    One frame every ``1 / fps`` s of the path, at its resolution and interpolated field of view
    (square pixels, principal point at the image centre); ``near``/``far`` from the path or
    the checkpoint. MP4, or GIF as :func:`render_orbit`. Returns the path actually written.

    Raises:
        InputError: a bad path file (one line naming it).
    """
    import math

    cam = camera_path if isinstance(camera_path, CameraPath) else load_camera_path(camera_path)
    poses, fovs = cam.cameras(cam.frame_times())
    loaded = load_nerf(ckpt)
    near = float(loaded.meta.get("near", 2.0)) if cam.near is None else cam.near
    far = float(loaded.meta.get("far", 6.0)) if cam.far is None else cam.far
    W, H = cam.width, cam.height
    images = []
    for i in range(poses.shape[0]):
        f = 0.5 * W / math.tan(0.5 * math.radians(float(fovs[i])))
        img = render_view(loaded.field, loaded.grid, poses[i].float(), W, H, f, f, W / 2, H / 2, near=near, far=far,
                          step_size=loaded.step_size, background=loaded.background)
        images.append((img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
        if progress is not None:
            progress(i + 1, poses.shape[0])
    return _write_video(Path(out), images, cam.fps)


def mesh_nerf(ckpt: PathArg, out: PathArg, *, resolution: int = 256, threshold: float = 10.0,
              color: bool = False) -> tuple[Path, int, int]:
    """Extract the density isosurface ``sigma = threshold`` with Taichi marching cubes.

    ``color``: also bake vertex colours, what the field renders along each vertex normal
    (:func:`taichifield.pipelines.nerf_colors.bake_nerf_colors`, short rays two cells long).

    The field ``threshold - sigma`` is negative inside (an SDF-like sign convention); it is
    no distance, so :func:`taichifield.geometry.extract.extract_mesh` runs with
    ``distance_field=False`` (a dense blob between two coarse corners is not missed).

    Returns:
        (path written, number of vertices, number of faces).
    """
    from ..geometry.extract import extract_mesh
    from ..geometry.mesh_io import save_mesh

    loaded = load_nerf(ckpt)
    field, grid = loaded.field, loaded.grid
    # density the occupancy grid calls empty is never rendered: the mesh shows what renders

    def fn(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # the grid looks x up in its own space (cascades or contracted)
            return threshold - field.density(x) * grid.occupied_at(x)

    verts, faces = extract_mesh(fn, resolution, field.aabb.cpu(), level=0.0, distance_field=False)
    if len(faces) == 0:
        raise InputError(f"{ckpt}: no density above {threshold:g} in the scene box (try a lower --threshold)")
    colors = None
    if color:
        from .nerf_colors import bake_nerf_colors

        cell = float((field.aabb[1] - field.aabb[0]).max()) / (resolution - 1)
        colors = bake_nerf_colors(loaded, verts, faces, offset=2.0 * cell)
    save_mesh(out, verts, faces, vertex_colors=colors)
    return Path(out), int(len(verts)), int(len(faces))

