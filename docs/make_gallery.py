"""Make the README gallery from the project's own outputs (run: python docs/make_gallery.py).

Writes docs/gallery/*.png:
  lego_views.png     three test views of the shipped procedural scene, sphere traced in Taichi
  encodings.png      the encoding comparison: target | none | frequency | fourier | hashgrid
  gyroid_mc.png      Taichi marching cubes of a gyroid in a ball (Open3D off-screen screenshot)
  bunny_points.png   the Stanford bunny as oriented points, coloured by normal (needs ../shared/data)

Everything is regenerated from code; nothing here is drawn by hand.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "gallery"
SHARED = HERE.parent.parent / "shared" / "data"


def lego_views(res: int) -> None:
    from taichifield.scenes.lego import camera_rig
    from taichifield.scenes.prepare import render_lego_view

    poses = camera_rig("test", 200)
    tiles = []
    for i in (0, 50, 120):
        rgba = render_lego_view(poses[i], res, 0.6911112070083618, supersample=2)
        rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])  # on white
        tiles.append((rgb.clamp(0, 1).numpy() * 255).astype(np.uint8))
    iio.imwrite(OUT / "lego_views.png", np.concatenate(tiles, axis=1))


def _test_image(n: int = 96) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n] / n
    img = np.stack([0.5 + 0.5 * np.sin(6 * x + 2 * y), 0.5 + 0.4 * np.cos(5 * y), 0.4 + 0.3 * x], -1)
    img += 0.25 * (np.sin(40 * x) * np.sin(37 * y) > 0.3)[..., None]  # sharp high-frequency detail
    img[(x - 0.65) ** 2 + (y - 0.35) ** 2 < 0.03] = (0.9, 0.2, 0.1)  # a hard-edged disc
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def encodings(steps: int) -> None:
    from taichifield.fields.image import ImageFieldConfig
    from taichifield.train.image import ImageTrainConfig, train_image

    img = _test_image()
    tiles = [img]
    with tempfile.TemporaryDirectory() as tmp:
        iio.imwrite(Path(tmp) / "photo.png", img)
        for enc in ("none", "frequency", "fourier", "hashgrid"):
            cfg = ImageTrainConfig(photo=str(Path(tmp) / "photo.png"), out=str(Path(tmp) / enc), steps=steps,
                                   field=ImageFieldConfig(encoding=enc))
            result = train_image(cfg)
            tiles.append(np.asarray(iio.imread(result.reconstruction))[..., :3])
            print(f"encodings: {enc:9s} {result.psnr:.2f} dB")
    iio.imwrite(OUT / "encodings.png", np.concatenate(tiles, axis=1))


def gyroid_mc() -> None:
    import taichifield as tf
    from taichifield.geometry.mesh_io import save_mesh
    from taichifield.viewer import view

    g = np.linspace(-1, 1, 128, dtype=np.float32)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    s = 3 * math.pi
    field = np.sin(s * x) * np.cos(s * y) + np.sin(s * y) * np.cos(s * z) + np.sin(s * z) * np.cos(s * x)
    field = np.maximum(field, np.sqrt(x**2 + y**2 + z**2) - 0.9)  # gyroid clipped to a ball
    v, f = tf.marching_cubes(field, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        save_mesh(Path(tmp) / "gyroid.ply", v, f)
        view([Path(tmp) / "gyroid.ply"], screenshot=OUT / "gyroid_mc.png", width=480, height=360)
    print(f"gyroid: {len(v)} vertices, {len(f)} faces")


def bunny_points() -> None:
    from taichifield.data.points import load_oriented_points
    from taichifield.viewer import view

    src = SHARED / "meshes" / "bunny.off"
    if not src.exists():
        print(f"bunny: {src} not found, skipped")
        return
    pts = load_oriented_points(src, n_samples=30_000)
    with tempfile.TemporaryDirectory() as tmp:
        np.savetxt(Path(tmp) / "bunny.xyz", np.concatenate([pts.points, pts.normals], 1))
        view([Path(tmp) / "bunny.xyz"], screenshot=OUT / "bunny_points.png", width=480, height=360)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, default=200, help="lego view resolution")
    ap.add_argument("--steps", type=int, default=300, help="image-fitting steps per encoding")
    args = ap.parse_args()
    import taichifield as tf

    tf.init("auto")
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    lego_views(args.res)
    encodings(args.steps)
    gyroid_mc()
    bunny_points()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
