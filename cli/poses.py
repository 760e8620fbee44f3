"""``taichifield poses``: camera poses of your own photos or video (structure from motion, pycolmap)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from taichifield.capture.sfm import PosesConfig

from .apps import app
from .common import Progress, QuietOption, SeedOption, cli_command, config_option


class _StageBars:
    """One progress bar per pipeline stage, opened on the stage's first callback."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.stage: Optional[str] = None
        self.bar: Optional[Progress] = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            unit = {"frames": "frame", "features": "image", "mapping": "image", "re-mapping": "image"}.get(stage, "step")
            self.bar = Progress(stage, total=total, quiet=self.quiet, unit=unit).__enter__()
        assert self.bar is not None
        self.bar.update(completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@app.command("poses")
@cli_command
def poses_command(
    source: Annotated[Path, typer.Argument(help="A folder of photos, or a video file (mp4, mov, ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Scene folder: images/, database.db, sparse/0, transforms.json, points3D.ply.")],
    frames: Annotated[Optional[int], config_option(PosesConfig, "frames", "--frames")] = PosesConfig.default("frames"),
    every: Annotated[Optional[int], config_option(PosesConfig, "every", "--every")] = PosesConfig.default("every"),
    matcher: Annotated[str, config_option(PosesConfig, "matcher", "--matcher")] = PosesConfig.default("matcher"),
    camera_model: Annotated[str, config_option(PosesConfig, "camera_model", "--camera-model")] = PosesConfig.default("camera_model"),
    single_camera: Annotated[bool, config_option(PosesConfig, "single_camera", "--single-camera/--camera-per-image")] = PosesConfig.default("single_camera"),
    max_image_size: Annotated[int, config_option(PosesConfig, "max_image_size", "--max-image-size")] = PosesConfig.default("max_image_size"),
    max_features: Annotated[int, config_option(PosesConfig, "max_features", "--max-features")] = PosesConfig.default("max_features"),
    threads: Annotated[int, config_option(PosesConfig, "threads", "--threads")] = PosesConfig.default("threads"),
    unflip: Annotated[bool, config_option(PosesConfig, "unflip", "--unflip/--no-unflip")] = PosesConfig.default("unflip"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the earlier poses in --out (its images/, database.db, sparse/, transforms.json, points3D.ply) instead of refusing or resuming.")] = False,
    seed: SeedOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Recover camera poses with COLMAP's SIFT, matching and incremental mapping (pycolmap, CPU).

    Writes SCENE/transforms.json (instant-ngp format: OpenGL poses, OPENCV distortion, per-frame
    sharpness, the normalisation to capture coordinates), SCENE/sparse/0 and SCENE/points3D.ply;
    an interrupted run resumes from SCENE/database.db. Then: taichifield train nerf SCENE.

    Examples:

        taichifield poses photos/ --out scenes/mine

        taichifield poses walk.mp4 --frames 120 --out scenes/walk
    """
    config = PosesConfig(frames=frames, every=every, matcher=matcher, camera_model=camera_model,
                         single_camera=single_camera, max_image_size=max_image_size, max_features=max_features,
                         threads=threads, seed=seed, unflip=unflip)
    from taichifield.capture.sfm import check_poses_out, require_pycolmap, run_poses

    check_poses_out(out, overwrite, source)  # refused before anything is written
    require_pycolmap()
    bars = _StageBars(quiet)
    try:
        result: Any = run_poses(source, out, config, overwrite=overwrite, progress=bars)
    finally:
        bars.close()
    typer.echo(("resumed; " if result.resumed else "") + result.summary())
