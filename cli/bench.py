"""``taichifield bench ...``: run the benchmark scripts in the checkout's ``bench/`` folder.

Each benchmark is a script ``bench/<name>.py`` with ``main(argv) -> int`` (so it also runs
as ``python bench/<name>.py``). To add one, write the script and register a command here
that hands its options to :func:`run_bench_script`, like ``encodings`` below.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Annotated

import typer

from .apps import bench_app
from .common import ArchOption, cli_command

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def run_bench_script(name: str, argv: list[str]) -> int:
    """Load ``bench/<name>.py`` from the source checkout and call its ``main(argv)``."""
    from taichifield.errors import InputError

    path = BENCH_DIR / f"{name}.py"
    if not path.is_file():
        raise InputError(f"{path}: benchmark script not found (benchmarks ship with the source checkout: pip install -e . from a clone)")
    spec = importlib.util.spec_from_file_location(f"taichifield_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look the module up there
    spec.loader.exec_module(module)
    saved_argv = sys.argv
    sys.argv = [str(path), *argv]  # scripts whose main() reads sys.argv see the same options
    try:
        try:
            return int(module.main(argv) or 0)
        except TypeError as exc:
            if "positional argument" not in str(exc):
                raise
            return int(module.main() or 0)
    finally:
        sys.argv = saved_argv


@bench_app.command("encodings")
@cli_command
def bench_encodings(
    points: Annotated[int, typer.Option("--points", help="Points per call.")] = 65536,
    log2_sizes: Annotated[str, typer.Option("--log2-sizes", help="Comma-separated log2 hash table sizes.")] = "15,19",
    repeats: Annotated[int, typer.Option("--repeats", help="Timed calls per implementation; the best is kept.")] = 3,
    hashgrid_only: Annotated[bool, typer.Option("--hashgrid-only", help="Skip the frequency and SH rows.")] = False,
    torch_threads: Annotated[int, typer.Option("--torch-threads", help="Threads for the torch reference (0: torch's default; 1 is fairer on a busy machine).")] = 0,
    arch: ArchOption = "auto",
) -> None:
    """Taichi encodings vs their torch references (points/s and ratios, same run, warm kernels).

    Example:

        taichifield bench encodings --log2-sizes 15,19 --repeats 3
    """
    argv = ["--points", str(points), "--log2-sizes", log2_sizes, "--repeats", str(repeats), "--arch", arch,
            "--torch-threads", str(torch_threads)]
    if hashgrid_only:
        argv.append("--hashgrid-only")
    raise typer.Exit(run_bench_script("encodings", argv))


_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

# name -> (script, what it measures, example); the options after the name go to the script
_SCRIPTS = {
    "volume-rendering": ("volume_rendering", "Taichi volume rendering (forward+backward, packed samples) vs the torch reference, samples/s and ratio.", "taichifield bench volume-rendering"),
    "marching-cubes": ("marching_cubes", "Our marching cubes vs skimage, PyMCubes and VTK Flying Edges on the same 256^3 grids: time, ratios, topology.", "taichifield bench marching-cubes"),
    "extract-mesh": ("extract_mesh", "Narrow-band extract_mesh at 256 and 512: time, peak memory, field evaluations, t(512)/t(256).", "taichifield bench extract-mesh"),
    "nerf-cpu": ("nerf_cpu", "Train a scene within a time budget (default the real lego at 100x100; --data names any scene, captures included), then PSNR on its test views (needs ../shared/data).", "taichifield bench nerf-cpu --time-budget 600"),
    "nerf-throughput": ("nerf_throughput", "One NeRF training step at the CLI defaults, per stage (torch.profiler): ms and % per stage, samples/s fwd+bwd; --compare times variants in the same run.", "taichifield bench nerf-throughput --compare threads=1,target=131072"),
    "nerf-render": ("nerf_render", "Render test views of a trained NeRF: the rounds inference path vs the marched-and-culled training path, s/view, same run.", "taichifield bench nerf-render runs/lego --views 4"),
    "capture-poses": ("capture_poses", "Run `taichifield poses` on photos or a video and compare the cameras with a reference COLMAP model after a robust similarity alignment: registered, rotation/centre error, flipped views, rotation jumps.", "taichifield bench capture-poses ../shared/data/captures/beer/images --reference ../shared/data/captures/beer"),
    "neus-cpu": ("neus_cpu", "NeuS vs NeRF on scenes/lego at 200x200, same views and CPU time: exact Chamfer of their meshes (NeRF at its best density threshold), NC, watertight, test PSNR.", "taichifield bench neus-cpu --time-budget 1200"),
    "sdf-quality": ("sdf_quality", "Neural SDF losses/models vs Open3D screened Poisson on 100k bunny points: Chamfer-L1 side by side.", "taichifield bench sdf-quality"),
}


def _register(command: str, script: str, summary: str, example: str) -> None:
    def run(ctx: typer.Context) -> None:
        raise typer.Exit(run_bench_script(script, list(ctx.args)))

    run.__doc__ = f"{summary}\n\nOptions after the name go to bench/{script}.py (try --help).\n\nExample:\n\n    {example}"
    bench_app.command(command, context_settings=_PASSTHROUGH)(cli_command(run))


for _name, (_script, _summary, _example) in _SCRIPTS.items():
    _register(_name, _script, _summary, _example)
