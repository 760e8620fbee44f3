"""What a trained radiance model is, for NeRF and NeuS alike: a field, its occupancy grid, and
the settings they were trained with (nerfacc's field + estimator).

:class:`GridModel` is an ``nn.Module``: ``.to(device)`` moves the field and the grid together
and ``state_dict()`` is what the checkpoint stores (``field.*`` and ``grid.*``). Subclasses
(:class:`~taichifield.pipelines.nerf.NerfModel`, :class:`~taichifield.pipelines.neus.NeuSModel`)
say how to build a fresh model and how to render.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, TypeVar

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = ["GridModel"]

M = TypeVar("M", bound="GridModel")


class GridModel(nn.Module):
    """Field + occupancy grid + the render settings they were trained with.

    Args:
        field: the field (an ``nn.Module`` with an ``aabb`` buffer).
        grid: its occupancy grid (over the field's box).
        config: the checkpoint's config ``{"model": ..., "train": ..., "scene": ...}``.
        meta: render settings (``step_size``, ``near``, ``far``, ``eval_background``, ...).
        step: training steps done.
    """

    def __init__(self, field: nn.Module, grid: nn.Module, config: dict[str, Any] | None = None,
                 meta: dict[str, Any] | None = None, step: int = 0) -> None:
        super().__init__()
        self.field = field
        self.grid = grid
        self.config = config or {}
        self.meta = meta or {}
        self.step = step

    @classmethod
    def build(cls: type[M], model: Any, aabb: torch.Tensor, grid_resolution: int,
              device: torch.device | None = None, **kwargs: Any) -> M:
        raise NotImplementedError

    @classmethod
    def _from_checkpoint(cls: type[M], path: str | os.PathLike[str], device: torch.device | None, kind: str,
                         label: str, config_cls: Any, after: Optional[Callable[[M, dict[str, Any]], None]] = None) -> M:
        """Rebuild a model from a ``kind`` checkpoint (``torch.load(weights_only=True)``, any
        format version): its config's model, its box (``field.aabb``), its grid resolution
        (128 when a version-1 checkpoint did not store one), its weights; ``after(model, ckpt)``
        restores anything else. In eval mode.

        Raises:
            CheckpointError: missing/invalid file, another kind, or weights that do not fit the
                checkpoint's config (one line naming ``path``).
        """
        from ..train.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path, kind=kind)
        try:
            cfg, state = ckpt["config"], ckpt["state"]
            model = cls.build(config_cls.from_dict(cfg["model"]), state["field.aabb"],
                              int(cfg["train"].get("grid_resolution") or 128), device,
                              config=cfg, meta=ckpt["meta"], step=int(ckpt["step"]))
            model.load_state_dict(state)
            if after is not None:
                after(model, ckpt)
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            detail = " ".join(str(exc).split())[:120]
            raise CheckpointError(f"{path}: {label} checkpoint does not match its config "
                                  f"({type(exc).__name__}: {detail})") from None
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        return model.eval()

    @property
    def device(self) -> torch.device:
        return self.grid.device  # type: ignore[return-value]

    @property
    def bbox(self) -> torch.Tensor:
        """(2, 3) scene box ``[min, max]`` of the field."""
        return self.field.aabb  # type: ignore[return-value]

    @property
    def step_size(self) -> float:
        return float(self.meta["step_size"])

    @property
    def background(self) -> tuple[float, float, float]:
        return tuple(self.meta.get("eval_background", (1.0, 1.0, 1.0)))  # type: ignore[return-value]
