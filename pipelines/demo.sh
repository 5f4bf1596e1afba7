#!/usr/bin/env bash
# The demo (`make demo`): a small synthetic dataset built end to end, then a tiny benchmark suite,
# all on the CPU. Output goes to $DEMO_OUT (default out/demo); run it again to resume.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-out/demo}
P=".venv/bin/panorooms3d"
PY=".venv/bin/python"
mkdir -p "$OUT"
t0=$(date +%s)

echo "== 1/6 synthesise houses in the 3D-FRONT layout"
[ -f "$OUT/front/synth_report.json" ] || $P synth --out "$OUT/front" --houses 8 --seed 0  # its report is written last
$P scenes --front "$OUT/front"

echo "== 2/6 export one room's labelled mesh (world frame, Z up)"
room=$($P scenes --front "$OUT/front" --json | $PY -c "import json,sys; print(json.load(sys.stdin)['houses'][0]['rooms'][0]['uid'])")
$P export --front "$OUT/front" --room "$room" --out "$OUT/room.ply"

# Coverage-driven views (build's default): about 22 frames a room, and they see the ceilings too
# (random views left about half of each ceiling unfused: docs/benchmark.md, "The demo").
echo "== 3/6 render, fuse and make panoramas for every room; pack the dataset (8 cm voxels: the CPU track's size)"
$P build --front "$OUT/front" --out "$OUT/data" --width 192 --height 144 --skybox-size 256 \
  --pano-height 256 --voxel-size 0.08 --splits 0.6,0.2,0.2 --seed 0

echo "== 4/6 check the dataset"
$P info "$OUT/data" --verify
$P view "$OUT/data" "$room" --out "$OUT/room_slices.png"
$P view "$OUT/data" "$room" --out "$OUT/room_fused.ply" --color class
$PY - "$OUT" <<'PYEOF'
import sys
from pathlib import Path
from panorooms3d.panorama.equirect import save_panorama_picture
from panorooms3d.store.dataset import Dataset
out = Path(sys.argv[1])
ds = Dataset(out / "data")
for uid in ds.rooms[:2]:
    pano = ds.load_panorama(uid)
    if pano is not None:
        save_panorama_picture(pano, out / f"pano_{uid.replace('/', '__')}.png")
print(f"panorama pictures in {out}")
PYEOF

echo "== 5/6 a tiny benchmark suite (train, distil, evaluate) on the CPU"
$P benchmark run benchmark/demo.toml --data "$OUT/data" --out "$OUT/bench"

echo "== 6/6 done in $(( $(date +%s) - t0 )) s; outputs in $OUT"
ls "$OUT"
