"""``taichifield train|eval|render|mesh neus``: surfaces from posed images (NeuS), end to end."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from taichifield.fields.configs import NeuSConfig
from taichifield.train.configs import NeuSTrainConfig

from .apps import eval_app, mesh_app, render_app, train_app
from .common import (
    ArchOption, OverwriteOption, Progress, QuietOption, SeedOption, check_positive, cli_command, config_option, start_runtime,
)
from .nerf import DownscaleOption, LimitOption
from .radiance import SceneBar, train_run

NormalsOption = Annotated[bool, typer.Option("--normals", help="Render normal maps ((n + 1) / 2 on black) instead of colour.")]


@train_app.command("neus")
@cli_command
def train_neus_command(
    scene: Annotated[Optional[str], typer.Argument(help="Scene folder: Blender (transforms_*.json), instant-ngp (transforms.json) or procedural (scene.json, e.g. scenes/lego). Optional with --resume.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default runs/neus-<scene>-<timestamp>).")] = None,
    steps: Annotated[int, config_option(NeuSTrainConfig, "steps", "--steps")] = NeuSTrainConfig.default("steps"),
    time_budget: Annotated[Optional[float], config_option(NeuSTrainConfig, "time_budget", "--time-budget")] = NeuSTrainConfig.default("time_budget"),
    downscale: Annotated[int, config_option(NeuSTrainConfig, "downscale", "--downscale")] = NeuSTrainConfig.default("downscale"),
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the run in this folder (or ckpt.pt).")] = None,
    target_samples: Annotated[Optional[int], config_option(NeuSTrainConfig, "target_samples", "--target-samples")] = NeuSTrainConfig.default("target_samples"),
    eikonal_weight: Annotated[float, config_option(NeuSTrainConfig, "eikonal_weight", "--eikonal-weight")] = NeuSTrainConfig.default("eikonal_weight"),
    log2_table_size: Annotated[int, config_option(NeuSConfig, "log2_table_size", "--log2-table-size")] = NeuSConfig.default("log2_table_size"),
    grid_resolution: Annotated[Optional[int], config_option(NeuSTrainConfig, "grid_resolution", "--grid-resolution")] = NeuSTrainConfig.default("grid_resolution"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run in --out (its ckpt.pt, metrics, curves, progress images) instead of refusing.")] = False,
    arch: ArchOption = "auto",
    seed: SeedOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Train a NeuS surface (hash-grid SDF + occupancy-grid sampling + Taichi volume rendering).

    Writes RUN/ckpt.pt (atomically, periodically and at the end), RUN/metrics.json, curves and progress images; mesh it with `taichifield mesh neus RUN`.

    Example:

        taichifield train neus scenes/lego --time-budget 1200 --downscale 2 --out runs/lego-neus
    """
    from taichifield.errors import InputError

    if scene is None and resume is None:
        raise InputError("give a SCENE folder (or --resume RUN)")
    check_positive(time_budget=time_budget)
    config = NeuSTrainConfig(scene=scene or "", steps=steps, time_budget=time_budget, downscale=downscale, seed=seed,
                             target_samples=target_samples, eikonal_weight=eikonal_weight, grid_resolution=grid_resolution,
                             model=NeuSConfig(log2_table_size=log2_table_size))
    chosen = start_runtime(arch, seed)
    from taichifield.train.neus import default_run_dir, run_train_neus

    def info(stats: dict[str, Any]) -> str:
        return (f"loss {stats['loss']:.4f} psnr {stats['psnr']:.2f} dB eikonal {stats['eikonal']:.4f} "
                f"inv_s {stats['inv_s']:.0f} {int(stats['rays'])} rays")

    result = train_run("neus", config, run_train_neus, default_run_dir, info, scene=scene, out=out, resume=resume,
                       overwrite=overwrite, quiet=quiet)
    test = f", test PSNR {result.test_psnr:.2f} dB" if result.test_psnr is not None else ""
    typer.echo(f"neus: on {chosen}, {result.step} steps in {result.seconds:.0f} s ({result.stopped}), "
               f"train PSNR {result.train_psnr:.2f} dB{test} -> {result.run_dir}/ckpt.pt")


@mesh_app.command("neus")
@cli_command
def mesh_neus_command(
    ckpt: Annotated[Path, typer.Argument(help="NeuS checkpoint (RUN/ckpt.pt or RUN).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Mesh file (.ply or .obj).")],
    res: Annotated[int, typer.Option("--res", help="Marching cubes grid resolution over the scene box.")] = 512,
    color: Annotated[bool, typer.Option("--color", help="Bake vertex colours: the colour network at each vertex seen along its normal (PLY uchar red/green/blue; OBJ 'v x y z r g b').")] = False,
    overwrite: OverwriteOption = False,
    arch: ArchOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Extract the zero level set of a NeuS SDF: narrow-band Taichi marching cubes, scene coordinates, watertight (closed at the scene box).

    Example:

        taichifield mesh neus runs/lego-neus --res 512 --color --out lego.ply
    """
    from taichifield.errors import InputError
    from taichifield.runfolder import check_output_file

    check_positive(res=res)
    if out.suffix.lower() not in (".ply", ".obj"):
        raise InputError(f"{out}: mesh output must end in .ply or .obj")
    check_output_file(out, overwrite)
    start_runtime(arch)
    from taichifield.pipelines.neus_eval import mesh_neus

    with Progress("mesh", total=None, quiet=quiet, unit="points") as bar:
        path, nv, nf = mesh_neus(ckpt, out, resolution=res, color=color,
                                 progress=lambda done, total: bar.update(completed=done))
    typer.echo(f"mesh: {nv} vertices, {nf} faces{', vertex colours' if color else ''} -> {path}")


@eval_app.command("neus")
@cli_command
def eval_neus_command(
    ckpt: Annotated[Path, typer.Argument(help="NeuS checkpoint (RUN/ckpt.pt or RUN).")],
    scene: Annotated[str, typer.Argument(help="Scene folder with ground-truth views.")],
    split: Annotated[str, typer.Option("--split", help="Split to score: train, val or test.")] = "test",
    downscale: DownscaleOption = None,
    limit: LimitOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics (with per-view values) as JSON.")] = False,
    grid: Annotated[Optional[Path], typer.Option("--grid", help="Also write a PNG: one row per view (up to 8): ground truth | prediction | normals.")] = None,
    overwrite: OverwriteOption = False,
    arch: ArchOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """PSNR and SSIM of a trained NeuS model on a split, against ground truth on white.

    Example:

        taichifield eval neus runs/lego-neus scenes/lego --split test --limit 20
    """
    import json

    from taichifield.errors import InputError
    from taichifield.runfolder import check_output_file

    check_positive(limit=limit)
    if grid is not None and grid.suffix.lower() != ".png":
        raise InputError(f"{grid}: --grid must be a .png file")
    if grid is not None:
        check_output_file(grid, overwrite, "--grid")
    start_runtime(arch)
    from taichifield.pipelines.neus_eval import evaluate_neus

    scene_bar = SceneBar(quiet or as_json)
    with Progress(f"eval [{split}]", total=limit, quiet=quiet or as_json, unit="view") as bar:
        try:
            result = evaluate_neus(ckpt, scene, split, downscale=downscale, limit=limit,
                                   progress=lambda i, n: bar.update(completed=i), scene_progress=scene_bar,
                                   grid_image=grid)
        finally:
            scene_bar.close()
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        shown = f"; grid -> {grid}" if grid is not None else ""
        typer.echo(f"eval: {result.n_views} {split} views, PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.4f}{shown}")


@render_app.command("neus")
@cli_command
def render_neus_command(
    ckpt: Annotated[Path, typer.Argument(help="NeuS checkpoint (RUN/ckpt.pt or RUN).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for split frames; video file (.mp4 or .gif) with --orbit.")],
    scene: Annotated[Optional[str], typer.Option("--scene", help="Scene whose split poses to render.")] = None,
    split: Annotated[str, typer.Option("--split", help="Split whose poses to render.")] = "test",
    downscale: DownscaleOption = None,
    limit: LimitOption = None,
    orbit: Annotated[bool, typer.Option("--orbit", help="Render a circle of novel views into a video instead.")] = False,
    frames: Annotated[int, typer.Option("--frames", help="Orbit frames.")] = 120,
    resolution: Annotated[int, typer.Option("--resolution", help="Orbit frame width = height.")] = 400,
    normals: NormalsOption = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing video, or the frames in a non-empty folder, instead of refusing.")] = False,
    arch: ArchOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Render a split's views (DIR/<frame name>.png) or an orbit video, in colour or as normal maps.

    Examples:

        taichifield render neus runs/lego-neus --scene scenes/lego --limit 8 --normals --out normals/

        taichifield render neus runs/lego-neus --orbit --frames 120 --out orbit.mp4
    """
    from taichifield.errors import InputError
    from taichifield.runfolder import check_output_file, check_output_folder

    check_positive(frames=frames, resolution=resolution, limit=limit)
    if orbit and out.suffix.lower() not in (".mp4", ".gif"):
        raise InputError(f"{out}: an orbit video must end in .mp4 or .gif")
    if orbit:
        check_output_file(out, overwrite)
        if out.suffix.lower() == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
            check_output_file(out.with_suffix(".gif"), overwrite)
    else:
        if scene is None:
            raise InputError("render neus needs --scene SCENE (or --orbit)")
        check_output_folder(out, overwrite)
    start_runtime(arch)
    from taichifield.pipelines.neus_eval import render_orbit_neus, render_split_neus

    if orbit:
        with Progress("orbit", total=frames, quiet=quiet, unit="frame") as bar:
            path = render_orbit_neus(ckpt, out, frames=frames, resolution=resolution, normals=normals,
                                     progress=lambda i, n: bar.update(completed=i))
        typer.echo(f"render: {frames} orbit frames -> {path} ({path.suffix[1:].upper()})")
        return
    scene_bar = SceneBar(quiet)
    with Progress(f"render [{split}]", total=limit, quiet=quiet, unit="view") as bar:
        try:
            paths = render_split_neus(ckpt, scene, out, split, downscale=downscale, limit=limit, normals=normals,  # type: ignore[arg-type]
                                      progress=lambda i, n: bar.update(completed=i), scene_progress=scene_bar)
        finally:
            scene_bar.close()
    typer.echo(f"render: {len(paths)} {split} {'normal maps' if normals else 'views'} -> {out}/")
