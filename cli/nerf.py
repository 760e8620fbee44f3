"""``taichifield train|eval|render|mesh nerf``: NeRF from posed images, end to end."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .apps import eval_app, mesh_app, render_app, train_app
from taichifield.fields.configs import NerfConfig
from taichifield.train.configs import NerfTrainConfig

from .common import (
    ArchOption, OverwriteOption, Progress, QuietOption, SeedOption, check_positive, cli_command, config_option, start_runtime,
)
from .radiance import SceneBar, train_run

DownscaleOption = Annotated[Optional[int], typer.Option("--downscale", help="Integer image downscale factor (default: the training one).")]
LimitOption = Annotated[Optional[int], typer.Option("--limit", help="Only the first N views of the split.")]


@train_app.command("nerf")
@cli_command
def train_nerf_command(
    scene: Annotated[Optional[str], typer.Argument(help="Scene folder: Blender (transforms_*.json), instant-ngp (transforms.json) or procedural (scene.json, e.g. scenes/lego). Optional with --resume.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default runs/nerf-<scene>-<timestamp>).")] = None,
    steps: Annotated[int, config_option(NerfTrainConfig, "steps", "--steps")] = NerfTrainConfig.default("steps"),
    time_budget: Annotated[Optional[float], config_option(NerfTrainConfig, "time_budget", "--time-budget")] = NerfTrainConfig.default("time_budget"),
    downscale: Annotated[int, config_option(NerfTrainConfig, "downscale", "--downscale")] = NerfTrainConfig.default("downscale"),
    encoding: Annotated[str, config_option(NerfConfig, "encoding", "--encoding", "-e")] = NerfConfig.default("encoding"),
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the run in this folder (or ckpt.pt).")] = None,
    target_samples: Annotated[Optional[int], config_option(NerfTrainConfig, "target_samples", "--target-samples")] = NerfTrainConfig.default("target_samples"),
    log2_table_size: Annotated[int, config_option(NerfConfig, "log2_table_size", "--log2-table-size")] = NerfConfig.default("log2_table_size"),
    contraction: Annotated[Optional[bool], config_option(NerfConfig, "contraction", "--contraction/--no-contraction", note="Default: automatic.")] = NerfConfig.default("contraction"),
    distortion_weight: Annotated[Optional[float], config_option(NerfTrainConfig, "distortion_weight", "--distortion-weight")] = NerfTrainConfig.default("distortion_weight"),
    pose_refinement: Annotated[bool, config_option(NerfTrainConfig, "pose_refinement", "--pose-refinement/--no-pose-refinement")] = NerfTrainConfig.default("pose_refinement"),
    appearance: Annotated[bool, config_option(NerfTrainConfig, "appearance", "--appearance/--no-appearance")] = NerfTrainConfig.default("appearance"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run in --out (its ckpt.pt, metrics, curves, progress images) instead of refusing.")] = False,
    arch: ArchOption = "auto",
    seed: SeedOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Train a NeRF (hash grid + occupancy-grid marcher + Taichi volume rendering).

    Writes RUN/ckpt.pt (atomically, periodically and at the end) and RUN/metrics.json.

    Example:

        taichifield train nerf scenes/lego --time-budget 300 --downscale 2 --out runs/lego
    """
    from taichifield.errors import InputError

    if scene is None and resume is None:
        raise InputError("give a SCENE folder (or --resume RUN)")
    check_positive(time_budget=time_budget)  # the library takes 0 (save at once); a command wants > 0
    # the configs validate every option (one-line errors) before anything is written
    config = NerfTrainConfig(scene=scene or "", steps=steps, time_budget=time_budget, downscale=downscale, seed=seed,
                             target_samples=target_samples, distortion_weight=distortion_weight,
                             pose_refinement=pose_refinement, appearance=appearance,
                             model=NerfConfig(encoding=encoding, log2_table_size=log2_table_size,  # type: ignore[arg-type]
                                              contraction=contraction))
    chosen = start_runtime(arch, seed)
    from taichifield.train.nerf import default_run_dir, run_train_nerf

    def info(stats: dict[str, Any]) -> str:
        return (f"loss {stats['loss']:.4f} psnr {stats['psnr']:.2f} dB "
                f"{stats['samples_per_s'] / 1e6:.2f} M samples/s {int(stats['rays'])} rays")

    result = train_run("nerf", config, run_train_nerf, default_run_dir, info, scene=scene, out=out, resume=resume,
                       overwrite=overwrite, quiet=quiet)
    test = f", test PSNR {result.test_psnr:.2f} dB" if result.test_psnr is not None else ""
    typer.echo(f"nerf: {config.model.encoding} on {chosen}, {result.step} steps in {result.seconds:.0f} s "
               f"({result.stopped}), train PSNR {result.train_psnr:.2f} dB{test} -> {result.run_dir}/ckpt.pt")


@eval_app.command("nerf")
@cli_command
def eval_nerf_command(
    ckpt: Annotated[Path, typer.Argument(help="NeRF checkpoint (RUN/ckpt.pt or RUN).")],
    scene: Annotated[str, typer.Argument(help="Scene folder with ground-truth views.")],
    split: Annotated[str, typer.Option("--split", help="Split to score: train, val or test.")] = "test",
    downscale: DownscaleOption = None,
    limit: LimitOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics (with per-view values) as JSON.")] = False,
    grid: Annotated[Optional[Path], typer.Option("--grid", help="Also write a PNG: one row per view (up to 8): ground truth | prediction | error.")] = None,
    overwrite: OverwriteOption = False,
    arch: ArchOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """PSNR and SSIM of a trained NeRF on a split, against ground truth on white.

    Example:

        taichifield eval nerf runs/lego/ckpt.pt scenes/lego --split test --limit 20 --grid eval.png
    """
    import json

    from taichifield.errors import InputError

    from taichifield.runfolder import check_output_file

    check_positive(limit=limit)
    if grid is not None and grid.suffix.lower() != ".png":
        raise InputError(f"{grid}: --grid must be a .png file")
    if grid is not None:
        check_output_file(grid, overwrite, "--grid")
    start_runtime(arch)  # quiet on stdout (runtime.init swallows Taichi's banner), so --json stays pure JSON
    from taichifield.pipelines.nerf_eval import evaluate_nerf

    scene_bar = SceneBar(quiet or as_json)
    with Progress(f"eval [{split}]", total=limit, quiet=quiet or as_json, unit="view") as bar:
        try:
            result = evaluate_nerf(ckpt, scene, split, downscale=downscale, limit=limit,
                                   progress=lambda i, n: bar.update(completed=i), scene_progress=scene_bar,
                                   grid_image=grid)
        finally:
            scene_bar.close()
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        shown = f"; grid -> {grid}" if grid is not None else ""
        typer.echo(f"eval: {result.n_views} {split} views, PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.4f}{shown}")


@render_app.command("nerf")
@cli_command
def render_nerf_command(
    ckpt: Annotated[Optional[Path], typer.Argument(help="NeRF checkpoint (RUN/ckpt.pt or RUN); not needed with --path-from-train.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for split frames; video file (.mp4 or .gif) with --orbit or --path; .json with --path-from-train.")] = None,
    scene: Annotated[Optional[str], typer.Option("--scene", help="Scene whose split poses to render.")] = None,
    split: Annotated[str, typer.Option("--split", help="Split whose poses to render.")] = "test",
    downscale: DownscaleOption = None,
    limit: LimitOption = None,
    orbit: Annotated[bool, typer.Option("--orbit", help="Render a circle of novel views into a video instead.")] = False,
    frames: Annotated[int, typer.Option("--frames", help="Orbit frames.")] = 120,
    resolution: Annotated[int, typer.Option("--resolution", help="Orbit frame width = height.")] = 400,
    path: Annotated[Optional[Path], typer.Option("--path", help="Render this keyframed camera path (JSON: keyframes with time, position + look_at or c2w, fov; fps, resolution) into a video.")] = None,
    path_from_train: Annotated[Optional[str], typer.Option("--path-from-train", help="Write a closed camera path (JSON, for --path) through this scene's training cameras to --out; --frames sets its length at 30 fps.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing video, or the frames in a non-empty folder, instead of refusing.")] = False,
    arch: ArchOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Render a split's views (DIR/<frame name>.png, on white), an orbit video or a camera path video.

    Examples:

        taichifield render nerf runs/lego/ckpt.pt --scene scenes/lego --split test --limit 8 --out renders/

        taichifield render nerf runs/lego/ckpt.pt --orbit --frames 120 --out orbit.mp4

        taichifield render nerf --path-from-train scenes/lego --frames 240 --out path.json

        taichifield render nerf runs/lego/ckpt.pt --path path.json --out path.mp4
    """
    from taichifield.errors import InputError

    check_positive(frames=frames, resolution=resolution, limit=limit)
    from taichifield.runfolder import check_output_file, check_output_folder

    if sum([orbit, path is not None, path_from_train is not None]) > 1:
        raise InputError("give only one of --orbit, --path and --path-from-train")
    if out is None:
        raise InputError("render nerf needs --out")
    if path_from_train is not None:
        _write_train_path(path_from_train, out, frames, overwrite, quiet)
        return
    if ckpt is None:
        raise InputError("render nerf needs a CKPT (RUN/ckpt.pt or RUN)")
    video = orbit or path is not None
    if video and out.suffix.lower() not in (".mp4", ".gif"):
        raise InputError(f"{out}: {'an orbit' if orbit else 'a path'} video must end in .mp4 or .gif")
    camera_path = None
    if path is not None:
        from taichifield.camera_path import load_camera_path

        camera_path = load_camera_path(path)  # a bad file is refused before the runtime starts
    if video:
        check_output_file(out, overwrite)
        if out.suffix.lower() == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
            check_output_file(out.with_suffix(".gif"), overwrite)  # what is written instead
    else:
        check_output_folder(out, overwrite)
    start_runtime(arch)
    from taichifield.pipelines.nerf_eval import render_orbit, render_path, render_split

    if camera_path is not None:
        n = camera_path.n_frames
        with Progress("path", total=n, quiet=quiet, unit="frame") as bar:
            written = render_path(ckpt, camera_path, out, progress=lambda i, n: bar.update(completed=i))
        kind = "GIF (imageio-ffmpeg not installed)" if written.suffix == ".gif" and out.suffix.lower() != ".gif" else written.suffix[1:].upper()
        typer.echo(f"render: {n} path frames ({n / camera_path.fps:.1f} s at {camera_path.fps:g} fps) -> {written} ({kind})")
        return
    if orbit:
        with Progress("orbit", total=frames, quiet=quiet, unit="frame") as bar:
            path = render_orbit(ckpt, out, frames=frames, resolution=resolution, progress=lambda i, n: bar.update(completed=i))
        kind = "GIF (imageio-ffmpeg not installed)" if path.suffix == ".gif" and out.suffix.lower() != ".gif" else path.suffix[1:].upper()
        typer.echo(f"render: {frames} orbit frames -> {path} ({kind})")
        return
    if scene is None:
        raise InputError("render nerf needs --scene SCENE (or --orbit)")
    scene_bar = SceneBar(quiet)
    with Progress(f"render [{split}]", total=limit, quiet=quiet, unit="view") as bar:
        try:
            paths = render_split(ckpt, scene, out, split, downscale=downscale, limit=limit,
                                 progress=lambda i, n: bar.update(completed=i), scene_progress=scene_bar)
        finally:
            scene_bar.close()
    typer.echo(f"render: {len(paths)} {split} views -> {out}/")


def _write_train_path(scene: str, out: Path, frames: int, overwrite: bool, quiet: bool) -> None:
    """``--path-from-train``: a loop through the scene's training cameras, written as a path file."""
    import math

    from taichifield.camera_path import path_from_views, save_camera_path
    from taichifield.data import load_scene
    from taichifield.errors import InputError
    from taichifield.runfolder import check_output_file
    from taichifield.scenes.prepare import prepare_scene

    if out.suffix.lower() != ".json":
        raise InputError(f"{out}: --path-from-train writes a camera path: --out must end in .json")
    check_output_file(out, overwrite)
    scene_bar = SceneBar(quiet)
    try:
        prepare_scene(scene, splits=["train"], progress=scene_bar)
    finally:
        scene_bar.close()
    views = load_scene(scene, "train", 1)
    fov = math.degrees(2 * math.atan(0.5 * views.width / views.median_fx()))
    cam = path_from_views(views.c2w, fov=fov, width=views.width, height=views.height, seconds=frames / 30.0,
                          fps=30.0, source=str(views.source or scene))
    save_camera_path(out, cam)
    typer.echo(f"path: a {cam.n_frames}-frame loop ({len(cam.times)} keyframes) through {len(views)} training "
               f"cameras -> {out}")


@mesh_app.command("nerf")
@cli_command
def mesh_nerf_command(
    ckpt: Annotated[Path, typer.Argument(help="NeRF checkpoint (RUN/ckpt.pt or RUN).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Mesh file (.ply or .obj).")],
    res: Annotated[int, typer.Option("--res", help="Marching cubes grid resolution over the scene box.")] = 256,
    threshold: Annotated[float, typer.Option("--threshold", help="Density isovalue sigma.")] = 10.0,
    color: Annotated[bool, typer.Option("--color", help="Bake vertex colours: what the field renders along each vertex normal (PLY uchar red/green/blue; OBJ 'v x y z r g b').")] = False,
    overwrite: OverwriteOption = False,
    arch: ArchOption = "auto",
) -> None:
    """Extract the density isosurface of a NeRF with Taichi marching cubes (optionally coloured).

    Example:

        taichifield mesh nerf runs/lego/ckpt.pt --res 256 --threshold 10 --color --out lego.ply
    """
    from taichifield.errors import InputError
    from taichifield.runfolder import check_output_file

    if out.suffix.lower() not in (".ply", ".obj"):
        raise InputError(f"{out}: mesh output must end in .ply or .obj")
    check_output_file(out, overwrite)
    start_runtime(arch)
    from taichifield.pipelines.nerf_eval import mesh_nerf

    path, nv, nf = mesh_nerf(ckpt, out, resolution=res, threshold=threshold, color=color)
    typer.echo(f"mesh: {nv} vertices, {nf} faces{', vertex colours' if color else ''} -> {path}")
