"""Input frames for structure from motion: photos from a folder, or the sharpest frames of a video.

Sharpness is the variance of the Laplacian of the grey image (Pech-Pacheco et al., "Diatom
autofocusing in brightfield microscopy", ICPR 2000), the score instant-ngp's ``colmap2nerf.py``
writes per frame. A video is cut into windows (``every`` K frames, or ``count`` equal windows)
and the sharpest frame of each window is kept, so motion-blurred frames are the ones dropped.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import InputError

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "sharpness", "list_images", "window_bounds", "copy_images",
           "extract_video_frames", "Progress"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")
#: ``progress(stage, done, total)``
Progress = Callable[[str, int, int], None]


def sharpness(image: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image (higher: sharper).

    Args:
        image: (H, W) or (H, W, C) uint8 or float; RGB(A) is reduced to luma (Rec. 601), range 0..255.
    """
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3:
        x = x[..., :3] @ np.array([0.299, 0.587, 0.114]) if x.shape[-1] >= 3 else x[..., 0]
    if x.shape[0] < 3 or x.shape[1] < 3:
        return 0.0
    lap = x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4.0 * x[1:-1, 1:-1]
    return float(lap.var())


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name.

    Raises:
        InputError: no such folder, or no images in it.
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of images or a video file")
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return found


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on bad data
        raise InputError(f"{path}: cannot read image ({' '.join(str(exc).split())[:120]})") from None


def _image_sharpness(path: Path) -> float:
    from PIL import Image

    with Image.open(path) as im:
        return sharpness(np.asarray(im.convert("L")))


def copy_images(paths: list[Path], out_dir: Path, progress: Optional[Progress] = None) -> dict[str, float]:
    """Copy photos into ``out_dir`` (unless they are there already); ``{name: sharpness}``.

    Raises:
        InputError: fewer than 2 images, an unreadable one, or photos of different sizes
            (one shared camera is estimated).
    """
    if len(paths) < 2:
        raise InputError(f"{paths[0].parent if paths else out_dir}: structure from motion needs at least 2 images, "
                         f"got {len(paths)}")
    sizes = {p.name: _image_size(p) for p in paths}
    if len(set(sizes.values())) > 1:
        (a, sa), (b, sb) = next(iter(sizes.items())), next((n, s) for n, s in sizes.items() if s != next(iter(sizes.values())))
        raise InputError(f"{paths[0].parent}: images of different sizes ({a} is {sa[0]}x{sa[1]}, {b} is {sb[0]}x{sb[1]}); "
                         "one shared camera needs one size")
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = {}
    for i, p in enumerate(paths):
        target = out_dir / p.name
        if p.resolve() != target.resolve():
            shutil.copy2(p, target)
        scores[p.name] = _image_sharpness(target)
        if progress is not None:
            progress("frames", i + 1, len(paths))
    return scores


def window_bounds(n: int, every: Optional[int], count: Optional[int]) -> np.ndarray:
    """(m + 1,) int frame indices splitting ``n`` frames into windows of ``every`` frames, or into
    ``count`` equal windows (at most one frame each when ``count >= n``)."""
    if every is not None:
        return np.unique(np.append(np.arange(0, n, max(1, int(every))), n))
    m = min(int(count if count is not None else n), n)
    return np.unique(np.linspace(0, n, m + 1).round().astype(int))


def extract_video_frames(video: Path, out_dir: Path, every: Optional[int] = None, count: Optional[int] = None,
                         progress: Optional[Progress] = None) -> dict[str, float]:
    """Write the sharpest frame of each window of ``video`` to ``out_dir/frame_NNNNN.jpg``.

    Args:
        video: any file imageio-ffmpeg reads.
        every: window length in frames (keep 1 of every K), or None.
        count: target number of frames (equal windows), used when ``every`` is None.

    Returns:
        ``{file name: sharpness}`` of the kept frames, in video order.

    Raises:
        InputError: imageio-ffmpeg missing, an unreadable video, or fewer than 2 frames.
    """
    import imageio.v2 as iio
    from PIL import Image

    try:
        reader = iio.get_reader(video, "ffmpeg")
    except ImportError:
        raise InputError("reading a video needs imageio-ffmpeg: pip install 'taichifield[capture]'") from None
    except Exception as exc:  # noqa: BLE001 - imageio raises many types on bad files
        raise InputError(f"{video}: cannot read video ({' '.join(str(exc).split())[:120]})") from None
    try:
        n = int(reader.count_frames())
        if n < 2:
            raise InputError(f"{video}: the video has {n} frame(s); structure from motion needs at least 2")
        bounds = window_bounds(n, every, count)
        out_dir.mkdir(parents=True, exist_ok=True)
        kept: dict[str, float] = {}
        window, best, best_i, best_score = 0, None, 0, -1.0
        for i, frame in enumerate(reader):
            if window + 1 >= len(bounds):
                break
            score = sharpness(frame)
            if score > best_score:
                best, best_i, best_score = frame, i, score
            if i + 1 == bounds[window + 1]:
                name = f"frame_{best_i + 1:05d}.jpg"
                Image.fromarray(np.asarray(best)[..., :3]).save(out_dir / name, quality=95)
                kept[name] = best_score
                window, best, best_score = window + 1, None, -1.0
            if progress is not None:
                progress("frames", i + 1, n)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - ffmpeg decode errors
        raise InputError(f"{video}: cannot decode video ({' '.join(str(exc).split())[:120]})") from None
    finally:
        reader.close()
    log.info("%s: kept the sharpest of each window: %d of %d frames", video, len(kept), n)
    return kept
