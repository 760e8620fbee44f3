"""Vertex colours baked from a radiance field: what the field shows of each vertex.

Three ways, from cheapest to most faithful to the training views:

* :func:`bake_vertex_colors` queries the field's colour at each vertex, seen along its normal
  (view direction ``-n``: a camera just outside the surface looking straight at it);
* :func:`bake_rendered_colors` volume-renders a short ray per vertex, from ``v + offset n``
  back along ``-n`` through ``v`` (so a density isosurface gets the colour the field actually
  renders there, not the colour at the threshold crossing), falling back to a point query
  where the short ray stays transparent;
* :func:`bake_multiview_colors` averages the field's colour at each vertex over the cameras
  that see it (in front of the vertex's tangent plane and not hidden by the mesh itself: a
  ray cast from the vertex towards the camera), weighted by ``cos`` of the viewing angle, as
  texture baking from photos does; vertices no camera sees keep the normal-view colour.

All run in batches on the device of ``vertices`` (the field's device, one device rule of
:mod:`taichifield.runtime`); the mesh occlusion test of the multi-view bake runs Open3D's
ray caster on the CPU.

Example:
    >>> n = vertex_normals(verts, faces)                       # (V, 3)
    >>> rgb = bake_vertex_colors(verts, n, lambda x, d: field(x, d)[0])   # (V, 3) in [0, 1]
    >>> save_mesh("mesh.ply", verts, faces, vertex_colors=rgb)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import InputError

__all__ = ["vertex_normals", "bake_vertex_colors", "bake_rendered_colors", "bake_multiview_colors"]

RgbFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``rgb_fn(x (N, 3), view_dirs (N, 3) unit ray directions) -> (N, 3)`` colours in [0, 1]."""
RenderFn = Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]
"""``render_fn(rays_o (R, 3), rays_d (R, 3) unit, far) -> (rgb (R, 3) composited on black, opacity (R,))``,
rendering each ray over ``t in [0, far]``."""


def _check(vertices: torch.Tensor, normals: torch.Tensor) -> None:
    for name, a in (("vertices", vertices), ("normals", normals)):
        if not isinstance(a, torch.Tensor) or a.dim() != 2 or a.shape[1] != 3:
            raise InputError(f"bake colours: {name} must be a (V, 3) torch tensor")
    if vertices.shape != normals.shape:
        raise InputError(f"bake colours: {vertices.shape[0]} vertices but {normals.shape[0]} normals")
    if vertices.device != normals.device:
        raise InputError(f"bake colours: vertices are on {vertices.device} but normals on {normals.device}")


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted vertex normals (V, 3), unit length, following the faces' winding.

    Args:
        vertices: (V, 3) floats; faces: (F, 3) ints (counter-clockwise seen from outside gives
            outward normals, as :func:`taichifield.geometry.extract.extract_mesh` writes them).

    Returns:
        (V, 3) float32 on ``vertices``' device; zero for vertices in no (non-degenerate) face.
    """
    v = torch.as_tensor(vertices, dtype=torch.float32)
    f = torch.as_tensor(faces, dtype=torch.int64, device=v.device)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    fn = torch.linalg.cross(b - a, c - a, dim=-1)  # length = twice the face area
    n = torch.zeros_like(v)
    for k in range(3):
        n.index_add_(0, f[:, k], fn)
    return torch.nn.functional.normalize(n, dim=-1)


@torch.no_grad()
def bake_vertex_colors(vertices: torch.Tensor, normals: torch.Tensor, rgb_fn: RgbFn, *, offset: float = 0.0,
                       batch_size: int = 1 << 16) -> torch.Tensor:
    """Colour of each vertex as seen along its normal: ``rgb_fn(v + offset n, -n)``.

    Args:
        vertices: (V, 3) points; normals: (V, 3) unit outward normals (same device).
        rgb_fn: the field's colour (see :data:`RgbFn`), called on at most ``batch_size`` points.
        offset: query this far outside the vertex along its normal (world units).

    Returns:
        (V, 3) float32 in [0, 1] on ``vertices``' device.
    """
    _check(vertices, normals)
    out = torch.empty(vertices.shape[0], 3, dtype=torch.float32, device=vertices.device)
    for s in range(0, vertices.shape[0], batch_size):
        v, n = vertices[s:s + batch_size].float(), normals[s:s + batch_size].float()
        out[s:s + batch_size] = rgb_fn(v + offset * n, -n).reshape(-1, 3).float()
    return out.clamp_(0.0, 1.0)


@torch.no_grad()
def bake_rendered_colors(vertices: torch.Tensor, normals: torch.Tensor, render_fn: RenderFn, offset: float, *,
                         fallback: RgbFn | None = None, min_opacity: float = 0.5,
                         batch_size: int = 1 << 14) -> torch.Tensor:
    """Colour rendered along a short ray per vertex: from ``v + offset n`` along ``-n`` to ``v - offset n``.

    The colour is the ray's composited colour divided by its opacity (the colour of what it
    hit, whatever the background); rays with opacity below ``min_opacity`` (a vertex in a
    thin or faint part of the field) take ``fallback``'s point colour (:func:`bake_vertex_colors`),
    or their unnormalised colour when no fallback is given.

    Args:
        vertices, normals: (V, 3) each, unit outward normals, on the field's device.
        render_fn: see :data:`RenderFn`; called with ``far = 2 offset``.
        offset: half length of the short ray (world units): a few marching steps, about
            two marching-cubes cells.

    Returns:
        (V, 3) float32 in [0, 1] on ``vertices``' device.
    """
    _check(vertices, normals)
    if not offset > 0:
        raise InputError(f"bake colours: offset must be positive, got {offset}")
    out = torch.empty(vertices.shape[0], 3, dtype=torch.float32, device=vertices.device)
    for s in range(0, vertices.shape[0], batch_size):
        v, n = vertices[s:s + batch_size].float(), normals[s:s + batch_size].float()
        rgb, opacity = render_fn((v + offset * n).contiguous(), (-n).contiguous(), 2.0 * offset)
        rgb, opacity = rgb.float(), opacity.float().reshape(-1, 1)
        color = torch.where(opacity > 1e-6, rgb / opacity.clamp(min=1e-6), rgb)
        if fallback is not None:
            faint = opacity[:, 0] < min_opacity
            if bool(faint.any()):
                color[faint] = bake_vertex_colors(v[faint], n[faint], fallback)
        out[s:s + batch_size] = color
    return out.clamp_(0.0, 1.0)


def _mesh_scene(vertices: np.ndarray, faces: np.ndarray) -> object:
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    return scene


def _visible_from(scene: object, vertices: np.ndarray, normals: np.ndarray, eye: np.ndarray, lift: float) -> np.ndarray:
    """(V,) bool: vertex faces camera ``eye`` (3,) and the segment to it misses the mesh (Open3D, CPU)."""
    import open3d as o3d

    to_eye = eye[None, :] - vertices
    dist = np.linalg.norm(to_eye, axis=1)
    d = to_eye / np.maximum(dist, 1e-12)[:, None]
    front = np.einsum("ij,ij->i", d, normals) > 0
    rays = np.concatenate([vertices + lift * normals, d], axis=1).astype(np.float32)
    t_hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()  # type: ignore[attr-defined]
    return front & ~(t_hit < dist - lift)


@torch.no_grad()
def bake_multiview_colors(vertices: torch.Tensor, normals: torch.Tensor, faces: torch.Tensor, rgb_fn: RgbFn,
                          camera_centers: torch.Tensor, *, lift: float = 1e-3,
                          batch_size: int = 1 << 16) -> torch.Tensor:
    """Colour averaged over the cameras that see each vertex, weighted by ``cos`` of the viewing angle.

    For camera ``c`` and vertex ``v`` the view direction is ``d = (v - c) / |v - c|``; the
    camera sees ``v`` when ``n . d < 0`` and a ray from ``v + lift n`` towards ``c`` hits no
    triangle of the mesh before it. The colour is ``sum_c w_c rgb_fn(v, d_c) / sum_c w_c``
    with ``w_c = -n . d_c``; vertices no camera sees get :func:`bake_vertex_colors`' colour.

    Args:
        vertices, normals: (V, 3) each on the field's device; faces: (F, 3) the mesh's faces
            (for the occlusion test).
        rgb_fn: see :data:`RgbFn`.
        camera_centers: (C, 3) camera positions (e.g. the training poses' ``c2w[:, :3, 3]``).
        lift: the occlusion ray starts this far outside the surface (world units).

    Returns:
        (V, 3) float32 in [0, 1] on ``vertices``' device.
    """
    _check(vertices, normals)
    dev = vertices.device
    v_np, n_np = vertices.detach().cpu().double().numpy(), normals.detach().cpu().double().numpy()
    f_np = torch.as_tensor(faces).detach().cpu().numpy()
    scene = _mesh_scene(v_np, f_np)
    total = torch.zeros(vertices.shape[0], 3, dtype=torch.float32, device=dev)
    weight = torch.zeros(vertices.shape[0], dtype=torch.float32, device=dev)
    for eye in torch.as_tensor(camera_centers, dtype=torch.float64).reshape(-1, 3).numpy():
        seen = torch.as_tensor(_visible_from(scene, v_np, n_np, eye, lift), device=dev)
        idx = seen.nonzero()[:, 0]
        for s in range(0, idx.shape[0], batch_size):
            i = idx[s:s + batch_size]
            d = torch.nn.functional.normalize(vertices[i].float() - torch.as_tensor(eye, dtype=torch.float32, device=dev), dim=-1)
            w = (-(normals[i].float() * d).sum(-1)).clamp(min=0)
            total.index_add_(0, i, w[:, None] * rgb_fn(vertices[i].float(), d).reshape(-1, 3).float())
            weight.index_add_(0, i, w)
    out = total / weight.clamp(min=1e-12)[:, None]
    unseen = weight <= 1e-12
    if bool(unseen.any()):
        out[unseen] = bake_vertex_colors(vertices[unseen], normals[unseen], rgb_fn, batch_size=batch_size)
    return out.clamp_(0.0, 1.0)
