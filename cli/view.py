"""``taichifield view``: the Open3D viewer (Open3D is imported only when the command runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .apps import app
from .common import check_positive, cli_command

_KEYS = (
    "Mouse: left-drag rotate; Ctrl+left-drag or middle-drag pan; Shift+left-drag roll; wheel zoom.\n\n"
    "Keys: R reset view; [ ] field of view; + - point size; N point normals; S flat/smooth shading; "
    "W wireframe; B back faces; L lighting; P save a screenshot; H help in the terminal; Q or Esc quit."
)


@app.command("view", help=f"""Open meshes, point clouds, checkpoints and scenes together in an Open3D window.

Meshes (.ply/.obj/.off) are shaded with normals; point clouds (.ply without faces, .xyz, .npy, .npz) show their normals as colours; an SDF checkpoint shows its extracted mesh (cached next to it); a NeRF checkpoint shows its occupied cells, scene box and cameras; a scene folder shows its training cameras as frusta and the scene box.

{_KEYS}

Headless: --screenshot OUT.png renders the same view off-screen (a private Xvfb is started when there is no DISPLAY).

Example: taichifield view runs/bunny/mesh.ply bunny_points.ply --screenshot shot.png""")
@cli_command
def view_command(
    paths: Annotated[list[Path], typer.Argument(help="Meshes, point clouds, checkpoints (.pt) or scene folders.")],
    screenshot: Annotated[Optional[Path], typer.Option("--screenshot", help="Write the view to this PNG instead of opening a window.")] = None,
    width: Annotated[int, typer.Option(help="Window / picture width in pixels.")] = 1024,
    height: Annotated[int, typer.Option(help="Window / picture height in pixels.")] = 768,
    sdf_res: Annotated[int, typer.Option("--sdf-res", help="Marching-cubes resolution for SDF checkpoints.")] = 256,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --screenshot file instead of refusing.")] = False,
) -> None:
    check_positive(width=width, height=height, sdf_res=sdf_res)
    if screenshot is not None:
        from taichifield.runfolder import check_output_file

        check_output_file(screenshot, overwrite, "--screenshot")
    from taichifield.viewer import view

    out = view(paths, screenshot=screenshot, width=width, height=height, sdf_resolution=sdf_res)
    if out is not None:
        typer.echo(f"wrote {out} ({width}x{height}, {len(paths)} input(s))")
