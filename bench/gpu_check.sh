#!/usr/bin/env bash
# Prepared GPU check for a lent CUDA machine (issue 3): CUDA tests, kernel benchmarks, and
# full-resolution NeRF training on lego reporting PSNR vs seconds (goal >= 35 dB in <= 200 s).
#
# Usage (from the repository root, on the GPU machine):
#     bash bench/gpu_check.sh [DATA]          # DATA: Blender lego folder; default
#                                             # shared/data/nerf_synthetic/lego_400, else scenes/lego
# Environment:
#     BUDGETS="50 100 200"   training budgets in seconds (each a separate run, PSNR after each)
#     N_TEST=20              test views scored per run
#     SKIP_TESTS=1           skip the pytest run
# Wheels: if shared/wheels/ holds a CUDA build of taichi (and its deps, e.g. dill), it is
# installed offline first: pip install --no-index --find-links shared/wheels taichi dill
# (the machine has no network). Results go to $OUT (or out/gpu_check) as log + JSON.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT_DIR="${OUT:-out/gpu_check}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1

DATA="${1:-}"
if [ -z "$DATA" ]; then
  for cand in shared/data/nerf_synthetic/lego_400 ../shared/data/nerf_synthetic/lego_400; do
    if [ -f "$cand/transforms_train.json" ]; then DATA="$cand"; break; fi
  done
fi
if [ -z "$DATA" ]; then
  echo "gpu_check: real lego not found; using the procedural scenes/lego (rendered on first use)"
  DATA=scenes/lego
fi
BUDGETS="${BUDGETS:-50 100 200}"
N_TEST="${N_TEST:-20}"

echo "== machine"; date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
if [ -d shared/wheels ] && ls shared/wheels/taichi-*.whl >/dev/null 2>&1; then
  echo "== installing the carried taichi wheel (offline)"
  python -m pip install -q --no-index --find-links shared/wheels taichi dill || echo "wheel install failed"
fi
python - <<'PY'
import torch, taichi as ti
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "taichi", ti.__version__)
from taichifield import runtime
print("taichifield arch:", runtime.init("auto"))
PY

if [ "${SKIP_TESTS:-0}" != "1" ]; then
  echo "== CUDA tests (pytest -q -k 'not vulkan')"
  timeout 900 python -m pytest -q -x -k "not vulkan" 2>&1 | tail -15
fi

echo "== kernel benchmarks (CUDA)"
[ -f bench/encodings.py ] && timeout 300 python bench/encodings.py --arch cuda 2>&1 | tail -20
[ -f bench/volume_rendering.py ] && timeout 300 python bench/volume_rendering.py --arch cuda 2>&1 | tail -20

echo "== NeRF lego at full resolution on CUDA: PSNR vs seconds (goal >= 35 dB in <= 200 s)"
for B in $BUDGETS; do
  RUN="$OUT_DIR/lego_${B}s"
  rm -rf "$RUN"
  timeout $((B + 600)) python -m taichifield.cli.main train nerf "$DATA" --arch cuda --time-budget "$B" \
      --steps 100000 --out "$RUN" --quiet
  timeout 600 python -m taichifield.cli.main eval nerf "$RUN/ckpt.pt" "$DATA" --split test --limit "$N_TEST" \
      --json --arch cuda > "$RUN/eval.json"
  python - "$RUN" "$B" <<'PY'
import json, sys
run, budget = sys.argv[1], float(sys.argv[2])
m = json.load(open(f"{run}/metrics.json")); e = json.load(open(f"{run}/eval.json"))
print(f"lego full res, budget {budget:.0f} s: {m['steps']} steps in {m['train_seconds']:.0f} s, "
      f"test PSNR {e['psnr']:.2f} dB, SSIM {e['ssim']:.4f} over {e['n_views']} views "
      f"(goal >= 35 dB in <= 200 s: {'met' if e['psnr'] >= 35 and budget <= 200 else 'not met'})")
PY
done
echo "== done; log in $LOG"
