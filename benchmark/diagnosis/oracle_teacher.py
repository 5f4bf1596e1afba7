"""What can distillation's KD term carry on the CPU track? An oracle teacher: the true panorama labels.

    .venv/bin/python benchmark/diagnosis/oracle_teacher.py out/cpu-track/data \\
        --student out/cpu-track/bench/pretrain/3dseg-t-3c9e1408/model.pt \\
        --teacher-cache out/cpu-track/bench/teacher/cache --kd-weight 1 --kd-weight 3 --kd-weight 10 \\
        --out benchmark/results/diagnosis/oracle-teacher.json

Distils the CPU track's seed-0 3DSeg-T (its block-trained ``model.pt``) with exactly the track's
``[distill]`` settings (``benchmark/cpu-track.toml``), but toward an *oracle* teacher: the
ground-truth label of each training room's panorama, resized to the teacher's 128 x 256 by nearest
neighbour, as logits ``c * one_hot``. ``c`` is the real teacher's mean margin (top logit minus the
mean of its logits, over the cached pixels), so that at tau = 20 the oracle's soft targets are as
peaked as the real teacher's and only their content differs. Each ``--kd-weight`` is one run,
validated as the suite validates and scored on the test rooms with the suite's evaluation. A
teacher that is right on every pixel shows what the KD term can carry through this projection.
``--labelled-fraction 0.5`` is the track's half-labelled setting (CE on half the rooms, KD on all:
there the oracle brings labels the student has no other way to see); ``--tau`` changes the
temperature; ``--targets teacher`` runs the same with the real teacher's cached logits, for
comparison. The run folders (``--work``) resume when killed.
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def teacher_margin(cache: Path) -> float:
    """Mean over the cached pixels of (top logit - mean logit) of the real teacher."""
    margins = []
    for path in sorted(cache.glob("*.npy")):
        logits = np.load(path).astype(np.float32)
        margins.append(float((logits.max(0) - logits.mean(0)).mean()))
    if not margins:
        raise SystemExit(f"{cache}: no cached teacher logits (*.npy); give the suite's teacher/cache folder")
    return float(np.mean(margins))


def write_oracle_cache(data: Path, out: Path, margin: float, height: int, width: int, class_set: str) -> int:
    """Ground-truth panorama labels of the training rooms as logits ``c * one_hot``, float16 [K, h, w].

    The layout of the teacher cache (:func:`panorooms3d.bench.teacher.cache_teacher_predictions`): one
    ``<room key>.npy`` per room, class ids of ``class_set``, the stored panorama's equirect convention.
    Returns the number of files written (existing ones are kept).
    """
    from panorooms3d.bench.teacher import prepare_label, teacher_cache_path
    from panorooms3d.run.atomic import atomic_path
    from panorooms3d.store.dataset import Dataset
    from panorooms3d.taxonomy import get_class_set

    cs = get_class_set(class_set)
    c = margin / (1.0 - 1.0 / cs.num_classes)  # one-hot * c has top-minus-mean margin c (1 - 1/K)
    ds = Dataset(data)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for uid in ds.split("train"):
        path = teacher_cache_path(out, uid)
        pano = ds.load_panorama(uid)
        if path.exists() or pano is None:
            continue
        label = prepare_label(cs.map(pano.label), height, width).numpy()
        logits = np.zeros((cs.num_classes, height, width), np.float16)
        np.put_along_axis(logits, label[None], np.float16(c), axis=0)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, logits)
        written += 1
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="the CPU track's dataset (out/cpu-track/data)")
    ap.add_argument("--student", type=Path, required=True, help="a block-trained 3DSeg-T model.pt of the track")
    ap.add_argument("--teacher-cache", type=Path, required=True,
                    help="the track's teacher/cache (the oracle's margin; the targets with --targets teacher)")
    ap.add_argument("--kd-weight", type=float, action="append", required=True, help="one run each (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--targets", choices=("oracle", "teacher"), default="oracle",
                    help="KD toward the oracle (default) or, for comparison, the real teacher's cached logits")
    ap.add_argument("--tau", type=float, default=None, help="KD temperature (default: the track's, 20)")
    ap.add_argument("--labelled-fraction", type=float, default=1.0,
                    help="share of the training rooms with 3D labels (CE there, KD on all), as the track's half "
                         "rows; give the matching student (block-trained on those rooms)")
    ap.add_argument("--work", type=Path, default=Path("out/oracle-teacher"), help="run folders (resumable)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark/results/diagnosis/oracle-teacher.json")
    args = ap.parse_args()

    from panorooms3d.bench.distill import distill
    from panorooms3d.bench.evaluate import evaluate
    from panorooms3d.bench.suite import load_model
    from panorooms3d.run.atomic import write_json

    suite = tomllib.loads((ROOT / "benchmark/cpu-track.toml").read_text())
    teacher, dcfg = suite["teacher"], dict(suite["distill"])
    class_set = suite["settings"]["class_set"]
    margin = teacher_margin(args.teacher_cache)
    cache = args.work / "oracle-cache" if args.targets == "oracle" else args.teacher_cache
    if args.targets == "oracle":
        write_oracle_cache(args.data, cache, margin, teacher["height"], teacher["width"], class_set)
    iterations, tau, lr = dcfg.pop("iterations"), dcfg.pop("tau"), dcfg.pop("lr")
    tau = tau if args.tau is None else args.tau
    record = {"targets": args.targets, "student": str(args.student), "seed": args.seed, "tau": tau,
              "labelled_fraction": args.labelled_fraction, "teacher_margin": margin, "distill": suite["distill"],
              "runs": []}
    for weight in args.kd_weight:
        folder = args.work / f"{args.targets}-kd{weight:g}-seed{args.seed}"
        if args.labelled_fraction != 1:
            folder = folder.with_name(f"{folder.name}-labelled{args.labelled_fraction:g}")
        if tau != suite["distill"]["tau"]:
            folder = folder.with_name(f"{folder.name}-tau{tau:g}")
        t0 = time.perf_counter()
        distill(args.data, args.student, cache, folder, iterations=iterations, tau=tau, lr=lr,
                finetune_only=False, progress=False, model="3dseg-t", class_set=class_set, seed=args.seed,
                device="cpu", **{**dcfg, "kd_weight": weight, "labelled_fraction": args.labelled_fraction})
        seconds = time.perf_counter() - t0
        log = [json.loads(line) for line in (folder / "distill_log.jsonl").read_text().splitlines()]
        curve = [(r["iteration"], r["val_mIoU"]) for r in log if r.get("val_mIoU") is not None]
        result = evaluate(load_model(folder / "best.pt"), args.data, split="test", class_set=class_set,
                          progress=False)
        record["runs"].append({"kd_weight": weight, "val_curve": curve, "seconds_this_call": seconds,
                               "test": {k: result[k]["mIoU"] for k in ("metrics", "void_excluded", "pooled")}})
        print(f"{args.targets} targets, kd_weight {weight:g}: val {curve[-1][1]:.1f}, test mIoU "
              f"{record['runs'][-1]['test']['metrics']:.1f}", flush=True)
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
