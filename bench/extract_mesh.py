"""Benchmark: narrow-band extract_mesh at 256^3 and 512^3 (time, peak memory, evaluations).

Fields: an analytic SDF (a torus and a sphere, unioned) and a small ReLU MLP with
geometric initialisation (Atzmon & Lipman 2020: it starts as a sphere's SDF), which is
what `taichifield mesh sdf` evaluates. Each (field, resolution) runs in a fresh
subprocess so its peak RSS (``ru_maxrss``) is its own. Prints time, peak RSS, field
evaluations (and their share of the dense R^3 grid), and t(512)/t(256).

Goals (issue 4): peak <= 3 GB at 512; t(512)/t(256) <= 5 (a dense grid costs 8x).

Usage:
    python bench/extract_mesh.py [--res 256 512] [--fields analytic mlp] [--arch cpu]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def analytic_sdf():
    import torch

    def sdf(p: torch.Tensor) -> torch.Tensor:
        x, y, z = p.unbind(-1)
        torus = torch.sqrt((torch.sqrt(x**2 + z**2) - 0.5) ** 2 + y**2) - 0.18
        sphere = (p - torch.tensor([0.0, 0.35, 0.0])).norm(dim=-1) - 0.3
        return torch.minimum(torus, sphere)

    return sdf


def mlp_sdf(width: int = 64, depth: int = 3, radius: float = 0.6):
    import torch

    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    dims = [3] + [width] * depth
    for a, b in zip(dims[:-1], dims[1:]):
        lin = torch.nn.Linear(a, b)
        torch.nn.init.normal_(lin.weight, 0.0, (2.0 / b) ** 0.5)
        torch.nn.init.zeros_(lin.bias)
        layers += [lin, torch.nn.ReLU()]
    last = torch.nn.Linear(width, 1)
    torch.nn.init.normal_(last.weight, (torch.pi / width) ** 0.5, 1e-4)
    torch.nn.init.constant_(last.bias, -radius)
    net = torch.nn.Sequential(*layers, last).eval()
    return lambda p: net(p).squeeze(-1)


def run_single(field: str, res: int, arch: str) -> dict:
    import resource

    import torch

    from taichifield import runtime
    from taichifield.geometry.extract import extract_mesh

    runtime.init(arch)
    torch.set_grad_enabled(False)
    fn = analytic_sdf() if field == "analytic" else mlp_sdf()
    box = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    extract_mesh(fn, 24, box)  # compile the kernels outside the timing
    n = [0]

    def counting(p):
        n[0] += p.shape[0]
        return fn(p)

    t0 = time.perf_counter()
    v, f = extract_mesh(counting, res, box)
    dt = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux
    return {"field": field, "res": res, "seconds": dt, "peak_gb": peak_gb, "evals": n[0],
            "dense_share": n[0] / res**3, "verts": len(v), "faces": len(f)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--fields", nargs="+", default=["analytic", "mlp"], choices=["analytic", "mlp"])
    ap.add_argument("--arch", default="cpu")
    ap.add_argument("--single", nargs=2, metavar=("FIELD", "RES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.single:
        print(json.dumps(run_single(args.single[0], int(args.single[1]), args.arch)))
        return

    print(f"{'field':9s} {'res':>5s} {'time s':>8s} {'peak GB':>8s} {'evals':>11s} {'of dense':>9s} {'faces':>9s}")
    for field in args.fields:
        times = {}
        for res in args.res:
            out = subprocess.run([sys.executable, __file__, "--single", field, str(res), "--arch", args.arch],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            times[res] = r["seconds"]
            print(f"{field:9s} {res:5d} {r['seconds']:8.2f} {r['peak_gb']:8.2f} {r['evals']:11,d} "
                  f"{r['dense_share']:8.1%} {r['faces']:9,d}")
        if 256 in times and 512 in times:
            print(f"{field:9s} t(512)/t(256) = {times[512] / times[256]:.2f}  (goal <= 5; dense would be ~8)")


if __name__ == "__main__":
    main()
