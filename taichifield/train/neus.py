"""NeuS training (Wang et al. 2021; instant-nsr-pl's hash-grid recipe): surfaces from posed images.

Per step: random training pixels, their rays, samples from the occupancy grid built from the
SDF (stratified across the scene box for the first ``grid_start`` steps), NeuS's alpha composited
by the Taichi volume renderer (:func:`taichifield.pipelines.neus.render_neus_rays`), and an Adam
step on ``L1(rgb) + eikonal_weight * mean((|grad s| - 1)^2)`` over the samples (plus, optionally,
Neuralangelo's curvature term ``mean(|Laplacian s|)`` and, for images with alpha, NeuS's mask term
``BCE(opacity, alpha)``). The ray count
adapts to a sample budget, as in NeRF training. Schedules: linear lr warm-up then exponential
decay to 0.1x; NeuS's cos annealing ratio 0 -> 1 over ``cos_anneal_steps``; Neuralangelo's
coarse-to-fine finite-difference step (``fd_step_start`` finest cells -> one).

The loop, checkpoints, time budget, SIGTERM-safe stop and exact ``--resume`` are
:func:`taichifield.train.loop.run_loop`'s, as for NeRF; the run folder holds ``ckpt.pt``
(kind ``"neus"``), ``metrics.json``, ``history.json``, ``curves.png`` and ``progress/``.

Example::

    result = run_train_neus(NeuSTrainConfig(scene="scenes/lego", time_budget=600))
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .. import runtime
from ..atomic import atomic_path
from ..runfolder import timestamped_run
from ..metrics.image import psnr
from ..pipelines.neus import NeuSModel, render_neus_rays, sdf_density_fn
from .checkpoint import load_checkpoint, save_checkpoint
from .configs import NeuSTrainConfig
from .curves import RunCurves
from .held_out import ProgressView, held_out_psnr, training_views
from .loop import NonFiniteGuard, RunProgress, adam, log_interval, rng_state, run_loop, set_rng_state

__all__ = ["NeuSTrainConfig", "NeuSTrainResult", "NeuSTrainer", "run_train_neus", "default_run_dir"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, dict[str, float]], None]
GRID_UPDATE_EVERY = 16
"""Steps between occupancy-grid updates (:meth:`OccupancyGrid.update`'s default)."""


@dataclass
class NeuSTrainResult:
    run_dir: Path
    step: int
    seconds: float
    stopped: str
    train_psnr: float
    test_psnr: float | None


def default_run_dir(scene: str) -> Path:
    """``runs/neus-<scene>-<time>`` (:func:`taichifield.runfolder.timestamped_run`)."""
    return timestamped_run("neus", Path(scene.rstrip("/")).name or "scene")


def run_train_neus(config: NeuSTrainConfig, *, resume: str | os.PathLike[str] | None = None,
                   progress: ProgressFn | None = None,
                   scene_progress: Callable[[int, int, str], None] | None = None) -> NeuSTrainResult:
    """Train (or resume) a NeuS model; writes ``RUN/ckpt.pt`` and ``RUN/metrics.json``.

    Args:
        config: the run; with ``resume`` its ``steps``/``time_budget``/``out`` override the
            saved ones, everything else comes from the checkpoint.
        resume: a run folder or ``ckpt.pt`` to continue.
        progress: ``progress(step, stats)`` after each step (loss, psnr, eikonal, inv_s, rays, lr).
        scene_progress: forwarded to :func:`taichifield.scenes.prepare_scene`.
    """
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume, kind="neus")
        saved = NeuSTrainConfig.from_dict(ckpt["config"]["train"])
        saved.steps, saved.time_budget = config.steps, config.time_budget
        saved.out = config.out or str(Path(resume).parent if Path(resume).is_file() else Path(resume))
        config = saved
    return NeuSTrainer(config, ckpt, scene_progress=scene_progress).run(progress)


def lr_factor(step: int, progress: float, config: NeuSTrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then exponential decay reaching 0.1 at the end of the
    run; ``progress`` in [0, 1] is :class:`~taichifield.train.loop.RunProgress`'s."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    start = min(config.warmup_steps / max(config.steps, 1), 0.5)
    return 0.1 ** min(max(progress - start, 0.0) / (1.0 - start), 1.0)


def fd_step(progress: float, config: NeuSTrainConfig, min_step: float) -> float:
    """Coarse-to-fine finite-difference step (world units): ``fd_step_start`` finest cells at the
    start, geometrically down to one cell at ``fd_anneal_fraction`` of the run (``progress`` in [0, 1])."""
    p = min(progress / max(config.fd_anneal_fraction, 1e-9), 1.0)
    return min_step * max(config.fd_step_start, 1.0) ** (1.0 - p)


class NeuSTrainer:
    """The state of one NeuS run (data on the device, model, optimiser, guard, schedules, ray
    count, running PSNR); :func:`run_train_neus` builds one and calls :meth:`run`."""

    def __init__(self, config: NeuSTrainConfig, ckpt: dict[str, Any] | None = None,
                 scene_progress: Callable[[int, int, str], None] | None = None) -> None:
        self.config = config
        self.run_dir = Path(config.out) if config.out else default_run_dir(config.scene)
        config.out = str(self.run_dir)
        dev = self.device = runtime.device()
        if ckpt is None:
            torch.manual_seed(config.seed)
        views = self.views = training_views(config.scene, config.downscale, config.eval_views, dev, scene_progress)
        aabb = views.aabb.to(dev)
        self.step_size = float((aabb[1] - aabb[0]).max()) * math.sqrt(3) / config.render_steps
        if config.grid_resolution is None:
            config.grid_resolution = 128 if dev.type == "cuda" else 64
        self.model = NeuSModel.build(config.model, aabb, config.grid_resolution, dev)
        field = self.model.field
        groups = [
            {"params": field.encoding_parameters(), "lr": config.lr},
            {"params": field.mlp_parameters(), "lr": config.lr},
            {"params": [field.variance], "lr": config.variance_lr},
        ]
        self.optimizer = adam(groups, lr=config.lr, betas=config.betas, eps=config.eps)
        self.target = config.target_samples or (1 << 18 if dev.type == "cuda" else 1 << 15)
        self.n_rays = config.init_rays
        self.psnr_ema: torch.Tensor | None = None
        self.grid_ready = False
        self.start_step = 0
        lr_scale, progress = 1.0, None
        if ckpt is not None:
            self.model.load_state_dict({k: v.to(dev) for k, v in ckpt["state"].items()})
            self.optimizer.load_state_dict(ckpt["optimizer"])
            set_rng_state(ckpt["rng"])
            trainer = ckpt["meta"]["trainer"]
            self.n_rays, self.grid_ready = int(trainer["n_rays"]), bool(trainer["grid_ready"])
            self.psnr_ema = torch.tensor(float(trainer["psnr_ema"]), device=dev) if trainer["psnr_ema"] else None
            lr_scale = float(trainer.get("lr_scale", 1.0))
            self.start_step = int(ckpt["step"])
            progress = trainer.get("progress")
        self.guard = NonFiniteGuard(self.optimizer, lr_scale=lr_scale)
        self.progress = RunProgress(config.steps, config.time_budget, start=progress, start_step=self.start_step)
        self.scheduler = self._scheduler([config.lr, config.lr, config.variance_lr])
        self.model.meta = self._meta(self.start_step)
        self.last_t = time.monotonic()
        self.preview = (ProgressView(config.scene, config.downscale, self.run_dir / "progress", views.width)
                        if config.progress_images else None)
        self.curves = RunCurves(self.run_dir, config.steps, title=f"neus [{Path(config.scene.rstrip('/')).name}]",
                                metrics=("loss", "psnr", "test_psnr"))

    def _scheduler(self, base_lrs: list[float]) -> torch.optim.lr_scheduler.LambdaLR:
        """:func:`taichifield.train.loop.lr_schedule` with one base lr per group (the variance has its own)."""
        config, guard, progress = self.config, self.guard, self.progress
        for group, base in zip(self.optimizer.param_groups, base_lrs):
            group["initial_lr"] = float(base)
        sched = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, progress(s), config) * guard.lr_scale)
        sched.last_epoch = self.start_step
        for group, base in zip(self.optimizer.param_groups, sched.base_lrs):
            group["lr"] = base * lr_factor(self.start_step, progress(self.start_step), config) * guard.lr_scale
        return sched

    def _meta(self, step: int) -> dict[str, Any]:
        """The render settings a checkpoint carries (and the live model uses)."""
        v, config = self.views, self.config
        return {"step_size": self.step_size, "near": v.near, "far": v.far, "eval_background": [1.0, 1.0, 1.0],
                "downscale": config.downscale, "width": v.width, "height": v.height,
                "fd_step": fd_step(self.progress(step), config, self.model.field.min_fd_step)}

    def _batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``n`` random training pixels: rays (n, 3) x2, target colours (n, 3), backgrounds (n, 3),
        alpha (n,) (None for images without alpha)."""
        from ..data import generate_rays
        from ..data.rays import pixels

        v, dev = self.views, self.device
        idx = torch.randint(0, len(v), (n,), device=dev)
        px = torch.randint(0, v.width, (n,), device=dev)
        py = torch.randint(0, v.height, (n,), device=dev)
        rays_o, rays_d = generate_rays(v, idx, px, py)
        raw = pixels(v, idx, px, py)
        if v.has_alpha:
            bg = torch.rand(n, 3, device=dev) if self.config.random_background else torch.ones(n, 3, device=dev)
            gt = raw[:, :3] * raw[:, 3:4] + bg * (1 - raw[:, 3:4])
            return rays_o, rays_d, gt, bg, raw[:, 3]
        return rays_o, rays_d, raw[:, :3], torch.ones(n, 3, device=dev), None

    def step(self, step: int) -> dict[str, Any]:
        config, grid, field = self.config, self.model.grid, self.model.field
        lr = self.optimizer.param_groups[0]["lr"]
        field.fd_step = fd_step(self.progress(step), config, field.min_fd_step)
        if step >= config.grid_start and grid.update(step, sdf_density_fn(field, grid), update_every=GRID_UPDATE_EVERY):
            # no cell near the zero level (a field drifting away early): march everywhere, not nowhere
            grid.bits.copy_(torch.where(grid.bits.any(), grid.bits, torch.full_like(grid.bits, -1)))
            self.grid_ready = True
        ratio = min(step / config.cos_anneal_steps, 1.0) if config.cos_anneal_steps else 1.0
        n = self.n_rays
        rays_o, rays_d, gt, bg, alpha = self._batch(n)
        out = render_neus_rays(field, grid if self.grid_ready else None, rays_o, rays_d, near=self.views.near,
                               far=self.views.far, step_size=self.step_size, background=bg, perturb=True,
                               cos_anneal_ratio=ratio, n_samples=config.stratified_samples,
                               curvature=config.curvature_weight > 0)
        err = out["rgb"] - gt
        mse = (err * err).mean()
        grad = out["gradient"]
        eikonal = ((grad.norm(dim=-1) - 1.0) ** 2).mean() if grad.shape[0] else mse * 0.0
        loss = err.abs().mean() + config.eikonal_weight * eikonal
        if config.curvature_weight > 0 and grad.shape[0]:
            loss = loss + config.curvature_weight * out["laplacian"].abs().mean()
        if alpha is not None and config.mask_weight > 0:
            opacity = out["opacity"].clamp(1e-3, 1.0 - 1e-3)
            loss = loss + config.mask_weight * torch.nn.functional.binary_cross_entropy(opacity, alpha.to(opacity))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.guard.step(loss)
        self.scheduler.step()
        n_samples = int(out["n_samples"])
        self.n_rays = int(min(max(self.target / max(n_samples / n, 1.0), 32), config.max_rays))
        p = psnr(mse.detach())
        if self.psnr_ema is None:
            self.psnr_ema = p
        else:
            self.psnr_ema = torch.where(torch.isfinite(p), 0.9 * self.psnr_ema + 0.1 * p, self.psnr_ema)
        now = time.monotonic()
        dt, self.last_t = now - self.last_t, now
        return {"loss": loss.detach(), "psnr": self.psnr_ema, "eikonal": eikonal.detach(),
                "inv_s": field.inv_s().detach(), "samples_per_s": n_samples / max(dt, 1e-9), "rays": float(n), "lr": lr}

    def _render(self, v: Any, i: int, normals: bool = True) -> list[torch.Tensor]:
        """View ``i`` of ``v``: colour, and (progress pictures) the normal map."""
        fx, fy, cx, cy, dist = v.camera(i)
        args = (v.c2w[i], v.width, v.height, fx, fy, cx, cy)
        if normals:
            return list(self.model.render_color_and_normals(*args, distortion=dist))
        return [self.model.render_view(*args, distortion=dist)]

    def save(self, step: int) -> None:
        config = self.config
        self.model.meta = self._meta(step)
        if self.preview is not None:
            held_out = self.preview.write(step, self._render)
            if held_out is not None:
                self.curves.history.record(step, {"test_psnr": held_out}, force=True)
        trainer = {"n_rays": self.n_rays, "psnr_ema": float(self.psnr_ema) if self.psnr_ema is not None else 0.0,
                   "lr_scale": self.guard.lr_scale, "grid_ready": self.grid_ready,
                   "progress": self.progress.last}
        save_checkpoint(self.run_dir / "ckpt.pt", "neus",
                        {"model": config.model.to_dict(), "train": config.to_dict(), "scene": config.scene},
                        self.model.state_dict(), optimizer=self.optimizer.state_dict(), rng=rng_state(), step=step,
                        meta={"trainer": trainer, **self.model.meta})
        self.curves.write()

    def run(self, progress: ProgressFn | None = None) -> NeuSTrainResult:
        config = self.config
        t_train = time.monotonic()
        self.model.field.train()
        result = run_loop(self.step, start_step=self.start_step, total_steps=config.steps,
                          time_budget=config.time_budget, save=self.save, checkpoint_every=config.checkpoint_every,
                          checkpoint_seconds=config.checkpoint_seconds, on_step=self.curves.on_step(progress),
                          guard=self.guard, log_every=log_interval(self.device))
        self.model.eval()
        test_psnr = (held_out_psnr(config.scene, config.downscale, config.eval_views,
                                   lambda v, i: self._render(v, i, normals=False))
                     if config.eval_views else None)
        train_psnr = float(self.psnr_ema) if self.psnr_ema is not None else 0.0
        metrics = {
            "steps": result.step, "seconds": round(time.monotonic() - t_train, 2), "train_seconds": round(result.seconds, 2),
            "stopped": result.stopped, "skipped_steps": result.skipped_steps, "train_psnr": round(train_psnr, 3),
            "test_psnr": None if test_psnr is None else round(test_psnr, 3), "test_views": config.eval_views,
            "inv_s": round(float(self.model.field.inv_s().detach()), 3), "scene": config.scene, "downscale": config.downscale,
            "arch": runtime.current_arch(),
        }
        with atomic_path(self.run_dir / "metrics.json") as tmp:
            tmp.write_text(json.dumps(metrics, indent=2) + "\n")
        return NeuSTrainResult(self.run_dir, result.step, result.seconds, result.stopped, train_psnr, test_psnr)
