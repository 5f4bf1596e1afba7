#!/usr/bin/env bash
# The CPU track (benchmark/cpu-track.toml): its data and its suite, on 2 CPU cores, resumable.
# Run it again after an interruption: every step skips what is finished (synth is deterministic,
# build/panoramas skip staged rooms, the suite skips finished steps and resumes trainings).
#   bash pipelines/cpu-track.sh            # outputs in $TRACK_OUT (default out/cpu-track)
# Why these sizes: docs/benchmark.md, "The CPU track". Two rooms at a time (--workers 2): a room's Blender
# renders on both cores but builds its scene, fuses and writes on one (the same bytes, docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${TRACK_OUT:-out/cpu-track}
P=".venv/bin/panorooms3d"
[ -x "$P" ] || make setup
mkdir -p "$OUT"
t0=$(date +%s)

echo "== 1/4 the 3D dataset: 20 synthetic houses (51 rooms), 8 cm voxels, 24 train / 10 val / 17 test rooms,"
echo "   coverage-driven views (build's default: ceilings fused; random views left them half fused)"
# synth writes its report last: no report means a cut-short synth, which is rerun (it is deterministic)
[ -f "$OUT/front/synth_report.json" ] || $P synth --out "$OUT/front" --houses 20 --seed 1
houses=$(.venv/bin/python -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["houses"]))' "$OUT/front/synth_report.json")
if [ "$houses" != 20 ]; then  # e.g. a folder of the first track (16 houses, 48 random views)
  echo "error: $OUT/front holds $houses houses, not this track's 20 (its synth_report.json): it was made by an earlier version." >&2
  echo "       Use another folder (TRACK_OUT=out/cpu-track-2 bash $0) or delete $OUT/front and $OUT/data." >&2
  exit 2
fi
$P build --front "$OUT/front" --out "$OUT/data" --width 192 --height 144 --skybox-size 256 \
  --pano-height 256 --voxel-size 0.08 --splits 0.47,0.2,0.33 --seed 0 --delete-frames --workers 2

echo "== 2/4 the 2D data: 100 other synthetic houses (249 rooms), panoramas only (skybox render, no volume),"
echo "   rendered at the teacher's 128 x 256 (1.7x sooner than 256 x 512 resized)"
[ -f "$OUT/front-2d/synth_report.json" ] || $P synth --out "$OUT/front-2d" --houses 100 --seed 2
$P panoramas --front "$OUT/front-2d" --out "$OUT/panos" --skybox-size 128 --pano-height 128 --seed 0 --workers 2 || {
  echo "If the error above says rooms are staged with other settings, $OUT/panos was made by an earlier version of" >&2
  echo "this track (256 x 512 panoramas): delete it (rm -rf $OUT/panos) and run this script again." >&2
  exit 2
}

echo "== 3/4 check both"
$P info "$OUT/data" --verify
$P info "$OUT/panos" --verify

echo "== 4/4 the suite (teacher.panoramas = ../panos is relative to the dataset folder)"
$P benchmark run benchmark/cpu-track.toml --data "$OUT/data" --out "$OUT/bench"
echo "== done in $(( $(date +%s) - t0 )) s; tables in $OUT/bench/table.md"
