"""CPU training throughput (voxels per second) of every 3D model, and what raises 3DSeg-T's.

One Adam step = forward, backward and update of a batch of blocks (random input, random targets),
timed after warm-up steps; the median of ``--repeats`` steps. For 3DSeg-T it sweeps what a CPU
user can choose (issue 14, point 8):

- block shape and batch: 8 x 32^3, 2 x 64^3, 2 x 64 x 64 x 32 (the CPU track), 1 x 64 x 64 x 48;
- threads: 1 and all cores;
- bf16 autocast on the CPU against fp32 (speed, and the loss difference of the same step);
- ``--compile``: ``torch.compile`` (inductor, default mode) at the CPU track's setting against eager
  (its first step, which compiles, is reported apart; about a minute on 2 cores);
- data loading: seconds to draw one CPU-track block from a packed dataset (``--data``), which a
  DataLoader worker would overlap with compute.

Every other 3D model is timed at the CPU track's setting (2 x 64 x 64 x 32, all cores, fp32).
Results: stdout (Markdown) and ``benchmark/results/perf_training.json``; docs/performance.md
records them with the machine and the command.

    python benchmark/perf/bench_training.py [--quick] [--data DATASET] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from panorooms3d.nn.registry import build_model, list_models

ROOT = Path(__file__).resolve().parents[2]
SWEEP = [  # (batch, block) for 3DSeg-T
    (8, (32, 32, 32)),
    (2, (64, 64, 64)),
    (2, (64, 64, 32)),
    (1, (64, 64, 48)),
]
TRACK = (2, (64, 64, 32))


def step_seconds(name: str, batch: int, block, threads: int, bf16: bool, repeats: int, warmup: int,
                 compiled: bool = False) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(name, num_classes=30, in_channels=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    net = torch.compile(model) if compiled else model
    x = torch.randn(batch, 4, *block)
    y = torch.randint(0, 30, (batch, *block))
    times, losses, first = [], [], None
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        elif first is None:
            first = time.perf_counter() - t0
        losses.append(float(loss.detach()))
    s = statistics.median(times)
    voxels = batch * block[0] * block[1] * block[2]
    row = {"model": name, "batch": batch, "block": list(block), "threads": threads, "bf16": bf16,
           "seconds_per_step": s, "voxels_per_second": voxels / s, "first_loss": losses[0]}
    if compiled:
        row.update(compiled=True, first_step_seconds=first)
    return row


def load_seconds(data: Path, samples: int) -> float:
    from panorooms3d.bench.data import BlockConfig, BlockDataset
    from panorooms3d.store.dataset import Dataset

    ds = Dataset(data)
    bd = BlockDataset(data, ds.split("train"), BlockConfig(block=list(TRACK[1]), sampling="surface"))
    bd[0]  # opens the arrays, fills the surface-voxel cache of one room
    t0 = time.perf_counter()
    for i in range(1, samples + 1):
        bd[i]
    return (time.perf_counter() - t0) / samples


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3DSeg-T at the CPU track's setting only (fp32 and bf16)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--compile", action="store_true",
                    help="also time 3DSeg-T under torch.compile at the CPU track's setting (compiles for about a minute)")
    ap.add_argument("--data", type=Path, help="a packed dataset to time block loading on (e.g. out/cpu-track/data)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark" / "results" / "perf_training.json")
    a = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    rows = []
    sweep = [TRACK] if a.quick else SWEEP
    for batch, block in sweep:
        for threads in ([cores] if a.quick else sorted({1, cores})):
            for bf16 in (False, True):
                rows.append(step_seconds("3dseg-t", batch, block, threads, bf16, a.repeats, a.warmup))
    if a.compile:
        rows.append(step_seconds("3dseg-t", *TRACK, cores, False, a.repeats, max(a.warmup, 1), compiled=True))
    if not a.quick:
        for spec in list_models():
            if spec.is_3d and spec.name != "3dseg-t" and spec.name not in ("unet3d", "vtunet"):
                rows.append(step_seconds(spec.name, *TRACK, cores, False, a.repeats, a.warmup))
        for name in ("unet3d", "vtunet"):  # the paper-size baselines: one timed step
            rows.append(step_seconds(name, *TRACK, cores, False, 1, 1))
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": cores,
                          "torch": torch.__version__, "python": platform.python_version()},
              "command": "python benchmark/perf/bench_training.py" + (" --quick" if a.quick else "")
              + (" --compile" if a.compile else ""),
              "rows": rows}
    if a.data:
        result["block_load_seconds"] = load_seconds(a.data, 20)
    print("| model | batch x block | threads | precision | s/step | M voxels/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} x {'x'.join(map(str, r['block']))} | {r['threads']} | "
              f"{'bf16' if r['bf16'] else 'fp32'}{' compiled' if r.get('compiled') else ''} | {r['seconds_per_step']:.3f} | {r['voxels_per_second'] / 1e6:.2f} |")
    if "block_load_seconds" in result:
        print(f"block loading (2 x 64 x 64 x 32 sample, surface sampling): {result['block_load_seconds'] * 1e3:.1f} ms")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
