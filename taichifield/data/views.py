"""Posed images of one scene split: a plain dataclass of tensors (no rays stored).

Cameras are pinholes with optional OpenCV ``(k1, k2, p1, p2)`` distortion
(:mod:`taichifield.cameras`). All views share one camera (the scalars ``fx .. cy`` and
``distortion``) unless ``cameras`` holds one row per view (a COLMAP model with a camera per
image, per-frame intrinsics in a ``transforms.json``); :meth:`Views.camera` and
:meth:`Views.ray_cameras` are the one place that tells the two apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch

__all__ = ["Views", "Camera", "camera_fields"]

Camera = tuple[float, float, float, float, Optional[tuple[float, float, float, float]]]
"""``(fx, fy, cx, cy, distortion)`` of one view, in pixels; distortion OpenCV ``(k1, k2, p1, p2)`` or None."""


def camera_fields(rows: Sequence[Sequence[float]] | np.ndarray, downscale: int = 1) -> dict[str, Any]:
    """The :class:`Views` camera fields of per-view ``fx, fy, cx, cy, k1, k2, p1, p2`` rows.

    Args:
        rows: (n, 8) intrinsics at the images' full resolution (principal point with the
            image-edge origin), one row per view in split order.
        downscale: the integer factor the images were reduced by: pixel quantities divide by it.

    Returns:
        ``fx, fy, cx, cy, distortion`` (the first view's camera) and ``cameras``: None when every
        row is the same camera, else an (n, 8) float32 tensor at the reduced resolution.
    """
    r = np.asarray(rows, dtype=np.float64).reshape(-1, 8).copy()
    r[:, :4] /= float(downscale)
    dist = tuple(float(v) for v in r[0, 4:])
    shared = bool(np.all(r == r[0]))
    return {"fx": float(r[0, 0]), "fy": float(r[0, 1]), "cx": float(r[0, 2]), "cy": float(r[0, 3]),
            "distortion": dist if any(dist) else None,
            "cameras": None if shared else torch.tensor(r, dtype=torch.float32)}


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
    cameras: Optional[torch.Tensor] = None
    """(n, 8) float32 per-view ``fx, fy, cx, cy, k1, k2, p1, p2`` at this split's resolution, on
    ``c2w``'s device, when the views' cameras differ; None when all share the scalar camera. With
    per-view cameras the scalars are the first view's (for summaries): rays and renders take
    :meth:`camera` / :meth:`ray_cameras`."""
    distorted: bool = field(init=False, default=False)
    """Whether any view's camera has distortion (set from the fields; decides undistortion)."""

    def __post_init__(self) -> None:
        if self.cameras is not None:
            if tuple(self.cameras.shape) != (int(self.c2w.shape[0]), 8):
                raise ValueError(f"Views.cameras must be (n, 8) = ({int(self.c2w.shape[0])}, 8), "
                                 f"got {tuple(self.cameras.shape)}")
            self.distorted = bool(self.cameras[:, 4:].any())
        else:
            self.distorted = self.distortion is not None

    def camera(self, i: int) -> Camera:
        """``(fx, fy, cx, cy, distortion)`` of view ``i`` (the arguments of a whole-image render)."""
        if self.cameras is None:
            return self.fx, self.fy, self.cx, self.cy, self.distortion
        row = self.cameras[int(i)].tolist()  # one copy to the host, not one per number
        dist = (row[4], row[5], row[6], row[7])
        return row[0], row[1], row[2], row[3], dist if any(dist) else None

    def ray_cameras(self, img_idx: torch.Tensor) -> tuple[Any, Any, Any, Any, Any]:
        """The camera of each ray's view, for :func:`taichifield.cameras.pixel_rays`.

        Args:
            img_idx: (B,) long view indices on :attr:`cameras`' device.

        Returns:
            ``fx, fy, cx, cy`` (floats, or (B,) tensors with per-view cameras) and the distortion
            (None, a 4-tuple of floats, or a 4-tuple of (B,) tensors).
        """
        if self.cameras is None:
            return self.fx, self.fy, self.cx, self.cy, self.distortion
        cam = self.cameras[img_idx]
        fx, fy, cx, cy, k1, k2, p1, p2 = cam.unbind(-1)
        return fx, fy, cx, cy, ((k1, k2, p1, p2) if self.distorted else None)

    def median_fx(self) -> float:
        """The views' median focal length along x, in pixels (one figure for a whole split)."""
        return self.fx if self.cameras is None else float(self.cameras[:, 0].median())

    def to(self, device: torch.device | str) -> "Views":
        """These views with images, poses and cameras on ``device`` (the box stays where it is)."""
        cams = None if self.cameras is None else self.cameras.to(device)
        return dataclasses.replace(self, images=self.images.to(device), c2w=self.c2w.to(device), cameras=cams)

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

    def intrinsics(self, i: int = 0) -> torch.Tensor:
        """(3, 3) float32 pinhole matrix K of view ``i`` (image-edge pixel origin)."""
        fx, fy, cx, cy, _ = self.camera(i)
        return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
