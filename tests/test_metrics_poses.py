"""Pose agreement after a similarity alignment (Umeyama): exact on transformed copies, and
each image's own error when one camera is turned or moved."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from taichifield.metrics.poses import pose_agreement, rotation_jumps, umeyama


def _poses(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = Rotation.random(n, random_state=seed).as_matrix()
    c2w[:, :3, 3] = rng.normal(size=(n, 3)) * 2.0
    return c2w


def _similar(c2w: np.ndarray, s: float, rot: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = c2w.copy()
    out[:, :3, :3] = rot @ c2w[:, :3, :3]
    out[:, :3, 3] = s * c2w[:, :3, 3] @ rot.T + t
    return out


def test_umeyama_recovers_a_similarity():
    src = np.random.default_rng(0).normal(size=(20, 3))
    rot = Rotation.from_euler("xyz", [30, -50, 120], degrees=True).as_matrix()
    s, r, t = umeyama(src, 2.5 * src @ rot.T + np.array([1.0, -2.0, 0.5]))
    assert s == pytest.approx(2.5) and np.allclose(r, rot) and np.allclose(t, [1.0, -2.0, 0.5])


def test_agreement_of_a_transformed_copy_is_exact_and_finds_the_turned_and_moved_camera():
    ref = _poses(12, 1)
    rot = Rotation.from_euler("zyx", [75, 10, -40], degrees=True).as_matrix()
    got = _similar(ref, 0.3, rot, np.array([4.0, 0.0, -1.0]))
    names = [f"im{i:02d}.jpg" for i in range(12)]
    a = pose_agreement(names[::-1], got[::-1], names, ref)  # order does not matter, names do
    assert a.names == names and a.scale == pytest.approx(1 / 0.3)
    assert a.rotation_deg.max() < 1e-5 and a.centre.max() < 1e-9
    # image 3 turned by 180 deg about its viewing axis (the flip a symmetric object invites)
    flipped = got.copy()
    flipped[3, :3, :3] = flipped[3, :3, :3] @ Rotation.from_euler("z", 180, degrees=True).as_matrix()
    a = pose_agreement(names, flipped, names, ref)
    assert a.rotation_deg[3] == pytest.approx(180.0, abs=1e-4) and np.delete(a.rotation_deg, 3).max() < 1e-5
    assert "1 image off by > 5 deg" in a.summary()
    # a camera moved by 10% of the given size: the robust fit leaves it out, so its error is exactly that
    moved = got.copy()
    moved[5, :3, 3] += rot @ np.array([0.0, 0.0, 0.3 * 0.1 * 8.0])
    a = pose_agreement(names, moved, names, ref, size=8.0)
    assert a.centre[5] == pytest.approx(0.1) and np.delete(a.centre, 5).max() < 1e-9 and a.inliers == 11


def test_fewer_than_three_common_images_is_refused():
    ref = _poses(4, 2)
    with pytest.raises(ValueError, match="2 images in common"):
        pose_agreement(["a", "b", "x", "y"], ref, ["a", "b", "c", "d"], ref)


def test_alignment_ignores_flipped_cameras_and_jumps_name_them():
    """A third of the cameras turned by 180 deg about the vertical through the object, centre
    and all (what a symmetric bottle does to SfM): the other two thirds still align exactly."""
    n = 15
    a = np.linspace(0, 1.5 * np.pi, n)
    ref = np.tile(np.eye(4), (n, 1, 1))
    ref[:, :3, 3] = np.stack([3 * np.cos(a), 3 * np.sin(a), 0.3 * np.sin(3 * a)], 1)
    ref[:, :3, :3] = Rotation.from_euler("z", a[:, None]).as_matrix()
    flip = np.eye(4)
    flip[:3, :3] = Rotation.from_euler("z", 180, degrees=True).as_matrix()
    got = ref.copy()
    got[5:10] = flip @ got[5:10]
    names = [f"{i:04d}.jpg" for i in range(n)]
    agreement = pose_agreement(names, got, names, ref)
    assert agreement.inliers == 10
    assert np.allclose(agreement.rotation_deg[5:10], 180.0, atol=1e-4)
    assert np.delete(agreement.rotation_deg, range(5, 10)).max() < 1e-5
    assert [(x, y) for x, y, _ in rotation_jumps(names, got)] == [("0004.jpg", "0005.jpg"), ("0009.jpg", "0010.jpg")]
    assert rotation_jumps(names, ref) == []
