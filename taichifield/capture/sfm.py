"""Structure from motion with pycolmap: photos or a video in, a posed scene out.

Pipeline (COLMAP, Schönberger & Frahm, CVPR 2016, via its Python bindings, CPU)::

    SCENE/images/          the photos (copied) or the video's sharpest frames   (frames.py)
    SCENE/database.db      SIFT features + matches (exhaustive up to 100 images, else sequential)
    SCENE/sparse/0/        the largest model of incremental mapping, one shared OPENCV camera;
                           runs of images it flipped are found against the two-view geometry of
                           adjacent images and mapped again without the contradicting pairs (flips.py)
    SCENE/transforms.json  instant-ngp format, normalised, with per-frame sharpness  (export.py)
    SCENE/points3D.ply     the sparse points in the scene frame of transforms.json

COLMAP's stages (:mod:`.mapping`) run in a child process that imports no torch (:mod:`.child`:
pycolmap and torch can crash in one process); a crash there is one line, and the database stays.
Resuming: a SCENE with ``database.db`` and no ``transforms.json`` continues; COLMAP skips the
images whose features and the pairs whose matches are in the database, then maps again.
pycolmap is imported only inside :func:`run_poses` and :mod:`.mapping`.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..config import Config
from ..errors import InputError
from .frames import VIDEO_SUFFIXES, Progress, copy_images, extract_video_frames, list_images

__all__ = ["PosesConfig", "PosesResult", "POSES_ARTIFACTS", "check_poses_out", "run_poses", "import_pycolmap", "require_pycolmap"]

log = logging.getLogger(__name__)

#: what ``taichifield poses`` writes into SCENE; ``--overwrite`` removes these (and only these)
POSES_ARTIFACTS = ("images", "database.db", "database.db-shm", "database.db-wal", "sparse", ".mapping",
                   ".unflip", "transforms.json", "points3D.ply")
MATCHERS = ("auto", "exhaustive", "sequential")
#: the models :mod:`taichifield.data.colmap_scene` reads back (the project's pinhole + OpenCV distortion)
CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


@dataclass
class PosesConfig(Config):
    """Options of :func:`run_poses` (``taichifield poses``)."""

    frames: Optional[int] = None
    """Video: the number of frames to keep (the sharpest of each of N equal windows); default 100."""
    every: Optional[int] = None
    """Video: keep the sharpest frame of every K frames instead of a target count."""
    matcher: str = "auto"
    """Feature matching: exhaustive, sequential (neighbours in name order), or auto (exhaustive up to 100 images)."""
    camera_model: str = "OPENCV"
    """COLMAP camera model estimated (OPENCV: fx, fy, cx, cy, k1, k2, p1, p2)."""
    single_camera: bool = True
    """One camera shared by all images (a phone or video capture)."""
    max_image_size: int = 1600
    """SIFT runs on images downscaled to at most this many pixels on the long side."""
    max_features: int = 8192
    """SIFT features per image at most."""
    threads: int = -1
    """CPU threads for COLMAP (-1: all)."""
    seed: int = 0
    """Random seed of the mapper's RANSAC."""
    unflip: bool = True
    """Find runs of images the mapper flipped (adjacent images in name order whose rotation in the model
    contradicts their two-view rotation by > 90 deg), remove the pairs that voted for the flip and map again;
    the new model is kept only if it has fewer such breaks and registers at least as many images."""

    def __post_init__(self) -> None:
        for name in ("frames", "every"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise InputError(f"--{name} must be a positive integer, got {v}")
        if self.frames is not None and self.every is not None:
            raise InputError("--frames and --every exclude each other: a target count or one frame in K")
        if self.matcher not in MATCHERS:
            raise InputError(f"--matcher must be one of {', '.join(MATCHERS)}, not {self.matcher!r}")
        if self.camera_model not in CAMERA_MODELS:
            raise InputError(f"--camera-model must be one of {', '.join(CAMERA_MODELS)}, not {self.camera_model!r}")
        if self.max_image_size < 32 or self.max_features < 64:
            raise InputError("--max-image-size must be >= 32 and --max-features >= 64")


@dataclass
class PosesResult:
    """What a run of :func:`run_poses` recovered."""

    given: int
    registered: int
    unregistered: list[str]
    mean_reprojection_error: float
    """Pixels, over all observations of the model."""
    points: int
    seconds: float
    scene: Path
    resumed: bool = False
    models: int = 1
    """Separate models mapping found (the largest is kept)."""
    jumps: list[tuple[str, str, float]] = field(default_factory=list)
    """Images adjacent in name order whose rotations differ by > 90 degrees
    (:func:`taichifield.metrics.poses.rotation_jumps`): in a sweep, poses flipped by the mapper."""
    breaks_found: list[tuple[str, str, float]] = field(default_factory=list)
    """Adjacent images whose model rotation contradicted their two-view rotation by > 90 deg in the
    first model (:func:`taichifield.capture.flips.sequence_breaks`)."""
    pairs_removed: int = 0
    """Image pairs removed before the second mapping, when its model was kept (0: not re-mapped or not kept)."""
    breaks_left: int = 0
    """Breaks in the model that was kept."""

    def summary(self) -> str:
        """The one-line report."""
        line = (f"poses: {self.registered}/{self.given} images registered, mean reprojection error "
                f"{self.mean_reprojection_error:.3f} px, {self.points} points in {self.seconds:.0f} s -> "
                f"{self.scene}/transforms.json")
        if self.breaks_found:
            fixed = len(self.breaks_found) - self.breaks_left
            line += (f"; {len(self.breaks_found)} flipped run{'s' if len(self.breaks_found) != 1 else ''} found against "
                     f"adjacent images' two-view geometry, " + (f"{fixed} fixed by mapping again without "
                     f"{self.pairs_removed} contradicting pairs" if self.pairs_removed else "mapping again did not help"))
        if self.jumps:
            shown = ", ".join(f"{a} -> {b} ({d:.0f} deg)" for a, b, d in self.jumps[:4]) + (" ..." if len(self.jumps) > 4 else "")
            line += (f"; {len(self.jumps)} rotation jump{'s' if len(self.jumps) != 1 else ''} > 90 deg between "
                     f"images adjacent in name order: {shown} (in a sweep, poses the mapper flipped, as a "
                     f"symmetric object invites: try the other --matcher)")
        if self.unregistered:
            shown = ", ".join(self.unregistered[:10]) + (" ..." if len(self.unregistered) > 10 else "")
            line += f"; not registered: {shown}"
        return line


_NO_PYCOLMAP = "taichifield poses needs pycolmap: pip install 'taichifield[capture]'"


def import_pycolmap() -> Any:
    """pycolmap, or an :class:`InputError` saying how to install it."""
    try:
        import pycolmap
    except ImportError:
        raise InputError(_NO_PYCOLMAP) from None
    return pycolmap


def require_pycolmap() -> None:
    """:func:`import_pycolmap`'s error when pycolmap is not installed, without loading it here.

    The process that checks is the one with torch in it; pycolmap's native libraries load only in
    the child that runs COLMAP (:mod:`.child`).
    """
    import importlib.util

    if importlib.util.find_spec("pycolmap") is None:
        raise InputError(_NO_PYCOLMAP)


def check_poses_out(out: Path, overwrite: bool, source: Optional[Path] = None) -> bool:
    """Decide what to do with SCENE; returns True to resume from ``database.db``. Writes nothing.

    * missing or empty, or holding only ``images/`` that is the source itself: a fresh run;
    * ``database.db`` without ``transforms.json``: resume (``overwrite``: start afresh);
    * anything else non-empty: refused unless ``overwrite``.
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; --out must be a folder")
    if not out.is_dir():
        return False
    entries = {p.name for p in out.iterdir()}
    in_place = source is not None and source.is_dir() and (out / "images").resolve() == source.resolve()
    if not entries or (in_place and entries == {"images"}):
        return False
    if overwrite:
        return False
    if "database.db" in entries and "transforms.json" not in entries:
        return True
    what = "finished poses (transforms.json)" if "transforms.json" in entries else "files"
    raise InputError(f"{out}: folder holds {what}; replace them with --overwrite or choose another --out")


def _clear(out: Path, keep_images: bool) -> None:
    for name in POSES_ARTIFACTS:
        p = out / name
        if name == "images" and keep_images:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def _check_source(source: Path) -> None:
    """Refuse a missing source, a file that is not a video, or a folder with fewer than 2 images."""
    if source.is_file():
        if source.suffix.lower() not in VIDEO_SUFFIXES:
            raise InputError(f"{source}: not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of images")
    elif not source.exists():
        raise InputError(f"{source}: no such folder or video")
    elif len(list_images(source)) < 2:
        raise InputError(f"{source}: structure from motion needs at least 2 images, got 1")


def _prepare_frames(source: Path, image_dir: Path, config: PosesConfig, progress: Optional[Progress]) -> dict[str, float]:
    if source.is_file():
        count = config.frames if config.frames is not None or config.every is not None else 100
        return extract_video_frames(source, image_dir, every=config.every, count=count, progress=progress)
    return copy_images(list_images(source), image_dir, progress)


def run_poses(source: str | Path, out: str | Path, config: Optional[PosesConfig] = None, overwrite: bool = False,
              progress: Optional[Progress] = None, isolate: bool = True) -> PosesResult:
    """Recover camera poses of photos (a folder) or a video and write a posed scene (module doc).

    Args:
        source: a folder of images or a video file.
        out: the scene folder to write (refused when it holds other files, unless ``overwrite``).
        config: :class:`PosesConfig`.
        progress: ``progress(stage, done, total)`` with stages ``frames``, ``features``,
            ``matching (...)``, ``mapping``, ``export``.
        isolate: run the pycolmap stages (:func:`.mapping.colmap_stages`) in a child process that imports
            no torch (:mod:`.child`: the two can crash in one process); False runs them here.

    Raises:
        InputError: pycolmap missing, bad input, an --out that may not be replaced, or nothing registered.
        ChildError: COLMAP's process crashed (``database.db`` is kept: the same call resumes).
    """
    t0 = time.perf_counter()
    config = config or PosesConfig()
    source, out = Path(source), Path(out)
    resume = check_poses_out(out, overwrite, source)
    require_pycolmap()
    _check_source(source)
    image_dir = out / "images"
    in_place = source.is_dir() and image_dir.resolve() == source.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if overwrite and not resume:
        _clear(out, keep_images=in_place)
    if resume and image_dir.is_dir() and any(image_dir.iterdir()):
        log.info("%s: resuming from database.db", out)
        sharp = copy_images(list_images(image_dir), image_dir, progress)
    else:
        sharp = _prepare_frames(source, image_dir, config, progress)
    names = sorted(sharp)
    job = {"out": str(out), "names": names, "config": config.to_dict()}
    if isolate:
        from .child import call_in_child

        model = call_in_child("taichifield.capture.mapping:colmap_stages", job, str(out), progress)
    else:
        from .mapping import colmap_stages

        model = colmap_stages(**job, progress=progress)
    if progress is not None:
        progress("export", 0, 1)
    registered = set(model["registered"])
    unregistered = [n for n in names if n not in registered]
    if unregistered:
        log.warning("%s: %d of %d images not registered: %s", out, len(unregistered), len(names), ", ".join(unregistered))
    result = PosesResult(given=len(names), registered=len(registered), unregistered=unregistered,
                         mean_reprojection_error=model["mean_reprojection_error"], points=model["points"],
                         seconds=0.0, scene=out, resumed=resume, models=model["models"],
                         breaks_found=[(a, b, d) for a, b, d in model["found"]], pairs_removed=model["removed"],
                         breaks_left=model["left"])
    from .export import write_scene  # imports torch: only after COLMAP is done (module doc of .child)

    data = write_scene(out, sharp, result)
    result.jumps = [(a, b, float(d)) for a, b, d in data["poses"]["rotation_jumps"]]
    if result.jumps:
        log.warning("%s: %d rotation jumps > 90 deg between images adjacent in name order", out, len(result.jumps))
    result.seconds = time.perf_counter() - t0
    if progress is not None:
        progress("export", 1, 1)
    return result
