"""Benchmark: NeuS vs NeRF meshes of the procedural lego, CPU, same views, same wall-clock budget.

Issue 14's goal ``bench neus-cpu``. The repository's procedural ``scenes/lego`` (analytic SDF,
views rendered on first use) is trained at ``--downscale 2`` (200x200) for ``--time-budget``
seconds (1200: 20 CPU-minutes) by NeuS (``NeuSTrainConfig()``, as ``taichifield train neus``
does) and then by a NeRF (``NerfTrainConfig()``, as ``taichifield train nerf``) on the same
training views. Each is meshed at ``--res`` (256): NeuS by its zero level set
(:func:`taichifield.pipelines.neus_eval.mesh_neus`, the library end of ``mesh neus``), the
NeRF by density thresholds (:func:`taichifield.pipelines.nerf_eval.mesh_nerf`, ``mesh nerf
--threshold T``) at every ``--thresholds`` value, all printed, the best by exact Chamfer kept.
Meshes are scored against the scene's ground-truth mesh
(:func:`taichifield.scenes.prepare.lego_gt_mesh`, marching cubes of the analytic SDF) by
:func:`taichifield.geometry.metrics.mesh_metrics`: exact Chamfer-L1 and Hausdorff-95 as
fractions of the GT bounding-box diagonal, F@0.5%/1%, normal consistency, and ``weld ok``
(:func:`~taichifield.geometry.metrics.welded_watertight`). Test PSNR of both models on the
first ``--n-test`` (20) test views comes from ``evaluate_neus`` / ``evaluate_nerf``.

Goals (issue 14): Chamfer(NeuS) <= 0.4x Chamfer(NeRF at its best threshold), NeuS normal
consistency >= 0.95, NeuS mesh watertight, NeuS test PSNR within 1 dB of the NeRF's.

    python bench/neus_cpu.py [--time-budget 1200] [--res 256] [--n-test 20] [--only neus|nerf]
                             [--thresholds 2,5,10,20,50,100] [--steps N] [--set neus.KEY=VALUE]
                             [--out DIR] [--reuse] [--overwrite] [--json]

Everything not given is the CLI default; every changed setting is printed next to the result
(``--downscale 2`` and ``eval_views=0``, the test views being scored here instead, are the
benchmark's own). ``--reuse`` re-meshes and re-scores the checkpoints already in
``OUT/neus`` and ``OUT/nerf``. Exits with status 2 when the scene is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENE = ROOT / "scenes" / "lego"
METHODS = ("neus", "nerf")
GOALS = {"chamfer_ratio": 0.4, "normal_consistency": 0.95, "psnr_gap_db": 1.0}


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """``--set neus.eikonal_weight=0.05 --set nerf.model.log2_table_size=17`` -> per-method overrides."""
    out: dict[str, dict[str, Any]] = {m: {} for m in METHODS}
    for item in items:
        key, sep, value = item.partition("=")
        method, _, name = key.partition(".")
        if not sep or method not in METHODS or not name:
            raise SystemExit(f"error: --set {item!r}: expected neus.KEY=VALUE or nerf.KEY=VALUE (KEY may be model.X)")
        try:
            out[method][name] = json.loads(value)
        except json.JSONDecodeError:
            out[method][name] = value
    return out


def _train_config(method: str, scene: str, run_dir: Path, args: argparse.Namespace,
                  sets: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The method's train config at the CLI defaults plus the benchmark's settings and ``--set``;
    returns (config, the settings that differ from the CLI defaults)."""
    from taichifield.fields.configs import NerfConfig, NeuSConfig
    from taichifield.train.configs import NerfTrainConfig, NeuSTrainConfig

    train_cls, model_cls = (NeuSTrainConfig, NeuSConfig) if method == "neus" else (NerfTrainConfig, NerfConfig)
    model_sets = {k[len("model."):]: v for k, v in sets.items() if k.startswith("model.")}
    train_sets = {k: v for k, v in sets.items() if not k.startswith("model.")}
    known = {f.name for f in dc_fields(train_cls)} - {"scene", "out", "model"}
    model_known = {f.name for f in dc_fields(model_cls)}
    for name in train_sets:
        if name not in known:
            raise SystemExit(f"error: --set {method}.{name}: not a {train_cls.__name__} field")
    for name in model_sets:
        if name not in model_known:
            raise SystemExit(f"error: --set {method}.model.{name}: not a {model_cls.__name__} field")
    changes: dict[str, Any] = {"downscale": args.downscale, "eval_views": 0, "time_budget": args.time_budget,
                               "seed": args.seed}
    if args.steps is not None:
        changes["steps"] = args.steps
    changes.update(train_sets)
    config = train_cls(scene=scene, out=str(run_dir), model=model_cls(**model_sets), **changes)
    default, default_model = train_cls(scene=""), model_cls()
    changed = {k: v for k, v in changes.items() if k not in ("time_budget", "seed") and v != getattr(default, k)}
    changed.update({f"model.{k}": v for k, v in model_sets.items() if v != getattr(default_model, k)})
    return config, changed


def _train(method: str, config: Any, t0: float) -> dict[str, Any]:
    from taichifield.train.nerf import run_train_nerf
    from taichifield.train.neus import run_train_neus

    last = [time.monotonic()]

    def progress(step: int, stats: dict[str, float]) -> None:
        now = time.monotonic()
        if stats and now - last[0] >= 60:
            last[0] = now
            extra = f"  inv_s {stats['inv_s']:.0f}" if "inv_s" in stats else ""
            print(f"  {now - t0:6.0f} s  {method} step {step:6d}  train PSNR {stats['psnr']:5.2f} dB  "
                  f"{int(stats['rays'])} rays{extra}", flush=True)

    run = run_train_neus if method == "neus" else run_train_nerf
    result = run(config, progress=progress)
    return {"steps": result.step, "train_s": round(result.seconds, 1), "train_psnr": round(result.train_psnr, 2)}


def _reused(run_dir: Path) -> dict[str, Any]:
    try:
        m = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        m = {}
    return {"steps": m.get("steps", 0), "train_s": m.get("train_seconds", float("nan")),
            "train_psnr": m.get("train_psnr", float("nan"))}


def _score(label: str, v: np.ndarray, f: np.ndarray, gt: tuple[np.ndarray, np.ndarray], samples: int,
           **extra: Any) -> dict[str, Any]:
    from taichifield.geometry.metrics import mesh_metrics, welded_watertight

    row: dict[str, Any] = {"method": label, **extra, "faces": int(len(f)), "weld_ok": welded_watertight(f, v)}
    v64 = np.asarray(v, np.float64)
    row["bbox"] = [v64.min(0).round(3).tolist(), v64.max(0).round(3).tolist()] if len(f) else None
    row.update(mesh_metrics(v, f, gt[0], gt[1], n_samples=samples, seed=0))
    return row


def _mesh_rows(method: str, run_dir: Path, args: argparse.Namespace, gt: tuple[np.ndarray, np.ndarray],
               info: dict[str, Any]) -> list[dict[str, Any]]:
    """Mesh one run at ``--res`` (NeRF: once per threshold) and score each mesh against the GT."""
    from taichifield.errors import InputError
    from taichifield.geometry.mesh_io import load_mesh
    from taichifield.pipelines.nerf_eval import mesh_nerf
    from taichifield.pipelines.neus_eval import mesh_neus

    ckpt = run_dir / "ckpt.pt"
    jobs = [("neus", None)] if method == "neus" else [("nerf", t) for t in args.thresholds]
    rows = []
    for label, threshold in jobs:
        name = f"mesh_{args.res}.ply" if threshold is None else f"mesh_{args.res}_t{threshold:g}.ply"
        t1 = time.perf_counter()
        try:
            if threshold is None:
                mesh_neus(ckpt, run_dir / name, resolution=args.res)
            else:
                mesh_nerf(ckpt, run_dir / name, resolution=args.res, threshold=threshold)
            v, f = load_mesh(run_dir / name)
        except InputError as exc:  # no surface at this level
            print(f"  {label}: {exc}", flush=True)
            v, f = np.zeros((0, 3)), np.zeros((0, 3), np.int64)
        mesh_s = round(time.perf_counter() - t1, 1)
        text = label if threshold is None else f"nerf sigma={threshold:g}"
        rows.append(_score(text, v, f, gt, args.samples, threshold=threshold, mesh_s=mesh_s, **info))
        _print_row(rows[-1])
    return rows


def _psnr(method: str, run_dir: Path, scene: str, args: argparse.Namespace) -> dict[str, Any]:
    from taichifield.pipelines.nerf_eval import evaluate_nerf
    from taichifield.pipelines.neus_eval import evaluate_neus

    t1 = time.perf_counter()
    evaluate = evaluate_neus if method == "neus" else evaluate_nerf
    ev = evaluate(run_dir / "ckpt.pt", scene, "test", downscale=args.downscale, limit=args.n_test)
    return {"test_psnr": round(ev.psnr, 2), "test_ssim": round(ev.ssim, 4), "test_views": ev.n_views,
            "eval_s": round(time.perf_counter() - t1, 1)}


def _print_row(r: dict[str, Any]) -> None:
    box = "empty" if r["bbox"] is None else f"bbox {r['bbox'][0]} .. {r['bbox'][1]}"
    print(f"  {r['method']}: exact Chamfer-L1 {r['chamfer_l1_rel']:.3e}, Hausdorff-95 {r['hausdorff95_rel']:.3e}, "
          f"F@1% {r['fscore@1%']:.3f}, NC {r['normal_consistency']:.3f}, weld ok {r['weld_ok']}, "
          f"{r['faces']} faces, mesh {r['mesh_s']:.1f} s; {box}", flush=True)


def _table(rows: list[dict[str, Any]], ref: dict[str, Any] | None) -> None:
    has_ref = ref is not None and 0 < ref["chamfer_l1_rel"] < float("inf")
    ref_text = f"ratio = Chamfer / Chamfer({ref['method']})" if has_ref else "ratio: no NeRF mesh to compare with"
    print(f"\nChamfer, Hausdorff-95: exact point-to-triangle distances / GT bbox diagonal; {ref_text}")
    print(f"{'method':<18}{'steps':>7}{'train s':>9}{'faces':>9}{'Chamfer':>11}{'ratio':>8}{'Haus-95':>11}"
          f"{'F@0.5%':>8}{'F@1%':>7}{'NC':>7}{'weld ok':>8}{'PSNR':>8}")
    for r in rows:
        ratio = f"{r['chamfer_l1_rel'] / ref['chamfer_l1_rel']:>7.2f}x" if ref and 0 < ref["chamfer_l1_rel"] < float("inf") else f"{'-':>8}"
        psnr = f"{r['test_psnr']:>8.2f}" if r.get("test_psnr") is not None else f"{'-':>8}"
        print(f"{r['method']:<18}{r.get('steps', 0):>7}{r.get('train_s', 0.0):>9.1f}{r['faces']:>9}"
              f"{r['chamfer_l1_rel']:>11.3e}{ratio}{r['hausdorff95_rel']:>11.3e}{r['fscore@0.5%']:>8.3f}"
              f"{r['fscore@1%']:>7.3f}{r['normal_consistency']:>7.3f}{str(r['weld_ok']):>8}{psnr}")


def _verdict(neus: dict[str, Any] | None, nerf: dict[str, Any] | None) -> dict[str, Any]:
    """The issue's four goals, each True/False (None when a side is missing)."""
    out: dict[str, Any] = {}
    if neus is not None:
        out["normal_consistency_ok"] = neus["normal_consistency"] >= GOALS["normal_consistency"]
        out["watertight_ok"] = bool(neus["weld_ok"])
    if neus is not None and nerf is not None:
        ref = nerf["chamfer_l1_rel"]  # inf: the NeRF has no surface at any threshold (no reference)
        ratio = neus["chamfer_l1_rel"] / ref if 0 < ref < float("inf") else None
        out["chamfer_ratio"] = None if ratio is None else round(ratio, 3)
        out["chamfer_ok"] = ratio is not None and ratio <= GOALS["chamfer_ratio"]
        out["psnr_gap_db"] = round(neus["test_psnr"] - nerf["test_psnr"], 2)
        out["psnr_ok"] = out["psnr_gap_db"] >= -GOALS["psnr_gap_db"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, default=DEFAULT_SCENE, help="procedural lego scene folder (default scenes/lego)")
    ap.add_argument("--time-budget", type=float, default=1200.0, help="training seconds per method (default 1200)")
    ap.add_argument("--downscale", type=int, default=2, help="image downscale (default 2: 200x200)")
    ap.add_argument("--n-test", type=int, default=20, help="test views scored for PSNR (default 20)")
    ap.add_argument("--res", type=int, default=256, help="marching-cubes resolution of both meshes (default 256)")
    ap.add_argument("--thresholds", type=_floats, default=[2, 5, 10, 20, 50, 100],
                    help="comma-separated NeRF density thresholds (default 2,5,10,20,50,100)")
    ap.add_argument("--only", choices=METHODS, default=None, help="train/score one method only")
    ap.add_argument("--steps", type=int, default=None, help="total steps of both schedules (CLI default: 20000)")
    ap.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                    help="override a train config field, e.g. --set neus.eikonal_weight=0.05 or "
                         "--set nerf.model.log2_table_size=17 (repeatable; printed with the result)")
    ap.add_argument("--gt-res", type=int, default=None, help="GT mesh marching-cubes resolution (default: scene.json's, 256)")
    ap.add_argument("--samples", type=int, default=200_000, help="surface samples per mesh for the metrics")
    ap.add_argument("--arch", default="cpu", help="Taichi arch (default cpu)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="bench folder: OUT/neus, OUT/nerf run folders (default runs/bench-neus-cpu-<time>)")
    ap.add_argument("--reuse", action="store_true", help="re-mesh and re-score the checkpoints in OUT instead of training")
    ap.add_argument("--overwrite", action="store_true", help="replace runs already in OUT")
    ap.add_argument("--json", action="store_true", help="also print the summary as JSON")
    args = ap.parse_args(argv)
    sets = _parse_sets(args.set)

    if not (args.scene / "scene.json").is_file():
        print(f"neus_cpu: no procedural scene at {args.scene} (expected its scene.json; the checkout's scenes/lego). "
              "Nothing was measured.")
        return 2
    out = args.out or Path(f"runs/bench-neus-cpu-{time.strftime('%Y%m%d-%H%M%S')}")
    methods = [args.only] if args.only else list(METHODS)
    if args.reuse:
        missing = [str(out / m / "ckpt.pt") for m in methods if not (out / m / "ckpt.pt").is_file()]
        if missing:
            print(f"neus_cpu: --reuse but no checkpoint at {', '.join(missing)}. Nothing was measured.")
            return 2

    from taichifield import runtime
    from taichifield.errors import TaichiFieldError
    from taichifield.runfolder import check_run_folder, clear_run
    from taichifield.scenes.prepare import lego_gt_mesh, prepare_scene

    arch = runtime.init(args.arch, random_seed=args.seed)
    import torch

    scene = str(args.scene)
    t0 = time.monotonic()
    try:
        configs = {m: _train_config(m, scene, out / m, args, sets[m]) for m in methods}
        if not args.reuse:
            for m in methods:
                check_run_folder(out / m, resume=False, overwrite=args.overwrite)
        prepare_scene(scene, splits=["train", "test"], limits={"test": args.n_test})
        gv, gf = (x.numpy() for x in lego_gt_mesh(scene, args.gt_res))
    except TaichiFieldError as exc:
        print(f"error: {exc}")
        return 1
    gt = (np.asarray(gv, np.float64), np.asarray(gf, np.int64))
    load0 = os.getloadavg()[0]
    print(f"neus_cpu: {args.scene.name} at 1/{args.downscale}, arch {arch}, {torch.get_num_threads()} torch threads, "
          f"budget {args.time_budget:.0f} s per method, meshes at {args.res}^3, {args.n_test} test views, "
          f"load average {load0:.1f}; GT mesh {len(gf)} faces, bbox {gt[0].min(0).round(3).tolist()} .. "
          f"{gt[0].max(0).round(3).tolist()}", flush=True)
    for m in methods:
        changed = configs[m][1]
        print(f"  {m}: changed from the CLI defaults: " + (", ".join(f"{k}={v}" for k, v in changed.items()) or "none"))

    rows: list[dict[str, Any]] = []
    best: dict[str, dict[str, Any]] = {}
    for m in methods:
        config, changed = configs[m]
        run_dir = out / m
        if args.reuse:
            info = _reused(run_dir)
        else:
            if args.overwrite and run_dir.is_dir():
                clear_run(run_dir)
            print(f"neus_cpu: training {m} for {args.time_budget:.0f} s -> {run_dir}", flush=True)
            info = _train(m, config, t0)
        info.update(_psnr(m, run_dir, scene, args))
        print(f"  {m}: {info['steps']} steps in {info['train_s']:.0f} s, test PSNR {info['test_psnr']:.2f} dB over "
              f"{info['test_views']} views", flush=True)
        m_rows = _mesh_rows(m, run_dir, args, gt, {**info, "changed_from_cli_defaults": changed})
        rows.extend(m_rows)
        best[m] = min(m_rows, key=lambda r: r["chamfer_l1_rel"])

    ref = best.get("nerf")
    _table(rows, ref)
    verdict = _verdict(best.get("neus"), ref)
    load1 = os.getloadavg()[0]
    summary = {"scene": scene, "downscale": args.downscale, "arch": arch, "time_budget_s": args.time_budget,
               "res": args.res, "n_test": args.n_test, "thresholds": args.thresholds, "goals": GOALS,
               "best_nerf_threshold": ref["threshold"] if ref else None, "verdict": verdict,
               "load_average_start": load0, "load_average_end": load1, "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(summary, indent=1) + "\n")
    if ref:
        print(f"\nNeRF's best threshold: sigma = {ref['threshold']:g}")
    if verdict:
        parts = []
        if "chamfer_ratio" in verdict and verdict["chamfer_ratio"] is None:
            parts.append("Chamfer NeuS/NeRF: no NeRF mesh at any threshold, no reference (goal NOT met)")
        elif "chamfer_ratio" in verdict:
            parts.append(f"Chamfer NeuS/NeRF {verdict['chamfer_ratio']:.2f}x (goal <= {GOALS['chamfer_ratio']}: "
                         f"{'met' if verdict['chamfer_ok'] else 'NOT met'})")
        parts.append(f"NC {best['neus']['normal_consistency']:.3f} (goal >= {GOALS['normal_consistency']}: "
                     f"{'met' if verdict['normal_consistency_ok'] else 'NOT met'})")
        parts.append(f"watertight {'yes' if verdict['watertight_ok'] else 'NO'}")
        if "psnr_gap_db" in verdict:
            parts.append(f"PSNR NeuS - NeRF {verdict['psnr_gap_db']:+.2f} dB (goal >= -{GOALS['psnr_gap_db']:g}: "
                         f"{'met' if verdict['psnr_ok'] else 'NOT met'})")
        print("neus_cpu: " + "; ".join(parts))
    for m in methods:
        print(f"  {m}: changed from the CLI defaults: "
              + (", ".join(f"{k}={v}" for k, v in configs[m][1].items()) or "none"))
    print(f"  load average {load0:.1f} at the start, {load1:.1f} at the end; {time.monotonic() - t0:.0f} s in all "
          f"-> {out}/bench.json")
    if args.json:
        print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
