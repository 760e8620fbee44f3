"""PCA normals and Hoppe MST orientation on spheres with random-sign normals."""

from __future__ import annotations

import numpy as np

from taichifield.geometry.normals import estimate_normals, orient_normals


def _sphere(n: int, seed: int, center=(0.0, 0.0, 0.0), radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    d = np.random.default_rng(seed).normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.asarray(center) + radius * d, d


def test_pca_normals_are_tangent_plane_normals() -> None:
    p, n = _sphere(3000, 0)
    est = estimate_normals(p, k=12)
    np.testing.assert_allclose(np.linalg.norm(est, axis=1), 1.0, atol=1e-9)
    assert np.abs(np.einsum("ij,ij->i", est, n)).min() > 0.97


def test_orientation_of_random_sign_normals_is_consistent_and_outward() -> None:
    p, n = _sphere(2000, 1)
    flips = np.random.default_rng(2).choice([-1.0, 1.0], size=(2000, 1))
    out = orient_normals(p, n * flips, k=10)
    np.testing.assert_allclose(np.abs(out), np.abs(n))  # only signs change
    assert np.all(np.einsum("ij,ij->i", out, n) > 0)


def test_each_component_is_oriented_outward() -> None:
    p1, n1 = _sphere(800, 3, center=(-3, 0, 0))
    p2, n2 = _sphere(800, 4, center=(3, 0, 0), radius=0.5)
    p, n = np.concatenate([p1, p2]), np.concatenate([n1, n2])
    out = orient_normals(p, estimate_normals(p, k=10) * -1, k=10)
    assert np.all(np.einsum("ij,ij->i", out, n) > 0)
