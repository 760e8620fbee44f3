"""Neural SDF quality vs Open3D screened Poisson on the same oriented points, exact distances.

100k oriented points are sampled (area-uniform, face normals) from the Stanford bunny
(``../shared/data/meshes/bunny.off``); each selected model/loss trains for
``--time-budget`` seconds on this machine, is meshed with our narrow-band marching cubes
at each ``--res`` (default 256^3 and 512^3: depth-9 Poisson's octree is 512 cells
across), and is compared with the GT mesh by :func:`taichifield.geometry.metrics.mesh_metrics`:
exact point-to-triangle distances (no sampling floor: the GT against itself scores 0),
symmetric Chamfer-L1 and Hausdorff-95 divided by the GT bounding-box diagonal, F-score at
0.5% and 1% of the diagonal, normal consistency, and the older sample-to-sample Chamfer
(``sampled``, labelled; its floor is the GT row). Open3D screened Poisson at each
``--depths`` (default 9 and 10, 3% low-density trimming) runs on the same points. The
ratio column is ``exact Chamfer / exact Chamfer(Poisson at the first depth)`` (issue 16
goal: <= 0.8 for the default model). ``weld ok``: watertight with two faces per edge after
welding coincident vertices.

Usage::

    python bench/sdf_quality.py                       # default model + Poisson d9/d10, 300 s, res 256 and 512
    python bench/sdf_quality.py --all                 # every loss/model pair
    python bench/sdf_quality.py --quick               # 30 s, 20k points, res 128, depths 8: a smoke run
    python bench/sdf_quality.py --runs relu:igr,siren:siren --time-budget 120 --res 256
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "meshes" / "bunny.off"
ALL_RUNS = ["hashgrid:igr", "relu:igr", "relu:deepsdf", "relu:occupancy", "siren:siren", "siren:igr"]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", type=Path, default=DATA, help="GT mesh (default: the shared Stanford bunny)")
    ap.add_argument("--input", type=Path, default=None,
                    help="points to reconstruct from (e.g. the raw scans' bun.conf: normals estimated and oriented "
                         "once, and both methods get those same normals); default: --points samples of --mesh")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--time-budget", type=float, default=300.0, help="seconds of training per model")
    ap.add_argument("--res", type=_ints, default=[256, 512], help="comma-separated marching-cubes resolutions")
    ap.add_argument("--runs", default="hashgrid:igr", help="comma-separated model:loss pairs (default: the default model)")
    ap.add_argument("--all", action="store_true", help="every model/loss pair: " + ",".join(ALL_RUNS))
    ap.add_argument("--quick", action="store_true", help="30 s budget, 20k points, res 128, Poisson depth 8")
    ap.add_argument("--depths", type=_ints, default=[9, 10], help="comma-separated Poisson octree depths")
    ap.add_argument("--samples", type=int, default=200_000, help="surface samples per mesh for the metrics")
    ap.add_argument("--out", type=Path, default=Path("bench_out/sdf_quality"))
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: on a busy shared 2-core machine 2 threads were much slower)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override an SDFTrainConfig field (repeatable), e.g. --set surface_weight=10; printed with the result")
    ap.add_argument("--reuse", action="store_true", help="mesh existing OUT/<model>_<loss>/ckpt.pt instead of training")
    args = ap.parse_args()
    if args.quick:
        args.time_budget, args.points, args.res, args.depths = 30.0, 20_000, [128], [8]
    if not args.mesh.exists():
        print(f"GT mesh {args.mesh} is absent (the shared data folder is not here): nothing to measure.")
        return 0

    import torch

    import taichifield as tf
    from taichifield.data.points import load_oriented_points
    from taichifield.geometry.baselines import poisson_reconstruct
    from taichifield.geometry.extract import extract_mesh
    from taichifield.geometry.mesh_io import load_mesh, save_mesh
    from taichifield.geometry.metrics import mesh_metrics, welded_watertight
    from taichifield.train.checkpoint import load_checkpoint
    from taichifield.train.sdf import SDFTrainConfig, load_sdf, train_sdf

    tf.init("cpu")
    torch.set_num_threads(args.threads)
    gt_v, gt_f = load_mesh(args.mesh)
    data = load_oriented_points(args.input or args.mesh, n_samples=args.points, seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    pts_file = args.out / "points.npy"
    np.save(pts_file, np.concatenate([data.points, data.normals], axis=1))
    source = f"from {args.input}" if args.input else "sampled from it"
    print(f"GT {args.mesh.name}: {len(gt_v)} vertices; {len(data.points)} oriented points {source}; "
          f"budget {args.time_budget:.0f} s/model; meshes at {args.res}; Poisson depths {args.depths}; "
          f"torch threads {torch.get_num_threads()}")

    def score(method: str, v: np.ndarray, f: np.ndarray, **extra: float) -> dict:
        row = {"method": method, "steps": 0, "train_s": 0.0, "mesh_s": 0.0, **extra,
               "faces": int(len(f)), "weld_ok": welded_watertight(f, v)}
        row.update(mesh_metrics(v, f, gt_v, gt_f, n_samples=args.samples, seed=0))
        return row

    rows = [score("GT itself", gt_v, gt_f)]
    for depth in args.depths:
        t0 = time.perf_counter()
        pv, pf = poisson_reconstruct(data.points, data.normals, depth=depth)
        rows.append(score(f"poisson depth {depth}", pv, pf, train_s=time.perf_counter() - t0))
        save_mesh(args.out / f"poisson_d{depth}.ply", pv, pf)
        _print_row(rows[-1], rows[1])
    ref = rows[1]

    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)  # numbers, true/false, lists, dicts
        except json.JSONDecodeError:
            overrides[key] = value
    if overrides:
        print("changed from the CLI defaults:", ", ".join(f"{k}={v}" for k, v in overrides.items()))
    runs = ALL_RUNS if args.all else [r for r in args.runs.split(",") if r]
    for run in runs:
        model, loss = run.split(":")
        run_dir = args.out / f"{model}_{loss}"
        if args.reuse and (run_dir / "ckpt.pt").exists():
            sdf = load_sdf(run_dir)
            steps = sdf.step
            train_s = float(load_checkpoint(run_dir / "ckpt.pt", "sdf")["meta"].get("train_seconds", float("nan")))
        else:
            cfg = SDFTrainConfig(model=model, loss=loss, steps=10**7, time_budget=args.time_budget, **overrides)
            result = train_sdf(pts_file, run_dir, cfg)
            sdf = load_sdf(run_dir)
            steps, train_s = result.step, result.seconds
        for res in args.res:
            t1 = time.perf_counter()
            with torch.no_grad():
                v, f = extract_mesh(sdf, res, sdf.bbox(1.0))
            mesh_s = time.perf_counter() - t1
            save_mesh(run_dir / f"mesh_{res}.ply", v, f)
            method = f"{model}:{loss} @{res}"
            if len(f):
                rows.append(score(method, v, f, steps=steps, train_s=train_s, mesh_s=mesh_s))
            else:
                rows.append({"method": method, "steps": steps, "train_s": train_s, "mesh_s": mesh_s, "faces": 0,
                             "weld_ok": False, **mesh_metrics(v, f, gt_v, gt_f, n_samples=1, seed=0)})
            _print_row(rows[-1], ref)

    print(f"\nexact = point-to-triangle distances / GT bbox diagonal; sampled = nearest-sample Chamfer / diagonal "
          f"(floored: see the GT row); ratio vs {ref['method']}")
    print(f"{'method':<26}{'steps':>7}{'train s':>9}{'mesh s':>8}{'faces':>9}{'Chamfer':>11}{'ratio':>7}"
          f"{'Haus-95':>11}{'F@0.5%':>8}{'F@1%':>7}{'NC':>7}{'sampled':>10}{'weld ok':>8}")
    for r in rows:
        print(f"{r['method']:<26}{r['steps']:>7}{r['train_s']:>9.1f}{r['mesh_s']:>8.1f}{r['faces']:>9}"
              f"{r['chamfer_l1_rel']:>11.3e}{r['chamfer_l1_rel'] / ref['chamfer_l1_rel']:>6.2f}x"
              f"{r['hausdorff95_rel']:>11.3e}{r['fscore@0.5%']:>8.3f}{r['fscore@1%']:>7.3f}"
              f"{r['normal_consistency']:>7.3f}{r['sampled_chamfer_l1_rel']:>10.5f}{str(r['weld_ok']):>8}")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


def _print_row(row: dict, ref: dict) -> None:
    print(f"  {row['method']}: exact Chamfer-L1 {row['chamfer_l1_rel']:.3e} ({row['chamfer_l1_rel'] / ref['chamfer_l1_rel']:.2f}x "
          f"{ref['method']}), Hausdorff-95 {row['hausdorff95_rel']:.3e}, F@0.5% {row['fscore@0.5%']:.3f}, "
          f"NC {row['normal_consistency']:.3f}, sampled {row['sampled_chamfer_l1_rel']:.5f}; "
          f"{row['steps']} steps in {row['train_s']:.1f} s, mesh {row['mesh_s']:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
