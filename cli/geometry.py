"""Geometry commands: ``eval mesh`` (Chamfer-L1, F-score, normal consistency).

Only option parsing here; :func:`run_eval_mesh` imports the library when called, so
``taichifield --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .apps import eval_app
from .common import cli_command

MeshArg = Annotated[Path, typer.Argument(help="Mesh file: .ply (ascii or binary), .obj or .off.")]


def run_eval_mesh(pred: Path, gt: Path, *, samples: int = 200_000, seed: int = 0) -> dict[str, Any]:
    """Load both meshes and compare them; returns the metrics dict (with the file names)."""
    from taichifield.geometry.mesh_io import load_mesh
    from taichifield.geometry.metrics import mesh_metrics

    pv, pf = load_mesh(pred)
    gv, gf = load_mesh(gt)
    metrics = mesh_metrics(pv, pf, gv, gf, n_samples=samples, seed=seed, pred_name=str(pred), gt_name=str(gt))
    return {"pred": str(pred), "gt": str(gt), **metrics}


def format_metrics(m: dict[str, Any]) -> str:
    return (f"chamfer_l1 {m['chamfer_l1']:.6f}  fscore@1% {m['fscore']:.4f} "
            f"(precision {m['precision']:.4f}, recall {m['recall']:.4f})  "
            f"normal_consistency {m['normal_consistency']:.4f}  [{m['pred']} vs {m['gt']}]")


@eval_app.command("mesh")
@cli_command
def eval_mesh_cmd(
    pred: MeshArg,
    gt: MeshArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON object.")] = False,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Surface samples per mesh.")] = 200_000,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    grid: Annotated[Optional[Path], typer.Option("--grid", help="Also write a PNG: the reference | the prediction coloured by its distance to it (red >= 2% of the diagonal). Needs a display or Xvfb.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --grid picture instead of refusing.")] = False,
) -> None:
    """Compare a mesh to a reference: Chamfer-L1 and F-score at 1% of the reference's
    bounding-box diagonal, and normal consistency.

    Example: taichifield eval mesh runs/bunny/mesh.ply data/bunny.off --json --grid errors.png
    """
    from taichifield.errors import InputError

    from taichifield.runfolder import check_output_file

    if grid is not None and grid.suffix.lower() != ".png":
        raise InputError(f"{grid}: --grid must be a .png file")
    if grid is not None:
        check_output_file(grid, overwrite, "--grid")
    m = run_eval_mesh(pred, gt, samples=samples, seed=seed)
    if grid is not None:
        from taichifield.geometry.mesh_io import load_mesh
        from taichifield.viewer import mesh_error_picture

        mesh_error_picture(*load_mesh(pred), *load_mesh(gt), grid, tau=float(m["tau"]))
    typer.echo(json.dumps(m) if as_json else format_metrics(m) + (f"; grid -> {grid}" if grid else ""))
