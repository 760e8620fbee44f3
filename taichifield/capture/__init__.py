"""Your own captures: photos or a video in, camera poses out (``taichifield poses``).

* :mod:`.frames`: photos from a folder, or the sharpest frames of a video (variance of Laplacian);
* :mod:`.sfm`: ``taichifield poses`` from frames to the exported scene;
* :mod:`.mapping`: SIFT, matching and incremental mapping with pycolmap (imported lazily, only there),
  run in a child process without torch (:mod:`.child`);
* :mod:`.export`: ``transforms.json`` (instant-ngp format, normalised) and ``points3D.ply``.

Importing this package imports neither pycolmap nor torch.
"""

from __future__ import annotations

from .sfm import PosesConfig, PosesResult, run_poses

__all__ = ["PosesConfig", "PosesResult", "run_poses"]
