"""How faithful is distillation's link from panorama pixels to voxels? The ground-truth volume seen through it.

    .venv/bin/python benchmark/diagnosis/projection_agreement.py out/cpu-track/data \\
        --out benchmark/results/diagnosis/projection-agreement.json

For every room of ``--split`` (default: the training rooms, the ones distillation visits), the
room's ground-truth voxel labels are rendered into its panorama with distillation's ``surface``
projection (:func:`panorooms3d.panorama.projection.render_equirect`: one ray per pixel, the first
zero crossing of the trilinear tsdf) at the CPU track's teacher size (128 x 256), and compared with
the panorama's own labels (nearest-neighbour resized, as the teacher sees them):

- ``trilinear``: the argmax of the one-hot labels interpolated at the hit (what KD's gradient sees);
- ``nearest``: the label of the voxel that contains the hit.

Only pixels whose ray hits a surface count (KD's projected logits are a constant 0 elsewhere). The
record has the share of pixels that hit, per mode the pixel agreement and the mIoU of a
confusion pooled over the rooms (:func:`panorooms3d.bench.metrics.metrics_from_confusion`, the
project's definition: the mean over the classes with a non-empty union, void excluded as the
panorama labels of hit pixels are never void), and how much of each room's ceiling was
fused: the share of the room's labelled footprint (columns with any label) whose column holds a
ceiling voxel (``ceiling_footprint_share``, mean over the rooms).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="a dataset with panoramas (out/cpu-track/data)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark/results/diagnosis/projection-agreement.json")
    args = ap.parse_args()

    import torch

    from panorooms3d.bench.data import load_room
    from panorooms3d.bench.metrics import confusion, metrics_from_confusion
    from panorooms3d.bench.teacher import prepare_label
    from panorooms3d.geometry import equirect_directions
    from panorooms3d.panorama.projection import render_equirect
    from panorooms3d.run.atomic import write_json
    from panorooms3d.store.dataset import Dataset
    from panorooms3d.taxonomy import get_class_set

    ds = Dataset(args.data)
    classes = get_class_set("paper30")
    k = classes.num_classes
    h, w = args.height, args.width
    dirs = np.asarray(equirect_directions(h, w), np.float64)
    pooled = {mode: np.zeros((k, k), np.int64) for mode in ("trilinear", "nearest")}
    hits = pixels = 0
    ceiling = classes.class_names.index("ceiling")
    ceiling_shares = []
    rooms = [uid for uid in ds.split(args.split) if ds.load_panorama(uid) is not None]
    if not rooms:
        raise SystemExit(f"{args.data}: no room of split {args.split!r} has a panorama")
    for uid in rooms:
        s = load_room(ds, uid)
        ceiling_shares.append(float((s.y == ceiling).any(2).sum() / max((s.y > 0).any(2).sum(), 1)))
        onehot = torch.nn.functional.one_hot(torch.as_tensor(s.y), k).permute(3, 0, 1, 2).float()
        res = render_equirect(torch.as_tensor(s.tsdf), onehot, origin=s.origin, voxel_size=s.voxel_size,
                              camera=s.camera, height=h, width=w)
        label = prepare_label(s.panorama_label, h, w).numpy()
        hit = res.hit.numpy()
        hits, pixels = hits + int(hit.sum()), pixels + hit.size
        points = np.asarray(s.camera)[None, None] + res.depth.numpy()[..., None] * dirs
        idx = np.floor((points - np.asarray(s.origin)) / s.voxel_size).astype(int)
        idx = np.stack([np.clip(idx[..., a], 0, s.y.shape[a] - 1) for a in range(3)], -1)
        predicted = {"trilinear": res.values.argmax(0).numpy(), "nearest": s.y[idx[..., 0], idx[..., 1], idx[..., 2]]}
        for mode, pred in predicted.items():
            pooled[mode] += confusion(pred[hit], label[hit], k)
    record = {"data": str(args.data), "split": args.split, "rooms": len(rooms), "size": [h, w],
              "hit_share": hits / pixels, "ceiling_footprint_share": float(np.mean(ceiling_shares)),
              "ceiling_footprint_share_range": [min(ceiling_shares), max(ceiling_shares)]}
    for mode, c in pooled.items():
        m = metrics_from_confusion(c, exclude=(0,))
        iou = m["per_class"]["IoU"]
        record[mode] = {"pixel_agreement": float(np.trace(c) / c.sum()), "mIoU_void_excluded": m["mIoU"],
                        "per_class_iou": {classes.class_names[i]: float(iou[i]) for i in np.flatnonzero(np.isfinite(iou))}}
        print(f"{mode}: {record[mode]['pixel_agreement']:.1%} of the hit pixels agree, void-excluded mIoU {record[mode]['mIoU_void_excluded']:.1f}")
    print(f"rays that hit a surface: {record['hit_share']:.1%} of the pixels; ceiling fused over "
          f"{record['ceiling_footprint_share']:.0%} of the rooms' footprint")
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
