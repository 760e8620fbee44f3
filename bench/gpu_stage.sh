#!/usr/bin/env bash
# Stage what bench/gpu_check.sh needs on a GPU machine into gpu_carry/ (git-ignored), to be
# named in the device tool's `carry`: the slim Taichi wheels and a lego subset (train split
# + the first N_TEST test views, no depth/normal maps). Budget: 64 MiB with the repository.
#     bash bench/gpu_stage.sh [SHARED]     # SHARED: default ../shared
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${1:-../shared}"
N_TEST="${N_TEST:-20}"
DEST=gpu_carry
rm -rf "$DEST" && mkdir -p "$DEST/wheels" "$DEST/lego/train" "$DEST/lego/test"
cp "$SHARED"/wheels/*.whl "$DEST/wheels/"
LEGO="$SHARED/data/nerf_synthetic/lego_400"
cp "$LEGO"/train/*.png "$DEST/lego/train/"
cp "$LEGO/transforms_train.json" "$DEST/lego/"
python3 - "$LEGO" "$DEST/lego" "$N_TEST" <<'PY'
import json, shutil, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
meta = json.load(open(f"{src}/transforms_test.json"))
meta["frames"] = meta["frames"][:n]
for f in meta["frames"]:
    shutil.copy(f"{src}/{f['file_path']}.png", f"{dst}/{f['file_path']}.png")
json.dump(meta, open(f"{dst}/transforms_test.json", "w"), indent=1)
PY
du -sh "$DEST"
