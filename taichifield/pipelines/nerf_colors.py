"""Vertex colours of a NeRF mesh: the field's rendered colour along each vertex normal.

The library end of ``taichifield mesh nerf --color``: joins a loaded
:class:`~taichifield.pipelines.nerf.NerfModel` to :mod:`taichifield.geometry.colors`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..geometry.colors import bake_rendered_colors, vertex_normals

__all__ = ["bake_nerf_colors"]


@torch.no_grad()
def bake_nerf_colors(model: Any, vertices: Any, faces: Any, *, offset: float) -> torch.Tensor:
    """Colour each vertex with what the NeRF renders along its normal.

    A short ray per vertex runs from ``v + offset n`` back along ``-n`` for ``2 offset``
    through the model's occupancy grid (:meth:`NerfModel.render_rays`, black background);
    its colour divided by its opacity is the vertex colour
    (:func:`taichifield.geometry.colors.bake_rendered_colors`). Where the short ray stays
    mostly transparent the field's colour at the vertex, seen along ``-n``, is used. Normals
    are the mesh's area-weighted vertex normals (outward for marching cubes on
    ``threshold - sigma``).

    Args:
        model: a loaded :class:`~taichifield.pipelines.nerf.NerfModel`.
        vertices: (V, 3) world points (numpy or torch, any device); faces: (F, 3) ints.
        offset: half length of the short ray (world units), e.g. two marching-cubes cells;
            at least four marching steps are used.

    Returns:
        (V, 3) float32 colours in [0, 1] on the CPU.
    """
    dev = model.device
    v = torch.as_tensor(vertices, dtype=torch.float32).to(dev)
    n = vertex_normals(v, torch.as_tensor(faces, dtype=torch.int64).to(dev))
    black = torch.zeros(3, device=dev)
    offset = max(float(offset), 4.0 * model.step_size)

    def render(o: torch.Tensor, d: torch.Tensor, far: float) -> tuple[torch.Tensor, torch.Tensor]:
        out = model.render_rays(o, d, background=black, near=0.0, far=far, cull=False)
        return out["rgb"], out["opacity"]

    def point(x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return model.field(x, d)[0]

    return bake_rendered_colors(v, n, render, offset, fallback=point).cpu()
