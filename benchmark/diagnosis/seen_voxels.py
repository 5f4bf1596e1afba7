"""Where in the volume can distillation act? Test-room voxels the panorama sees against the others, scored apart.

    .venv/bin/python benchmark/diagnosis/seen_voxels.py out/cpu-track/data \\
        --checkpoint finetune=out/x/runs/3dseg-t-finetune/seed0/distill/best.pt \\
        --checkpoint dist=out/x/runs/3dseg-t-dist/seed0/distill/best.pt \\
        --out benchmark/results/diagnosis/seen-voxels.json

The KD term reaches a room's volume only through its panorama: each pixel's value is the student's
logits interpolated trilinearly at the first surface its ray meets
(:func:`panorooms3d.bench.distill.project_logits`, ``surface``), so its gradient reaches the 8 voxels
around each hit point and no other. Here a voxel is **seen** when it is one of those, at the panorama
size given (the track's teacher: 128 x 256), found exactly as the KD gradient finds it: a volume of ones
is projected, its projected values summed over the hit pixels and differentiated; a voxel is seen when
its gradient is not 0.

For every room of ``--split`` (default: the test rooms, which KD never visits: what the student learnt
elsewhere, shown where a panorama would see it) and every checkpoint, the room is predicted as the
benchmark predicts it (:func:`panorooms3d.bench.evaluate.predict_logits`, ``--tta``), and two confusions
are pooled over the rooms, one over the seen voxels and one over the others. Recorded: the share of the
voxels and of the non-void labelled voxels that are seen, and per checkpoint the void-excluded mIoU and
the accuracy on non-void voxels of each part (pooled over the rooms, not the benchmark's volume-weighted
mean; :func:`panorooms3d.bench.metrics.metrics_from_confusion`, percent), and the two confusions (rows: the label,
columns: the prediction), which add up to the benchmark's pooled confusion of the same predictions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from panorooms3d.run.checkpoint import named_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def seen_mask(sample, height: int, width: int):
    """Bool (X, Y, Z): the voxels the surface projection of a (height, width) panorama interpolates from."""
    import torch

    from panorooms3d.bench.distill import project_logits

    ones = torch.ones((1, *sample.tsdf.shape), dtype=torch.float32, requires_grad=True)
    res = project_logits(sample, ones, height, width, "surface")
    res.values[:, res.hit].sum().backward()
    return (ones.grad[0] != 0).numpy()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="the dataset (out/cpu-track/data)")
    ap.add_argument("--checkpoint", type=named_checkpoint("--checkpoint"), action="append", required=True,
                    help="NAME=CHECKPOINT (repeatable): a block training's model.pt or a room-level run's best.pt")
    ap.add_argument("--split", default="test")
    ap.add_argument("--height", type=int, default=128, help="panorama height (the track's teacher: 128)")
    ap.add_argument("--width", type=int, default=256, help="panorama width (the track's teacher: 256)")
    ap.add_argument("--tta", default="d4", help="test-time augmentation, as [eval] tta (the track: d4)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark/results/diagnosis/seen-voxels.json")
    args = ap.parse_args(argv)

    import torch

    from panorooms3d.bench.data import load_room
    from panorooms3d.bench.evaluate import predict_logits
    from panorooms3d.bench.metrics import confusion, metrics_from_confusion
    from panorooms3d.bench.suite import load_model
    from panorooms3d.run.atomic import write_json
    from panorooms3d.store.dataset import Dataset
    from panorooms3d.taxonomy import get_class_set

    torch.set_num_threads(2)
    ds = Dataset(args.data)
    k = get_class_set("paper30").num_classes
    models = {name: load_model(path).eval() for name, path in args.checkpoint}
    rooms = ds.split(args.split)
    if not rooms:
        raise SystemExit(f"{args.data}: no rooms in split {args.split!r}")
    parts = ("seen", "unseen")
    conf = {n: {p: np.zeros((k, k), np.int64) for p in parts} for n in models}
    voxels = {"seen": 0, "all": 0, "seen_nonvoid": 0, "nonvoid": 0}
    for i, uid in enumerate(rooms):
        s = load_room(ds, uid)
        seen = seen_mask(s, args.height, args.width)
        y = np.asarray(s.y)
        voxels["seen"] += int(seen.sum())
        voxels["all"] += int(seen.size)
        voxels["seen_nonvoid"] += int((seen & (y > 0)).sum())
        voxels["nonvoid"] += int((y > 0).sum())
        for name, model in models.items():
            pred = predict_logits(model, s.x, tta=args.tta).argmax(0).numpy()
            conf[name]["seen"] += confusion(pred[seen], y[seen], k)
            conf[name]["unseen"] += confusion(pred[~seen], y[~seen], k)
        print(f"[{i + 1}/{len(rooms)}] {uid}: {100.0 * seen.mean():.1f}% of the voxels seen", flush=True)

    record = {"data": str(args.data), "split": args.split, "rooms": len(rooms), "panorama": [args.height, args.width],
              "tta": args.tta, "checkpoints": {name: str(path) for name, path in args.checkpoint},
              "voxels": voxels, "seen_share": 100.0 * voxels["seen"] / voxels["all"],
              "seen_share_of_nonvoid": 100.0 * voxels["seen_nonvoid"] / max(voxels["nonvoid"], 1), "models": {}}
    print(f"seen: {record['seen_share']:.1f}% of the voxels, {record['seen_share_of_nonvoid']:.1f}% of the non-void ones")
    for name in models:
        row = {}
        for p in parts:
            c = conf[name][p]
            labelled = c[1:, :]  # rows: the label, columns: the prediction; voxels labelled other than void
            row[p] = {"mIoU_void_excluded": metrics_from_confusion(c, exclude=(0,))["mIoU"],
                      "accuracy_nonvoid": 100.0 * float(np.trace(c[1:, 1:]) / max(labelled.sum(), 1)),
                      "confusion": c.tolist()}
        record["models"][name] = row
        print(f"{name}: seen mIoU {row['seen']['mIoU_void_excluded']:.1f} (non-void accuracy "
              f"{row['seen']['accuracy_nonvoid']:.1f}%), unseen {row['unseen']['mIoU_void_excluded']:.1f} "
              f"({row['unseen']['accuracy_nonvoid']:.1f}%)")
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
