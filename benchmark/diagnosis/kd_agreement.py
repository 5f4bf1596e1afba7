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

Where the student and the teacher disagree, pixel by pixel (each student's ``disagreement``, ``kd_gradient``,
``teacher_leads`` and ``versus_reference``; the record's ``hit_near_boundary`` is the base rate):

- ``disagreement``: the hit pixels whose argmax differs from the teacher's, the share of them within one pixel
  of a change of the panorama's label (:func:`near_label_boundary`, longitude wrapping), and who is right there
  against the labels (the teacher, the student, neither);
- ``kd_gradient``: the KD term's gradient with respect to the student's logits, ``tau (softmax(s / tau) -
  softmax(t / tau))`` per pixel (:func:`kd_logit_gradient`): the share of its absolute mass on the classes that
  decide (the student's argmax and the teacher's), over every hit pixel and over the disagreements, and there
  ``margin_share``: ``(g[student's] - g[teacher's]) / sum |g|``, the part of the pull that closes the student's
  margin over the teacher's class (1: all of it; 0: none);
- ``teacher_leads``: one set of pixels for every student, those where the teacher is right and the first
  ``--student`` (the reference) is wrong. Each student's accuracy there, and its mean logit margin over the
  teacher's class (its largest logit minus the teacher's class's; 0 where it agrees), raw and divided by the
  pixel's logit spread: does KD bring those pixels to the teacher's answer, or nearer to it?
- ``versus_reference``: the hit pixels whose argmax differs from the reference student's, and of them those
  that moved to the teacher's answer or away from it (the reference agreed with the teacher, this student does
  not), and those it got right or wrong against the labels where the reference had it the other way. A student
  can move many pixels toward the teacher and as many away: agreement then stays where it was.

mIoU: the project's definition over a confusion pooled over the rooms
(:func:`panorooms3d.bench.metrics.metrics_from_confusion`, classes with a non-empty union, void
excluded: panorama labels of hit pixels are never void). Percent, like the benchmark.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from panorooms3d.run.checkpoint import named_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def near_label_boundary(label: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a 3 x 3 neighbour of another label; longitude (W) wraps, latitude (H) does not."""
    out = np.zeros(label.shape, bool)
    padded = np.pad(label, ((1, 1), (0, 0)), mode="edge")
    for dy in (-1, 0, 1):
        rows = padded[1 + dy:1 + dy + label.shape[0]]
        for dx in (-1, 0, 1):
            out |= np.roll(rows, -dx, axis=1) != label
    return out


def kd_logit_gradient(student, teacher, tau: float):
    """(P, K) gradient of tau^2 KL(softmax(t / tau) || softmax(s / tau)) with respect to the student's logits s."""
    import torch

    return tau * (torch.softmax(student / tau, 1) - torch.softmax(teacher / tau, 1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="the dataset the students were distilled on (out/cpu-track/data)")
    ap.add_argument("--teacher-cache", type=Path, required=True, help="the suite's teacher/cache folder")
    ap.add_argument("--student", type=named_checkpoint("--student"), action="append", required=True,
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
    class_names = get_class_set("paper30").class_names
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
    near_hits = 0
    pix = {n: {"disagree": 0, "near": 0, "teacher_right": 0, "student_right": 0, "decision_all": 0.0,
               "decision_dis": 0.0, "margin_share": 0.0, "leads_right": 0, "leads_margin": 0.0,
               "leads_margin_rel": 0.0, "changed": 0, "toward": 0, "away": 0, "gained": 0, "lost": 0}
           for n in students}
    leads_total = 0
    reference = next(iter(students))

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
        near = near_label_boundary(label)[hit]
        near_hits += int(near.sum())
        lab, ta = label[hit], teacher_arg[hit]
        tz = t.permute(1, 2, 0)[torch.from_numpy(hit)]
        ref_arg = projected[reference].values.argmax(0).numpy()[hit]
        leads = (ta == lab) & (ref_arg != lab)  # the teacher right where the reference student is wrong
        leads_total += int(leads.sum())
        for name, res in projected.items():
            arg = res.values.argmax(0).numpy()
            conf[name] += confusion(arg[hit], label[hit], k)
            agree[name] += int((arg[hit] == teacher_arg[hit]).sum())
            sa, sz = arg[hit], res.values.permute(1, 2, 0)[torch.from_numpy(hit)]
            dis = sa != ta
            q = pix[name]
            q["disagree"] += int(dis.sum())
            q["near"] += int((dis & near).sum())
            q["teacher_right"] += int((dis & (ta == lab)).sum())
            q["student_right"] += int((dis & (sa == lab)).sum())
            g = kd_logit_gradient(sz, tz, args.tau).numpy()
            rows = np.arange(len(sa))
            mass = np.maximum(np.abs(g).sum(1), 1e-12)  # 0 only where the two softened predictions are equal
            g_s, g_t = g[rows, sa], g[rows, ta]
            decision = (np.abs(g_s) + np.where(dis, np.abs(g_t), 0.0)) / mass
            q["decision_all"] += float(decision.sum())
            q["decision_dis"] += float(decision[dis].sum())
            q["margin_share"] += float(((g_s - g_t) / mass)[dis].sum())
            zs = sz.numpy()
            margin = zs.max(1) - zs[rows, ta]
            q["leads_right"] += int((sa == lab)[leads].sum())
            q["leads_margin"] += float(margin[leads].sum())
            q["leads_margin_rel"] += float((margin / zs.std(1, ddof=1))[leads].sum())
            changed = sa != ref_arg
            q["changed"] += int(changed.sum())
            q["toward"] += int((changed & (sa == ta)).sum())
            q["away"] += int((changed & (ref_arg == ta)).sum())
            q["gained"] += int((changed & (sa == lab)).sum())
            q["lost"] += int((changed & (ref_arg == lab)).sum())
            kd[name].append(float(distillation_loss(res.values, t, None, tau=args.tau, normalisation="official")))
            soft_stats(name, res.values.permute(1, 2, 0)[res.hit])
        print(f"[{i + 1}/{len(rooms)}] {uid}", flush=True)

    record = {"data": str(args.data), "teacher_cache": str(args.teacher_cache), "split": args.split,
              "unlabelled_of": args.unlabelled_of,
              "rooms": len(rooms), "room_uids": rooms, "tau": args.tau, "hit_pixels": hits,
              "hit_near_boundary": 100.0 * near_hits / hits, "teacher_leads_reference": reference,
              "teacher_leads_pixels": leads_total,
              "students": {name: str(path) for name, path in args.student}, "models": {}}
    for name in names:
        m = metrics_from_confusion(conf[name], exclude=(0,))
        row = {"vs_labels": {"pixel_accuracy": 100.0 * float(np.trace(conf[name]) / conf[name].sum()),
                             "mIoU_void_excluded": m["mIoU"],
                             "per_class_iou": {c: (None if not np.isfinite(v) else float(v)) for c, v in
                                               zip(class_names, m["per_class"]["IoU"]) if c != "void"}},
               "logit_spread": float(np.mean(spread[name])), "softened_top_probability": float(np.mean(top[name]))}
        if name in students:
            row["agreement_with_teacher"] = 100.0 * agree[name] / hits
            row["kd_official"] = float(np.mean(kd[name]))
            q, n_dis = pix[name], max(pix[name]["disagree"], 1)
            row["disagreement"] = {"share_of_hit": 100.0 * q["disagree"] / hits,
                                   "near_boundary": 100.0 * q["near"] / n_dis,
                                   "teacher_right": 100.0 * q["teacher_right"] / n_dis,
                                   "student_right": 100.0 * q["student_right"] / n_dis,
                                   "neither_right": 100.0 * (q["disagree"] - q["teacher_right"]
                                                             - q["student_right"]) / n_dis}
            row["kd_gradient"] = {"decision_share_all": 100.0 * q["decision_all"] / hits,
                                  "decision_share_disagreement": 100.0 * q["decision_dis"] / n_dis,
                                  "margin_share_disagreement": 100.0 * q["margin_share"] / n_dis}
            row["versus_reference"] = {key: 100.0 * q[key] / hits
                                       for key in ("changed", "toward", "away", "gained", "lost")}
            n_leads = max(leads_total, 1)
            row["teacher_leads"] = {"accuracy": 100.0 * q["leads_right"] / n_leads,
                                    "margin": q["leads_margin"] / n_leads,
                                    "margin_over_spread": q["leads_margin_rel"] / n_leads}
        record["models"][name] = row
        extra = "" if name == "teacher" else (
            f", agrees with the teacher on {row['agreement_with_teacher']:.1f}%, KD {row['kd_official']:.3f};"
            f" disagreements {row['disagreement']['near_boundary']:.1f}% near a label boundary"
            f" ({100.0 * near_hits / hits:.1f}% of hit pixels), the teacher right in"
            f" {row['disagreement']['teacher_right']:.1f}%, the student in {row['disagreement']['student_right']:.1f}%;"
            f" KD gradient on the deciding classes {row['kd_gradient']['decision_share_disagreement']:.1f}% there;"
            f" right on {row['teacher_leads']['accuracy']:.1f}% of the {leads_total} pixels the teacher leads"
            f" {reference}, margin {row['teacher_leads']['margin']:.2f}")
        print(f"{name}: accuracy {row['vs_labels']['pixel_accuracy']:.1f}%, mIoU {m['mIoU']:.1f}{extra}; "
              f"logit spread {row['logit_spread']:.2f}, softened top probability {row['softened_top_probability']:.3f}")
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
