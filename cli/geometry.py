"""Geometry commands: ``eval mesh`` (exact Chamfer-L1, Hausdorff-95, F-scores, normal consistency).

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
    """The metrics as a few labelled lines: each distance in mesh units and / the GT diagonal."""

    def dist(key: str) -> str:
        return f"{m[key]:.6g} ({m[key + '_rel']:.4g})"

    fs = "  ".join(f"F@{k} {m['fscore@' + k]:.4f} (precision {m['precision@' + k]:.4f}, recall {m['recall@' + k]:.4f})"
                   for k in ("0.5%", "1%"))
    return "\n".join([
        f"{m['pred']} vs {m['gt']} ({m['n_samples']} samples per mesh; distances in mesh units, "
        f"in brackets / GT bbox diagonal {m['diag']:.6g})",
        f"  exact point-to-triangle: Chamfer-L1 {dist('chamfer_l1')}  accuracy (pred->gt) {dist('accuracy')}  "
        f"completeness (gt->pred) {dist('completeness')}",
        f"  exact point-to-triangle: Hausdorff-95 {dist('hausdorff95')}  {fs}",
        f"  normal consistency {m['normal_consistency']:.4f}",
        f"  sampled (nearest sample, has a sampling floor): Chamfer-L1 {dist('sampled_chamfer_l1')}",
    ])


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
    """Compare a mesh to a reference with exact point-to-triangle distances: symmetric
    Chamfer-L1, Hausdorff-95, F-score at 0.5% and 1% of the reference's bounding-box
    diagonal, normal consistency (and the older sampled Chamfer, labelled).

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

        mesh_error_picture(*load_mesh(pred), *load_mesh(gt), grid, tau=float(m["tau@1%"]))
    typer.echo(json.dumps(m) if as_json else format_metrics(m) + (f"; grid -> {grid}" if grid else ""))
