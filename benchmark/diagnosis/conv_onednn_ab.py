"""Is a batch-1 3D convolution faster through oneDNN than where torch's heuristic sends it? Whole training steps.

    .venv/bin/python benchmark/diagnosis/conv_onednn_ab.py --out benchmark/results/diagnosis/conv-onednn-ab.json

torch sends a float32 CPU convolution to oneDNN or to its own im2col kernel (``slow_conv3d``) by a heuristic written
for images: with batch 1 it multiplies the channels by the first two spatial sizes only, so most of SparseConv's and
the U-Net's 3D convolutions on 32^3 and 16^3 grids get the im2col kernel. ``panorooms3d.nn.layers.conv3d`` sends
every float32 CPU convolution to oneDNN. This times one Adam step (forward, backward, update; random input with 70%
free space, as the CPU track's 1 x 4 x 64^3 blocks) of each convolutional model (``--model``, repeatable; default
SparseConv and the reduced U-Net) both ways, alternated for ``--rounds`` rounds in the same process: ``torch``
(the models' convolutions replaced by ``F.conv3d``, torch's choice) and ``onednn`` (the models as they are). The
loss after the timed steps must agree to float rounding: the same convolution is computed.

Not part of ``make bench`` (about a minute on 2 cores). Results are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import panorooms3d.nn.layers as layers
from panorooms3d.bench.train import cpu_description, keep_large_allocations_in_heap
from panorooms3d.nn import sparseconv
from panorooms3d.nn.registry import build_model
from panorooms3d.run.atomic import write_json

ROOT = Path(__file__).resolve().parents[2]


def _torch_conv3d(x, weight, bias=None, stride=1, padding=0):
    return F.conv3d(x, weight, bias, stride=stride, padding=padding)


def steps(model_name: str, way: str, repeats: int) -> tuple[float, float]:
    """Median seconds of ``repeats`` Adam steps after a warm-up one, and the last loss."""
    original = layers.conv3d
    if way == "torch":  # both models call conv3d through these two names
        layers.conv3d = sparseconv.conv3d = _torch_conv3d
    try:
        torch.manual_seed(0)
        model = build_model(model_name, num_classes=30, in_channels=4)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(1, 4, 64, 64, 64, generator=g)
        x[:, 0] = torch.where(torch.rand(1, 64, 64, 64, generator=g) < 0.7, -3.0, x[:, 0])
        y = torch.randint(0, 30, (1, 64, 64, 64), generator=g)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        return statistics.median(times[1:]), loss.item()
    finally:
        layers.conv3d = sparseconv.conv3d = original


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", choices=["sparseconv", "unet3d-s"], help="default: both")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark" / "results" / "diagnosis" / "conv-onednn-ab.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    keep_large_allocations_in_heap()  # as training does on the CPU
    rows = []
    for rnd in range(a.rounds):
        for model in a.model or ["sparseconv", "unet3d-s"]:
            for way in ("torch", "onednn"):
                seconds, loss = steps(model, way, a.repeats)
                rows.append({"round": rnd, "model": model, "way": way, "step_seconds": seconds, "loss": loss})
                print(f"round {rnd} {model:10s} {way:6s} {seconds:.3f} s/step  loss {loss:.6f}", flush=True)
    summary = {}
    for model in a.model or ["sparseconv", "unet3d-s"]:
        t = [r["step_seconds"] for r in rows if r["model"] == model and r["way"] == "torch"]
        o = [r["step_seconds"] for r in rows if r["model"] == model and r["way"] == "onednn"]
        losses = [r["loss"] for r in rows if r["model"] == model]
        summary[model] = {"torch_s_per_step": statistics.median(t), "onednn_s_per_step": statistics.median(o),
                          "change": statistics.median(o) / statistics.median(t) - 1,
                          "loss_spread": max(losses) - min(losses)}
    result = {"machine": {**cpu_description(), "cores": os.cpu_count(),
                          "python": platform.python_version(), "torch": torch.__version__},
              "threads": a.threads, "command": "python benchmark/diagnosis/conv_onednn_ab.py", "rows": rows,
              "summary": summary}
    write_json(a.out, result)  # atomically, its folder created
    for model, s in summary.items():
        print(f"{model}: {s['torch_s_per_step']:.3f} -> {s['onednn_s_per_step']:.3f} s/step ({s['change']:+.0%}), "
              f"loss spread {s['loss_spread']:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
