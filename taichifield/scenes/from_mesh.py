"""A Blender-format scene with a ground-truth surface, made from any triangle mesh.

The library end of ``taichifield scene from-mesh MESH --out DIR``. The mesh is normalised
into the scene box, its views are rendered by the project's sphere tracer
(:func:`taichifield.render.sphere_trace.sphere_trace`) on the mesh's exact signed distance,
shaded like the LEGO scene (:func:`taichifield.scenes.lego.shade`: Lambert + Blinn-Phong under
the same key light), and written as a NeRF-synthetic folder with the ground-truth mesh beside
it, so NeRF/NeuS reconstructions can be scored by Chamfer distance::

    DIR/transforms_{train,val,test}.json   camera_angle_x + frames (OpenGL camera-to-world)
    DIR/{train,val,test}/r_<i>.png         RGBA, transparent background
    DIR/gt_mesh.ply                        the mesh in scene coordinates
    DIR/scene_from_mesh.json               source, normalisation, settings
    DIR/README.txt                         one line saying what the folder is

Normalisation: ``x_scene = (x_mesh - center) * scale`` with ``center`` the centre of the
mesh's axis-aligned bounding box and ``scale = extent / max_i |v_i - center|``, so the mesh
fits in the ball of radius ``extent`` (default 1) inside the Blender box ``[-1.5, 1.5]^3``
(near 2, far 6 from cameras at radius 4). Axes are kept (z is up for the camera rig).

Camera rig (:func:`mesh_camera_rig`): train views on a Fibonacci sphere (the whole object is
seen, bottom included, which Chamfer needs), val views uniformly random on the sphere
(seeded), test views on a circle with elevation ``30 + 10 sin(2 azimuth)`` degrees, as the
LEGO rig; all look at the origin with z up. Albedo varies smoothly with position
(``0.35 + 0.25 (x_scene / extent + 1)`` per channel), so views carry some texture.

The signed distance is Open3D's ``RaycastingScene.compute_signed_distance`` (exact distance,
sign by ray parity, float32, on the CPU, batched by the tracer); hit normals are the mesh's
area-weighted vertex normals interpolated at the closest point (smooth shading).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import cameras, runtime
from ..atomic import atomic_path
from ..errors import InputError
from ..images import write_image
from .from_mesh_config import FromMeshConfig

__all__ = ["FromMeshConfig", "SceneFromMesh", "MeshSDF", "normalize_mesh", "mesh_camera_rig",
           "render_mesh_view", "scene_from_mesh"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
"""``progress(views done, views total)``."""


@dataclass
class SceneFromMesh:
    """What :func:`scene_from_mesh` wrote."""

    folder: Path
    views: dict[str, int]
    center: tuple[float, float, float]
    scale: float
    n_vertices: int
    n_faces: int


def normalize_mesh(vertices: np.ndarray, extent: float = 1.0) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre and scale vertices (V, 3): ``(v - center) * scale`` with ``center`` the bounding-box
    centre and ``max |v - center| * scale = extent``. Returns (V, 3) float64, center (3,), scale.

    Raises:
        InputError: all vertices at one point (or non-finite).
    """
    v = np.asarray(vertices, np.float64)
    center = 0.5 * (v.min(0) + v.max(0))
    radius = float(np.linalg.norm(v - center, axis=1).max())
    if not (math.isfinite(radius) and radius > 0):
        raise InputError("mesh has no extent (all vertices at one point)")
    scale = extent / radius
    return (v - center) * scale, center, scale


class MeshSDF:
    """Signed distance (negative inside) to a triangle mesh, callable on torch points.

    Args:
        vertices: (V, 3); faces: (F, 3) ints (outward winding for outward normals).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        import open3d as o3d

        self._o3d = o3d
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(self.vertices.astype(np.float32)),
                                 o3d.core.Tensor(self.faces.astype(np.uint32)))
        a, b, c = (self.vertices[self.faces[:, k]] for k in range(3))
        fn = np.cross(b - a, c - a)  # area-weighted
        vn = np.zeros_like(self.vertices)
        for k in range(3):
            np.add.at(vn, self.faces[:, k], fn)
        self.vertex_normals = vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-30)

    def _query(self, points: torch.Tensor) -> Any:
        return self._o3d.core.Tensor(points.detach().to("cpu", torch.float32).contiguous().numpy())

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """(M, 3) points (any device) -> (M,) float32 signed distances on their device."""
        d = self.scene.compute_signed_distance(self._query(points)).numpy()
        return torch.from_numpy(d).to(points.device)

    def normals(self, points: torch.Tensor) -> torch.Tensor:
        """(M, 3) points (on or near the surface) -> (M, 3) unit smooth normals at their closest
        points (vertex normals interpolated barycentrically), on the points' device."""
        r = self.scene.compute_closest_points(self._query(points))
        tri = self.faces[r["primitive_ids"].numpy().astype(np.int64)]
        uv = r["primitive_uvs"].numpy().astype(np.float64)  # point = (1-u-v) a + u b + v c
        w = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
        n = np.einsum("mk,mkj->mj", w, self.vertex_normals[tri])
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
        return torch.from_numpy(n.astype(np.float32)).to(points.device)


def mesh_camera_rig(split: str, n: int, radius: float = 4.0, seed: int = 0) -> torch.Tensor:
    """Poses (n, 4, 4) float64 looking at the origin, z up: train on a Fibonacci sphere, val
    uniformly random on the sphere (seeded), test on a circle with elevation 30 + 10 sin(2 az) deg."""
    k = torch.arange(n, dtype=torch.float64)
    if split == "train":
        el = torch.asin(1.0 - 2.0 * (k + 0.5) / n)
        az = math.pi * (3.0 - math.sqrt(5.0)) * k
    elif split == "val":
        g = torch.Generator().manual_seed(seed * 1000 + 2)
        el = torch.asin(2.0 * torch.rand(n, generator=g, dtype=torch.float64) - 1.0).clamp(-1.45, 1.45)
        az = 2.0 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    elif split == "test":
        az = k * (2.0 * math.pi / max(n, 1))
        el = torch.deg2rad(30.0 + 10.0 * torch.sin(2.0 * az))
    else:
        raise InputError(f"unknown split {split!r} (train, val or test)")
    return cameras.orbit_poses(az, el, radius, up="z")


def _trace(sdf: MeshSDF, o: torch.Tensor, d: torch.Tensor, extent: float) -> torch.Tensor:
    """Straight-alpha RGBA (M, 4) of rays (M, 3) each: sphere-traced inside the ball of radius
    1.01 extent (rays missing it are transparent), shaded by :func:`lego.shade`."""
    from ..render.sphere_trace import sphere_trace
    from .lego import shade

    bound = 1.01 * extent
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - bound * bound)
    rgba = torch.zeros(o.shape[0], 4, dtype=torch.float32, device=o.device)
    idx = (disc > 0).nonzero()[:, 0]
    if idx.numel() == 0:
        return rgba
    t0 = (-b[idx] - disc[idx].sqrt()).clamp(min=0)
    start, dirs = o[idx] + t0[:, None] * d[idx], d[idx]
    t, hit = sphere_trace(sdf, start, dirs, near=0.0, far=2.0 * bound, max_steps=64, eps=1e-3 * extent)
    idx, x, dirs = idx[hit], (start + t[:, None] * dirs)[hit], dirs[hit]
    if idx.numel() == 0:
        return rgba
    n = sdf.normals(x)
    n = torch.where(((n * dirs).sum(-1) > 0)[:, None], -n, n)  # two-sided: face the camera
    albedo = (0.35 + 0.25 * (x / extent + 1.0)).clamp(0, 1)
    rgba[idx, :3] = shade(albedo, n, dirs)
    rgba[idx, 3] = 1.0
    return rgba


def render_mesh_view(sdf: MeshSDF, c2w: torch.Tensor, resolution: int, camera_angle_x: float, *,
                     supersample: int = 1, extent: float = 1.0) -> torch.Tensor:
    """One view (H, W, 4) float32 straight-alpha RGBA in [0, 1] on the CPU, H = W = ``resolution``.

    Rays follow :mod:`taichifield.cameras` (pixel centres at +0.5, OpenGL camera) and are traced
    on :func:`taichifield.runtime.device`. Edge pixels (RGBA differs from a 4-neighbour by more
    than 0.1) are re-rendered as the mean of ``supersample^2`` sub-pixel rays (premultiplied).
    """
    dev = runtime.device()
    W = H = int(resolution)
    f = cameras.focal_from_fov(camera_angle_x, W)
    c2w = c2w.to(dev, torch.float32)
    rgba = _trace(sdf, *cameras.image_rays(c2w, W, H, f, f, 0.5 * W, 0.5 * H), extent).reshape(H, W, 4)
    s = int(supersample)
    if s > 1:
        pre = torch.cat([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1)
        diff = torch.zeros(H, W, device=dev)
        dy = (pre[1:] - pre[:-1]).abs().amax(-1)
        dx = (pre[:, 1:] - pre[:, :-1]).abs().amax(-1)
        for a, b in ((diff[1:], dy), (diff[:-1], dy), (diff[:, 1:], dx), (diff[:, :-1], dx)):
            torch.maximum(a, b, out=a)
        ey, ex = (diff > 0.1).nonzero(as_tuple=True)
        if ey.numel():
            sub = (torch.arange(s, dtype=torch.float32, device=dev) + 0.5) / s - 0.5
            oy, ox = torch.meshgrid(sub, sub, indexing="ij")
            spx = (ex.float()[:, None] + ox.reshape(1, -1)).reshape(-1)
            spy = (ey.float()[:, None] + oy.reshape(1, -1)).reshape(-1)
            sub_rgba = _trace(sdf, *cameras.pixel_rays(c2w, spx, spy, f, f, 0.5 * W, 0.5 * H), extent)
            a = sub_rgba[:, 3:]
            mean = torch.cat([sub_rgba[:, :3] * a, a], -1).reshape(-1, s * s, 4).mean(1)
            alpha = mean[:, 3:]
            rgba[ey, ex] = torch.cat([mean[:, :3] / alpha.clamp(min=1e-8), alpha], -1)
    return rgba.clamp(0, 1).cpu()


def _load(mesh: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    from ..geometry.mesh_io import load_mesh

    v, f = load_mesh(mesh)  # missing file, no faces, bad indices: one-line InputErrors
    a, b, c = (v[f[:, k]].astype(np.float64) for k in range(3))
    if not np.any(np.linalg.norm(np.cross(b - a, c - a), axis=1) > 0):
        raise InputError(f"{mesh}: every face of the mesh has zero area")
    return v, f


def scene_from_mesh(mesh: str | os.PathLike[str], out: str | os.PathLike[str], config: FromMeshConfig | None = None,
                    *, overwrite: bool = False, progress: ProgressFn | None = None) -> SceneFromMesh:
    """Write a Blender-format scene of ``mesh`` into folder ``out`` (see the module docstring).

    Args:
        mesh: a .ply, .obj or .off triangle mesh.
        out: the scene folder; refused when it exists and is not empty, unless ``overwrite``.
        config: views, resolution, ... (:class:`FromMeshConfig`).
        progress: called after each rendered view.

    Raises:
        InputError: a missing or unreadable mesh, one without faces or extent, or a non-empty
            ``out`` without ``overwrite`` (one line naming the file).
    """
    from ..geometry.mesh_io import save_mesh
    from ..runfolder import check_output_folder

    cfg = config or FromMeshConfig()
    folder = Path(out)
    v, f = _load(mesh)
    check_output_folder(folder, overwrite)
    try:
        vs, center, scale = normalize_mesh(v, cfg.extent)
    except InputError as exc:
        raise InputError(f"{mesh}: {exc}") from None
    runtime.ensure_init()
    sdf = MeshSDF(vs, f)
    counts = {"train": cfg.views, "val": cfg.test_views, "test": cfg.test_views}
    total, done = sum(counts.values()), 0
    for split, n in counts.items():
        poses = mesh_camera_rig(split, n, cfg.camera_radius, cfg.seed)
        (folder / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for i in range(n):
            rgba = render_mesh_view(sdf, poses[i], cfg.resolution, cfg.camera_angle_x,
                                    supersample=cfg.supersample, extent=cfg.extent)
            write_image(folder / split / f"r_{i}.png", rgba)
            frames.append({"file_path": f"./{split}/r_{i}", "rotation": 0.0,
                           "transform_matrix": [[float(x) for x in row] for row in poses[i]]})
            done += 1
            if progress is not None:
                progress(done, total)
        with atomic_path(folder / f"transforms_{split}.json") as tmp:
            tmp.write_text(json.dumps({"camera_angle_x": cfg.camera_angle_x, "frames": frames}, indent=1))
    save_mesh(folder / "gt_mesh.ply", vs.astype(np.float32), f)
    meta = {"source": os.path.abspath(mesh), "normalization": "x_scene = (x_mesh - center) * scale",
            "center": [float(c) for c in center], "scale": scale, "config": cfg.to_dict(), "views": counts}
    with atomic_path(folder / "scene_from_mesh.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1))
    with atomic_path(folder / "README.txt") as tmp:
        tmp.write_text(f"Blender-format scene rendered by `taichifield scene from-mesh` from {Path(mesh).name} "
                       f"(sphere-traced on its exact SDF); gt_mesh.ply is the mesh in scene coordinates, "
                       f"x_scene = (x_mesh - center) * scale (scene_from_mesh.json).\n")
    return SceneFromMesh(folder, counts, tuple(float(c) for c in center), float(scale), len(v), len(f))  # type: ignore[arg-type]
