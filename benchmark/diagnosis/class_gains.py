"""Which classes a change wins and loses: per-class IoU of two recorded runs, beside the teacher's.

    .venv/bin/python benchmark/diagnosis/class_gains.py benchmark/results/cpu-track-pseudo \\
        --base 3dseg-t-finetune=benchmark/results/cpu-track --change 3dseg-t-pseudo \\
        --teacher benchmark/results/cpu-track/teacher/metrics.json \\
        --out benchmark/results/diagnosis/pseudo-classes.json

A suite's table gives each row's mIoU; this says where a difference between two rows comes from. For
each run (``--base`` and ``--change``: a run name, optionally ``=<results folder>`` when it was recorded
in another suite's folder than the positional one) it reads every seed's ``metrics.json`` (the 3D
evaluation on the test rooms) and ``panorama_metrics.json`` (the same predictions scored on the test
panoramas' pixels, where the teacher is scored too), and writes per class:

- ``volume``: the mean over seeds of the class IoU in 3D, for both runs, and ``change - base``;
- ``panorama``: the same on the panorama pixels, with the teacher's IoU there (``--teacher``, its
  ``metrics.json``) and ``teacher - base``: where the teacher knows more than the student, and where less.

Classes absent from every seed's evaluation (IoU null) are left out. Percent, as the benchmark.
Reads recorded files only: no data, no model, no torch.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from panorooms3d.run.atomic import write_json


def seed_files(results: Path, run: str, name: str) -> list[Path]:
    """``<results>/runs/<run>/seed*/<name>``, or ``<results>/runs/<run>/<name>`` for a one-seed run."""
    base = results / "runs" / run
    files = sorted(base.glob(f"seed*/{name}")) or ([base / name] if (base / name).is_file() else [])
    if not files:
        raise SystemExit(f"no {name} for run {run!r} under {base}")
    return files


def mean_iou(files: list[Path]) -> dict[str, float]:
    """Mean over files of each class's IoU (classes with a value in at least one file)."""
    sums: dict[str, list[float]] = {}
    for f in files:
        for cls, v in json.loads(f.read_text())["per_class_iou"].items():
            if v is not None and not math.isnan(v):
                sums.setdefault(cls, []).append(float(v))
    return {cls: sum(v) / len(v) for cls, v in sums.items()}


def compare(base: dict[str, float], change: dict[str, float]) -> dict[str, dict]:
    return {cls: {"base": round(base[cls], 2), "change": round(change[cls], 2),
                  "difference": round(change[cls] - base[cls], 2)}
            for cls in sorted(set(base) & set(change), key=lambda c: change[c] - base[c])}


def parse_run(spec: str, default: Path) -> tuple[str, Path]:
    name, _, folder = spec.partition("=")
    return name, Path(folder) if folder else default


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="a recorded suite's results folder (runs/<name>/seed<k>/...)")
    ap.add_argument("--base", required=True, help="run name, optionally NAME=RESULTS_FOLDER")
    ap.add_argument("--change", required=True, help="run name, optionally NAME=RESULTS_FOLDER")
    ap.add_argument("--teacher", type=Path, help="the teacher's metrics.json (its test panorama scores)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    (bn, bdir), (cn, cdir) = parse_run(args.base, args.results), parse_run(args.change, args.results)
    base_3d, change_3d = seed_files(bdir, bn, "metrics.json"), seed_files(cdir, cn, "metrics.json")
    record: dict = {"base": f"{bdir}/runs/{bn}", "change": f"{cdir}/runs/{cn}",
                    "n_seeds": {"base": len(base_3d), "change": len(change_3d)}}
    record["volume"] = compare(mean_iou(base_3d), mean_iou(change_3d))
    pano = compare(mean_iou(seed_files(bdir, bn, "panorama_metrics.json")),
                   mean_iou(seed_files(cdir, cn, "panorama_metrics.json")))
    if args.teacher:
        teacher = mean_iou([args.teacher])
        record["teacher"] = str(args.teacher)
        for cls, row in pano.items():
            if cls in teacher:
                row["teacher"] = round(teacher[cls], 2)
                row["teacher_minus_base"] = round(teacher[cls] - row["base"], 2)
    record["panorama"] = pano
    print(f"{'class':<24}{'3D base':>9}{'change':>9}{'diff':>8}   {'pano base':>9}{'change':>9}{'teacher':>9}")
    for cls, row in record["volume"].items():
        p = pano.get(cls, {})
        cells = [f"{p[k]:9.1f}" if k in p else f"{'-':>9}" for k in ("base", "change", "teacher")]
        print(f"{cls:<24}{row['base']:9.1f}{row['change']:9.1f}{row['difference']:+8.1f}   {''.join(cells)}")
    if args.out:
        write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()
