"""One training step of each model on a 64^3 block against a 64 x 64 x 48 one, alternated in rounds (one thread).

    .venv/bin/python benchmark/diagnosis/block_shape_ab.py --rounds 6 --repeats 5 \\
        --out benchmark/results/diagnosis/block-shape-ab.json

The CPU track's rooms are 37-42 voxels high at 8 cm. A 64^3 block holds a room's height and 22-27 voxels of free
space above it; 64 x 64 x 48 holds the same room with 6-11. The 3D Segmenters pad the 12 token rows of a 48-voxel
block to 16 inside their attention (32-voxel windows), so their attention costs the same; what scales with the
voxels (the patch embedding, the logits' upsampling, the loss, the skip) and the second stage's window shrink. The
convolutional baselines' cost follows the voxels (the reduced U-Net) or the occupied voxels (SparseConv, whose
input here is dense random, so it sees no difference from the empty space a real block would leave out).

Each round times ``--repeats`` Adam steps of each shape (the median), the shapes alternating, under bf16 autocast
where the CPU has bf16 hardware (as the track trains; float32 elsewhere), with the track's class-weighted
cross-entropy on random targets, glibc keeping large allocations (as training does), one thread (as each of the
track's two jobs). The speed-up is the ratio of the medians over rounds; each round's ratio is kept, because this
machine's speed drifts within minutes (docs/performance.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from panorooms3d.bench.train import cpu_description, cpu_has_bf16, keep_large_allocations_in_heap
from panorooms3d.nn.losses import voxel_cross_entropy
from panorooms3d.nn.registry import build_model
from panorooms3d.run.atomic import write_json

SHAPES = {"64^3": (64, 64, 64), "64x64x48": (64, 64, 48)}
MODELS = ("3dseg-t", "3dseg-b", "sparseconv", "unet3d-s")


def steps(model: str, rounds: int, repeats: int, bf16: bool) -> dict:
    """{shape: [median seconds of each round]} for ``model``."""
    torch.manual_seed(0)
    net = build_model(model, num_classes=30, in_channels=4)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.95))
    weight = torch.rand(30) + 0.5
    batches = {name: (torch.randn(1, 4, *shape), torch.randint(0, 30, (1, *shape))) for name, shape in SHAPES.items()}

    def step(name: str) -> None:
        x, y = batches[name]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss = voxel_cross_entropy(logits.float(), y, weight=weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for name in SHAPES:  # warm-up
        step(name)
        step(name)
    medians: dict = {name: [] for name in SHAPES}
    for _ in range(rounds):
        for name in SHAPES:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                step(name)
                times.append(time.perf_counter() - t0)
            medians[name].append(statistics.median(times))
    return medians


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    keep_large_allocations_in_heap()
    bf16 = cpu_has_bf16()
    result: dict = {"machine": {**cpu_description(), "torch": torch.__version__}, "bf16": bf16, "threads": 1,
                    "rounds": a.rounds, "repeats": a.repeats, "models": {}}
    for model in a.models:
        medians = steps(model, a.rounds, a.repeats, bf16)
        cube, low = (statistics.median(medians[n]) for n in SHAPES)
        result["models"][model] = {
            "seconds_per_step": {n: round(statistics.median(v), 4) for n, v in medians.items()},
            "rounds": {n: [round(t, 4) for t in v] for n, v in medians.items()},
            "speed_up": round(cube / low, 3),
            "speed_up_by_round": [round(c / d, 3) for c, d in zip(medians["64^3"], medians["64x64x48"])],
        }
        print(f"{model:11s} 64^3 {cube:.3f} s, 64 x 64 x 48 {low:.3f} s: {cube / low:.2f}x "
              f"(rounds {', '.join(f'{c / d:.2f}' for c, d in zip(medians['64^3'], medians['64x64x48']))})",
              flush=True)
    if a.out:
        write_json(a.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
