"""Benchmark: taichifield marching cubes vs skimage, PyMCubes and VTK Flying Edges.

Same 256^3 float32 grids for all, same run, kernels warmed first; best of ``--repeat``
wall times. Two fields: a gyroid filling the box (1.2M triangles, many handles) and
the gyroid clipped to a ball (an object in empty space, like an SDF grid). Prints each
method's time, its speed-up over skimage, vertex/face counts and Euler number, and
whether the Euler number equals skimage's. (skimage's Lewiner MC33 adds a cell-centre
vertex in some cases and resolves interior ambiguities with tunnels; we resolve faces
the same way but not cell interiors, so counts can differ by a few in rare cells.)

Goal (issue 4): >= 3x skimage with identical topology; then beat vtkFlyingEdges3D.

Usage:
    python bench/marching_cubes.py [--res 256] [--repeat 3] [--arch cpu]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np


def field(n: int, name: str = "gyroid-ball") -> np.ndarray:
    """``gyroid``: smooth, surface everywhere in the box; ``gyroid-ball``: the gyroid
    solid clipped to a ball (an object in empty space, creased where they meet)."""
    x = np.linspace(-2 * np.pi, 2 * np.pi, n, dtype=np.float32)
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    gyroid = np.sin(X) * np.cos(Y) + np.sin(Y) * np.cos(Z) + np.sin(Z) * np.cos(X)
    if name == "gyroid":
        return np.ascontiguousarray(gyroid.astype(np.float32))
    sphere = np.sqrt(X**2 + Y**2 + Z**2) - 4.0
    return np.ascontiguousarray(np.minimum(gyroid, -sphere).astype(np.float32))


def euler(faces: np.ndarray) -> int:
    f = np.asarray(faces, dtype=np.int64)
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    key = np.unique(e[:, 0] * (int(f.max()) + 1) + e[:, 1])
    return len(np.unique(f)) - len(key) + len(f)


def best_time(fn: Callable[[], tuple], repeat: int) -> tuple[float, tuple]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def vtk_flying_edges(vol: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    import vtk
    from vtk.util import numpy_support

    img = vtk.vtkImageData()
    img.SetDimensions(*vol.shape[::-1])  # VTK is x-fastest: our axis 2 is its x
    arr = numpy_support.numpy_to_vtk(vol.ravel(), deep=False, array_type=vtk.VTK_FLOAT)
    img.GetPointData().SetScalars(arr)
    fe = vtk.vtkFlyingEdges3D()
    fe.SetInputData(img)
    fe.SetValue(0, level)
    fe.ComputeNormalsOff()
    fe.ComputeGradientsOff()
    fe.ComputeScalarsOff()
    fe.Update()
    out = fe.GetOutput()
    v = numpy_support.vtk_to_numpy(out.GetPoints().GetData())[:, ::-1]
    f = numpy_support.vtk_to_numpy(out.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    return v, f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--arch", default="cpu")
    ap.add_argument("--level", type=float, default=0.0)
    args = ap.parse_args()

    from taichifield import runtime
    from taichifield.geometry.marching_cubes import marching_cubes

    runtime.init(args.arch)
    for name in ("gyroid", "gyroid-ball"):
        bench_field(name, field(args.res, name), args)


def bench_field(name: str, vol: np.ndarray, args: argparse.Namespace) -> None:
    from taichifield import runtime
    from taichifield.geometry.marching_cubes import marching_cubes

    marching_cubes(vol[:16, :16, :16], args.level)  # compile
    marching_cubes(vol, args.level)  # warm caches

    methods: dict[str, Callable[[], tuple]] = {}
    from skimage.measure import marching_cubes as sk_mc

    methods["skimage (lewiner)"] = lambda: sk_mc(vol, args.level)[:2]
    methods[f"taichifield ({runtime.current_arch()})"] = lambda: marching_cubes(vol, args.level)
    try:
        import mcubes

        methods["PyMCubes"] = lambda: mcubes.marching_cubes(vol, args.level)
    except ImportError:
        print("PyMCubes not installed: skipped")
    try:
        import vtk  # noqa: F401

        methods["VTK vtkFlyingEdges3D"] = lambda: vtk_flying_edges(vol, args.level)
    except ImportError:
        print("vtk not installed: skipped")

    print(f"\n{name}: grid {args.res}^3 float32, level {args.level}, best of {args.repeat}")
    results = {name: best_time(fn, args.repeat) for name, fn in methods.items()}
    t_sk, (sv, sf) = results["skimage (lewiner)"]
    e_sk = euler(sf)
    print(f"{'method':28s} {'time s':>8s} {'vs skimage':>10s} {'verts':>9s} {'faces':>9s} {'euler':>6s}  euler vs skimage")
    for method, (t, (v, f)) in results.items():
        e = euler(f)
        same = "same" if e == e_sk else "differs"
        print(f"{method:28s} {t:8.3f} {t_sk / t:9.2f}x {len(v):9d} {len(f):9d} {e:6d}  {same}")


if __name__ == "__main__":
    main()
