"""Tiny procedural scenes for tests: the shipped lego generator at a few pixels per view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


def lego_scene(folder: Path, resolution: int, train: int, test: int,
               render: Sequence[str] | None = None) -> str:
    """Write ``folder/scene.json`` (one val view); with ``render``, prepare those splits now
    (else the command that reads the scene renders it on first use). Returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scene.json").write_text(json.dumps(
        {"generator": "lego", "resolution": resolution, "supersample": 1,
         "splits": {"train": train, "val": 1, "test": test}}))
    if render is not None:
        from taichifield.scenes.prepare import prepare_scene

        prepare_scene(folder, splits=list(render))
    return str(folder)
