"""Instant-NGP's occupancy grid and the ray marcher that skips empty space, in Taichi.

The grid (Müller et al., 2022, Sec. 5.1 and App. E.2) covers the scene box with
``resolution^3`` cells per level; level ``l`` (a *cascade*, for unbounded scenes) covers the
box scaled by ``2^l`` about its centre. Each cell keeps a running density estimate; a cell is
*occupied* when its optical thickness over one marching step, ``sigma * step``, exceeds
``min(density_threshold, mean over the grid)``. Occupancy is stored as a bit field (32 cells per
int32 word), which is all the marcher reads.

Updates (every ``update_every`` training steps): during the first ``warmup_steps`` every cell
is evaluated; afterwards a random quarter of the cells plus as many cells drawn from the
occupied ones. Each chosen cell is evaluated at a jittered point inside it and its estimate
becomes ``max(old * ema_decay, new)``.

Marching: rays are clipped to the outermost box and ``[near, far]``; samples are taken at a
fixed step (default ``sqrt(3)/1024`` of the box size, i.e. the box diagonal / 1024); whenever
the cell under a sample's midpoint is empty the marcher jumps (DDA style) to the first step
past that cell. Samples are packed densely in two passes (count per ray, prefix sum, write).

Example::

    grid = OccupancyGrid(views.aabb)
    for step in range(n_steps):
        grid.update(step, lambda x: field.density(x))
        t0, t1, ri = grid.sample(rays_o, rays_d, near=2.0, far=6.0)
"""

# no `from __future__ import annotations`: Taichi reads kernel annotations at runtime

from typing import Any, Callable, Optional, Union

import taichi as ti
import torch
from torch import nn

from .. import runtime
from ..errors import CheckpointError

__all__ = ["OccupancyGrid"]

Bound = Union[float, torch.Tensor]


@ti.func
def _level_of(px: ti.f32, py: ti.f32, pz: ti.f32, box: ti.types.ndarray()) -> ti.i32:
    """Finest cascade whose box holds the point (may be >= n_levels when outside all)."""
    m = ti.max(ti.abs(px - box[0]) / box[3], ti.abs(py - box[1]) / box[4], ti.abs(pz - box[2]) / box[5])
    lvl = 0
    if m >= 1.0:
        lvl = ti.cast(ti.floor(ti.log(m) / ti.log(2.0)), ti.i32) + 1
        # guard log rounding: make sure 2^lvl >= m
        if ti.pow(2.0, ti.cast(lvl, ti.f32)) < m:
            lvl += 1
    return lvl


@ti.kernel
def _cell_points(indices: ti.types.ndarray(), jitter: ti.types.ndarray(), box: ti.types.ndarray(),
                 res: ti.i32, out: ti.types.ndarray()):
    """World position of a jittered point in each cell (flat index: level, x, y, z)."""
    for i in range(indices.shape[0]):
        c = indices[i]
        n3 = res * res * res
        lvl = c // n3
        rem = c - lvl * n3
        ix = rem // (res * res)
        iy = (rem // res) % res
        iz = rem % res
        scale = ti.pow(2.0, ti.cast(lvl, ti.f32))
        out[i, 0] = box[0] + box[3] * scale * (2.0 * (ti.cast(ix, ti.f32) + jitter[i, 0]) / res - 1.0)
        out[i, 1] = box[1] + box[4] * scale * (2.0 * (ti.cast(iy, ti.f32) + jitter[i, 1]) / res - 1.0)
        out[i, 2] = box[2] + box[5] * scale * (2.0 * (ti.cast(iz, ti.f32) + jitter[i, 2]) / res - 1.0)


@ti.kernel
def _splat_max(indices: ti.types.ndarray(), values: ti.types.ndarray(), tmp: ti.types.ndarray()):
    """tmp = -1 everywhere, then the max new estimate of each chosen cell (duplicates allowed);
    NaN and negative densities count as 0, huge ones are capped at 1e6."""
    for c in range(tmp.shape[0]):  # filled here: Vulkan does not upload write-only ndarrays
        tmp[c] = -1.0
    for i in range(indices.shape[0]):
        v = values[i]
        v = ti.min(v, 1e6) if v >= 0.0 else 0.0  # NaN fails the comparison
        ti.atomic_max(tmp[indices[i]], v)


@ti.kernel
def _ema(density: ti.types.ndarray(), tmp: ti.types.ndarray(), decay: ti.f32):
    """density = max(density * decay, tmp) where tmp >= 0 (no return value: a kernel result
    would be a host sync)."""
    for c in range(density.shape[0]):
        if tmp[c] >= 0.0:
            density[c] = ti.max(density[c] * decay, tmp[c])


@ti.kernel
def _pack(density: ti.types.ndarray(), thresh: ti.types.ndarray(), bits: ti.types.ndarray()):
    """bits = density > thresh[0], 32 cells per int32 word (the threshold stays on the device)."""
    for w in range(bits.shape[0]):
        word = 0
        for b in range(32):
            c = w * 32 + b
            if c < density.shape[0]:
                if density[c] > thresh[0]:
                    word |= ti.cast(1, ti.i32) << b
        bits[w] = word


@ti.kernel
def _march(rays_o: ti.types.ndarray(), rays_d: ti.types.ndarray(), near: ti.types.ndarray(),
           far: ti.types.ndarray(), offset: ti.types.ndarray(), bits: ti.types.ndarray(),
           box: ti.types.ndarray(), res: ti.i32, n_levels: ti.i32, dt: ti.f32, cone: ti.f32,
           max_dt: ti.f32, max_samples: ti.i32, write: ti.i32, counts: ti.types.ndarray(), starts: ti.types.ndarray(),
           t_starts: ti.types.ndarray(), t_ends: ti.types.ndarray(), ray_indices: ti.types.ndarray()):
    """Count (write=0) or write (write=1) the occupied samples of every ray.

    Step: ``dt`` (cone == 0; positions from an integer step count, no drift) or Instant-NGP's
    cone marching ``clamp(t * cone, dt, max_dt)`` (cone > 0).
    """
    for r in range(rays_o.shape[0]):
        o = ti.Vector([rays_o[r, 0], rays_o[r, 1], rays_o[r, 2]])
        d = ti.Vector([rays_d[r, 0], rays_d[r, 1], rays_d[r, 2]])
        c = ti.Vector([box[0], box[1], box[2]])
        h = ti.Vector([box[3], box[4], box[5]])
        outer = ti.pow(2.0, ti.cast(n_levels - 1, ti.f32))
        inv = ti.Vector([0.0, 0.0, 0.0])
        for k in ti.static(range(3)):
            inv[k] = 1.0 / d[k] if ti.abs(d[k]) > 1e-12 else (1e12 if d[k] >= 0 else -1e12)
        ta = (c - h * outer - o) * inv
        tb = (c + h * outer - o) * inv
        t_enter = ti.max(ti.min(ta[0], tb[0]), ti.min(ta[1], tb[1]), ti.min(ta[2], tb[2]))
        t_exit = ti.min(ti.max(ta[0], tb[0]), ti.max(ta[1], tb[1]), ti.max(ta[2], tb[2]))
        t0 = ti.max(near[r], t_enter)
        t1 = ti.min(far[r], t_exit)
        n = 0
        base = 0
        cap = max_samples
        if write == 1:
            base = starts[r]
            cap = counts[r]
        j = 0.0  # cone == 0: t = t0 + (j + offset) dt, from an integer count to avoid drift
        t = t0 + offset[r] * dt
        dtc = dt
        if cone > 0.0:
            dtc = ti.min(ti.max(t * cone, dt), max_dt)
        while t + 1e-3 * dtc < t1 and n < cap:  # no slivers shorter than 0.1% of a step
            t_e = ti.min(t + dtc, t1)
            mid = 0.5 * (t + t_e)
            p = o + mid * d
            lvl = _level_of(p[0], p[1], p[2], box)
            if lvl >= n_levels:
                break
            scale = ti.pow(2.0, ti.cast(lvl, ti.f32))
            lo = c - h * scale
            size = 2.0 * h * scale / res
            cell = ti.Vector([0, 0, 0])
            for k in ti.static(range(3)):
                cell[k] = ti.min(ti.max(ti.cast(ti.floor((p[k] - lo[k]) / size[k]), ti.i32), 0), res - 1)
            flat = lvl * res * res * res + (cell[0] * res + cell[1]) * res + cell[2]
            occupied = (bits[flat >> 5] >> (flat & 31)) & 1
            target = t + dtc  # where the next sample starts
            if occupied == 1:
                if write == 1:
                    i = base + n
                    t_starts[i] = t
                    t_ends[i] = t_e
                    ray_indices[i] = r
                n += 1
                j += 1.0
            else:
                # distance along the ray from the midpoint to where it leaves this cell
                t_cell = 1e30
                for k in ti.static(range(3)):
                    if ti.abs(d[k]) > 1e-12:
                        edge = lo[k] + size[k] * (ti.cast(cell[k], ti.f32) + (1.0 if d[k] > 0 else 0.0))
                        t_cell = ti.min(t_cell, (edge - p[k]) * inv[k])
                steps = ti.max(ti.ceil(ti.max(t_cell, 0.0) / dt), 1.0)
                j += steps
                target = mid + ti.max(t_cell, 0.0)
            if cone > 0.0:
                # cone marching: whole steps until the next midpoint lies past the target
                t += dtc
                dtc = ti.min(ti.max(t * cone, dt), max_dt)
                while t + 0.5 * dtc < target and t < t1:
                    t += dtc
                    dtc = ti.min(ti.max(t * cone, dt), max_dt)
            else:
                t = t0 + (j + offset[r]) * dt
        if write == 0:
            counts[r] = n


def _box_and_step(aabb: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The kernels' box ``[centre, half extent]`` (6,) and the default marching step
    ``|diagonal| / 1024`` of a (2, 3) level-0 box."""
    return torch.cat([(aabb[0] + aabb[1]) / 2, (aabb[1] - aabb[0]) / 2]), float((aabb[1] - aabb[0]).norm()) / 1024.0


def _per_ray(value: Bound, n: int, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        v = value.to(device=device, dtype=torch.float32).reshape(-1)
        return (v.expand(n) if v.numel() == 1 else v).contiguous()
    return torch.full((n,), float(value), dtype=torch.float32, device=device)


def two_pass_march(kernel: Any, args: tuple[Any, ...], n: int, dev: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Packed samples from a marching kernel run twice over ``n`` rays: pass 0 counts each
    ray's samples, pass 1 writes them at the offsets of the counts' prefix sum (one host sync
    for the total). ``kernel(*args, pass, counts, starts, t_starts, t_ends, ray_indices)``."""
    counts = torch.zeros(n, dtype=torch.int32, device=dev)
    dummy_i = torch.zeros(1, dtype=torch.int32, device=dev)
    dummy_f = torch.zeros(1, dtype=torch.float32, device=dev)
    kernel(*args, 0, counts, dummy_i, dummy_f, dummy_f, dummy_i)
    ends = torch.cumsum(counts, 0, dtype=torch.int64)
    total = int(ends[-1])
    starts = (ends - counts).to(torch.int32).contiguous()
    t_starts = torch.empty(max(total, 1), dtype=torch.float32, device=dev)
    t_ends = torch.empty(max(total, 1), dtype=torch.float32, device=dev)
    ray_indices = torch.empty(max(total, 1), dtype=torch.int32, device=dev)
    if total > 0:
        kernel(*args, 1, counts, starts, t_starts, t_ends, ray_indices)
    return t_starts[:total], t_ends[:total], ray_indices[:total]


class OccupancyGrid(nn.Module):
    """A multi-level occupancy grid over a scene box, updated from a density callable.

    An ``nn.Module`` whose state is buffers (nerfacc's ``OccGridEstimator``): ``.to(device)``
    moves it, ``state_dict()`` saves it. Its kernels run on the buffers' device; rays given to
    :meth:`sample` must be there too (:func:`taichifield.runtime.check_device`), and the
    samples come back on it. Random numbers (cell choice, jitter, perturbation) are drawn on
    that device, from ``generator`` when one is given (it must be a generator of that device).
    Updates and sampling never copy the grid to the host.

    Args:
        aabb: (2, 3) scene box ``[min, max]`` (level 0).
        resolution: cells per axis and level (128 in Instant-NGP).
        n_levels: cascades; level ``l`` covers the box scaled by ``2^l`` (1 for bounded scenes).
        density_threshold: optical thickness ``sigma * step`` above which a cell is occupied
            (capped by the grid's mean, as in Instant-NGP).
        ema_decay: decay of old estimates at each update.
        device: where the buffers are allocated (default :func:`taichifield.runtime.device`).
        contraction: unbounded scenes: the cells cover mip-NeRF 360's contracted cube around
            ``aabb`` instead of the box (one level; :mod:`taichifield.render.raymarch_contracted`).
            Not part of the state dict: the owner (the NeRF's config) says which grid to build.

    Buffers:
        density: (n_levels * resolution^3,) float32 running density estimates (sigma).
        bits: (ceil(n_levels * resolution^3 / 32),) int32 occupancy bit field; all cells are
            occupied until the first update.
        aabb: (2, 3) float32 level-0 box.
        config: (2,) int64 ``[resolution, n_levels]``; params: (2,) float64
            ``[density_threshold, ema_decay]`` (so a checkpoint describes its grid).

    Attributes:
        step_size: default marching step, ``|aabb diagonal| / 1024``.
    """

    def __init__(self, aabb: torch.Tensor, resolution: int = 128, n_levels: int = 1,
                 density_threshold: float = 0.01, ema_decay: float = 0.95,
                 device: Optional[torch.device] = None, contraction: bool = False) -> None:
        super().__init__()
        if resolution < 1 or n_levels < 1:
            raise ValueError("resolution and n_levels must be >= 1")
        if contraction and n_levels != 1:
            raise ValueError("a contracted grid has one level (it covers all of space already)")
        self.contraction = bool(contraction)
        aabb = torch.as_tensor(aabb, dtype=torch.float32).detach().reshape(2, 3)
        if not torch.all(aabb[1] > aabb[0]):
            raise ValueError(f"aabb max must exceed min, got {aabb.tolist()}")
        dev = runtime.device() if device is None else torch.device(device)
        self.resolution, self.n_levels = int(resolution), int(n_levels)
        self.density_threshold, self.ema_decay = float(density_threshold), float(ema_decay)
        self.n_cells = self.n_levels * self.resolution ** 3
        box, self.step_size = _box_and_step(aabb)
        self.register_buffer("density", torch.zeros(self.n_cells, dtype=torch.float32, device=dev))
        self.register_buffer("bits", torch.full(((self.n_cells + 31) // 32,), -1, dtype=torch.int32, device=dev))
        self.register_buffer("aabb", aabb.to(dev))
        self.register_buffer("config", torch.tensor([self.resolution, self.n_levels], dtype=torch.int64, device=dev))
        self.register_buffer("params", torch.tensor([self.density_threshold, self.ema_decay], dtype=torch.float64, device=dev))
        self.register_buffer("_box", box.to(dev), persistent=False)

    @classmethod
    def covering(cls, aabb: torch.Tensor, n_levels: int = 1, **kwargs: float) -> "OccupancyGrid":
        """A grid whose *outermost* cascade is ``aabb`` (level 0 is ``aabb`` shrunk by
        ``2^(n_levels-1)`` about its centre). For an instant-ngp scene with ``aabb_scale`` K,
        ``OccupancyGrid.covering(views.aabb, 1 + log2(K))`` reproduces Instant-NGP's cascades.
        """
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3)
        centre, half = (aabb[0] + aabb[1]) / 2, (aabb[1] - aabb[0]) / 2 / 2.0 ** (n_levels - 1)
        return cls(torch.stack([centre - half, centre + half]), n_levels=n_levels, **kwargs)  # type: ignore[arg-type]

    @property
    def device(self) -> torch.device:
        """The device of the grid's buffers (where its kernels run)."""
        return self.density.device

    # ------------------------------------------------------------------ update
    def threshold_tensor(self) -> torch.Tensor:
        """() float32 tensor on the grid's device: the density above which a cell counts as
        occupied now, ``min(density_threshold, mean thickness) / step`` (no host sync)."""
        mean_thickness = self.density.double().mean() * self.step_size
        return (torch.clamp(mean_thickness, max=self.density_threshold) / self.step_size).float()

    def threshold(self) -> float:
        """:meth:`threshold_tensor` as a Python float (syncs)."""
        return float(self.threshold_tensor())

    @torch.no_grad()
    def update(self, step: int, density_fn: Callable[[torch.Tensor], torch.Tensor],
               update_every: int = 16, warmup_steps: int = 256, chunk: int = 1 << 18,
               generator: Optional[torch.Generator] = None) -> bool:
        """Refresh the grid if ``step`` is a multiple of ``update_every``; True when it did.

        Args:
            step: the training step.
            density_fn: ``(M, 3) world points on the grid's device -> (M,) sigma`` (called
                without grad, in chunks).
            update_every: update period in steps.
            warmup_steps: before this step all cells are evaluated; afterwards a quarter
                chosen uniformly plus a quarter drawn from occupied cells (with replacement;
                from all cells while none is occupied).
            chunk: points per ``density_fn`` call.
            generator: torch generator on the grid's device for the choice of cells and jitter.
        """
        if step % update_every != 0:
            return False
        runtime.ensure_init()
        n, dev = self.n_cells, self.device
        if step < warmup_steps:
            idx = torch.arange(n, dtype=torch.int32, device=dev)
        else:
            uniform = torch.randint(n, (n // 4,), generator=generator, dtype=torch.int32, device=dev)
            # occupied cells drawn without knowing their number on the host: the k-th occupied
            # cell is where the running count of occupied cells first exceeds k
            occupied = torch.cumsum((self.density > self.threshold_tensor()).to(torch.int64), 0)
            k = (torch.rand((n // 4,), generator=generator, dtype=torch.float64, device=dev) * occupied[-1]).long()
            pick = torch.searchsorted(occupied, k, right=True)
            idx = torch.cat([uniform, pick.clamp_(max=n - 1).to(torch.int32)])
        jitter = torch.rand((idx.numel(), 3), generator=generator, device=dev)
        if self.contraction:
            from .raymarch_contracted import contracted_cell_points

            pts = contracted_cell_points(self, idx, jitter)
        else:
            pts = torch.empty((idx.numel(), 3), dtype=torch.float32, device=dev)
            _cell_points(idx, jitter, self._box, self.resolution, pts)
        sig = torch.cat([density_fn(pts[i:i + chunk]).reshape(-1).float() for i in range(0, pts.shape[0], chunk)])
        tmp = torch.empty((n,), dtype=torch.float32, device=dev)
        _splat_max(idx, sig.contiguous(), tmp)
        _ema(self.density, tmp, self.ema_decay)
        _pack(self.density, self.threshold_tensor().reshape(1), self.bits)
        return True

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, rays_o: torch.Tensor, rays_d: torch.Tensor, near: Bound, far: Bound,
               step_size: Optional[float] = None, max_samples_per_ray: int = 1024,
               perturb: bool = False, generator: Optional[torch.Generator] = None,
               cone_angle: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """March rays through occupied cells; packed samples (no padding).

        Args:
            rays_o: (n_rays, 3) origins.
            rays_d: (n_rays, 3) directions (``t`` is in units of ``|rays_d|``; use unit rays
                so the step is a world distance).
            near, far: floats or (n_rays,) tensors; rays are also clipped to the grid's box.
            step_size: marching step; default :attr:`step_size`.
            max_samples_per_ray: cap per ray.
            perturb: shift each ray's samples by a random fraction of a step (training).
            generator: torch generator for ``perturb``.
            cone_angle: 0 for a constant step (bounded scenes); > 0 (Instant-NGP uses 1/256
                for large scenes) grows the step with distance, ``clamp(t * cone_angle, step,
                step * 2^(n_levels-1) * 1024 / resolution)``, so outer cascades cost few samples.
                A contracted grid steps uniformly in contracted space (see
                :mod:`taichifield.render.raymarch_contracted`), and rays are clipped only to
                ``[near, far]``.

        Returns:
            t_starts (S,), t_ends (S,) float32 and ray_indices (S,) int32, sorted by ray then t.
            Rays that miss the box or cross only empty cells get no samples.
        """
        runtime.ensure_init()
        dev = runtime.check_device(rays_o, rays_d, self.density, what="OccupancyGrid.sample")
        n = rays_o.shape[0]
        o = rays_o.detach().to(torch.float32).contiguous()
        d = rays_d.detach().to(torch.float32).contiguous()
        nr, fr = _per_ray(near, n, dev), _per_ray(far, n, dev)
        dt = float(step_size or self.step_size)
        if perturb:
            off = torch.rand(n, generator=generator, device=dev)
        else:
            off = torch.zeros(n, dtype=torch.float32, device=dev)
        if n == 0:
            empty = torch.zeros(0, dtype=torch.float32, device=dev)
            return empty, empty.clone(), torch.zeros(0, dtype=torch.int32, device=dev)
        if self.contraction:
            from .raymarch_contracted import march_contracted

            return march_contracted(self, o, d, nr, fr, off, dt, cone_angle, max_samples_per_ray)
        max_dt = dt * 2.0 ** (self.n_levels - 1) * 1024.0 / self.resolution
        args = (o, d, nr, fr, off, self.bits, self._box, self.resolution, self.n_levels, dt,
                float(cone_angle), max_dt, int(max_samples_per_ray))
        return two_pass_march(_march, args, n, dev)

    # ------------------------------------------------------------- inspection
    def occupied_mask(self) -> torch.Tensor:
        """(n_levels, R, R, R) bool occupancy, unpacked from the bit field."""
        shifts = torch.arange(32, dtype=torch.int32, device=self.bits.device)
        flat = ((self.bits[:, None] >> shifts) & 1).reshape(-1)[: self.n_cells].bool()
        R = self.resolution
        return flat.view(self.n_levels, R, R, R)

    def occupied_at(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) bool: whether the cell holding each world point ``x`` (N, 3) is occupied (points
        outside every cascade are not); the contracted grid looks the points up contracted."""
        if self.contraction:
            from .contraction import contract, to_box_units

            u = (contract(to_box_units(x, self.aabb)) + 2.0) * 0.25  # [0, 1]^3 over the grid
            lvl = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        else:
            c, h = 0.5 * (self.aabb[0] + self.aabb[1]), 0.5 * (self.aabb[1] - self.aabb[0])
            m = ((x - c) / h).abs().amax(-1)
            lvl = torch.where(m > 1, torch.ceil(torch.log2(m.clamp(min=1.0))), torch.zeros_like(m)).long()
            scale = (2.0 ** lvl.to(x.dtype))[:, None]
            u = ((x - c) / (h * scale) + 1.0) * 0.5
        R = self.resolution
        ijk = (u * R).floor().long().clamp(0, R - 1)
        inside = lvl < self.n_levels
        flat = ((lvl.clamp(max=self.n_levels - 1) * R + ijk[:, 0]) * R + ijk[:, 1]) * R + ijk[:, 2]
        return self.occupied_mask().reshape(-1)[flat] & inside

    def occupied_fraction(self) -> float:
        """Fraction of cells (all levels) currently marked occupied."""
        return float(self.occupied_mask().float().mean())

    # ------------------------------------------------------------ checkpoints
    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
        """Refuse a grid of another shape with a one-line :class:`CheckpointError`, then load
        (version-1 checkpoints hold the same five tensors) and re-derive the box and step."""
        try:
            res, levels = (int(v) for v in state_dict[prefix + "config"].tolist())
            density, bits = state_dict[prefix + "density"], state_dict[prefix + "bits"]
        except (KeyError, AttributeError, TypeError, ValueError) as exc:
            raise CheckpointError(f"occupancy grid state is malformed ({exc})") from None
        if (res, levels) != (self.resolution, self.n_levels) or density.numel() != self.n_cells \
                or bits.numel() != self.bits.numel():
            raise CheckpointError(f"occupancy grid state is {levels} level(s) of {res}^3 cells, "
                                  f"this grid has {self.n_levels} of {self.resolution}^3")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        box, self.step_size = _box_and_step(self.aabb.detach())
        self._box.copy_(box)
        self.density_threshold, self.ema_decay = (float(v) for v in self.params.tolist())

    def __repr__(self) -> str:
        return (f"OccupancyGrid(levels={self.n_levels}, resolution={self.resolution}, "
                f"{'contracted, ' if self.contraction else ''}"
                f"occupied={self.occupied_fraction():.3f})")
