"""Benchmark: camera poses recovered by ``taichifield poses`` against a reference model.

Runs ``taichifield poses`` on a folder of photos (or a video) unless ``--scene`` names a
finished run, then compares the recovered cameras with a reference COLMAP model (e.g. the
capture author's own run) after a similarity alignment (:mod:`taichifield.metrics.poses`):
images registered / given, reprojection error, rotation and camera-centre agreement, and the
images whose rotation is off by more than 5 degrees (listed: a symmetric object can flip
some views by ~180 degrees about the object's axis).

    python bench/capture_poses.py INPUT --reference MODEL_DIR [--out DIR] [--matcher M]
    python bench/capture_poses.py --scene DONE_SCENE --reference MODEL_DIR

``INPUT``: the photos folder or video given to ``taichifield poses``; ``MODEL_DIR``: a folder with
``sparse/0`` (or the model files themselves). With a video, frame names differ from the
reference's photo names, so only images of the same name are compared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", type=Path, help="photos folder or video (omit with --scene)")
    ap.add_argument("--reference", type=Path, required=True, help="reference COLMAP model folder")
    ap.add_argument("--scene", type=Path, default=None, help="a finished `taichifield poses` output to score")
    ap.add_argument("--out", type=Path, default=None, help="output scene folder (default runs/bench-poses-<time>)")
    ap.add_argument("--matcher", default=None, help="exhaustive, sequential or auto (default: the CLI's)")
    args = ap.parse_args()

    import json

    from taichifield.capture.sfm import PosesConfig, run_poses
    from taichifield.data.colmap import read_model
    from taichifield.data.colmap_scene import model_frames
    from taichifield.errors import InputError
    from taichifield.metrics.poses import pose_agreement, rotation_jumps

    try:
        ref_names, ref_c2w = model_frames(read_model(args.reference))
        if args.scene is None:
            if args.input is None:
                print("give INPUT (photos or video) or --scene", file=sys.stderr)
                return 2
            out = args.out or Path("runs") / time.strftime("bench-poses-%Y%m%d-%H%M%S")
            config = PosesConfig() if args.matcher is None else PosesConfig(matcher=args.matcher)
            changed = "none" if args.matcher is None else f"--matcher {args.matcher}"
            print(f"poses: {args.input} -> {out}; changed from the CLI defaults: {changed}; "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)
            result = run_poses(args.input, out, config)
            print(result.summary())
            scene = out
        else:
            scene = args.scene
            report = json.loads((scene / "transforms.json").read_text()).get("poses", {})
            print(f"{scene}: {report}")
        names, c2w = model_frames(read_model(scene))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        agreement = pose_agreement(names, c2w, ref_names, ref_c2w)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"against {args.reference} ({len(ref_names)} images): {agreement.summary()}")
    off = [f"{n} ({r:.0f} deg)" for n, r in zip(agreement.names, agreement.rotation_deg) if r > 5.0]
    if off:
        print("off by > 5 deg: " + ", ".join(off))
    for label, (n, m) in (("recovered", (names, c2w)), ("reference", (ref_names, ref_c2w))):
        jumps = rotation_jumps(n, m)
        shown = ", ".join(f"{a}->{b} {d:.0f} deg" for a, b, d in jumps[:8]) + (" ..." if len(jumps) > 8 else "")
        print(f"{label}: {len(jumps)} jumps > 90 deg between consecutive images{': ' + shown if jumps else ''}")
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
