"""How much faster is a CPU training step under bf16 autocast (``cpu_amp``) than in float32? Alternated, paired.

    .venv/bin/python benchmark/diagnosis/cpu_bf16_ab.py --out benchmark/results/diagnosis/cpu-bf16-ab.json

Times one Adam step (forward under autocast or not, float32 loss, backward, update) of each model the CPU track
trains, on its input: 1 x 4 x 64^3 blocks (random input with 70% free space) for the 3D models, 4 x 3 x 128 x 256
panoramas for the convolutional teacher (``unet2d-s``). Both ways are alternated for ``--rounds`` rounds in the same
process, so a machine whose speed drifts by the hour (ours do) slows both alike. Default: one thread, what each of
the track's two jobs gets on 2 cores. The first step's loss is reported both ways: the same weights and input, so
the two differ only by bf16 rounding.

Whether bf16 pays depends on the CPU: where it multiplies bf16 in hardware (Intel AMX, AVX512-BF16) the
convolutions run on oneDNN's bf16 kernels; where it does not, autocast emulates bf16 and is several times slower
(docs/performance.md). ``cpu_amp = "auto"`` (``panorooms3d.bench.train.cpu_has_bf16``) turns it on only where the
CPU has it; the result names the CPU's flags. Not part of ``make bench`` (a few minutes on 2 cores).
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

from panorooms3d.bench.train import cpu_description, keep_large_allocations_in_heap
from panorooms3d.nn.registry import build_model
from panorooms3d.run.atomic import write_json

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["3dseg-t", "3dseg-b", "sparseconv", "unet3d-s", "unet2d-s"]


def _model_and_batch(name: str):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if name == "unet2d-s":  # the CPU track's teacher
        from panorooms3d.nn.unet2d import UNET2D_VARIANTS, UNet2D

        model = UNet2D(num_classes=30, **UNET2D_VARIANTS[name])
        return model, torch.rand(4, 3, 128, 256, generator=g), torch.randint(0, 30, (4, 128, 256), generator=g)
    model = build_model(name, num_classes=30, in_channels=4)
    x = torch.randn(1, 4, 64, 64, 64, generator=g)
    x[:, 0] = torch.where(torch.rand(1, 64, 64, 64, generator=g) < 0.7, -3.0, x[:, 0])
    return model, x, torch.randint(0, 30, (1, 64, 64, 64), generator=g)


def steps(name: str, bf16: bool, repeats: int) -> tuple[float, float]:
    """Median seconds of ``repeats`` Adam steps after a warm-up one, and the first step's loss."""
    model, x, y = _model_and_batch(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times, first = [], None
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        first = loss.item() if first is None else first
    return statistics.median(times[1:]), first


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", choices=MODELS, help="default: all")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one of the track's two jobs)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark" / "results" / "diagnosis" / "cpu-bf16-ab.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    keep_large_allocations_in_heap()  # as training does on the CPU
    models = a.model or MODELS
    rows = []
    for rnd in range(a.rounds):
        for model in models:
            for bf16 in (False, True):
                seconds, loss = steps(model, bf16, a.repeats)
                way = "bf16" if bf16 else "fp32"
                rows.append({"round": rnd, "model": model, "way": way, "step_seconds": seconds, "first_loss": loss})
                print(f"round {rnd} {model:10s} {way} {seconds:.3f} s/step  first loss {loss:.5f}", flush=True)
    summary = {}
    for model in models:
        f = [r["step_seconds"] for r in rows if r["model"] == model and r["way"] == "fp32"]
        b = [r["step_seconds"] for r in rows if r["model"] == model and r["way"] == "bf16"]
        lf = next(r["first_loss"] for r in rows if r["model"] == model and r["way"] == "fp32")
        lb = next(r["first_loss"] for r in rows if r["model"] == model and r["way"] == "bf16")
        summary[model] = {"fp32_s_per_step": statistics.median(f), "bf16_s_per_step": statistics.median(b),
                          "speedup": statistics.median(f) / statistics.median(b),
                          "speedup_per_round": [x / y for x, y in zip(f, b)],
                          "first_loss_fp32": lf, "first_loss_bf16": lb}
    result = {"machine": {**cpu_description(), "cores": os.cpu_count(), "python": platform.python_version(),
                          "torch": torch.__version__},
              "threads": a.threads, "command": "python benchmark/diagnosis/cpu_bf16_ab.py", "rows": rows,
              "summary": summary}
    write_json(a.out, result)  # atomically, its folder created
    for model, s in summary.items():
        print(f"{model}: {s['fp32_s_per_step']:.3f} -> {s['bf16_s_per_step']:.3f} s/step ({s['speedup']:.2f}x; "
              f"rounds {', '.join(f'{v:.2f}' for v in s['speedup_per_round'])}), first loss "
              f"{s['first_loss_fp32']:.5f} / {s['first_loss_bf16']:.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
