"""A trained neural SDF as one object: the field and the normalisation of its input.

:class:`SDFModel` is an ``nn.Module`` (``.to(device)`` moves the field and its centre) and a
callable in the input's coordinates, the ``sdf_fn`` that :func:`~taichifield.geometry.extract.extract_mesh`,
:func:`~taichifield.render.sphere_trace.sphere_trace` and the renderers take. Queries must be
on the model's device (:attr:`SDFModel.device`); results come back there, nothing is moved.

Example:
    >>> sdf = SDFModel.load("runs/bunny/ckpt.pt")          # on runtime.device()
    >>> values = sdf(torch.tensor([[0.0, 0.1, 0.0]], device=sdf.device))   # input units
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import runtime
from ..data.points import Normalization
from ..errors import CheckpointError, DeviceError
from ..fields.sdf import SDFField, build_sdf_field

__all__ = ["SDFModel", "load_sdf", "field_device"]


def field_device(model: str) -> torch.device:
    """Device for a field: the Taichi kernels' device when the model runs Taichi kernels
    (the hash grid; starts Taichi with arch auto if nothing started it), else the current
    runtime's device, else the CPU."""
    if model == "hashgrid":
        runtime.ensure_init()
    return runtime.device() if runtime.is_initialized() else torch.device("cpu")


class SDFModel(nn.Module):
    """A trained field plus its normalisation.

    ``sdf(x)`` maps (M, 3) input-coordinate points to (M,) signed distances in input units
    (the network value times ``scale``); ``gradient(x)`` gives (M, 3) unit-free gradients.
    Both take and return tensors on :attr:`device`.

    Args:
        field: the network, trained in the normalised cube ``[-1, 1]^3`` (its train/eval mode
            is left as given; :meth:`load` returns it in eval mode).
        normalization: input -> cube (``(x - center) / scale``).
        config: the checkpoint's config. step: training steps done.
    """

    def __init__(self, field: SDFField, normalization: Normalization, config: dict[str, Any] | None = None,
                 step: int = 0) -> None:
        super().__init__()
        self.field = field
        self.normalization = normalization
        self.config = config or {}
        self.step = step
        device = next(field.parameters()).device
        self.register_buffer("center", torch.as_tensor(normalization.center, dtype=torch.float32).to(device),
                             persistent=False)
        self.scale = float(normalization.scale)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "SDFModel":
        """Load ``RUN/ckpt.pt`` (or ``RUN``) written by :func:`taichifield.train.sdf.train_sdf`.

        Raises:
            CheckpointError: not an SDF checkpoint, or one whose weights do not fit its config.
        """
        from ..train.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path, "sdf")
        cfg = ckpt["config"]
        try:
            full = dict(cfg.get("model_config") or {"model": cfg["model"], **cfg.get("model_options", {})})
            field = build_sdf_field(full.pop("model"), **full)  # the saved architecture wins over today's defaults
            field.load_state_dict(ckpt["state"])
            field.to(field_device(field.name))
            norm = Normalization.from_dict(ckpt["meta"]["normalization"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: SDF checkpoint does not match its config ({str(exc).splitlines()[0][:120]})") from None
        return cls(field.eval(), norm, cfg, int(ckpt["step"]))

    @property
    def device(self) -> torch.device:
        """Where the field's weights live (CUDA for a hash grid under arch cuda)."""
        return self.center.device

    def bbox(self, margin: float = 1.0) -> np.ndarray:
        """(2, 3) box of the training cube ``[-margin, margin]^3`` in input coordinates."""
        cube = np.array([[-margin] * 3, [margin] * 3])
        return self.normalization.to_input(cube)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """(M, 3) input coordinates -> the training cube."""
        return (x - self.center) / self.scale

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if not runtime.same_device(x.device, self.device):
            raise DeviceError(f"SDFModel: query points are on {x.device}, the model on {self.device}; "
                              f"move them (x.to(sdf.device)) or the model (sdf.to(device))")
        return x.float()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(M, 3) points on :attr:`device` -> (M,) signed distances in input units."""
        return self.field(self.to_unit(self._check(x))) * self.scale

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """(M, 3) points on :attr:`device` -> (M, 3) gradients of the field (unit-free)."""
        _, g = self.field.value_and_gradient(self.to_unit(self._check(x)), create_graph=False)
        return g.detach()


    def render(self, width: int = 512, height: int = 512, azimuth: float = 30.0, elevation: float = 20.0) -> np.ndarray:
        """A sphere-traced, Lambert-shaded picture of the surface, (H, W, 3) uint8, from a camera
        orbiting the training cube's middle (:func:`taichifield.render.shade.render_sdf`)."""
        from ..render.shade import render_sdf

        bb = self.bbox(0.85)  # the data fills [-0.8, 0.8]^3 of the training cube
        center = bb.mean(axis=0)
        radius = float(np.linalg.norm(bb[1] - bb[0]) / 2)
        was_training = self.field.training
        self.field.eval()
        try:
            return render_sdf(self, self.gradient, center, radius, width=width, height=height,
                              azimuth=azimuth, elevation=elevation, device=self.device)
        finally:
            self.field.train(was_training)


def load_sdf(path: str | os.PathLike[str]) -> SDFModel:
    """:meth:`SDFModel.load`."""
    return SDFModel.load(path)
