"""Benchmark: forward+backward samples/s of the Taichi volume renderer vs the torch reference.

A realistic packed batch (default 4096 rays, 64-256 samples each, densities such that a
fraction of the rays terminate early), timed in the same run for both implementations.
Goal: the Taichi renderer >= 5x the reference.

    python bench/volume_rendering.py [--rays 4096] [--min-samples 64] [--max-samples 256]
                                     [--repeats 10] [--arch cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from taichifield import runtime
from taichifield.render.volrend import render_weights, volume_render, volume_render_reference


def make_batch(n_rays: int, lo: int, hi: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(lo, hi + 1, (n_rays,), generator=g)
    S = int(counts.sum())
    ray_indices = torch.repeat_interleave(torch.arange(n_rays), counts).to(torch.int32)
    first = torch.cumsum(counts, 0) - counts
    k = torch.arange(S) - first.repeat_interleave(counts)
    step = 4.0 / counts.repeat_interleave(counts).float()
    t_starts = 2.0 + k * step
    t_ends = t_starts + step
    # a "surface" somewhere along each ray; about a third of the rays are dense enough to
    # reach T < 1e-4 (early termination), the rest stay partly transparent
    surface = 2.0 + 4.0 * torch.rand(n_rays, generator=g)
    peak = torch.where(torch.rand(n_rays, generator=g) < 0.35, 200.0, 5.0)
    mid = 0.5 * (t_starts + t_ends)
    sig = peak.repeat_interleave(counts) * torch.exp(-((mid - surface.repeat_interleave(counts)) / 0.1) ** 2)
    sig = sig + 0.05 * torch.rand(S, generator=g)
    rgbs = torch.rand(S, 3, generator=g)
    to = lambda x: x.to(device).contiguous()
    return to(sig), to(rgbs), to(t_starts), to(t_ends), to(ray_indices)


def time_fn(fn, batch, n_rays: int, repeats: int) -> float:
    sig, rgbs, t0, t1, ri = batch
    bg = torch.ones(3, device=sig.device)
    times = []
    for i in range(repeats + 1):  # the first run compiles / warms caches
        s = sig.clone().requires_grad_(True)
        c = rgbs.clone().requires_grad_(True)
        if sig.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        rgb, depth, opacity = fn(s, c, t0, t1, ri, n_rays, background=bg)
        (rgb.sum() + 0.1 * depth.sum() + opacity.sum()).backward()
        if sig.is_cuda:
            torch.cuda.synchronize()
        if i > 0:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rays", type=int, default=4096)
    ap.add_argument("--min-samples", type=int, default=64)
    ap.add_argument("--max-samples", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--arch", default="cpu")
    args = ap.parse_args(argv)
    arch = runtime.init(args.arch)
    device = runtime.device()
    batch = make_batch(args.rays, args.min_samples, args.max_samples, device)
    S = batch[0].numel()
    w = render_weights(*[batch[i] for i in (0, 2, 3, 4)], args.rays)
    live = int((w > 0).sum())
    # sanity: both implementations agree on this batch
    a = volume_render(*batch, args.rays)
    b = volume_render_reference(*batch, args.rays)
    err = max(float((x - y).abs().max()) for x, y in zip(a, b))
    t_taichi = time_fn(volume_render, batch, args.rays, args.repeats)
    t_torch = time_fn(volume_render_reference, batch, args.rays, args.repeats)
    print(f"arch={arch} threads={torch.get_num_threads()} rays={args.rays} samples={S} "
          f"(after early termination: {live}, {100 * (1 - live / S):.0f}% skipped) max|diff|={err:.2e}")
    print(f"taichi  fwd+bwd: {t_taichi * 1e3:8.2f} ms  {S / t_taichi / 1e6:8.2f} M samples/s")
    print(f"torch   fwd+bwd: {t_torch * 1e3:8.2f} ms  {S / t_torch / 1e6:8.2f} M samples/s")
    print(f"speed-up taichi/torch: {t_torch / t_taichi:.1f}x (goal >= 5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
