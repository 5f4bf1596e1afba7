"""What does the KD term teach? Teacher, students and panorama labels compared where KD acts.

    .venv/bin/python benchmark/diagnosis/kd_agreement.py out/cpu-track/data \\
        --teacher-cache out/cpu-track-kd/teacher/cache \\
        --student finetune=out/cpu-track-kd/runs/3dseg-t-finetune/seed0/distill/best.pt \\
        --student kd10=out/cpu-track-kd/runs/3dseg-t-dist-kd10/seed0/distill/best.pt \\
        --out benchmark/results/diagnosis/kd-agreement.json

For every room of ``--split`` (default: the training rooms, the ones distillation visits) that has
a cached teacher prediction (at most ``--max-rooms`` of them, evenly spaced; the record lists them),
each student's room logits are projected into the panorama exactly as distillation's KD term sees
them (:func:`panorooms3d.bench.distill.project_logits`, ``surface``, at the cache's size), and on
the pixels whose ray hits a surface it records:

- ``vs_labels``: pixel accuracy and void-excluded mIoU of the argmax against the panorama's labels
  (nearest-neighbour resized to the cache's size), for the teacher and for each student;
- ``agreement_with_teacher``: the share of hit pixels where the student's argmax is the teacher's;
- ``kd_official``: the KD term as distillation computes it (tau, ``official`` normalisation, every
  pixel; :func:`panorooms3d.nn.losses.distillation_loss`);
- ``logit_spread``: the mean over hit pixels of the standard deviation of the logits over the
  classes, and ``softened_top_probability``: the mean largest probability of ``softmax(z / tau)``.
  At tau = 20 KD is close to matching centred logits (Hinton et al.'s high-temperature limit): a
  teacher whose logits spread less than the student's pulls the student's logits together, which
  makes its hard predictions less confident, not more like the teacher's.

mIoU: the project's definition over a confusion pooled over the rooms
(:func:`panorooms3d.bench.metrics.metrics_from_confusion`, classes with a non-empty union, void
excluded: panorama labels of hit pixels are never void). Percent, like the benchmark.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _parse_student(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--student takes NAME=CHECKPOINT, got {text!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"--student {name}: no such checkpoint: {path}")
    return name, Path(path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="the dataset the students were distilled on (out/cpu-track/data)")
    ap.add_argument("--teacher-cache", type=Path, required=True, help="the suite's teacher/cache folder")
    ap.add_argument("--student", type=_parse_student, action="append", required=True,
                    help="NAME=CHECKPOINT (repeatable): a distilled or finetuned student (its best.pt)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--max-rooms", type=int, default=None,
                    help="score at most this many of the rooms, evenly spaced in the split's order (default: all)")
    ap.add_argument("--tau", type=float, default=20.0)
    ap.add_argument("--unlabelled-of", type=float, default=None, metavar="FRACTION",
                    help="score only the rooms a run with this labelled_fraction has no 3D labels for (the rooms "
                         "outside panorooms3d.bench.data.labelled_subset(split rooms, FRACTION)): where KD is the "
                         "student's only teacher")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark/results/diagnosis/kd-agreement.json")
    args = ap.parse_args(argv)

    import torch

    from panorooms3d.bench.data import labelled_subset, load_room
    from panorooms3d.bench.distill import project_logits
    from panorooms3d.bench.evaluate import forward_room
    from panorooms3d.bench.metrics import confusion, metrics_from_confusion
    from panorooms3d.bench.suite import load_model
    from panorooms3d.bench.teacher import prepare_label, teacher_cache_path
    from panorooms3d.nn.losses import distillation_loss
    from panorooms3d.run.atomic import write_json
    from panorooms3d.store.dataset import Dataset
    from panorooms3d.taxonomy import get_class_set

    torch.set_num_threads(2)
    ds = Dataset(args.data)
    k = get_class_set("paper30").num_classes
    students = {name: load_model(path).eval() for name, path in args.student}
    rooms = [u for u in ds.split(args.split) if teacher_cache_path(args.teacher_cache, u).exists()]
    if args.unlabelled_of is not None:
        labelled = set(labelled_subset(ds.split(args.split), args.unlabelled_of))
        rooms = [u for u in rooms if u not in labelled]
    if not rooms:
        raise SystemExit(f"{args.teacher_cache}: no cached teacher prediction for a {args.split!r} room of {args.data}")
    if args.max_rooms is not None and len(rooms) > args.max_rooms:
        rooms = [rooms[i] for i in np.linspace(0, len(rooms) - 1, args.max_rooms).round().astype(int)]
    names = ["teacher", *students]
    conf = {n: np.zeros((k, k), np.int64) for n in names}
    agree = {n: 0 for n in students}
    kd = {n: [] for n in students}
    spread = {n: [] for n in names}
    top = {n: [] for n in names}
    hits = 0

    def soft_stats(name: str, z: torch.Tensor) -> None:  # z: (P, K) logits of the hit pixels
        spread[name].append(float(z.std(1).mean()))
        top[name].append(float(torch.softmax(z / args.tau, 1).max(1).values.mean()))

    for i, uid in enumerate(rooms):
        s = load_room(ds, uid)
        t = torch.from_numpy(np.load(teacher_cache_path(args.teacher_cache, uid)).astype(np.float32))
        h, w = int(t.shape[1]), int(t.shape[2])
        label = prepare_label(s.panorama_label, h, w).numpy()
        x = torch.as_tensor(s.x, dtype=torch.float32)[None]
        teacher_arg = t.argmax(0).numpy()
        projected = {}
        with torch.no_grad():
            for name, model in students.items():
                res = project_logits(s, forward_room(model, x)[0].float(), h, w, "surface")
                projected[name] = res
        hit = projected[next(iter(students))].hit.numpy()
        hits += int(hit.sum())
        conf["teacher"] += confusion(teacher_arg[hit], label[hit], k)
        soft_stats("teacher", t.permute(1, 2, 0)[torch.from_numpy(hit)])
        for name, res in projected.items():
            arg = res.values.argmax(0).numpy()
            conf[name] += confusion(arg[hit], label[hit], k)
            agree[name] += int((arg[hit] == teacher_arg[hit]).sum())
            kd[name].append(float(distillation_loss(res.values, t, None, tau=args.tau, normalisation="official")))
            soft_stats(name, res.values.permute(1, 2, 0)[res.hit])
        print(f"[{i + 1}/{len(rooms)}] {uid}", flush=True)

    record = {"data": str(args.data), "teacher_cache": str(args.teacher_cache), "split": args.split,
              "unlabelled_of": args.unlabelled_of,
              "rooms": len(rooms), "room_uids": rooms, "tau": args.tau, "hit_pixels": hits,
              "students": {name: str(path) for name, path in args.student}, "models": {}}
    for name in names:
        m = metrics_from_confusion(conf[name], exclude=(0,))
        row = {"vs_labels": {"pixel_accuracy": 100.0 * float(np.trace(conf[name]) / conf[name].sum()),
                             "mIoU_void_excluded": m["mIoU"]},
               "logit_spread": float(np.mean(spread[name])), "softened_top_probability": float(np.mean(top[name]))}
        if name in students:
            row["agreement_with_teacher"] = 100.0 * agree[name] / hits
            row["kd_official"] = float(np.mean(kd[name]))
        record["models"][name] = row
        extra = "" if name == "teacher" else (f", agrees with the teacher on {row['agreement_with_teacher']:.1f}%,"
                                              f" KD {row['kd_official']:.3f}")
        print(f"{name}: accuracy {row['vs_labels']['pixel_accuracy']:.1f}%, mIoU {m['mIoU']:.1f}{extra}; "
              f"logit spread {row['logit_spread']:.2f}, softened top probability {row['softened_top_probability']:.3f}")
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
