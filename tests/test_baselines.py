"""Poisson (Open3D) and Hoppe 1992 baselines on analytic spheres."""

from __future__ import annotations

import numpy as np

from taichifield.geometry.baselines import hoppe_reconstruct, poisson_reconstruct


def _sphere(n: int = 4000, seed: int = 0) -> np.ndarray:
    d = np.random.default_rng(seed).normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def test_poisson_recovers_a_sphere() -> None:
    import open3d  # noqa: F401  a required dependency (pyproject.toml): a broken install must fail, not skip
    d = _sphere()
    verts, faces = poisson_reconstruct(2.0 * d + 1.0, d, depth=6)
    r = np.linalg.norm(verts - 1.0, axis=1)
    assert len(faces) > 500 and np.abs(r - 2.0).mean() < 0.03
    assert faces.dtype == np.int64 and faces.max() < len(verts)


def test_hoppe_recovers_a_sphere_outward() -> None:
    d = _sphere()
    verts, faces = hoppe_reconstruct(2.0 * d, d, resolution=40)
    r = np.linalg.norm(verts, axis=1)
    assert len(faces) > 500 and np.abs(r - 2.0).mean() < 0.02
    tri = verts[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (np.einsum("ij,ij->i", normal, tri.mean(axis=1)) > 0).mean() > 0.99  # outward winding


def test_hoppe_leaves_regions_without_data_empty() -> None:
    d = _sphere()
    upper = d[d[:, 2] > 0.2]
    verts, _ = hoppe_reconstruct(upper, upper, resolution=40)
    assert len(verts) > 100 and verts[:, 2].min() > 0.0  # no surface invented below the data
