"""How the free-space padding of a room at evaluation changes a 3D Segmenter's scores (a probe; no training).

    .venv/bin/python benchmark/diagnosis/eval_padding.py out/cpu-track/data \\
        out/cpu-track/bench/pretrain/3dseg-t-<seed 0> ... --out benchmark/results/diagnosis/eval-padding.json

Evaluation pads each room with free space to multiples of 32 voxels (``evaluate.PAD_TO``): the track's rooms, 37-42
voxels high, become 64 high, as its 64^3 training blocks are. A model trained on 64 x 64 x 48 blocks (rooms padded
to 48 in z, ``[train] pad_to``) sees 48 voxels of height in training, and the attention inside it pads the 12 tokens
to 16 with zeros; evaluated at 64 the last 4 tokens are free space instead. This scores each training both ways,
``pad 32`` (the evaluation's: z to 64) and ``pad z16`` (x and y to 32, z to 16: the track's rooms to 48), with the
track's 8 passes a room (``tta = "d4"``), on the validation and the test rooms, and pairs them over rooms and seeds
(:func:`panorooms3d.bench.stats.compare`). Choose on the validation rooms; the test rooms only report.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from panorooms3d.bench.data import load_room
from panorooms3d.bench.evaluate import RoomScores, predict_logits
from panorooms3d.bench.metrics import room_weight
from panorooms3d.bench.stats import RunRecords, bootstrap, compare
from panorooms3d.bench.suite import load_model
from panorooms3d.run.atomic import write_json
from panorooms3d.store.dataset import Dataset

WAYS = {"pad 32": 32, "pad z16": (32, 32, 16)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the track's dataset")
    ap.add_argument("trainings", type=Path, nargs="+", help="block-training folders (config.json, model.pt), one a seed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    ds = Dataset(a.data)
    results: dict = {split: {way: [] for way in WAYS} for split in ("val", "test")}
    seeds, seconds = [], {}
    for folder in a.trainings:
        config = json.loads((folder / "config.json").read_text())
        seeds.append(str(config["seed"]))
        net = load_model(folder / "model.pt", config["model"]).eval()
        for split in ("val", "test"):
            t0 = time.time()
            scores = {way: RoomScores(config["class_set"]) for way in WAYS}
            for uid in ds.split(split):
                sample = load_room(ds, uid, config["class_set"])
                for way, pad in WAYS.items():
                    pred = predict_logits(net, sample.x, pad_to=pad, tta="d4").argmax(0).numpy()
                    scores[way].add(uid, pred, sample.y, room_weight(sample.y.shape, "project"))
            for way in WAYS:
                results[split][way].append(scores[way].result())
            seconds[f"seed {config['seed']} {split}"] = round(time.time() - t0, 1)
            print(f"seed {config['seed']} {split}: " + ", ".join(
                f"{w} {results[split][w][-1]['metrics']['mIoU']:.2f}" for w in WAYS), flush=True)
    summary: dict = {"trainings": [str(f) for f in a.trainings], "seeds": seeds, "seconds": seconds,
                     "ways": {k: v if isinstance(v, int) else list(v) for k, v in WAYS.items()}}
    for split in ("val", "test"):
        base = RunRecords.from_metrics(results[split]["pad 32"], seeds)
        summary[split] = {}
        for way, res in results[split].items():
            rec = RunRecords.from_metrics(res, seeds)
            entry: dict = {"by_seed": [round(r["metrics"]["mIoU"], 2) for r in res]}
            for agg in ("paper", "void_excluded"):
                iv = bootstrap(rec, "mIoU", agg)
                entry[agg] = {"mIoU": round(iv.mean, 2), "interval": [round(iv.lo, 2), round(iv.hi, 2)]}
                if way != "pad 32":
                    c = compare(rec, base, "mIoU", agg)
                    entry[agg]["minus_pad_32"] = [round(c.mean, 2), round(c.lo, 2), round(c.hi, 2)]
            summary[split][way] = entry
            diff = entry["paper"].get("minus_pad_32")
            print(f"{split:4s} {way:8s} mIoU {entry['paper']['mIoU']:6.2f}"
                  + (f"  minus pad 32: {diff[0]:+.2f} [{diff[1]:+.2f}, {diff[2]:+.2f}]" if diff else ""))
    if a.out:
        write_json(a.out, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
