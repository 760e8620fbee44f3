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

import dataclasses
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
from .checkpoint import load_checkpoint, save_checkpoint
from .configs import DISTORTION_WEIGHT, NerfTrainConfig
from .curves import RunCurves
from .held_out import ProgressView, held_out_psnr, training_views
from ..metrics.image import psnr
from ..pipelines.nerf import NerfModel
from .appearance import ImageAppearance
from .pose_refine import PoseCorrections
from .loop import NonFiniteGuard, RunProgress, adam, log_interval, lr_schedule, rng_state, run_loop, set_rng_state
from ..pipelines.nerf_render import render_nerf_rays, render_view
from ..render.contraction import contracted_far, foreground_box, has_background
from ..runfolder import timestamped_run

__all__ = ["NerfTrainConfig", "NerfTrainResult", "NerfTrainer", "run_train_nerf", "default_run_dir"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, dict[str, float]], None]


@dataclass
class NerfTrainResult:
    run_dir: Path
    step: int
    seconds: float
    stopped: str
    train_psnr: float
    test_psnr: float | None


def default_run_dir(scene: str) -> Path:
    """``runs/nerf-<scene>-<time>`` (:func:`taichifield.runfolder.timestamped_run`)."""
    return timestamped_run("nerf", Path(scene.rstrip("/")).name or "scene")


def _step_size(aabb: torch.Tensor, render_steps: int) -> float:
    return float((aabb[1] - aabb[0]).max()) * math.sqrt(3) / render_steps


CULL_COST = 0.43
"""Cost of a marched sample in the no-grad culling pass, relative to a sample through the full
field forward and backward (measured on the CPU by bench nerf-throughput)."""


def _lr_factor(progress: float, enabled: bool) -> float:
    """MultiStepLR's factor: 0.33 at each of 50%, 75% and 90% of the run (Instant-NGP/nerfacc);
    ``progress`` in [0, 1] is :class:`~taichifield.train.loop.RunProgress`'s (steps or time budget)."""
    if not enabled:
        return 1.0
    return 0.33 ** sum(progress >= f for f in (0.5, 0.75, 0.9))


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
        progress: ``progress(step, stats)`` after each step (stats: loss, psnr, samples_per_s, rays, lr;
            read from the device every ``log_every`` steps).
        scene_progress: forwarded to :func:`taichifield.scenes.prepare_scene` (first-use rendering).
    """
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume, kind="nerf")
        saved = NerfTrainConfig.from_dict(ckpt["config"]["train"])
        saved.steps, saved.time_budget = config.steps, config.time_budget
        saved.out = config.out or str(Path(resume).parent if Path(resume).is_file() else Path(resume))
        config = saved
    trainer = NerfTrainer(config, ckpt, scene_progress=scene_progress)
    return trainer.run(progress)


class NerfTrainer:
    """The state of one NeRF run, named: data on the device, the model (field + occupancy
    grid), optimiser, non-finite guard, learning-rate schedule, adaptive ray count and the
    running PSNR. :func:`run_train_nerf` builds one and calls :meth:`run`.

    Device: everything lives on :func:`taichifield.runtime.device` and every random number
    (pixels, backgrounds, jitter, grid cells) is drawn there. Host syncs per step: one to
    size the marched samples, plus one when culling (``cull_samples``, the CPU default);
    stats are read every ``log_every`` steps.
    """

    def __init__(self, config: NerfTrainConfig, ckpt: dict[str, Any] | None = None,
                 scene_progress: Callable[[int, int, str], None] | None = None) -> None:
        self.config = config
        self.run_dir = Path(config.out) if config.out else default_run_dir(config.scene)
        config.out = str(self.run_dir)
        dev = self.device = runtime.device()
        if ckpt is None:
            torch.manual_seed(config.seed)
        views = self.views = training_views(config.scene, config.downscale, config.eval_views, dev, scene_progress)
        aabb = views.aabb.to(dev)
        if config.model.contraction is None:  # automatic: on for captures with background
            config.model = dataclasses.replace(config.model, contraction=has_background(views.meta, views.has_alpha))
        self.far = views.far
        if config.model.contraction:  # the field's box is the foreground; the rest is contracted
            aabb = foreground_box(aabb, float(views.meta.get("aabb_scale") or 1.0))
            self.far = contracted_far(aabb, views.far)
        if config.distortion_weight is None:
            config.distortion_weight = DISTORTION_WEIGHT if config.model.contraction else 0.0
        self.step_size = _step_size(aabb, config.render_steps)
        self.half_side = 0.5 * float((aabb[1] - aabb[0]).max())
        if config.grid_resolution is None:
            config.grid_resolution = 128 if dev.type == "cuda" else 64
        if config.cull_samples is None:
            config.cull_samples = dev.type == "cpu"
        self.model = NerfModel.build(config.model, aabb, config.grid_resolution, dev, meta=self._meta())
        field = self.model.field
        decay_ids = {id(p) for p in field.mlp_parameters()}
        groups = [
            {"params": field.encoding_parameters(), "weight_decay": 0.0},
            {"params": [p for p in field.parameters() if id(p) in decay_ids], "weight_decay": config.weight_decay},
        ]
        # optional per-view corrections, learned by the same optimiser (their own group, no decay)
        self.poses = PoseCorrections(len(views), dev) if config.pose_refinement else None
        self.appearance = ImageAppearance(len(views), dev) if config.appearance else None
        for key, module in self._per_view():
            if ckpt is not None and key in ckpt["meta"]["trainer"]:
                module.raw.data.copy_(ckpt["meta"]["trainer"][key].to(dev))
            groups.append({"params": [module.raw], "weight_decay": 0.0})
        self.optimizer = adam(groups, lr=config.lr, betas=config.betas, eps=config.eps)
        self.target = config.target_samples or (1 << 18 if dev.type == "cuda" else 1 << 16)
        self.n_rays = config.init_rays
        self.psnr_ema: torch.Tensor | None = None
        self.start_step = 0
        lr_scale, progress = 1.0, None
        if ckpt is not None:
            self.model.load_state_dict({k: v.to(dev) for k, v in ckpt["state"].items()})
            self.optimizer.load_state_dict(ckpt["optimizer"])
            set_rng_state(ckpt["rng"])
            trainer = ckpt["meta"]["trainer"]
            self.n_rays = int(trainer["n_rays"])
            self.psnr_ema = torch.tensor(float(trainer["psnr_ema"]), device=dev) if trainer["psnr_ema"] else None
            # version 1 stored the backed-off base lr instead of the scale
            lr_scale = float(trainer.get("lr_scale", float(trainer.get("base_lr", config.lr)) / config.lr))
            self.start_step = int(ckpt["step"])
            progress = trainer.get("progress")
        self.guard = NonFiniteGuard(self.optimizer, lr_scale=lr_scale)
        self.progress = RunProgress(config.steps, config.time_budget, start=progress, start_step=self.start_step)
        self.scheduler = lr_schedule(self.optimizer, config.lr, lambda step: _lr_factor(self.progress(step), config.lr_decay),
                                     self.guard, self.start_step)

        self.last_t = time.monotonic()
        self.preview = (ProgressView(config.scene, config.downscale, self.run_dir / "progress", views.width)
                        if config.progress_images else None)
        self.curves = RunCurves(self.run_dir, config.steps, title=f"nerf [{Path(config.scene.rstrip('/')).name}]",
                                metrics=("loss", "psnr", "test_psnr"))

    def _per_view(self) -> list[tuple[str, PoseCorrections | ImageAppearance]]:
        """The optional per-view corrections that are on, with their checkpoint keys."""
        return [(k, m) for k, m in (("pose_corrections", self.poses), ("appearance", self.appearance)) if m is not None]

    def _meta(self) -> dict[str, Any]:
        """The render settings a checkpoint carries (and the live model uses)."""
        v, config = self.views, self.config
        return {"step_size": self.step_size, "near": v.near, "far": self.far, "eval_background": [1.0, 1.0, 1.0],
                "downscale": config.downscale, "width": v.width, "height": v.height}

    def _batch(self, n: int) -> tuple[torch.Tensor, ...]:
        """``n`` random training pixels: rays (n, 3) x2, target colours (n, 3), backgrounds (n, 3),
        view indices (n,)."""
        from ..data import generate_rays
        from ..data.rays import pixels

        v, dev = self.views, self.device
        idx = torch.randint(0, len(v), (n,), device=dev)
        px = torch.randint(0, v.width, (n,), device=dev)
        py = torch.randint(0, v.height, (n,), device=dev)
        rays_o, rays_d = generate_rays(v, idx, px, py)
        if self.poses is not None:
            rays_o, rays_d = self.poses.apply(v.c2w, idx, rays_o, rays_d)
        raw = pixels(v, idx, px, py)
        if v.has_alpha:
            bg = torch.rand(n, 3, device=dev) if self.config.random_background else torch.ones(n, 3, device=dev)
            gt = raw[:, :3] * raw[:, 3:4] + bg * (1 - raw[:, 3:4])
        else:
            bg = torch.ones(n, 3, device=dev)
            gt = raw[:, :3]
        return rays_o, rays_d, gt, bg, idx

    def step(self, step: int) -> dict[str, Any]:
        config, grid, field = self.config, self.model.grid, self.model.field
        lr = self.optimizer.param_groups[0]["lr"]
        # the untrained field's density says nothing: its first estimate (kept by the EMA's max)
        # would hold the threshold up and empty the grid, so the first update waits
        if step >= config.grid_start and grid.update(step, field.density):
            # nearly uniform densities (e.g. at initialisation) can leave every cell at or below
            # the mean-based threshold: march everywhere rather than nowhere (decided on the device)
            grid.bits.copy_(torch.where(grid.bits.any(), grid.bits, torch.full_like(grid.bits, -1)))
        n = self.n_rays
        rays_o, rays_d, gt, bg, view = self._batch(n)
        dist_w = config.distortion_weight
        out = render_nerf_rays(field, grid, rays_o, rays_d, near=self.views.near, far=self.far,
                               step_size=self.step_size, background=bg, perturb=True, cull=bool(config.cull_samples),
                               return_samples=dist_w > 0)
        rgb = out["rgb"] if self.appearance is None else self.appearance.apply(view, out["rgb"])
        err = rgb - gt
        mse = (err * err).mean()
        loss = torch.nn.functional.huber_loss(rgb, gt, delta=0.1) if config.loss == "huber" else mse
        if dist_w > 0:
            loss = loss + dist_w * self._distortion(out["samples"], n)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.guard.step(loss)
        self.scheduler.step()
        # adapt the ray count to the sample budget (Instant-NGP); the density-only pass over
        # marched samples costs 0.43 of a full forward+backward per sample (1.28 vs 3.0 us,
        # bench nerf-throughput). Both counts are tensor sizes the host knows: no sync.
        n_eval, n_marched = int(out["n_evaluated"]), int(out["n_samples"])
        cull_cost = CULL_COST * n_marched if config.cull_samples else 0.0
        per_ray = max((n_eval + cull_cost) / n, 1.0)
        self.n_rays = int(min(max(self.target / per_ray, 32), config.max_rays))
        p = psnr(mse.detach())
        if self.psnr_ema is None:
            self.psnr_ema = p
        else:  # a skipped (non-finite) step leaves the running value alone
            self.psnr_ema = torch.where(torch.isfinite(p), 0.9 * self.psnr_ema + 0.1 * p, self.psnr_ema)
        now = time.monotonic()
        dt, self.last_t = now - self.last_t, now
        return {"loss": loss.detach(), "psnr": self.psnr_ema, "samples_per_s": n_eval / max(dt, 1e-9),
                "rays": float(n), "lr": lr, "marched": float(n_marched), "evaluated": float(n_eval)}

    def _distortion(self, samples: tuple[torch.Tensor, ...], n_rays: int) -> torch.Tensor:
        """Mean over the batch's rays of mip-NeRF 360's distortion loss (eq. 15) of the
        composited samples, on ``s = t / (t + h)`` (``h``: half the field's largest box side)."""
        from ..render.distortion import distortion_loss, normalized_distance
        from ..render.volrend import pack_info, render_weights

        t_starts, t_ends, ray_indices, sigmas = samples
        if sigmas.numel() == 0:
            return sigmas.new_zeros(())
        h, packed = self.half_side, pack_info(ray_indices, n_rays)
        w = render_weights(sigmas, t_starts, t_ends, ray_indices, n_rays, packed_info=packed)
        s0, s1 = normalized_distance(t_starts, h), normalized_distance(t_ends, h)
        return distortion_loss(w, s0, s1, ray_indices, n_rays, packed_info=packed).mean()

    def _render(self, v: Any, i: int) -> list[torch.Tensor]:
        """View ``i`` of ``v`` by the current field in eval mode (rays reach ``max(far, the
        view's far)``: a contracted scene's background)."""
        field = self.model.field
        was_training = field.training
        field.eval()
        fx, fy, cx, cy, dist = v.camera(i)
        img = render_view(field, self.model.grid, v.c2w[i], v.width, v.height, fx, fy, cx, cy,
                          near=v.near, far=max(v.far, self.far), step_size=self.step_size, distortion=dist)
        field.train(was_training)
        return [img]

    def save(self, step: int) -> None:
        config = self.config
        if self.preview is not None:
            held_out = self.preview.write(step, self._render)
            if held_out is not None:  # the held-out view's PSNR joins the curves
                self.curves.history.record(step, {"test_psnr": held_out}, force=True)
        trainer = {"n_rays": self.n_rays, "psnr_ema": float(self.psnr_ema) if self.psnr_ema is not None else 0.0,
                   "lr_scale": self.guard.lr_scale, "progress": self.progress.last}
        trainer.update({key: module.raw.detach().cpu() for key, module in self._per_view()})
        save_checkpoint(self.run_dir / "ckpt.pt", "nerf",
                        {"model": config.model.to_dict(), "train": config.to_dict(), "scene": config.scene},
                        self.model.state_dict(), optimizer=self.optimizer.state_dict(), rng=rng_state(), step=step,
                        meta={"trainer": trainer, **self._meta()})
        self.curves.write()

    def run(self, progress: ProgressFn | None = None) -> NerfTrainResult:
        config, field = self.config, self.model.field
        t_train = time.monotonic()
        field.train()
        result = run_loop(self.step, start_step=self.start_step, total_steps=config.steps,
                          time_budget=config.time_budget, save=self.save, checkpoint_every=config.checkpoint_every,
                          checkpoint_seconds=config.checkpoint_seconds, on_step=self.curves.on_step(progress), guard=self.guard,
                          log_every=log_interval(self.device))
        field.eval()
        test_psnr = held_out_psnr(config.scene, config.downscale, config.eval_views, self._render) if config.eval_views else None
        train_psnr = float(self.psnr_ema) if self.psnr_ema is not None else 0.0
        metrics = {
            "steps": result.step, "seconds": round(time.monotonic() - t_train, 2), "train_seconds": round(result.seconds, 2),
            "stopped": result.stopped, "skipped_steps": result.skipped_steps,
            "train_psnr": round(train_psnr, 3), "test_psnr": None if test_psnr is None else round(test_psnr, 3),
            "test_views": config.eval_views, "scene": config.scene, "downscale": config.downscale,
            "encoding": config.model.encoding, "arch": runtime.current_arch(),
        }
        if self.poses is not None:  # how far the training cameras moved
            metrics["pose_refinement"] = {k: round(v, 5) for k, v in self.poses.summary().items()}
        if self.appearance is not None:
            metrics["appearance"] = {k: round(v, 5) for k, v in self.appearance.summary().items()}
        with atomic_path(self.run_dir / "metrics.json") as tmp:
            tmp.write_text(json.dumps(metrics, indent=2) + "\n")
        return NerfTrainResult(self.run_dir, result.step, result.seconds, result.stopped, train_psnr, test_psnr)
