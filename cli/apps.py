"""The Typer app and its command groups. Domain modules register commands on these."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="taichifield",
    help="Differentiable Taichi kernels for neural fields: NeRF, neural SDFs, hash grids, marching cubes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
train_app = typer.Typer(help="Train a field: an image (encoding comparison), a NeRF from posed views, or an SDF from points.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate: NeRF PSNR/SSIM on held-out views; mesh Chamfer/F-score/normal consistency against a reference.", no_args_is_help=True)
render_app = typer.Typer(help="Render images and videos: NeRF novel views and orbits, sphere-traced SDFs.", no_args_is_help=True)
mesh_app = typer.Typer(help="Extract meshes with Taichi marching cubes: from an SDF checkpoint or a NeRF's density.", no_args_is_help=True)
reconstruct_app = typer.Typer(help="Classical surface reconstruction baselines from point clouds (Poisson, Hoppe).", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: Taichi kernels against reference implementations, same run, as ratios.", no_args_is_help=True)
scene_app = typer.Typer(help="Make scenes with a ground-truth surface: Blender-format views of a mesh, for Chamfer benchmarks.", no_args_is_help=True)

app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(render_app, name="render")
app.add_typer(mesh_app, name="mesh")
app.add_typer(reconstruct_app, name="reconstruct")
app.add_typer(bench_app, name="bench")
app.add_typer(scene_app, name="scene")
