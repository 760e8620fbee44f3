"""The configuration dataclasses of the fields (architectures stored in checkpoints).

They import neither torch nor Taichi, so the CLI reads their defaults and help texts
without starting either (:class:`taichifield.config.Config`). The hash-grid fields are
:class:`~taichifield.encoding.config.HashGridConfig`'s, shared by the NeRF, SDF and image
fields; each field restates only its own defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from ..config import Config
from ..encoding.config import HashGridConfig
from ..errors import InputError

__all__ = [
    "NerfConfig",
    "NeuSConfig",
    "MLPSDFConfig",
    "SirenSDFConfig",
    "HashGridSDFConfig",
    "ImageFieldConfig",
    "IMAGE_ENCODINGS",
    "SDF_MODEL_NAMES",
    "MODEL_ALIASES",
    "canonical_model",
]

IMAGE_ENCODINGS = ("hashgrid", "fourier", "frequency", "none")
"""The image field's input encodings."""
SDF_MODEL_NAMES = ("hashgrid", "mlp", "siren")
"""The SDF models of :data:`taichifield.fields.sdf.SDF_MODELS`."""


@dataclass
class NerfConfig(HashGridConfig):
    """Architecture of :class:`NerfField` (stored in checkpoints); the hash-grid fields are
    :class:`~taichifield.encoding.config.HashGridConfig`'s, with its defaults (Instant-NGP's)."""

    encoding: Literal["hashgrid", "frequency"] = "hashgrid"
    """Position encoding: Instant-NGP hash grid, or NeRF's frequency encoding."""
    hidden: int = 64
    """Width of the hash-grid model's MLPs."""
    density_layers: int = 1
    """Hidden layers of the density MLP."""
    color_layers: int = 2
    """Hidden layers of the colour MLP."""
    geo_feat_dim: int = 15
    """Geometry feature passed from the density to the colour MLP."""
    sh_degree: int = 4
    """Spherical-harmonics bands of the view direction (hash-grid model)."""
    pos_frequencies: int = 10
    """Frequency model: frequencies of the position encoding."""
    dir_frequencies: int = 4
    """Frequency model: frequencies of the direction encoding."""
    freq_hidden: int = 128
    """Frequency model: width of the density MLP."""
    freq_layers: int = 4
    """Frequency model: hidden layers of the density MLP."""
    implementation: Literal["taichi", "torch"] = "taichi"
    """Encoding kernels: Taichi, or the pure-torch references."""
    mlp: Literal["fused", "torch"] = "torch"
    """Hash-grid model: both MLPs as one autograd op (``fields.mlp.nerf_head``), or the
    ``nn.Sequential`` layers (the reference). Same weights; the frequency model always uses layers."""
    contraction: Optional[bool] = None
    """Unbounded scenes: positions outside the scene box are contracted (mip-NeRF 360, inf norm)
    into the cube of twice its size, which the hash grid and the occupancy grid cover; rays reach
    1e3 box sizes. None: on for captures with background (instant-ngp ``aabb_scale`` > 1, COLMAP
    scenes), whose box then shrinks to the foreground (the loader's box / ``aabb_scale``); off
    for objects. Checkpoints store the value chosen."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.contraction is not None and not isinstance(self.contraction, bool):
            raise InputError(f"contraction {self.contraction!r}: choose true, false or none (automatic)")
        if self.encoding not in ("hashgrid", "frequency"):
            raise InputError(f"--encoding {self.encoding!r}: choose hashgrid or frequency")
        if self.mlp not in ("fused", "torch"):
            raise InputError(f"mlp {self.mlp!r}: choose fused or torch")
        if self.implementation not in ("taichi", "torch"):
            raise InputError(f"implementation {self.implementation!r}: choose taichi or torch")


@dataclass
class NeuSConfig(HashGridConfig):
    """Architecture of :class:`~taichifield.fields.neus.NeuSField` (stored in checkpoints): an SDF
    hash grid + geometric-init MLP with a feature output, a colour MLP and NeuS's learned sharpness."""

    log2_table_size: int = 17
    """log2 of the entries per level T."""
    max_resolution: int = 1024
    """Finest grid resolution over the scene box (sets the finest finite-difference step)."""
    hidden: int = 64
    """Width of the SDF and colour MLPs."""
    sdf_layers: int = 1
    """Hidden layers of the SDF MLP (Softplus beta=100, geometric init)."""
    color_layers: int = 2
    """Hidden layers of the colour MLP."""
    feature_dim: int = 15
    """SDF feature passed to the colour MLP."""
    sh_degree: int = 4
    """Spherical-harmonics bands of the view direction."""
    radius: float = 0.5
    """Radius of the initial sphere, as a fraction of the scene box's half side."""
    init_variance: float = 0.3
    """Initial NeuS variance v; the sharpness is inv_s = exp(10 v)."""
    fd_scheme: Literal["tetrahedron", "central"] = "tetrahedron"
    """Finite differences of the normals and the eikonal term: tetrahedron (4 SDF evaluations per
    sample, 5 with the curvature term) or central (7, second-order accurate)."""
    implementation: Literal["taichi", "torch"] = "taichi"
    """Encoding kernels: Taichi, or the pure-torch references."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fd_scheme not in ("tetrahedron", "central"):
            raise InputError(f"fd_scheme {self.fd_scheme!r}: choose tetrahedron or central")
        for name in ("hidden", "sdf_layers", "feature_dim"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, not {getattr(self, name)}")
        if not 0 < self.radius < 1:
            raise InputError(f"radius must be in (0, 1), not {self.radius}")
        if self.implementation not in ("taichi", "torch"):
            raise InputError(f"implementation {self.implementation!r}: choose taichi or torch")


@dataclass
class MLPSDFConfig(Config):
    """Geometric-init MLP (``--model mlp``, formerly ``relu``)."""

    hidden: int = 128
    """Width of every hidden layer (chosen with bench/sdf_quality.py; figures in the README)."""
    layers: int = 4
    """Number of hidden layers."""
    activation: str = "softplus"
    """``softplus`` (beta=100, IGR's smooth ReLU) or ``relu``."""
    radius: float = 0.5
    """Radius of the initial sphere (normalised coordinates)."""
    n_frequencies: int = 0
    """NeRF frequency encoding octaves of the input (0: raw xyz only)."""
    skip: int = 0
    """IGR's skip connection: concatenate the (encoded) input, divided by sqrt(2) together
    with the features, to the input of hidden layer ``skip`` (1 <= skip < layers; 0: none)."""
    init_fit: bool = False
    """Refit the last layer of the geometric init by ridge least squares to ``|x|`` (see
    :func:`_fit_last_layer`): the finite-width SAL init is only a noisy sphere."""


@dataclass
class SirenSDFConfig(Config):
    """SIREN (``--model siren``)."""

    hidden: int = 256
    """Width of every hidden layer."""
    layers: int = 3
    """Number of hidden sine layers."""
    omega0: float = 30.0
    """Frequency factor of the sine activations."""


@dataclass
class HashGridSDFConfig(HashGridConfig):
    """Hash grid + small MLP (``--model hashgrid``); the hash-grid fields are
    :class:`~taichifield.encoding.config.HashGridConfig`'s, with the defaults an SDF wants."""

    log2_table_size: int = 16
    """log2 of the entries per level (chosen with bench/sdf_quality.py: a smaller table makes
    each Adam step cheaper; figures in the README)."""
    max_resolution: int = 512
    """Finest grid resolution (sets the finite-difference step; 512 suits meshes up to 512^3)."""
    hidden: int = 64
    """MLP width."""
    layers: int = 2
    """MLP hidden layers."""
    radius: float = 0.5
    """Radius of the initial sphere."""
    implementation: str = "taichi"
    """Hash grid kernel: ``taichi`` or ``torch`` (reference)."""


MODEL_ALIASES: dict[str, str] = {"relu": "mlp"}
"""Old names still accepted (``relu`` trained a Softplus MLP by default: it is ``mlp`` now)."""


def canonical_model(name: str) -> str:
    """The registry name of an SDF model, resolving :data:`MODEL_ALIASES`."""
    return MODEL_ALIASES.get(name, name)


@dataclass
class ImageFieldConfig(HashGridConfig):
    """Architecture of an :class:`ImageField` (stored in checkpoints); the hash-grid fields are
    :class:`~taichifield.encoding.config.HashGridConfig`'s (used with ``encoding="hashgrid"``)."""

    encoding: str = "hashgrid"
    """One of :data:`IMAGE_ENCODINGS`."""
    hidden: int = 64
    """Width of the hidden layers."""
    n_hidden_layers: int = 2
    """Number of hidden layers (ReLU)."""
    log2_table_size: int = 15
    """Hash grid: log2 of the per-level table size T (2^15 is ample for images up to ~180x180 at full density)."""
    max_resolution: int = 512
    """Hash grid: finest resolution N_max (the trainer sets it to the image's larger side)."""
    fourier_features: int = 256
    """Fourier features: mapping size m (output 2m)."""
    fourier_sigma: float = 10.0
    """Fourier features: std of B."""
    n_frequencies: int = 8
    """Frequency encoding: K octaves."""
    seed: int = 0
    """Seed of the Fourier matrix B."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoding not in IMAGE_ENCODINGS:
            raise InputError(f"unknown encoding {self.encoding!r}: choose one of {', '.join(IMAGE_ENCODINGS)}")
