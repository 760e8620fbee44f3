"""COLMAP's stages with pycolmap: SIFT features, matching, incremental mapping, the flip check.

The part of ``taichifield poses`` (:mod:`.sfm`) that runs COLMAP's native code, on
``SCENE/images`` into ``SCENE/database.db`` and ``SCENE/sparse/0``. It imports no torch:
:func:`.sfm.run_poses` calls :func:`colmap_stages` in a child process (:mod:`.child`).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import InputError
from .frames import Progress
from .sfm import PosesConfig, import_pycolmap

__all__ = ["colmap_stages", "EXHAUSTIVE_UP_TO"]

log = logging.getLogger(__name__)

#: ``--matcher auto``: exhaustive matching up to this many images, sequential above
EXHAUSTIVE_UP_TO = 100
#: at most this many extra mappings to remove flipped runs (:func:`_unflip`)
UNFLIP_ROUNDS = 3
#: never map without more than this fraction of the verified pairs (beer: 44%)
UNFLIP_MAX_REMOVED = 0.7
_FEATURE_CHUNK = 8


def _extract_features(pycolmap: Any, db: Path, image_dir: Path, names: list[str], config: PosesConfig,
                      progress: Optional[Progress]) -> None:
    """SIFT in chunks (for progress); the first chunk creates the shared camera, later ones reuse it."""
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = config.camera_model
    ext = pycolmap.FeatureExtractionOptions()
    ext.max_image_size = config.max_image_size
    ext.num_threads = config.threads
    ext.sift.max_num_features = config.max_features
    mode = pycolmap.CameraMode.SINGLE if config.single_camera else pycolmap.CameraMode.AUTO
    for start in range(0, len(names), _FEATURE_CHUNK):
        if config.single_camera:
            d = pycolmap.Database.open(str(db))
            try:
                cams = d.read_all_cameras()
            finally:
                d.close()
            if cams:
                reader.existing_camera_id = int(cams[0].camera_id)
        pycolmap.extract_features(str(db), str(image_dir), image_names=names[start:start + _FEATURE_CHUNK],
                                  camera_mode=mode, reader_options=reader, extraction_options=ext,
                                  device=pycolmap.Device.cpu)
        if progress is not None:
            progress("features", min(start + _FEATURE_CHUNK, len(names)), len(names))


def _match(pycolmap: Any, db: Path, n: int, config: PosesConfig, progress: Optional[Progress]) -> str:
    kind = config.matcher if config.matcher != "auto" else ("exhaustive" if n <= EXHAUSTIVE_UP_TO else "sequential")
    if progress is not None:
        progress(f"matching ({kind})", 0, 1)
    opts = pycolmap.FeatureMatchingOptions()
    opts.num_threads = config.threads
    if kind == "exhaustive":
        pycolmap.match_exhaustive(str(db), matching_options=opts, device=pycolmap.Device.cpu)
    else:
        pycolmap.match_sequential(str(db), matching_options=opts, device=pycolmap.Device.cpu)
    if progress is not None:
        progress(f"matching ({kind})", 1, 1)
    return kind


def _map(pycolmap: Any, db: Path, image_dir: Path, work: Path, n: int, config: PosesConfig,
         progress: Optional[Progress], stage: str = "mapping") -> tuple[Any, int]:
    """Incremental mapping; the model with the most registered images, and how many models there were."""
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = config.threads
    opts.random_seed = config.seed
    done = [0]

    def next_image() -> None:
        done[0] += 1
        if progress is not None:
            progress(stage, min(done[0] + 1, n), n)  # the initial pair registers two at once

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    models = pycolmap.incremental_mapping(str(db), str(image_dir), str(work), options=opts, next_image_callback=next_image)
    if not models:
        raise InputError(f"{image_dir}: structure from motion registered no images (too few matches: "
                         "more overlap between photos, more texture, or sharper frames)")
    best = max(models.values(), key=lambda r: r.num_reg_images())
    if progress is not None:
        progress(stage, n, n)
    return best, len(models)


@dataclass
class _Unflip:
    """The model :func:`_unflip` kept, and what it found (the :class:`PosesResult` fields)."""

    rec: Any
    models: int
    found: list[tuple[str, str, float]] = field(default_factory=list)
    removed: int = 0
    left: int = 0


def _unflip(pycolmap: Any, db: Path, image_dir: Path, out: Path, rec: Any, n_models: int, n: int,
            config: PosesConfig, progress: Optional[Progress]) -> _Unflip:
    """Map again without the pairs that voted for flipped runs (:mod:`.flips`); keep the better model.

    Up to :data:`UNFLIP_ROUNDS` rounds: each finds the breaks of the best model so far, removes
    the pairs contradicting its corrected rotations and maps again (the mapper is not
    deterministic with several threads, and a round can leave a break). A model replaces the
    best one when it has fewer breaks and registers at least as many images. The user's
    ``database.db`` is not changed: the pairs are removed from a copy in ``SCENE/.unflip``.
    """
    from . import flips

    rel, ids = flips.relative_rotations(pycolmap, db, cameras=dict(rec.cameras))
    found, corrections = flips.sequence_breaks(flips.model_rotations(rec), rel)
    if not found:
        return _Unflip(rec, n_models)
    work = out / ".unflip"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    best, best_models, best_breaks, removed, kept_removed = rec, n_models, found, set(), 0
    try:
        copy = work / "database.db"
        shutil.copyfile(db, copy)
        for round_ in range(UNFLIP_ROUNDS):
            bad = set(flips.contradicting_pairs(flips.model_rotations(best), corrections, rel)) - removed
            if not bad:
                break
            if len(removed | bad) > UNFLIP_MAX_REMOVED * len(rel):
                log.warning("%s: the flipped runs contradict %d of %d pairs: too many to map without, not tried",
                            out, len(removed | bad), len(rel))
                break
            flips.remove_pairs(pycolmap, copy, [ids[k] for k in bad])
            removed |= bad
            log.info("%s: %d flipped runs against adjacent images; mapping again without %d of %d pairs",
                     out, len(best_breaks), len(removed), len(rel))
            try:
                rec2, models2 = _map(pycolmap, copy, image_dir, work / f"mapping{round_}", n, config, progress,
                                     stage="re-mapping")
            except InputError:
                log.warning("%s: mapping again without %d pairs registered nothing", out, len(removed))
                break
            left, corr2 = flips.sequence_breaks(flips.model_rotations(rec2), rel)
            log.info("%s: round %d: %d breaks, %d/%d registered", out, round_ + 1, len(left), rec2.num_reg_images(), n)
            if len(left) < len(best_breaks) and rec2.num_reg_images() >= best.num_reg_images():
                best, best_models, best_breaks, corrections = pycolmap.Reconstruction(rec2), models2, left, corr2
                kept_removed = len(removed)
            if not best_breaks:
                break
        if best is rec:
            log.warning("%s: mapping again did not remove the %d flipped runs: first model kept", out, len(found))
        return _Unflip(best, best_models, found, kept_removed, len(best_breaks))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def colmap_stages(out: str, names: list[str], config: dict[str, Any],
                  progress: Optional[Progress] = None) -> dict[str, Any]:
    """SIFT, matching, mapping and the flip check with pycolmap on ``out/images``; writes ``out/sparse/0``.

    JSON in and out, so that :func:`run_poses` can run it in a child process
    (:mod:`.child`). Returns the kept model's summary: ``registered`` (image names),
    ``mean_reprojection_error`` (pixels), ``points``, ``models``, and the flip check's
    ``found`` ([a, b, degrees] per break), ``removed`` and ``left``.
    """
    pycolmap = import_pycolmap()
    cfg = PosesConfig.from_dict(config)
    root = Path(out)
    image_dir, db = root / "images", root / "database.db"
    pycolmap.set_random_seed(cfg.seed)
    quiet_level = pycolmap.logging.minloglevel
    # COLMAP's own INFO lines (thousands) go to stderr through glog: only its errors, unless debugging
    pycolmap.logging.minloglevel = 0 if log.isEnabledFor(logging.DEBUG) else 2
    try:
        _extract_features(pycolmap, db, image_dir, names, cfg, progress)
        _match(pycolmap, db, len(names), cfg, progress)
        rec, n_models = _map(pycolmap, db, image_dir, root / ".mapping", len(names), cfg, progress)
        unflip = (_unflip(pycolmap, db, image_dir, root, rec, n_models, len(names), cfg, progress)
                  if cfg.unflip else _Unflip(rec, n_models))
    finally:
        pycolmap.logging.minloglevel = quiet_level
    rec = unflip.rec
    sparse = root / "sparse" / "0"
    if sparse.exists():
        shutil.rmtree(sparse)
    sparse.mkdir(parents=True)
    rec.write_binary(str(sparse))
    shutil.rmtree(root / ".mapping", ignore_errors=True)
    return {"registered": sorted(rec.image(i).name for i in rec.reg_image_ids()),
            "mean_reprojection_error": float(rec.compute_mean_reprojection_error()),
            "points": int(rec.num_points3D()), "models": unflip.models,
            "found": [[a, b, float(d)] for a, b, d in unflip.found], "removed": unflip.removed, "left": unflip.left}
