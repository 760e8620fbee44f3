"""Neural SDF quality vs Open3D screened Poisson on the same oriented points.

100k oriented points are sampled (area-uniform, face normals) from the Stanford bunny
(``../shared/data/meshes/bunny.off``); each selected model/loss trains for
``--time-budget`` seconds on this machine, is meshed at ``--res``^3 with our narrow-band
marching cubes, and is compared with the GT mesh: Chamfer-L1 normalised by the GT
bounding-box diagonal, F-score at 1% of the diagonal, normal consistency
(:func:`taichifield.geometry.metrics.mesh_metrics`). Open3D screened Poisson (depth 9,
3% low-density trimming) runs on the same points. Printed side by side, with the
ratio ``Chamfer / Chamfer(Poisson)`` (goal: <= 1 for the default).

Two reference columns: the first row is the GT mesh scored against itself, the floor of
this sample-to-sample Chamfer (about 0.00108 on the bunny with 200k samples: two
independent sample sets of one surface are that far apart), and ``p2m`` is the Chamfer-L1
from each mesh's samples to the other mesh's triangles (Open3D ``RaycastingScene``), which
has no sampling floor and separates methods the sample Chamfer cannot.

Usage::

    python bench/sdf_quality.py                       # default model + Poisson, 300 s
    python bench/sdf_quality.py --all                 # every loss/model pair
    python bench/sdf_quality.py --quick               # 30 s, 5k points... a smoke run
    python bench/sdf_quality.py --runs relu:igr,siren:siren --time-budget 120
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", type=Path, default=DATA, help="GT mesh (default: the shared Stanford bunny)")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--time-budget", type=float, default=300.0, help="seconds of training per model")
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--runs", default="hashgrid:igr", help="comma-separated model:loss pairs (default: the default model)")
    ap.add_argument("--all", action="store_true", help="every model/loss pair: " + ",".join(ALL_RUNS))
    ap.add_argument("--quick", action="store_true", help="30 s budget, 20k points, res 128")
    ap.add_argument("--depth", type=int, default=9, help="Poisson octree depth")
    ap.add_argument("--out", type=Path, default=Path("bench_out/sdf_quality"))
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: on a busy shared 2-core machine 2 threads were much slower)")
    ap.add_argument("--reuse", action="store_true", help="mesh existing OUT/<model>_<loss>/ckpt.pt instead of training")
    args = ap.parse_args()
    if args.quick:
        args.time_budget, args.points, args.res = 30.0, 20_000, 128
    if not args.mesh.exists():
        print(f"GT mesh {args.mesh} is absent (the shared data folder is not here): nothing to measure.")
        return 0

    import torch

    import taichifield as tf
    from taichifield.data.points import load_oriented_points
    from taichifield.geometry.baselines import poisson_reconstruct
    from taichifield.geometry.extract import extract_mesh
    from taichifield.geometry.mesh_io import load_mesh, save_mesh
    from taichifield.geometry.metrics import mesh_metrics
    from taichifield.train.checkpoint import load_checkpoint
    from taichifield.train.sdf import SDFTrainConfig, load_sdf, train_sdf

    tf.init("cpu")
    torch.set_num_threads(args.threads)
    gt_v, gt_f = load_mesh(args.mesh)
    data = load_oriented_points(args.mesh, n_samples=args.points, seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    pts_file = args.out / "points.npy"
    np.save(pts_file, np.concatenate([data.points, data.normals], axis=1))
    print(f"GT {args.mesh.name}: {len(gt_v)} vertices; {len(data.points)} oriented points; "
          f"budget {args.time_budget:.0f} s/model; mesh {args.res}^3; torch threads {torch.get_num_threads()}")

    rows = [{"method": "GT itself (floor)", "steps": 0, "train_s": 0.0, "mesh_s": 0.0,
             **mesh_metrics(gt_v, gt_f, gt_v, gt_f, seed=0), "p2m": _point_to_mesh(gt_v, gt_f, gt_v, gt_f)}]
    t0 = time.perf_counter()
    pv, pf = poisson_reconstruct(data.points, data.normals, depth=args.depth)
    rows.append({"method": f"poisson depth {args.depth}", "steps": 0, "train_s": time.perf_counter() - t0, "mesh_s": 0.0,
                 **mesh_metrics(pv, pf, gt_v, gt_f, seed=0), "p2m": _point_to_mesh(pv, pf, gt_v, gt_f)})
    save_mesh(args.out / "poisson.ply", pv, pf)
    ref = rows[1]
    _print_row(rows[-1], ref)

    runs = ALL_RUNS if args.all else [r for r in args.runs.split(",") if r]
    for run in runs:
        model, loss = run.split(":")
        run_dir = args.out / f"{model}_{loss}"
        if args.reuse and (run_dir / "ckpt.pt").exists():
            sdf = load_sdf(run_dir)
            steps = sdf.step
            train_s = float(load_checkpoint(run_dir / "ckpt.pt", "sdf")["meta"].get("train_seconds", float("nan")))
        else:
            cfg = SDFTrainConfig(model=model, loss=loss, steps=10**7, time_budget=args.time_budget)
            result = train_sdf(pts_file, run_dir, cfg)
            sdf = load_sdf(run_dir)
            steps, train_s = result.step, result.seconds
        t1 = time.perf_counter()
        with torch.no_grad():
            v, f = extract_mesh(sdf, args.res, sdf.bbox(1.0))
        mesh_s = time.perf_counter() - t1
        save_mesh(run_dir / "mesh.ply", v, f)
        metrics = mesh_metrics(v, f, gt_v, gt_f, seed=0) if len(f) else {"chamfer_l1": float("nan")}
        metrics["p2m"] = _point_to_mesh(v, f, gt_v, gt_f) if len(f) else float("nan")
        rows.append({"method": f"{model}:{loss}", "steps": steps, "train_s": train_s, "mesh_s": mesh_s, **metrics})
        _print_row(rows[-1], ref)

    print()
    print(f"{'method':<22}{'steps':>7}{'train s':>9}{'mesh s':>8}{'Chamfer-L1':>12}{'vs Poisson':>11}{'F@1%':>7}{'NC':>7}"
          f"{'p2m':>10}{'vs Poisson':>11}")
    for r in rows:
        print(f"{r['method']:<22}{r['steps']:>7}{r['train_s']:>9.1f}{r['mesh_s']:>8.1f}{r['chamfer_l1']:>12.5f}"
              f"{r['chamfer_l1'] / ref['chamfer_l1']:>10.2f}x{r.get('fscore', float('nan')):>7.3f}"
              f"{r.get('normal_consistency', float('nan')):>7.3f}{r['p2m']:>10.6f}{r['p2m'] / ref['p2m']:>10.2f}x")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


def _point_to_mesh(pred_v: np.ndarray, pred_f: np.ndarray, gt_v: np.ndarray, gt_f: np.ndarray,
                   n: int = 200_000, seed: int = 0) -> float:
    """Symmetric point-to-triangle Chamfer-L1 / GT bbox diagonal (no sampling floor)."""
    import open3d as o3d

    from taichifield.geometry.metrics import sample_surface

    def distance(v: np.ndarray, f: np.ndarray, q: np.ndarray) -> np.ndarray:
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(np.asarray(v, np.float32)), o3d.core.Tensor(np.asarray(f, np.uint32)))
        return scene.compute_distance(o3d.core.Tensor(q.astype(np.float32))).numpy()

    rng = np.random.default_rng(seed)
    gp, _ = sample_surface(gt_v, gt_f, n, rng)
    pp, _ = sample_surface(pred_v, pred_f, n, rng)
    diag = float(np.linalg.norm(np.asarray(gt_v).max(0) - np.asarray(gt_v).min(0)))
    return float((distance(gt_v, gt_f, pp).mean() + distance(pred_v, pred_f, gp).mean()) / 2 / diag)


def _print_row(row: dict, ref: dict) -> None:
    print(f"  {row['method']}: Chamfer-L1 {row['chamfer_l1']:.5f} ({row['chamfer_l1'] / ref['chamfer_l1']:.2f}x Poisson), "
          f"p2m {row['p2m']:.6f} ({row['p2m'] / ref['p2m']:.2f}x), "
          f"{row['steps']} steps in {row['train_s']:.1f} s, mesh {row['mesh_s']:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
