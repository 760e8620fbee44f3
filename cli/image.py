"""``taichifield train image``: fit a small MLP to a photo with a chosen input encoding."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .apps import train_app
from .common import ArchOption, Progress, QuietOption, SeedOption, cli_command, note_run, start_runtime


@train_app.command("image")
@cli_command
def train_image_command(
    photo: Annotated[Path, typer.Argument(help="Image to fit (PNG, JPEG, ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: ckpt.pt, reconstruction.png, metrics.json.")],
    encoding: Annotated[str, typer.Option("--encoding", "-e", help="Input encoding: hashgrid, fourier, frequency or none.")] = "hashgrid",
    steps: Annotated[int, typer.Option("--steps", help="Adam steps.")] = 1000,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (default: 1e-2 for hashgrid, 2e-3 otherwise).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Random pixels per step (all pixels if the image has fewer).")] = 1 << 14,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run in --out (ckpt.pt, reconstruction, metrics, curves) instead of refusing.")] = False,
    arch: ArchOption = "auto",
    seed: SeedOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Fit an image with an encoding + MLP (the classic encoding comparison); print the PSNR.

    Example:

        taichifield train image photo.png --encoding hashgrid --steps 1000 --out runs/photo_hash
    """
    from taichifield.fields.image import ENCODINGS, ImageFieldConfig
    from taichifield.errors import InputError

    if encoding not in ENCODINGS:
        raise InputError(f"--encoding {encoding!r}: choose one of {', '.join(ENCODINGS)}")
    chosen = start_runtime(arch, seed)
    from taichifield.runfolder import check_run_folder, open_run
    from taichifield.train.curves import History, write_run_curves
    from taichifield.train.image import ImageTrainConfig, load_image, train_image

    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, not {batch_size}")
    check_run_folder(out, resume=False, overwrite=overwrite, can_resume=False)  # writes nothing
    load_image(photo)  # a bad image is refused before an earlier run is touched
    config = ImageTrainConfig(photo=str(photo), out=str(out), steps=steps, lr=lr, seed=seed, batch_size=batch_size,
                              field=ImageFieldConfig(encoding=encoding))
    history = History(every=max(1, steps // 500))
    with open_run(out, overwrite=overwrite, can_resume=False), \
            Progress(f"image [{encoding}]", total=steps, quiet=quiet, unit="step") as bar:
        note_run(out)

        def on_step(step: int, stats: dict[str, float]) -> None:
            history.record(step, stats)
            info = f"psnr {stats['psnr']:.2f} dB" if "psnr" in stats else None
            bar.update(1, info=info)

        result = train_image(config, on_step=on_step)
        write_run_curves(out, history, title=f"image [{encoding}]")
    stopped = "" if result.metrics.get("stopped", "steps") == "steps" else f" (stopped early: {result.metrics['stopped']})"
    typer.echo(
        f"image: {encoding} on {chosen}, {result.steps} steps in {result.seconds:.1f} s{stopped}, "
        f"PSNR {result.psnr:.2f} dB -> {result.reconstruction}"
    )
