"""Two test-time changes to the CPU track's 3DSeg-T predictions, measured against its evaluation (``tta = "d4"``).

    .venv/bin/python benchmark/diagnosis/test_time_probes.py out/cpu-track/data \\
        out/cpu-track/bench/pretrain/3dseg-t-<seed 0> ... --out benchmark/results/diagnosis/test-time-probes.json

The track's 3DSeg-T misses mIoU 60 by 1.4 points with every training lever inside its 2 hours measured
(docs/benchmark.md, "What moved 3DSeg-T"). This asks whether either of two changes at test time, which cost no
training, closes it. Both are probes: the project's evaluation is unchanged.

- **The class prior taken back out.** Block training weights its cross-entropy by the classes' frequencies to the
  power -1/2 (``class_weights = "sqrt-inverse"``). A model trained so estimates probabilities proportional to
  ``w_c p(c | x)``, so dividing its averaged probabilities by ``w_c ** alpha`` moves it back toward the data's prior
  (alpha = 1: all the way; Menon et al. 2021, "logit adjustment"). The weights are the training run's own
  (``train.training_blocks`` of its ``config.json``). alpha is chosen on the validation rooms (the mean over the
  given trainings), then scored once on the test rooms.
- **The patch grid shifted.** 3DSeg-T cuts a room into 4-voxel patches from its corner, and its eight test-time
  passes (mirrored and turned about z) see the patch grid at other phases only where a room's size is not a
  multiple of 4. A pass on the room moved by 2 voxels (free space put before it) and moved back adds grid phases:
  ``d4+xy2`` averages the eight passes of the room as it is with the eight of the room moved by 2 voxels in x and
  y, ``d4+z2`` with those of the room moved by 2 voxels up (a vertical phase training never shows: the track's rooms
  are under 64 voxels high and padded to 64, so every training block starts at a room's first voxel in z).

Each way is paired with the track's ``d4`` on the same rooms and seeds: the difference in mIoU (the paper's
protocol) and void-excluded mIoU, with its 95% interval over rooms and seeds (:func:`panorooms3d.bench.stats.compare`).
The ``d4`` scores are also checked against the suite's own ``metrics.json`` when ``--runs`` names them.
Not part of ``make bench``: 10 minutes for the track's 3 trainings on 2 cores, beside a test run. Recorded with
(``out/fn5k3`` a run of the track from nothing whose trainings equal the recording's, bit for bit)::

    P=out/fn5k3/bench; .venv/bin/python benchmark/diagnosis/test_time_probes.py out/fn5k3/data \
        $P/pretrain/3dseg-t-5624a283 $P/pretrain/3dseg-t-005abca0 $P/pretrain/3dseg-t-3205d3aa \
        --runs $P/runs/3dseg-t/seed0 $P/runs/3dseg-t/seed1 $P/runs/3dseg-t/seed2 \
        --out benchmark/results/diagnosis/test-time-probes.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from panorooms3d.bench.data import free_space_input, load_room
from panorooms3d.bench.evaluate import RoomScores, predict_logits
from panorooms3d.bench.metrics import room_weight
from panorooms3d.bench.stats import RunRecords, bootstrap, compare
from panorooms3d.bench.suite import load_model
from panorooms3d.bench.train import TrainConfig, training_blocks
from panorooms3d.run.atomic import write_json
from panorooms3d.store.dataset import Dataset
from panorooms3d.taxonomy import get_class_set

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: way -> the shifts (x, y, z voxels of free space put before the room) whose d4 passes are averaged
SHIFTS = {"d4": ((0, 0, 0),), "d4+xy2": ((0, 0, 0), (2, 2, 0)), "d4+z2": ((0, 0, 0), (0, 0, 2))}


def shifted_probs(net: torch.nn.Module, x: np.ndarray, shift: tuple[int, int, int]) -> torch.Tensor:
    """The d4-averaged class probabilities (K, X, Y, Z) of room ``x`` moved by ``shift`` voxels and moved back."""
    xt = torch.as_tensor(x)
    if any(shift):
        big = free_space_input((1, *[n + s for n, s in zip(xt.shape[1:], shift)]))[0]
        big[:, shift[0]:, shift[1]:, shift[2]:] = xt
        xt = big
    return predict_logits(net, xt, tta="d4")[:, shift[0]:, shift[1]:, shift[2]:].exp()


def training_weights(data: Path, config: dict) -> np.ndarray:
    """The class weights (K,) the training of ``config`` (its ``config.json``) used, on the dataset ``data``."""
    w = training_blocks(dataclasses.replace(TrainConfig(**config), data=str(data))).weights
    return np.ones(get_class_set(config["class_set"]).num_classes) if w is None else w.numpy().astype(np.float64)


def score(preds: dict, rooms: dict, class_set: str) -> dict:
    """An evaluation result (``evaluate``'s keys that :mod:`stats` reads) of predictions {uid: (X, Y, Z)}."""
    scored = RoomScores(class_set)
    for uid, pred in preds.items():
        scored.add(uid, pred, rooms[uid], room_weight(rooms[uid].shape, "project"))
    return scored.result()


def predictions(net, ds: Dataset, uids: list[str], class_set: str, log_w: torch.Tensor,
                progress: str) -> tuple[dict, dict]:
    """({way: {uid: prediction}} for every shift way and every alpha of the prior on the d4 probabilities,
    {uid: labels})."""
    out: dict = {}
    labels = {}
    for i, uid in enumerate(uids):
        sample = load_room(ds, uid, class_set)
        labels[uid] = sample.y
        probs = {s: shifted_probs(net, sample.x, s) for s in {s for shifts in SHIFTS.values() for s in shifts}}
        for way, shifts in SHIFTS.items():
            total = sum(probs[s] for s in shifts)
            out.setdefault(way, {})[uid] = total.argmax(0).numpy()
        logp = probs[(0, 0, 0)].clamp_min(1e-30).log()
        for a in ALPHAS[1:]:
            out.setdefault(f"prior {a:g}", {})[uid] = (logp - a * log_w).argmax(0).numpy()
        print(f"  {progress}: {i + 1}/{len(uids)} {uid}", flush=True)
    return out, labels


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the track's dataset")
    ap.add_argument("trainings", type=Path, nargs="+", help="block-training folders (config.json, model.pt), one a seed")
    ap.add_argument("--runs", type=Path, nargs="*", default=[],
                    help="the suite's runs/<name>/seed<N> folders of the same seeds, in the same order: their "
                         "metrics.json must equal this script's d4 scores")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    ds = Dataset(a.data)
    results: dict = {"val": {}, "test": {}}
    seeds, timing = [], {}
    for folder in a.trainings:
        config = json.loads((folder / "config.json").read_text())
        seeds.append(str(config["seed"]))
        class_set = config["class_set"]
        log_w = torch.tensor(np.log(training_weights(a.data, config)), dtype=torch.float32)[:, None, None, None]
        net = load_model(folder / "model.pt", config["model"]).eval()
        for split in ("val", "test"):
            t0 = time.time()
            preds, labels = predictions(net, ds, ds.split(split), class_set, log_w, f"seed {config['seed']} {split}")
            timing[f"seed {config['seed']} {split}"] = round(time.time() - t0, 1)
            for way, p in preds.items():
                results[split].setdefault(way, []).append(score(p, labels, class_set))
    summary: dict = {"trainings": [str(f) for f in a.trainings], "seeds": seeds, "seconds": timing, "val": {},
                     "test": {}}
    for split in ("val", "test"):
        base = RunRecords.from_metrics(results[split]["d4"], seeds)
        for way, res in results[split].items():
            rec = RunRecords.from_metrics(res, seeds)
            entry = {}
            for agg in ("paper", "void_excluded"):
                iv = bootstrap(rec, "mIoU", agg)
                entry[agg] = {"mIoU": round(iv.mean, 2), "interval": [round(iv.lo, 2), round(iv.hi, 2)]}
                if way != "d4":
                    c = compare(rec, base, "mIoU", agg)
                    entry[agg]["minus_d4"] = [round(c.mean, 2), round(c.lo, 2), round(c.hi, 2)]
                    entry[agg]["verdict_better_than_d4"] = c.verdict
            entry["by_seed"] = [round(r["metrics"]["mIoU"], 2) for r in res]
            summary[split][way] = entry
    # alpha chosen on the validation rooms (the mean over seeds), scored once on the test rooms
    val_by_alpha = {a_: summary["val"]["d4" if a_ == 0 else f"prior {a_:g}"]["paper"]["mIoU"] for a_ in ALPHAS}
    best = max(val_by_alpha, key=lambda a_: (val_by_alpha[a_], -a_))
    summary["prior_alpha_on_val"] = {"val_mIoU_by_alpha": {f"{k_:g}": v for k_, v in val_by_alpha.items()},
                                     "chosen": best,
                                     "test": summary["test"]["d4" if best == 0 else f"prior {best:g}"]}
    if a.runs:
        recorded = [json.loads((r / "metrics.json").read_text()) for r in a.runs]
        mine = results["test"]["d4"]
        summary["d4_equals_suite"] = all(
            abs(m["metrics"]["mIoU"] - r["metrics"]["mIoU"]) < 1e-9 for m, r in zip(mine, recorded))
        if not summary["d4_equals_suite"]:
            print("warning: d4 scores differ from the suite's metrics.json:",
                  [(m["metrics"]["mIoU"], r["metrics"]["mIoU"]) for m, r in zip(mine, recorded)])
    for split in ("val", "test"):
        for way, e in summary[split].items():
            diff = e["paper"].get("minus_d4")
            print(f"{split:4s} {way:10s} mIoU {e['paper']['mIoU']:6.2f} void-excl. {e['void_excluded']['mIoU']:6.2f}"
                  + (f"  - d4 {diff[0]:+.2f} [{diff[1]:+.2f}, {diff[2]:+.2f}]" if diff else ""))
    print(f"prior: alpha {best:g} chosen on the validation rooms; on the test rooms "
          f"{summary['prior_alpha_on_val']['test']['paper']}")
    if a.out:
        write_json(a.out, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
