"""Benchmark: where one NeRF training step spends its time, per stage, at the CLI defaults.

Builds the run exactly as ``taichifield train nerf SCENE`` does (``NerfTrainConfig()``
defaults, the arch's preset: on the CPU 2^16 samples per step, a 64^3 occupancy grid and
the no-grad culling pass), trains ``--warmup`` steps so that Taichi has compiled every
kernel and the occupancy grid has emptied (the step's cost depends on how many samples the
grid lets through), then:

1. times ``--steps`` plain steps (no profiler), ``--repeats`` times: step time and samples/s
   forward+backward (samples through the full field; marched samples are also given);
2. profiles ``--steps`` more steps with ``torch.profiler``: the bench wraps the stage
   callables in ``record_function`` labels by monkeypatching (no library file changes):
   ray generation (``NerfTrainer._batch``), marching (``OccupancyGrid.sample``), the culling
   density pass (the no-grad ``sigma_fn`` plus ``visible_samples``), hash grid, SH, MLPs,
   volume rendering, optimiser (``zero_grad``, ``step``, lr schedule), grid update. Backward
   time is read from the autograd engine's events: Taichi ops (one ``_FunctionBackward``
   each) are labelled inside the bridge's backward, torch nodes by name (``Mm``/``T``/``Relu``:
   MLP). What no label covers is "Python, glue ops, allocation".

Steps are a multiple of the grid's update period (16) so the grid update is amortised as in
a real run. Every option changed from the defaults is printed next to the result.

    python bench/nerf_throughput.py [--scene DIR] [--downscale 1] [--warmup 200] [--steps 32]
                                    [--repeats 3] [--target-samples N] [--torch-threads N]
                                    [--log2-table-size N] [--arch cpu] [--json FILE]

Measured here (lego_400 at 400x400, 2 shared cores, OMP_WAIT_POLICY=PASSIVE, load average
2.2-2.9): ~290 ms/step, 48k samples/step through the field (69k marched), 0.12-0.18 M
samples/s; the culling pass 32%, hash grid fwd+bwd 33%, MLP fwd+bwd 16% (59 GFLOP/s, the
sgemm rate at that shape), optimiser 5%, grid update 3%, marching 4%.

Scene: ``--scene``, else ``../shared/data/nerf_synthetic/lego_400`` next to the repository
(or ``$TAICHIFIELD_LEGO``) at full 400x400 when present, else the procedural ``scenes/lego``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
REAL_LEGO = REPO.parent / "shared" / "data" / "nerf_synthetic" / "lego_400"

# stages in the order of the table; label -> description
STAGES = {
    "rays": "ray generation (pixels, rays, targets)",
    "march": "marching (grid.sample)",
    "cull": "culling density pass (no grad, incl. visible_samples)",
    "hash_fwd": "hash grid fwd",
    "hash_bwd": "hash grid bwd",
    "sh_fwd": "SH encoding fwd",
    "sh_bwd": "SH encoding bwd",
    "mlp_fwd": "MLP fwd (density + colour)",
    "mlp_bwd": "MLP bwd (mm, relu, transposes)",
    "vr_fwd": "volume rendering fwd",
    "vr_bwd": "volume rendering bwd",
    "other_bwd": "other autograd nodes (gathers, cat, sigmoid, exp, grad accumulation)",
    "optim": "optimiser (zero_grad, Adam, lr schedule)",
    "grid": "occupancy grid update (amortised)",
    "overhead": "Python, glue ops, allocation (unlabelled)",
}
_MLP_NODES = ("MmBackward", "TBackward", "ReluBackward", "ThresholdBackward", "AddmmBackward", "LinearBackward",
              "PermuteBackward")


def _default_scene() -> str:
    env = os.environ.get("TAICHIFIELD_LEGO")
    if env and (Path(env) / "transforms_train.json").is_file():
        return env
    if (REAL_LEGO / "transforms_train.json").is_file():
        return str(REAL_LEGO)
    return str(REPO / "scenes" / "lego")


class _Labels:
    """Monkeypatched ``record_function`` labels around the stage callables of one trainer."""

    def __init__(self) -> None:
        self.quiet = 0  # > 0 inside the culling pass / grid update: nested stages are theirs
        self.undo: list[Callable[[], None]] = []

    @contextmanager
    def label(self, name: str, own: bool = False) -> Iterator[None]:
        import torch

        if self.quiet and not own:
            yield
            return
        if own:
            self.quiet += 1
        try:
            with torch.profiler.record_function(f"tf:{name}"):
                yield
        finally:
            if own:
                self.quiet -= 1

    def wrap(self, obj: Any, attr: str, name: str, own: bool = False) -> None:
        orig = getattr(obj, attr)
        had_own = attr in vars(obj) if hasattr(obj, "__dict__") else False

        def wrapped(*a: Any, **k: Any) -> Any:
            with self.label(name, own):
                return orig(*a, **k)

        setattr(obj, attr, wrapped)
        self.undo.append(lambda: setattr(obj, attr, orig) if had_own else delattr(obj, attr))

    def install(self, trainer: Any) -> None:
        import taichifield.bridge as bridge
        import taichifield.render.render_rays as rr
        try:
            import taichifield.pipelines.nerf_render as nr
        except ImportError:  # before the move of NeRF inference to pipelines/
            import taichifield.train.nerf_render as nr  # type: ignore[no-redef]

        field, grid, labels = trainer.model.field, trainer.model.grid, self
        self.wrap(trainer, "_batch", "rays")
        self.wrap(grid, "sample", "march")
        self.wrap(grid, "update", "grid", own=True)
        self.wrap(field.pos_encoding, "forward", "hash_fwd")
        self.wrap(field.dir_encoding, "forward", "sh_fwd")
        self.wrap(field.density_mlp, "forward", "mlp_fwd")
        self.wrap(field.color_mlp, "forward", "mlp_fwd")
        self.wrap(trainer.optimizer, "step", "optim")
        self.wrap(trainer.optimizer, "zero_grad", "optim")
        self.wrap(trainer.scheduler, "step", "optim")
        self.wrap(rr, "volume_render", "vr_fwd")
        self.wrap(rr, "visible_samples", "cull", own=True)
        orig_density_fn = nr._density_fn

        def density_fn(*a: Any, **k: Any) -> Any:
            fn = orig_density_fn(*a, **k)

            def labelled(*b: Any) -> Any:
                with labels.label("cull", own=True):
                    return fn(*b)
            return labelled

        nr._density_fn = density_fn
        self.undo.append(lambda: setattr(nr, "_density_fn", orig_density_fn))
        orig_backward = bridge._Function.backward
        bwd_name = {"hashgrid": "hash_bwd", "sh": "sh_bwd", "volume": "vr_bwd", "render": "vr_bwd"}

        def backward(ctx: Any, *grads: Any) -> Any:
            op = ctx.op.name.lower()
            stage = next((v for k, v in bwd_name.items() if k in op), f"taichi:{ctx.op.name}")
            with labels.label(stage):
                return orig_backward(ctx, *grads)

        bridge._Function.backward = staticmethod(backward)
        self.undo.append(lambda: setattr(bridge._Function, "backward", staticmethod(orig_backward)))

    def remove(self) -> None:
        for undo in reversed(self.undo):
            undo()
        self.undo.clear()


def _breakdown(events: Any, n_steps: int) -> tuple[dict[str, float], float]:
    """ms per step and stage from profiler events; and the profiled step time (ms)."""
    out = {k: 0.0 for k in STAGES}
    step_ms = 0.0

    def dur(e: Any) -> float:
        return e.time_range.elapsed_us() / 1e3

    def labelled_inside(e: Any) -> Any:
        for c in e.cpu_children:
            if c.name.startswith("tf:"):
                return c
            found = labelled_inside(c)
            if found is not None:
                return found
        return None

    def exclusive(e: Any) -> float:
        """Duration minus nested labels and autograd nodes (each counted on its own)."""
        t = dur(e)
        stack = list(e.cpu_children)
        while stack:
            c = stack.pop()
            if c.name.startswith("tf:") or c.name.startswith("autograd::engine::evaluate_function"):
                t -= dur(c)
            else:
                stack.extend(c.cpu_children)
        return t

    for e in events:
        if e.name == "tf:step":
            step_ms += dur(e)
        elif e.name.startswith("tf:"):
            key = e.name[3:]
            out[key if key in out else "other_bwd"] = out.get(key if key in out else "other_bwd", 0.0) + exclusive(e)
        elif e.name.startswith("autograd::engine::evaluate_function: "):
            if labelled_inside(e) is not None:
                continue  # a Taichi op's backward: its label inside has the time
            node = e.name.split(": ", 1)[1]
            key = "mlp_bwd" if node.startswith(_MLP_NODES) else "other_bwd"
            out[key] += exclusive(e)
    labelled = sum(out.values())
    out["overhead"] = max(step_ms - labelled, 0.0)
    return {k: v / n_steps for k, v in out.items()}, step_ms / n_steps


def _unlabelled_ops(events: Any, n_steps: int, top: int = 8) -> list[tuple[str, float]]:
    """The ops no label covers inside ``tf:step`` (ms per step, self time), largest first."""
    acc: dict[str, float] = {}
    for e in events:
        if e.name != "tf:step":
            continue
        stack = list(e.cpu_children)
        while stack:
            c = stack.pop()
            if c.name.startswith("tf:") or c.name.startswith("autograd::engine::evaluate_function"):
                continue
            self_us = c.time_range.elapsed_us() - sum(k.time_range.elapsed_us() for k in c.cpu_children)
            acc[c.name] = acc.get(c.name, 0.0) + self_us / 1e3 / n_steps
            stack.extend(c.cpu_children)
    return sorted(acc.items(), key=lambda kv: -kv[1])[:top]


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _variant(holder: list[Any], spec: str, others: dict[str, Any]) -> Iterator[None]:
    """Apply one ``name=value`` variant to the live trainer ``holder[0]`` (threads=N, target=N,
    cull=0|1, mlp=fused), or swap in the separately built and warmed trainer of ``others[spec]``
    (log2T=N), then undo it."""
    import torch

    trainer = holder[0]
    name, _, value = spec.partition("=")
    if spec in others:
        holder[0] = others[spec]
        try:
            yield
        finally:
            holder[0] = trainer
    elif name == "threads":
        saved = torch.get_num_threads()
        torch.set_num_threads(int(value))
        try:
            yield
        finally:
            torch.set_num_threads(saved)
    elif name == "target":
        saved_t, saved_n = trainer.target, trainer.n_rays
        trainer.target = int(value)
        trainer.n_rays = max(32, int(saved_n * int(value) / saved_t))
        try:
            yield
        finally:
            trainer.target, trainer.n_rays = saved_t, saved_n
    elif name == "cull":
        saved_c = trainer.config.cull_samples
        trainer.config.cull_samples = bool(int(value))
        try:
            yield
        finally:
            trainer.config.cull_samples = saved_c
    elif spec in ("mlp=fused", "mlp=compiled"):
        field = trainer.model.field
        field.forward = _fused_forward(field) if spec == "mlp=fused" else _compiled_forward(field)  # instance attribute: nn.Module.__call__ finds it first
        try:
            yield
        finally:
            del field.forward
    else:
        raise SystemExit(f"error: --compare: unknown variant {spec!r} (threads=N, target=N, cull=0|1, mlp=fused|compiled or log2T=N)")


_COMPILED: dict[int, Any] = {}


def _compiled_forward(field: Any) -> Callable[[Any, Any], Any]:
    """``NerfField.forward`` with the two MLPs (and the cat, slice, sigmoid between them) under
    ``torch.compile(dynamic=True)``; the Taichi hash grid and SH ops stay outside the graph.
    Compiled once per field (the compile time is printed on first use)."""
    import torch

    from taichifield.fields.nerf import trunc_exp

    if id(field) not in _COMPILED:
        def head(enc: Any, sh: Any) -> Any:
            h = field.density_mlp(enc)
            return h[:, 0], torch.sigmoid(field.color_mlp(torch.cat([sh, h[:, 1:]], dim=-1)))

        compiled = torch.compile(head, dynamic=True)
        t = time.perf_counter()
        enc = torch.randn(1000, field.pos_encoding.output_dim, requires_grad=True)
        logit, rgb = compiled(enc, torch.randn(1000, field.dir_encoding.output_dim))
        (logit.sum() + rgb.sum()).backward()
        field.zero_grad(set_to_none=True)
        print(f"    (torch.compile of the MLP head: {time.perf_counter() - t:.1f} s)", flush=True)
        _COMPILED[id(field)] = compiled
    compiled = _COMPILED[id(field)]

    def forward(x: Any, dirs: Any) -> Any:
        u = field.normalize(x)
        inside = ((u >= 0) & (u <= 1)).all(dim=-1)
        logit, rgb = compiled(field.pos_encoding(u.clamp(0, 1)), field.dir_encoding(dirs))
        return rgb, trunc_exp(logit) * inside.to(logit.dtype)

    return forward


def _fused_forward(field: Any) -> Callable[[Any, Any], Any]:
    """``NerfField.forward`` with both MLPs as the one op :func:`taichifield.fields.mlp.nerf_head`."""
    import torch

    from taichifield.fields.mlp import nerf_head
    from taichifield.fields.nerf import trunc_exp

    dw = [m.weight for m in field.density_mlp if isinstance(m, torch.nn.Linear)]
    cw = [m.weight for m in field.color_mlp if isinstance(m, torch.nn.Linear)]

    def forward(x: Any, dirs: Any) -> Any:
        u = field.normalize(x)
        inside = ((u >= 0) & (u <= 1)).all(dim=-1)
        logit, rgb = nerf_head(field.pos_encoding(u.clamp(0, 1)), field.dir_encoding(dirs), dw, cw)
        return rgb, trunc_exp(logit) * inside.to(logit.dtype)

    return forward


def _compare(holder: list[Any], specs: list[str], steps: int, repeats: int,
             timed: Callable[[int], tuple[float, float, float]], others: dict[str, Any]) -> dict[str, Any]:
    """Time the defaults and each variant interleaved (default, v1, v2, ..., repeated), so a change
    of load hits them alike; samples/s ratios variant/default per round, then their range."""
    rows: dict[str, list[tuple[float, float, float]]] = {"default": [], **{s: [] for s in specs}}
    for _ in range(repeats):
        for spec in ["default", *specs]:
            with _variant(holder, spec, others) if spec != "default" else _nothing():
                timed(2)  # the ray count settles
                t, ev, _ = timed(steps)
                rays = holder[0].n_rays
            rows[spec].append((t, ev / t, rays / t))
    out: dict[str, Any] = {}
    print(f"  compare (interleaved, {repeats}x{steps} steps each; load average {os.getloadavg()[0]:.2f}):")
    for spec, vals in rows.items():
        ratios = [v[1] / d[1] for v, d in zip(vals, rows["default"])]
        ray_ratios = [v[2] / d[2] for v, d in zip(vals, rows["default"])]
        sps = [v[1] for v in vals]
        ms = [v[0] * 1e3 for v in vals]
        out[spec] = {"step_ms": [round(m, 1) for m in ms], "samples_per_s": [round(x) for x in sps],
                     "rays_per_s": [round(v[2]) for v in vals], "ratio_vs_default": [round(r, 3) for r in ratios],
                     "rays_ratio_vs_default": [round(r, 3) for r in ray_ratios]}
        print(f"    {spec:<16} {min(ms):6.0f}-{max(ms):6.0f} ms/step  {min(sps) / 1e6:.3f}-{max(sps) / 1e6:.3f} M samples/s"
              f"  ratio vs default: samples/s {min(ratios):.2f}-{max(ratios):.2f}, rays/s {min(ray_ratios):.2f}-{max(ray_ratios):.2f}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", default=None, help="scene folder (default: real lego_400 if present, else scenes/lego)")
    parser.add_argument("--downscale", type=int, default=None, help="image downscale (CLI default 1)")
    parser.add_argument("--warmup", type=int, default=200, help="training steps before measuring (default 200)")
    parser.add_argument("--steps", type=int, default=32, help="steps per timing (multiple of 16; default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="plain timings (default 3; the range is printed)")
    parser.add_argument("--target-samples", type=int, default=None, help="samples per step (CPU default 2^16)")
    parser.add_argument("--log2-table-size", type=int, default=None, help="hash table size per level (default 19)")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--no-profile", action="store_true", help="plain timings only")
    parser.add_argument("--compare", default="",
                        help="comma-separated variants timed interleaved with the defaults in the same run, "
                             "e.g. threads=1,target=32768,target=131072 (ratios vs the defaults)")
    parser.add_argument("--arch", default="cpu", help="Taichi arch (default cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from taichifield import runtime
    from taichifield.fields.nerf import NerfConfig
    from taichifield.train.nerf import NerfTrainConfig, NerfTrainer

    arch = runtime.init(args.arch, random_seed=args.seed)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    scene = args.scene or _default_scene()
    changed: dict[str, Any] = {"eval_views": 0, "progress_images": False}  # nothing is evaluated or written
    if args.downscale is not None:
        changed["downscale"] = args.downscale
    if args.target_samples is not None:
        changed["target_samples"] = args.target_samples
    model = NerfConfig()
    if args.log2_table_size is not None:
        model.log2_table_size = args.log2_table_size
        changed["model.log2_table_size"] = args.log2_table_size
    if args.torch_threads > 0:
        changed["torch_threads"] = args.torch_threads
    out = tempfile.mkdtemp(prefix="nerf-throughput-")
    config = NerfTrainConfig(scene=scene, out=out, seed=args.seed, model=model,
                             **{k: v for k, v in changed.items() if k in NerfTrainConfig.__dataclass_fields__})
    t0 = time.monotonic()
    trainer = NerfTrainer(config)
    holder = [trainer]  # the trainer timed() steps (a log2T=N variant swaps in its own)
    v = trainer.views
    print(f"nerf_throughput: {Path(scene).name} {v.width}x{v.height} ({len(v)} train views), arch {arch}, "
          f"{torch.get_num_threads()} torch threads, target {trainer.target} samples/step, grid {config.grid_resolution}^3, "
          f"cull {config.cull_samples}, log2 T {config.model.log2_table_size}; changed from the defaults: "
          f"{', '.join(f'{k}={v}' for k, v in changed.items())}", flush=True)
    print(f"  load: {time.monotonic() - t0:.1f} s; warm-up {args.warmup} steps ...", flush=True)
    trainer.model.field.train()
    step = 0
    t0 = time.monotonic()
    for step in range(args.warmup):
        trainer.step(step)
    print(f"  warm-up: {time.monotonic() - t0:.1f} s, occupied cells {trainer.model.grid.occupied_fraction():.3f}, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    step += 1

    def timed(n: int) -> tuple[float, float, float]:
        nonlocal step
        ev = mar = 0.0
        t = time.perf_counter()
        for _ in range(n):
            s = holder[0].step(step)
            ev += s["evaluated"]
            mar += s["marched"]
            step += 1
        return (time.perf_counter() - t) / n, ev / n, mar / n

    runs = [timed(args.steps) for _ in range(max(args.repeats, 1))]
    step_s = [r[0] for r in runs]
    ev = sum(r[1] for r in runs) / len(runs)
    mar = sum(r[2] for r in runs) / len(runs)
    sps = [ev / s for s in step_s]
    load = os.getloadavg()
    print(f"  plain: {min(step_s) * 1e3:.0f}-{max(step_s) * 1e3:.0f} ms/step over {len(runs)}x{args.steps} steps; "
          f"{ev:.0f} samples/step through the field ({mar:.0f} marched, {trainer.n_rays} rays); "
          f"{min(sps) / 1e6:.3f}-{max(sps) / 1e6:.3f} M samples/s fwd+bwd; load average {load[0]:.2f}", flush=True)
    result: dict[str, Any] = {
        "scene": scene, "width": v.width, "height": v.height, "arch": arch, "torch_threads": torch.get_num_threads(),
        "changed": changed, "target_samples": trainer.target, "step_ms": [round(s * 1e3, 1) for s in step_s],
        "evaluated_per_step": round(ev), "marched_per_step": round(mar), "samples_per_s": [round(s) for s in sps],
        "load_average": load[0],
    }
    others: dict[str, Any] = {}
    for spec in args.compare.split(",") if args.compare else []:
        if spec.startswith("log2T="):  # a different table is a different model: built and warmed alike
            other_cfg = NerfTrainConfig.from_dict({**config.to_dict(), "out": tempfile.mkdtemp(prefix="nerf-throughput-")})
            other_cfg.model.log2_table_size = int(spec.split("=", 1)[1])
            torch.manual_seed(args.seed)
            other = NerfTrainer(other_cfg)
            other.model.field.train()
            t1 = time.monotonic()
            for i in range(args.warmup):
                other.step(i)
            others[spec] = other
            print(f"  {spec}: built and warmed up ({time.monotonic() - t1:.1f} s, occupied cells "
                  f"{other.model.grid.occupied_fraction():.3f})", flush=True)
    if args.compare:
        result["compare"] = _compare(holder, args.compare.split(","), args.steps, max(args.repeats, 1), timed, others)
    if not args.no_profile:
        labels = _Labels()
        labels.install(trainer)
        try:
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(args.steps):
                    with torch.profiler.record_function("tf:step"):
                        trainer.step(step)
                    step += 1
        finally:
            labels.remove()
        table, prof_ms = _breakdown(prof.events(), args.steps)
        after = timed(args.steps)[0]
        print(f"  profiled: {prof_ms:.0f} ms/step; a plain block right after: {after * 1e3:.0f} ms/step "
              f"(ratio {prof_ms / (after * 1e3):.2f}: profiler cost plus load change); load average {os.getloadavg()[0]:.2f}")
        print(f"  {'stage':<72} {'ms/step':>8} {'%':>6}")
        for key, desc in STAGES.items():
            ms = table.get(key, 0.0)
            print(f"  {desc:<72} {ms:8.1f} {100 * ms / prof_ms:6.1f}")
        for key, ms in table.items():
            if key not in STAGES:
                print(f"  {key:<72} {ms:8.1f} {100 * ms / prof_ms:6.1f}")
        print(f"  {'total (profiled step)':<72} {prof_ms:8.1f} {100.0:6.1f}")
        mlp_ms = table["mlp_fwd"] + table["mlp_bwd"]
        hash_ms = table["hash_fwd"] + table["hash_bwd"]
        flop = 56e3 * ev  # ~56 kFLOP per sample fwd+bwd in the two MLPs (issue 12)
        print(f"  MLP fwd+bwd: {flop / max(mlp_ms, 1e-9) / 1e6:.1f} GFLOP/s effective; hash grid fwd+bwd: "
              f"{ev / max(hash_ms, 1e-9) / 1e3:.2f} M points/s (full pass only; the culling pass is extra)")
        top = _unlabelled_ops(prof.events(), args.steps)
        print("  largest unlabelled ops (self ms/step): " + ", ".join(f"{n} {ms:.1f}" for n, ms in top))
        result["unlabelled_ops_ms"] = {n: round(ms, 2) for n, ms in top}
        result["breakdown_ms"] = {k: round(v, 2) for k, v in table.items()}
        result["profiled_step_ms"] = round(prof_ms, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"nerf_throughput: {min(sps) / 1e6:.3f}-{max(sps) / 1e6:.3f} M samples/s fwd+bwd at "
          f"{v.width}x{v.height}; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
