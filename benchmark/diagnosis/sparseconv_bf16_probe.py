"""Does the CPU track's SparseConv training stay finite under bf16 autocast on this CPU? The first steps as the track
trains them (its [train] settings, one thread), with the largest weight gradient of every step and its parameter.

    .venv/bin/python benchmark/diagnosis/sparseconv_bf16_probe.py out/cpu-track/data /tmp/probe --seed 1 --steps 300

Prints whether the training diverged (the FloatingPointError), the steps whose largest weight gradient exceeded
``--spike`` (1e3; the track's are below 1) with the parameter that had it, and the largest of all steps.

What it found on an AMD EPYC with AVX512-BF16 and no AMX (2026-12-06; docs/performance.md): before commit
b1aca51 every run had such steps, 4e6 to 1e35, always in the 3^3 submanifold convolution of the deepest level
(``unet.inner.inner.inner.inner.inner.pre.0.conv``, a 2 x 2 x 2 grid on 64^3 blocks), at different steps in two
runs of the same seed, and seed 1 stopped with a NaN at step 63. ``conv3d_bf16_grad.py`` then showed oneDNN's bf16
weight gradient wrong wherever the kernel is larger than the input. Since ``layers.conv3d`` computes those in
float32, seeds 0 and 1 ran 300 steps with no gradient above 0.28.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import panorooms3d.bench.train as train_module
from panorooms3d.bench.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the CPU track's dataset folder")
    ap.add_argument("out", type=Path, help="a scratch folder (the training goes to <out>/seed<K>)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--spike", type=float, default=1e3, help="report steps whose largest weight gradient exceeds this")
    args = ap.parse_args()

    maxima: dict[str, list[float]] = {}  # parameter -> its largest |gradient| at each step
    build = train_module.build

    def build_with_hooks(config):
        model = build(config)
        for name, p in model.named_parameters():
            maxima[name] = []
            p.register_hook(lambda g, name=name: maxima[name].append(float(g.detach().abs().max())))
        return model

    train_module.build = build_with_hooks
    settings = tomllib.loads((ROOT / "benchmark" / "cpu-track.toml").read_text())["train"]
    settings.update(decoder_lr_mult=1.0, threads=1)  # the track's SparseConv row, one job's thread
    out = args.out / f"seed{args.seed}"
    config = TrainConfig(data=str(args.data), out=str(out), model="sparseconv", workers=0, device="cpu",
                         seed=args.seed, class_set="paper30", **settings)
    try:
        train(config, stop_after=args.steps, progress=False)
        print(f"seed {args.seed}: no divergence in {args.steps} steps")
    except FloatingPointError as exc:
        print(f"seed {args.seed}: diverged: {exc}")
    steps = max(len(v) for v in maxima.values())
    largest = [max((v[i], n) for n, v in maxima.items() if i < len(v)) for i in range(steps)]
    spikes = [(i + 1, g, n) for i, (g, n) in enumerate(largest) if not g <= args.spike]
    for step, g, name in spikes:
        print(f"  step {step}: largest weight gradient {g:.3g} in {name}")
    print(f"{len(spikes)} of {steps} steps above {args.spike:g}; the largest of the others "
          f"{max((g for g, _ in largest if g <= args.spike), default=float('nan')):.3g}")
    (out / "gradient_maxima.json").write_text(json.dumps({"largest": [g for g, _ in largest],
                                                          "spikes": spikes}) + "\n")


if __name__ == "__main__":
    main()
