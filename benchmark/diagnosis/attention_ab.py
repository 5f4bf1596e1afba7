"""Is a 3D Segmenter training step on the CPU faster with its window attention written out? Alternated, paired.

    .venv/bin/python benchmark/diagnosis/attention_ab.py --out benchmark/results/diagnosis/attention-ab.json

With gradients, torch's fused ``scaled_dot_product_attention`` cannot give an ``attn_mask`` (the relative position
bias, a parameter) its gradient on the CPU. It falls back to a general path that also guards every row of the
(B, nW, h, N, N) logits against being fully masked (``isneginf``, ``all``, ``where``). The 3D Segmenter therefore
writes attention out when it trains on the CPU (``WindowAttention3D.write_out_cpu_training``; the module docstring
of ``panorooms3d/nn/segmenter3d.py``). This times one Adam step of each 3D Segmenter the CPU track trains, on its
input (1 x 4 x 64^3, random, 70% free space), the two ways alternated for ``--rounds`` rounds in one process (a
machine whose speed drifts by the hour slows both alike), in float32 and, where the CPU has bf16 hardware, under
bf16 autocast as the track trains (``cpu_amp = "auto"``). Each way's losses over the steps are kept: the same
function, so they agree to float rounding. Not part of ``make bench`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from panorooms3d.bench.train import cpu_description, cpu_has_bf16, keep_large_allocations_in_heap
from panorooms3d.nn.losses import voxel_cross_entropy
from panorooms3d.nn.registry import build_model
from panorooms3d.nn.segmenter3d import WindowAttention3D
from panorooms3d.run.atomic import write_json

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["3dseg-t", "3dseg-b"]
WAYS = {"fused": False, "written-out": True}


def steps(name: str, written_out: bool, bf16: bool, repeats: int) -> tuple[float, list[float]]:
    """:func:`adam_steps` with the attention written out or not."""
    WindowAttention3D.write_out_cpu_training = written_out
    return adam_steps(name, bf16, repeats)


def adam_steps(name: str, bf16: bool, repeats: int) -> tuple[float, list[float]]:
    """Median seconds of ``repeats`` Adam steps of a fresh model ``name`` on the track's input (1 x 4 x 64^3, random,
    70% free space, class weights) after a warm-up one, and every step's loss (the loss as block training
    computes it). Also used by ``logits_layout_ab.py``."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = build_model(name, num_classes=30, in_channels=4)
    x = torch.randn(1, 4, 64, 64, 64, generator=g)
    x[:, 0] = torch.where(torch.rand(1, 64, 64, 64, generator=g) < 0.7, -3.0, x[:, 0])
    y = torch.randint(0, 30, (1, 64, 64, 64), generator=g)
    weight = torch.rand(30, generator=g) + 0.5  # class weights, as the track's loss has
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times, losses = [], []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = voxel_cross_entropy(logits.float(), y, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    return statistics.median(times[1:]), losses


def alternate(steps, ways: dict, models: list[str], precisions: list[str], rounds: int,
              repeats: int) -> list[dict]:
    """Each way of each model and precision once a round, for ``rounds`` rounds in this process (a machine whose
    speed drifts slows each way alike): ``steps(model, ways[way], bf16, repeats)`` -> (seconds a step, losses),
    one row each, printed as it comes. Also used by ``logits_layout_ab.py``."""
    rows = []
    for rnd in range(rounds):
        for model in models:
            for precision in precisions:
                for way, setting in ways.items():
                    seconds, losses = steps(model, setting, precision == "bf16", repeats)
                    rows.append({"round": rnd, "model": model, "precision": precision, "way": way,
                                 "step_seconds": seconds, "losses": losses})
                    print(f"round {rnd} {model} {precision} {way:11s} {seconds:.3f} s/step  "
                          f"last loss {losses[-1]:.6f}", flush=True)
    return rows


def by_way(rows: list[dict], model: str, precision: str, ways: dict) -> dict[str, list[dict]]:
    """The rows of ``model`` at ``precision``, by way, in round order."""
    return {way: [r for r in rows if (r["model"], r["precision"], r["way"]) == (model, precision, way)]
            for way in ways}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", choices=MODELS, help="default: both")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one of the track's two jobs)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark" / "results" / "diagnosis" / "attention-ab.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    keep_large_allocations_in_heap()  # as training does on the CPU
    models = a.model or MODELS
    precisions = ["fp32", "bf16"] if cpu_has_bf16() else ["fp32"]
    try:
        rows = alternate(steps, WAYS, models, precisions, a.rounds, a.repeats)
    finally:
        WindowAttention3D.write_out_cpu_training = True
    summary = {}
    for model in models:
        for precision in precisions:
            sel = by_way(rows, model, precision, WAYS)
            fused = [r["step_seconds"] for r in sel["fused"]]
            written = [r["step_seconds"] for r in sel["written-out"]]
            summary[f"{model} {precision}"] = {
                "fused_s_per_step": statistics.median(fused),
                "written_out_s_per_step": statistics.median(written),
                "speedup": statistics.median(fused) / statistics.median(written),
                "speedup_per_round": [f / w for f, w in zip(fused, written)],
                "max_loss_difference": max(abs(p - q) for f, w in zip(sel["fused"], sel["written-out"])
                                           for p, q in zip(f["losses"], w["losses"])),
            }
    result = {"machine": {**cpu_description(), "cores": os.cpu_count(), "python": platform.python_version(),
                          "torch": torch.__version__},
              "threads": a.threads, "command": "python benchmark/diagnosis/attention_ab.py", "rows": rows,
              "summary": summary}
    write_json(a.out, result)  # atomically, its folder created
    for key, s in summary.items():
        print(f"{key}: fused {s['fused_s_per_step']:.3f} -> written out {s['written_out_s_per_step']:.3f} s/step "
              f"({s['speedup']:.2f}x; rounds {', '.join(f'{v:.2f}' for v in s['speedup_per_round'])}), "
              f"losses differ by at most {s['max_loss_difference']:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
