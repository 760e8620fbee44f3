"""Scene normalisation for real captures: capture coordinates -> a box around the origin.

A structure-from-motion model has an arbitrary origin, scale and orientation. As instant-ngp's
``colmap2nerf.py`` (Müller et al., 2022) and mip-NeRF 360 (Barron et al., 2022, sec. 4) do, the
poses are turned into OpenGL camera-to-world matrices, rotated so the mean camera up vector is
``+z``, centred and scaled; the similarity is kept so renders and meshes can be mapped back::

    x_scene = s R (x_capture - c)                       (scene_from_capture, a 4x4 similarity)

* ``R``: the rotation taking the mean camera up vector (OpenGL ``+y`` of each ``c2w``) to ``+z``;
* ``c``: the median of the sparse points (robust to stray points); the median camera centre
  when there are fewer than :data:`MIN_POINTS` points;
* ``s``: ``1 / (MARGIN * r)`` with ``r`` the largest distance of an *inlier* camera from ``c``
  (cameras farther than :data:`OUTLIER_FACTOR` times the median distance are outliers and
  logged), so every inlier camera lies in the unit ball and thus in the box ``[-1, 1]^3``;
* the box: ``[-A, A]^3`` with ``A`` the smallest power of two >= the 90th percentile of the
  scaled points' max-norm (at least 1, at most :data:`MAX_AABB_SCALE`), instant-ngp's
  ``aabb_scale``, so distant background (when most points are there) stays inside.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

__all__ = ["Normalization", "compute_normalization", "opencv_w2c_to_opengl_c2w", "MIN_POINTS", "OUTLIER_FACTOR",
           "MARGIN", "MAX_AABB_SCALE"]

log = logging.getLogger(__name__)

MIN_POINTS = 10
OUTLIER_FACTOR = 3.0
MARGIN = 1.1
MAX_AABB_SCALE = 16.0
_FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])


def opencv_w2c_to_opengl_c2w(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(4, 4) OpenGL camera-to-world of COLMAP's ``cam_from_world`` ``x_cam = R x + t`` (OpenCV axes).

    ``c2w_cv = [[R^T, -R^T t], [0, 1]]``; OpenGL's camera looks down ``-z`` with ``+y`` up, so
    its y and z axes are OpenCV's negated: ``c2w_gl = c2w_cv diag(1, -1, -1, 1)``.
    """
    m = np.eye(4)
    m[:3, :3] = np.asarray(R, np.float64).T
    m[:3, 3] = -m[:3, :3] @ np.asarray(t, np.float64)
    return m @ _FLIP_YZ


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) the smallest rotation taking unit vector ``a`` to unit vector ``b`` (Rodrigues)."""
    v, c = np.cross(a, b), float(np.dot(a, b))
    if c < -1.0 + 1e-10:  # opposite: half a turn about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


@dataclass
class Normalization:
    """The similarity ``x_scene = scale * rotation @ (x_capture - centre)`` and the scene box."""

    rotation: np.ndarray
    """(3, 3) float64."""
    centre: np.ndarray
    """(3,) float64, in capture coordinates."""
    scale: float
    aabb_scale: float = 1.0
    """Half-size of the scene box ``[-aabb_scale, aabb_scale]^3`` (scene coordinates)."""

    def scene_from_capture(self) -> np.ndarray:
        """(4, 4) similarity matrix capture -> scene."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = -self.scale * self.rotation @ self.centre
        return m

    def capture_from_scene(self) -> np.ndarray:
        """(4, 4) inverse similarity scene -> capture (for renders and meshes in capture coordinates)."""
        m = np.eye(4)
        m[:3, :3] = self.rotation.T / self.scale
        m[:3, 3] = self.centre
        return m

    def points(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) capture points -> scene points."""
        return self.scale * (np.asarray(xyz, np.float64) - self.centre) @ self.rotation.T

    def to_capture(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) scene points -> capture points (e.g. a mesh's vertices)."""
        return np.asarray(xyz, np.float64) @ self.rotation / self.scale + self.centre

    def poses(self, c2w: np.ndarray) -> np.ndarray:
        """(n, 4, 4) capture camera-to-world -> scene camera-to-world (rigid: the scale only moves centres)."""
        out = np.array(c2w, dtype=np.float64, copy=True)
        out[:, :3, :3] = self.rotation @ out[:, :3, :3]
        out[:, :3, 3] = self.points(out[:, :3, 3])
        return out

    def aabb(self) -> np.ndarray:
        """(2, 3) scene box ``[min, max]``."""
        return np.array([[-self.aabb_scale] * 3, [self.aabb_scale] * 3])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (written into ``transforms.json`` as ``"normalization"``)."""
        return {"centre": self.centre.tolist(), "scale": float(self.scale), "rotation": self.rotation.tolist(),
                "aabb_scale": float(self.aabb_scale), "scene_from_capture": self.scene_from_capture().tolist(),
                "capture_from_scene": self.capture_from_scene().tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Normalization":
        return cls(np.asarray(d["rotation"], np.float64), np.asarray(d["centre"], np.float64), float(d["scale"]),
                   float(d.get("aabb_scale", 1.0)))


def compute_normalization(c2w: np.ndarray, points: Optional[np.ndarray] = None) -> Normalization:
    """The normalisation of a capture (see the module docstring for the rule).

    Args:
        c2w: (n, 4, 4) OpenGL camera-to-world matrices in capture coordinates, n >= 1.
        points: (N, 3) sparse points in capture coordinates, or None.

    Returns:
        :class:`Normalization` whose box holds every inlier camera centre.
    """
    c2w = np.asarray(c2w, np.float64)
    centres = c2w[:, :3, 3]
    up = c2w[:, :3, 1].mean(axis=0)
    norm = float(np.linalg.norm(up))
    up = up / norm if norm > 1e-8 else np.array([0.0, 0.0, 1.0])
    rotation = _rotation_between(up, np.array([0.0, 0.0, 1.0]))
    pts = None if points is None else np.asarray(points, np.float64).reshape(-1, 3)
    pts = None if pts is None or len(pts) < MIN_POINTS else pts[np.isfinite(pts).all(axis=1)]
    centre = np.median(pts, axis=0) if pts is not None and len(pts) >= MIN_POINTS else np.median(centres, axis=0)
    dist = np.linalg.norm(centres - centre, axis=1)
    med = float(np.median(dist))
    inlier = dist <= OUTLIER_FACTOR * med if med > 0 else np.ones(len(dist), bool)
    if not inlier.all():
        log.warning("scene normalisation: %d of %d cameras are more than %.0fx the median distance from the "
                    "centre; the box is fitted to the others", int((~inlier).sum()), len(dist), OUTLIER_FACTOR)
    radius = float(dist[inlier].max()) if inlier.any() else 0.0
    if radius <= 0:  # one camera, or all on the centre: scale by the points' spread, else leave the scale
        spread = float(np.percentile(np.linalg.norm(pts - centre, axis=1), 90)) if pts is not None else 0.0
        radius = spread if spread > 0 else 1.0
    scale = 1.0 / (MARGIN * radius)
    aabb_scale = 1.0
    if pts is not None:
        extent = float(np.percentile(np.abs(scale * (pts - centre) @ rotation.T).max(axis=1), 90))
        while aabb_scale < min(extent, MAX_AABB_SCALE):
            aabb_scale *= 2.0
    return Normalization(rotation, centre, scale, aabb_scale)
