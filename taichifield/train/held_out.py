"""The views of a radiance-field run, shared by the NeRF and NeuS trainers.

:func:`training_views` prepares the scene (a procedural one renders the splits the run uses)
and puts its training split on the device, refusing views without parallax.
:class:`ProgressView` writes ``RUN/progress/step_XXXXX.png`` with each checkpoint (test view 0
next to its ground truth, up to :data:`~taichifield.train.configs.PROGRESS_WIDTH` px wide) and
returns its PSNR for ``curves.png``; :func:`held_out_psnr` is the mean PSNR of the first test
views at the end of a run (``metrics.json``). The renderers are callables: each trainer says
how its model draws a view.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import InputError
from ..images import write_image
from .configs import PROGRESS_WIDTH

__all__ = ["ProgressView", "held_out_psnr", "training_views"]

log = logging.getLogger(__name__)

RenderFn = Callable[[Any, int], list[torch.Tensor]]
"""``(views, i) -> images``: (H, W, 3) float renders of view ``i``; the first is scored."""


def training_views(scene: str, downscale: int, eval_views: int, device: torch.device,
                   progress: Callable[[int, int, str], None] | None = None) -> Any:
    """The training split of ``scene`` on ``device`` (:class:`~taichifield.data.views.Views`).

    Prepares the training split and, when ``eval_views`` > 0, that many test views (the
    progress picture and the final held-out PSNR use them).

    Raises:
        InputError: an unreadable scene, or training views without parallax
            (:func:`~taichifield.data.loading.check_training_views`).
    """
    from ..data import load_scene
    from ..data.loading import check_training_views
    from ..scenes.prepare import prepare_scene

    prepare_scene(scene, splits=["train", "test"] if eval_views else ["train"], limits={"test": eval_views},
                  progress=progress)
    views = load_scene(scene, "train", downscale)
    check_training_views(views)
    return views.to(device)


class ProgressView:
    """Test view 0 of ``scene`` next to its ground truth, as training goes.

    Args:
        scene: the scene folder.
        downscale: the training views' downscale.
        folder: where ``step_XXXXX.png`` go (``RUN/progress``).
        train_width: the training views' width in pixels (the picture is at most PROGRESS_WIDTH wide).
    """

    def __init__(self, scene: str, downscale: int, folder: Path, train_width: int) -> None:
        self.scene, self.folder = scene, folder
        self.downscale = downscale * max(1, math.ceil(train_width / PROGRESS_WIDTH))
        self.views: Any = None
        self.failed = False

    @torch.no_grad()
    def write(self, step: int, render: RenderFn) -> float | None:
        """Write ``step_XXXXX.png`` (ground truth | the renders); returns the first render's PSNR
        (None without a test split)."""
        from ..data import load_scene
        from ..metrics.image import psnr_images

        if self.failed:
            return None
        if self.views is None:
            try:
                self.views = load_scene(self.scene, "test", self.downscale)
            except InputError as exc:  # e.g. a capture without a test split
                log.warning("no progress images: %s", exc)
                self.failed = True
                return None
        images = [img.cpu() for img in render(self.views, 0)]
        gt = self.views.rgb((1.0, 1.0, 1.0), index=0).reshape(images[0].shape).cpu()
        write_image(self.folder / f"step_{step:05d}.png", torch.cat([gt, *images], dim=1))
        return psnr_images(images[0], gt)


@torch.no_grad()
def held_out_psnr(scene: str, downscale: int, n_views: int, render: RenderFn) -> float:
    """Mean PSNR over the first ``n_views`` test views on white (NaN, logged, without a test split)."""
    from ..data import load_scene
    from ..metrics.image import psnr_images

    try:
        test = load_scene(scene, "test", downscale)
    except InputError as exc:
        log.warning("no test split for metrics: %s", exc)
        return float("nan")
    vals = [psnr_images(render(test, i)[0].cpu(), test.rgb((1.0, 1.0, 1.0), index=i).cpu())
            for i in range(min(n_views, len(test)))]
    return sum(vals) / max(len(vals), 1)
