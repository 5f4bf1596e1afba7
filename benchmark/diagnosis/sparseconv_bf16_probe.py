"""Does the CPU track's SparseConv training diverge under bf16 autocast on this CPU? The first 100 steps, as the track
trains them (its [train] settings, seed 0, one thread), or with MaskedBatchNorm3d's statistics in float32.

    .venv/bin/python benchmark/diagnosis/sparseconv_bf16_probe.py out/cpu-track/data /tmp/probe as-is
    .venv/bin/python benchmark/diagnosis/sparseconv_bf16_probe.py out/cpu-track/data /tmp/probe fp32-stats

Prints whether it diverged (the FloatingPointError) and the logged losses. On an AMD EPYC with AVX512-BF16 (no AMX)
on 2026-12-06 the track's training diverged at step 85 inside a suite, this probe's ``fp32-stats`` at step 55 and
its ``as-is`` not within 100 steps (docs/performance.md, "bf16 autocast on the CPU").
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import panorooms3d.nn.sparseconv as sparseconv
from panorooms3d.bench.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the CPU track's dataset folder")
    ap.add_argument("out", type=Path, help="a scratch folder (the training goes to <out>/<mode>)")
    ap.add_argument("mode", choices=["as-is", "fp32-stats"])
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    if args.mode == "fp32-stats":
        forward = sparseconv.MaskedBatchNorm3d.forward

        def float32_stats(self, x, mask):
            return forward(self, x.float(), mask.float())

        sparseconv.MaskedBatchNorm3d.forward = float32_stats
    settings = tomllib.loads((ROOT / "benchmark" / "cpu-track.toml").read_text())["train"]
    settings.update(decoder_lr_mult=1.0, threads=1)  # the track's SparseConv row, one job's thread
    out = args.out / args.mode
    config = TrainConfig(data=str(args.data), out=str(out), model="sparseconv", workers=0, device="cpu", seed=0,
                         class_set="paper30", **settings)
    try:
        train(config, stop_after=args.steps, progress=False)
        print(f"{args.mode}: no divergence in {args.steps} steps")
    except FloatingPointError as exc:
        print(f"{args.mode}: diverged: {exc}")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    print("losses:", [round(r["loss"], 3) for r in log if "loss" in r])


if __name__ == "__main__":
    main()
