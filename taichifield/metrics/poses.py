"""Camera-pose agreement between two reconstructions of the same images.

Structure from motion recovers cameras only up to a similarity (scale, rotation,
translation), so two sets of poses are compared after the least-squares similarity that
maps one set of camera centres onto the other (Umeyama 1991, "Least-squares estimation of
transformation parameters between two point patterns", eq. 40-42):

    min_{s, R, t}  sum_i || s R c_i + t - c'_i ||^2

Per image, the rotation error is the angle of ``R_ref^T (R R_got)`` and the centre error is
``|s R c_i + t - c'_i|`` as a fraction of the reference's size (twice the largest distance of
a reference centre from their mean, unless given).

Either model can hold images that are grossly wrong (a symmetric object invites views
flipped by ~180 degrees, camera centre included), and a least-squares fit over all images
is dragged by them. The alignment is therefore robust: similarities from random triples of
centres (RANSAC, Fischler & Bolles 1981), the one with most images within 5% of the size
kept, refitted on those. :func:`rotation_jumps` says which model is at fault without any
alignment: in a hand-held capture, images adjacent in time cannot be 90 degrees apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

__all__ = ["PoseAgreement", "pose_agreement", "rotation_angle_deg", "rotation_jumps", "umeyama"]


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``(s, R, t)`` minimising ``sum ||s R src_i + t - dst_i||^2``.

    Args:
        src, dst: (n, 3) corresponding points, n >= 3 not all on a line.

    Returns:
        s (float > 0), R (3, 3) proper rotation, t (3,).
    """
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or src.shape[0] < 3:
        raise ValueError(f"umeyama needs two (n >= 3, 3) point sets of one shape, got {src.shape} and {dst.shape}")
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sv, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ d @ vt
    var = float((a * a).sum(1).mean())
    s = float(np.trace(np.diag(sv) @ d) / var) if var > 0 else 1.0
    return s, rot, md - s * rot @ ms


def rotation_angle_deg(rel: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations -> (...) their angles in degrees, ``arccos((tr R - 1) / 2)``."""
    return np.degrees(np.arccos(np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)))


INLIER_FRACTION = 0.05
"""Centre error (fraction of the size) below which an image counts for the alignment."""
RANSAC_TRIALS = 500


@dataclass
class PoseAgreement:
    """Per common image (in name order): errors after the similarity alignment."""

    names: list[str]
    rotation_deg: np.ndarray
    """(n,) angle between the aligned and the reference camera rotations, degrees."""
    centre: np.ndarray
    """(n,) aligned camera-centre distance as a fraction of the reference size."""
    scale: float
    """The similarity's scale (reference units per unit of the other model)."""
    inliers: int
    """Images the alignment was fitted on (centre error below 5% of the size)."""

    def summary(self) -> str:
        """One line: count, median/max rotation error, median centre error, images off by > 5 deg."""
        r, c = self.rotation_deg, self.centre
        off = int((r > 5.0).sum())
        return (f"{len(self.names)} common images ({self.inliers} aligned on): rotation error median {np.median(r):.3f} deg, "
                f"max {r.max():.2f} deg; centre error median {100 * np.median(c):.3f}% of the scene; "
                f"{off} image{'s' if off != 1 else ''} off by > 5 deg")


def pose_agreement(names: Sequence[str], c2w: np.ndarray, ref_names: Sequence[str], ref_c2w: np.ndarray,
                   size: Optional[float] = None) -> PoseAgreement:
    """Compare poses ``c2w`` with reference poses ``ref_c2w`` on the images both contain.

    Args:
        names, c2w: image names and (n, 4, 4) camera-to-world matrices (any one convention,
            the same for both sets: OpenGL or OpenCV axes).
        ref_names, ref_c2w: the reference's, (m, 4, 4).
        size: the length centre errors are a fraction of (default twice the largest distance
            of a common reference centre from their mean).

    Raises:
        ValueError: fewer than 3 images in common.
    """
    ref_index = {n: i for i, n in enumerate(ref_names)}
    common = sorted(n for n in names if n in ref_index)
    if len(common) < 3:
        raise ValueError(f"only {len(common)} images in common: at least 3 are needed to align two reconstructions")
    own_index = {n: i for i, n in enumerate(names)}
    got = np.asarray(c2w, dtype=np.float64)[[own_index[n] for n in common]]
    ref = np.asarray(ref_c2w, dtype=np.float64)[[ref_index[n] for n in common]]
    src, ref_centres = got[:, :3, 3], ref[:, :3, 3]
    if size is None:
        size = 2.0 * float(np.linalg.norm(ref_centres - ref_centres.mean(0), axis=1).max()) or 1.0

    def errors(sim: tuple[float, np.ndarray, np.ndarray]) -> np.ndarray:
        return np.linalg.norm(sim[0] * src @ sim[1].T + sim[2] - ref_centres, axis=1) / size

    best = umeyama(src, ref_centres)
    best_in = errors(best) < INLIER_FRACTION
    rng = np.random.default_rng(0)
    for _ in range(RANSAC_TRIALS):
        pick = rng.choice(len(common), 3, replace=False)
        try:
            sim = umeyama(src[pick], ref_centres[pick])
        except np.linalg.LinAlgError:
            continue
        inside = errors(sim) < INLIER_FRACTION
        if inside.sum() > best_in.sum():
            best, best_in = sim, inside
    if best_in.sum() >= 3:
        best = umeyama(src[best_in], ref_centres[best_in])
    s, rot, t = best
    centre = errors(best)
    inliers = int((centre < INLIER_FRACTION).sum())
    rel = np.einsum("nji,jk,nkl->nil", ref[:, :3, :3], rot, got[:, :3, :3])  # R_ref^T R R_got
    return PoseAgreement(common, rotation_angle_deg(rel), centre, s, inliers)


def rotation_jumps(names: Sequence[str], c2w: np.ndarray, min_deg: float = 90.0) -> list[tuple[str, str, float]]:
    """Consecutive images (in name order) whose rotations differ by more than ``min_deg``.

    Args:
        names: image names; c2w: (n, 4, 4) their camera-to-world matrices.

    Returns:
        ``(name_i, name_next, angle_deg)`` per jump: for frames of one hand-held sweep, each
        is a pose that is wrong in this model (or a gap in the capture).
    """
    order = sorted(range(len(names)), key=lambda i: names[i])
    rots = np.asarray(c2w, dtype=np.float64)[order, :3, :3]
    ang = rotation_angle_deg(np.einsum("nji,njk->nik", rots[:-1], rots[1:]))
    return [(names[order[i]], names[order[i + 1]], float(a)) for i, a in enumerate(ang) if a > min_deg]
