"""Per class, is the teacher ahead of the student? Measured on held-out panoramas (validation, not test).

    .venv/bin/python benchmark/diagnosis/teacher_lead.py out/track-r9/data \\
        --teacher out/cpu-track-pseudo/teacher/teacher.pt \\
        --student out/cpu-track-pseudo/runs/3dseg-t-finetune/seed0/distill/best.pt \\
        --student out/cpu-track-pseudo/runs/3dseg-t-finetune/seed1/distill/best.pt \\
        --student out/cpu-track-pseudo/runs/3dseg-t-finetune/seed2/distill/best.pt \\
        --out benchmark/results/diagnosis/teacher-lead-val.json

A teacher whose mean lead over the student is large can still be behind it on some classes (on the CPU
track: chair, table; ``benchmark/results/cpu-track-pseudo/``). This scores both on the same pixels of the
``--split`` rooms' panoramas (default ``val``, so that a choice of classes made from it never sees the test
rooms): the teacher with :func:`panorooms3d.bench.teacher.write_teacher_metrics` (at its run's training size), each student's 3D prediction
seen from the panorama camera with :func:`panorooms3d.bench.evaluate.evaluate_on_panoramas` (what the suites
write as ``panorama_metrics.json``). Per class it records the teacher's IoU, the students' mean IoU and the
teacher's lead, and ``lead_classes``: the classes (void left out) whose lead is positive, the list a
distillation can restrict pseudo-labels to (``pseudo_classes``). A class the split's panoramas do not show
(no IoU for the teacher or for every student) is left out of the list. IoU pooled over the rooms, percent.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from panorooms3d.run.atomic import write_json


def per_class(result: dict) -> dict[str, float]:
    return {k: float(v) for k, v in result["per_class_iou"].items() if v is not None and not math.isnan(v)}


def lead(teacher: dict[str, float], students: list[dict[str, float]]) -> dict[str, dict]:
    """Per class seen by the teacher and at least one student: the teacher's IoU, the students' mean and the lead."""
    out = {}
    for cls, t in teacher.items():
        vals = [s[cls] for s in students if cls in s]
        if vals:
            mean = sum(vals) / len(vals)
            out[cls] = {"teacher": round(t, 2), "students": round(mean, 2), "lead": round(t - mean, 2)}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["lead"]))


def lead_classes(table: dict[str, dict]) -> list[str]:
    """The classes (void left out) the teacher leads, largest lead first."""
    return [c for c, row in table.items() if c != "void" and row["lead"] > 0]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="the 3D dataset (its split's rooms have panoramas)")
    ap.add_argument("--teacher", type=Path, required=True, help="teacher checkpoint (teacher.pt)")
    ap.add_argument("--student", type=Path, action="append", required=True, help="3D run checkpoint; repeatable")
    ap.add_argument("--split", default="val", help="held-out split scored on (default: val)")
    ap.add_argument("--class-set", default="paper30")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    from panorooms3d.bench.evaluate import evaluate, evaluate_on_panoramas
    from panorooms3d.bench.suite import load_model
    from panorooms3d.bench.teacher import write_teacher_metrics

    with tempfile.TemporaryDirectory() as tmp:  # at its run's training size, as the suites score it
        teacher = write_teacher_metrics(args.teacher, args.data, Path(tmp) / "teacher.json", split=args.split,
                                        class_set=args.class_set, device="cpu", progress=False)
    students = []
    for ckpt in args.student:
        model = load_model(ckpt, class_set=args.class_set)
        res = evaluate(model, args.data, split=args.split, class_set=args.class_set, device="cpu", progress=False,
                       keep_predictions=True)
        students.append(per_class(evaluate_on_panoramas(res["predictions"], args.data, class_set=args.class_set)))
    table = lead(per_class(teacher), students)
    record = {"data": str(args.data), "split": args.split, "teacher": str(args.teacher),
              "students": [str(s) for s in args.student], "per_class": table,
              "lead_classes": lead_classes(table)}
    for cls, row in table.items():
        print(f"{cls:<24}{row['teacher']:8.1f}{row['students']:8.1f}{row['lead']:+8.1f}")
    print("lead classes:", ", ".join(record["lead_classes"]))
    if args.out:
        write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()
