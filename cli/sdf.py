"""Neural SDF commands: ``train sdf``, ``mesh sdf``, ``render sdf``, ``reconstruct poisson|hoppe``.

Only option parsing here; the work is done by ``run_*`` functions that import the
library (torch, taichi, open3d) when called, so ``taichifield --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from taichifield.train.configs import SDFTrainConfig

from .apps import mesh_app, reconstruct_app, render_app, train_app
from .common import (
    ArchOption, OverwriteOption, Progress, QuietOption, SeedOption, check_positive, cli_command, config_option, note_run,
    start_runtime,
)

PointsArg = Annotated[Path, typer.Argument(help="Points or mesh: .ply .obj .off .xyz .npy .npz, or a Stanford .conf of range scans.")]
CkptArg = Annotated[Path, typer.Argument(help="SDF checkpoint (RUN/ckpt.pt or the RUN folder).")]


def _mesh_out(out: Path, overwrite: bool) -> None:
    """A mesh output: .ply or .obj, and not an existing file unless ``overwrite``."""
    from taichifield.errors import InputError
    from taichifield.runfolder import check_output_file

    if out.suffix.lower() not in (".ply", ".obj"):
        raise InputError(f"{out}: mesh output must end in .ply or .obj")
    check_output_file(out, overwrite)


def _default_sdf_run(points: Path) -> Path:
    from taichifield.runfolder import timestamped_run

    return timestamped_run("sdf", points.stem or "points")


# ----------------------------------------------------------------------------- train sdf


def run_train_sdf(points: Path, out: Path, *, resume: bool, quiet: bool, preview: bool, threads: int = 1, **options: Any) -> str:
    """Train, write the run folder (the trainer writes ckpt.pt, curves and previews); returns
    the summary line."""
    import torch

    from taichifield.train.sdf import train_sdf

    if threads > 0:
        torch.set_num_threads(threads)

    cfg = SDFTrainConfig(progress_images=preview, **{k: v for k, v in options.items() if v is not None})
    with Progress("train sdf", total=cfg.steps, quiet=quiet, unit="step") as bar:

        def on_step(step: int, stats: dict[str, float]) -> None:
            bar.update(completed=step, info=f"loss {stats.get('loss', float('nan')):.4f}")

        result = train_sdf(points, out, cfg, resume=resume, on_step=on_step)
    loss = result.last_stats.get("loss", float("nan"))
    skipped = f", {result.skipped_steps} non-finite steps skipped" if result.skipped_steps else ""
    return f"{out / 'ckpt.pt'}: {result.step} steps in {result.seconds:.1f} s ({result.stopped}), loss {loss:.5f}{skipped}"


@train_app.command("sdf")
@cli_command
def train_sdf_cmd(
    points: PointsArg,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder; the checkpoint is RUN/ckpt.pt (default runs/sdf-<input>-<timestamp>).")] = None,
    loss: Annotated[str, config_option(SDFTrainConfig, "loss", "--loss")] = SDFTrainConfig.default("loss"),
    model: Annotated[str, config_option(SDFTrainConfig, "model", "--model")] = SDFTrainConfig.default("model"),
    steps: Annotated[int, config_option(SDFTrainConfig, "steps", "--steps")] = SDFTrainConfig.default("steps"),
    time_budget: Annotated[Optional[float], config_option(SDFTrainConfig, "time_budget", "--time-budget")] = SDFTrainConfig.default("time_budget"),
    batch_size: Annotated[int, config_option(SDFTrainConfig, "batch_size", "--batch-size")] = SDFTrainConfig.default("batch_size"),
    lr: Annotated[Optional[float], config_option(SDFTrainConfig, "lr", "--lr")] = SDFTrainConfig.default("lr"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue RUN/ckpt.pt with its own settings.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run in RUN (its ckpt.pt, metrics, curves, previews) instead of refusing.")] = False,
    preview: Annotated[bool, typer.Option("--preview/--no-preview", help="Render the current surface with every checkpoint (RUN/progress/step_XXXXX.png) and the final one (RUN/preview.png).")] = True,
    checkpoint_every: Annotated[int, config_option(SDFTrainConfig, "checkpoint_every", "--checkpoint-every", note="(A preview is rendered with each.)")] = SDFTrainConfig.default("checkpoint_every"),
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: torch's default).")] = 1,
    arch: ArchOption = "auto",
    seed: SeedOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Fit a neural SDF to a point cloud or mesh.

    Example: taichifield train sdf bunny.ply --out runs/bunny --time-budget 300
    """
    from taichifield.data.points import validate_points_file
    from taichifield.errors import InputError
    from taichifield.runfolder import check_run_folder, claim_new_run, open_run

    check_positive(checkpoint_every=checkpoint_every, time_budget=time_budget)  # the CLI wants a budget > 0
    # the config validates the training options (one-line errors) before anything is written
    SDFTrainConfig(loss=loss, model=model, steps=steps, time_budget=time_budget, batch_size=batch_size, lr=lr, seed=seed)
    if out is None and resume:
        raise InputError("--resume needs --out RUN, the run folder to continue")
    start_runtime(arch, seed)
    created = None
    if out is not None:
        check_run_folder(out, resume=resume, overwrite=overwrite)  # before reading the input: it writes nothing
    validate_points_file(points)  # bad or degenerate input is refused before an earlier run is touched
    if out is None:
        out, created = claim_new_run(_default_sdf_run(points))
    with open_run(out, resume=resume, overwrite=overwrite, created=created):
        note_run(out)
        typer.echo(run_train_sdf(
            points, out, resume=resume, quiet=quiet, preview=preview, threads=threads, loss=loss, model=model, steps=steps,
            time_budget=time_budget, batch_size=batch_size, lr=lr, seed=seed, checkpoint_every=checkpoint_every,
        ))


# ----------------------------------------------------------------------------- mesh sdf


def run_mesh_sdf(ckpt: Path, out: Path, *, res: int, level: float, quiet: bool = True, batch_size: int = 2**16,
                 overwrite: bool = False) -> str:
    """Marching cubes of the learned field (narrow band), written in input coordinates."""
    import torch

    from taichifield.geometry.extract import extract_mesh
    from taichifield.geometry.mesh_io import save_mesh
    from taichifield.train.sdf import load_sdf

    _mesh_out(out, overwrite)
    sdf = load_sdf(ckpt)
    with torch.no_grad(), Progress("mesh sdf", total=None, quiet=quiet, unit="pts") as bar:
        def progress(done: int, total: int) -> None:
            bar.update(completed=done, info=f"of ~{total:,} field evaluations")

        verts, faces = extract_mesh(sdf, res, sdf.bbox(1.0), level=level, batch_size=batch_size, progress=progress)
    verts, faces = _as_numpy(verts), _as_numpy(faces)
    if len(faces) == 0:
        raise _no_surface(ckpt, sdf, level)
    save_mesh(out, verts, faces)
    return f"{out}: {len(verts)} vertices, {len(faces)} faces"


def _no_surface(ckpt: Path, sdf: Any, level: float) -> Exception:
    """The InputError for a field that never crosses ``level`` in its box, with the range it spans."""
    import numpy as np
    import torch

    from taichifield.errors import InputError

    lo, hi = sdf.bbox(1.0)
    axes = [np.linspace(lo[k], hi[k], 24) for k in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).astype(np.float32)
    with torch.no_grad():
        values = _as_numpy(sdf(torch.from_numpy(grid).to(sdf.device))).reshape(-1)
    side = "above" if float(np.min(values)) > level else "below" if float(np.max(values)) < level else "around"
    return InputError(f"{ckpt}: the surface never crosses level {level:g} inside its box (the field is {side} it, "
                      f"{float(np.min(values)):.3g} .. {float(np.max(values)):.3g} on a 24^3 grid); no mesh written")


def _as_numpy(a: Any) -> Any:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else a


@mesh_app.command("sdf")
@cli_command
def mesh_sdf_cmd(
    ckpt: CkptArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output mesh (.ply or .obj), in the input's coordinates.")] = Path("mesh.ply"),
    res: Annotated[int, typer.Option("--res", help="Grid resolution of the marching cubes (narrow band, so 512+ is fine).")] = 512,
    level: Annotated[float, typer.Option("--level", help="Iso-level, in input units.")] = 0.0,
    overwrite: OverwriteOption = False,
    arch: ArchOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Extract the zero level set of a trained SDF as a triangle mesh.

    Example: taichifield mesh sdf runs/bunny/ckpt.pt --res 512 --out bunny.ply
    """
    _mesh_out(out, overwrite)
    start_runtime(arch)
    typer.echo(run_mesh_sdf(ckpt, out, res=res, level=level, quiet=quiet, overwrite=overwrite))


# ----------------------------------------------------------------------------- render sdf


def run_render_sdf(ckpt: Path, out: Path, *, width: int, height: int, azimuth: float, elevation: float) -> str:
    """Sphere-trace the learned surface and write a Lambert-shaded image atomically."""
    from taichifield.images import write_image
    from taichifield.pipelines.sdf import load_sdf

    write_image(out, load_sdf(ckpt).render(width, height, azimuth, elevation))
    return f"{out}: {width}x{height}"


@render_app.command("sdf")
@cli_command
def render_sdf_cmd(
    ckpt: CkptArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output image (.png/.jpg).")] = Path("sdf.png"),
    width: Annotated[int, typer.Option(help="Image width.")] = 512,
    height: Annotated[int, typer.Option(help="Image height.")] = 512,
    azimuth: Annotated[float, typer.Option(help="Camera azimuth about +y, degrees.")] = 30.0,
    elevation: Annotated[float, typer.Option(help="Camera elevation, degrees.")] = 20.0,
    overwrite: OverwriteOption = False,
    arch: ArchOption = "auto",
) -> None:
    """Render a shaded image of a trained SDF by sphere tracing.

    Example: taichifield render sdf runs/bunny/ckpt.pt --out bunny.png --azimuth 45
    """
    from taichifield.errors import InputError

    check_positive(width=width, height=height)
    from taichifield.runfolder import check_output_file

    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise InputError(f"{out}: image output must end in .png or .jpg")
    check_output_file(out, overwrite)
    start_runtime(arch)
    typer.echo(run_render_sdf(ckpt, out, width=width, height=height, azimuth=azimuth, elevation=elevation))


# ----------------------------------------------------------------------------- reconstruct


def run_reconstruct(method: str, points: Path, out: Path, overwrite: bool = False, **options: Any) -> str:
    """Poisson or Hoppe reconstruction of ``points``, written to ``out``."""
    from taichifield.data.points import load_oriented_points
    from taichifield.geometry import baselines
    from taichifield.geometry.mesh_io import save_mesh

    _mesh_out(out, overwrite)
    data = load_oriented_points(points)
    fn = baselines.poisson_reconstruct if method == "poisson" else baselines.hoppe_reconstruct
    verts, faces = fn(data.points, data.normals, **options)
    if len(faces) == 0:
        from taichifield.errors import TaichiFieldError

        raise TaichiFieldError(f"{points}: the {method} reconstruction is empty; nothing to write")
    save_mesh(out, verts, faces)
    return f"{out}: {len(verts)} vertices, {len(faces)} faces"


@reconstruct_app.command("poisson")
@cli_command
def reconstruct_poisson_cmd(
    points: PointsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output mesh (.ply or .obj).")] = Path("poisson.ply"),
    depth: Annotated[int, typer.Option(help="Octree depth.")] = 9,
    trim: Annotated[float, typer.Option(help="Remove vertices below this density quantile (0: none).")] = 0.03,
    overwrite: OverwriteOption = False,
) -> None:
    """Screened Poisson reconstruction (Open3D) with low-density trimming.

    Example: taichifield reconstruct poisson scan.ply --out poisson.ply --depth 9
    """
    start_runtime("cpu")
    typer.echo(run_reconstruct("poisson", points, out, overwrite, depth=depth, trim_quantile=trim))


@reconstruct_app.command("hoppe")
@cli_command
def reconstruct_hoppe_cmd(
    points: PointsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output mesh (.ply or .obj).")] = Path("hoppe.ply"),
    res: Annotated[int, typer.Option("--res", help="Grid vertices along the longest side.")] = 256,
    overwrite: OverwriteOption = False,
    arch: ArchOption = "auto",
) -> None:
    """Hoppe 1992: signed distance to the nearest tangent plane, then Taichi marching cubes.

    Example: taichifield reconstruct hoppe scan.ply --out hoppe.ply --res 256
    """
    start_runtime(arch)
    typer.echo(run_reconstruct("hoppe", points, out, overwrite, resolution=res))
