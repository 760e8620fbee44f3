"""Flipped poses in a sweep: find them against the two-view geometry of neighbours, and unflip.

Repeated texture (floor tiles, a symmetric object) lets incremental mapping place a run of
images of one hand-held sweep rotated by ~180 degrees: matches between images that do not
see the same thing outvote the right ones. Images adjacent in capture order (name order:
photos of a sweep, or frames of a video) overlap the most, so their two-view geometry is
the most trustworthy evidence of their relative rotation. This module

1. estimates the relative rotation of every verified image pair from its inlier matches
   (:func:`relative_rotations`, COLMAP's two-view pose: E, F or H decomposed with the
   model's refined intrinsics; a few degrees of error, tens on some planar pairs);
2. finds the *breaks* of a model: adjacent registered images whose relative rotation in the
   model differs from their two-view rotation by more than ``max_deg`` (90);
3. composes the corrections across the breaks, so each run of images between breaks gets
   the world rotation ``G`` that makes it agree with its neighbour (``Rc_i = R_i G``);
4. lists the pairs whose two-view rotation contradicts the corrected model by more than
   ``max_deg``: the matches that voted for the flips. :func:`taichifield.capture.sfm.run_poses`
   removes them from a copy of the database and maps again, and keeps the new model only
   when it has fewer breaks and registers as many images (so unordered photo collections,
   where name order means nothing, are never made worse).

The idea is the loop-consistency test of view-graph disambiguation (Zach, Klopschitz and
Pollefeys, "Disambiguating visual relations using loop constraints", CVPR 2010), with the
capture's sequence as the trusted spanning tree. Rotations here are ``cam_from_world``
(3, 3) matrices; the pure-numpy functions take dicts keyed by image name and need no pycolmap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..metrics.poses import rotation_angle_deg as angle_deg

__all__ = ["relative_rotations", "sequence_breaks", "contradicting_pairs", "remove_pairs", "model_rotations", "angle_deg",
           "MAX_DEG", "MIN_INLIERS"]

#: a rotation disagreement above this is a flip, not noise (two-view errors are a few degrees, up to ~50 on planar pairs)
MAX_DEG = 90.0
#: pairs with fewer inlier matches give no relative rotation
MIN_INLIERS = 15

Pair = tuple[str, str]


def _rel(rel: Mapping[Pair, np.ndarray], a: str, b: str) -> np.ndarray | None:
    """``cam_b_from_cam_a`` rotation (3, 3) from ``rel`` in either key order, or None."""
    if (a, b) in rel:
        return rel[(a, b)]
    if (b, a) in rel:
        return rel[(b, a)].T
    return None


def sequence_breaks(rotations: Mapping[str, np.ndarray], rel: Mapping[Pair, np.ndarray], max_deg: float = MAX_DEG
                    ) -> tuple[list[tuple[str, str, float]], dict[str, np.ndarray]]:
    """Breaks of a model along name order, and the world corrections that close them.

    Args:
        rotations: registered image name -> (3, 3) ``cam_from_world`` rotation of the model.
        rel: ``(a, b)`` -> (3, 3) two-view rotation ``cam_b_from_cam_a`` (any pairs).
        max_deg: a disagreement above this between an adjacent pair is a break.

    Returns:
        ``breaks``: ``(a, b, disagreement_deg)`` for adjacent registered images (name order)
        that have a two-view rotation contradicting the model; ``corrections``: name ->
        (3, 3) ``G`` with ``R_i G`` the corrected rotation (identity before the first break).
        Adjacent images without a two-view rotation carry the correction over unchanged.
    """
    names = sorted(rotations)
    breaks: list[tuple[str, str, float]] = []
    corrections: dict[str, np.ndarray] = {}
    g = np.eye(3)
    prev: str | None = None
    for name in names:
        r = _rel(rel, prev, name) if prev is not None else None
        if r is not None and prev is not None:
            err = angle_deg(r @ (rotations[name] @ rotations[prev].T).T)
            if err > max_deg:
                breaks.append((prev, name, err))
                # want R_name G_new = r R_prev G_prev
                g = rotations[name].T @ r @ rotations[prev] @ corrections[prev]
        corrections[name] = g
        prev = name
    return breaks, corrections


def contradicting_pairs(rotations: Mapping[str, np.ndarray], corrections: Mapping[str, np.ndarray],
                        rel: Mapping[Pair, np.ndarray], max_deg: float = MAX_DEG) -> list[Pair]:
    """Pairs whose two-view rotation contradicts the corrected model by more than ``max_deg``.

    Args:
        rotations, corrections: as returned by / given to :func:`sequence_breaks`.
        rel: ``(a, b)`` -> (3, 3) ``cam_b_from_cam_a``; pairs with an unregistered image are skipped.

    Returns:
        the keys of ``rel`` to remove before mapping again.
    """
    out = []
    for (a, b), r in rel.items():
        if a in rotations and b in rotations:
            ra, rb = rotations[a] @ corrections[a], rotations[b] @ corrections[b]
            if angle_deg(r @ (rb @ ra.T).T) > max_deg:
                out.append((a, b))
    return out


def relative_rotations(pycolmap: Any, db_path: Path, min_inliers: int = MIN_INLIERS, cameras: Mapping[int, Any] | None = None
                       ) -> tuple[dict[Pair, np.ndarray], dict[Pair, tuple[int, int]]]:
    """Two-view rotations of every verified pair in a COLMAP database.

    ``cameras``: camera id -> pycolmap Camera to use instead of the database's (its prior focal
    length, 1.2 x the image size, biases the rotations by several degrees; a model's refined
    cameras, ``Reconstruction.cameras``, do not).

    Returns:
        ``rel``: ``(name_a, name_b)`` with ``name_a < name_b`` -> (3, 3) ``cam_b_from_cam_a`` (COLMAP's two-view pose from
        the pair's inlier matches and the cameras' intrinsics); ``ids``: the same keys ->
        their image ids, for :func:`remove_pairs`.
    """
    db = pycolmap.Database.open(str(db_path))
    try:
        images = {im.image_id: im for im in db.read_all_images()}
        cameras = {**{c.camera_id: c for c in db.read_all_cameras()}, **dict(cameras or {})}
        pair_ids, geometries = db.read_two_view_geometries()
        keypoints: dict[int, np.ndarray] = {}
        rel: dict[Pair, np.ndarray] = {}
        ids: dict[Pair, tuple[int, int]] = {}
        for pair_id, geom in zip(pair_ids, geometries):
            a, b = pycolmap.pair_id_to_image_pair(pair_id)
            m = np.asarray(geom.inlier_matches)
            if len(m) < min_inliers or a not in images or b not in images:
                continue
            for i in (a, b):
                if i not in keypoints:
                    keypoints[i] = np.asarray(db.read_keypoints(i))[:, :2].astype(np.float64)
            cam_a, cam_b = cameras[images[a].camera_id], cameras[images[b].camera_id]
            if not pycolmap.estimate_two_view_geometry_pose(cam_a, keypoints[a][m[:, 0]], cam_b,
                                                            keypoints[b][m[:, 1]], geom):
                continue
            r = np.asarray(geom.cam2_from_cam1.rotation.matrix(), dtype=np.float64)
            key = (images[a].name, images[b].name)
            if key[0] > key[1]:  # keys in name order, whatever order the ids came in
                key, r = (key[1], key[0]), r.T
            rel[key] = r
            ids[key] = (a, b)
    finally:
        db.close()
    return rel, ids


def remove_pairs(pycolmap: Any, db_path: Path, ids: list[tuple[int, int]]) -> None:
    """Delete the verified geometries of these image-id pairs (the mapper then ignores them)."""
    db = pycolmap.Database.open(str(db_path))
    try:
        for a, b in ids:
            db.delete_two_view_geometry(a, b)
    finally:
        db.close()


def model_rotations(rec: Any) -> dict[str, np.ndarray]:
    """Registered image name -> (3, 3) ``cam_from_world`` rotation of a pycolmap Reconstruction."""
    out = {}
    for i in rec.reg_image_ids():
        image = rec.image(i)
        pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        out[image.name] = np.asarray(pose.rotation.matrix(), dtype=np.float64)
    return out
