"""Sphere tracing of signed distance fields with active-ray compaction.

Sphere tracing (Hart 1996, "Sphere tracing: a geometric method for the antialiased ray
tracing of implicit surfaces") marches each ray by the field's value: for an SDF ``u``
with Lipschitz constant 1, the ball of radius ``|u(x)|`` around ``x`` holds no surface,
so ``t <- t + |u(o + t d)| / |d|`` never skips the first root along the ray.

Only rays still marching are evaluated: after each step a Taichi kernel advances every
active ray, retires the converged (``|u| < eps``) and escaped (``t > far``) ones and
compacts the survivors into a new index list, so the (costly) field is called on fewer
points as the image converges. The field itself is any callable: a torch network, an
analytic function, a hash grid.

Example:
    >>> import torch
    >>> from taichifield.render.sphere_trace import sphere_trace
    >>> sphere = lambda p: p.norm(dim=-1) - 1.0
    >>> o = torch.tensor([[0.0, 0.0, -3.0]]); d = torch.tensor([[0.0, 0.0, 1.0]])
    >>> t, hit = sphere_trace(sphere, o, d)        # t ~ 2.0, hit = True
"""

# no `from __future__ import annotations`: Taichi reads kernel annotations at runtime

import logging
from typing import Callable

import taichi as ti
import torch

from .. import runtime
from ..errors import InputError

__all__ = ["sphere_trace", "sphere_trace_normals"]

log = logging.getLogger(__name__)

SdfFn = Callable[[torch.Tensor], torch.Tensor]


@ti.kernel
def _gather_points(
    rays_o: ti.types.ndarray(), rays_d: ti.types.ndarray(), t: ti.types.ndarray(),
    active: ti.types.ndarray(), n_active: ti.i32, points: ti.types.ndarray(),
):
    """points[k] = o[i] + t[i] d[i] for i = active[k], k < n_active."""
    for k in range(n_active):
        i = active[k]
        for c in ti.static(range(3)):
            points[k, c] = rays_o[i, c] + t[i] * rays_d[i, c]


@ti.kernel
def _step(
    rays_d: ti.types.ndarray(), values: ti.types.ndarray(), t: ti.types.ndarray(),
    hit: ti.types.ndarray(), active: ti.types.ndarray(), n_active: ti.i32,
    next_active: ti.types.ndarray(), counter: ti.types.ndarray(), eps: ti.f32, far: ti.f32,
):
    """Advance each active ray by |u| / |d|; retire hits and escapes; compact the rest."""
    for k in range(n_active):
        i = active[k]
        u = ti.abs(values[k])
        if u < eps:
            # read-modify-write: Taichi's Vulkan backend does not upload arrays a kernel
            # only writes, so a plain store would leave stale device memory elsewhere
            hit[i] = ti.max(hit[i], 1)
        else:
            dn = ti.sqrt(rays_d[i, 0] ** 2 + rays_d[i, 1] ** 2 + rays_d[i, 2] ** 2)
            ti_new = ti.cast(t[i] + u / ti.max(dn, 1e-12), ti.f32)
            if ti_new > far:
                t[i] = far
            else:
                t[i] = ti_new
                slot = ti.atomic_add(counter[0], 1)
                next_active[slot] = i


def _check_rays(rays_o: torch.Tensor, rays_d: torch.Tensor) -> None:
    for name, r in (("rays_o", rays_o), ("rays_d", rays_d)):
        if not isinstance(r, torch.Tensor) or r.dim() != 2 or r.shape[1] != 3:
            shape = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
            raise InputError(f"sphere_trace: {name} must be an (N, 3) torch tensor, got {shape}")
    if rays_o.shape[0] != rays_d.shape[0]:
        raise InputError(f"sphere_trace: rays_o has {rays_o.shape[0]} rays but rays_d has {rays_d.shape[0]}")
    a, b = rays_o.device, rays_d.device
    if a.type != b.type or a.index != b.index:
        raise InputError(f"sphere_trace: rays_o is on {a} but rays_d on {b}")


def _eval_batched(sdf_fn: SdfFn, points: torch.Tensor, batch_size: int) -> torch.Tensor:
    """sdf_fn on (M, 3) points in batches of at most ``batch_size``; returns (M,) float32."""
    out = torch.empty(points.shape[0], dtype=torch.float32, device=points.device)
    for s in range(0, points.shape[0], batch_size):
        v = sdf_fn(points[s:s + batch_size])
        out[s:s + batch_size] = v.reshape(-1).to(torch.float32)
    return out


@torch.no_grad()
def sphere_trace(
    sdf_fn: SdfFn,
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    near: float = 0.0,
    far: float = 10.0,
    max_steps: int = 128,
    eps: float = 1e-4,
    *,
    batch_size: int = 2**16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Find the first surface point ``o + t d`` along each ray by sphere tracing.

    Steps by ``|u|`` (the absolute value), so a ray that starts inside the surface
    (``u < 0``) marches to where it leaves it: the result is always the first root of
    ``u`` along the ray after ``near``.

    Args:
        sdf_fn: maps (M, 3) float32 points on ``rays_o.device`` to (M,) (or (M, 1))
            signed distances; called under ``torch.no_grad`` on at most ``batch_size``
            points at a time, and only on rays still marching.
        rays_o: (N, 3) ray origins. The march runs on their device (the Taichi kernels
            take the tensors where they are; nothing is moved) and ``rays_d`` must be
            on the same one.
        rays_d: (N, 3) ray directions, any non-zero length: ``t`` is in units of
            ``|rays_d|`` (the point is ``rays_o + t * rays_d``).
        near: start of every ray, in the same units as ``t``.
        far: a ray whose ``t`` passes ``far`` is a miss.
        max_steps: at most this many field evaluations per ray.
        eps: a ray hits when ``|u| < eps`` (world units).
        batch_size: most points per ``sdf_fn`` call.

    Returns:
        t: (N,) float32: the hit distance for hits; ``far`` for rays that escaped; the
            last marched distance for rays that ran out of steps.
        hit: (N,) bool. Both on ``rays_o.device``.

    Raises:
        InputError: rays not (N, 3), mismatched counts or devices, or near > far.
    """
    _check_rays(rays_o, rays_d)
    if not near <= far:
        raise InputError(f"sphere_trace: near ({near}) must not exceed far ({far})")
    if max_steps < 0 or batch_size <= 0:
        raise InputError(f"sphere_trace: max_steps must be >= 0 and batch_size > 0 (got {max_steps}, {batch_size})")
    runtime.ensure_init()
    dev = rays_o.device
    o = rays_o.detach().to(torch.float32).contiguous()
    d = rays_d.detach().to(torch.float32).contiguous()
    n = o.shape[0]
    t = torch.full((n,), float(near), dtype=torch.float32, device=dev)
    hit = torch.zeros(n, dtype=torch.int32, device=dev)
    active = torch.arange(n, dtype=torch.int32, device=dev)
    next_active = torch.empty_like(active)
    counter = torch.zeros(1, dtype=torch.int32, device=dev)
    n_active = n
    for _ in range(max_steps):
        if n_active == 0:
            break
        points = torch.empty((n_active, 3), dtype=torch.float32, device=dev)
        _gather_points(o, d, t, active, n_active, points)
        values = _eval_batched(sdf_fn, points, batch_size).contiguous()
        counter.zero_()
        _step(d, values, t, hit, active, n_active, next_active, counter, float(eps), float(far))
        n_active = int(counter[0].item())
        active, next_active = next_active, active
    log.debug("sphere_trace: %d rays, %d still marching after %d steps", n, n_active, max_steps)
    return t, hit.bool()


@torch.no_grad()
def sphere_trace_normals(sdf_fn: SdfFn, points: torch.Tensor, eps: float = 1e-3, *, batch_size: int = 2**16) -> torch.Tensor:
    """Unit normals ``∇u / |∇u|`` by central differences (6 field evaluations per point).

    Args:
        sdf_fn: as for :func:`sphere_trace`.
        points: (M, 3) surface points.
        eps: finite-difference step (world units).
        batch_size: most points per ``sdf_fn`` call (of the 6M).

    Returns:
        (M, 3) float32 unit normals (zero where the gradient vanishes).
    """
    if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[1] != 3:
        raise InputError("sphere_trace_normals: points must be an (M, 3) torch tensor")
    p = points.detach().to(torch.float32)
    offsets = torch.eye(3, dtype=torch.float32, device=p.device) * eps
    probes = torch.cat([p[:, None, :] + offsets, p[:, None, :] - offsets], dim=1)  # (M, 6, 3)
    v = _eval_batched(sdf_fn, probes.reshape(-1, 3), batch_size).reshape(-1, 6)
    grad = v[:, :3] - v[:, 3:]
    return torch.nn.functional.normalize(grad, dim=-1)
