"""The measuring half of ``bench/gpu_check.sh``: kernel benchmarks, host syncs per training
step, and one NeRF run scored at fixed training times. Writes ``OUT/summary.json`` and
``OUT/summary.txt`` after every section, so a run cut short still reports what it measured.

    python bench/gpu_report.py --arch cuda --out $OUT          # on the GPU machine
    python bench/gpu_report.py --arch cpu --out out/r --rehearse   # tiny sizes, same code path
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]


class Report:
    def __init__(self, out: Path) -> None:
        self.out, self.data, self.t0 = out, {}, time.monotonic()
        out.mkdir(parents=True, exist_ok=True)

    def section(self, name: str, fn: Callable[[], Any]) -> None:
        t = time.monotonic()
        print(f"== [{t - self.t0:.0f} s] {name}", flush=True)
        try:
            self.data[name] = fn()
        except Exception as exc:  # a broken section must not lose the others
            self.data[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        self.data[name + "_seconds"] = round(time.monotonic() - t, 1)
        print(json.dumps(self.data[name], indent=1)[:2000], flush=True)
        self.write()

    def write(self) -> None:
        (self.out / "summary.json").write_text(json.dumps(self.data, indent=2) + "\n")
        lines = [f"{k}: {json.dumps(v)}" for k, v in self.data.items()]
        (self.out / "summary.txt").write_text("\n".join(lines) + "\n")


def environment(arch: str) -> dict[str, Any]:
    import taichi as ti

    from taichifield import runtime

    got = runtime.init(arch)
    info = {"arch": got, "device": str(runtime.device()), "torch": torch.__version__, "taichi": ti.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def hashgrid(n_points: int) -> dict[str, Any]:
    import encodings_bench_shim  # noqa: F401  (bench/encodings.py shadows the stdlib name)

    from encodings_bench_shim import run

    (row,) = run(n_points, (19,), repeats=3, others=False)
    return {"points": n_points, "log2_T": 19, "taichi_fwd_ms": row.taichi_fwd * 1e3, "torch_fwd_ms": row.torch_fwd * 1e3,
            "taichi_fwd_bwd_ms": row.taichi_fb * 1e3, "torch_fwd_bwd_ms": row.torch_fb * 1e3,
            "fwd_ratio": row.torch_fwd / row.taichi_fwd, "fwd_bwd_ratio": row.torch_fb / row.taichi_fb,
            "goal_fwd_bwd_ratio": 20.0}


def script(args: list[str], timeout: float) -> dict[str, Any]:
    res = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return {"rc": res.returncode, "output": (res.stdout + res.stderr)[-3000:]}


def _trainer(scene: str, arch: str, rehearse: bool, out: Path, **kw: Any) -> Any:
    from taichifield.train.nerf import NerfTrainConfig, NerfTrainer

    cfg = NerfTrainConfig(scene=scene, out=str(out), steps=10**6, eval_views=0, progress_images=False,
                          downscale=8 if rehearse else 1, **kw)
    return NerfTrainer(cfg)


def host_syncs(scene: str, arch: str, rehearse: bool, out: Path) -> dict[str, Any]:
    """Syncs per step, counted by the TorchFunctionMode of the tests and (CUDA) by torch's sync debug mode."""
    from sync_counter import CountHostSyncs

    from taichifield.render import volrend

    volrend._validate_on_cpu = False  # CPU-only index checks (free there; a GPU step skips them)
    trainer = _trainer(scene, arch, rehearse, out / "syncs")
    for step in range(20):
        trainer.step(step)
    counted: list[int] = []
    debug_warnings = []
    for step in range(32, 40):  # 32: a grid update step
        with CountHostSyncs() as c:
            if torch.cuda.is_available() and arch == "cuda":
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("warn")
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                trainer.step(step)
            if torch.cuda.is_available() and arch == "cuda":
                torch.cuda.set_sync_debug_mode("default")
        counted.append(c.total)
        debug_warnings.append(sum("synchroniz" in str(x.message) for x in w))
    return {"counted_per_step": counted, "torch_sync_debug_warnings_per_step": debug_warnings,
            "cull_samples": trainer.config.cull_samples, "goal": "<= 1"}


def nerf_run(scene: str, test_scene: str, arch: str, rehearse: bool, out: Path) -> dict[str, Any]:
    """One run; the 20 test views scored (on white) after each training segment."""
    from taichifield.data import load_scene
    from taichifield.metrics.image import psnr_images

    seg = 1.0 if rehearse else 30.0
    trainer = _trainer(scene, arch, rehearse, out / "lego", time_budget=seg)
    test = load_scene(test_scene, "test", trainer.config.downscale)
    n_test = min(2 if rehearse else 20, len(test))
    curve, trained = [], 0.0
    for k in range(4):
        res = trainer.run()
        trained += res.seconds
        trainer.start_step = res.step
        model = trainer.model.eval()
        t = time.monotonic()
        with torch.no_grad():
            vals = []
            for i in range(n_test):
                fx, fy, cx, cy, dist = test.camera(i)
                img = model.render_view(test.c2w[i], test.width, test.height, fx, fy, cx, cy, near=test.near,
                                        far=test.far, step_size=trainer.step_size, distortion=dist)
                vals.append(psnr_images(img, test.rgb((1.0, 1.0, 1.0), index=i)))
        curve.append({"train_seconds": round(trained, 1), "steps": res.step, "psnr": sum(vals) / len(vals),
                      "eval_seconds": round(time.monotonic() - t, 1)})
        print(curve[-1], flush=True)
        model.train()
    return {"views": n_test, "resolution": f"{test.width}x{test.height}", "curve": curve,
            "goal": ">= 35.0 dB within 90 s (H200)", "defaults": "CLI defaults (NerfTrainConfig) except the time budget"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="cuda")
    ap.add_argument("--out", default="out/gpu_check")
    ap.add_argument("--rehearse", action="store_true", help="tiny sizes (CPU rehearsal)")
    ap.add_argument("--scene", default=None, help="Blender lego folder (default gpu_carry/lego, else scenes/lego)")
    args = ap.parse_args()
    out = Path(args.out)
    rep = Report(out)
    scene = args.scene or (str(ROOT / "gpu_carry/lego") if (ROOT / "gpu_carry/lego/transforms_train.json").exists()
                           else str(ROOT / "scenes/lego"))
    small = args.rehearse
    rep.section("environment", lambda: environment(args.arch) | {"scene": scene, "rehearse": small})
    rep.section("hashgrid", lambda: hashgrid(1 << 14 if small else 1 << 20))
    rep.section("volume_rendering", lambda: script(
        ["bench/volume_rendering.py", "--arch", args.arch, "--rays", "256" if small else "65536", "--repeats", "3"], 60))
    rep.section("marching_cubes", lambda: script(
        ["bench/marching_cubes.py", "--arch", args.arch, "--res", "48" if small else "512", "--repeat", "1"], 90))
    rep.section("host_syncs", lambda: host_syncs(scene, args.arch, small, out / "work"))
    rep.section("nerf_lego", lambda: nerf_run(scene, scene, args.arch, small, out / "work"))
    print(f"== summary in {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
