"""Keyframed camera paths: a JSON file in, one pinhole camera per video frame out.

A path file (all lengths in scene units, angles in degrees, times in seconds)::

    {"fps": 30, "resolution": [640, 360], "up": [0, 0, 1], "loop": false,
     "keyframes": [
        {"time": 0.0, "position": [4, 0, 1], "look_at": [0, 0, 0], "fov": 40},
        {"time": 2.0, "c2w": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4]], "fov": 50}]}

* ``keyframes`` (at least 2, times strictly increasing): ``position`` + ``look_at`` (a camera
  at ``position`` looking at ``look_at`` with world up ``up``; see
  :func:`taichifield.cameras.look_at`), or ``c2w``, a 3x4 / 4x4 OpenGL camera-to-world pose
  (rotation orthonormal). ``fov`` is the horizontal field of view (as ``camera_angle_x``);
  a top-level ``fov`` is the default for keyframes without one.
* optional: ``fps`` (30), ``resolution`` (``W`` or ``[W, H]``, 400), ``up`` ([0, 0, 1]),
  ``loop`` (false; true returns to keyframe 0 after ``period`` seconds from the first keyframe,
  default: the span plus one mean keyframe interval), ``near`` / ``far`` (the checkpoint's).

Interpolation (:mod:`taichifield.splines`): positions by a Catmull-Rom cubic in time (C1); when
every keyframe has ``look_at`` the targets too, and each frame looks at its target; otherwise
rotations by squad; fov linearly. Frames are sampled every ``1 / fps`` s from the first keyframe.

:func:`path_from_views` writes a closed loop through training cameras, for editing without a GUI.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from . import splines
from .cameras import look_at
from .errors import InputError

__all__ = ["CameraPath", "load_camera_path", "parse_camera_path", "save_camera_path", "path_from_views",
           "focus_point"]


@dataclass
class CameraPath:
    """A validated path: K keyframes (float64 tensors) and the video settings."""

    times: torch.Tensor
    """(K,) keyframe times in seconds, strictly increasing."""
    positions: torch.Tensor
    """(K, 3) camera centres."""
    fov: torch.Tensor
    """(K,) horizontal field of view in degrees, in (0, 180)."""
    targets: Optional[torch.Tensor] = None
    """(K, 3) look-at points when every keyframe has one, else None."""
    rotations: Optional[torch.Tensor] = None
    """(K, 3, 3) camera-to-world rotations (set when ``targets`` is None)."""
    fps: float = 30.0
    width: int = 400
    height: int = 400
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    loop: bool = False
    period: Optional[float] = None
    """Seconds from the first keyframe back to it, for a loop."""
    near: Optional[float] = None
    far: Optional[float] = None
    source: str = "<path>"

    @property
    def n_frames(self) -> int:
        """Frames of the video: every ``1 / fps`` s over the span (a loop's seam frame not repeated)."""
        if self.loop:
            return max(1, int(round(float(self.period) * self.fps)))  # type: ignore[arg-type]
        return int(math.floor(float(self.times[-1] - self.times[0]) * self.fps + 1e-6)) + 1

    def frame_times(self) -> torch.Tensor:
        """(F,) float64 frame times."""
        return self.times[0] + torch.arange(self.n_frames, dtype=torch.float64) / self.fps

    def cameras(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Poses (F, 4, 4) float64 and horizontal fov (F,) degrees at times ``t`` (F,).

        Raises:
            InputError: (naming :attr:`source`) a frame looks along ``up``.
        """
        kw = {"loop": self.loop, "period": self.period}
        pos = splines.hermite(self.times, self.positions, t, **kw)
        fov = splines.linear(self.times, self.fov[:, None], t, **kw)[:, 0]
        if self.targets is not None:
            try:
                c2w = look_at(pos, splines.hermite(self.times, self.targets, t, **kw), self.up)
            except InputError as exc:
                raise InputError(f"{self.source}: a frame of the path {exc} (move look_at or change up)") from None
        else:
            c2w = torch.zeros(pos.shape[0], 4, 4, dtype=torch.float64)
            c2w[:, :3, :3] = splines.squad(self.times, self.rotations, t, **kw)  # type: ignore[arg-type]
            c2w[:, :3, 3], c2w[:, 3, 3] = pos, 1.0
        return c2w, fov

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (keyframes with ``look_at``, or ``c2w`` when the path has rotations)."""
        keys = []
        for i in range(self.times.shape[0]):
            k: dict[str, Any] = {"time": round(float(self.times[i]), 6)}
            if self.targets is not None:
                k["position"] = [round(float(v), 6) for v in self.positions[i]]
                k["look_at"] = [round(float(v), 6) for v in self.targets[i]]
            else:
                m = torch.cat([self.rotations[i], self.positions[i][:, None]], dim=1)  # type: ignore[index]
                k["c2w"] = [[round(float(v), 6) for v in row] for row in m]
            k["fov"] = round(float(self.fov[i]), 4)
            keys.append(k)
        d: dict[str, Any] = {"fps": self.fps, "resolution": [self.width, self.height], "up": list(self.up),
                             "loop": self.loop}
        if self.loop:
            d["period"] = round(float(self.period), 6)  # type: ignore[arg-type]
        for name in ("near", "far"):
            if getattr(self, name) is not None:
                d[name] = getattr(self, name)
        d["keyframes"] = keys
        return d


def _number(v: Any, where: str, src: str, lo: float = -math.inf, hi: float = math.inf, open_lo: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{src}: {where} must be a finite number, not {json.dumps(v)}")
    if v < lo or v > hi or (open_lo and v <= lo):
        raise InputError(f"{src}: {where} is {v:g}, out of range")
    return float(v)


def _vector(v: Any, n: int, where: str, src: str) -> list[float]:
    if not isinstance(v, list) or len(v) != n:
        raise InputError(f"{src}: {where} must be a list of {n} numbers")
    return [_number(x, where, src) for x in v]


def _pose(v: Any, where: str, src: str) -> torch.Tensor:
    if not isinstance(v, list) or len(v) not in (3, 4):
        raise InputError(f"{src}: {where} must be a 3x4 or 4x4 matrix (a list of rows)")
    m = torch.tensor([_vector(row, 4, where + " rows", src) for row in v], dtype=torch.float64)
    R = m[:3, :3]
    if float((R.T @ R - torch.eye(3, dtype=torch.float64)).abs().max()) > 1e-3 or float(torch.det(R)) <= 0:
        raise InputError(f"{src}: {where} has a rotation that is not orthonormal (or is a reflection)")
    return m[:3]


def parse_camera_path(data: Any, source: str | Path = "<path>") -> CameraPath:
    """Validate a path's JSON object (see the module docstring) into a :class:`CameraPath`.

    Raises:
        InputError: one line naming ``source`` and the problem (missing keys, fewer than 2
        keyframes, non-increasing times, fov outside (0, 180), a non-orthonormal c2w ...).
    """
    src = str(source)
    if not isinstance(data, dict):
        raise InputError(f"{src}: a camera path must be a JSON object with 'keyframes'")
    unknown = sorted(set(data) - {"fps", "resolution", "up", "loop", "period", "near", "far", "fov", "keyframes"})
    if unknown:
        raise InputError(f"{src}: unknown key {unknown[0]!r} (expected fps, resolution, up, loop, period, near, far, "
                         "fov, keyframes)")
    if "keyframes" not in data:
        raise InputError(f"{src}: missing key 'keyframes'")
    frames = data["keyframes"]
    if not isinstance(frames, list) or len(frames) < 2:
        raise InputError(f"{src}: 'keyframes' must be a list of at least 2 keyframes")
    fps = _number(data.get("fps", 30), "'fps'", src, 0.0, 1000.0, open_lo=True)
    res = data.get("resolution", 400)
    res = [res, res] if isinstance(res, int) and not isinstance(res, bool) else res
    if not isinstance(res, list) or len(res) != 2 or not all(isinstance(r, int) and not isinstance(r, bool)
                                                             and 1 <= r <= 16384 for r in res):
        raise InputError(f"{src}: 'resolution' must be an integer W or [W, H] between 1 and 16384")
    up = _vector(data.get("up", [0.0, 0.0, 1.0]), 3, "'up'", src)
    if math.hypot(*up) == 0:
        raise InputError(f"{src}: 'up' must not be zero")
    loop = data.get("loop", False)
    if not isinstance(loop, bool):
        raise InputError(f"{src}: 'loop' must be true or false")
    default_fov = data.get("fov")
    times, positions, targets, rotations, fovs = [], [], [], [], []
    for i, k in enumerate(frames):
        where = f"keyframe {i}"
        if not isinstance(k, dict):
            raise InputError(f"{src}: {where} must be a JSON object")
        if "time" not in k:
            raise InputError(f"{src}: {where}: missing key 'time'")
        times.append(_number(k["time"], f"{where} 'time'", src))
        if i and times[-1] <= times[-2]:
            raise InputError(f"{src}: keyframe times must increase strictly ({where} at {times[-1]:g} s "
                             f"follows {times[-2]:g} s)")
        fov = k.get("fov", default_fov)
        if fov is None:
            raise InputError(f"{src}: {where}: missing key 'fov' (or give a top-level 'fov')")
        fovs.append(_number(fov, f"{where} 'fov'", src, 0.0, 180.0, open_lo=True))
        if fovs[-1] >= 180.0:
            raise InputError(f"{src}: {where} 'fov' is {fovs[-1]:g}, must be below 180 degrees")
        if "c2w" in k:
            if "position" in k or "look_at" in k:
                raise InputError(f"{src}: {where}: give either 'c2w' or 'position' + 'look_at', not both")
            m = _pose(k["c2w"], f"{where} 'c2w'", src)
            positions.append(m[:, 3])
            rotations.append(m[:, :3])
            targets.append(None)
            continue
        for key in ("position", "look_at"):
            if key not in k:
                raise InputError(f"{src}: {where}: missing key {key!r} (or give 'c2w')")
        p = torch.tensor(_vector(k["position"], 3, f"{where} 'position'", src), dtype=torch.float64)
        q = torch.tensor(_vector(k["look_at"], 3, f"{where} 'look_at'", src), dtype=torch.float64)
        try:
            rotations.append(look_at(p, q, up)[:3, :3])
        except InputError as exc:
            raise InputError(f"{src}: {where}: {exc}") from None
        positions.append(p)
        targets.append(q)
    t = torch.tensor(times, dtype=torch.float64)
    period = None
    if loop:
        span = times[-1] - times[0]
        period = _number(data.get("period", span * len(times) / (len(times) - 1)), "'period'", src)
        if period <= span:
            raise InputError(f"{src}: 'period' ({period:g} s) must exceed the keyframes' span ({span:g} s)")
    elif "period" in data:
        raise InputError(f"{src}: 'period' needs \"loop\": true")
    near = far = None
    if "near" in data:
        near = _number(data["near"], "'near'", src, 0.0)
    if "far" in data:
        far = _number(data["far"], "'far'", src, 0.0, open_lo=True)
        if near is not None and far <= near:
            raise InputError(f"{src}: 'far' ({far:g}) must exceed 'near' ({near:g})")
    all_targets = all(x is not None for x in targets)
    return CameraPath(times=t, positions=torch.stack(positions), fov=torch.tensor(fovs, dtype=torch.float64),
                      targets=torch.stack(targets) if all_targets else None,  # type: ignore[arg-type]
                      rotations=None if all_targets else torch.stack(rotations), fps=fps, width=res[0],
                      height=res[1], up=tuple(up), loop=loop, period=period, near=near, far=far,  # type: ignore[arg-type]
                      source=src)


def load_camera_path(path: str | Path) -> CameraPath:
    """Read and validate a path file (:func:`parse_camera_path`)."""
    from .data.loading import read_json

    return parse_camera_path(read_json(Path(path)), path)


def save_camera_path(path: str | Path, camera_path: CameraPath) -> Path:
    """Write ``camera_path`` as JSON (atomically); the caller checks for an existing file."""
    from .atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(camera_path.to_dict(), indent=2) + "\n")
    return Path(path)


def focus_point(c2w: torch.Tensor) -> torch.Tensor:
    """The point (3,) nearest to all optical axes of poses (N, 4, 4), in least squares.

    ``argmin_x sum_i |(I - d_i d_i^T)(x - c_i)|^2`` for centres ``c_i`` and viewing directions
    ``d_i`` (instant-ngp's ``colmap2nerf.py`` centring), with a small pull towards the mean
    centre so parallel axes (forward-facing captures) stay well posed.
    """
    c2w = c2w.to(torch.float64)
    c, d = c2w[:, :3, 3], -c2w[:, :3, 2]
    d = d / d.norm(dim=-1, keepdim=True)
    proj = torch.eye(3, dtype=torch.float64) - d[:, :, None] * d[:, None, :]  # (N, 3, 3)
    eps = 1e-3 * c2w.shape[0]
    A = proj.sum(0) + eps * torch.eye(3, dtype=torch.float64)
    b = torch.einsum("nij,nj->i", proj, c) + eps * c.mean(0)
    return torch.linalg.solve(A, b)


def _fourier(theta: torch.Tensor, harmonics: int) -> torch.Tensor:
    """Design matrix (N, 2H + 1): 1, cos(k theta), sin(k theta) for k = 1..H."""
    cols = [torch.ones_like(theta)]
    for k in range(1, harmonics + 1):
        cols += [torch.cos(k * theta), torch.sin(k * theta)]
    return torch.stack(cols, dim=-1)


def path_from_views(c2w: torch.Tensor, *, fov: float, width: int, height: int, keyframes: int = 12,
                    seconds: float = 4.0, fps: float = 30.0, harmonics: int = 2, source: str = "<views>") -> CameraPath:
    """A smooth closed loop through camera poses (N, 4, 4), looking at their :func:`focus_point`.

    The world up is the mean camera up; cameras are ordered by their angle ``theta`` around
    the up axis through their mean centre, and their cylindrical radius ``r(theta)`` and height
    ``h(theta)`` are fitted (least squares, a smoothness penalty ``k^4`` on harmonic ``k``) by a
    periodic Fourier series of ``harmonics`` terms. ``keyframes`` points evenly spaced in angle
    on that curve become the keyframes of a ``seconds``-long loop; ``fov`` (degrees) and the
    resolution are the training camera's.

    Raises:
        InputError: fewer than 3 cameras, or their up vectors cancel.
    """
    c2w = c2w.to(torch.float64).cpu()
    n = int(c2w.shape[0])
    if n < 3:
        raise InputError(f"{source}: a loop through the training cameras needs at least 3 of them, not {n}")
    up = c2w[:, :3, 1].mean(0)
    if float(up.norm()) < 1e-3:
        raise InputError(f"{source}: the training cameras' up vectors cancel out; no common up axis")
    up = up / up.norm()
    centres = c2w[:, :3, 3]
    mid = centres.mean(0)
    e1 = torch.linalg.cross(up, torch.eye(3, dtype=torch.float64)[int(up.abs().argmin())], dim=-1)
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(up, e1, dim=-1)
    rel = centres - mid
    x, y, h = rel @ e1, rel @ e2, rel @ up
    theta, r = torch.atan2(y, x), torch.hypot(x, y)
    H = max(0, min(harmonics, (n - 1) // 2))
    A = _fourier(theta, H)
    penalty = torch.tensor([0.0] + [float(k ** 4) for k in range(1, H + 1) for _ in (0, 1)], dtype=torch.float64)
    coef = torch.linalg.solve(A.T @ A + 1e-3 * n * torch.diag(penalty), A.T @ torch.stack([r, h], dim=-1))
    K = max(3, int(keyframes))
    phi = torch.atan2(y, x).sort().values[0] + torch.arange(K, dtype=torch.float64) * (2 * math.pi / K)
    rh = _fourier(phi, H) @ coef
    pos = mid + rh[:, :1] * (torch.cos(phi)[:, None] * e1 + torch.sin(phi)[:, None] * e2) + rh[:, 1:] * up
    target = focus_point(c2w)
    period = float(seconds)
    return CameraPath(times=torch.arange(K, dtype=torch.float64) * (period / K), positions=pos,
                      fov=torch.full((K,), float(fov), dtype=torch.float64), targets=target.expand(K, 3).clone(),
                      fps=float(fps), width=int(width), height=int(height),
                      up=tuple(round(float(u), 6) for u in up), loop=True, period=period, source=source)  # type: ignore[arg-type]
