"""benchmark/diagnosis/seen_voxels.py on box rooms, whose surfaces are known: the seen voxels straddle them."""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from bench_rooms import BED, CEILING, FLOOR, WALL, make_dataset
from script_module import load_script


def test_seen_voxels_straddle_the_surfaces_and_the_parts_add_up(tmp_path):
    from panorooms3d.bench.data import load_room
    from panorooms3d.bench.evaluate import evaluate
    from panorooms3d.bench.train import save_checkpoint
    from panorooms3d.nn.registry import build_model
    from panorooms3d.store.dataset import Dataset
    from panorooms3d.taxonomy import get_class_set

    script = load_script("benchmark/diagnosis/seen_voxels.py")
    data = make_dataset(tmp_path / "data", n_rooms=3)
    ds = Dataset(data)
    room = load_room(ds, ds.split("test")[0])
    seen = script.seen_mask(room, 64, 128)
    # the rays stop at the zero crossing of the trilinear tsdf, so every voxel that interpolates a hit is within one
    # voxel diagonal of a surface: |sd| < sqrt(3) voxels, |tsdf| < sqrt(3) / 3 with the box room's truncation of 3
    assert seen.any() and np.abs(room.tsdf[seen]).max() < math.sqrt(3) / 3
    # from the room's centre a panorama sees the floor, the ceiling, the walls and the bed
    wanted = get_class_set("paper30").map(np.array([FLOOR, CEILING, WALL, BED], np.uint8))
    assert {int(c) for c in np.unique(room.y[seen])} >= {int(c) for c in wanted}
    # each wall plane is met between the voxel centres either side of it: at x = 0 (centres -0.02 and 0.02 m) the
    # voxels of index 0 and 1 in x, and every seen voxel of the wall's middle (away from the floor, ceiling and
    # the other walls, above the bed, which is at most 0.3 m tall: z centres 0.46-0.62 m) is one of those two
    x_wall = seen[:, 10:-10, 12:-5]
    assert x_wall[:2].all(axis=0).mean() > 0.9 and not x_wall[2:x_wall.shape[0] // 2].any()
    torch.manual_seed(0)
    k = 30
    overrides = {"depths": [1, 1], "num_heads": [3, 3]}
    model = build_model("3dseg-t", num_classes=k, in_channels=4, **overrides)
    ckpt = tmp_path / "student.pt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "config": {"model": "3dseg-t", "model_overrides": overrides}})
    out = tmp_path / "seen.json"
    script.main([str(data), "--checkpoint", f"a={ckpt}", "--checkpoint", f"b={ckpt}", "--tta", "none",
                 "--height", "64", "--width", "128", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["rooms"] == 1 and record["voxels"]["seen"] == int(seen.sum()) and record["voxels"]["all"] == seen.size
    assert record["seen_share"] == 100.0 * seen.mean()
    a, b = record["models"]["a"], record["models"]["b"]
    assert a == b
    # the two parts are the benchmark's pooled confusion of the same predictions, split
    whole = np.asarray(evaluate(model, data, split="test", progress=False)["confusion"])
    assert (np.asarray(a["seen"]["confusion"]) + np.asarray(a["unseen"]["confusion"]) == whole).all()
    assert np.asarray(a["seen"]["confusion"]).sum() == int(seen.sum())
