"""The 2D teacher with test-time augmentation: its panoramas predicted mirrored and / or rolled, probabilities averaged.

    .venv/bin/python benchmark/diagnosis/teacher_tta.py out/cpu-track/bench/teacher/teacher.pt out/cpu-track/data \\
        --out benchmark/results/diagnosis/teacher-tta.json

The track's 3D models are evaluated with 8 passes (``[eval] tta = "d4"``); the teacher predicts each panorama
once, in its scoring and in the cache distillation reads. This measures what averaging would give it on the test
panoramas, each room paired with its single pass: a mirror (longitude -> -longitude, the teacher's training
flip) and rolls (yaw) by quarters of the width, each turned back before the average. A probe: the project's
teacher code is unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from panorooms3d.bench.teacher import _teacher_size, evaluate_teacher, load_teacher
from panorooms3d.run.atomic import write_json

#: name -> (mirrors, rolls as fractions of the width)
PASSES = {"none": ((False,), (0.0,)), "flip": ((False, True), (0.0,)), "roll2": ((False,), (0.0, 0.5)),
          "flip+roll4": ((False, True), (0.0, 0.25, 0.5, 0.75))}


class Averaged(torch.nn.Module):
    """A teacher whose logits are the log of its softmax averaged over mirrored / rolled inputs, each turned back."""

    def __init__(self, teacher: torch.nn.Module, mirrors, rolls):
        super().__init__()
        self.teacher, self.mirrors, self.rolls = teacher, mirrors, rolls
        self.normalize = teacher.normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for mirror in self.mirrors:
            for roll in self.rolls:
                shift = int(round(roll * x.shape[-1]))
                xi = torch.roll(x, shift, -1)
                p = self.teacher(xi.flip(-1) if mirror else xi).float().softmax(1)
                total = total + torch.roll(p.flip(-1) if mirror else p, -shift, -1)
        return (total / (len(self.mirrors) * len(self.rolls))).log()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--boot", type=int, default=10000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    height, width = _teacher_size(args.checkpoint, None, None)
    teacher = load_teacher(args.checkpoint).eval()
    rooms, result = {}, {"checkpoint": str(args.checkpoint), "split": args.split, "size": [height, width], "passes": {}}
    for name, (mirrors, rolls) in PASSES.items():
        r = evaluate_teacher(Averaged(teacher, mirrors, rolls), args.data, split=args.split, height=height,
                             width=width, device="cpu", progress=False)
        rooms[name] = np.array([room["mIoU"] for room in r["rooms"]])
        result["passes"][name] = {"mirrors": list(mirrors), "rolls": list(rolls), "mIoU": round(r["metrics"]["mIoU"], 2),
                                  "void_excluded_mIoU": round(r["void_excluded"]["mIoU"], 2)}
    rng = np.random.default_rng(0)
    idx = rng.integers(len(rooms["none"]), size=(args.boot, len(rooms["none"])))
    for name, per_room in rooms.items():
        d = per_room - rooms["none"]
        lo, hi = np.percentile(d[idx].mean(1), [2.5, 97.5])
        result["passes"][name]["minus_none"] = [round(float(d.mean()), 2), round(float(lo), 2), round(float(hi), 2)]
        print(f"{name:11s} mIoU {result['passes'][name]['mIoU']:6.2f}  - none {d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]")
    result["panoramas"] = len(rooms["none"])
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
