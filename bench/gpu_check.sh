#!/usr/bin/env bash
# The one GPU check (issue 10): CUDA tests, synchronised kernel benchmarks, host syncs per
# training step, and ONE NeRF run on lego 400x400 scored on 20 test views at 30/60/90/120 s.
# Fits one device call of <= 8 minutes; writes $OUT/summary.json, $OUT/summary.txt and the log.
#
# On the GPU machine (after `bash bench/gpu_stage.sh` here; carry gpu_carry):
#     bash bench/gpu_check.sh
# Rehearsal on a CPU (tiny budgets, arch cpu; same code path end to end):
#     REHEARSE=1 bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
OUT_DIR="${OUT:-out/gpu_check}"
mkdir -p "$OUT_DIR"
exec > >(tee -a "$OUT_DIR/gpu_check.log") 2>&1
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }

if [ "${REHEARSE:-0}" = "1" ]; then
  ARCH=cpu; PYTEST_T=240; SECTION_T=120
else
  ARCH=cuda; PYTEST_T=150; SECTION_T=300
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  if ! python3 -c "import taichi" 2>/dev/null; then
    echo "== installing the carried Taichi wheel (offline)"
    python3 -m pip install -q --no-index --find-links gpu_carry/wheels taichi dill || echo "wheel install failed"
  fi
  python3 -c "import taichifield" 2>/dev/null || \
    python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . || echo "project install failed"
fi
echo "== [$(elapsed) s] arch $ARCH"

# the CUDA legs of the suite and the device-contract tests (open3d/trimesh-only tests are not
# collected where those packages are missing)
echo "== [$(elapsed) s] tests"
TAICHIFIELD_REQUIRE_CUDA=$([ "$ARCH" = cuda ] && echo 1 || echo 0) timeout "$PYTEST_T" \
  python3 -m pytest -q -x -p no:cacheprovider --continue-on-collection-errors \
  -k "cuda or device_contract" tests 2>&1 | tail -25 | tee "$OUT_DIR/pytest.txt"

echo "== [$(elapsed) s] benchmarks and the NeRF run"
timeout "$SECTION_T" python3 bench/gpu_report.py --arch "$ARCH" --out "$OUT_DIR" \
  $([ "${REHEARSE:-0}" = "1" ] && echo --rehearse)
echo "== [$(elapsed) s] done"
