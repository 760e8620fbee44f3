"""COLMAP model readers (text and binary) against models written by pycolmap itself, the
COLMAP -> Views conversion (a known 3D point lands on the pixel COLMAP projects it to), the
scene normalisation, and ``load_scene`` on a ``sparse/0`` + ``images/`` folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from taichifield.data import load_scene
from taichifield.data.colmap import qvec_to_rotmat, read_model, rotmat_to_qvec
from taichifield.data.colmap_scene import colmap_transforms, load_colmap
from taichifield.data.normalize import compute_normalization, opencv_w2c_to_opengl_c2w
from taichifield.data.rays import generate_rays
from taichifield.errors import InputError

W, H = 64, 48
OPENCV = [50.0, 52.0, 31.5, 24.5, 0.02, -0.004, 0.001, 0.0005]


def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _look_at_w2c(eye: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV cam_from_world looking from ``eye`` at ``target`` (world up +z)."""
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ eye


def _model(tmp: Path, model: str = "OPENCV", params=OPENCV, n_images: int = 10, seed: int = 0,  # type: ignore[no-untyped-def]
           per_image: bool = False, sizes: tuple[tuple[int, int], ...] = ((W, H),)):
    """A pycolmap Reconstruction: cameras on a ring (radius 4) around 40 points near the origin,
    written as text (tmp/txt/sparse/0) and binary (tmp/bin/sparse/0), with blank images.
    ``per_image``: image i has its own camera, every parameter scaled by ``1 + 0.02 i`` (COLMAP
    mapping without a shared camera), of size ``sizes[i % len(sizes)]``."""
    pycolmap = pytest.importorskip("pycolmap")
    from PIL import Image

    rng = np.random.default_rng(seed)
    rec = pycolmap.Reconstruction()
    for c in range(n_images if per_image else 1):
        w, h = sizes[c % len(sizes)]
        rec.add_camera_with_trivial_rig(pycolmap.Camera(model=model, width=w, height=h, camera_id=c + 1,
                                                        params=np.asarray(params, float) * (1 + 0.02 * c)))
    pts = rng.uniform(-0.5, 0.5, (40, 3))
    pids = [rec.add_point3D(p, pycolmap.Track(), rng.integers(0, 256, 3).astype(np.uint8)) for p in pts]
    for i in range(n_images):
        a = 2 * np.pi * i / n_images
        eye = np.array([4 * np.cos(a), 4 * np.sin(a), 1.0 + 0.3 * np.sin(3 * a)])
        R, t = _look_at_w2c(eye, rng.normal(0, 0.05, 3))
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(R), t)
        cam = rec.cameras[i + 1 if per_image else 1]
        xy = [cam.img_from_cam(R @ p + t) for p in pts[:5]]
        image = pycolmap.Image(name=f"im_{i:03d}.png", camera_id=cam.camera_id, image_id=i + 1,
                               points2D=[pycolmap.Point2D(np.asarray(v, float).reshape(2)) for v in xy])
        rec.add_image_with_trivial_frame(image, pose)
        for k in range(5):
            rec.add_observation(pids[k], pycolmap.TrackElement(i + 1, k))
    for kind in ("txt", "bin"):
        sparse = tmp / kind / "sparse" / "0"
        sparse.mkdir(parents=True)
        (rec.write_text if kind == "txt" else rec.write_binary)(str(sparse))
        (tmp / kind / "images").mkdir()
        for i in range(n_images):
            w, h = sizes[i % len(sizes)] if per_image else sizes[0]
            Image.fromarray(np.full((h, w, 3), 10 * i, np.uint8)).save(tmp / kind / "images" / f"im_{i:03d}.png")
    return rec


@pytest.mark.parametrize("kind", ["txt", "bin"])
def test_readers_round_trip_pycolmap_model(tmp_path: Path, kind: str) -> None:
    rec = _model(tmp_path)
    m = read_model(tmp_path / kind)
    assert m.path == tmp_path / kind / "sparse" / "0"
    cam = m.cameras[1]
    assert (cam.model, cam.width, cam.height) == ("OPENCV", W, H)
    np.testing.assert_allclose(cam.params, OPENCV, rtol=1e-12)
    assert sorted(m.images) == sorted(rec.images)
    for iid, im in m.images.items():
        ref = rec.image(iid)
        assert im.name == ref.name and im.camera_id == 1
        np.testing.assert_allclose(im.rotation(), ref.cam_from_world().rotation.matrix(), atol=1e-12)
        np.testing.assert_allclose(im.tvec, ref.cam_from_world().translation, atol=1e-12)
        np.testing.assert_allclose(im.xys, [p.xy for p in ref.points2D], atol=1e-9)
        np.testing.assert_array_equal(im.point3D_ids[:5] >= 0, True)
    assert len(m.points) == rec.num_points3D()
    for pid, xyz, rgb, track in zip(m.points.ids, m.points.xyz, m.points.rgb, m.points.tracks):
        ref = rec.point3D(int(pid))
        np.testing.assert_allclose(xyz, ref.xyz, atol=1e-12)
        np.testing.assert_array_equal(rgb, ref.color)
        assert sorted(map(tuple, track)) == sorted((e.image_id, e.point2D_idx) for e in ref.track.elements)


def test_quaternion_helpers_invert_each_other() -> None:
    R = _rot(np.array([0.3, -1.0, 0.5]), 2.1)
    np.testing.assert_allclose(qvec_to_rotmat(rotmat_to_qvec(R)), R, atol=1e-12)


@pytest.mark.parametrize("model,params", [("OPENCV", OPENCV), ("PINHOLE", OPENCV[:4]), ("SIMPLE_PINHOLE", [50.0, 31.5, 24.5]),
                                          ("SIMPLE_RADIAL", [50.0, 31.5, 24.5, 0.03]),
                                          ("RADIAL", [50.0, 31.5, 24.5, 0.03, -0.01])])
@pytest.mark.parametrize("per_image", [False, True], ids=["shared", "per-image"])
def test_views_put_a_point_on_the_pixel_colmap_projects_it_to(tmp_path: Path, model: str, params: list,
                                                              per_image: bool) -> None:
    """The ray of the pixel where COLMAP's camera model projects X passes through X (normalised),
    with one shared camera and with a camera per image (each ray uses its own image's)."""
    _model(tmp_path, model, params, per_image=per_image)
    rec = __import__("pycolmap").Reconstruction(str(tmp_path / "bin" / "sparse" / "0"))
    views = load_colmap(tmp_path / "bin", "all")
    norm = views.meta["normalization"]
    scene_from_capture = np.asarray(norm["scene_from_capture"])
    X = np.array([0.2, -0.1, 0.3])
    Xs = scene_from_capture[:3, :3] @ X + scene_from_capture[:3, 3]
    assert (views.cameras is not None) == per_image
    uv = []
    for name in views.file_names:
        image = rec.find_image_with_name(name)
        uv.append(rec.cameras[image.camera_id].img_from_cam(image.cam_from_world() * X))
    uv_t = torch.tensor(np.asarray(uv, np.float64).reshape(-1, 2), dtype=torch.float32)
    # one batch of rays from every view at once (per-image cameras are gathered per ray)
    o, d = generate_rays(views, torch.arange(len(views)).flip(0), uv_t[:, 0].flip(0) - 0.5, uv_t[:, 1].flip(0) - 0.5)
    for name, oi, di in zip(reversed(views.file_names), o.double().numpy(), d.double().numpy()):
        miss = np.linalg.norm(np.cross(Xs - oi, di))  # distance of X from the ray
        assert miss < 1e-4 * np.linalg.norm(Xs - oi), (name, miss)
        assert np.dot(Xs - oi, di) > 0  # in front of the camera


def test_load_scene_detects_colmap_folders_and_splits(tmp_path: Path) -> None:
    _model(tmp_path, n_images=17)
    train, test = load_scene(tmp_path / "txt", "train"), load_scene(tmp_path / "txt", "test")
    assert test.file_names == ["im_000.png", "im_008.png", "im_016.png"]
    assert len(train) == 14 and not set(train.file_names) & set(test.file_names)
    assert train.meta["format"] == "colmap" and train.distortion == tuple(OPENCV[4:])
    binary = load_scene(tmp_path / "bin", "train", downscale=2)
    torch.testing.assert_close(binary.c2w, train.c2w, atol=1e-5, rtol=0)
    assert (binary.fx, binary.width) == (OPENCV[0] / 2, W // 2)


def test_normalisation_maps_cameras_into_the_box_and_up_to_z(tmp_path: Path) -> None:
    _model(tmp_path)
    views = load_colmap(tmp_path / "bin", "all")
    lo, hi = views.aabb
    centres = views.c2w[:, :3, 3]
    assert bool(((centres > lo) & (centres < hi)).all())
    assert float(centres.norm(dim=1).max()) <= 1.0 + 1e-5
    up = views.c2w[:, :3, 1].mean(0)
    assert float(up[2] / up.norm()) > 1 - 1e-5  # mean camera up is +z
    # a rigid capture transform does not change the normalised scene
    c2w = np.stack([opencv_w2c_to_opengl_c2w(np.eye(3), np.zeros(3))] * 2)
    c2w[1, :3, 3] = [1.0, 0.0, 0.0]
    n = compute_normalization(c2w, None)
    np.testing.assert_allclose(n.to_capture(n.points(c2w[:, :3, 3])), c2w[:, :3, 3], atol=1e-12)


def test_normalisation_ignores_an_outlier_camera() -> None:
    rng = np.random.default_rng(1)
    c2w = np.tile(np.eye(4), (12, 1, 1))
    c2w[:, :3, 3] = rng.normal(0, 1, (12, 3))
    c2w[0, :3, 3] = [500.0, 0, 0]
    pts = rng.normal(0, 0.3, (200, 3))
    n = compute_normalization(c2w, pts)
    inside = np.abs(n.points(c2w[1:, :3, 3])).max(axis=1) <= 1.0
    assert inside.all() and n.scale > 1e-2


def test_transforms_json_reads_back_as_the_colmap_views(tmp_path: Path) -> None:
    _model(tmp_path)
    scene = tmp_path / "bin"
    (scene / "transforms.json").write_text(json.dumps(colmap_transforms(read_model(scene))))
    via_json, via_model = load_scene(scene / "transforms.json", "all"), load_colmap(scene, "all")
    torch.testing.assert_close(via_json.c2w, via_model.c2w, atol=1e-5, rtol=0)
    torch.testing.assert_close(via_json.aabb, via_model.aabb)
    assert via_json.distortion == via_model.distortion and via_json.fx == via_model.fx
    assert via_json.meta["normalization"]["scale"] == pytest.approx(via_model.meta["normalization"]["scale"])
    assert via_json.cameras is None and "fl_x" in json.loads((scene / "transforms.json").read_text())


def test_per_image_cameras_load_per_view_and_round_trip(tmp_path: Path) -> None:
    """A model with a camera per image (COLMAP's default): each view keeps its own camera, at any
    downscale, and the exported transforms.json (per-frame intrinsics) reads back the same."""
    _model(tmp_path, per_image=True, n_images=9)
    scene = tmp_path / "bin"
    views = load_colmap(scene, "all")
    assert views.cameras is not None and tuple(views.cameras.shape) == (9, 8)
    for i, name in enumerate(views.file_names):  # im_00i.png has camera i + 1: parameters * (1 + 0.02 i)
        expected = np.asarray(OPENCV) * (1 + 0.02 * int(name[3:6]))
        np.testing.assert_allclose(views.cameras[i].double().numpy(), expected, rtol=1e-6)
        fx, fy, cx, cy, dist = views.camera(i)
        np.testing.assert_allclose([fx, fy, cx, cy, *dist], expected, rtol=1e-6)
    assert views.camera(0)[:4] == (views.fx, views.fy, views.cx, views.cy)  # the scalars are the first view's
    half = load_colmap(scene, "all", downscale=2)
    torch.testing.assert_close(half.cameras[:, :4], views.cameras[:, :4] / 2)
    torch.testing.assert_close(half.cameras[:, 4:], views.cameras[:, 4:])
    test = load_colmap(scene, "test")  # a split keeps its own views' cameras
    torch.testing.assert_close(test.cameras, views.cameras[[0, 8]])
    doc = colmap_transforms(read_model(scene))
    assert "fl_x" not in doc and all("fl_x" in fr and "k1" in fr for fr in doc["frames"])
    (scene / "transforms.json").write_text(json.dumps(doc))
    via_json = load_scene(scene / "transforms.json", "all")
    torch.testing.assert_close(via_json.cameras, views.cameras)
    torch.testing.assert_close(via_json.c2w, views.c2w, atol=1e-5, rtol=0)


def test_cameras_of_different_sizes_are_refused(tmp_path: Path) -> None:
    _model(tmp_path, per_image=True, n_images=4, sizes=((W, H), (W + 8, H)))
    with pytest.raises(InputError, match=f"different image sizes \\({W}x{H}, {W + 8}x{H}\\)"):
        load_scene(tmp_path / "txt")


def test_bad_models_give_one_line_errors(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse" / "0"
    sparse.mkdir(parents=True)
    (sparse / "cameras.txt").write_text("1 OPENCV_FISHEYE 64 48 50 50 32 24 0 0 0 0\n")
    (sparse / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n")
    with pytest.raises(InputError, match="OPENCV_FISHEYE is not supported"):
        load_scene(tmp_path)
    (sparse / "cameras.txt").write_text("1 PINHOLE 64 48 50 50 32\n")
    with pytest.raises(InputError, match="takes 4 parameters"):
        load_scene(tmp_path)
    (sparse / "cameras.txt").write_text("2 PINHOLE 64 48 50 50 32 24\n")
    with pytest.raises(InputError, match="image a.png uses camera 1, which is not in the model"):
        load_scene(tmp_path)
    (sparse / "cameras.txt").unlink()
    (sparse / "cameras.bin").write_bytes(b"\x01\x00\x00\x00\x00\x00\x00\x00\x01")
    with pytest.raises(InputError, match="truncated"):
        load_scene(tmp_path)
