"""``taichifield train image``: fit a small MLP to a photo with a chosen input encoding."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from taichifield.fields.configs import ImageFieldConfig
from taichifield.train.configs import ImageTrainConfig

from .apps import train_app
from .common import ArchOption, Progress, QuietOption, SeedOption, cli_command, config_option, note_run, start_runtime


@train_app.command("image")
@cli_command
def train_image_command(
    photo: Annotated[Path, typer.Argument(help="Image to fit (PNG, JPEG, ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: ckpt.pt, reconstruction.png, metrics.json.")],
    encoding: Annotated[str, config_option(ImageFieldConfig, "encoding", "--encoding", "-e", note="(hashgrid, fourier, frequency, none)")] = ImageFieldConfig.default("encoding"),
    steps: Annotated[int, config_option(ImageTrainConfig, "steps", "--steps")] = ImageTrainConfig.default("steps"),
    lr: Annotated[Optional[float], config_option(ImageTrainConfig, "lr", "--lr")] = ImageTrainConfig.default("lr"),
    batch_size: Annotated[int, config_option(ImageTrainConfig, "batch_size", "--batch-size")] = ImageTrainConfig.default("batch_size"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run in --out (ckpt.pt, reconstruction, metrics, curves) instead of refusing.")] = False,
    arch: ArchOption = "auto",
    seed: SeedOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Fit an image with an encoding + MLP (the classic encoding comparison); print the PSNR.

    Example:

        taichifield train image photo.png --encoding hashgrid --steps 1000 --out runs/photo_hash
    """
    # the configs validate every option (one-line errors) before anything is written
    config = ImageTrainConfig(photo=str(photo), out=str(out), steps=steps, lr=lr, seed=seed, batch_size=batch_size,
                              field=ImageFieldConfig(encoding=encoding))
    chosen = start_runtime(arch, seed)
    from taichifield.runfolder import check_run_folder, open_run
    from taichifield.train.image import load_image, train_image

    check_run_folder(out, resume=False, overwrite=overwrite, can_resume=False)  # writes nothing
    load_image(photo)  # a bad image is refused before an earlier run is touched
    with open_run(out, overwrite=overwrite, can_resume=False), \
            Progress(f"image [{encoding}]", total=steps, quiet=quiet, unit="step") as bar:
        note_run(out)

        def on_step(step: int, stats: dict[str, float]) -> None:
            info = f"psnr {stats['psnr']:.2f} dB" if "psnr" in stats else None
            bar.update(1, info=info)

        result = train_image(config, on_step=on_step)
    stopped = "" if result.metrics.get("stopped", "steps") == "steps" else f" (stopped early: {result.metrics['stopped']})"
    typer.echo(
        f"image: {encoding} on {chosen}, {result.steps} steps in {result.seconds:.1f} s{stopped}, "
        f"PSNR {result.psnr:.2f} dB -> {result.reconstruction}"
    )
