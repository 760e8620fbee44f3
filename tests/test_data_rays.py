"""Rays from poses: OpenGL convention, pixel centres, distortion."""

import dataclasses
import math

import torch

from taichifield.data.rays import all_rays, distort, generate_rays, pixels, undistort
from taichifield.data.views import Views


def _views(c2w, distortion=None, w=8, h=6, fx=10.0, fy=12.0, cx=4.0, cy=3.0):
    n = c2w.shape[0]
    return Views(images=torch.zeros(n, h, w, 4, dtype=torch.uint8), c2w=c2w, fx=fx, fy=fy, cx=cx, cy=cy,
                 width=w, height=h, file_names=[f"{i}.png" for i in range(n)],
                 aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]), near=0.1, far=10.0, distortion=distortion)


def _look_at_origin():
    # camera at (0, 0, 5) looking down -z at the origin: identity rotation
    m = torch.eye(4)
    m[2, 3] = 5.0
    return m


def test_principal_point_ray_looks_down_minus_z():
    v = _views(_look_at_origin()[None])
    # the pixel whose centre is the principal point (cx - 0.5, cy - 0.5)
    o, d = generate_rays(v, torch.tensor([0]), torch.tensor([3.5]), torch.tensor([2.5]))
    assert torch.allclose(o, torch.tensor([[0.0, 0.0, 5.0]]))
    assert torch.allclose(d, torch.tensor([[0.0, 0.0, -1.0]]))
    # one pixel further down in the image goes towards -y (y is up in OpenGL)
    _, d2 = generate_rays(v, torch.tensor([0]), torch.tensor([3.5]), torch.tensor([3.5]))
    assert d2[0, 1] < 0 and torch.allclose(d2.norm(dim=-1), torch.ones(1))


def test_rays_hit_projected_points():
    torch.manual_seed(0)
    # a rotated camera: rotate 30 degrees about x, then place it
    a = math.radians(30)
    m = torch.eye(4)
    m[:3, :3] = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    m[:3, 3] = torch.tensor([0.3, 2.0, 4.0])
    v = _views(torch.stack([torch.eye(4), m]))
    pts = torch.randn(20, 3) * 0.3
    # project with the OpenCV-style pinhole: camera coords (x, -y, -z) in OpenCV
    w2c = torch.linalg.inv(m)
    pc = (w2c[:3, :3] @ pts.T).T + w2c[:3, 3]
    u = v.fx * pc[:, 0] / -pc[:, 2] + v.cx
    w = -v.fy * pc[:, 1] / -pc[:, 2] + v.cy
    o, d = generate_rays(v, torch.ones(20, dtype=torch.long), u - 0.5, w - 0.5)
    # the point lies on its ray: the cross product with the direction vanishes
    assert torch.allclose(torch.linalg.cross(pts - o, d), torch.zeros(20, 3), atol=1e-5)


def test_all_rays_is_row_major():
    v = _views(_look_at_origin()[None])
    o, d = all_rays(v, 0)
    assert o.shape == (48, 3) and d.shape == (48, 3)
    _, d1 = generate_rays(v, torch.tensor([0]), torch.tensor([5.0]), torch.tensor([2.0]))
    assert torch.allclose(d.view(6, 8, 3)[2, 5], d1[0])


def test_undistort_inverts_distort():
    coeffs = (0.1, -0.05, 0.01, -0.02)
    x, y = torch.meshgrid(torch.linspace(-0.6, 0.6, 9), torch.linspace(-0.5, 0.5, 7), indexing="ij")
    xd, yd = distort(x, y, coeffs)
    xu, yu = undistort(xd, yd, coeffs)
    assert torch.allclose(xu, x, atol=1e-6) and torch.allclose(yu, y, atol=1e-6)


def test_distorted_camera_rays_hit_points():
    coeffs = (0.1, 0.02, 0.005, -0.01)
    v = _views(_look_at_origin()[None], distortion=coeffs)
    pts = torch.tensor([[0.2, -0.1, 0.0], [-0.3, 0.25, 1.0]])
    xn, yn = pts[:, 0] / (5.0 - pts[:, 2]), -pts[:, 1] / (5.0 - pts[:, 2])  # OpenCV normalised
    xd, yd = distort(xn, yn, coeffs)
    o, d = generate_rays(v, torch.zeros(2, dtype=torch.long), xd * v.fx + v.cx - 0.5, yd * v.fy + v.cy - 0.5)
    assert torch.allclose(torch.linalg.cross(pts - o, d), torch.zeros(2, 3), atol=1e-5)


def test_pixels_composite():
    v = _views(_look_at_origin()[None])
    v.images[0, 1, 2] = torch.tensor([255, 0, 0, 51], dtype=torch.uint8)
    raw = pixels(v, torch.tensor([0]), torch.tensor([2.0]), torch.tensor([1.0]))
    assert torch.allclose(raw, torch.tensor([[1.0, 0.0, 0.0, 0.2]]))
    comp = pixels(v, torch.tensor([0]), torch.tensor([2.0]), torch.tensor([1.0]), background=(0.0, 0.0, 1.0))
    assert torch.allclose(comp, torch.tensor([[0.2, 0.0, 0.8]]))


def _per_view(rows):
    """Three views at different poses, each with the camera of its row (fx, fy, cx, cy, k1, k2, p1, p2)."""
    from taichifield.data.views import camera_fields

    c2w = torch.eye(4).repeat(3, 1, 1)
    c2w[:, :3, 3] = torch.tensor([[0.0, 0.0, 5.0], [0.5, 0.0, 4.0], [0.0, -0.4, 6.0]])
    return dataclasses.replace(_views(c2w), **camera_fields(rows))


ROWS = [[10.0, 12.0, 4.0, 3.0, 0.0, 0.0, 0.0, 0.0],
        [14.0, 13.0, 3.5, 2.5, 0.05, -0.01, 0.002, 0.001],
        [9.0, 9.5, 4.5, 3.2, -0.03, 0.0, 0.0, 0.0]]


def test_camera_fields_keep_one_camera_when_rows_agree():
    from taichifield.data.views import camera_fields

    shared = camera_fields([ROWS[1]] * 3, downscale=2)
    assert shared["cameras"] is None and shared["fx"] == 7.0 and shared["cx"] == 1.75
    assert shared["distortion"] == (0.05, -0.01, 0.002, 0.001)  # distortion does not scale with the images
    per = camera_fields(ROWS)
    assert tuple(per["cameras"].shape) == (3, 8) and per["fx"] == 10.0 and per["distortion"] is None


def test_per_view_cameras_ray_batch_matches_each_views_own_camera():
    """A batch mixing views gives each ray its own view's camera: the same rays as a one-camera
    split per view (all_rays / generate_rays on that view alone)."""
    v = _per_view(ROWS)
    assert v.cameras is not None and v.distorted
    idx = torch.tensor([2, 0, 1, 1, 2, 0, 1])
    px = torch.tensor([0.0, 7.0, 3.0, 5.5, 2.0, 4.0, 7.0])
    py = torch.tensor([0.0, 5.0, 2.0, 0.5, 4.0, 3.0, 5.0])
    o, d = generate_rays(v, idx, px, py)
    for j in range(len(idx)):
        i = int(idx[j])
        fx, fy, cx, cy, dist = v.camera(i)
        one = _views(v.c2w[i:i + 1], distortion=dist, fx=fx, fy=fy, cx=cx, cy=cy)
        o1, d1 = generate_rays(one, torch.tensor([0]), px[j:j + 1], py[j:j + 1])
        assert torch.allclose(o[j], o1[0]) and torch.allclose(d[j], d1[0], atol=1e-6), j
    # the views do differ: view 1's camera on view 0's pose gives other rays
    _, d0 = generate_rays(v, torch.tensor([0]), torch.tensor([0.0]), torch.tensor([0.0]))
    swapped = _views(v.c2w[0:1], distortion=v.camera(1)[4], fx=14.0, fy=13.0, cx=3.5, cy=2.5)
    _, ds = generate_rays(swapped, torch.tensor([0]), torch.tensor([0.0]), torch.tensor([0.0]))
    assert float((d0 - ds).abs().max()) > 1e-2
    # whole images use the view's camera too
    o_all, d_all = all_rays(v, 1)
    _, d_px = generate_rays(v, torch.tensor([1]), torch.tensor([5.0]), torch.tensor([2.0]))
    assert torch.allclose(d_all.view(6, 8, 3)[2, 5], d_px[0], atol=1e-6)


def test_views_to_moves_the_cameras_and_checks_their_shape():
    import pytest

    v = _per_view(ROWS)
    moved = v.to("cpu")
    assert moved.cameras is not None and moved.distorted and moved is not v
    assert v.intrinsics(1)[0, 0] == 14.0 and v.intrinsics(1)[1, 2] == 2.5
    with pytest.raises(ValueError, match="must be \\(n, 8\\)"):
        dataclasses.replace(v, cameras=torch.zeros(2, 8))
