"""How much the CPU track's block training leaves on the table: 3DSeg-T trained N times longer.

    .venv/bin/python benchmark/diagnosis/length.py DATA --iterations 1400 --out benchmark/results/diagnosis/length.json

Trains 3DSeg-T with exactly the CPU track's block-training settings (``benchmark/cpu-track.toml``,
``[train]``, seed 0) except ``iterations`` (the cosine schedule stretches with it), validates every
``val_every`` iterations (``--val-every``) on the val rooms, then scores the final weights on the test rooms with
the suite's evaluation. It was run when the track trained 700 iterations (its seed-0 3DSeg-T
scored test mIoU 28.5 then; ``benchmark/results/cpu-track/random-views/700-iterations/``); the 1,400 it
measured are now the track's own setting. ``--lr``, ``--block`` and ``--batch-size`` change one
more setting each (the record names them); ``--model`` trains another registered model with the
same settings (``--decoder-lr-mult 1`` as the track's baselines) and ``--override KEY=VALUE``
changes one constructor argument of the model (e.g. ``patch_size=2``: 16 cm patches at 8 cm, the
paper's patch in metres at its 4 cm voxels; ``drop_path_rate=0``: no stochastic depth). The record also
scores the final weights on the training rooms (``train``): a model far above its test score
there overfits, one near it underfits. The test score comes with its 95% interval over the test
rooms (one seed: rooms only) and with the rooms' records (``test_rooms``), from which
``panorooms3d.bench.stats`` pools seeds and pairs runs. The last-20% gain is the suite's
(``report.curve_summary``). The run folder (``--work``) resumes when killed.
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
    ap.add_argument("data", type=Path, help="the CPU track's dataset (out/cpu-track/data)")
    ap.add_argument("--iterations", type=int, default=1400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=None, help="base learning rate (default: the track's)")
    ap.add_argument("--block", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                    help="block shape in voxels (default: the track's)")
    ap.add_argument("--batch-size", type=int, default=None, help="blocks per step (default: the track's)")
    ap.add_argument("--model", default="3dseg-t", help="registered model (default: 3dseg-t)")
    ap.add_argument("--decoder-lr-mult", type=float, default=None,
                    help="decoder learning-rate multiplier (default: the track's [train]; its baselines use 1)")
    ap.add_argument("--val-every", type=int, default=None,
                    help="validate every N iterations (default: the track's; a long run may validate less often)")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="a model constructor argument, VALUE as JSON (e.g. patch_size=2); repeatable")
    ap.add_argument("--work", type=Path, default=Path("out/length-check"), help="run folder (resumable)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark/results/diagnosis/length.json")
    args = ap.parse_args()

    from panorooms3d.bench.evaluate import evaluate
    from panorooms3d.bench.report import curve_summary, validation_curve
    from panorooms3d.bench.stats import bootstrap
    from panorooms3d.bench.suite import load_model
    from panorooms3d.bench.train import TrainConfig, train
    from panorooms3d.run.atomic import write_json
    from panorooms3d.store.dataset import Dataset

    suite = tomllib.loads((ROOT / "benchmark/cpu-track.toml").read_text())
    settings = {**suite["train"], "iterations": args.iterations, "seed": args.seed}
    if args.lr is not None:
        settings["lr"] = args.lr
    if args.block is not None:
        settings["block"] = list(args.block)
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    if args.decoder_lr_mult is not None:
        settings["decoder_lr_mult"] = args.decoder_lr_mult
    if args.val_every is not None:
        settings["val_every"] = args.val_every
    shape = "x".join(str(n) for n in settings["block"])
    overrides = {}
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--override {item!r}: expected KEY=VALUE")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            ap.error(f"--override {item!r}: VALUE must be JSON (a number, true/false, a quoted string)")
    tag = "".join(f"-{k}{v}" for k, v in overrides.items())
    folder = args.work / f"{args.model}{tag}-{args.iterations}-seed{args.seed}-lr{settings['lr']:g}"
    if args.block is not None or args.batch_size is not None:
        folder = folder.with_name(f"{folder.name}-{settings['batch_size']}x{shape}")
    config = TrainConfig(data=str(args.data), out=str(folder), model=args.model, class_set="paper30",
                         device="cpu", workers=0, model_overrides=overrides, **settings)
    t0 = time.perf_counter()
    train(config, progress=False)
    seconds = time.perf_counter() - t0
    curve = validation_curve(json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines())
    model = load_model(folder / "model.pt")
    result = evaluate(model, args.data, split="test", progress=False)
    on_train = evaluate(model, args.data, split="train", progress=False)
    tail = curve_summary(curve)
    record = {"data": str(args.data), "train_rooms": len(Dataset(args.data).split("train")),
              "model": args.model, "model_overrides": overrides, "iterations": args.iterations, "seed": args.seed,
              "settings": settings, "parameters": sum(p.numel() for p in model.parameters()),
              "val_curve": curve, "gain_last_20": tail["gain_last_20"],
              "test": {k: result[k]["mIoU"] for k in ("metrics", "void_excluded", "pooled")},
              # 95% intervals over the test rooms (one seed), and the rooms' records they come from, which
              # stats.bootstrap / stats.compare combine with other seeds' and runs'
              "test_interval": {agg: _interval(bootstrap([result], "mIoU", agg)) for agg in ("paper", "void_excluded")},
              "test_rooms": result["rooms"],
              "train": {k: on_train[k]["mIoU"] for k in ("metrics", "void_excluded", "pooled")},
              "train_seconds_this_call": seconds}
    write_json(args.out, record)
    print(json.dumps({k: record[k] for k in ("iterations", "gain_last_20", "test", "test_interval", "train")},
                     indent=1))


def _interval(iv) -> dict:
    return {"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "rooms": iv.n_rooms}


if __name__ == "__main__":
    main()
