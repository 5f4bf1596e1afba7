"""Why block training stalled: measured facts about training blocks and the input encoding.

    .venv/bin/python benchmark/diagnosis/diagnose.py DATA [DATA ...] --out benchmark/results/diagnosis/blocks.json

For each dataset (packed, ``panorooms3d build``) and each block setting it reports, over
``--samples`` training blocks drawn exactly as training draws them (``BlockDataset``):

- the share of void (class 0) voxels in the blocks and the share of blocks that are all void;
- the share of blocks that contain floor and ceiling (both), floor only, ceiling only;
- room heights in voxels against the block height;
- the encoding difference between training (``encode_input``/``encode_target`` without the
  weight array, as BlockDataset does) and evaluation (with it): share of voxels whose input or
  target differs, over the whole rooms.

The results are what docs/benchmark.md ("Why block training stalled") quotes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from panorooms3d.bench.data import BlockConfig, BlockDataset, encode_input, encode_target
from panorooms3d.store.dataset import Dataset
from panorooms3d.taxonomy import get_class_set

SETTINGS = {  # name: (block, sampling)
    "old demo (32^3, uniform)": (32, "uniform"),
    "old cpu suite (64^3, uniform)": (64, "uniform"),
    "64x64x48, surface": ([64, 64, 48], "surface"),
    "cpu track (64x64x32, uniform)": ([64, 64, 32], "uniform"),
    "cpu track (64x64x32, surface)": ([64, 64, 32], "surface"),
}


def blocks(data: Path, block, sampling: str, samples: int) -> dict:
    ds = Dataset(data)
    cs = get_class_set("paper30")
    floor, ceiling = cs.class_names.index("floor"), cs.class_names.index("ceiling")
    bd = BlockDataset(data, ds.split("train"), BlockConfig(block=block, sampling=sampling, seed=0))
    void, all_void, both, only_floor, only_ceiling = [], 0, 0, 0, 0
    for i in range(samples):
        _, y = bd[i]
        y = y.numpy()
        void.append(float((y == 0).mean()))
        all_void += int((y == 0).all())
        f, c = bool((y == floor).any()), bool((y == ceiling).any())
        both += f and c
        only_floor += f and not c
        only_ceiling += c and not f
    return {"void_share_mean": float(np.mean(void)), "void_share_median": float(np.median(void)),
            "all_void_blocks": all_void / samples, "floor_and_ceiling": both / samples,
            "floor_only": only_floor / samples, "ceiling_only": only_ceiling / samples, "samples": samples}


def encoding(data: Path) -> dict:
    ds = Dataset(data)
    n = dx = dy = observed = 0
    for uid in ds.split("train"):
        v = ds.load_volume(uid)
        a, b = encode_input(v.tsdf, v.rgb), encode_input(v.tsdf, v.rgb, v.weight)
        ya, yb = encode_target(v.label), encode_target(v.label, v.weight)
        n += v.tsdf.size
        observed += int((v.weight > 0).sum())
        dx += int((a != b).any(0).sum())
        dy += int((ya != yb).sum())
    return {"voxels": n, "observed_share": observed / n, "input_differs_share": dx / n, "target_differs_share": dy / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="+", type=Path)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    report = {}
    for data in a.data:
        ds = Dataset(data)
        rooms = ds.split("train")
        vs = ds.room_info(rooms[0]).voxel_size
        heights = [ds.room_info(u).shape[2] for u in rooms]
        entry = {"voxel_size_m": vs, "train_rooms": len(rooms),
                 "room_height_voxels": {"min": min(heights), "max": max(heights)},
                 "encoding": encoding(data), "blocks": {}}
        for name, (block, sampling) in SETTINGS.items():
            entry["blocks"][name] = {"block": block, "sampling": sampling, **blocks(data, block, sampling, a.samples)}
        report[str(data)] = entry
        print(json.dumps({str(data): entry}, indent=2))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
