"""Benchmark: rendering whole views of a trained NeRF, the inference path against the training one.

For each of the first ``--views`` test views of the checkpoint's scene, in the same run:

* ``marched``: the training path used for inference before rounds existed:
  :func:`~taichifield.pipelines.nerf_render.render_nerf_rays` in chunks of 8192 rays (every
  occupied sample marched, a no-grad density pass culls the hidden ones, the full field on
  the rest);
* ``rounds``: what ``render nerf`` / ``eval nerf`` do now
  (:func:`~taichifield.pipelines.nerf_render.render_view`: marching and compositing in rounds,
  colour only on visible samples).

It prints seconds per view for both, their ratio, PSNR of both against the ground truth
and the largest pixel difference between the two images.

    python bench/nerf_render.py RUN_OR_CKPT [--scene DIR] [--views 4] [--arch cpu]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt", type=Path, help="a NeRF run folder or ckpt.pt")
    ap.add_argument("--scene", default=None, help="scene folder (default: the one the run was trained on)")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--downscale", type=int, default=None, help="image downscale (default: the training one)")
    ap.add_argument("--arch", default="cpu")
    args = ap.parse_args()

    import torch

    import taichifield as tf
    from taichifield import cameras
    from taichifield.data import load_scene
    from taichifield.metrics.image import psnr_images
    from taichifield.pipelines.nerf import NerfModel
    from taichifield.pipelines.nerf_render import render_nerf_rays, render_view

    tf.init(args.arch)
    model = NerfModel.load(args.ckpt)
    scene = args.scene or model.meta.get("scene")
    if scene is None:
        print("the checkpoint names no scene: pass --scene", file=sys.stderr)
        return 2
    k = args.downscale if args.downscale is not None else int(model.meta.get("downscale", 1))
    views = load_scene(scene, "test", k)
    bg = torch.tensor(model.background, dtype=torch.float32, device=model.device)
    print(f"{scene}: {views.width}x{views.height}, {min(args.views, len(views))} test views, "
          f"step {model.step_size:.4g}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}")

    def marched(i: int) -> torch.Tensor:
        o, d = cameras.image_rays(views.c2w[i].to(model.device), views.width, views.height, *views.camera(i))
        out = []
        with torch.no_grad():
            for j in range(0, o.shape[0], 8192):
                r = render_nerf_rays(model.field, model.grid, o[j:j + 8192], d[j:j + 8192], near=views.near,
                                     far=views.far, step_size=model.step_size, background=bg)
                out.append(r["rgb"])
        return torch.cat(out).reshape(views.height, views.width, 3).clamp(0, 1).cpu()

    def rounds(i: int) -> torch.Tensor:
        fx, fy, cx, cy, dist = views.camera(i)
        return render_view(model.field, model.grid, views.c2w[i], views.width, views.height, fx, fy, cx, cy,
                           near=views.near, far=views.far, step_size=model.step_size,
                           background=model.background, distortion=dist)

    rounds(0)  # compile every kernel before timing
    t = {"marched": 0.0, "rounds": 0.0}
    p = {"marched": 0.0, "rounds": 0.0}
    diff = 0.0
    n = min(args.views, len(views))
    for i in range(n):
        gt = views.rgb(model.background, index=i)
        imgs = {}
        for name, fn in (("marched", marched), ("rounds", rounds)):
            t0 = time.perf_counter()
            imgs[name] = fn(i)
            t[name] += time.perf_counter() - t0
            p[name] += psnr_images(imgs[name], gt) / n
        diff = max(diff, float((imgs["marched"] - imgs["rounds"]).abs().max()))
    for name in t:
        print(f"{name:<8} {t[name] / n:7.2f} s/view  {n / t[name]:6.3f} views/s  PSNR {p[name]:.2f} dB")
    print(f"rounds / marched speed: {t['marched'] / t['rounds']:.2f}x; max pixel difference {diff:.4f}; "
          f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
