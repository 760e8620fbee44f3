"""The trainers' configuration dataclasses, one per method, in one torch-free module.

Defaults and help texts live here once: ``taichifield train nerf|sdf|image`` reads both from
these classes (:meth:`taichifield.config.Config.field_doc`), the trainers take them, and the
checkpoints store them (:meth:`~taichifield.config.Config.to_dict`). Validation is in
``__post_init__`` and raises one-line :class:`~taichifield.errors.InputError` exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..config import Config, check_positive as _positive
from ..errors import InputError
from ..fields.configs import SDF_MODEL_NAMES, ImageFieldConfig, NerfConfig, NeuSConfig, canonical_model

__all__ = ["NerfTrainConfig", "NeuSTrainConfig", "SDFTrainConfig", "ImageTrainConfig", "MODEL_DEFAULTS", "DEFAULT_LR", "LOSSES"]

LOSSES = ("igr", "siren", "deepsdf", "occupancy")
"""The SDF losses of :mod:`taichifield.train.losses`."""


def _not_negative(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and not value >= 0:
            raise InputError(f"--{name.replace('_', '-')} must be >= 0, not {value}")


PROGRESS_WIDTH = 400
"""Largest width in pixels of the progress pictures' held-out view (the training views'
downscale times the smallest integer factor that brings it to at most this)."""

DISTORTION_WEIGHT = 0.01
"""``NerfTrainConfig.distortion_weight`` of contracted scenes (mip-NeRF 360's lambda)."""


@dataclass
class NerfTrainConfig(Config):
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
    model: NerfConfig = field(default_factory=NerfConfig)
    """Field architecture."""
    lr: float = 1e-2
    """Adam learning rate (Instant-NGP)."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas (Instant-NGP)."""
    eps: float = 1e-15
    """Adam epsilon (Instant-NGP)."""
    weight_decay: float = 1e-6
    """L2 weight decay on the MLP weights only (not the hash table)."""
    lr_decay: bool = True
    """Multiply lr by 0.33 at 50%, 75% and 90% of the run (Instant-NGP/nerfacc schedule): of
    ``steps``, or of ``time_budget`` when that ends the run first (``train.loop.RunProgress``)."""
    loss: Literal["mse", "huber"] = "mse"
    """Photometric loss; ``huber`` uses delta 0.1."""
    distortion_weight: float | None = None
    """Weight of mip-NeRF 360's distortion loss (:mod:`taichifield.render.distortion`) on the
    distance ``s = t / (t + h)``, ``h`` half the field's largest box side; 0: off. None:
    :data:`DISTORTION_WEIGHT` with scene contraction, where it removes the fog of real captures
    (beer, 600 s: 29.12 dB held out against 27.91 without), 0 for bounded scenes."""
    pose_refinement: bool = False
    """Learn an SE(3) correction of every training camera with the field
    (:mod:`taichifield.train.pose_refine`); for captures whose poses are slightly off."""
    appearance: bool = False
    """Learn a per-photo affine colour transform (exposure, white balance;
    :mod:`taichifield.train.appearance`); held-out views get the average photo's."""
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
    """Marching step = longest box side * sqrt(3) / render_steps (Instant-NGP: sqrt(3)/1024 of the unit box)."""
    cull_samples: bool | None = None
    """Before the full field runs, drop marched samples hidden behind surfaces (a no-grad
    density pass; fewer MLP evaluations, one more host sync). None: on for the CPU, where
    compute dominates and syncs are free; off on a GPU (one sync per step)."""
    random_background: bool = True
    """Composite RGBA training images on a random colour per ray."""
    eval_views: int = 4
    """Test views rendered at the end for ``metrics.json`` (0: skip)."""
    checkpoint_every: int = 1000
    """Steps between periodic checkpoints."""
    checkpoint_seconds: float = 120.0
    """Seconds between periodic checkpoints."""
    progress_images: bool = True
    """With each checkpoint, write ``RUN/progress/step_XXXXX.png``: test view 0 (at most :data:`PROGRESS_WIDTH` px
    wide) rendered by the current field, next to its ground truth; its PSNR is drawn in
    ``curves.png`` as ``test_psnr``."""

    def __post_init__(self) -> None:
        _positive(steps=self.steps, downscale=self.downscale, lr=self.lr, init_rays=self.init_rays,
                  max_rays=self.max_rays, render_steps=self.render_steps,
                  target_samples=self.target_samples, grid_resolution=self.grid_resolution)
        _not_negative(time_budget=self.time_budget, eval_views=self.eval_views, distortion_weight=self.distortion_weight)
        if self.loss not in ("mse", "huber"):
            raise InputError(f"--loss {self.loss!r}: choose mse or huber")



@dataclass
class NeuSTrainConfig(Config):
    """Everything a NeuS run needs (stored in the checkpoint; ``--resume`` reuses it). The
    recipe is instant-nsr-pl's (hash-grid NeuS with an occupancy grid), scaled to the CPU."""

    scene: str
    """Scene folder (Blender or instant-ngp format, or a procedural ``scene.json`` folder)."""
    out: str | None = None
    """Run folder (``ckpt.pt``, ``metrics.json``); default ``runs/neus-<scene>-<timestamp>``."""
    steps: int = 20000
    """Total optimisation steps."""
    time_budget: float | None = None
    """Stop (and save) after this many seconds of training."""
    downscale: int = 1
    """Integer image downscale factor."""
    seed: int = 0
    """Seed of the torch RNG (rays, backgrounds, grid updates)."""
    model: NeuSConfig = field(default_factory=NeuSConfig)
    """Field architecture."""
    lr: float = 1e-2
    """Adam learning rate of the hash grid and MLPs (instant-nsr-pl)."""
    variance_lr: float = 1e-3
    """Adam learning rate of NeuS's variance (instant-nsr-pl)."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas."""
    eps: float = 1e-15
    """Adam epsilon."""
    warmup_steps: int = 200
    """Linear learning-rate warm-up steps; then exponential decay to 0.1x at the end of the run
    (the last step, or the end of ``time_budget`` when that comes first)."""
    eikonal_weight: float = 0.1
    """Weight of the eikonal term mean((|grad sdf| - 1)^2) over the rendered samples (NeuS: 0.1)."""
    curvature_weight: float = 0.0
    """Weight of Neuralangelo's curvature term mean(|Laplacian sdf|) over the samples (0: off;
    Neuralangelo uses 5e-4, ramped up over its first steps)."""
    mask_weight: float = 0.1
    """Images with alpha: weight of the mask term BCE(opacity, alpha) (NeuS's mask loss; 0: off)."""
    cos_anneal_steps: int = 500
    """NeuS's cos annealing: the ratio r grows linearly from 0 to 1 over these steps (0: r = 1 throughout)."""
    fd_step_start: float = 16.0
    """Neuralangelo's coarse-to-fine numerical gradient: the finite-difference step starts at this
    many finest-level cells and shrinks geometrically to one cell by ``fd_anneal_fraction`` of the run."""
    fd_anneal_fraction: float = 0.5
    """Fraction of the run (of ``steps``, or of ``time_budget`` when that ends the run first) after
    which the finite-difference step is one finest-level cell."""
    target_samples: int | None = None
    """Samples per step (the batch budget); None: 2^18 on CUDA, 2^15 on the CPU."""
    init_rays: int = 256
    """Rays in the first step (then adapted to ``target_samples``)."""
    max_rays: int = 1 << 14
    """Upper bound on rays per step."""
    stratified_samples: int = 64
    """Samples per ray across the scene box before the occupancy grid is built."""
    grid_start: int = 16
    """First step at which the occupancy grid is built from the SDF (stratified sampling before)."""
    grid_resolution: int | None = None
    """Occupancy grid cells per side; None: 128 on CUDA, 64 on the CPU."""
    render_steps: int = 512
    """Marching step = longest box side * sqrt(3) / render_steps."""
    random_background: bool = True
    """Composite RGBA training images on a random colour per ray (else white)."""
    eval_views: int = 4
    """Test views rendered at the end for ``metrics.json`` (0: skip)."""
    checkpoint_every: int = 1000
    """Steps between periodic checkpoints."""
    checkpoint_seconds: float = 120.0
    """Seconds between periodic checkpoints."""
    progress_images: bool = True
    """With each checkpoint, write ``RUN/progress/step_XXXXX.png``: test view 0 (at most :data:`PROGRESS_WIDTH` px
    wide), ground truth | colour | normals; its PSNR is drawn in ``curves.png`` as ``test_psnr``."""

    def __post_init__(self) -> None:
        _positive(steps=self.steps, downscale=self.downscale, lr=self.lr, variance_lr=self.variance_lr,
                  init_rays=self.init_rays, max_rays=self.max_rays, render_steps=self.render_steps,
                  target_samples=self.target_samples, grid_resolution=self.grid_resolution,
                  stratified_samples=self.stratified_samples, fd_step_start=self.fd_step_start)
        _not_negative(time_budget=self.time_budget, eval_views=self.eval_views, eikonal_weight=self.eikonal_weight,
                      curvature_weight=self.curvature_weight, mask_weight=self.mask_weight, cos_anneal_steps=self.cos_anneal_steps, warmup_steps=self.warmup_steps)
        if not 0 < self.fd_anneal_fraction <= 1:
            raise InputError(f"fd_anneal_fraction must be in (0, 1], not {self.fd_anneal_fraction}")


#: per-model values of the ``SDFTrainConfig`` (per registry name) fields left at None (measured on the bunny,
#: bench/sdf_quality.py). The hash grid needs the far-field term and more uniform samples:
#: without them it grows spurious shells away from the data (Chamfer 0.03 instead of 0.0011).
MODEL_DEFAULTS: dict[str, dict[str, float]] = {
    "mlp": {"lr": 3e-3, "uniform_fraction": 0.125, "far_weight": 0.0},
    "siren": {"lr": 1e-4, "uniform_fraction": 0.125, "far_weight": 0.0},
    "hashgrid": {"lr": 1e-2, "uniform_fraction": 0.5, "far_weight": 1.0},
}


@dataclass
class SDFTrainConfig(Config):
    """Options of ``taichifield train sdf``; the defaults are the measured CPU choice."""

    loss: str = "igr"
    """igr | siren | deepsdf | occupancy."""
    model: str = "hashgrid"
    """hashgrid (hash grid + small MLP, the default) | mlp (IGR's geometric-init Softplus MLP;
    relu is its old name) | siren."""
    steps: int = 5000
    """Optimisation steps."""
    time_budget: float | None = None
    """Stop (and save) after this many seconds of training."""
    batch_size: int = 512
    """Surface points per step (plus as many near-surface samples and ``uniform_fraction``
    times as many uniform ones)."""
    lr: float | None = None
    """Adam learning rate (None: the model's default, :data:`MODEL_DEFAULTS`)."""
    lr_final_ratio: float = 0.01
    """Learning rate at the end of the run, relative to ``lr`` (chosen with bench/sdf_quality.py;
    see the README's benchmark table)."""
    uniform_fraction: float | None = None
    """Uniform samples in the cube per surface sample (None: the model's default; IGR uses 1/8)."""
    surface_weight: float = 10.0
    """igr: weight of the on-surface ``|u|`` term (IGR: 1). At 1 the normal term outweighs it
    and the fitted zero level set sits ~4e-5 of the box diagonal inside the input points
    (median field value at them); 10 measured 0.73x Poisson's exact Chamfer on the bunny
    instead of 1.00x (bench/sdf_quality.py, 300 s, 512^3; 30: 0.77x)."""
    eikonal_weight: float = 0.1
    """igr: weight lambda of the eikonal term (IGR: 0.1)."""
    far_weight: float | None = None
    """igr: weight of an L1 term pulling the field at the uniform samples to their signed
    distance to the input points (:func:`~taichifield.train.losses.signed_distance_targets`;
    None: the model's default). The eikonal term alone leaves the far field's sign free,
    which a hash grid (unlike a smooth MLP) uses to grow spurious shells."""
    sigma_k: int = 50
    """Near-surface Gaussian std = distance to this nearest neighbour (IGR's local sigma)."""
    n_samples: int = 100_000
    """Points sampled from a mesh input."""
    k_normals: int = 16
    """Neighbours for normal estimation when the input has no normals."""
    model_options: dict[str, Any] = field(default_factory=dict)
    """Overrides of the model's config dataclass (e.g. {"hidden": 128})."""
    seed: int = 0
    """Seed of sampling and initialisation."""
    checkpoint_every: int = 500
    """Steps between periodic checkpoints."""
    progress_images: bool = True
    """With each checkpoint, render the current surface into ``RUN/progress/step_XXXXX.png``
    (160 px, sphere traced)."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InputError(f"--loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if canonical_model(self.model) not in SDF_MODEL_NAMES:
            raise InputError(f"--model {self.model!r}: choose one of {', '.join(SDF_MODEL_NAMES)}")
        _positive(steps=self.steps, batch_size=self.batch_size, lr=self.lr)
        _not_negative(time_budget=self.time_budget)


DEFAULT_LR: dict[str, float] = {"hashgrid": 1e-2, "fourier": 2e-3, "frequency": 2e-3, "none": 2e-3}
"""Image fitting: Adam learning rate per encoding when ``ImageTrainConfig.lr`` is None."""


@dataclass
class ImageTrainConfig(Config):
    """One image-fitting run."""

    photo: str
    """Image file (PNG/JPEG...; RGBA is composited on white, grey is replicated)."""
    out: str
    """Run folder."""
    steps: int = 1000
    """Adam steps."""
    lr: float | None = None
    """Learning rate; None picks a per-encoding default (:data:`DEFAULT_LR`)."""
    batch_size: int = 1 << 14
    """Pixels per step, drawn at random (all pixels, every step, when the image has fewer)."""
    seed: int = 0
    """Seed of the weights, the Fourier matrix and the pixel batches."""
    field: ImageFieldConfig = field(default_factory=ImageFieldConfig)
    """Architecture; ``max_resolution`` is set to the image's larger side."""

    def __post_init__(self) -> None:
        _positive(steps=self.steps, batch_size=self.batch_size, lr=self.lr)
