"""The CPU track's panorama teacher with one or more settings changed: its curve, and its score on the test panoramas.

    .venv/bin/python benchmark/diagnosis/teacher_length.py out/track-r6/data --work out/teacher-screen/ema-b2-2400 \
        --batch-size 2 --iterations 2400 --ema 0.99 --out benchmark/results/cpu-track-teacher-screen/ema-b2-2400.json

Trains the teacher with the settings of ``benchmark/cpu-track.toml``'s ``[teacher]`` section (the same
panoramas, model, class weights, validation and precision as the suite's teacher) except the ones given here
(``--iterations``, ``--batch-size``, ``--lr``, ``--ema``, ``--seed``; the poly schedule stretches with the
iterations), then scores the finished ``teacher.pt`` on the test panoramas as the suite does. The record
holds the settings, the validation curve, its last-20% gain (``report.curve_summary``, the suite's
criterion), the test mIoU with its 95% interval over the test panoramas (one seed: panoramas only), the
rooms' records, and the seconds of training this call. ``--versus RECORD`` adds the paired difference
(this teacher minus that record's, over the same panoramas) with its interval. The work folder resumes when
killed; a finished one is only scored again.
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="the track's dataset folder (its panos folder beside it)")
    ap.add_argument("--work", type=Path, required=True, help="the teacher's run folder (resumed if it exists)")
    ap.add_argument("--out", type=Path, required=True, help="the JSON record to write")
    ap.add_argument("--iterations", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--ema", type=float, help="decay of the weight average (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--suite", type=Path, default=ROOT / "benchmark" / "cpu-track.toml")
    ap.add_argument("--versus", type=Path, help="another record of this script: the paired difference to it")
    args = ap.parse_args()

    from panorooms3d.bench import stats
    from panorooms3d.bench.report import curve_summary, validation_curve
    from panorooms3d.bench.teacher import TEACHER, evaluate_teacher, train_teacher
    from panorooms3d.run.atomic import write_json

    suite = tomllib.loads(args.suite.read_text())
    settings = dict(suite["teacher"])
    settings.pop("teacher_input", None)  # how the suite feeds its cache, not a training setting
    changed = {"iterations": args.iterations, "batch_size": args.batch_size, "lr": args.lr, "ema": args.ema}
    settings.update({k: v for k, v in changed.items() if v is not None})
    settings.update(seed=args.seed, class_set=suite["settings"]["class_set"], device=suite["settings"]["device"])
    t0 = time.perf_counter()
    train_teacher(args.data, args.work, progress=False, **settings)
    seconds = time.perf_counter() - t0
    log = [json.loads(line) for line in (args.work / "train_log.jsonl").read_text().splitlines()]
    curve = validation_curve(log)
    steps = [r for r in log if "loss" in r]
    result = evaluate_teacher(args.work / TEACHER, args.data, split=suite["eval"].get("split", "test"),
                              class_set=settings["class_set"], device=settings["device"], progress=False)
    iv = stats.bootstrap([result], "mIoU", "paper")
    record = {"data": str(args.data), "settings": settings, "val_curve": curve,
              "gain_last_20": curve_summary(curve)["gain_last_20"],
              "test": {"mIoU": result["metrics"]["mIoU"], "void_excluded": result["void_excluded"]["mIoU"],
                       "aAcc": result["metrics"]["aAcc"]},
              "test_interval": {"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "panoramas": iv.n_rooms},
              "test_rooms": result["rooms"],
              # the training's own clock (its last log line), and this call's (0 for a finished folder)
              "train_seconds": steps[-1]["seconds"] if steps else None, "seconds_this_call": seconds}
    if args.versus is not None:
        other = json.loads(args.versus.read_text())
        mine = stats.RunRecords.from_metrics([result], ["single"])
        theirs = stats.RunRecords.from_metrics([{"rooms": other["test_rooms"]}], ["single"])
        c = stats.compare(mine, theirs, "mIoU", "paper")
        record["versus"] = {"record": str(args.versus), "mean": c.mean, "lo": c.lo, "hi": c.hi}
    write_json(args.out, record)
    print(json.dumps({k: record.get(k) for k in ("gain_last_20", "test", "test_interval", "train_seconds", "versus")},
                     indent=1))


if __name__ == "__main__":
    main()
