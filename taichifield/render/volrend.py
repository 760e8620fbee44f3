"""Volume rendering of packed ray samples (NeRF's quadrature), forward and backward in Taichi.

Samples are *packed* (nerfacc style): sample ``i`` covers ``[t_starts[i], t_ends[i])`` on
ray ``ray_indices[i]``; the samples of one ray are contiguous and sorted by ``t``. Rays with
no samples are allowed.

The quadrature (Max 1995; Mildenhall et al., NeRF, 2020, Eq. 3)::

    delta_i = t_end_i - t_start_i
    alpha_i = 1 - exp(-sigma_i * delta_i)
    T_i     = exp(-sum_{j<i} sigma_j * delta_j)          # transmittance before sample i
    w_i     = T_i * alpha_i                               # the sample's weight
    C       = sum_i w_i c_i,  depth = sum_i w_i (t_start_i + t_end_i) / 2,  opacity = sum_i w_i
    C      += (1 - opacity) * background                  # when a background is given

Early ray termination (Instant-NGP): a ray stops at its first sample with ``T_i < 1e-4``;
that sample and all later ones get weight 0 (the torch reference does the same).

Backward: the classic O(S) pass of Instant-NGP / nerfacc, one thread per ray. With
``g_i = dL/dC . c_i + dL/ddepth * m_i + dL/dopacity`` (``m_i`` the midpoint) and
``tau_i = sigma_i delta_i``::

    dL/dc_i   = w_i dL/dC
    dL/dtau_i = T_{i+1} g_i - sum_{j>i} w_j g_j           # suffix sum = total - prefix

Example::

    rgb, depth, opacity = volume_render(sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays,
                                        background=torch.ones(3))
"""

# no `from __future__ import annotations`: Taichi reads kernel annotations at runtime

from typing import Optional

import taichi as ti
import torch

from ..bridge import TaichiOp

__all__ = [
    "TRANSMITTANCE_THRESHOLD",
    "volume_render",
    "volume_render_reference",
    "render_weights",
    "pack_info",
    "PackedInfo",
    "visible_samples",
]

TRANSMITTANCE_THRESHOLD = 1e-4
"""Early ray termination: samples whose transmittance is below this get weight 0."""


@ti.kernel
def _pack_info(ray_indices: ti.types.ndarray(), offsets: ti.types.ndarray(), ends: ti.types.ndarray()):
    """Each ray's first sample and one past its last from sorted ray indices (empty rays: 0, 0).
    Indices outside ``[0, n_rays)`` are ignored (never written out of bounds)."""
    # Zero-fill here, not in torch: on Vulkan Taichi does not upload write-only ndarrays, so
    # elements a kernel leaves untouched hold stale device memory.
    for r in range(offsets.shape[0]):
        offsets[r] = 0
        ends[r] = 0
    S = ray_indices.shape[0]
    R = offsets.shape[0]
    for i in range(S):
        r = ray_indices[i]
        if 0 <= r < R:
            prev = ray_indices[ti.max(i - 1, 0)]  # clamped: Taichi's `or` does not short-circuit
            nxt = ray_indices[ti.min(i + 1, S - 1)]
            if i == 0 or prev != r:
                offsets[r] = i
            if i == S - 1 or nxt != r:
                ends[r] = i + 1


_validate_on_cpu = True
"""pack_info checks CPU indices (reading them is free there); GPU indices are never read."""

PackedInfo = tuple[torch.Tensor, torch.Tensor]
"""``(offsets (n_rays,) int32, counts (n_rays,) int32)`` of packed samples (:func:`pack_info`)."""


def pack_info(ray_indices: torch.Tensor, n_rays: int) -> PackedInfo:
    """First sample and sample count of every ray, on ``ray_indices.device``, with no host sync.

    Compute it once and pass it as ``packed_info=`` to :func:`volume_render` and
    :func:`visible_samples` when both see the same samples.

    Args:
        ray_indices: (S,) int, sorted.
        n_rays: number of rays.

    Returns:
        offsets (n_rays,) int32: index of each ray's first sample; counts (n_rays,) int32.

    Raises:
        ValueError: (CPU tensors only, where checking costs no sync) indices unsorted at
            the ends or outside ``[0, n_rays)``. On a GPU such indices are ignored.
    """
    offsets = torch.zeros(n_rays, dtype=torch.int32, device=ray_indices.device)
    ends = torch.zeros(n_rays, dtype=torch.int32, device=ray_indices.device)  # zeros for S == 0
    if ray_indices.numel() > 0:
        if _validate_on_cpu and ray_indices.device.type == "cpu":
            first, last = int(ray_indices[0]), int(ray_indices[-1])
            if first < 0 or last >= n_rays or first > last:
                raise ValueError(f"ray_indices must be sorted and in [0, {n_rays}), got first {first}, last {last}")
        _pack_info(ray_indices.to(torch.int32).contiguous(), offsets, ends)
    return offsets, (ends - offsets).contiguous()


@ti.kernel
def _forward(sigmas: ti.types.ndarray(), rgbs: ti.types.ndarray(), t_starts: ti.types.ndarray(),
             t_ends: ti.types.ndarray(), offsets: ti.types.ndarray(), counts: ti.types.ndarray(),
             thresh: ti.f32, out_rgb: ti.types.ndarray(), out_depth: ti.types.ndarray(),
             out_opacity: ti.types.ndarray()):
    for r in range(offsets.shape[0]):
        start = offsets[r]
        T = 1.0
        cr, cg, cb, d, o = 0.0, 0.0, 0.0, 0.0, 0.0
        for k in range(counts[r]):
            i = start + k
            if T < thresh:
                break
            delta = t_ends[i] - t_starts[i]
            T_next = T * ti.exp(-sigmas[i] * delta)
            w = T - T_next
            cr += w * rgbs[i, 0]
            cg += w * rgbs[i, 1]
            cb += w * rgbs[i, 2]
            d += w * 0.5 * (t_starts[i] + t_ends[i])
            o += w
            T = T_next
        out_rgb[r, 0] = cr
        out_rgb[r, 1] = cg
        out_rgb[r, 2] = cb
        out_depth[r] = d
        out_opacity[r] = o


@ti.kernel
def _backward(sigmas: ti.types.ndarray(), rgbs: ti.types.ndarray(), t_starts: ti.types.ndarray(),
              t_ends: ti.types.ndarray(), offsets: ti.types.ndarray(), counts: ti.types.ndarray(),
              thresh: ti.f32, g_rgb: ti.types.ndarray(), g_depth: ti.types.ndarray(),
              g_opacity: ti.types.ndarray(), g_sigmas: ti.types.ndarray(), g_rgbs: ti.types.ndarray()):
    for r in range(offsets.shape[0]):
        start = offsets[r]
        gr, gg, gb, gd, go = g_rgb[r, 0], g_rgb[r, 1], g_rgb[r, 2], g_depth[r], g_opacity[r]
        # pass 1: total = sum_j w_j g_j over the samples the forward used
        T = 1.0
        total = 0.0
        for k in range(counts[r]):
            i = start + k
            if T < thresh:
                break
            T_next = T * ti.exp(-sigmas[i] * (t_ends[i] - t_starts[i]))
            g = gr * rgbs[i, 0] + gg * rgbs[i, 1] + gb * rgbs[i, 2] + gd * 0.5 * (t_starts[i] + t_ends[i]) + go
            total += (T - T_next) * g
            T = T_next
        # pass 2: dL/dtau_i = T_{i+1} g_i - (total - prefix_i)
        T = 1.0
        prefix = 0.0
        for k in range(counts[r]):
            i = start + k
            if T < thresh:  # terminated: no gradient (the buffers are not pre-zeroed)
                g_sigmas[i] = 0.0
                g_rgbs[i, 0] = 0.0
                g_rgbs[i, 1] = 0.0
                g_rgbs[i, 2] = 0.0
                continue
            delta = t_ends[i] - t_starts[i]
            T_next = T * ti.exp(-sigmas[i] * delta)
            w = T - T_next
            g = gr * rgbs[i, 0] + gg * rgbs[i, 1] + gb * rgbs[i, 2] + gd * 0.5 * (t_starts[i] + t_ends[i]) + go
            prefix += w * g
            g_sigmas[i] = (T_next * g - (total - prefix)) * delta
            g_rgbs[i, 0] = w * gr
            g_rgbs[i, 1] = w * gg
            g_rgbs[i, 2] = w * gb
            T = T_next


def _outputs(sigmas, rgbs, t_starts, t_ends, offsets, counts, thresh):
    n = offsets.shape[0]
    return [sigmas.new_empty((n, 3)), sigmas.new_empty((n,)), sigmas.new_empty((n,))]


def _backward_fn(saved, grads):
    sigmas, rgbs, t_starts, t_ends, offsets, counts, thresh = saved
    n = offsets.shape[0]
    g_rgb, g_depth, g_opacity = grads
    g_rgb = torch.zeros((n, 3), dtype=sigmas.dtype, device=sigmas.device) if g_rgb is None else g_rgb
    g_depth = torch.zeros((n,), dtype=sigmas.dtype, device=sigmas.device) if g_depth is None else g_depth
    g_opacity = torch.zeros((n,), dtype=sigmas.dtype, device=sigmas.device) if g_opacity is None else g_opacity
    g_sigmas = torch.empty_like(sigmas)  # every entry is written by the kernel
    g_rgbs = torch.empty_like(rgbs)
    _backward(sigmas, rgbs, t_starts, t_ends, offsets, counts, thresh,
              g_rgb.to(sigmas.dtype).contiguous(), g_depth.to(sigmas.dtype).contiguous(),
              g_opacity.to(sigmas.dtype).contiguous(), g_sigmas, g_rgbs)
    return [g_sigmas, g_rgbs, None, None, None, None, None]


_volume_render_op = TaichiOp(_forward, outputs=_outputs, backward=_backward_fn, name="volume_render")


@ti.kernel
def _visible(sigmas: ti.types.ndarray(), t_starts: ti.types.ndarray(), t_ends: ti.types.ndarray(),
             offsets: ti.types.ndarray(), counts: ti.types.ndarray(), thresh: ti.f32,
             alpha_threshold: ti.f32, keep: ti.types.ndarray()):
    for r in range(offsets.shape[0]):
        start = offsets[r]
        T = 1.0
        for k in range(counts[r]):
            i = start + k
            alpha = 1.0 - ti.exp(-sigmas[i] * (t_ends[i] - t_starts[i]))
            keep[i] = 1 if (T >= thresh and alpha > alpha_threshold) else 0
            T *= 1.0 - alpha


def visible_samples(sigmas: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor,
                    ray_indices: torch.Tensor, n_rays: int, alpha_threshold: float = 0.0,
                    packed_info: Optional[PackedInfo] = None) -> torch.Tensor:
    """Which samples can contribute: not past early termination (``T_i >= 1e-4``) and, when
    ``alpha_threshold > 0``, with ``alpha_i > alpha_threshold`` (nerfacc's sample culling).

    Use it to skip evaluating colour (and gradients) for samples hidden behind a surface:
    with ``alpha_threshold = 0`` rendering only the kept samples gives the same result.
    Forward only; runs on every arch.

    Args:
        sigmas, t_starts, t_ends: (S,) float.
        ray_indices: (S,) int, sorted.
        n_rays: number of rays.
        alpha_threshold: drop samples whose alpha is at most this (0 keeps all but the tail).
        packed_info: :func:`pack_info` of ``ray_indices``, when the caller has it.

    Returns:
        (S,) bool mask, on the samples' device.
    """
    if sigmas.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=sigmas.device)
    offsets, counts = packed_info if packed_info is not None else pack_info(ray_indices, n_rays)
    keep = torch.empty(sigmas.shape[0], dtype=torch.int32, device=sigmas.device)
    _visible(sigmas.detach().contiguous(), t_starts.to(sigmas.dtype).contiguous(),
             t_ends.to(sigmas.dtype).contiguous(), offsets, counts, TRANSMITTANCE_THRESHOLD,
             float(alpha_threshold), keep)
    return keep.bool()


def _add_background(rgb: torch.Tensor, opacity: torch.Tensor,
                    background: Optional[torch.Tensor]) -> torch.Tensor:
    if background is None:
        return rgb
    bg = background.to(rgb)
    if bg.dim() == 1:
        bg = bg.view(1, 3)
    return rgb + (1.0 - opacity).unsqueeze(-1) * bg


def volume_render(sigmas: torch.Tensor, rgbs: torch.Tensor, t_starts: torch.Tensor,
                  t_ends: torch.Tensor, ray_indices: torch.Tensor, n_rays: int,
                  background: Optional[torch.Tensor] = None, packed_info: Optional[PackedInfo] = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite packed samples along their rays (Taichi forward and hand-written backward).

    Differentiable w.r.t. ``sigmas``, ``rgbs`` and ``background`` (not the ``t``'s).
    Runs on every arch for inference; gradients need cpu or cuda.

    Args:
        sigmas: (S,) float densities, >= 0.
        rgbs: (S, 3) float colours.
        t_starts: (S,) float interval starts along the ray (distance in units of ``|rays_d|``).
        t_ends: (S,) float interval ends.
        ray_indices: (S,) int, sorted: the ray of each sample (samples of a ray contiguous,
            ordered by ``t``).
        n_rays: number of rays (rays may have no samples).
        background: None, (3,) or (n_rays, 3): colour added as ``(1 - opacity) * background``.
        packed_info: :func:`pack_info` of ``ray_indices``, when the caller has it.

    Returns:
        rgb (n_rays, 3), depth (n_rays,) (the weighted mean of midpoints, *not* normalised by
        opacity), opacity (n_rays,) (the sum of weights), on the samples' device.

    Note:
        The kernels run on the samples' device (CPU tensors under arch cpu/vulkan, CUDA
        tensors under arch cuda) and nothing is copied to the host.
    """
    offsets, counts = packed_info if packed_info is not None else pack_info(ray_indices, n_rays)
    dtype = sigmas.dtype
    rgb, depth, opacity = _volume_render_op(
        sigmas, rgbs.to(dtype), t_starts.to(dtype), t_ends.to(dtype), offsets, counts,
        TRANSMITTANCE_THRESHOLD)
    return _add_background(rgb, opacity, background), depth, opacity


def render_weights(sigmas: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor,
                   ray_indices: torch.Tensor, n_rays: int, packed_info: Optional[PackedInfo] = None) -> torch.Tensor:
    """Per-sample weights ``w_i = T_i alpha_i`` (pure torch, differentiable; early termination
    applied as in :func:`volume_render`).

    Args:
        sigmas, t_starts, t_ends: (S,) float.
        ray_indices: (S,) int, sorted.
        n_rays: number of rays.
        packed_info: :func:`pack_info` of ``ray_indices`` when already computed.

    Returns:
        weights (S,), same dtype as ``sigmas``.
    """
    if sigmas.numel() == 0:
        return sigmas.new_zeros((0,))
    tau = sigmas * (t_ends - t_starts)
    # exclusive per-ray cumulative sum; accumulated in float64 so long batches stay exact
    cs = torch.cumsum(tau.double(), 0)
    offsets, _ = packed_info if packed_info is not None else pack_info(ray_indices, n_rays)
    ray = ray_indices.long()
    first = offsets.long()[ray]
    base = cs[first] - tau.double()[first]
    excl = (cs - tau.double() - base).to(sigmas.dtype)
    T = torch.exp(-excl)
    alive = (T >= TRANSMITTANCE_THRESHOLD).to(sigmas.dtype)
    return T * (1.0 - torch.exp(-tau)) * alive


def volume_render_reference(sigmas: torch.Tensor, rgbs: torch.Tensor, t_starts: torch.Tensor,
                            t_ends: torch.Tensor, ray_indices: torch.Tensor, n_rays: int,
                            background: Optional[torch.Tensor] = None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pure-torch :func:`volume_render` (same signature and results); autograd does the backward."""
    w = render_weights(sigmas, t_starts, t_ends, ray_indices, n_rays)
    ray = ray_indices.long()
    rgb = sigmas.new_zeros((n_rays, 3)).index_add(0, ray, w.unsqueeze(-1) * rgbs.to(w.dtype))
    mid = 0.5 * (t_starts + t_ends).to(w.dtype)
    depth = sigmas.new_zeros((n_rays,)).index_add(0, ray, w * mid)
    opacity = sigmas.new_zeros((n_rays,)).index_add(0, ray, w)
    return _add_background(rgb, opacity, background), depth, opacity
