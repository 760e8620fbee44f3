"""Scene loaders (Blender and instant-ngp) on tiny generated scenes, and their errors."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from taichifield.data import load_scene
from taichifield.data.loading import downscale_images
from taichifield.errors import InputError


def _pose(angle: float, radius: float = 4.0) -> list:
    """Camera on a circle in the xy plane at height 1, looking at the origin (OpenGL)."""
    eye = np.array([radius * math.cos(angle), radius * math.sin(angle), 1.0])
    back = eye / np.linalg.norm(eye)                # camera +z points away from the target
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, back, eye
    return m.tolist()


def _write_png(path, h=8, w=6, rgba=True, seed=0):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 4 if rgba else 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def make_blender(root, n=3, h=8, w=6, splits=("train", "test")):
    imgs = {}
    for split in splits:
        frames = []
        for i in range(n):
            imgs[(split, i)] = _write_png(root / split / f"r_{i}.png", h, w, seed=i)
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": _pose(i)})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.6911, "frames": frames}))
    return imgs


def make_ngp(root, n=10, h=8, w=6, **extra):
    frames, imgs = [], []
    for i in range(n):
        imgs.append(_write_png(root / "images" / f"{i:04d}.png", h, w, rgba=False, seed=i))
        frames.append({"file_path": f"images/{i:04d}.png", "transform_matrix": _pose(0.3 * i)})
    meta = {"fl_x": 10.0, "fl_y": 11.0, "cx": 3.2, "cy": 4.1, "w": w, "h": h, "aabb_scale": 2, "frames": frames}
    meta.update(extra)
    (root / "transforms.json").write_text(json.dumps(meta))
    return imgs


def test_blender_scene(tmp_path):
    imgs = make_blender(tmp_path)
    v = load_scene(tmp_path, "test", background=(0.0, 0.0, 0.0))
    assert v.images.shape == (3, 8, 6, 4) and v.images.dtype == torch.uint8
    assert np.array_equal(v.images[1].numpy(), imgs[("test", 1)])
    assert v.file_names == ["r_0.png", "r_1.png", "r_2.png"]
    assert v.fx == pytest.approx(0.5 * 6 / math.tan(0.5 * 0.6911)) and v.fy == v.fx
    assert (v.cx, v.cy, v.width, v.height) == (3.0, 4.0, 6, 8)
    assert torch.equal(v.aabb, torch.tensor([[-1.5] * 3, [1.5] * 3]))
    assert (v.near, v.far) == (2.0, 6.0) and v.distortion is None
    assert torch.allclose(v.c2w[2], torch.tensor(_pose(2), dtype=torch.float32))
    # compositing on the background: rgb * a + bg * (1 - a)
    raw = torch.from_numpy(imgs[("test", 0)]).float() / 255
    assert torch.allclose(v.rgb((0.0, 1.0, 0.0))[0], raw[..., :3] * raw[..., 3:] + torch.tensor([0, 1.0, 0]) * (1 - raw[..., 3:]))
    assert torch.allclose(v.rgb()[0], raw[..., :3] * raw[..., 3:])


def test_ngp_scene_and_splits(tmp_path):
    imgs = make_ngp(tmp_path, k1=0.01, k2=0.0, p1=0.0, p2=0.0)
    train = load_scene(tmp_path, "train")
    test = load_scene(tmp_path / "transforms.json", "test")
    assert len(train) == 8 and len(test) == 2  # frames 0 and 8 are held out
    assert test.file_names == ["0000.png", "0008.png"]
    assert np.array_equal(test.images[1].numpy(), imgs[8])
    assert len(load_scene(tmp_path, "all")) == 10
    assert (train.fx, train.fy, train.cx, train.cy) == (10.0, 11.0, 3.2, 4.1)
    assert train.distortion == (0.01, 0.0, 0.0, 0.0)
    # aabb_scale 2, scale 0.33, offset 0.5: box centred at 0 with half-size 1 / 0.33
    assert torch.allclose(train.aabb, torch.tensor([[-1 / 0.33] * 3, [1 / 0.33] * 3]))
    assert train.far > 4.0 and train.near == 0.0
    assert train.rgb().shape == (8, 8, 6, 3)


def test_downscale_premultiplied_alpha():
    # a 2x2 block: one opaque red pixel and three fully transparent *green* pixels
    img = torch.zeros(1, 2, 2, 4, dtype=torch.uint8)
    img[0, 0, 0] = torch.tensor([255, 0, 0, 255])
    img[0, 0, 1] = img[0, 1, 0] = img[0, 1, 1] = torch.tensor([0, 255, 0, 0])
    out = downscale_images(img, 2)
    # colour stays pure red (no green bleeding in), alpha is the block average
    assert out.shape == (1, 1, 1, 4) and out[0, 0, 0].tolist() == [255, 0, 0, 64]


def test_downscale_scales_intrinsics(tmp_path):
    make_blender(tmp_path, h=8, w=6)
    full, half = load_scene(tmp_path, "train"), load_scene(tmp_path, "train", downscale=2)
    assert half.images.shape == (3, 4, 3, 4)
    assert half.fx == pytest.approx(full.fx / 2) and half.cx == pytest.approx(full.cx / 2)
    make_ngp(tmp_path / "n", h=9, w=7)  # odd sizes: the remainder row/column is cropped
    half = load_scene(tmp_path / "n", "all", downscale=2)
    assert half.images.shape == (10, 4, 3, 3) and half.fx == 5.0 and half.cy == pytest.approx(2.05)


def _mutate(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("problem, expect", [
    ("missing_json", "transforms_train.json"),
    ("bad_json", "not valid json"),
    ("missing_key", "camera_angle_x"),
    ("missing_image", "r_1.png not found"),
    ("unreadable_image", "cannot read image"),
    ("mixed_sizes", "mixed sizes"),
    ("not_rigid", "not a rigid pose"),
    ("no_scene", "scene not found"),
])
def test_blender_errors(tmp_path, problem, expect):
    make_blender(tmp_path, splits=("train",))
    js = tmp_path / "transforms_train.json"
    target = tmp_path
    if problem == "missing_json":
        js.unlink()
        (tmp_path / "transforms_val.json").write_text("{}")
    elif problem == "bad_json":
        js.write_text("{not json")
    elif problem == "missing_key":
        _mutate(js, lambda d: d.pop("camera_angle_x"))
    elif problem == "missing_image":
        (tmp_path / "train" / "r_1.png").unlink()
    elif problem == "unreadable_image":
        (tmp_path / "train" / "r_1.png").write_bytes(b"garbage")
    elif problem == "mixed_sizes":
        _write_png(tmp_path / "train" / "r_2.png", 5, 5)
    elif problem == "not_rigid":
        _mutate(js, lambda d: d["frames"][1].update(transform_matrix=(np.array(_pose(1)) * 2).tolist()))
    elif problem == "no_scene":
        target = tmp_path / "nowhere"
    with pytest.raises(InputError, match=expect) as info:
        load_scene(target, "train")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("problem, expect", [
    ("missing_frames", "'frames'"),
    ("missing_focal", "fl_x"),
    ("size_mismatch", "w, h say"),
    ("bad_split", "unknown split"),
])
def test_ngp_errors(tmp_path, problem, expect):
    make_ngp(tmp_path)
    js = tmp_path / "transforms.json"
    split = "train"
    if problem == "missing_frames":
        _mutate(js, lambda d: d.pop("frames"))
    elif problem == "missing_focal":
        _mutate(js, lambda d: d.pop("fl_x"))
    elif problem == "size_mismatch":
        _mutate(js, lambda d: d.update(w=100))
    elif problem == "bad_split":
        split = "nope"
    with pytest.raises(InputError, match=expect):
        load_scene(tmp_path, split)


def test_bad_downscale(tmp_path):
    make_blender(tmp_path)
    for bad in (0, -1, 1.5):
        with pytest.raises(InputError, match="downscale"):
            load_scene(tmp_path, "train", downscale=bad)


def test_ngp_per_frame_intrinsics(tmp_path):
    make_ngp(tmp_path)
    js = tmp_path / "transforms.json"

    def move(d):
        for k in ("fl_x", "fl_y", "cx", "cy"):
            v = d.pop(k)
            for fr in d["frames"]:
                fr[k] = v
    _mutate(js, move)
    v = load_scene(tmp_path, "test")
    assert (v.fx, v.fy, v.cx, v.cy) == (10.0, 11.0, 3.2, 4.1) and v.cameras is None  # all agree: one camera
    # a frame with its own focal length and distortion (instant-ngp's per-frame keys override the file's)
    _mutate(js, lambda d: d["frames"][3].update(fl_x=20.0, k1=0.1))
    every = load_scene(tmp_path, "all")
    assert every.cameras is not None and every.distorted
    assert every.camera(3) == (20.0, 11.0, pytest.approx(3.2), pytest.approx(4.1), (pytest.approx(0.1), 0.0, 0.0, 0.0))
    assert every.camera(2)[0] == 10.0 and every.camera(2)[4] is None
    assert load_scene(tmp_path, "test").cameras is None  # frame 3 is a training frame: the test views agree
    _mutate(js, lambda d: d["frames"][3].update(fl_x=-1.0))
    with pytest.raises(InputError, match="focal lengths must be positive in frame 3"):
        load_scene(tmp_path, "all")
