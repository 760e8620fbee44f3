"""Fit a neural SDF to oriented points: ``train sdf`` and the checkpoint it writes.

Pipeline: :func:`~taichifield.data.points.load_oriented_points` -> normalise into
``[-1, 1]^3`` (:class:`~taichifield.data.points.Normalization`, stored in the checkpoint's
``meta["normalization"]``) -> a field of :mod:`taichifield.fields.sdf` -> a loss of
:mod:`taichifield.train.losses` -> Adam under :func:`~taichifield.train.loop.run_loop`
(time budget, periodic atomic checkpoints, SIGTERM-safe, exact ``--resume``).

The learning rate decays exponentially to ``lr_final_ratio * lr`` with the run's
progress, ``max(step / steps, seconds / time_budget)``, so a time-budgeted run also
ends on a small learning rate.

Example:
    >>> cfg = SDFTrainConfig(steps=300)
    >>> result = train_sdf("bunny.ply", "runs/bunny", cfg)
    >>> sdf = load_sdf("runs/bunny/ckpt.pt")
    >>> values = sdf(torch.tensor([[0.0, 0.1, 0.0]]))   # input coordinates and units
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..data.points import Normalization, OrientedPoints, load_oriented_points
from ..fields.sdf import SDFField, build_sdf_field, canonical_model
from ..pipelines.sdf import SDFModel, field_device, load_sdf
from . import losses as L
from .checkpoint import load_checkpoint, save_checkpoint
from ..images import write_image
from .configs import MODEL_DEFAULTS, SDFTrainConfig
from .curves import RunCurves
from .loop import LoopResult, NonFiniteGuard, RunProgress, adam, log_interval, lr_schedule, rng_state, run_loop, set_rng_state

__all__ = ["SDFTrainConfig", "SDFModel", "SDFTrainer", "train_sdf", "load_sdf", "MODEL_DEFAULTS", "field_device"]

log = logging.getLogger(__name__)

#: uniform samples with precomputed targets for the far-field term (~3 s once on 2 cores)
FAR_POOL = 1 << 18


class _Sampler:
    """Holds the normalised oriented points and draws each step's batch."""

    def __init__(self, data: OrientedPoints, norm: Normalization, cfg: SDFTrainConfig) -> None:
        from scipy.spatial import cKDTree

        pts = norm.to_unit(data.points)
        self.pts = torch.from_numpy(pts)
        self.nrm = torch.from_numpy(np.ascontiguousarray(data.normals, dtype=np.float32))
        self.tree = cKDTree(pts)
        k = int(min(cfg.sigma_k + 1, len(pts)))
        d, _ = self.tree.query(pts, k=k, workers=-1)
        sigma = np.asarray(d).reshape(len(pts), -1)[:, -1]
        self.sigma = torch.from_numpy(np.clip(sigma, 1e-3, 0.1).astype(np.float32))
        self.cfg = cfg
        self.pool: torch.Tensor | None = None
        self.pool_sdf: torch.Tensor | None = None
        self.far_pool = torch.zeros(0, 3)
        self.far_sdf = torch.zeros(0)

    def to(self, device: torch.device) -> "_Sampler":
        """Move the point and target pools to ``device`` (built on the CPU: k-d tree queries),
        so each batch is drawn there with a generator of that device."""
        for name in ("pts", "nrm", "sigma", "pool", "pool_sdf", "far_pool", "far_sdf"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self

    def surface(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.pts), (self.cfg.batch_size,), generator=gen, device=self.pts.device)
        return self.pts[idx], self.nrm[idx], self.sigma[idx]

    def build_pool(self, n: int, gen: torch.Generator) -> None:
        """Samples with signed distance targets for deepsdf/occupancy (see losses module notes)."""
        idx = torch.randint(len(self.pts), (n,), generator=gen)
        near = L.sample_off_surface(self.pts[idx], self.sigma[idx], 0, gen)
        wide = L.sample_off_surface(self.pts[idx[: n // 4]], torch.tensor(0.05), n // 8, gen)
        q = torch.cat([near, wide]).numpy()
        self.pool = torch.from_numpy(q)
        self.pool_sdf = self._signed_distance(q)  # pools are built on the CPU, before .to(device)

    def build_far_pool(self, n: int, gen: torch.Generator) -> None:
        """Uniform samples in the cube with their signed distance targets, computed once:
        a k-d tree query far from the data costs ~30 us per point, too slow per step."""
        self.far_pool = torch.rand((n, 3), generator=gen) * 2 - 1
        self.far_sdf = self._signed_distance(self.far_pool.numpy())

    def far(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return _draw(self.far_pool, self.far_sdf, n, gen)

    def targets(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.pool is not None and self.pool_sdf is not None
        return _draw(self.pool, self.pool_sdf, self.cfg.batch_size * 2, gen)

    def _signed_distance(self, q: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(L.signed_distance_targets(q, self.pts.cpu().numpy(), self.nrm.cpu().numpy(), tree=self.tree))


def _draw(points: torch.Tensor, sdf: torch.Tensor, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random (point, target) pairs of a precomputed pool."""
    idx = torch.randint(len(points), (n,), generator=gen, device=points.device)
    return points[idx], sdf[idx]


def _n_uniform(cfg: SDFTrainConfig) -> int:
    """Uniform samples per step (``uniform_fraction`` resolved)."""
    return max(1, int(cfg.batch_size * cfg.uniform_fraction))  # type: ignore[operator]


LossFn = Callable[[], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def _loss_fn(model: SDFField, sampler: _Sampler, cfg: SDFTrainConfig, gen: torch.Generator) -> LossFn:
    """The step's loss on a fresh batch; batches are drawn on the sampler's device (the
    field's) with ``gen``, a generator of that device. Terms stay tensors (no host sync)."""
    n_uni = _n_uniform(cfg)

    def igr() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, n, s = sampler.surface(gen)
        if cfg.far_weight:  # uniform samples from the pool that has their targets
            far, target = sampler.far(n_uni, gen)
            off = torch.cat([L.sample_off_surface(x, s, 0, gen), far])
        else:
            off = L.sample_off_surface(x, s, n_uni, gen)
        u, g = model.value_and_gradient(torch.cat([x, off]))
        b = len(x)
        loss, terms = L.igr_loss(u[:b], g[:b], n, g[b:], lam=cfg.eikonal_weight, surface_weight=cfg.surface_weight)
        if cfg.far_weight:
            far_term = (u[-n_uni:] - target).abs().mean()
            loss = loss + cfg.far_weight * far_term
            terms["far"] = far_term.detach()
        return loss, terms

    def siren() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, n, _ = sampler.surface(gen)  # SIREN: off-surface samples uniform in the cube
        off = torch.rand((len(x), 3), generator=gen, device=x.device) * 2 - 1
        u, g = model.value_and_gradient(torch.cat([x, off]))
        b = len(x)
        return L.siren_loss(u[:b], g[:b], n, u[b:], g[b:])

    def deepsdf() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        q, s = sampler.targets(gen)
        return L.deepsdf_loss(model(q), s)

    def occupancy() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        q, s = sampler.targets(gen)
        return L.occupancy_loss(model(q), s < 0)

    return {"igr": igr, "siren": siren, "deepsdf": deepsdf, "occupancy": occupancy}[cfg.loss]


def _check_config(cfg: SDFTrainConfig) -> None:
    """Validate again after a resume replaced fields (the dataclass validates at construction)."""
    cfg.__post_init__()


def train_sdf(
    points: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: SDFTrainConfig | None = None,
    *,
    resume: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    on_save: Callable[[int, Path], None] | None = None,
) -> LoopResult:
    """Train an SDF on ``points`` and write ``out_dir/ckpt.pt`` (atomically, periodically).

    Args:
        points: any input of :func:`~taichifield.data.points.load_oriented_points`.
        out_dir: run folder.
        config: options; ``resume=True`` continues ``out_dir/ckpt.pt`` with ITS config
            (only ``steps`` and ``time_budget`` are taken from ``config``).
        on_step: ``on_step(step, stats)`` after each step (progress bars).
        on_save: ``on_save(step, ckpt_path)`` after each checkpoint (e.g. a preview render),
            run under ``torch.random.fork_rng`` so it cannot change the training.

    Returns:
        the loop result (steps done, seconds, why it stopped, last loss terms).
    """
    cfg = config or SDFTrainConfig()
    out = Path(out_dir)
    ckpt_path = out / "ckpt.pt"
    ckpt = None
    if resume:
        ckpt = load_checkpoint(ckpt_path, "sdf")
        saved = ckpt["config"]
        cfg = SDFTrainConfig.from_dict(saved)
        if saved.get("model_config"):  # rebuild exactly the saved architecture
            cfg.model_options = {k: v for k, v in saved["model_config"].items() if k != "model"}
        cfg.steps = (config or cfg).steps
        cfg.time_budget = (config or cfg).time_budget
        cfg.progress_images = (config or cfg).progress_images
    _check_config(cfg)
    # never mutate the caller's config; an old model name (relu) is recorded by its registry name
    cfg = replace(cfg, model=canonical_model(cfg.model), model_options=dict(cfg.model_options))
    for name, value in MODEL_DEFAULTS[cfg.model].items():  # resolved here, so the checkpoint records them
        if getattr(cfg, name) is None:
            setattr(cfg, name, value)
    trainer = SDFTrainer(points, out, cfg, ckpt, on_save=on_save)
    result = trainer.run(on_step)
    log.info("trained %d steps in %.1f s (%s)", result.step, result.seconds, result.stopped)
    return result


class SDFTrainer:
    """The state of one SDF run, named: model, sampler, optimiser, non-finite guard, learning
    rate schedule and clock. :func:`train_sdf` builds one and calls :meth:`run`.

    The learning rate is ``lr * lr_final_ratio ** progress`` times the guard's back-off
    (:func:`~taichifield.train.loop.lr_schedule`), ``progress`` a
    :class:`~taichifield.train.loop.RunProgress` (steps, or the time budget when it ends the run
    first). Batches are drawn on the field's device from a generator of that device; each step
    returns its loss terms as tensors (read when the loop logs).
    """

    def __init__(self, points: str | os.PathLike[str], out: Path, cfg: SDFTrainConfig,
                 ckpt: dict[str, Any] | None, on_save: Callable[[int, Path], None] | None = None) -> None:
        self.points, self.cfg, self.ckpt_path, self.on_save = points, cfg, out / "ckpt.pt", on_save
        self.curves = RunCurves(out, cfg.steps, title=f"sdf [{Path(points).name}]")
        torch.manual_seed(cfg.seed)
        data = load_oriented_points(points, n_samples=cfg.n_samples, k_normals=cfg.k_normals, seed=cfg.seed)
        self.norm = Normalization.from_dict(ckpt["meta"]["normalization"]) if ckpt else Normalization.fit(data.points)
        self.device = field_device(cfg.model)
        self.model = build_sdf_field(cfg.model, **cfg.model_options).to(self.device)
        self.sampler = _Sampler(data, self.norm, cfg)
        if cfg.loss == "igr" and cfg.far_weight:
            n_far = cfg.steps * _n_uniform(cfg)  # draws the run can make
            self.sampler.build_far_pool(min(FAR_POOL, max(4096, n_far)), torch.Generator().manual_seed(cfg.seed + 2))
        if cfg.loss in ("deepsdf", "occupancy"):
            self.sampler.build_pool(max(200_000, 2 * len(self.sampler.pts)), torch.Generator().manual_seed(cfg.seed + 1))
        self.sampler.to(self.device)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.opt = adam(self.model.parameters(), lr=float(cfg.lr))  # type: ignore[arg-type]  # resolved
        self.start, self.elapsed0 = 0, 0.0
        lr_scale, progress = 1.0, None
        if ckpt is not None:
            self.model.load_state_dict(ckpt["state"])
            if ckpt.get("optimizer"):
                self.opt.load_state_dict(ckpt["optimizer"])
            set_rng_state(ckpt.get("rng"), self.gen)
            self.start, self.elapsed0 = int(ckpt["step"]), float(ckpt["meta"].get("train_seconds", 0.0))
            lr_scale = float(ckpt["meta"].get("lr_scale", 1.0))
            progress = ckpt["meta"].get("progress")
        self.guard = NonFiniteGuard(self.opt, lr_scale=lr_scale)
        self.t0 = time.monotonic()
        self.progress = RunProgress(cfg.steps, cfg.time_budget, start=progress, start_step=self.start)
        self.scheduler = lr_schedule(self.opt, float(cfg.lr), self.lr_factor, self.guard, self.start)  # type: ignore[arg-type]

        self.loss_fn = _loss_fn(self.model, self.sampler, cfg, self.gen)

    def lr_factor(self, step: int) -> float:
        """The schedule's factor for ``step`` (before the guard's back-off)."""
        return self.cfg.lr_final_ratio ** self.progress(step)

    def step(self, step: int) -> dict[str, torch.Tensor]:
        loss, terms = self.loss_fn()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.guard.step(loss)
        self.scheduler.step()
        return {"loss": loss.detach(), **terms}

    def save(self, step: int) -> None:
        cfg = self.cfg
        meta = {
            "normalization": self.norm.as_dict(),
            "source": str(self.points),
            "n_points": int(len(self.sampler.pts)),
            "train_seconds": self.elapsed0 + time.monotonic() - self.t0,
            "lr_scale": self.guard.lr_scale,
            "progress": self.progress.last,
        }
        conf = asdict(cfg) | {"model_config": self.model.config_dict()}
        save_checkpoint(self.ckpt_path, "sdf", conf, self.model.state_dict(), optimizer=self.opt.state_dict(),
                        rng=rng_state(self.gen), step=step, meta=meta)
        self.curves.write()
        if self.cfg.progress_images:
            self.preview(self.ckpt_path.parent / "progress" / f"step_{step:05d}.png")
        if self.on_save is not None:
            with self._rng_aside():
                self.on_save(step, self.ckpt_path)

    def _rng_aside(self) -> Any:
        """A preview render or a user's hook runs here: it cannot shift the training's random stream."""
        return torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [])

    def preview(self, path: Path) -> None:
        """A 160 px sphere-traced picture of the current surface (``SDFModel.render``, which
        leaves the field's train/eval mode as it found it)."""
        with self._rng_aside():
            write_image(path, SDFModel(self.model, self.norm).render(160, 160, azimuth=30.0, elevation=20.0))

    def run(self, on_step: Callable[[int, dict[str, float]], None] | None = None) -> LoopResult:
        """Train; with ``progress_images`` also render the final surface into ``RUN/preview.png``."""
        result = run_loop(
            self.step, start_step=self.start, total_steps=self.cfg.steps, time_budget=self.cfg.time_budget,
            save=self.save, checkpoint_every=self.cfg.checkpoint_every, on_step=self.curves.on_step(on_step),
            guard=self.guard, log_every=log_interval(self.device),
        )
        if self.cfg.progress_images:
            self.preview(self.ckpt_path.parent / "preview.png")
        return result
