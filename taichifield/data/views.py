"""Posed images of one scene split: a plain dataclass of tensors (no rays stored)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

__all__ = ["Views"]


@dataclass
class Views:
    """The frames of one split of a scene, with a shared pinhole camera.

    Camera convention: OpenGL / Blender. ``c2w`` maps camera to world coordinates; the camera
    looks down its local ``-z`` axis, ``+y`` is up and ``+x`` right. Pixel ``(px, py)`` has its
    centre at ``(px + 0.5, py + 0.5)`` with ``py`` growing downwards in the image.
    """

    images: torch.Tensor
    """(n, H, W, C) uint8, C = 3 (RGB) or 4 (RGBA, straight alpha). Alpha is kept so training
    can composite on any background (:meth:`rgb`)."""
    c2w: torch.Tensor
    """(n, 4, 4) float32 camera-to-world matrices (rigid)."""
    fx: float
    """Focal length in pixels along x (at this split's resolution)."""
    fy: float
    """Focal length in pixels along y."""
    cx: float
    """Principal point x in pixels (image-edge origin: the image centre is ``W / 2``)."""
    cy: float
    """Principal point y in pixels."""
    width: int
    height: int
    file_names: list[str]
    """Frame file names without folders, e.g. ``"r_0.png"``, in split order."""
    aabb: torch.Tensor
    """(2, 3) float32 scene box ``[min, max]``."""
    near: float
    """Default near distance for ray sampling."""
    far: float
    """Default far distance for ray sampling."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Colour (in [0, 1]) that transparent pixels are composited on by default."""
    distortion: Optional[tuple[float, float, float, float]] = None
    """OpenCV radial-tangential ``(k1, k2, p1, p2)`` or None for an ideal pinhole."""
    source: str = ""
    """The file the views were read from (for messages)."""
    meta: dict = field(default_factory=dict)
    """Format-specific extras (e.g. ``camera_angle_x``, ``aabb_scale``)."""

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def has_alpha(self) -> bool:
        return int(self.images.shape[-1]) == 4

    def rgb(self, background: Optional[Sequence[float] | torch.Tensor] = None,
            index: Optional[torch.Tensor | int | slice] = None) -> torch.Tensor:
        """Float images composited on a background: ``rgb * a + bg * (1 - a)``.

        Args:
            background: (3,) colour in [0, 1]; default :attr:`background`.
            index: optional frame selection (int, slice or index tensor).

        Returns:
            (n, H, W, 3) float32 in [0, 1] (or (H, W, 3) for an int ``index``).
        """
        imgs = self.images if index is None else self.images[index]
        x = imgs.float() / 255.0
        if x.shape[-1] == 3:
            return x
        bg = torch.as_tensor(self.background if background is None else background, dtype=torch.float32)
        a = x[..., 3:4]
        return x[..., :3] * a + bg.to(x.device) * (1.0 - a)

    def intrinsics(self) -> torch.Tensor:
        """(3, 3) float32 pinhole matrix K (image-edge pixel origin)."""
        return torch.tensor([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])
