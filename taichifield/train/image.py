"""Fit an :class:`~taichifield.fields.image.ImageField` to one image (the encoding comparison).

Every step draws a batch of pixels (all of them when the image is small), predicts
their RGB from pixel-centre coordinates ``((j + 0.5) / W, (i + 0.5) / H)`` and takes an
Adam step on the mean squared error. At the end the whole image is reconstructed and
the run folder receives::

    RUN/ckpt.pt              kind "image": config, weights, optimizer, step, meta (psnr, size)
    RUN/reconstruction.png   the fitted image
    RUN/metrics.json         psnr, steps, seconds, encoding, n_params
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import runtime
from ..atomic import atomic_path
from ..images import write_image
from ..errors import InputError
from ..fields.image import ENCODINGS, ImageField
from .checkpoint import save_checkpoint
from .configs import DEFAULT_LR, ImageTrainConfig
from .curves import RunCurves
from ..metrics.image import psnr
from .loop import NonFiniteGuard, adam, log_interval, run_loop

__all__ = ["ImageTrainConfig", "ImageResult", "ImageTrainer", "load_image", "pixel_coords", "train_image"]

log = logging.getLogger(__name__)

@dataclass
class ImageResult:
    """What a run produced."""

    psnr: float
    steps: int
    seconds: float
    reconstruction: Path
    checkpoint: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image as (H, W, 3) float32 in [0, 1].

    Raises:
        InputError: missing, unreadable or degenerate file (message names the file).
    """
    import imageio.v3 as iio

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such image file")
    try:
        img = np.asarray(iio.imread(p))
    except Exception as exc:
        raise InputError(f"{p}: not a readable image ({str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__})") from None
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[0] < 2 or img.shape[1] < 2 or img.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"{p}: unsupported image shape {tuple(img.shape)} (need H x W x 1-4 channels, H, W >= 2)")
    if np.issubdtype(img.dtype, np.integer):
        data = img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    else:
        data = img.astype(np.float32)
    if data.shape[2] in (2, 4):  # alpha: composite on white
        alpha = data[..., -1:]
        data = data[..., :-1] * alpha + (1.0 - alpha)
    if data.shape[2] == 1:
        data = np.repeat(data, 3, axis=2)
    if not np.isfinite(data).all():
        raise InputError(f"{p}: image contains non-finite values")
    return torch.from_numpy(np.clip(data, 0.0, 1.0).copy())


def pixel_coords(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Pixel-centre coordinates (H * W, 2) in (0, 1)^2, row-major, ``(x, y)`` = (column, row)."""
    ys = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height
    xs = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).reshape(-1, 2)


@torch.no_grad()
def _reconstruct(model: ImageField, coords: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    return torch.cat([model(coords[i : i + chunk]) for i in range(0, coords.shape[0], chunk)])


def train_image(
    config: ImageTrainConfig,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> ImageResult:
    """Fit the image in ``config.photo`` and write the run folder ``config.out``.

    Args:
        config: the run.
        on_step: ``on_step(step, stats)`` after every step (stats: loss, psnr); for progress bars.

    Returns:
        The final full-image PSNR (dB), paths written, and the metrics dict.
    """
    return ImageTrainer(config).run(on_step)


class ImageTrainer:
    """The state of one image fit, named (as :class:`~taichifield.train.nerf.NerfTrainer` and
    :class:`~taichifield.train.sdf.SDFTrainer`): target pixels and their coordinates on the
    device, the field, optimiser, non-finite guard and batch generator."""

    def __init__(self, config: ImageTrainConfig) -> None:
        if config.field.encoding not in ENCODINGS:
            raise InputError(f"unknown encoding {config.field.encoding!r}: choose one of {', '.join(ENCODINGS)}")
        if config.steps < 1:
            raise InputError(f"--steps must be >= 1, not {config.steps}")
        if runtime.ensure_init() not in ("cpu", "cuda"):
            raise InputError(f"training needs arch cpu or cuda, not {runtime.current_arch()} (Vulkan is for inference)")
        self.config = config
        self.device = dev = runtime.device()
        image = load_image(config.photo)
        self.height, self.width = image.shape[:2]
        self.target = image.reshape(-1, 3).to(dev)  # (H*W, 3)
        self.coords = pixel_coords(self.height, self.width, dev)  # (H*W, 2)
        self.field_cfg = dataclasses.replace(config.field, max_resolution=max(self.height, self.width), seed=config.seed)
        torch.manual_seed(config.seed)
        self.model = ImageField(self.field_cfg).to(dev)
        self.lr = config.lr if config.lr is not None else DEFAULT_LR[self.field_cfg.encoding]
        self.optimizer = adam(self.model.parameters(), lr=self.lr, betas=(0.9, 0.99), eps=1e-15)
        self.guard = NonFiniteGuard(self.optimizer)
        self.gen = torch.Generator(device=dev).manual_seed(config.seed)

    def step(self, step: int) -> dict[str, torch.Tensor]:
        n_pixels = self.coords.shape[0]
        if n_pixels <= self.config.batch_size:  # small image: every pixel, every step
            x, y = self.coords, self.target
        else:
            idx = torch.randint(0, n_pixels, (self.config.batch_size,), generator=self.gen, device=self.device)
            x, y = self.coords[idx], self.target[idx]
        loss = torch.mean((self.model(x) - y) ** 2)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.guard.step(loss)
        mse = loss.detach()
        return {"loss": mse, "psnr": psnr(mse)}

    def run(self, on_step: Callable[[int, dict[str, float]], None] | None = None) -> ImageResult:
        config, model, height, width = self.config, self.model, self.height, self.width
        t0 = time.monotonic()
        curves = RunCurves(config.out, config.steps, title=f"image [{self.field_cfg.encoding}]")
        result = run_loop(self.step, start_step=0, total_steps=config.steps, on_step=curves.on_step(on_step), guard=self.guard,
                          log_every=log_interval(self.device))
        seconds = time.monotonic() - t0
        field_cfg, lr, optimizer = self.field_cfg, self.lr, self.optimizer
        recon = _reconstruct(model, self.coords)
        final_psnr = float(psnr(float(torch.mean((recon - self.target) ** 2))))
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        n_params = sum(p.numel() for p in model.parameters())
        metrics = {
            "psnr": final_psnr,
            "steps": result.step,
            "seconds": seconds,
            "encoding": field_cfg.encoding,
            "n_params": n_params,
            "height": height,
            "width": width,
            "lr": lr,
            "skipped_steps": result.skipped_steps,
            "stopped": result.stopped,
            "photo": str(config.photo),
        }
        ckpt = save_checkpoint(
            out / "ckpt.pt",
            "image",
            config=dataclasses.asdict(dataclasses.replace(config, field=field_cfg)),
            state=model.state_dict(),
            optimizer=optimizer.state_dict(),
            step=result.step,
            meta={"psnr": final_psnr, "height": height, "width": width},
        )
        recon_path = out / "reconstruction.png"
        write_image(recon_path, recon.reshape(height, width, 3))
        with atomic_path(out / "metrics.json") as tmp:
            tmp.write_text(json.dumps(metrics, indent=2) + "\n")
        curves.write()
        log.info("image fit: %s psnr %.2f dB in %.1f s", field_cfg.encoding, final_psnr, seconds)
        return ImageResult(final_psnr, result.step, seconds, recon_path, ckpt, metrics)
