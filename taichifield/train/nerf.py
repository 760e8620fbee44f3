"""NeRF training (Instant-NGP recipe): hash-grid field, occupancy-grid marcher, Taichi volume rendering.

Per step: sample random pixels over all training images, generate their rays on the
fly, march them through the occupancy grid (samples packed densely), render with the
Taichi volume renderer and take an Adam step on the photometric loss. The number of
rays adapts so that each step renders about ``target_samples`` samples (Instant-NGP
Sec. 5.4: a fixed sample budget, not a fixed ray count). Images with alpha are
composited on a random background colour per ray during training (so the field
learns transparent space, not a white wall); evaluation uses white.

The loop is :func:`taichifield.train.loop.run_loop`: time budget, periodic atomic
checkpoints, SIGTERM-safe stop and exact ``--resume`` (optimizer, grid, RNG and the
adaptive ray count are all in the checkpoint).

Example::

    result = run_train_nerf(NerfTrainConfig(scene="scenes/lego", time_budget=300))
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field as dc_field
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from .. import runtime
from ..atomic import atomic_path
from ..errors import InputError
from ..fields.nerf import NerfConfig, NerfField
from .checkpoint import load_checkpoint, save_checkpoint
from .loop import NonFiniteGuard, adam, psnr, rng_state, run_loop, set_rng_state
from .nerf_render import make_grid, render_train_rays, render_view

__all__ = ["NerfTrainConfig", "NerfTrainResult", "run_train_nerf", "default_run_dir"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, dict[str, float]], None]


@dataclass
class NerfTrainConfig:
    """Everything a NeRF run needs (stored in the checkpoint; ``--resume`` reuses it)."""

    scene: str
    """Scene folder (Blender or instant-ngp format, or a procedural ``scene.json`` folder)."""
    out: str | None = None
    """Run folder (``ckpt.pt``, ``metrics.json``); default ``runs/nerf-<scene>-<timestamp>``."""
    steps: int = 20000
    """Total optimisation steps."""
    time_budget: float | None = None
    """Stop (and save) after this many seconds of training."""
    downscale: int = 1
    """Integer image downscale factor."""
    seed: int = 0
    """Seed of the torch RNG (rays, backgrounds, grid updates)."""
    model: NerfConfig = dc_field(default_factory=NerfConfig)
    """Field architecture."""
    lr: float = 1e-2
    """Adam learning rate (Instant-NGP)."""
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-15
    weight_decay: float = 1e-6
    """L2 weight decay on the MLP weights only (not the hash table)."""
    lr_decay: bool = True
    """Multiply lr by 0.33 at 50%, 75% and 90% of ``steps`` (Instant-NGP/nerfacc schedule)."""
    loss: Literal["mse", "huber"] = "mse"
    """Photometric loss; ``huber`` uses delta 0.1."""
    target_samples: int | None = None
    """Samples per step (the batch budget); None: 2^18 on CUDA, 2^16 on the CPU."""
    init_rays: int = 1024
    """Rays in the first step (then adapted to ``target_samples``)."""
    max_rays: int = 1 << 16
    """Upper bound on rays per step."""
    grid_start: int = 16
    """First step at which the occupancy grid is updated (all cells are occupied before)."""
    grid_resolution: int | None = None
    """Occupancy grid cells per side; None: 128 on CUDA (Instant-NGP), 64 on the CPU (cheaper updates)."""
    render_steps: int = 1024
    """Marching step = box diagonal / sqrt(3) * sqrt(3) / render_steps (Instant-NGP: sqrt(3)/1024 of the unit box)."""
    random_background: bool = True
    """Composite RGBA training images on a random colour per ray."""
    eval_views: int = 4
    """Test views rendered at the end for ``metrics.json`` (0: skip)."""
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 120.0
    progress_images: bool = True
    """With each checkpoint, write ``RUN/progress/step_XXXXX.png``: test view 0 (at most 128 px
    wide) rendered by the current field, next to its ground truth."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NerfTrainConfig":
        d = dict(d)
        d["model"] = NerfConfig.from_dict(d.get("model", {}))
        d["betas"] = tuple(d.get("betas", (0.9, 0.99)))
        return cls(**d)


@dataclass
class NerfTrainResult:
    run_dir: Path
    step: int
    seconds: float
    stopped: str
    train_psnr: float
    test_psnr: float | None


def default_run_dir(scene: str) -> Path:
    name = Path(scene.rstrip("/")).name or "scene"
    return Path("runs") / f"nerf-{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _step_size(aabb: torch.Tensor, render_steps: int) -> float:
    return float((aabb[1] - aabb[0]).max()) * math.sqrt(3) / render_steps


def _lr_factor(step: int, total: int, enabled: bool) -> float:
    if not enabled:
        return 1.0
    return 0.33 ** sum(step >= int(total * f) for f in (0.5, 0.75, 0.9))


def run_train_nerf(
    config: NerfTrainConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    progress: ProgressFn | None = None,
    scene_progress: Callable[[int, int, str], None] | None = None,
) -> NerfTrainResult:
    """Train (or resume) a NeRF; writes ``RUN/ckpt.pt`` and ``RUN/metrics.json``.

    Args:
        config: the run; with ``resume`` its ``steps``/``time_budget``/``out`` override the
            saved ones, everything else comes from the checkpoint.
        resume: a run folder or ``ckpt.pt`` to continue.
        progress: ``progress(step, stats)`` after each step (stats: loss, psnr, samples_per_s, rays, lr).
        scene_progress: forwarded to :func:`taichifield.scenes.prepare_scene` (first-use rendering).
    """
    from ..data import generate_rays, load_scene
    from ..data.rays import pixels
    from ..scenes.prepare import prepare_scene

    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume, kind="nerf")
        saved = NerfTrainConfig.from_dict(ckpt["config"]["train"])
        saved.steps, saved.time_budget = config.steps, config.time_budget
        saved.out = config.out or str(Path(resume).parent if Path(resume).is_file() else Path(resume))
        config = saved
    run_dir = Path(config.out) if config.out else default_run_dir(config.scene)
    config.out = str(run_dir)
    dev = runtime.device()
    if ckpt is None:
        torch.manual_seed(config.seed)

    prepare_scene(config.scene, splits=["train", "test"] if config.eval_views else ["train"], progress=scene_progress)
    views = load_scene(config.scene, "train", config.downscale)
    images = views.images.to(dev)
    views.images = images
    views.c2w = views.c2w.to(dev)
    n_img, H, W = len(views), views.height, views.width
    aabb = views.aabb.to(dev)
    step_size = _step_size(aabb, config.render_steps)
    use_alpha = views.has_alpha

    field = NerfField(config.model, aabb).to(dev)
    if config.grid_resolution is None:
        config.grid_resolution = 128 if dev.type == "cuda" else 64
    grid = make_grid(aabb, config.grid_resolution)
    decay_ids = {id(p) for p in field.mlp_parameters()}
    groups = [
        {"params": field.encoding_parameters(), "weight_decay": 0.0},
        {"params": [p for p in field.parameters() if id(p) in decay_ids], "weight_decay": config.weight_decay},
    ]
    optimizer = adam(groups, lr=config.lr, betas=config.betas, eps=config.eps)
    guard = NonFiniteGuard(optimizer)
    target = config.target_samples or (1 << 18 if dev.type == "cuda" else 1 << 16)
    state: dict[str, Any] = {"n_rays": config.init_rays, "psnr_ema": 0.0, "base_lr": config.lr}
    start_step = 0
    if ckpt is not None:
        st = ckpt["state"]
        field.load_state_dict({k[6:]: v.to(dev) for k, v in st.items() if k.startswith("field.")})
        grid.load_state_dict({k[5:]: v.to(dev) for k, v in st.items() if k.startswith("grid.")})
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        state.update({k: ckpt["meta"]["trainer"][k] for k in ("n_rays", "psnr_ema", "base_lr")})
        start_step = int(ckpt["step"])
    density_fn = field.density
    t_train = time.monotonic()
    last_t = [time.monotonic()]

    def step_fn(step: int) -> dict[str, float] | None:
        lr = state["base_lr"] * _lr_factor(step, config.steps, config.lr_decay)
        for g in optimizer.param_groups:
            g["lr"] = lr
        # the untrained field's density says nothing: its first estimate (kept by the EMA's max)
        # would hold the threshold up and empty the grid, so the first update waits
        if step >= config.grid_start and grid.update(step, density_fn) and not bool(grid.bits.any()):
            # nearly uniform densities (e.g. at initialisation) can leave every cell at or
            # below the mean-based threshold: march everywhere rather than nowhere
            grid.bits.fill_(-1)
        n = int(state["n_rays"])
        idx = torch.randint(0, n_img, (n,), device=dev)
        px = torch.randint(0, W, (n,), device=dev)
        py = torch.randint(0, H, (n,), device=dev)
        rays_o, rays_d = generate_rays(views, idx, px, py)
        raw = pixels(views, idx, px, py)
        if use_alpha:
            bg = torch.rand(n, 3, device=dev) if config.random_background else torch.ones(n, 3, device=dev)
            gt = raw[:, :3] * raw[:, 3:4] + bg * (1 - raw[:, 3:4])
        else:
            bg = torch.ones(n, 3, device=dev)
            gt = raw[:, :3]
        out = render_train_rays(field, grid, rays_o, rays_d, near=views.near, far=views.far,
                                step_size=step_size, background=bg, perturb=True)
        err = out["rgb"] - gt
        mse = (err * err).mean()
        loss = torch.nn.functional.huber_loss(out["rgb"], gt, delta=0.1) if config.loss == "huber" else mse
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        n_samples = int(out["n_evaluated"])
        # adapt the ray count to the sample budget (Instant-NGP); the density-only pass over
        # marched samples costs about a quarter of a full forward+backward per sample
        per_ray = max((n_samples + 0.25 * int(out["n_samples"])) / n, 1.0)
        state["n_rays"] = int(min(max(target / per_ray, 32), config.max_rays))
        if not guard.check(loss):
            state["base_lr"] = optimizer.param_groups[0]["lr"] / max(_lr_factor(step, config.steps, config.lr_decay), 1e-12)
            return None
        optimizer.step()
        now = time.monotonic()
        dt, last_t[0] = now - last_t[0], now
        p = psnr(float(mse.detach()))
        state["psnr_ema"] = p if state["psnr_ema"] == 0 else 0.9 * state["psnr_ema"] + 0.1 * p
        return {"loss": float(loss.detach()), "psnr": state["psnr_ema"], "samples_per_s": n_samples / max(dt, 1e-9),
                "rays": float(n), "lr": lr,
                "marched": float(out["n_samples"]), "evaluated": float(n_samples)}

    preview = _ProgressView(config, run_dir / "progress", W) if config.progress_images else None

    def save(step: int) -> None:
        if preview is not None:
            preview.write(step, field, grid, step_size)
        st = {f"field.{k}": v for k, v in field.state_dict().items()}
        st.update({f"grid.{k}": v for k, v in grid.state_dict().items()})
        save_checkpoint(run_dir / "ckpt.pt", "nerf",
                        {"model": config.model.to_dict(), "train": config.to_dict(), "scene": config.scene},
                        st, optimizer=optimizer.state_dict(), rng=rng_state(), step=step,
                        meta={"trainer": dict(state), "step_size": step_size, "near": views.near, "far": views.far,
                              "eval_background": [1.0, 1.0, 1.0], "downscale": config.downscale,
                              "width": W, "height": H})

    field.train()
    result = run_loop(step_fn, start_step=start_step, total_steps=config.steps, time_budget=config.time_budget,
                      save=save, checkpoint_every=config.checkpoint_every,
                      checkpoint_seconds=config.checkpoint_seconds, on_step=progress, guard=guard)
    field.eval()
    test_psnr = _test_psnr(config, field, grid, step_size) if config.eval_views else None
    metrics = {
        "steps": result.step, "seconds": round(time.monotonic() - t_train, 2), "train_seconds": round(result.seconds, 2),
        "stopped": result.stopped, "skipped_steps": result.skipped_steps,
        "train_psnr": round(state["psnr_ema"], 3), "test_psnr": None if test_psnr is None else round(test_psnr, 3),
        "test_views": config.eval_views, "scene": config.scene, "downscale": config.downscale,
        "encoding": config.model.encoding, "arch": runtime.current_arch(),
    }
    with atomic_path(run_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    return NerfTrainResult(run_dir, result.step, result.seconds, result.stopped, state["psnr_ema"], test_psnr)


class _ProgressView:
    """Writes a held-out view next to its ground truth as training goes (``RUN/progress``)."""

    def __init__(self, config: NerfTrainConfig, folder: Path, train_width: int) -> None:
        self.config, self.folder = config, folder
        self.downscale = config.downscale * max(1, math.ceil(train_width / 128))
        self.views: Any = None
        self.failed = False

    @torch.no_grad()
    def write(self, step: int, field: NerfField, grid: Any, step_size: float) -> None:
        import imageio.v3 as iio

        from ..data import load_scene

        if self.failed:
            return
        if self.views is None:
            try:
                self.views = load_scene(self.config.scene, "test", self.downscale)
            except InputError as exc:  # e.g. a capture without a test split
                log.warning("no progress images: %s", exc)
                self.failed = True
                return
        v = self.views
        was_training = field.training
        field.eval()
        img = render_view(field, grid, v.c2w[0], v.width, v.height, v.fx, v.fy, v.cx, v.cy,
                          near=v.near, far=v.far, step_size=step_size, distortion=v.distortion)
        field.train(was_training)
        gt = v.rgb((1.0, 1.0, 1.0), index=0).reshape(img.shape)
        both = torch.cat([gt.cpu(), img.cpu()], dim=1).clamp(0, 1)
        with atomic_path(self.folder / f"step_{step:05d}.png") as tmp:
            iio.imwrite(tmp, (both.numpy() * 255 + 0.5).astype("uint8"))


def _test_psnr(config: NerfTrainConfig, field: NerfField, grid: Any, step_size: float) -> float:
    """Mean PSNR over the first ``eval_views`` test views, on white."""
    from ..data import load_scene
    from .ssim import psnr_images

    try:
        test = load_scene(config.scene, "test", config.downscale)
    except InputError as exc:
        log.warning("no test split for metrics: %s", exc)
        return float("nan")
    vals = []
    for i in range(min(config.eval_views, len(test))):
        img = render_view(field, grid, test.c2w[i], test.width, test.height, test.fx, test.fy, test.cx, test.cy,
                          near=test.near, far=test.far, step_size=step_size, distortion=test.distortion)
        vals.append(psnr_images(img, test.rgb((1.0, 1.0, 1.0), index=i)))
    return sum(vals) / max(len(vals), 1)
