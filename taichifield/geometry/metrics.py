"""Mesh-to-mesh quality without a sampling floor: exact point-to-triangle distances.

Each mesh is sampled area-uniformly (:func:`taichifield.data.points.sample_mesh`, the one
mesh sampler; each sample keeps its face's normal), and each sample's distance is taken
to the OTHER mesh's triangles exactly (:func:`.distance.point_to_mesh`), not to the other
mesh's samples. A mesh compared with itself therefore scores 0, and the figures measure
the surfaces rather than the sample density. With ``d_PG`` the distances of the
predicted samples to the GT mesh and ``d_GP`` the reverse, and ``diag`` the GT
bounding-box diagonal:

* ``chamfer_l1 = (mean d_PG + mean d_GP) / 2`` (symmetric Chamfer-L1 of Occupancy
  Networks, Mescheder et al. 2019, with exact distances); ``accuracy = mean d_PG``,
  ``completeness = mean d_GP``;
* ``hausdorff95 = max(p95(d_PG), p95(d_GP))``, the 95th-percentile Hausdorff distance;
* ``fscore@T`` for ``T`` in 0.5% and 1%: at ``tau = T * diag``, the harmonic mean of
  precision (share of ``d_PG < tau``) and recall (share of ``d_GP < tau``), Tatarchenko
  et al. (2019);
* ``normal_consistency``: mean ``|cos|`` between each sample's face normal and the normal
  of the triangle closest to it on the other mesh, averaged over both directions;
* every distance also as ``<name>_rel`` = distance / ``diag``;
* ``sampled_chamfer_l1`` (and ``_rel``): the older figure, each sample's distance to the
  other mesh's nearest *sample* (scipy ``cKDTree``). It has a floor: two independent
  sample sets of one surface are about ``0.5 * sqrt(area / n)`` apart on average, so it
  cannot separate surfaces closer than that. Kept for comparison with earlier tables.

Example:
    >>> from taichifield.geometry.metrics import mesh_metrics
    >>> m = mesh_metrics(pred_v, pred_f, gt_v, gt_f)   # {"chamfer_l1_rel": ..., "fscore@1%": ...}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["mesh_metrics", "sample_surface", "welded_watertight", "FSCORE_FRACTIONS", "DISTANCE_KEYS"]

#: F-score thresholds as fractions of the GT bounding-box diagonal, and their key suffixes
FSCORE_FRACTIONS = {"0.5%": 0.005, "1%": 0.01}
#: keys whose values are distances (each also reported as ``<key>_rel``)
DISTANCE_KEYS = ("chamfer_l1", "accuracy", "completeness", "hausdorff95", "sampled_chamfer_l1")


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator,
                   name: str = "mesh_metrics: mesh") -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform samples on a triangle mesh: :func:`taichifield.data.points.sample_mesh`
    with its seed drawn from ``rng``, and errors naming the mesh.

    Args:
        vertices: (V, 3). faces: (F, 3) ints. n: number of samples. rng: numpy generator.
        name: what the error message calls the mesh (e.g. its file).

    Returns:
        points: (n, 3) float64; normals: (n, 3) unit face normals of the sampled faces.
    """
    from ..data.points import sample_mesh

    try:
        return sample_mesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), n,
                           seed=int(rng.integers(2**63)))
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None


def welded_watertight(faces: Any, vertices: Any) -> bool:
    """True when the mesh is closed and manifold once exactly coincident vertices are merged
    (as trimesh / Open3D / MeshLab weld): every edge in exactly two faces, and no face with a
    repeated vertex. Marching cubes gives each cell its own vertex copies, so an unwelded
    check would call any such mesh open.

    Args:
        faces: (F, 3) ints. vertices: (V, 3).

    Returns:
        False for an empty mesh.
    """
    f = np.asarray(faces, np.int64)
    if len(f) == 0:
        return False
    _, inverse = np.unique(np.asarray(vertices), axis=0, return_inverse=True)
    wf = inverse.reshape(-1)[f]
    if np.any((wf[:, 0] == wf[:, 1]) | (wf[:, 1] == wf[:, 2]) | (wf[:, 0] == wf[:, 2])):
        return False
    e = np.sort(np.concatenate([wf[:, [0, 1]], wf[:, [1, 2]], wf[:, [2, 0]]]), axis=1)
    _, uses = np.unique(e, axis=0, return_counts=True)
    return bool(np.all(uses == 2))


def _check(name: str, v: Any, f: Any) -> tuple[np.ndarray, np.ndarray]:
    v, f = np.asarray(v, np.float64), np.asarray(f)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise InputError(f"mesh_metrics: {name} mesh must be vertices (V, 3) and faces (F, 3)")
    if len(f) and (f.min() < 0 or f.max() >= len(v)):
        raise InputError(f"mesh_metrics: {name} mesh has face indices outside 0..{len(v) - 1}")
    return v, f.astype(np.int64)


def _unit_face_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    return n / np.maximum(np.linalg.norm(n, axis=1), 1e-300)[:, None]


def mesh_metrics(pred_v: Any, pred_f: Any, gt_v: Any, gt_f: Any, n_samples: int = 200_000, seed: int = 0, *,
                 pred_name: str = "mesh_metrics: predicted mesh",
                 gt_name: str = "mesh_metrics: ground-truth mesh") -> dict[str, float]:
    """Compare a predicted mesh to a ground-truth mesh (module docstring: the definitions).

    Args:
        pred_v, pred_f: predicted (V, 3) vertices and (F, 3) faces.
        gt_v, gt_f: ground truth, same layout.
        n_samples: samples per mesh.
        seed: sampling seed (results are deterministic for a seed; the two meshes get
            independent streams, so a mesh against itself gets two different sample sets).
        pred_name, gt_name: what error messages call the two meshes (e.g. their files).

    Returns:
        dict of floats: ``chamfer_l1``, ``accuracy``, ``completeness``, ``hausdorff95``,
        ``sampled_chamfer_l1`` (mesh units) and each as ``<key>_rel`` (/ ``diag``);
        ``fscore@0.5%``, ``precision@0.5%``, ``recall@0.5%``, ``tau@0.5%`` and the same
        at ``1%``; ``normal_consistency``; ``diag``; ``n_samples``. An empty prediction
        scores ``inf`` distances and zeros elsewhere.

    Raises:
        InputError: malformed arrays, an empty or zero-area GT mesh, n_samples < 1.
    """
    from scipy.spatial import cKDTree

    from .distance import point_to_mesh

    pv, pf = _check("predicted", pred_v, pred_f)
    gv, gf = _check("ground-truth", gt_v, gt_f)
    if n_samples < 1:
        raise InputError(f"mesh_metrics: n_samples must be positive, got {n_samples}")
    if len(gf) == 0:
        raise InputError("mesh_metrics: the ground-truth mesh has no faces")
    used = gv[np.unique(gf)]
    diag = float(np.linalg.norm(used.max(0) - used.min(0)))
    out: dict[str, float] = {"diag": diag, "n_samples": int(n_samples)}
    for key, frac in FSCORE_FRACTIONS.items():
        out[f"tau@{key}"] = frac * diag
    if len(pf) == 0:
        for key in DISTANCE_KEYS:
            out[key] = out[f"{key}_rel"] = float("inf")
        for key in FSCORE_FRACTIONS:
            out[f"fscore@{key}"] = out[f"precision@{key}"] = out[f"recall@{key}"] = 0.0
        out["normal_consistency"] = 0.0
        return out
    gt_rng, pred_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    gp, gn = sample_surface(gv, gf, n_samples, gt_rng, gt_name)
    pp, pn = sample_surface(pv, pf, n_samples, pred_rng, pred_name)

    d_pg, face_pg = point_to_mesh(pp, gv, gf)  # predicted samples -> GT triangles
    d_gp, face_gp = point_to_mesh(gp, pv, pf)
    out["accuracy"] = float(d_pg.mean())
    out["completeness"] = float(d_gp.mean())
    out["chamfer_l1"] = 0.5 * (out["accuracy"] + out["completeness"])
    out["hausdorff95"] = float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))
    for key in FSCORE_FRACTIONS:
        tau = out[f"tau@{key}"]
        precision, recall = float(np.mean(d_pg < tau)), float(np.mean(d_gp < tau))
        out[f"precision@{key}"], out[f"recall@{key}"] = precision, recall
        out[f"fscore@{key}"] = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    nc_pg = np.abs((pn * _unit_face_normals(gv, gf)[face_pg]).sum(1)).mean()
    nc_gp = np.abs((gn * _unit_face_normals(pv, pf)[face_gp]).sum(1)).mean()
    out["normal_consistency"] = float(0.5 * (nc_pg + nc_gp))

    s_pg, _ = cKDTree(gp).query(pp, workers=-1)  # the older, floored figure
    s_gp, _ = cKDTree(pp).query(gp, workers=-1)
    out["sampled_chamfer_l1"] = float(0.5 * (s_pg.mean() + s_gp.mean()))
    for key in DISTANCE_KEYS:
        out[f"{key}_rel"] = out[key] / diag if diag > 0 else float("inf")
    return out
