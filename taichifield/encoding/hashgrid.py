"""Multiresolution hash grid encoding (Instant-NGP; Mueller et al. 2022, Sec. 3).

For each of ``L`` levels with resolution ``N_l = floor(N_min * b**l)``,
``b = exp((ln N_max - ln N_min) / (L - 1))``, a point ``x in [0,1]^d`` is scaled to
``x * N_l``; the ``2**d`` corners of its grid cell index a table of ``T`` feature
vectors (``F`` features each) and the corner features are d-linearly interpolated.
Levels whose ``(N_l + 1)**d`` vertices fit in ``T`` are indexed densely
(``i + j (N_l+1) + k (N_l+1)**2``), finer levels through the spatial hash of Eq. (4)::

    h(c) = (c_0 * 1  xor  c_1 * 2654435761  xor  c_2 * 805459861)  mod T

(uint32 arithmetic; ``T`` is a power of two). The output concatenates the levels:
``(N, L * F)``, level-major (``out[:, l*F + f]``).

All parameters live in one flat ``nn.Parameter`` of ``L * T * F`` floats
(level ``l``, entry ``e``, feature ``f`` at ``(l * T + e) * F + f``), initialised
U(-1e-4, 1e-4) as in the paper.

Note:
    Inputs outside ``[0, 1]`` are clamped onto the unit cube (the gradient w.r.t. x
    is zero there). The Taichi backward returns the exact gradient w.r.t. the table
    (accumulated into a fresh zeroed buffer) and, when ``x.requires_grad`` at forward
    time, the exact gradient w.r.t. ``x`` of the d-linear interpolant (otherwise None).
    That gradient is piecewise polynomial and jumps across cell faces, so eikonal-type
    losses may prefer finite differences. The torch reference computes the same by autograd.

Performance:
    Forward: one thread per (level, point), level-major so a level's table slice stays
    hot while points stream past; the kernel writes a level-major ``(L, N, F)`` buffer
    (each level one contiguous stream, not a 128-byte stride per point) that is
    transposed to ``(N, L * F)`` afterwards. Backward on CPU: levels run in parallel and
    points serially within a level; levels own disjoint table slices, so the adjoints
    are plain adds instead of CAS loops (Taichi has no native float atomic add on x86),
    and each level zeroes its own slice of an uninitialised gradient right before its
    scatter, so the slice is still in cache. On GPUs one thread per (level, point) with
    atomic adds into a zeroed gradient. Large CPU buffers are huge-page backed
    (:mod:`taichifield.memory`): a fresh 64 MB gradient would otherwise cost ~16k page
    faults. At log2 T = 19 the table is 64 MB and the fine levels' lookups miss the
    caches: the op is bound by memory latency, not arithmetic.
"""

# no `from __future__ import annotations`: Taichi reads kernel annotations at runtime

from typing import Any, Literal, Sequence

import taichi as ti
import torch
from torch import nn

from .. import memory, runtime
from ..bridge import TaichiOp
from .hashgrid_torch import PRIMES, hashgrid_reference, level_meta, level_resolutions

__all__ = ["HashGridEncoding", "PRIMES", "level_resolutions", "level_meta", "hashgrid_encode", "hashgrid_reference"]


# ----------------------------------------------------------------------------- Taichi kernels


@ti.func
def _cell(x: ti.template(), i: ti.i32, res: ti.i32, dense: ti.i32, D: ti.template()):
    """Point ``i`` at a level of resolution ``res``: its fractional position in its cell
    and, per axis k, the index terms of the cell's lower and upper vertex, ``c_k * m_k``
    with m = (1, N_l + 1, (N_l + 1)**2) (dense) or the hash primes (1, 2654435761,
    805459861). Computing the 2 * D terms once serves all 2**D corners."""
    scale = float(res)
    r1 = ti.cast(res + 1, ti.u32)
    mult = ti.Vector([ti.u32(1), ti.u32(2654435761), ti.u32(805459861)])
    if dense != 0:
        mult = ti.Vector([ti.u32(1), r1, r1 * r1])
    lo = ti.Vector([ti.u32(0), ti.u32(0), ti.u32(0)])
    hi = ti.Vector([ti.u32(0), ti.u32(0), ti.u32(0)])
    frac = ti.Vector([0.0, 0.0, 0.0])
    for k in ti.static(range(D)):
        p = ti.min(ti.max(x[i, k], 0.0), 1.0) * scale
        c = ti.min(ti.cast(ti.floor(p), ti.i32), res - 1)
        frac[k] = p - c
        lo[k] = ti.cast(c, ti.u32) * mult[k]
        hi[k] = ti.cast(c + 1, ti.u32) * mult[k]
    return lo, hi, frac


@ti.func
def _corner_index(lo: ti.template(), hi: ti.template(), dense: ti.i32, mask: ti.u32, corner: ti.template(),
                  D: ti.template()) -> ti.i32:
    """Table row (within the level) of corner ``corner`` (bit k set: the upper vertex along
    axis k): the sum (dense, row-major) or xor (Eq. 4 hash, then mod T) of the axis terms."""
    h = hi[0] if ti.static(corner & 1) else lo[0]
    for k in ti.static(range(1, D)):
        t = hi[k] if ti.static(corner & (1 << k)) else lo[k]
        h = h + t if dense != 0 else h ^ t
    return ti.cast(h & mask, ti.i32)


@ti.func
def _corner_weight(frac: ti.template(), corner: ti.template(), D: ti.template()) -> float:
    """d-linear weight of cell corner ``corner`` (bit k set: the upper neighbour along axis k)."""
    w = 1.0
    for k in ti.static(range(D)):
        if ti.static(corner & (1 << k)):
            w *= frac[k]
        else:
            w *= 1.0 - frac[k]
    return w


@ti.kernel
def _hashgrid_fwd(
    x: ti.types.ndarray(ndim=2),
    table: ti.types.ndarray(ndim=1),
    meta: ti.types.ndarray(ndim=2),
    log2_t: ti.i32,
    need_x: ti.i32,
    D: ti.template(),
    F: ti.template(),
    out: ti.types.ndarray(ndim=3),
):
    n_points = x.shape[0]
    n_levels = meta.shape[0]
    T = 1 << log2_t
    mask = ti.cast(T - 1, ti.u32)
    # level-major: one level's (small, dense) table stays in cache while points stream past
    for l, i in ti.ndrange(n_levels, n_points):
        dense = meta[l, 1]
        base = l * T
        lo, hi, frac = _cell(x, i, meta[l, 0], dense, D)
        acc = ti.Vector([0.0] * F)
        for corner in ti.static(range(1 << D)):
            w = _corner_weight(frac, corner, D)
            e = (base + _corner_index(lo, hi, dense, mask, corner, D)) * F
            for f in ti.static(range(F)):
                acc[f] += w * table[e + f]
        for f in ti.static(range(F)):
            out[l, i, f] = acc[f]


@ti.func
def _bwd_point(x: ti.template(), table: ti.template(), meta: ti.template(), grad_out: ti.template(),
               grad_table: ti.template(), grad_x: ti.template(), l: ti.i32, i: ti.i32, T: ti.i32, mask: ti.u32,
               need_x: ti.template(), D: ti.template(), F: ti.template(), atomic: ti.template()):
    """Backward of point i at level l: table adjoints (atomic or plain adds) and, if need_x, x adjoints."""
    dense = meta[l, 1]
    base = l * T
    lo, hi, frac = _cell(x, i, meta[l, 0], dense, D)
    g = ti.Vector([0.0] * F)
    for f in ti.static(range(F)):
        g[f] = grad_out[l, i, f]
    gpos = ti.Vector([0.0, 0.0, 0.0])
    for corner in ti.static(range(1 << D)):
        w = _corner_weight(frac, corner, D)
        e = (base + _corner_index(lo, hi, dense, mask, corner, D)) * F
        for f in ti.static(range(F)):
            if ti.static(atomic):
                ti.atomic_add(grad_table[e + f], w * g[f])
            else:
                grad_table[e + f] = grad_table[e + f] + w * g[f]  # plain load/store: this thread owns level l
        if ti.static(need_x):
            gv = 0.0
            for f in ti.static(range(F)):
                gv += g[f] * table[e + f]
            for k in ti.static(range(D)):
                dw = 1.0  # d w / d frac_k: product of the other factors, signed
                for j in ti.static(range(D)):
                    if ti.static(j != k):
                        if ti.static(corner & (1 << j)):
                            dw *= frac[j]
                        else:
                            dw *= 1.0 - frac[j]
                if ti.static(corner & (1 << k)):
                    gpos[k] += gv * dw
                else:
                    gpos[k] -= gv * dw
    if ti.static(need_x):
        scale = float(meta[l, 0])
        for k in ti.static(range(D)):
            xk = x[i, k]
            if 0.0 <= xk and xk <= 1.0:  # clamped coordinates have no gradient
                ti.atomic_add(grad_x[i, k], gpos[k] * scale)


@ti.kernel
def _hashgrid_bwd(
    x: ti.types.ndarray(ndim=2),
    table: ti.types.ndarray(ndim=1),
    meta: ti.types.ndarray(ndim=2),
    log2_t: ti.i32,
    grad_out: ti.types.ndarray(ndim=3),
    need_x: ti.template(),
    D: ti.template(),
    F: ti.template(),
    grad_table: ti.types.ndarray(ndim=1),
    grad_x: ti.types.ndarray(ndim=2),
):
    """GPU strategy: one thread per (level, point), atomic adds into the table gradient."""
    T = 1 << log2_t
    mask = ti.cast(T - 1, ti.u32)
    for l, i in ti.ndrange(meta.shape[0], x.shape[0]):
        _bwd_point(x, table, meta, grad_out, grad_table, grad_x, l, i, T, mask, need_x, D, F, True)


@ti.kernel
def _hashgrid_bwd_by_level(
    x: ti.types.ndarray(ndim=2),
    table: ti.types.ndarray(ndim=1),
    meta: ti.types.ndarray(ndim=2),
    log2_t: ti.i32,
    grad_out: ti.types.ndarray(ndim=3),
    need_x: ti.template(),
    D: ti.template(),
    F: ti.template(),
    grad_table: ti.types.ndarray(ndim=1),
    grad_x: ti.types.ndarray(ndim=2),
):
    """CPU strategy: levels in parallel, points serial within a level; levels own disjoint
    table slices, so the table gradient needs no atomics (L >= cores keeps every core busy).
    ``grad_table`` may be uninitialised: each level zeroes its own slice first, which also
    leaves that 4 MB slice hot in the cache for the scatter that follows."""
    T = 1 << log2_t
    mask = ti.cast(T - 1, ti.u32)
    ti.loop_config(block_dim=1)
    for l in range(meta.shape[0]):
        for e in range(l * T * F, (l + 1) * T * F):
            grad_table[e] = 0.0
        for i in range(x.shape[0]):
            _bwd_point(x, table, meta, grad_out, grad_table, grad_x, l, i, T, mask, need_x, D, F, False)


def _fwd_outputs(x: torch.Tensor, table: torch.Tensor, meta: torch.Tensor, log2_t: int, need_x: int, D: int, F: int) -> list[torch.Tensor]:
    # level-major (L, N, F): each level's outputs are one contiguous stream, not a 128-byte
    # stride per point; hashgrid_encode transposes to (N, L * F) (a 2 ms copy at N = 65k)
    return [memory.empty(meta.shape[0], x.shape[0], F, dtype=table.dtype, device=table.device)]


BACKWARD_STRATEGY: str | None = None
"""Force ``"atomic"`` or ``"by_level"``; None picks by_level on CPU, atomic on GPUs."""


def _backward_strategy() -> str:
    if BACKWARD_STRATEGY is not None:
        return BACKWARD_STRATEGY
    return "by_level" if runtime.current_arch() == "cpu" else "atomic"


def _backward(saved: Sequence[Any], grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Hand-written backward: fresh zeroed table grad (and x grad when asked for at forward)."""
    x, table, meta, log2_t, need_x, D, F = saved
    (grad_out,) = grads
    if grad_out is None:
        return [None] * 7
    grad_x = torch.zeros_like(x) if need_x else torch.zeros(1, 1, dtype=x.dtype, device=x.device)
    if _backward_strategy() == "by_level":
        kernel = _hashgrid_bwd_by_level
        grad_table = memory.empty(*table.shape, dtype=table.dtype, device=table.device)  # zeroed per level in the kernel
    else:
        kernel = _hashgrid_bwd
        grad_table = memory.zeros_like(table)  # huge pages when on the CPU (vulkan, forced strategy)
    kernel(x, table, meta, log2_t, grad_out.to(table.dtype).contiguous(), bool(need_x), D, F, grad_table, grad_x)
    return [grad_x if need_x else None, grad_table, None, None, None, None, None]


_OP = TaichiOp(_hashgrid_fwd, outputs=_fwd_outputs, backward=_backward, name="hashgrid")


def hashgrid_encode(x: torch.Tensor, table: torch.Tensor, meta: torch.Tensor, log2_t: int, n_features: int) -> torch.Tensor:
    """Functional Taichi hash grid: same arguments and result as :func:`hashgrid_reference`.

    Differentiable w.r.t. ``table`` always and w.r.t. ``x`` when ``x.requires_grad``.
    The kernels run on the tensors' device (which must be the one the running arch takes,
    :func:`taichifield.runtime.check_device`); the result is on that device.
    """
    runtime.ensure_init()
    need_x = int(x.requires_grad and torch.is_grad_enabled())
    by_level = _OP(x, table, meta, log2_t, need_x, x.shape[1], n_features)  # (L, N, F)
    return by_level.permute(1, 0, 2).reshape(x.shape[0], meta.shape[0] * n_features)


# ----------------------------------------------------------------------------- module


class HashGridEncoding(nn.Module):
    """Instant-NGP multiresolution hash encoding: (N, d) in [0,1]^d -> (N, L * F).

    Args:
        n_input_dims: d, 2 or 3.
        n_levels: L.
        n_features: F, features per level.
        log2_table_size: log2 of T, the entries per level.
        base_resolution: N_min.
        max_resolution: N_max.
        implementation: ``"taichi"`` (Taichi forward and hand-written backward) or
            ``"torch"`` (the pure-torch reference, same math).

    Attributes:
        table: the flat ``(L * T * F,)`` parameter.
        output_dim: ``L * F``.
        resolutions: the per-level ``N_l``.

    Note:
        ``x`` outside ``[0,1]^d`` is clamped. ``x`` and the table must be on one device,
        the one the running arch takes (CPU for cpu/vulkan, CUDA for cuda); move the module
        with ``.to(device)``. The output is on that device.

    Example:
        >>> enc = HashGridEncoding(n_input_dims=3)
        >>> feats = enc(torch.rand(1024, 3))   # (1024, 32)
    """

    def __init__(
        self,
        n_input_dims: int = 3,
        n_levels: int = 16,
        n_features: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        implementation: Literal["taichi", "torch"] = "taichi",
    ) -> None:
        super().__init__()
        if n_input_dims not in (2, 3):
            raise ValueError(f"HashGridEncoding: n_input_dims must be 2 or 3, not {n_input_dims}")
        if implementation not in ("taichi", "torch"):
            raise ValueError(f"HashGridEncoding: implementation must be 'taichi' or 'torch', not {implementation!r}")
        if not 1 <= log2_table_size <= 30 or n_levels < 1 or n_features < 1 or base_resolution < 1:
            raise ValueError("HashGridEncoding: need n_levels, n_features, base_resolution >= 1 and 1 <= log2_table_size <= 30")
        if max_resolution < base_resolution:
            raise ValueError("HashGridEncoding: max_resolution must be >= base_resolution")
        self.n_input_dims = n_input_dims
        self.n_levels = n_levels
        self.n_features = n_features
        self.log2_table_size = log2_table_size
        self.base_resolution = base_resolution
        self.max_resolution = max_resolution
        self.implementation = implementation
        self.output_dim = n_levels * n_features
        T = 1 << log2_table_size
        self.resolutions = level_resolutions(n_levels, base_resolution, max_resolution)
        self.register_buffer("meta", level_meta(self.resolutions, n_input_dims, log2_table_size), persistent=False)
        self.table = nn.Parameter(memory.empty(n_levels * T * n_features).uniform_(-1e-4, 1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x`` (N, d) -> (N, L * F), in the table's dtype."""
        if x.dim() != 2 or x.shape[1] != self.n_input_dims:
            raise ValueError(f"HashGridEncoding: expected x of shape (N, {self.n_input_dims}), got {tuple(x.shape)}")
        x = x.to(self.table.dtype)
        if self.implementation == "torch":
            return hashgrid_reference(x, self.table, self.meta, self.log2_table_size, self.n_features)
        if x.shape[0] == 0:
            return x.new_zeros(0, self.output_dim) + 0.0 * self.table[:1].sum()
        runtime.check_device(x, self.table, what="HashGridEncoding")
        return hashgrid_encode(x, self.table, self.meta, self.log2_table_size, self.n_features)

    def extra_repr(self) -> str:
        return (
            f"n_input_dims={self.n_input_dims}, n_levels={self.n_levels}, n_features={self.n_features}, "
            f"log2_table_size={self.log2_table_size}, resolutions={self.resolutions[0]}..{self.resolutions[-1]}, "
            f"implementation={self.implementation!r}"
        )
