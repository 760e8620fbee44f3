"""Camera paths (taichifield.camera_path, taichifield.splines): interpolation through the keyframes,
C1 positions, orthonormal rotations, closed loops through training cameras, one-line errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from taichifield import cameras, splines
from taichifield.camera_path import focus_point, load_camera_path, parse_camera_path, path_from_views
from taichifield.errors import InputError

D = torch.float64


def _look(eye, target=(0.0, 0.0, 0.0)) -> list[list[float]]:  # type: ignore[no-untyped-def]
    return cameras.look_at(torch.tensor(eye, dtype=D), target, (0.0, 0.0, 1.0)).tolist()


LOOKAT = {"fps": 10, "resolution": [8, 6], "keyframes": [
    {"time": 0.0, "position": [4, 0, 1], "look_at": [0, 0, 0], "fov": 40},
    {"time": 1.0, "position": [0, 4, 1.5], "look_at": [0, 0, 0.2], "fov": 60},
    {"time": 2.5, "position": [-4, 0.5, 1], "look_at": [0.1, 0, 0], "fov": 40},
    {"time": 3.0, "position": [-3, -3, 2], "look_at": [0, 0, 0], "fov": 30}]}

MIXED = {"fov": 45, "keyframes": [
    {"time": 0.0, "c2w": _look([4, 0, 1])},
    {"time": 0.7, "c2w": _look([0, 4, 1])[:3]},
    {"time": 2.0, "position": [-4, 0, 2], "look_at": [0, 0, 0]},
    {"time": 2.5, "c2w": _look([0, -4, -1])}]}


def _derivative(path, t: float, side: float, eps: float = 1e-5) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """One-sided difference quotient of the positions at ``t`` (side -1: from the left)."""
    ts = torch.tensor([t, t + side * eps], dtype=D)
    pos = path.cameras(ts)[0][:, :3, 3]
    return (pos[1] - pos[0]) / (side * eps)


@pytest.mark.parametrize("data", [LOOKAT, MIXED, dict(LOOKAT, loop=True), dict(MIXED, loop=True, period=3.5)])
def test_passes_through_keyframes(data) -> None:  # type: ignore[no-untyped-def]
    path = parse_camera_path(data, "p.json")
    c2w, fov = path.cameras(path.times)
    for i, k in enumerate(data["keyframes"]):
        if "c2w" in k:
            expected = torch.tensor(k["c2w"], dtype=D)[:3]
            assert torch.allclose(c2w[i, :3], expected, atol=1e-9)
        else:
            assert torch.allclose(c2w[i, :3, 3], torch.tensor(k["position"], dtype=D))
            view = torch.tensor(k["look_at"], dtype=D) - torch.tensor(k["position"], dtype=D)
            assert torch.allclose(-c2w[i, :3, 2], view / view.norm(), atol=1e-9)  # looks at look_at
        assert float(fov[i]) == pytest.approx(k.get("fov", data.get("fov")))
    mid = 0.5 * (path.times[1:] + path.times[:-1])  # fov is linear in time
    assert torch.allclose(path.cameras(mid)[1], 0.5 * (path.fov[1:] + path.fov[:-1]))


@pytest.mark.parametrize("data", [LOOKAT, MIXED, dict(MIXED, loop=True)])
def test_positions_are_c1_at_keyframes(data) -> None:  # type: ignore[no-untyped-def]
    path = parse_camera_path(data, "p.json")
    knots = [float(t) for t in path.times[1:-1]]
    if path.loop:  # the seam: leaving keyframe 0 vs arriving back at it one period later
        t0 = float(path.times[0])
        assert torch.allclose(_derivative(path, t0, +1), _derivative(path, t0 + path.period, -1), atol=1e-3)
    for t in knots:
        left, right = _derivative(path, t, -1), _derivative(path, t, +1)
        assert torch.allclose(left, right, atol=1e-3), (t, left, right)
        assert float(left.norm()) > 0.1  # a real tangent, not a stop


@pytest.mark.parametrize("data", [LOOKAT, MIXED, dict(MIXED, loop=True)])
def test_rotations_stay_orthonormal_and_continuous(data) -> None:  # type: ignore[no-untyped-def]
    path = parse_camera_path(data, "p.json")
    t = torch.linspace(float(path.times[0]), float(path.times[-1]) + (0.3 if path.loop else 0), 500, dtype=D)
    R = path.cameras(t)[0][:, :3, :3]
    eye = torch.eye(3, dtype=D).expand_as(R)
    assert torch.allclose(R.transpose(1, 2) @ R, eye, atol=1e-9)
    assert torch.allclose(torch.det(R), torch.ones(len(t), dtype=D), atol=1e-9)
    step = torch.einsum("nij,nij->n", R[1:], R[:-1])  # trace(R_a^T R_b) = 1 + 2 cos(angle)
    assert float(torch.arccos(((step - 1) / 2).clamp(-1, 1)).max()) < math.radians(5)


def test_frames_and_loop_closure() -> None:
    path = parse_camera_path(LOOKAT, "p.json")
    assert path.n_frames == 31 and torch.allclose(path.frame_times()[-1], torch.tensor(3.0, dtype=D))
    loop = parse_camera_path(dict(LOOKAT, loop=True, period=4.0), "p.json")
    assert loop.n_frames == 40  # the seam frame (= frame 0) is not repeated
    a, b = loop.cameras(torch.tensor([0.0, 4.0], dtype=D))[0]
    assert torch.allclose(a, b, atol=1e-12)
    default = parse_camera_path(dict(LOOKAT, loop=True), "p.json")
    assert default.period == pytest.approx(4.0)  # span + one mean keyframe interval


def test_json_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for data in (LOOKAT, dict(MIXED, loop=True, near=0.5, far=9.0)):
        path = parse_camera_path(data, "p.json")
        f = tmp_path / "p.json"
        f.write_text(json.dumps(path.to_dict()))
        back = load_camera_path(f)
        t = path.frame_times()
        assert torch.allclose(back.cameras(t)[0], path.cameras(t)[0], atol=1e-5)
        assert (back.width, back.height, back.fps, back.loop, back.near, back.far) == \
            (path.width, path.height, path.fps, path.loop, path.near, path.far)


def test_quaternions_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    R = torch.linalg.qr(torch.randn(64, 3, 3, generator=g, dtype=D))[0]
    R = R * torch.det(R)[:, None, None]  # proper rotations
    R = torch.cat([R, torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=D))[None]])  # 180 degrees
    q = splines.matrix_to_quat(R)
    assert torch.allclose(q.norm(dim=-1), torch.ones(len(R), dtype=D))
    assert torch.allclose(splines.quat_to_matrix(q), R, atol=1e-12)


def _ring_cameras(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras at irregular angles on a wobbly ring of radius 4 around z, looking at (0.1, 0, 0.2)."""
    g = torch.Generator().manual_seed(1)
    az = torch.rand(n, generator=g, dtype=D) * 2 * math.pi
    eye = torch.stack([4 * az.cos(), 4 * az.sin(), 1.5 + 0.3 * torch.sin(2 * az)], dim=-1)
    eye = eye + 0.05 * torch.randn(n, 3, generator=g, dtype=D)
    target = torch.tensor([0.1, 0.0, 0.2], dtype=D)
    return cameras.look_at(eye, target, (0.0, 0.0, 1.0)), target


def test_focus_point_is_where_the_axes_meet() -> None:
    c2w, target = _ring_cameras()
    assert torch.allclose(focus_point(c2w), target, atol=5e-3)  # a 1e-3 pull to the mean centre


def test_path_from_views_is_a_closed_loop_near_the_cameras() -> None:
    c2w, target = _ring_cameras()
    path = path_from_views(c2w, fov=40.0, width=32, height=24, keyframes=12, seconds=4.0, fps=30)
    assert path.loop and path.period == 4.0 and path.n_frames == 120 and (path.width, path.height) == (32, 24)
    t0 = float(path.times[0])
    a, b = path.cameras(torch.tensor([t0, t0 + 4.0], dtype=D))[0]
    assert torch.allclose(a, b, atol=1e-12)  # closed
    assert torch.allclose(_derivative(path, t0, +1), _derivative(path, t0 + 4.0, -1), atol=1e-3)  # smoothly
    dense = path.cameras(torch.linspace(t0, t0 + 4.0, 2000, dtype=D))[0]
    centres = c2w[:, :3, 3]
    gap = torch.cdist(centres, dense[:, :3, 3]).min(dim=1).values
    assert float(gap.max()) < 0.25  # passes near every camera (ring noise 0.05, wobble 0.3)
    assert torch.allclose(path.targets, target.expand(12, 3), atol=5e-3)
    up = torch.tensor(path.up, dtype=D)
    assert float(up @ torch.tensor([0.0, 0.0, 1.0], dtype=D)) > 0.99
    angle = torch.atan2(dense[:, 1, 3], dense[:, 0, 3])  # goes once around, monotonically
    turn = torch.remainder(angle[1:] - angle[:-1] + math.pi, 2 * math.pi) - math.pi
    assert bool((turn > 0).all()) and float(turn.sum()) == pytest.approx(2 * math.pi, abs=1e-6)


def test_path_from_views_refuses_too_few_cameras() -> None:
    c2w, _ = _ring_cameras(2)
    with pytest.raises(InputError, match="at least 3"):
        path_from_views(c2w, fov=40.0, width=8, height=8, source="scene/transforms_train.json")


def _k(**kw):  # type: ignore[no-untyped-def]
    return dict({"time": 0.0, "position": [4, 0, 1], "look_at": [0, 0, 0], "fov": 40}, **kw)


BAD = [
    ([1, 2], "JSON object"),
    ({"fps": 30}, "missing key 'keyframes'"),
    ({"keyframes": [_k()]}, "at least 2 keyframes"),
    ({"keyframes": [_k(), _k(time=0.0)]}, "increase strictly"),
    ({"keyframes": [_k(), _k(time=-1.0)]}, "increase strictly"),
    ({"keyframes": [_k(), _k(time=1.0, fov=180)]}, "below 180"),
    ({"keyframes": [_k(), _k(time=1.0, fov=0)]}, "'fov' is 0"),
    ({"keyframes": [_k(), _k(time=1.0, fov="wide")]}, "finite number"),
    ({"keyframes": [_k(), {"time": 1.0, "position": [1, 2, 3], "fov": 40}]}, "missing key 'look_at'"),
    ({"keyframes": [_k(), {"position": [1, 2, 3], "look_at": [0, 0, 0], "fov": 40}]}, "missing key 'time'"),
    ({"keyframes": [_k(), _k(time=1.0, fov=None)]}, "missing key 'fov'"),
    ({"keyframes": [_k(), _k(time=1.0, position=[1, 2])]}, "list of 3 numbers"),
    ({"keyframes": [_k(), _k(time=1.0, look_at=[4, 0, 1])]}, "sits on its target"),
    ({"keyframes": [_k(), _k(time=1.0, position=[0, 0, 4])]}, "parallel"),
    ({"keyframes": [_k(), {"time": 1.0, "c2w": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], "fov": 40}]},
     "not orthonormal"),
    ({"keyframes": [_k(), {"time": 1.0, "c2w": [[1, 0, 0]], "fov": 40}]}, "3x4 or 4x4"),
    ({"resolution": [0, 5], "keyframes": [_k(), _k(time=1.0)]}, "'resolution'"),
    ({"fps": 0, "keyframes": [_k(), _k(time=1.0)]}, "'fps'"),
    ({"loop": True, "period": 0.5, "keyframes": [_k(), _k(time=1.0)]}, "must exceed"),
    ({"period": 2.0, "keyframes": [_k(), _k(time=1.0)]}, "needs \"loop\""),
    ({"keyframe": []}, "unknown key 'keyframe'"),
]


@pytest.mark.parametrize("data,message", BAD)
def test_bad_paths_are_one_line_errors_naming_the_file(data, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as info:
        parse_camera_path(data, "shots/p.json")
    text = str(info.value)
    assert text.startswith("shots/p.json: ") and "\n" not in text and message in text, text


def test_missing_and_invalid_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="file not found"):
        load_camera_path(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json: not valid json"):
        load_camera_path(tmp_path / "bad.json")
