"""The occupancy grid over contracted space, for unbounded scenes (mip-NeRF 360 + Instant-NGP).

With ``OccupancyGrid(aabb, contraction=True)`` the grid's ``resolution^3`` cells cover the
contracted cube ``[-2, 2]^3`` of :func:`taichifield.render.contraction.contract` (``inf`` norm)
in box units of ``aabb``: the box is the middle half of the grid, everything outside it (out to
infinity) the shell around it. Rays are not clipped to any box, only to ``[near, far]``.

Marching is in world ``t`` as for the bounded grid, with a step that is uniform in *contracted*
space outside the box: at a point with ``m = |q|_inf`` box units (``m > 1``) the contraction
shrinks radial lengths by about ``1 / m^2``, so the step is ``dt * max(1, m^2)`` (``m`` at the
step's start), i.e. linear in disparity far away, as mip-NeRF 360 samples; a ray then needs
about ``2 / (dt / half)`` steps from the box to infinity instead of an unbounded number.
``cone_angle > 0`` additionally grows steps with ``t`` (Instant-NGP): ``max(..., t * cone)``.
Empty cells are stepped over one step at a time (no DDA skipping: cells are not axis-aligned in
world space outside the box). Each step depends only on its start ``t``, so restarting a march
at a previous sample's end (:mod:`taichifield.render.march_rounds`) continues the same lattice.

These are the contracted branches of :meth:`OccupancyGrid.update` / :meth:`OccupancyGrid.sample`;
the bounded grid's kernels are untouched.
"""

# no `from __future__ import annotations`: Taichi reads kernel annotations at runtime

from typing import Any

import taichi as ti
import torch

from .contraction import from_box_units, uncontract

__all__ = ["contracted_cell_points", "march_contracted"]


@ti.kernel
def _march_contracted(rays_o: ti.types.ndarray(), rays_d: ti.types.ndarray(), near: ti.types.ndarray(),
                      far: ti.types.ndarray(), offset: ti.types.ndarray(), bits: ti.types.ndarray(),
                      box: ti.types.ndarray(), res: ti.i32, dt: ti.f32, cone: ti.f32, max_samples: ti.i32,
                      write: ti.i32, counts: ti.types.ndarray(), starts: ti.types.ndarray(),
                      t_starts: ti.types.ndarray(), t_ends: ti.types.ndarray(), ray_indices: ti.types.ndarray()):
    """Count (write=0) or write (write=1) the occupied samples of every ray in the contracted grid."""
    for r in range(rays_o.shape[0]):
        o = ti.Vector([rays_o[r, 0], rays_o[r, 1], rays_o[r, 2]])
        d = ti.Vector([rays_d[r, 0], rays_d[r, 1], rays_d[r, 2]])
        c = ti.Vector([box[0], box[1], box[2]])
        h = ti.Vector([box[3], box[4], box[5]])
        t0 = near[r]
        t1 = far[r]
        n = 0
        base = 0
        cap = max_samples
        if write == 1:
            base = starts[r]
            cap = counts[r]
        q0 = (o + t0 * d - c) / h
        m0 = ti.max(ti.abs(q0[0]), ti.abs(q0[1]), ti.abs(q0[2]))
        t = t0 + offset[r] * ti.max(dt * ti.max(m0 * m0, 1.0), t0 * cone)
        while t < t1 and n < cap:
            qs = (o + t * d - c) / h
            ms = ti.max(ti.abs(qs[0]), ti.abs(qs[1]), ti.abs(qs[2]))
            dtc = ti.min(ti.max(dt * ti.max(ms * ms, 1.0), t * cone), 1e30)
            if t + 1e-3 * dtc >= t1:  # no slivers shorter than 0.1% of a step
                break
            t_e = ti.min(t + dtc, t1)
            q = (o + 0.5 * (t + t_e) * d - c) / h
            m = ti.max(ti.abs(q[0]), ti.abs(q[1]), ti.abs(q[2]))
            if m > 1.0:
                q = q * ((2.0 - 1.0 / m) / m)
            cell = ti.Vector([0, 0, 0])
            for k in ti.static(range(3)):
                cell[k] = ti.min(ti.max(ti.cast(ti.floor((q[k] + 2.0) * 0.25 * res), ti.i32), 0), res - 1)
            flat = (cell[0] * res + cell[1]) * res + cell[2]
            if (bits[flat >> 5] >> (flat & 31)) & 1 == 1:
                if write == 1:
                    i = base + n
                    t_starts[i] = t
                    t_ends[i] = t_e
                    ray_indices[i] = r
                n += 1
            t = t + dtc
        if write == 0:
            counts[r] = n


def contracted_cell_points(grid: Any, indices: torch.Tensor, jitter: torch.Tensor) -> torch.Tensor:
    """World points (M, 3) at ``jitter`` (M, 3) in [0, 1) inside the contracted cells ``indices`` (M,).

    The cell ``(ix, iy, iz)`` spans contracted coordinates ``-2 + 4 (i + [0, 1)) / R``; points
    are mapped back with :func:`~taichifield.render.contraction.uncontract` (the outermost cells
    reach about 1e6 box units).
    """
    R = grid.resolution
    i = indices.long()
    ijk = torch.stack([i // (R * R), (i // R) % R, i % R], dim=-1).to(jitter.dtype)
    q = uncontract(-2.0 + 4.0 * (ijk + jitter) / R)
    return from_box_units(q, grid.aabb).to(torch.float32).contiguous()


def march_contracted(grid: Any, o: torch.Tensor, d: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                     offset: torch.Tensor, dt: float, cone: float, max_samples: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Packed samples of rays (n, 3) through a contracted grid (see :meth:`OccupancyGrid.sample`)."""
    from .raymarch import two_pass_march

    args = (o, d, near, far, offset, grid.bits, grid._box, grid.resolution, float(dt), float(cone), int(max_samples))
    return two_pass_march(_march_contracted, args, o.shape[0], o.device)
