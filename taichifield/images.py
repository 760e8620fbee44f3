"""Writing pictures: the one atomic image writer of taichifield.

Every PNG/JPEG the project writes (renders, progress views, reconstructions, rendered scene
views, screenshots, eval grids) goes through :func:`write_image`: float images are clamped to
[0, 1] and rounded to 8 bits, the format comes from the suffix, and the file appears only
when complete (:func:`taichifield.atomic.atomic_path`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path

__all__ = ["write_image", "to_uint8"]


def to_uint8(image: Any) -> np.ndarray:
    """(H, W), (H, W, 3) or (H, W, 4) image -> uint8 array of the same shape.

    Floats (numpy or torch, any device) are read as [0, 1]: clamped, then rounded
    (``x * 255 + 0.5``); uint8 input is passed through.
    """
    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(f"write_image: expected (H, W[, 1|3|4]), got shape {arr.shape}")
    return (np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_image(path: str | os.PathLike[str], image: Any) -> Path:
    """Write ``image`` (see :func:`to_uint8`) atomically to ``path`` (.png, .jpg, ...)."""
    import imageio.v3 as iio

    data = to_uint8(image)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    p = Path(path)
    with atomic_path(p) as tmp:
        iio.imwrite(tmp, data, extension=p.suffix.lower() or ".png")
    return p
