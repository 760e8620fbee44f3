"""Settings of ``taichifield scene from-mesh`` (:mod:`taichifield.scenes.from_mesh`).

Torch-free, so the CLI takes its defaults and help texts from here without slowing ``--help``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import Config
from ..errors import InputError

__all__ = ["FromMeshConfig"]


@dataclass
class FromMeshConfig(Config):
    """Settings of ``taichifield scene from-mesh``."""

    views: int = 100
    """Training views (cameras on a Fibonacci sphere around the object)."""
    test_views: int = 20
    """Test views (a circle around the object) and as many val views (random on the sphere)."""
    resolution: int = 200
    """Image width = height, pixels."""
    supersample: int = 2
    """s x s rays per edge pixel (adaptive antialiasing; 1: none)."""
    extent: float = 1.0
    """Radius of the ball the mesh is scaled into (scene units; the box is [-1.5, 1.5]^3)."""
    camera_radius: float = 4.0
    """Distance of the cameras from the object's centre."""
    camera_angle_x: float = 0.6911112070083618
    """Horizontal field of view, radians (NeRF-synthetic's)."""
    seed: int = 0
    """Seed of the random val poses."""

    def __post_init__(self) -> None:
        for name in ("views", "test_views", "resolution", "supersample"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not (self.extent > 0 and self.camera_radius > 1.2 * self.extent and 0 < self.camera_angle_x < math.pi):
            raise InputError(f"scene from-mesh: need extent > 0, camera_radius > 1.2 extent and camera_angle_x in "
                             f"(0, pi); got {self.extent}, {self.camera_radius}, {self.camera_angle_x}")
