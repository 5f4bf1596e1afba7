"""How much can the 3D Segmenter's decoder express at a given token stride? Perfect tokens, fitted.

    .venv/bin/python benchmark/diagnosis/decoder_ceiling.py out/cpu-track/data \\
        --strides 8 4 2 --out benchmark/results/diagnosis/decoder-ceiling.json

The 3D Segmenter predicts one K-vector per token (``head``), interpolates it trilinearly to the
voxels and adds a per-voxel linear term of the input (the skip connection,
:class:`panorooms3d.nn.segmenter3d.Segmenter3D`):

    logits(v) = trilinear(T)(v) + W_x x(v) + b,

with T the token logits on a grid of one token per ``stride``^3 voxels (stride = patch size x 2 per
patch merge: 8 for 3DSeg-T/B with 4-voxel patches). Whatever its encoder learns, the model's
prediction has this form. This script drops the encoder and fits T (free, one per token of every
room) together with W_x and b (shared by all rooms, as in the model) directly to the rooms' ground
truth by gradient descent on the cross-entropy (``--class-weights``: none or sqrt-inverse, as the
CPU track trains), then scores the argmax with the benchmark's own protocol
(:func:`panorooms3d.bench.metrics.room_metrics`, volume-weighted :func:`aggregate`, void included
and excluded). The result estimates the decoder's ceiling on these rooms at that stride: what
a model with this decoder scores if its encoder produced the best tokens for the cross-entropy.
It is not a strict bound (the fit minimises the weighted cross-entropy, not 1 - mIoU, and may stop
short of its minimum), but the token values it finds exist: a score this high is within the
decoder's reach. ``--no-skip`` drops the W_x x + b term (the Table 4 ablation).

Rooms are taken whole, padded at the far end with free space to a multiple of the stride (as
evaluation pads them), so the token grid starts at voxel 0 as in the model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def room_logits(x, tokens, stride: int, skip):
    """The decoder's logits (K, X, Y, Z) of one room: ``tokens`` (1, K, x', y', z') interpolated
    trilinearly to the padded grid (the model's ``F.interpolate``, ``align_corners=False``), cropped
    to ``x`` (C, X, Y, Z), plus ``W_x x + b`` when ``skip`` = (W_x, b) is given."""
    import torch
    import torch.nn.functional as F

    padded = [s * stride for s in tokens.shape[2:]]
    y = F.interpolate(tokens, size=padded, mode="trilinear", align_corners=False)[0]
    y = y[:, : x.shape[1], : x.shape[2], : x.shape[3]]
    if skip is not None:
        wx, b = skip
        y = y + torch.einsum("kc,cxyz->kxyz", wx, x) + b[:, None, None, None]
    return y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="a dataset (out/cpu-track/data)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--strides", type=int, nargs="+", default=[8, 4, 2])
    ap.add_argument("--steps", type=int, default=400, help="Adam steps over all rooms at once")
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--class-weights", default="sqrt-inverse", choices=["none", "sqrt-inverse"])
    ap.add_argument("--no-skip", action="store_true", help="without the skip term (Table 4's ablation)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark/results/diagnosis/decoder-ceiling.json")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from panorooms3d.bench.data import load_room
    from panorooms3d.bench.metrics import aggregate, room_metrics, room_weight
    from panorooms3d.bench.train import weights_from_counts
    from panorooms3d.run.atomic import write_json
    from panorooms3d.store.dataset import Dataset
    from panorooms3d.taxonomy import get_class_set

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ds = Dataset(args.data)
    k = get_class_set("paper30").num_classes
    uids = ds.split(args.split)
    if not uids:
        raise SystemExit(f"{args.data}: no rooms in split {args.split!r}")
    rooms = [load_room(ds, uid) for uid in uids]
    counts = np.bincount(np.concatenate([r.y.ravel() for r in rooms]), minlength=k)
    class_weight = None if args.class_weights == "none" else weights_from_counts(counts, args.class_weights)

    record = {"data": str(args.data), "split": args.split, "rooms": len(rooms), "steps": args.steps, "lr": args.lr,
              "class_weights": args.class_weights, "skip": not args.no_skip, "voxel_size": rooms[0].voxel_size,
              "strides": {}}
    for stride in args.strides:
        t0 = time.time()
        xs, ys, tokens = [], [], []
        for r in rooms:
            x = torch.as_tensor(r.x, dtype=torch.float32)
            size = x.shape[1:]
            padded = [int(np.ceil(s / stride)) * stride for s in size]
            xs.append(x)
            ys.append(torch.as_tensor(r.y, dtype=torch.long))
            tokens.append(torch.zeros(1, k, *[p // stride for p in padded], requires_grad=True))
        wx = torch.zeros(k, xs[0].shape[0], requires_grad=True)
        b = torch.zeros(k, requires_grad=True)
        skip = None if args.no_skip else (wx, b)
        opt = torch.optim.Adam(tokens + list(skip or ()), lr=args.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)

        total = sum(int(y.numel()) for y in ys)
        losses = []
        for step in range(args.steps):
            opt.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for i in range(len(rooms)):  # room by room: the gradient accumulates, memory stays one room
                loss = F.cross_entropy(room_logits(xs[i], tokens[i], stride, skip)[None], ys[i][None], weight=class_weight, reduction="sum")
                (loss / total).backward()
                loss_sum += float(loss.detach()) / total
            opt.step()
            sched.step()
            losses.append(loss_sum)
            if step % 50 == 0 or step == args.steps - 1:
                print(f"stride {stride} step {step} loss {loss_sum:.4f}", flush=True)
        per_room, no_void, weights = [], [], []
        with torch.no_grad():
            for i, r in enumerate(rooms):
                pred = room_logits(xs[i], tokens[i], stride, skip).argmax(0).numpy()
                per_room.append(room_metrics(pred, r.y, k))
                no_void.append(room_metrics(pred, r.y, k, exclude_void=True))
                weights.append(room_weight(r.y.shape))
        m, mv = aggregate(per_room, weights), aggregate(no_void, weights)
        record["strides"][str(stride)] = {
            "token_edge_m": stride * rooms[0].voxel_size, "mIoU": m["mIoU"], "aAcc": m["aAcc"],
            "mIoU_void_excluded": mv["mIoU"], "final_loss": losses[-1], "loss_at_80pct": losses[int(0.8 * args.steps)],
            "seconds": time.time() - t0,
        }
        print(f"stride {stride} ({stride * rooms[0].voxel_size:.2f} m tokens): mIoU {m['mIoU']:.1f}, "
              f"void-excluded {mv['mIoU']:.1f}, aAcc {m['aAcc']:.1f} ({time.time() - t0:.0f} s)", flush=True)
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
