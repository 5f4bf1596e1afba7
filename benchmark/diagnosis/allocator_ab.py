"""Does tuning glibc's allocator speed up real CPU training? Default and tuned, alternated, in the real trainer.

    .venv/bin/python benchmark/diagnosis/allocator_ab.py out/cpu-track/data \
        --out benchmark/results/diagnosis/allocator-ab.json

For each model (``--model``, repeatable; default SparseConv, 3DSeg-T and the reduced U-Net) it trains the CPU
track's block training of that row (``benchmark/cpu-track.toml``: ``[train]`` with the row's own settings, seed 0)
for ``--iterations`` steps, without validation or checkpoints, once with glibc's default allocator settings and once
after ``keep_large_allocations_in_heap()`` (what ``benchmark train``, the suites, distillation and teacher training
do on the CPU), each in a fresh process because the setting is process-wide and cannot be undone. The two modes
alternate for ``--rounds`` rounds, so that both see the same minutes of a machine whose speed drifts. The time of a
step is read from the run's ``train_log.jsonl`` (from the first logged iteration to the last: the start-up, room
loading and class weights excluded). The final losses of the two modes must agree to the last bit: the setting
changes where memory comes from, not what is computed.

Not part of ``make bench`` (it trains: about 10 minutes with the defaults on 2 cores). Results are in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from panorooms3d.run.atomic import write_json

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"sparseconv": 60, "3dseg-t": 200, "unet3d-s": 40}  # iterations: about a minute of steps each


def child(data: str, model: str, mode: str, iterations: int, out: str) -> dict:
    """One timed training in this process (``mode``: default or tuned)."""
    from panorooms3d.bench import suite as S
    from panorooms3d.bench import train as T

    track = S.load_suite(ROOT / "benchmark" / "cpu-track.toml")
    run = next(r for r in track.runs if r.name == model)  # the row of that name: 3dseg-t, sparseconv, unet3d-s
    settings = S.suite_settings(track)
    cfg = S._pretrain_settings(track, run, settings)  # exactly what the suite trains for this row, seed 0
    cfg.update(iterations=iterations, val_every=0, checkpoint_every=10**9, log_every=10)
    if mode == "default":
        T.keep_large_allocations_in_heap = lambda: False  # the trainer calls it through the module
    config = T.TrainConfig(data=data, out=out, device="cpu", workers=settings["workers"], **cfg)
    t0 = time.perf_counter()
    result = T.train(config, progress=False)
    log = [json.loads(line) for line in (Path(out) / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    first, last = steps[0], steps[-1]
    return {"model": model, "mode": mode, "iterations": iterations, "total_seconds": time.perf_counter() - t0,
            "step_seconds": (last["seconds"] - first["seconds"]) / (last["iteration"] - first["iteration"]),
            "steps_timed": [first["iteration"], last["iteration"]], "final_loss": result.final_loss}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the CPU track's dataset (out/cpu-track/data)")
    ap.add_argument("--model", action="append", choices=sorted(MODELS), help="repeatable; default: all three")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark" / "results" / "diagnosis" / "allocator-ab.json")
    ap.add_argument("--child", nargs=4, metavar=("MODEL", "MODE", "ITERATIONS", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        model, mode, iterations, out = a.child
        print(json.dumps(child(str(a.data), model, mode, int(iterations), out)))
        return 0
    if not (a.data / "manifest.json").is_file():
        ap.error(f"{a.data}: no manifest.json (build the CPU track's data first: bash pipelines/cpu-track.sh)")
    rows = []
    for rnd in range(a.rounds):
        for model in a.model or list(MODELS):
            for mode in ("default", "tuned"):
                with tempfile.TemporaryDirectory() as tmp:
                    cmd = [sys.executable, __file__, str(a.data), "--child", model, mode, str(MODELS[model]),
                           str(Path(tmp) / "run")]
                    done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode:
                    print(done.stderr[-3000:], file=sys.stderr)
                    print(f"error: the {mode} training of {model} failed (its output above)", file=sys.stderr)
                    return 1
                out = done.stdout
                row = {**json.loads(out.strip().splitlines()[-1]), "round": rnd}
                print(f"round {rnd} {model:10s} {mode:7s} {row['step_seconds']:.3f} s/step  loss {row['final_loss']}")
                rows.append(row)
    summary = {}
    for model in a.model or list(MODELS):
        d = [r["step_seconds"] for r in rows if r["model"] == model and r["mode"] == "default"]
        t = [r["step_seconds"] for r in rows if r["model"] == model and r["mode"] == "tuned"]
        losses = {r["final_loss"] for r in rows if r["model"] == model}
        summary[model] = {"default_s_per_step": statistics.median(d), "tuned_s_per_step": statistics.median(t),
                          "change": statistics.median(t) / statistics.median(d) - 1, "same_final_loss": len(losses) == 1}
    # torch is imported only here in the parent, where the record is written
    from panorooms3d.bench.train import cpu_description

    result = {"machine": {**cpu_description(), "cores": os.cpu_count(),
                          "python": platform.python_version()},
              "command": "python benchmark/diagnosis/allocator_ab.py " + str(a.data), "rows": rows, "summary": summary}
    write_json(a.out, result)  # atomically, its folder created
    for model, s in summary.items():
        print(f"{model}: {s['default_s_per_step']:.3f} -> {s['tuned_s_per_step']:.3f} s/step ({s['change']:+.0%}), "
              f"same final loss: {s['same_final_loss']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
