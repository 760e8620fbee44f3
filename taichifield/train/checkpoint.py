"""Checkpoints are data, not code: a versioned schema loaded with ``weights_only=True``.

Schema (a plain dict of primitives and tensors)::

    {
      "format": "taichifield",
      "version": 2,                 # FORMAT_VERSION; newer versions are refused, older ones read
      "kind": "nerf" | "sdf" | "image" | "neus",
      "config": {...},              # JSON-able dict (dataclasses.asdict of the run config)
      "state": {name: tensor},      # the model's state_dict (NeRF: field.* and grid.*)
      "optimizer": {...} | None,    # optimizer.state_dict()
      "rng": {...} | None,          # torch CPU RNG, the CUDA generators, the trainer's own generators
      "step": int,
      "meta": {...},                # free-form JSON-able info (metrics, input normalisation)
    }

Version history: 2 adds the CUDA generators to ``rng`` and the guard's ``lr_scale`` to the
NeRF trainer's meta (version 1 stored the backed-off ``base_lr``); both are read.

``torch.load(..., weights_only=True)`` only rebuilds tensors and primitive
containers, so a crafted pickle cannot run code. Writes are atomic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..errors import CheckpointError

__all__ = ["FORMAT_VERSION", "save_checkpoint", "load_checkpoint"]

FORMAT_VERSION = 2
KINDS = ("nerf", "sdf", "image", "neus")


def save_checkpoint(
    path: str | os.PathLike[str],
    kind: str,
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    *,
    optimizer: dict[str, Any] | None = None,
    rng: dict[str, Any] | None = None,
    step: int = 0,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Atomically write a checkpoint; returns the path. Tensors are moved to the CPU."""
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    payload = {
        "format": "taichifield",
        "version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "state": {k: v.detach().cpu() for k, v in state.items()},
        "optimizer": optimizer,
        "rng": rng,
        "step": int(step),
        "meta": meta or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """Load and validate a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the ``ckpt.pt`` file (a run folder containing ``ckpt.pt`` is accepted).
        kind: the expected kind; a checkpoint of another kind is refused.

    Raises:
        CheckpointError: missing file, not a checkpoint, unsafe pickle content,
            wrong kind, or a format version newer than this taichifield.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "ckpt.pt"
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint file")
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(f"{p}: not a loadable taichifield checkpoint (not a torch checkpoint file at all)")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling error, truncated zip, not a torch file at all
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p}: not a loadable taichifield checkpoint ({first[:160]})") from None
    if not isinstance(data, dict) or data.get("format") != "taichifield":
        raise CheckpointError(f"{p}: not a taichifield checkpoint")
    version = data.get("version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{p}: checkpoint has no valid format version")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint format version {version} is newer than this taichifield supports ({FORMAT_VERSION}); upgrade taichifield"
        )
    if kind is not None and data.get("kind") != kind:
        raise CheckpointError(f"{p}: this is a {data.get('kind')!r} checkpoint, expected {kind!r}")
    if not isinstance(data.get("state"), dict) or not isinstance(data.get("config"), dict):
        raise CheckpointError(f"{p}: checkpoint is missing its config or state")
    return data
