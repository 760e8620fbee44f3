"""Normal estimation (PCA on k nearest neighbours) and consistent orientation.

Orientation follows Hoppe et al. 1992, "Surface reconstruction from unorganized
points", Sec. 3.3: build the Riemannian graph (here the symmetrised kNN graph) with
edge cost ``1 - |n_i . n_j|`` (cheap between nearly parallel tangent planes), take its
minimum spanning tree and propagate the sign along it, flipping ``n_j`` whenever
``n_i . n_j < 0``. Each connected component is seeded at its point farthest from the
component's centroid, whose normal is made to point away from that centroid (for a
closed-ish surface that point lies on the convex hull, where outward is unambiguous).

Only numpy/scipy: no Open3D needed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["estimate_normals", "orient_normals"]


def estimate_normals(points: np.ndarray, k: int = 16, chunk: int = 65536) -> np.ndarray:
    """PCA normals: the eigenvector of the smallest eigenvalue of each kNN covariance.

    Args:
        points: (N, 3) positions.
        k: neighbours per point (the point itself included).
        chunk: points processed per batch (bounds memory to chunk * k * 3 floats).

    Returns:
        (N, 3) float64 unit normals with arbitrary sign.
    """
    from scipy.spatial import cKDTree

    pts = np.asarray(points, np.float64)
    k = int(min(k, len(pts)))
    tree = cKDTree(pts)
    out = np.empty_like(pts)
    for s in range(0, len(pts), chunk):
        _, idx = tree.query(pts[s:s + chunk], k=k, workers=-1)
        nb = pts[idx.reshape(-1, k)]  # (B, k, 3)
        nb = nb - nb.mean(axis=1, keepdims=True)
        cov = np.einsum("bki,bkj->bij", nb, nb)
        _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
        out[s:s + chunk] = vecs[:, :, 0]
    return out


def orient_normals(points: np.ndarray, normals: np.ndarray, k: int = 16) -> np.ndarray:
    """Flip normals to a consistent, outward orientation (Hoppe 1992 MST propagation).

    Args:
        points: (N, 3) positions.
        normals: (N, 3) unit normals, any signs.
        k: neighbours in the Riemannian graph.

    Returns:
        (N, 3) float64 normals, each equal to ``+-normals[i]``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree
    from scipy.spatial import cKDTree

    pts = np.asarray(points, np.float64)
    nrm = np.asarray(normals, np.float64)
    n = len(pts)
    if n < 2:
        return nrm.copy()
    k = int(min(k + 1, n))
    _, idx = cKDTree(pts).query(pts, k=k, workers=-1)
    rows = np.repeat(np.arange(n), k - 1)
    cols = idx[:, 1:].reshape(-1)
    cost = 1.0 - np.abs(np.einsum("ij,ij->i", nrm[rows], nrm[cols])) + 1e-6  # > 0: zero means "no edge"
    graph = coo_matrix((cost, (rows, cols)), shape=(n, n)).tocsr()
    graph = graph.maximum(graph.T)  # symmetrise the kNN graph
    mst = minimum_spanning_tree(graph)
    mst = mst + mst.T
    n_comp, labels = connected_components(mst, directed=False)
    sign = np.ones(n)
    for c in range(n_comp):
        members = np.flatnonzero(labels == c)
        centroid = pts[members].mean(axis=0)
        off = pts[members] - centroid
        seed = members[np.argmax(np.einsum("ij,ij->i", off, off))]
        if np.dot(nrm[seed], pts[seed] - centroid) < 0:
            sign[seed] = -1.0
        order, pred = breadth_first_order(mst, seed, directed=False, return_predecessors=True)
        order = order[1:]
        parents = pred[order]
        agree = np.sign(np.einsum("ij,ij->i", nrm[order], nrm[parents]))
        agree[agree == 0] = 1.0
        # sign[child] = sign[parent] * agree: the BFS order visits parents first
        for child, parent, a in zip(order.tolist(), parents.tolist(), agree.tolist()):
            sign[child] = sign[parent] * a
    return nrm * sign[:, None]
