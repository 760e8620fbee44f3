"""A fused sphere tracer for the analytic LEGO scene (first-use rendering of ``scenes/lego``).

One Taichi kernel does everything per ray: the slab test against the scene box
(rays that miss it cost nothing), the march, the hit's normal and its brick. The SDF
is :func:`~taichifield.scenes.lego_kernel.lego_sdf_func`, with the bricks culled by
the coarse grid, so a step evaluates 1-3 bricks instead of 9.

The march is over-relaxed sphere tracing (Keinert et al. 2014, "Enhanced Sphere
Tracing", Sec. 3.1): from ``t`` with ``r = |u(t)|`` it tries ``t' = t + w r``
(``w`` = :data:`OMEGA` > 1). The balls ``B(t, r)`` and ``B(t', r')`` hold no surface
(the SDF is 1-Lipschitz), so when they overlap (``r + r' >= t' - t``) nothing was
skipped and ``t'`` is kept; otherwise the step is redone as the plain one
``t + r`` and the ray continues unrelaxed. A hit is still ``|u| < eps`` (the same
criterion as :func:`taichifield.render.sphere_trace.sphere_trace`), so the final
point is exact to ``eps``; only the number of steps changes.

Normals are central differences of the SDF with step :data:`NORMAL_EPS` (six
evaluations, as :func:`~taichifield.render.sphere_trace.sphere_trace_normals`); the
hit is shaded in the same kernel by the formula of :func:`taichifield.scenes.lego.shade`
(the torch reference the tests compare it with), so only the RGBA leaves the kernel.
"""

# no `from __future__ import annotations`: Taichi reads kernel annotations at runtime

import taichi as ti
import torch

from .. import runtime
from . import lego
from .lego_kernel import lego_sdf_func, scene_tables

__all__ = ["trace_lego", "OMEGA", "NORMAL_EPS"]

OMEGA = 1.6
"""Over-relaxation factor of the march (1 = plain sphere tracing)."""
NORMAL_EPS = 5e-4
"""Central-difference step of the normals (world units)."""
BOX_MARGIN = 0.01
"""The traced box is :data:`~taichifield.scenes.lego.SCENE_BOUNDS` grown by this much."""


_LIGHT = [c / sum(x * x for x in lego.LIGHT_DIR) ** 0.5 for c in lego.LIGHT_DIR]


@ti.func
def _shade(albedo: ti.template(), n: ti.template(), v: ti.template()):  # type: ignore[valid-type]
    """:func:`taichifield.scenes.lego.shade` for one point (Lambert + Blinn-Phong)."""
    light = ti.Vector(ti.static(_LIGHT))
    lambert = ti.max(n.dot(light), 0.0)
    half = light - v
    half = half / ti.max(half.norm(), 1e-12)
    spec = ti.pow(ti.max(n.dot(half), 0.0), lego.SHININESS)
    if lambert <= 0.0:
        spec = 0.0
    return ti.min(ti.max(albedo * (lego.AMBIENT + lego.DIFFUSE * lambert) + lego.SPECULAR * spec, 0.0), 1.0)


@ti.kernel
def _trace_kernel(
    rays_o: ti.types.ndarray(ndim=2), rays_d: ti.types.ndarray(ndim=2),
    bricks: ti.types.ndarray(ndim=2), n_bricks: ti.i32,
    geom: ti.types.ndarray(ndim=1), masks: ti.types.ndarray(ndim=1),
    box: ti.types.ndarray(ndim=1), max_steps: ti.i32, eps: ti.f32, omega: ti.f32, normal_eps: ti.f32,
    colors: ti.types.ndarray(ndim=2),
    out_t: ti.types.ndarray(ndim=1), out_hit: ti.types.ndarray(ndim=1),
    out_n: ti.types.ndarray(ndim=2), out_brick: ti.types.ndarray(ndim=1), out_rgba: ti.types.ndarray(ndim=2),
):
    for i in range(rays_o.shape[0]):
        o = ti.Vector([rays_o[i, 0], rays_o[i, 1], rays_o[i, 2]])
        d = ti.Vector([rays_d[i, 0], rays_d[i, 1], rays_d[i, 2]])
        # slab test
        t_in = 0.0
        t_out = 1e30
        for a in ti.static(range(3)):
            da = d[a]
            if ti.abs(da) < 1e-9:
                da = 1e-9
            inv = 1.0 / da
            t0 = (box[a] - o[a]) * inv
            t1 = (box[a + 3] - o[a]) * inv
            t_in = ti.max(t_in, ti.min(t0, t1))
            t_out = ti.min(t_out, ti.max(t0, t1))
        hit = 0
        t = t_in
        if t_out > t_in:
            t_end = t_out + 1e-3
            r, _k = lego_sdf_func(o + t * d, bricks, n_bricks, geom, masks)
            r = ti.abs(r)
            w = omega
            steps = 1
            while steps < max_steps:
                if r < eps:
                    hit = 1
                    break
                t_new = t + w * r
                r_new, _k2 = lego_sdf_func(o + t_new * d, bricks, n_bricks, geom, masks)
                r_new = ti.abs(r_new)
                steps += 1
                if w > 1.0 and r + r_new < t_new - t:
                    # the two surface-free balls do not overlap: redo as a plain step
                    w = 1.0
                    t_new = t + r
                    r_new, _k3 = lego_sdf_func(o + t_new * d, bricks, n_bricks, geom, masks)
                    r_new = ti.abs(r_new)
                    steps += 1
                t = t_new
                r = r_new
                if t > t_end:
                    break
            if hit == 0 and r < eps and t <= t_end:
                hit = 1
        out_t[i] = t
        out_hit[i] = hit
        n = ti.Vector([0.0, 0.0, 0.0])
        brick = 0
        if hit == 1:
            p = o + t * d
            _d, brick = lego_sdf_func(p, bricks, n_bricks, geom, masks)
            for a in ti.static(range(3)):
                e = ti.Vector([0.0, 0.0, 0.0])
                e[a] = normal_eps
                up, _ka = lego_sdf_func(p + e, bricks, n_bricks, geom, masks)
                dn, _kb = lego_sdf_func(p - e, bricks, n_bricks, geom, masks)
                n[a] = up - dn
            n = n / ti.max(n.norm(), 1e-12)
        rgb = ti.Vector([0.0, 0.0, 0.0])
        if hit == 1:
            rgb = _shade(ti.Vector([colors[brick, 0], colors[brick, 1], colors[brick, 2]]), n, d)
        for a in ti.static(range(3)):
            out_n[i, a] = n[a]
            out_rgba[i, a] = rgb[a]
        out_rgba[i, 3] = ti.cast(hit, ti.f32)
        out_brick[i] = brick


@torch.no_grad()
def trace_lego(rays_o: torch.Tensor, rays_d: torch.Tensor, *, max_steps: int = 160, eps: float = 2e-4,
               omega: float = OMEGA, cull: bool = True) -> dict[str, torch.Tensor]:
    """First hits of rays with the LEGO model, with their normals and bricks.

    Args:
        rays_o: (N, 3) origins; rays_d: (N, 3) unit directions; same device (CPU or
            CUDA): the kernel runs there and returns its results there.
        max_steps: at most this many SDF evaluations per ray while marching.
        eps: a ray hits where ``|u| < eps`` (world units).
        omega: over-relaxation factor (1: plain sphere tracing).
        cull: use the brick culling grid (same SDF; ``False`` for tests).

    Returns:
        ``t`` (N,) float32 distance along the ray (meaningful where hit), ``hit`` (N,)
        bool, ``normal`` (N, 3) float32 unit outward normals (zero where missed),
        ``brick`` (N,) int64 index into :data:`~taichifield.scenes.lego.BRICKS`, ``rgba``
        (N, 4) float32: :func:`~taichifield.scenes.lego.shade` of the hit with its
        brick's albedo and alpha 1, zero where missed.
    """
    runtime.ensure_init()
    dev = rays_o.device
    o = rays_o.detach().to(torch.float32).contiguous()
    d = rays_d.detach().to(torch.float32).contiguous()
    n = o.shape[0]
    # the kernel writes every element of its outputs, so no zero fill
    t = torch.empty(n, dtype=torch.float32, device=dev)
    hit = torch.empty(n, dtype=torch.int32, device=dev)
    normal = torch.empty(n, 3, dtype=torch.float32, device=dev)
    brick = torch.empty(n, dtype=torch.int32, device=dev)
    rgba = torch.empty(n, 4, dtype=torch.float32, device=dev)
    if n:
        colors = torch.tensor([b.color for b in lego.BRICKS], dtype=torch.float32, device=dev)
        bricks, geom, masks = scene_tables(dev, cull)
        lo, hi = lego.SCENE_BOUNDS
        box = torch.tensor([*(a - BOX_MARGIN for a in lo), *(b + BOX_MARGIN for b in hi)], dtype=torch.float32,
                           device=dev)
        _trace_kernel(o, d, bricks, bricks.shape[0], geom, masks, box, int(max_steps), float(eps), float(omega),
                      float(NORMAL_EPS), colors, t, hit, normal, brick, rgba)
    return {"t": t, "hit": hit.bool(), "normal": normal, "brick": brick.long(), "rgba": rgba}
