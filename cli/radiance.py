"""What ``train nerf`` and ``train neus`` share: the run folder, first-use scene rendering and the bar.

Both commands build their config (which validates every option), then hand it here with the
library's ``run_train_*`` and a one-line step summary; this module decides where the run goes
(``--out``, ``--resume``, a new timestamped folder), refuses bad views or an occupied folder
before anything is written, and drives the progress bars.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

from .common import Progress, note_run

__all__ = ["SceneBar", "train_run"]


class SceneBar:
    """A progress bar opened on the first callback of first-use scene rendering."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Progress | None = None

    def __call__(self, done: int, total: int, message: str) -> None:
        if self.bar is None:
            self.bar = Progress("rendering scene views", total=total, quiet=self.quiet, unit="view").__enter__()
        self.bar.update(completed=done, info=message)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def train_run(kind: str, config: Any, train: Callable[..., Any], default_run_dir: Callable[[str], Path],
              step_info: Callable[[dict[str, Any]], str], *, scene: Optional[str], out: Optional[Path],
              resume: Optional[Path], overwrite: bool, quiet: bool) -> Any:
    """Run ``train(config, resume=, progress=, scene_progress=)`` in its run folder; its result.

    ``--resume RUN`` continues ``RUN/ckpt.pt`` in place; into another ``--out`` (or from a file
    not named ``ckpt.pt``) it starts a new run there, which must not replace one silently.
    The scene's views are rendered (procedural scenes, first use) and checked for parallax
    before an earlier run is touched.

    Args:
        kind: ``"nerf"`` or ``"neus"`` (the bar's label).
        config: the command's train config (its ``out`` is set here).
        step_info: the bar's text from a step's logged stats.
    """
    from taichifield.runfolder import check_run_folder, claim_new_run, open_run

    resume_ckpt = None if resume is None else (resume if resume.is_file() else resume / "ckpt.pt")
    if out is None and resume_ckpt is not None:
        out = resume_ckpt.parent
    continues = resume_ckpt is not None and os.path.abspath(out / "ckpt.pt") == os.path.abspath(resume_ckpt)  # type: ignore[operator]
    if out is not None and out.exists():
        check_run_folder(out, resume=continues, overwrite=overwrite)  # writes nothing
    scene_bar = SceneBar(quiet)
    if scene is not None:  # first-use rendering of a procedural scene, before the training bar starts
        from taichifield.data import load_scene
        from taichifield.data.loading import check_training_views
        from taichifield.scenes.prepare import prepare_scene

        try:
            prepare_scene(scene, splits=["train", "test"], limits={"test": config.eval_views}, progress=scene_bar)
        finally:
            scene_bar.close()
        check_training_views(load_scene(scene, "train", config.downscale))
    created = None
    if out is None:
        out, created = claim_new_run(default_run_dir(scene or "scene"))
    config.out = str(out)
    label = Path(scene).name if scene else Path(resume).name  # type: ignore[arg-type]
    with open_run(out, resume=continues, overwrite=overwrite, created=created), \
            Progress(f"{kind} [{label}]", total=config.steps, quiet=quiet, unit="step",
                     time_budget=config.time_budget) as bar:
        note_run(out)

        def on_step(step: int, stats: dict[str, Any]) -> None:
            bar.update(completed=step, info=step_info(stats) if stats else None)

        try:
            return train(config, resume=resume, progress=on_step, scene_progress=scene_bar)
        finally:
            scene_bar.close()
