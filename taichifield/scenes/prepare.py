"""Turn a procedural scene description (``scene.json``) into a Blender-format dataset, once.

A scene folder such as the shipped ``scenes/lego`` holds only ``scene.json``. On first
use (:func:`prepare_scene`, called by ``train``/``eval``/``render``) its views are
rendered by the scene's fused Taichi sphere tracer on the analytic SDF
(:mod:`taichifield.scenes.lego_trace`) and written as ``transforms_{split}.json`` +
``{split}/r_{i}.png`` (RGBA, transparent background), exactly like NeRF-synthetic.
Views are rendered when something asks for them: a training run asks for the train
split and the few test views it scores, ``eval nerf --limit 20`` for 20 test views;
a transforms file lists the views rendered so far (``r_0 .. r_{k-1}``) and grows
when more are asked for. Each transforms file carries a ``taichifield_scene``
stamp of the settings it was rendered with; a changed ``scene.json`` (say a new
resolution) re-renders that split. The files are git-ignored caches.

``scene.json`` keys (all optional except ``generator``)::

    {"generator": "lego",            # the procedural scene to render
     "resolution": 400,              # square image width = height, pixels
     "supersample": 2,               # s x s rays per edge pixel (adaptive antialiasing)
     "splits": {"train": 100, "val": 100, "test": 200},
     "camera_radius": 4.0, "camera_angle_x": 0.6911112070083618, "seed": 0,
     "gt_mesh_resolution": 256}
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

from .. import cameras, runtime
from ..atomic import atomic_path
from ..images import write_image
from ..errors import InputError
from . import lego

__all__ = ["SceneSpec", "read_scene_spec", "prepare_scene", "render_lego_view", "lego_gt_mesh", "is_procedural"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, message)``: views rendered so far out of the views to render."""

SPLITS = ("train", "val", "test")
RENDER_VERSION = 4  # bump when the renderer's output changes, to invalidate caches

DEFAULTS: dict[str, Any] = {
    "generator": "lego",
    "resolution": 400,
    "supersample": 2,
    "splits": {"train": 100, "val": 100, "test": 200},
    "camera_radius": 4.0,
    "camera_angle_x": 0.6911112070083618,
    "seed": 0,
    "gt_mesh_resolution": 256,
}

SceneSpec = dict


def is_procedural(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder with a ``scene.json`` (a scene to render on first use)."""
    return (Path(path) / "scene.json").is_file()


def read_scene_spec(path: str | os.PathLike[str]) -> SceneSpec:
    """``scene.json`` of a scene folder merged over :data:`DEFAULTS`.

    Raises:
        InputError: missing or malformed scene.json, unknown generator, bad values.
    """
    f = Path(path) / "scene.json"
    try:
        raw = json.loads(f.read_text())
    except FileNotFoundError:
        raise InputError(f"{f}: no such scene description") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{f}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{f}: expected a JSON object")
    spec = {**DEFAULTS, **raw}
    spec["splits"] = {**DEFAULTS["splits"], **(raw.get("splits") or {})}
    if spec["generator"] != "lego":
        raise InputError(f"{f}: unknown scene generator {spec['generator']!r} (known: lego)")
    for key in ("resolution", "supersample"):
        if not isinstance(spec[key], int) or spec[key] < 1:
            raise InputError(f"{f}: {key!r} must be a positive integer, not {spec[key]!r}")
    for split, n in spec["splits"].items():
        if split not in SPLITS or not isinstance(n, int) or n < 1:
            raise InputError(f"{f}: splits must map train/val/test to positive view counts, got {split!r}: {n!r}")
    return spec


def _stamp(spec: SceneSpec, split: str) -> dict[str, Any]:
    keys = ("generator", "resolution", "supersample", "camera_radius", "camera_angle_x", "seed")
    return {"version": RENDER_VERSION, "n": spec["splits"][split], **{k: spec[k] for k in keys}}


def _rendered_views(folder: Path, spec: SceneSpec, split: str) -> int:
    """How many views of ``split`` are rendered and current: the frames listed in its
    transforms file (always a prefix ``r_0 .. r_{k-1}`` of the split), or 0 when the file
    is missing, stale or names a missing image."""
    f = folder / f"transforms_{split}.json"
    try:
        meta = json.loads(f.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    if meta.get("taichifield_scene") != _stamp(spec, split):
        return 0
    frames = meta.get("frames", [])
    if not all((folder / f"{fr['file_path']}.png").is_file() for fr in frames):
        return 0
    return len(frames)


def _trace(rays: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Premultiplied RGBA (M, 4), on the rays' device, of rays ``(rays_o, rays_d)`` (M, 3) each.

    Hits come from the fused tracer :func:`taichifield.scenes.lego_trace.trace_lego`,
    shaded as :func:`lego.shade`.
    """
    from .lego_trace import trace_lego  # imports Taichi; is_procedural() and the spec readers need not

    return trace_lego(*rays, max_steps=160, eps=2e-4)["rgba"]


def render_lego_view(c2w: torch.Tensor, resolution: int, camera_angle_x: float, supersample: int = 1,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Render one view of the LEGO scene: (H, W, 4) float32 straight-alpha RGBA in [0, 1], on the CPU.

    Rays follow :mod:`taichifield.cameras` (pixel centres at +0.5, OpenGL camera), are
    clipped to :data:`lego.SCENE_BOUNDS` and traced by the fused, brick-culled tracer
    (:mod:`taichifield.scenes.lego_trace`); hits are shaded by :func:`lego.shade`, misses
    are transparent.

    Antialiasing is adaptive: after one ray per pixel, pixels on an edge (alpha or
    colour differs from a 4-neighbour by more than 0.1) are re-rendered as the
    average of ``supersample^2`` rays on a regular sub-grid (premultiplied alpha).
    Edges are a few percent of the pixels, so this costs little.

    Args:
        c2w: (4, 4) camera-to-world.
        resolution: image width = height.
        camera_angle_x: horizontal field of view, radians.
        supersample: rays per edge pixel along each axis (1: no antialiasing).
        device: where the rays are traced (default :func:`taichifield.runtime.device`);
            only the finished image is copied to the host.
    """
    dev = torch.device(device) if device is not None else runtime.device()
    W = H = resolution
    focal = cameras.focal_from_fov(camera_angle_x, W)
    c2w = c2w.to(dev, torch.float32)
    rgba = _trace(cameras.image_rays(c2w, W, H, focal, focal, 0.5 * W, 0.5 * H)).reshape(H, W, 4)
    s = int(supersample)
    if s > 1:
        diff = torch.zeros(H, W, device=dev)
        dy = (rgba[1:] - rgba[:-1]).abs().amax(dim=-1)
        dx = (rgba[:, 1:] - rgba[:, :-1]).abs().amax(dim=-1)
        diff[1:] = torch.maximum(diff[1:], dy)
        diff[:-1] = torch.maximum(diff[:-1], dy)
        diff[:, 1:] = torch.maximum(diff[:, 1:], dx)
        diff[:, :-1] = torch.maximum(diff[:, :-1], dx)
        ey, ex = (diff > 0.1).nonzero(as_tuple=True)
        if ey.numel():
            # sub-pixel offsets in (-0.5, 0.5) around the centre, on a regular s x s grid
            sub = (torch.arange(s, dtype=torch.float32, device=dev) + 0.5) / s - 0.5
            oy, ox = torch.meshgrid(sub, sub, indexing="ij")
            spx = (ex.float()[:, None] + ox.reshape(1, -1)).reshape(-1)
            spy = (ey.float()[:, None] + oy.reshape(1, -1)).reshape(-1)
            rays = cameras.pixel_rays(c2w, spx, spy, focal, focal, 0.5 * W, 0.5 * H)
            rgba[ey, ex] = _trace(rays).reshape(-1, s * s, 4).mean(dim=1)
    a = rgba[..., 3:4]
    rgb = torch.where(a > 0, rgba[..., :3] / a.clamp(min=1e-8), torch.zeros_like(rgba[..., :3]))
    return torch.cat([rgb.clamp(0, 1), a], dim=-1).cpu()


def _write_png(path: Path, rgba: torch.Tensor) -> None:
    write_image(path, rgba)


def _render_split(folder: Path, spec: SceneSpec, split: str, have: int, want: int,
                  on_view: Callable[[], None]) -> None:
    """Render views ``have .. want-1`` of ``split`` and list ``r_0 .. r_{want-1}`` in its transforms file."""
    n = spec["splits"][split]
    poses = lego.camera_rig(split, n, radius=float(spec["camera_radius"]), seed=int(spec["seed"]))
    # an interrupted render with the same settings left valid images: keep them
    partial = folder / split / ".rendering.json"
    resumable = partial.is_file() and partial.read_text() == json.dumps(_stamp(spec, split))
    if not resumable:
        partial.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(partial) as tmp:
            tmp.write_text(json.dumps(_stamp(spec, split)))
    frames = []
    for i in range(want):
        png = folder / split / f"r_{i}.png"
        if i >= have and not (resumable and png.is_file()):
            rgba = render_lego_view(poses[i], spec["resolution"], float(spec["camera_angle_x"]), spec["supersample"])
            _write_png(png, rgba)
        frames.append({"file_path": f"./{split}/r_{i}", "rotation": 0.0,
                       "transform_matrix": [[float(v) for v in row] for row in poses[i]]})
        if i >= have:
            on_view()
    meta = {"camera_angle_x": float(spec["camera_angle_x"]), "frames": frames,
            "taichifield_scene": _stamp(spec, split)}
    with atomic_path(folder / f"transforms_{split}.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1))
    partial.unlink(missing_ok=True)


def prepare_scene(
    path: str | os.PathLike[str],
    splits: Iterable[str] | None = None,
    *,
    limits: Mapping[str, int | None] | None = None,
    resolution: int | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Make sure a scene folder holds rendered Blender-format views; returns the folder.

    Folders without ``scene.json`` (real datasets) are returned untouched. For a
    procedural scene, views are rendered only when asked for: each requested split gets
    its first ``limits[split]`` views (all of them when the split is not in ``limits``
    or maps to None). A split's transforms file lists exactly the views rendered so far,
    ``r_0 .. r_{k-1}``, so the folder is a normal Blender folder at every moment (with
    fewer test views until more are asked for); asking for more renders only the
    missing ones. Cached views whose settings are stale are rendered again. A
    transforms file is written only after its images, so an interrupted render is
    resumed next time.

    Args:
        path: the scene folder.
        splits: splits to prepare (default: all three).
        limits: most views to have per split, e.g. ``{"test": 4}`` for a training run
            that scores 4 test views (missing keys: the whole split).
        resolution: override ``scene.json``'s resolution (e.g. tiny scenes in tests);
            the override is written back into ``scene.json`` so loaders agree.
        progress: ``progress(done, total, message)`` after each view.
    """
    folder = Path(path)
    if not is_procedural(folder):
        return folder
    spec = read_scene_spec(folder)
    if resolution is not None and resolution != spec["resolution"]:
        raw = json.loads((folder / "scene.json").read_text())
        raw["resolution"] = int(resolution)
        with atomic_path(folder / "scene.json") as tmp:
            tmp.write_text(json.dumps(raw, indent=2) + "\n")
        spec = read_scene_spec(folder)
    limits = dict(limits or {})
    todo = []
    for split in splits or SPLITS:
        n = spec["splits"][split]
        lim = limits.get(split)
        want = n if lim is None else max(0, min(int(lim), n))
        have = _rendered_views(folder, spec, split)
        if have < want:
            todo.append((split, have, want))
    total = sum(want - have for _, have, want in todo)
    done = 0
    for split, have, want in todo:
        log.info("rendering %d %s views of %s at %dx%d", want - have, split, folder, spec["resolution"],
                 spec["resolution"])

        def on_view(split: str = split) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total, f"rendering {split} views")

        _render_split(folder, spec, split, have, want, on_view)
    return folder


def lego_gt_mesh(path: str | os.PathLike[str], resolution: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth mesh of a procedural LEGO scene: marching cubes on the analytic SDF, cached.

    Written to ``<scene>/cache/gt_mesh_<res>.ply`` on first use.

    Returns:
        (verts (V, 3) float32 world coordinates, faces (F, 3) int64).
    """
    from ..geometry.extract import extract_mesh
    from ..geometry.mesh_io import load_mesh, save_mesh
    from .lego_kernel import lego_sdf_taichi

    folder = Path(path)
    spec = read_scene_spec(folder)
    res = int(resolution or spec["gt_mesh_resolution"])
    out = folder / "cache" / f"gt_mesh_{res}.ply"
    if out.is_file():
        v, f = load_mesh(out)
        return torch.as_tensor(v, dtype=torch.float32), torch.as_tensor(f, dtype=torch.int64)
    lo, hi = lego.SCENE_BOUNDS
    bbox = torch.tensor([[a - 0.05 for a in lo], [b + 0.05 for b in hi]])
    v, f = extract_mesh(lego_sdf_taichi, res, bbox, level=0.0)
    save_mesh(out, v, f)
    return torch.as_tensor(v, dtype=torch.float32), torch.as_tensor(f, dtype=torch.int64)
