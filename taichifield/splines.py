"""Keyframe interpolation in time: cubic Hermite (Catmull-Rom) on vectors, squad on rotations.

Keyframes sit at strictly increasing times ``t_0 < ... < t_{K-1}``; a closed path (``loop``)
returns to keyframe 0 at ``t_0 + period``. Queries outside the keyframes' span are clamped.

* :func:`hermite`: the cubic Hermite spline with finite-difference (non-uniform Catmull-Rom)
  tangents ``m_i = (p_{i+1} - p_{i-1}) / (t_{i+1} - t_{i-1})``, one-sided at the ends of an
  open path (Catmull & Rom 1974; the "cardinal spline" of Kochanek & Bartels 1984 with zero
  tension). On segment ``i`` with ``h = t_{i+1} - t_i`` and ``s = (t - t_i) / h``:
  ``p(t) = h00(s) p_i + h10(s) h m_i + h01(s) p_{i+1} + h11(s) h m_{i+1}``. It passes through
  every keyframe and its time derivative is continuous there (C1), also across the seam of a loop.
* :func:`linear`: piecewise linear (field of view).
* :func:`squad`: Shoemake's spherical quadrangle interpolation of unit quaternions (Shoemake,
  "Animating rotation with quaternion curves", SIGGRAPH 1985; "Quaternion calculus and fast
  animation", 1987): ``q(s) = slerp(slerp(q_i, q_{i+1}, s), slerp(a_i, a_{i+1}, s), 2 s (1 - s))``
  with ``a_i = q_i exp(-(log(q_i^-1 q_{i+1}) + log(q_i^-1 q_{i-1})) / 4)``. It passes through the
  keyframe rotations and always returns rotation matrices (orthonormal, det +1); it is C1 in
  ``s`` for evenly spaced keyframes.

All functions are plain torch, float64, on the keyframes' device. Quaternions are ``(w, x, y, z)``.
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["hermite", "linear", "squad", "matrix_to_quat", "quat_to_matrix"]


def _extended(times: torch.Tensor, loop: bool, period: Optional[float]) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Knot times (M,) and keyframe indices (M,) with a loop's neighbours wrapped around.

    Returns ``(T, idx, first, n_segments)``: segment ``j`` runs from knot ``first + j`` to the next.
    """
    K = int(times.shape[0])
    idx = torch.arange(K, device=times.device)
    if not loop:
        return times, idx, 0, K - 1
    if period is None:
        raise ValueError("a loop needs its period")
    P = float(period)
    T = torch.cat([times[-1:] - P, times, times[:2] + P])  # K >= 2
    idx = torch.cat([idx[-1:], idx, idx[:2]])
    return T, idx, 1, K


def _locate(times: torch.Tensor, t: torch.Tensor, loop: bool, period: Optional[float]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Extended knots T, keyframe indices, and per query (F,) its knot index ``j`` and ``s`` in [0, 1]."""
    T, idx, first, n_seg = _extended(times, loop, period)
    t = t.to(T)
    lo, hi = T[first], T[first + n_seg]
    t = torch.minimum(torch.maximum(t, lo), hi)
    j = torch.searchsorted(T[first:first + n_seg + 1].contiguous(), t.contiguous(), right=True) - 1
    j = j.clamp(0, n_seg - 1) + first
    s = (t - T[j]) / (T[j + 1] - T[j])
    return T, idx, j, s


def hermite(times: torch.Tensor, values: torch.Tensor, t: torch.Tensor, *, loop: bool = False,
            period: Optional[float] = None) -> torch.Tensor:
    """Catmull-Rom cubic through ``values`` (K, D) at ``times`` (K,), evaluated at ``t`` (F,): (F, D)."""
    times, values = times.to(torch.float64), values.to(torch.float64)
    T, idx, j, s = _locate(times, t, loop, period)
    P = values[idx]  # (M, D)
    M = int(T.shape[0])
    m = torch.empty_like(P)
    if M > 2:
        m[1:-1] = (P[2:] - P[:-2]) / (T[2:] - T[:-2])[:, None]
    m[0] = (P[1] - P[0]) / (T[1] - T[0])
    m[-1] = (P[-1] - P[-2]) / (T[-1] - T[-2])
    h = (T[j + 1] - T[j])[:, None]
    s = s[:, None]
    s2, s3 = s * s, s * s * s
    h00, h10, h01, h11 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s, -2 * s3 + 3 * s2, s3 - s2
    return h00 * P[j] + h10 * h * m[j] + h01 * P[j + 1] + h11 * h * m[j + 1]


def linear(times: torch.Tensor, values: torch.Tensor, t: torch.Tensor, *, loop: bool = False,
           period: Optional[float] = None) -> torch.Tensor:
    """Piecewise-linear interpolation of ``values`` (K, D) at ``t`` (F,): (F, D)."""
    times, values = times.to(torch.float64), values.to(torch.float64)
    _, idx, j, s = _locate(times, t, loop, period)
    P = values[idx]
    return (1 - s)[:, None] * P[j] + s[:, None] * P[j + 1]


def matrix_to_quat(R: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (K, 4) ``(w, x, y, z)`` of rotation matrices (K, 3, 3) (Shepperd's method)."""
    R = R.to(torch.float64)
    out = []
    for r in R:
        tr = float(r[0, 0] + r[1, 1] + r[2, 2])
        case = max(range(4), key=lambda c: (tr, float(r[0, 0]), float(r[1, 1]), float(r[2, 2]))[c])
        if case == 0:
            w = (1.0 + tr) ** 0.5 / 2
            q = [w, (r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w), (r[1, 0] - r[0, 1]) / (4 * w)]
        elif case == 1:
            x = float(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) ** 0.5 / 2
            q = [(r[2, 1] - r[1, 2]) / (4 * x), x, (r[0, 1] + r[1, 0]) / (4 * x), (r[0, 2] + r[2, 0]) / (4 * x)]
        elif case == 2:
            y = float(1.0 - r[0, 0] + r[1, 1] - r[2, 2]) ** 0.5 / 2
            q = [(r[0, 2] - r[2, 0]) / (4 * y), (r[0, 1] + r[1, 0]) / (4 * y), y, (r[1, 2] + r[2, 1]) / (4 * y)]
        else:
            z = float(1.0 - r[0, 0] - r[1, 1] + r[2, 2]) ** 0.5 / 2
            q = [(r[1, 0] - r[0, 1]) / (4 * z), (r[0, 2] + r[2, 0]) / (4 * z), (r[1, 2] + r[2, 1]) / (4 * z), z]
        out.append(torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in q]))
    q = torch.stack(out).to(R.device) if out else R.new_zeros(0, 4)
    return q / q.norm(dim=-1, keepdim=True)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (F, 3, 3) of quaternions (F, 4) (normalised first)."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*q.shape[:-1], 3, 3)


def _qmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], dim=-1)


def _qconj(q: torch.Tensor) -> torch.Tensor:
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def _qlog(q: torch.Tensor) -> torch.Tensor:
    """log of unit quaternions (..., 4): the pure quaternion ``(0, theta n)`` as (..., 3)."""
    v = q[..., 1:]
    n = v.norm(dim=-1, keepdim=True)
    theta = torch.atan2(n, q[..., :1])
    return torch.where(n > 1e-12, v * theta / n.clamp(min=1e-300), v)


def _qexp(v: torch.Tensor) -> torch.Tensor:
    """exp of pure quaternions (..., 3) -> unit quaternions (..., 4)."""
    n = v.norm(dim=-1, keepdim=True)
    sinc = torch.where(n > 1e-12, torch.sin(n) / n.clamp(min=1e-300), torch.ones_like(n))
    return torch.cat([torch.cos(n), v * sinc], dim=-1)


def _slerp(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``a (a^-1 b)^s`` for quaternions (F, 4) and weights (F,)."""
    return _qmul(a, _qexp(s[:, None] * _qlog(_qmul(_qconj(a), b))))


def squad(times: torch.Tensor, rotations: torch.Tensor, t: torch.Tensor, *, loop: bool = False,
          period: Optional[float] = None) -> torch.Tensor:
    """Squad through keyframe rotations (K, 3, 3) at ``times`` (K,), at ``t`` (F,): (F, 3, 3) rotations."""
    times = times.to(torch.float64)
    _, idx, j, s = _locate(times, t, loop, period)
    q = matrix_to_quat(rotations)[idx]  # (M, 4)
    for i in range(1, q.shape[0]):  # each quaternion on its predecessor's hemisphere: shortest arcs
        if float((q[i] * q[i - 1]).sum()) < 0:
            q[i] = -q[i]
    M = q.shape[0]
    a = q.clone()
    if M > 2:
        qi = q[1:-1]
        inv = _qconj(qi)
        a[1:-1] = _qmul(qi, _qexp(-(_qlog(_qmul(inv, q[2:])) + _qlog(_qmul(inv, q[:-2]))) / 4))
    out = _slerp(_slerp(q[j], q[j + 1], s), _slerp(a[j], a[j + 1], s), 2 * s * (1 - s))
    return quat_to_matrix(out)
