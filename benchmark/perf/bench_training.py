"""CPU training throughput (voxels per second) of every 3D model, and what raises 3DSeg-T's.

One Adam step = forward, backward and update of a batch of blocks (random input, random targets),
timed after warm-up steps; the median of ``--repeats`` steps. For 3DSeg-T it sweeps what a CPU
user can choose (issue 14, point 8):

- block shape and batch: 8 x 32^3, 2 x 64^3, 1 x 64^3 (the CPU track since 2026-12), 2 x 64 x 64 x 32 (the
  track's blocks before), 1 x 64 x 64 x 48;
- threads: 1 and all cores;
- bf16 autocast on the CPU against fp32 (speed, and the loss difference of the same step);
- ``--compile``: ``torch.compile`` (inductor, default mode) at the CPU track's setting against eager
  (its first step, which compiles, is reported apart; about a minute on 2 cores);
- data loading: seconds to draw one CPU-track block from a packed dataset (``--data``), which a
  DataLoader worker would overlap with compute;
- the logits' upsampling: ``F.interpolate(mode="trilinear")`` against the separable matmuls 3DSeg-T uses
  (``trilinear_upsample``), forward and backward of 30 x 16^3 -> 64^3, and a whole 3DSeg-T training step
  with each, alternated in rounds.

Every 3D model is timed at the CPU track's setting (1 x 64^3, all cores, fp32) twice: first with glibc's
default allocator settings, then after ``keep_large_allocations_in_heap()``, which training calls on the CPU
(the rows' ``allocator``; the 3DSeg-T sweep runs with the default, as before); where the CPU has bf16 hardware
(AMX or AVX512-BF16: ``cpu_has_bf16``) the tuned rows are timed under bf16 autocast too, as the CPU track trains
them (``cpu_amp = "auto"``). ``machine`` records the CPU's name and bf16 flags.
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
    (1, (64, 64, 64)),
    (2, (64, 64, 32)),
    (1, (64, 64, 48)),
]
TRACK = (1, (64, 64, 64))


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


def load_seconds(data: Path, samples: int) -> dict:
    """Seconds to load each training room once (read and encode it whole), then to draw a block (a crop of the
    rooms kept in memory, and its flips and turns), the median over ``samples`` blocks."""
    from panorooms3d.bench.data import BlockConfig, BlockDataset
    from panorooms3d.store.dataset import Dataset

    ds = Dataset(data)
    rooms = ds.split("train")
    bd = BlockDataset(data, rooms, BlockConfig(block=list(TRACK[1]), sampling="surface"))
    bd.draw(0)  # opens the arrays
    t0 = time.perf_counter()
    for uid in rooms:
        bd.encoded_room(uid)
    room = (time.perf_counter() - t0) / len(rooms)
    times = []
    for i in range(1, samples + 1):
        t0 = time.perf_counter()
        bd[i]
        times.append(time.perf_counter() - t0)
    return {"room_load_seconds": room, "block_load_seconds": statistics.median(times), "rooms": len(rooms)}


def upsample_seconds(repeats: int) -> dict:
    """Forward + backward of 3DSeg-T's logit upsampling at the track's block (30 x 16^3 -> 64^3), both ways."""
    from panorooms3d.nn.segmenter3d import trilinear_upsample

    x = torch.randn(1, 30, 16, 16, 16, requires_grad=True)
    g = torch.randn(1, 30, 64, 64, 64)
    ways = {"F.interpolate": lambda: F.interpolate(x, size=(64, 64, 64), mode="trilinear", align_corners=False),
            "trilinear_upsample": lambda: trilinear_upsample(x, (64, 64, 64))}
    out = {}
    for name, f in ways.items():
        f().backward(g)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f().backward(g)
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


def upsample_ab(batch: int, block, threads: int, repeats: int, rounds: int = 3) -> dict:
    """3DSeg-T's whole training step with its logits upsampled by ``trilinear_upsample`` (as shipped) and by
    ``F.interpolate`` (as before 2026-12-05), alternated round by round in one process so that both see the
    same machine minutes; the median over rounds of each round's median step."""
    import panorooms3d.nn.segmenter3d as seg

    shipped = seg.trilinear_upsample

    def torch_trilinear(x, size):
        return F.interpolate(x.contiguous(), size=size, mode="trilinear", align_corners=False)

    per = {"trilinear_upsample": [], "F.interpolate": []}
    try:
        for _ in range(rounds):
            for name, fn in (("F.interpolate", torch_trilinear), ("trilinear_upsample", shipped)):
                seg.trilinear_upsample = fn
                per[name].append(step_seconds("3dseg-t", batch, block, threads, False, repeats, 1)["seconds_per_step"])
    finally:
        seg.trilinear_upsample = shipped
    return {name: statistics.median(v) for name, v in per.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3DSeg-T at the CPU track's setting only (fp32 and bf16)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--compile", action="store_true",
                    help="also time 3DSeg-T under torch.compile at the CPU track's setting (compiles for about a minute)")
    ap.add_argument("--data", type=Path, help="a packed dataset to time block loading on (e.g. out/cpu-track/data)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark" / "results" / "perf_training.json")
    ap.add_argument("--load-only", action="store_true", help="only the block loading (needs --data)")
    a = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    if a.load_only:
        if not a.data:
            ap.error("--load-only times block loading on a packed dataset: give it with --data")
        from panorooms3d.bench.train import cpu_description, keep_large_allocations_in_heap

        keep_large_allocations_in_heap()  # as training runs (without it each block's arrays are fresh pages)
        loading = load_seconds(a.data, 200)

        print(f"{loading['rooms']} training rooms read and encoded whole: {loading['room_load_seconds'] * 1e3:.1f} ms "
              f"a room, once; then a 1 x 64^3 block (surface sampling): {loading['block_load_seconds'] * 1e3:.2f} ms")
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"machine": {**cpu_description(), "cores": cores, "torch": torch.__version__},
                                     "command": f"python benchmark/perf/bench_training.py --load-only --data {a.data}",
                                     **loading}, indent=2) + "\n")
        return 0
    upsample = upsample_seconds(10)
    upsample_step = upsample_ab(*TRACK, cores, a.repeats)
    rows = []
    sweep = [TRACK] if a.quick else SWEEP
    for batch, block in sweep:
        for threads in ([cores] if a.quick else sorted({1, cores})):
            for bf16 in (False, True):
                rows.append(step_seconds("3dseg-t", batch, block, threads, bf16, a.repeats, a.warmup))
    if a.compile:
        rows.append(step_seconds("3dseg-t", *TRACK, cores, False, a.repeats, max(a.warmup, 1), compiled=True))
    track_models = ["3dseg-t"]
    if not a.quick:
        track_models += [spec.name for spec in list_models()
                         if spec.is_3d and spec.name not in ("3dseg-t", "unet3d", "vtunet")]
        for name in ("unet3d", "vtunet"):  # the paper-size baselines: one timed step
            rows.append(step_seconds(name, *TRACK, cores, False, 1, 1))
    for row in rows:
        row["allocator"] = "default"
    for name in track_models:
        if name != "3dseg-t":  # 3DSeg-T's default-allocator row is in the sweep
            rows.append(dict(step_seconds(name, *TRACK, cores, False, a.repeats, a.warmup), allocator="default"))
    from panorooms3d.bench.train import cpu_description, cpu_has_bf16, keep_large_allocations_in_heap

    tuned = keep_large_allocations_in_heap()  # process-wide and not undone: every row after this one is tuned
    # as the track trains them: bf16 autocast too where the CPU has bf16 hardware (cpu_amp = "auto")
    precisions = (False, True) if cpu_has_bf16() else (False,)
    for bf16 in precisions:
        for name in track_models:
            rows.append(dict(step_seconds(name, *TRACK, cores, bf16, a.repeats, a.warmup),
                             allocator="tuned" if tuned else "default (tuning unavailable)"))
    result = {"machine": {**cpu_description(), "cores": cores,
                          "torch": torch.__version__, "python": platform.python_version()},
              "command": "python benchmark/perf/bench_training.py" + (" --quick" if a.quick else "")
              + (" --compile" if a.compile else ""),
              "upsample_seconds": upsample,
              "upsample_step_seconds": upsample_step,
              "rows": rows}
    if a.data:
        result.update(load_seconds(a.data, 200))
    print("| model | batch x block | threads | precision | allocator | s/step | M voxels/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} x {'x'.join(map(str, r['block']))} | {r['threads']} | "
              f"{'bf16' if r['bf16'] else 'fp32'}{' compiled' if r.get('compiled') else ''} | {r['allocator']} | "
              f"{r['seconds_per_step']:.3f} | {r['voxels_per_second'] / 1e6:.2f} |")
    print("logit upsampling 30 x 16^3 -> 64^3, forward + backward: "
          + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in upsample.items()))
    print("3DSeg-T training step at the track's setting (fp32, all cores), alternated: "
          + ", ".join(f"{k} {v:.3f} s" for k, v in upsample_step.items()))
    if "block_load_seconds" in result:
        print(f"block loading (1 x 64^3 sample, surface sampling): {result['block_load_seconds'] * 1e3:.2f} ms, "
              f"after each room's first read and encoding ({result['room_load_seconds'] * 1e3:.1f} ms a room)")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
