"""Is a 3D Segmenter training step on the CPU faster with channels-last logits and a bf16 attention softmax?

    .venv/bin/python benchmark/diagnosis/logits_layout_ab.py --out benchmark/results/diagnosis/logits-layout-ab.json

A profile of a 3DSeg-T training step (1 x 64^3, one thread, bf16 autocast, the CPU track's) on the AMD EPYC with
AVX512-BF16 put about a sixth of it in the loss: ``log_softmax`` over dimension 1 of the (1, 30, 64, 64, 64)
logits and its backward (27 ms), the loss's fills and copies; and about a tenth in the window attention's float32
work under autocast: the bias and the mask added to bf16 products in float32, the products copied to float32
for autocast's softmax and back. Two switches change that, and this compares them, alternated for ``--rounds``
rounds in one process (a machine whose speed drifts slows each way alike):

- ``Segmenter3D.channels_last_logits``: the logits upsampled with their K channels last and returned as a
  channels-last view, which ``voxel_cross_entropy`` reads as (voxels, K) rows without a copy;
- ``WindowAttention3D.softmax_in_logits_dtype``: the bias and mask added and the softmax taken in the products'
  dtype (bf16 under autocast), as a fused attention kernel does.

Ways: ``before`` (neither: the code until 2026-12-07), ``logits-last`` (the first), ``both``. One Adam step of
each 3D Segmenter the CPU track trains, on its input size (1 x 4 x 64^3, random, 70% free space, class weights),
under bf16 autocast where the CPU has bf16 hardware (the track's ``cpu_amp = "auto"``) and in float32. Each way's
losses are kept: the layout changes only rounding, the bf16 softmax changes the bf16 rounding of the attention.
Not part of ``make bench`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from pathlib import Path

import torch
from attention_ab import adam_steps, alternate, by_way  # beside this script: run it as a script, as the docstring says

from panorooms3d.bench.train import cpu_description, cpu_has_bf16, keep_large_allocations_in_heap
from panorooms3d.nn.segmenter3d import Segmenter3D, WindowAttention3D
from panorooms3d.run.atomic import write_json

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["3dseg-t", "3dseg-b"]
WAYS = {"before": (False, False), "logits-last": (True, False), "softmax-bf16": (False, True), "both": (True, True)}


def steps(name: str, way: tuple[bool, bool], bf16: bool, repeats: int) -> tuple[float, list[float]]:
    """:func:`attention_ab.adam_steps` (the same input, loss and timing) with the two switches set as ``way``."""
    Segmenter3D.channels_last_logits, WindowAttention3D.softmax_in_logits_dtype = way
    return adam_steps(name, bf16, repeats)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", choices=MODELS, help="default: both")
    ap.add_argument("--precision", action="append", choices=["bf16", "fp32"],
                    help="default: bf16 where the CPU has bf16 hardware, and fp32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one of the track's two jobs)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark" / "results" / "diagnosis" / "logits-layout-ab.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    keep_large_allocations_in_heap()  # as training does on the CPU
    models = a.model or MODELS
    precisions = a.precision or (["bf16", "fp32"] if cpu_has_bf16() else ["fp32"])
    defaults = Segmenter3D.channels_last_logits, WindowAttention3D.softmax_in_logits_dtype
    try:
        rows = alternate(steps, WAYS, models, precisions, a.rounds, a.repeats)
    finally:
        Segmenter3D.channels_last_logits, WindowAttention3D.softmax_in_logits_dtype = defaults
    summary = {}
    for model in models:
        for precision in precisions:
            sel = by_way(rows, model, precision, WAYS)
            before = [r["step_seconds"] for r in sel["before"]]
            entry = {"before_s_per_step": statistics.median(before)}
            for way in list(WAYS)[1:]:
                secs = [r["step_seconds"] for r in sel[way]]
                entry[way] = {
                    "s_per_step": statistics.median(secs),
                    "speedup": statistics.median(before) / statistics.median(secs),
                    "speedup_per_round": [b / s for b, s in zip(before, secs)],
                    "max_loss_difference": max(abs(p - q) for b, w in zip(sel["before"], sel[way])
                                               for p, q in zip(b["losses"], w["losses"])),
                }
            summary[f"{model} {precision}"] = entry
    result = {"machine": {**cpu_description(), "cores": os.cpu_count(), "python": platform.python_version(),
                          "torch": torch.__version__},
              "threads": a.threads, "command": "python benchmark/diagnosis/logits_layout_ab.py", "rows": rows,
              "summary": summary}
    write_json(a.out, result)  # atomically, its folder created
    for key, s in summary.items():
        print(f"{key}: before {s['before_s_per_step']:.3f} s/step; " + "; ".join(
            f"{way} {s[way]['s_per_step']:.3f} ({s[way]['speedup']:.2f}x; rounds "
            f"{', '.join(f'{v:.2f}' for v in s[way]['speedup_per_round'])}; losses differ by at most "
            f"{s[way]['max_loss_difference']:.1e})" for way in list(WAYS)[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
