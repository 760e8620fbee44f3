"""The one hash-grid configuration, shared by the NeRF, SDF and image fields.

Instant-NGP's multiresolution hash encoding (Müller et al. 2022, Sec. 3; tiny-cuda-nn's
``{"otype": "Grid", "type": "Hash", ...}``). Field configs *are* hash-grid configs
(:class:`~taichifield.fields.nerf.NerfConfig`, :class:`~taichifield.fields.sdf.HashGridSDFConfig`,
:class:`~taichifield.fields.image.ImageFieldConfig` inherit from :class:`HashGridConfig`), so the
five names, their meaning, their validation and the encoder they build exist once; each
field only restates the defaults that suit it. Importing this module starts no Taichi.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import InputError

__all__ = ["HashGridConfig"]


@dataclass
class HashGridConfig(Config):
    """Multiresolution hash grid: ``L`` levels of ``T = 2^log2_table_size`` entries with ``F``
    features each, resolutions from ``N_min`` to ``N_max`` in a geometric series (Eq. 2-3)."""

    n_levels: int = 16
    """Hash grid levels L."""
    n_features: int = 2
    """Features per level F."""
    log2_table_size: int = 19
    """log2 of the entries per level T."""
    base_resolution: int = 16
    """Coarsest resolution N_min."""
    max_resolution: int = 2048
    """Finest resolution N_max (over the field's box)."""

    def __post_init__(self) -> None:
        # messages name the option as the CLI spells it (--log2-table-size for log2_table_size)
        for name in ("n_levels", "n_features", "base_resolution", "max_resolution"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, not {getattr(self, name)}")
        if not 1 <= self.log2_table_size <= 30:
            raise InputError(f"--log2-table-size must be in 1..30, not {self.log2_table_size}")

    def hash_grid(self, n_input_dims: int, implementation: str = "taichi") -> Any:
        """The :class:`~taichifield.encoding.HashGridEncoding` this config describes
        (``base_resolution`` capped at ``max_resolution``)."""
        from .hashgrid import HashGridEncoding

        return HashGridEncoding(n_input_dims, self.n_levels, self.n_features, self.log2_table_size,
                                min(self.base_resolution, self.max_resolution), self.max_resolution,
                                implementation=implementation)  # type: ignore[arg-type]
