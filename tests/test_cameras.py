"""The camera module against hand-computed cameras: pinhole rays, look-at, orbits."""

import math

import pytest
import torch

from taichifield import cameras
from taichifield.errors import InputError
from taichifield.render.shade import orbit_rays


def _cam_at_z4() -> torch.Tensor:
    # (0, 0, 4) looking at the origin, y up: the camera frame is the world frame
    return cameras.look_at(torch.tensor([0.0, 0.0, 4.0]), torch.zeros(3), up=(0.0, 1.0, 0.0))


def test_look_at_from_plus_z_is_the_identity_rotation():
    c2w = _cam_at_z4()
    expected = torch.eye(4)
    expected[2, 3] = 4.0
    assert c2w.shape == (4, 4)
    assert torch.allclose(c2w, expected)


def test_centre_and_corner_rays_by_hand():
    # 5 x 3 image, f = 2, principal point at the centre (2.5, 1.5)
    c2w = _cam_at_z4()
    o, d = cameras.pixel_rays(c2w, torch.tensor([2.0, 0.0, 4.0]), torch.tensor([1.0, 0.0, 2.0]),
                              fx=2.0, fy=2.0, cx=2.5, cy=1.5)
    assert torch.allclose(o, torch.tensor([0.0, 0.0, 4.0]).expand(3, 3))
    # centre pixel: straight down -z
    assert torch.allclose(d[0], torch.tensor([0.0, 0.0, -1.0]))
    # top-left pixel centre (0.5, 0.5): ((0.5 - 2.5) / 2, -(0.5 - 1.5) / 2, -1) = (-1, 0.5, -1), |.| = 1.5
    assert torch.allclose(d[1], torch.tensor([-2.0 / 3.0, 1.0 / 3.0, -2.0 / 3.0]))
    # bottom-right pixel centre (4.5, 2.5): (1, -0.5, -1) / 1.5
    assert torch.allclose(d[2], torch.tensor([2.0 / 3.0, -1.0 / 3.0, -2.0 / 3.0]))


def test_focal_from_fov_and_image_corner_ray():
    # a 90 degree horizontal field of view over 100 px: f = 50, so the image's left edge
    # (u = 0) is 45 degrees off the axis
    f = cameras.focal_from_fov(math.pi / 2, 100)
    assert f == pytest.approx(50.0)
    dirs = cameras.camera_dirs(torch.tensor([0.0, 100.0]), torch.tensor([50.0, 50.0]), f, f, 50.0, 50.0)
    assert torch.allclose(dirs, torch.tensor([[-1.0, 0.0, -1.0], [1.0, 0.0, -1.0]]))


def test_image_rays_are_row_major_and_match_pixel_rays():
    c2w = _cam_at_z4()
    o, d = cameras.image_rays(c2w, 5, 3, 2.0, 2.0, 2.5, 1.5)
    assert o.shape == d.shape == (15, 3) and d.dtype == torch.float32
    # row 1 (py = 1), column 2 (px = 2) is the centre ray
    assert torch.allclose(d[1 * 5 + 2], torch.tensor([0.0, 0.0, -1.0]))
    # the per-ray pose path (B, 4, 4) gives the same rays as one shared pose
    px = torch.arange(15, dtype=torch.float32) % 5
    py = torch.div(torch.arange(15), 5, rounding_mode="floor").float()
    o2, d2 = cameras.pixel_rays(c2w.expand(15, 4, 4), px, py, 2.0, 2.0, 2.5, 1.5)
    assert torch.allclose(o, o2) and torch.allclose(d, d2, atol=1e-7)


def test_look_at_z_up_by_hand():
    # at (4, 0, 0) looking at the origin with z up: right = z x x = +y, up = x x y = +z, back = +x
    c2w = cameras.look_at(torch.tensor([[4.0, 0.0, 0.0]]), torch.zeros(3), up=(0.0, 0.0, 1.0))
    assert c2w.shape == (1, 4, 4)
    assert torch.allclose(c2w[0, :3, 0], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.allclose(c2w[0, :3, 1], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(c2w[0, :3, 2], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(c2w[0, :3, 3], torch.tensor([4.0, 0.0, 0.0]))


def test_look_at_rejects_up_along_the_view():
    with pytest.raises(InputError, match="parallel"):
        cameras.look_at(torch.tensor([0.0, 0.0, 4.0]), torch.zeros(3), up=(0.0, 0.0, 1.0))


@pytest.mark.parametrize("up", ["z", "y"])
def test_orbit_poses_radius_and_target(up: str):
    g = torch.Generator().manual_seed(0)
    az = torch.rand(16, generator=g, dtype=torch.float64) * 2 * math.pi
    el = (torch.rand(16, generator=g, dtype=torch.float64) - 0.5) * 2.8  # within +-80 degrees
    target = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    c2w = cameras.orbit_poses(az, el, 2.5, target, up=up)
    eye = c2w[:, :3, 3]
    assert c2w.dtype == torch.float64
    assert torch.allclose((eye - target).norm(dim=-1), torch.full((16,), 2.5, dtype=torch.float64))
    # the optical axis (-z) passes through the target
    fwd = -c2w[:, :3, 2]
    assert torch.allclose(eye + 2.5 * fwd, target.expand(16, 3))
    # rotation is orthonormal and right-handed; camera up leans towards the world up
    R = c2w[:, :3, :3]
    assert torch.allclose(R.transpose(1, 2) @ R, torch.eye(3, dtype=R.dtype).expand(16, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(16, dtype=R.dtype))
    k = {"y": 1, "z": 2}[up]
    assert (c2w[:, k, 1] > 0).all()
    # elevation is the angle above the plane orthogonal to up
    assert torch.allclose(torch.asin((eye[:, k] - target[k]) / 2.5), el)


def test_orbit_azimuth_conventions_by_hand():
    az = torch.tensor([0.0, math.pi / 2])
    el = torch.zeros(2)
    # z up (Blender): azimuth 0 on +x, 90 degrees on +y
    assert torch.allclose(cameras.orbit_eyes(az, el, 2.0, up="z"), torch.tensor([[2.0, 0, 0], [0, 2.0, 0]]), atol=1e-6)
    # y up: azimuth 0 on +z, 90 degrees on +x
    assert torch.allclose(cameras.orbit_eyes(az, el, 2.0, up="y"), torch.tensor([[0, 0, 2.0], [2.0, 0, 0]]), atol=1e-6)
    with pytest.raises(InputError, match="up"):
        cameras.orbit_eyes(az, el, 2.0, up="w")


def test_shade_orbit_rays_use_the_same_camera():
    # azimuth 90 (on +x), elevation 0, around (0, 1, 0): a 3 x 3 image's centre ray looks down -x
    o, d = orbit_rays((0.0, 1.0, 0.0), 3.0, 90.0, 0.0, 3, 3, fov=90.0)
    assert torch.allclose(o[4], torch.tensor([3.0, 1.0, 0.0]), atol=1e-6)
    assert torch.allclose(d[4], torch.tensor([-1.0, 0.0, 0.0]), atol=1e-6)
    # fov 90 over 3 px: f = 1.5; the top-left pixel centre (0.5, 0.5) has camera direction
    # (-2/3, 2/3, -1); with right = up x back = y x x = -z, camera up = +y, back = +x that is
    # (-2/3)(-z) + (2/3) y - x
    expected = torch.nn.functional.normalize(torch.tensor([-1.0, 2.0 / 3.0, 2.0 / 3.0]), dim=0)
    assert torch.allclose(d[0], expected, atol=1e-6)
    # straight above (elevation 90) the camera still has a valid frame (up falls back to -z)
    _, d_top = orbit_rays((0.0, 0.0, 0.0), 3.0, 0.0, 90.0, 3, 3)
    assert torch.isfinite(d_top).all() and torch.allclose(d_top[4], torch.tensor([0.0, -1.0, 0.0]), atol=1e-6)
