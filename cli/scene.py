"""``taichifield scene from-mesh``: a Blender-format scene with a ground-truth surface, from a mesh."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taichifield.scenes.from_mesh_config import FromMeshConfig

from .apps import scene_app
from .common import ArchOption, OverwriteOption, Progress, QuietOption, cli_command, config_option, start_runtime


@scene_app.command("from-mesh")
@cli_command
def scene_from_mesh_command(
    mesh: Annotated[Path, typer.Argument(help="Triangle mesh (.ply, .obj or .off).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Scene folder to write (refused when not empty, unless --overwrite).")],
    views: Annotated[int, config_option(FromMeshConfig, "views", "--views")] = FromMeshConfig.default("views"),
    test_views: Annotated[int, config_option(FromMeshConfig, "test_views", "--test-views")] = FromMeshConfig.default("test_views"),
    resolution: Annotated[int, config_option(FromMeshConfig, "resolution", "--resolution")] = FromMeshConfig.default("resolution"),
    supersample: Annotated[int, config_option(FromMeshConfig, "supersample", "--supersample")] = FromMeshConfig.default("supersample"),
    overwrite: OverwriteOption = False,
    arch: ArchOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Render a mesh into a NeRF-synthetic folder (views sphere-traced on its exact SDF) with
    gt_mesh.ply (the mesh in scene coordinates) beside it, for Chamfer against reconstructions.

    Example:

        taichifield scene from-mesh bunny.ply --out scenes/bunny --views 100 --resolution 200
    """
    config = FromMeshConfig(views=views, test_views=test_views, resolution=resolution, supersample=supersample)
    start_runtime(arch)
    from taichifield.scenes.from_mesh import scene_from_mesh

    total = views + 2 * test_views
    with Progress(f"scene [{mesh.name}]", total=total, quiet=quiet, unit="view") as bar:
        result = scene_from_mesh(mesh, out, config, overwrite=overwrite,
                                 progress=lambda done, n: bar.update(completed=done))
    counts = ", ".join(f"{n} {split}" for split, n in result.views.items())
    typer.echo(f"scene: {result.n_faces} faces scaled by {result.scale:.4g}, {counts} views at "
               f"{resolution}x{resolution} -> {result.folder}/ (gt_mesh.ply)")
