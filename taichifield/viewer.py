"""The Open3D viewer: meshes, point clouds, SDF/NeRF checkpoints and scenes in one window.

Open3D is imported here only, inside functions, so ``import taichifield`` never
loads it. ``view(paths, screenshot=...)`` either opens an interactive window or
renders the same view off-screen into a PNG. On a machine without a display,
a screenshot starts a private Xvfb server when ``Xvfb`` is installed.

What each input shows:
    mesh (.ply/.obj/.off with faces)   the mesh, smooth-shaded with vertex normals, in its
                                       vertex colours when the file has them (PLY/OBJ)
    points (.ply without faces, .xyz, .npy, .npz)  the point cloud (normals if present)
    SDF checkpoint (kind "sdf")        its zero level set, extracted once and cached
                                       next to the checkpoint (``ckpt.mesh<res>.ply``)
    NeRF checkpoint (kind "nerf")      occupied cells of its occupancy grid, the scene
                                       box and the training cameras (when the scene is found)
    scene folder (transforms*.json)    training cameras as frusta and the scene box
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .data.points import POINT_SUFFIXES, read_geometry
from .errors import InputError, TaichiFieldError

__all__ = ["view", "load_geometries"]

log = logging.getLogger(__name__)

_PALETTE = np.array([[0.75, 0.75, 0.78], [0.85, 0.55, 0.35], [0.40, 0.60, 0.85], [0.55, 0.80, 0.45]])


def _o3d() -> Any:
    try:
        import open3d as o3d
    except ImportError as exc:  # pragma: no cover - open3d is a hard dependency
        raise TaichiFieldError(f"the viewer needs open3d ({exc}); pip install open3d") from None
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    return o3d


def _mesh_geometry(vertices: np.ndarray, faces: np.ndarray, color: np.ndarray,
                   vertex_colors: np.ndarray | None = None) -> Any:
    """A smooth-shaded mesh: its own vertex colours (V, 3) in [0, 1] when given, else ``color``."""
    o3d = _o3d()
    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(vertices, np.float64)),
        o3d.utility.Vector3iVector(np.asarray(faces, np.int32)),
    )
    mesh.compute_vertex_normals()
    if vertex_colors is not None:
        mesh.vertex_colors = o3d.utility.Vector3dVector(np.clip(np.asarray(vertex_colors, np.float64), 0.0, 1.0))
    else:
        mesh.paint_uniform_color(color)
    return mesh


def _points_geometry(points: np.ndarray, normals: np.ndarray | None, color: np.ndarray) -> Any:
    o3d = _o3d()
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, np.float64)))
    if normals is not None:
        pcd.normals = o3d.utility.Vector3dVector(np.asarray(normals, np.float64))
        # shade by normal so the shape reads without lighting tricks
        pcd.colors = o3d.utility.Vector3dVector(0.5 + 0.5 * np.asarray(normals, np.float64))
    else:
        pcd.paint_uniform_color(color)
    return pcd


def _box_lines(aabb: np.ndarray) -> Any:
    o3d = _o3d()
    box = o3d.geometry.AxisAlignedBoundingBox(np.asarray(aabb[0], np.float64), np.asarray(aabb[1], np.float64))
    lines = o3d.geometry.LineSet.create_from_axis_aligned_bounding_box(box)
    lines.paint_uniform_color([0.2, 0.2, 0.2])
    return lines


def _frusta(c2w: np.ndarray, fx: float, fy: float, width: int, height: int, size: float) -> Any:
    """Camera frusta as one LineSet: apex at the camera centre, an image-plane rectangle at depth ``size``."""
    import torch

    from .cameras import camera_dirs

    o3d = _o3d()
    # the image corners (u, v) = (0, H), (W, H), (W, 0), (0, 0) at depth ``size`` (OpenGL camera, -z forward)
    corners = camera_dirs(torch.tensor([0.0, width, width, 0.0], dtype=torch.float64),
                          torch.tensor([height, height, 0.0, 0.0], dtype=torch.float64),
                          fx, fy, 0.5 * width, 0.5 * height).numpy() * size
    local = np.concatenate([np.zeros((1, 3)), corners])
    pts, lines = [], []
    for i, m in enumerate(np.asarray(c2w, np.float64)):
        world = local @ m[:3, :3].T + m[:3, 3]
        pts.append(world)
        b = 5 * i
        lines += [[b, b + 1], [b, b + 2], [b, b + 3], [b, b + 4], [b + 1, b + 2], [b + 2, b + 3], [b + 3, b + 4], [b + 4, b + 1]]
    ls = o3d.geometry.LineSet(o3d.utility.Vector3dVector(np.concatenate(pts)), o3d.utility.Vector2iVector(np.array(lines)))
    ls.paint_uniform_color([0.9, 0.3, 0.2])
    return ls


def _scene_geometries(path: Path) -> list[Any]:
    from .data import load_scene
    from .scenes.prepare import is_procedural, prepare_scene

    if is_procedural(path):
        prepare_scene(path, ["train"])  # a shipped procedural scene renders its views on first use
    views = load_scene(path, split="train")
    aabb = np.asarray(views.aabb, np.float64)
    size = 0.08 * float(np.linalg.norm(aabb[1] - aabb[0]))
    return [_box_lines(aabb), _frusta(np.asarray(views.c2w), views.fx, views.fy, views.width, views.height, size)]


def _sdf_geometries(path: Path, resolution: int, color: np.ndarray) -> list[Any]:
    from .geometry.mesh_io import load_mesh, save_mesh

    cache = path.with_name(f"{path.stem}.mesh{resolution}.ply")
    if cache.exists() and cache.stat().st_mtime >= path.stat().st_mtime:
        v, f = load_mesh(cache)
    else:
        from . import runtime
        from .geometry.extract import extract_mesh
        from .train.sdf import load_sdf

        runtime.ensure_init()
        sdf = load_sdf(path)
        v, f = extract_mesh(sdf, resolution, sdf.bbox(1.0))
        if len(f) == 0:
            raise InputError(f"{path}: the SDF has no zero level set inside its box; nothing to show")
        save_mesh(cache, v, f)
        log.info("cached the extracted mesh in %s", cache)
    return [_mesh_geometry(v, f, color)]


def _nerf_geometries(path: Path) -> list[Any]:
    """Occupied cells of the innermost grid level (as points), the scene box and the cameras."""
    from . import runtime
    from .pipelines.nerf_render import load_nerf

    runtime.ensure_init()
    loaded = load_nerf(path)
    grid = loaded.grid
    occ = grid.occupied_mask()[0].cpu().numpy()
    idx = np.argwhere(occ).astype(np.float64)
    centre, half = (grid._box[:3].cpu().numpy(), grid._box[3:].cpu().numpy())
    centres = centre + ((idx + 0.5) / grid.resolution * 2.0 - 1.0) * half
    aabb = np.stack([centre - half, centre + half])
    geoms = [_points_geometry(centres, None, np.array([0.3, 0.5, 0.9])), _box_lines(aabb)]
    scene = loaded.config.get("scene")
    if scene and Path(scene).exists():
        try:
            geoms += _scene_geometries(Path(scene))[1:]
        except TaichiFieldError as exc:
            log.warning("training cameras not shown: %s", exc)
    return geoms


def load_geometries(paths: Sequence[str | os.PathLike[str]], sdf_resolution: int = 256) -> list[Any]:
    """Open3D geometries for each input path (see the module docstring)."""
    geoms: list[Any] = []
    for i, raw in enumerate(paths):
        path = Path(raw)
        color = _PALETTE[i % len(_PALETTE)]
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        if path.is_dir():
            geoms += _scene_geometries(path)
        elif path.suffix.lower() == ".pt":
            from .train.checkpoint import load_checkpoint

            data = load_checkpoint(path)
            if data["kind"] == "sdf":
                geoms += _sdf_geometries(path, sdf_resolution, color)
            elif data["kind"] == "nerf":
                geoms += _nerf_geometries(path)
            else:
                raise InputError(f"{path}: a {data['kind']!r} checkpoint has no 3D content to view")
        elif path.suffix.lower() in POINT_SUFFIXES:

            pts, normals, faces = read_geometry(path)
            if faces is not None and len(faces):
                from .geometry.mesh_io import read_vertex_colors

                colors = read_vertex_colors(path) if path.suffix.lower() in (".ply", ".obj") else None
                geoms.append(_mesh_geometry(pts, faces, color, colors))
            else:
                geoms.append(_points_geometry(pts, normals, color))
        else:
            raise InputError(f"{path}: unsupported file type {path.suffix!r} (mesh .ply/.obj/.off, points .xyz/.npy/.npz, checkpoint .pt, or a scene folder)")
    return geoms


@contextlib.contextmanager
def _display(need: bool) -> Iterator[None]:
    """Make sure there is an X display: the user's, or a private Xvfb for off-screen pictures."""
    if os.environ.get("DISPLAY") or not need:
        yield
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise TaichiFieldError("no display and no Xvfb: apt-get install xvfb, or run under xvfb-run -a")
    r, w = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(w), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(w)
    with os.fdopen(r) as fh:
        number = fh.readline().strip()
    if not number:
        proc.kill()
        raise TaichiFieldError("could not start Xvfb for the off-screen screenshot")
    os.environ["DISPLAY"] = f":{number}"
    if not os.environ.get("XDG_RUNTIME_DIR"):  # GLFW complains on stderr without one
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="taichifield-xdg-")
    try:
        yield
    finally:
        os.environ.pop("DISPLAY", None)
        proc.terminate()
        proc.wait(timeout=10)


def _show(geoms: list[Any], screenshot: str | os.PathLike[str] | None, width: int, height: int,
          background: Sequence[float] = (1.0, 1.0, 1.0), rotate: bool = True) -> Path | None:
    """Open a window on ``geoms`` (screenshot None) or render them off-screen into a PNG."""
    with _display(need=screenshot is not None):
        o3d = _o3d()
        vis = o3d.visualization.Visualizer()
        if not vis.create_window(window_name="taichifield", width=width, height=height, visible=screenshot is None):
            raise TaichiFieldError("Open3D could not create a window (is the display usable? try --screenshot)")
        try:
            for g in geoms:
                vis.add_geometry(g)
            opt = vis.get_render_option()
            opt.background_color = np.asarray(background, np.float64)
            opt.mesh_show_back_face = True
            opt.point_size = 3.0
            if rotate:
                vis.get_view_control().rotate(200.0, -150.0)  # a three-quarter view reads shapes better
            else:
                vis.get_view_control().set_zoom(0.6)  # front view of a side-by-side row: fill the frame
            if screenshot is None:
                vis.run()
                return None
            vis.poll_events()
            vis.update_renderer()
            image = np.asarray(vis.capture_screen_float_buffer(do_render=True))
        finally:
            vis.destroy_window()
    from .images import write_image

    return write_image(screenshot, np.asarray(image))


def view(
    paths: Sequence[str | os.PathLike[str]],
    *,
    screenshot: str | os.PathLike[str] | None = None,
    width: int = 1024,
    height: int = 768,
    sdf_resolution: int = 256,
    background: Sequence[float] = (1.0, 1.0, 1.0),
) -> Path | None:
    """Show ``paths`` together; with ``screenshot``, render off-screen to that PNG and return its path.

    Raises:
        InputError: a path is missing or of an unsupported kind.
        TaichiFieldError: no display for an interactive window.
    """
    if screenshot is None and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise TaichiFieldError(
            "no display to open a window on: add --screenshot OUT.png to render a picture instead "
            "(it works headless), or run on a desktop / with X forwarding"
        )
    geoms = load_geometries(paths, sdf_resolution=sdf_resolution)
    return _show(geoms, screenshot, width, height, background)


def mesh_error_picture(
    pred_v: np.ndarray, pred_f: np.ndarray, gt_v: np.ndarray, gt_f: np.ndarray, out: str | os.PathLike[str],
    *, tau: float, width: int = 960, height: int = 480,
) -> Path:
    """Side by side, front view: the reference mesh (grey) | the prediction coloured by its distance to
    the reference (white = 0, red >= ``2 * tau``; ``tau`` is the F-score threshold).

    Args:
        pred_v, pred_f: (V, 3) float, (F, 3) int prediction. gt_v, gt_f: the reference.
        out: PNG path (written atomically).
    """
    from scipy.spatial import cKDTree

    from .geometry.metrics import sample_surface

    gt_pts = sample_surface(gt_v, gt_f, 200_000, np.random.default_rng(0))[0]
    dist, _ = cKDTree(gt_pts).query(np.asarray(pred_v, np.float64))
    t = np.clip(dist / (2.0 * tau), 0.0, 1.0)[:, None]
    colors = (1.0 - t) * np.array([0.92, 0.92, 0.92]) + t * np.array([0.85, 0.1, 0.1])
    shift = np.array([1.25 * float(np.ptp(gt_v[:, 0])), 0.0, 0.0])
    o3d = _o3d()
    gt_mesh = _mesh_geometry(gt_v, gt_f, np.array([0.7, 0.7, 0.72]))
    pred_mesh = _mesh_geometry(np.asarray(pred_v, np.float64) + shift, pred_f, np.array([1.0, 1.0, 1.0]))
    pred_mesh.vertex_colors = o3d.utility.Vector3dVector(colors)
    result = _show([gt_mesh, pred_mesh], out, width, height, rotate=False)
    assert result is not None
    return result
