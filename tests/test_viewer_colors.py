"""The viewer shows a mesh's own vertex colours (PLY/OBJ) and a uniform colour otherwise (no display needed)."""

from __future__ import annotations

import numpy as np
import pytest

from taichifield.geometry.mesh_io import save_mesh
from taichifield.viewer import load_geometries

V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int64)
C = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_viewer_uses_vertex_colours(tmp_path, suffix: str) -> None:
    save_mesh(tmp_path / f"c{suffix}", V, F, vertex_colors=C)
    save_mesh(tmp_path / f"p{suffix}", V, F)
    coloured, plain = load_geometries([tmp_path / f"c{suffix}", tmp_path / f"p{suffix}"])
    assert np.allclose(np.asarray(coloured.vertex_colors), C)
    grey = np.asarray(plain.vertex_colors)
    assert np.allclose(grey, grey[0]) and len(grey) == 4  # one uniform palette colour
