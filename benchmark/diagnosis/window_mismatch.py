"""Do block-trained 3D Segmenters lose at evaluation because whole rooms change their attention windows?

    .venv/bin/python benchmark/diagnosis/window_mismatch.py out/more/merged \\
        --checkpoint blocks=out/cpu-track-more-dist/pretrain/3dseg-t-b436f599/model.pt \\
        --checkpoint finetune=out/cpu-track-more-dist/runs/3dseg-t-130rooms-finetune/seed0/distill/best.pt \\
        --out benchmark/results/diagnosis/window-mismatch.json

The 3D Segmenter attends inside windows of 8 tokens, and along an axis whose token grid is no
longer than the window the window shrinks to the grid and the shift is dropped (Video Swin's
``get_window_size``, :func:`panorooms3d.nn.segmenter3d.effective_window`). So the attention
pattern depends on the input's shape: a model trained on 64 x 64 x 32 blocks (4-voxel patches) has
windows of 8 x 8 x 8 tokens shifted in x and y only in its first stage, and in its second stage
(8 x 8 x 4 tokens) one unshifted window over the whole block. A whole room padded to multiples of
32 (evaluation, :func:`panorooms3d.bench.evaluate.forward_room`), 64 voxels high, has its first
stage shifted in z too and its second stage cut into shifted, masked windows: attention patterns the
block training never showed. Room-level finetuning trains on exactly those.

For each ``--checkpoint`` this script scores the ``--split`` rooms twice with the benchmark's own
protocol (:func:`panorooms3d.bench.evaluate.scores`):

- ``whole``: one pass over the room, as the benchmark evaluates;
- ``tiled``: tiles of the training block's shape (``--tile``, default the checkpoint's ``block``)
  with ``--overlap`` voxels of context a side, each padded with free space like a training block's
  crop of a padded room; every voxel takes the logits of the tile whose core holds it (the
  evaluation's own sliding window, :func:`panorooms3d.bench.evaluate.predict_logits`, with
  ``max_voxels = 0``).

and records the effective window and shift of every stage for the training block and for each
room as evaluation pads it. If ``tiled`` scores the block-trained model well above ``whole``, the
benchmark's whole-room evaluation costs block-trained models for a reason that is not what they
learned, and part of what room-level finetuning adds is adapting to the evaluation's windows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from panorooms3d.run.checkpoint import named_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def stage_windows(model, padded: tuple[int, int, int]) -> list[dict]:
    """The effective window and shift (in tokens) of each stage of a 3D Segmenter on an input of
    ``padded`` voxels (already a multiple of the model's stride)."""
    from panorooms3d.nn.segmenter3d import effective_window

    window = tuple(model.window)
    shift = tuple(w // 2 for w in window)
    rows = []
    for s in range(len(model.depths)):
        grid = tuple(n // (model.patch_size * 2**s) for n in padded)
        w, sh = effective_window(grid, window, shift)
        rows.append({"stage": s + 1, "tokens": list(grid), "window": list(w), "shift": list(sh)})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="the dataset (out/more/merged)")
    ap.add_argument("--checkpoint", type=named_checkpoint("--checkpoint"), action="append", required=True,
                    help="NAME=CHECKPOINT (repeatable): a block training's model.pt or a finetuned best.pt")
    ap.add_argument("--split", default="test")
    ap.add_argument("--tile", type=int, nargs=3, default=None,
                    help="tile shape in voxels (default: the block of the first checkpoint's block training)")
    ap.add_argument("--overlap", type=int, nargs=3, default=[16, 16, 8],
                    help="context voxels a side per axis (default: 16 16 8)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark/results/diagnosis/window-mismatch.json")
    args = ap.parse_args(argv)

    import torch

    from panorooms3d.bench.evaluate import PAD_TO, evaluate
    from panorooms3d.bench.suite import load_model
    from panorooms3d.run.atomic import write_json
    from panorooms3d.run.checkpoint import load_checkpoint
    from panorooms3d.store.dataset import Dataset

    torch.set_num_threads(args.threads)
    ds = Dataset(args.data)
    uids = ds.split(args.split)
    tile = args.tile
    if tile is None:
        cfg = load_checkpoint(args.checkpoint[0][1], "cpu").get("config", {})
        block = cfg.get("block")
        if not block:
            raise SystemExit(f"{args.checkpoint[0][1]}: its config names no block; pass --tile")
        tile = [block] * 3 if isinstance(block, int) else list(block)
    tile, overlap = tuple(int(t) for t in tile), tuple(int(o) for o in args.overlap)
    record = {"data": str(args.data), "split": args.split, "rooms": uids, "tile": list(tile),
              "overlap": list(overlap), "checkpoints": {}}
    modes = {"whole": {}, "tiled": {"max_voxels": 0, "window": tile, "overlap": overlap}}
    for name, path in args.checkpoint:
        model = load_model(path).eval()
        if "windows" not in record:  # the rooms' shapes as evaluation pads them
            record["windows"] = {"training block": stage_windows(model, tile)}
            for uid in uids:  # voxels (x, y, z) from the manifest
                shape = ds.room_info(uid).shape
                record["windows"][uid] = stage_windows(model, tuple(n + (-n) % PAD_TO for n in shape))
        entry = {"checkpoint": str(path)}
        for mode, how in modes.items():
            t0 = time.time()
            result = evaluate(model, args.data, split=args.split, progress=False, **how)
            entry[mode] = {"mIoU": result["metrics"]["mIoU"], "void_excluded_mIoU": result["void_excluded"]["mIoU"],
                           "per_class_iou": result["per_class_iou"],
                           "per_room_mIoU": {r["uid"]: r["mIoU"] for r in result["rooms"]},
                           "seconds": round(time.time() - t0, 1)}
            print(f"{name:>12} {mode:>6}: mIoU {entry[mode]['mIoU']:.1f}, void-excluded "
                  f"{entry[mode]['void_excluded_mIoU']:.1f} ({entry[mode]['seconds']} s)", flush=True)
        record["checkpoints"][name] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
