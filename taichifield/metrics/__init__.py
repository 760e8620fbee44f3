"""Metrics: image quality (:mod:`taichifield.metrics.image`), camera-pose agreement
(:mod:`taichifield.metrics.poses`). Mesh metrics are in
:mod:`taichifield.geometry.metrics`.

The image metrics (torch) load on first use, so that :mod:`.poses` (numpy) imports no torch:
COLMAP's child process (:mod:`taichifield.capture.child`) uses it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["psnr", "psnr_images", "ssim"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import image

        return getattr(image, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
