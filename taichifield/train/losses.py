"""SDF training losses and the targets they need. Pure torch on precomputed tensors.

Conventions: ``u`` is the field (negative inside, positive outside); normals point
outward; every function takes tensors, none takes a model.

* :func:`igr_loss` - Gropp et al. 2020 (IGR), Eq. 2 + 3:
  ``mean_i(|u(x_i)| + tau ||grad u(x_i) - n_i||) + lam E_x[(||grad u(x)|| - 1)^2]``,
  tau = 1, lam = 0.1; ``x`` are off-surface samples (:func:`sample_off_surface`).
* :func:`siren_loss` - Sitzmann et al. 2020 (SIREN), Sec. 4.2 / the authors' code:
  ``3e3 |u| on surface + 1e2 (1 - cos(grad u, n)) on surface + 5e1 | ||grad u|| - 1 |
  everywhere + 1e2 exp(-alpha |u|) off surface``, alpha = 100.
* :func:`deepsdf_loss` - Park et al. 2019 (DeepSDF), Eq. 4:
  ``|clamp(u, -delta, delta) - clamp(s, -delta, delta)|``, delta = 0.1.
* :func:`occupancy_loss` - Mescheder et al. 2019 (Occupancy Networks): binary cross
  entropy on inside/outside labels with ``p(inside) = sigmoid(-u / temperature)``,
  so the decision boundary p = 0.5 is the zero level set extracted like any SDF.

How deepsdf/occupancy targets are derived (:func:`signed_distance_targets`): for a
query ``x``, the ``k`` nearest oriented input points ``p_j`` (with normals ``n_j``)
are found; the target distance is ``|x - p_1|`` (the nearest one) and its sign is the
sign of ``sum_j (x - p_j) . n_j`` (a vote of the local tangent planes, robust to a
few badly oriented normals). A mesh input is first sampled densely (area-uniform,
face normals), so the same rule applies; occupancy labels are ``target < 0``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "igr_loss",
    "siren_loss",
    "deepsdf_loss",
    "occupancy_loss",
    "eikonal_term",
    "sample_off_surface",
    "signed_distance_targets",
    "LOSSES",
]

from .configs import LOSSES  # noqa: E402  (the names live with the configs, torch-free)


def eikonal_term(grad: torch.Tensor) -> torch.Tensor:
    """Mean of ``(||grad|| - 1)^2`` over (M, 3) gradients (IGR Eq. 3)."""
    return ((grad.norm(dim=-1) - 1.0) ** 2).mean()


def igr_loss(
    u_surf: torch.Tensor,
    grad_surf: torch.Tensor,
    normals: torch.Tensor,
    grad_off: torch.Tensor,
    tau: float = 1.0,
    lam: float = 0.1,
    surface_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """IGR loss.

    Args:
        u_surf: (N,) field at the input points; grad_surf: (N, 3) its gradient.
        normals: (N, 3) input normals (None-free; use tau=0 for unoriented points).
        grad_off: (M, 3) field gradient at off-surface samples.
        tau: normal term weight; lam: eikonal weight; surface_weight: weight of ``|u|``.

    Returns:
        scalar loss and a dict of its terms (detached 0-dim tensors: read them only when logging,
        each read is a host sync on a GPU).
    """
    surf = u_surf.abs().mean()
    normal = (grad_surf - normals).norm(dim=-1).mean()
    eik = eikonal_term(grad_off)
    loss = surface_weight * surf + tau * normal + lam * eik
    return loss, {"surface": surf.detach(), "normal": normal.detach(), "eikonal": eik.detach()}


def siren_loss(
    u_surf: torch.Tensor,
    grad_surf: torch.Tensor,
    normals: torch.Tensor,
    u_off: torch.Tensor,
    grad_off: torch.Tensor,
    alpha: float = 100.0,
    weights: tuple[float, float, float, float] = (3e3, 1e2, 5e1, 1e2),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SIREN's SDF loss.

    Args:
        u_surf: (N,); grad_surf: (N, 3); normals: (N, 3) on-surface values.
        u_off: (M,); grad_off: (M, 3) off-surface values.
        alpha: the ``psi(u) = exp(-alpha |u|)`` sharpness.
        weights: (surface, normal, eikonal, off-surface) weights of the authors' code.

    Returns:
        scalar loss and a dict of its (unweighted) terms.
    """
    surf = u_surf.abs().mean()
    normal = (1.0 - F.cosine_similarity(grad_surf, normals, dim=-1)).mean()
    eik = (torch.cat([grad_surf, grad_off]).norm(dim=-1) - 1.0).abs().mean()
    off = torch.exp(-alpha * u_off.abs()).mean()
    w = weights
    loss = w[0] * surf + w[1] * normal + w[2] * eik + w[3] * off
    return loss, {"surface": surf.detach(), "normal": normal.detach(), "eikonal": eik.detach(), "offsurface": off.detach()}


def deepsdf_loss(u: torch.Tensor, target: torch.Tensor, delta: float = 0.1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DeepSDF clamped L1 on (M,) predictions and (M,) signed distance targets."""
    loss = (u.clamp(-delta, delta) - target.clamp(-delta, delta)).abs().mean()
    return loss, {"l1": loss.detach()}


def occupancy_loss(u: torch.Tensor, inside: torch.Tensor, temperature: float = 0.01) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """BCE on (M,) labels (1 inside, 0 outside) with logits ``-u / temperature``."""
    loss = F.binary_cross_entropy_with_logits(-u / temperature, inside.to(u.dtype))
    return loss, {"bce": loss.detach()}


def sample_off_surface(
    surf: torch.Tensor,
    sigma: torch.Tensor,
    n_uniform: int,
    generator: torch.Generator | None = None,
    bound: float = 1.0,
) -> torch.Tensor:
    """IGR's sampling: a Gaussian sample around each surface point plus uniform samples.

    Args:
        surf: (N, 3) surface points; sigma: (N,) per-point std (e.g. distance to the
            k-th neighbour) or a scalar tensor.
        n_uniform: samples uniform in ``[-bound, bound]^3``.

    Returns:
        (N + n_uniform, 3) points.
    """
    noise = torch.randn(surf.shape, generator=generator, dtype=surf.dtype, device=surf.device)
    near = surf + noise * sigma.reshape(-1, 1) if sigma.ndim else surf + noise * sigma
    uni = (torch.rand((n_uniform, 3), generator=generator, dtype=surf.dtype, device=surf.device) * 2 - 1) * bound
    return torch.cat([near, uni])


def signed_distance_targets(query: np.ndarray, points: np.ndarray, normals: np.ndarray, k: int = 8, tree=None) -> np.ndarray:
    """Signed distance of (M, 3) queries to oriented points (see the module notes).

    Args:
        query: (M, 3); points: (N, 3); normals: (N, 3) outward unit normals.
        k: neighbours voting on the sign.
        tree: an optional prebuilt ``scipy.spatial.cKDTree(points)``.

    Returns:
        (M,) float32 signed distances (negative inside).
    """
    from scipy.spatial import cKDTree

    tree = tree if tree is not None else cKDTree(points)
    k = int(min(k, len(points)))
    # a thread pool costs ~7 ms per call: only worth it for big query sets
    dist, idx = tree.query(query, k=k, workers=-1 if len(query) > 20_000 else 1)
    dist, idx = dist.reshape(len(query), k), idx.reshape(len(query), k)
    side = np.einsum("mkj,mkj->mk", query[:, None, :] - points[idx], normals[idx]).sum(axis=1)
    return (np.where(side < 0, -1.0, 1.0) * dist[:, 0]).astype(np.float32)
