"""Two one-thread trainings side by side against one two-thread training after the other, in the real trainer.

    .venv/bin/python benchmark/diagnosis/parallel_ab.py out/cpu-track/data \
        --out benchmark/results/diagnosis/parallel-ab.json

On a machine with C cores a suite can train its models one at a time with C threads each (``[settings] jobs = 1``)
or ``jobs`` at a time with C / jobs threads each. This measures which finishes a pair of trainings sooner. For each
model (``--model``, repeatable; default 3DSeg-T, SparseConv and the reduced U-Net) it trains the CPU track's block
training of that row (``benchmark/cpu-track.toml``: ``[train]`` with the row's own settings) for a fixed number of
steps, without validation or checkpoints, seeds 0 and 1:

- ``serial``: seed 0, then seed 1, each with all cores (the wall time of the two, start-up included);
- ``parallel``: seed 0 and seed 1 at once, each with cores / 2 threads (the wall time until both have finished).

The two ways alternate for ``--rounds`` rounds (serial first, then parallel), so that both see the same minutes of a
machine whose speed drifts. Each training is a fresh process. Reported: the wall times, each training's seconds a
step (from its ``train_log.jsonl``), and ``speedup`` = serial / parallel wall time (above 1: side by side is faster).

Not part of ``make bench`` (it trains: about 15 minutes with the defaults on 2 cores). Results are in
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

from panorooms3d.bench.train import cpu_description
from panorooms3d.run.atomic import write_json

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"3dseg-t": 150, "sparseconv": 40, "unet3d-s": 25}  # steps: about a minute a training at all cores


def child(data: str, model: str, seed: int, threads: int, iterations: int, out: str) -> dict:
    """One timed training in this process."""
    from panorooms3d.bench import suite as S
    from panorooms3d.bench import train as T

    track = S.load_suite(ROOT / "benchmark" / "cpu-track.toml")
    run = next(r for r in track.runs if r.name == model)  # the row of that name: 3dseg-t, sparseconv, unet3d-s
    settings = {**S.suite_settings(track), "seed": seed}
    cfg = S._pretrain_settings(track, run, settings)  # what the suite trains for this row and seed
    cfg.update(iterations=iterations, val_every=0, checkpoint_every=10**9, log_every=5, threads=threads)
    config = T.TrainConfig(data=data, out=out, device="cpu", workers=settings["workers"], **cfg)
    result = T.train(config, progress=False)
    log = [json.loads(line) for line in (Path(out) / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    first, last = steps[0], steps[-1]
    return {"model": model, "seed": seed, "threads": threads, "iterations": iterations,
            "step_seconds": (last["seconds"] - first["seconds"]) / (last["iteration"] - first["iteration"]),
            "final_loss": result.final_loss}


def _start(data: Path, model: str, seed: int, threads: int, iterations: int, tmp: str) -> subprocess.Popen:
    cmd = [sys.executable, __file__, str(data), "--child", model, str(seed), str(threads), str(iterations),
           str(Path(tmp) / f"seed{seed}")]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc: subprocess.Popen, what: str) -> dict:
    out, err = proc.communicate()
    if proc.returncode:
        print(err[-3000:], file=sys.stderr)
        raise SystemExit(f"error: {what} failed (its output above)")
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="the CPU track's dataset (out/cpu-track/data)")
    ap.add_argument("--model", action="append", choices=sorted(MODELS), help="repeatable; default: all three")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark" / "results" / "diagnosis" / "parallel-ab.json")
    ap.add_argument("--child", nargs=5, metavar=("MODEL", "SEED", "THREADS", "ITERATIONS", "OUT"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        model, seed, threads, iterations, out = a.child
        print(json.dumps(child(str(a.data), model, int(seed), int(threads), int(iterations), out)))
        return 0
    if not (a.data / "manifest.json").is_file():
        ap.error(f"{a.data}: no manifest.json (build the CPU track's data first: bash pipelines/cpu-track.sh)")
    cores = os.cpu_count() or 1
    half = max(1, cores // 2)
    rows = []
    for rnd in range(a.rounds):
        for model in a.model or list(MODELS):
            n = MODELS[model]
            for mode in ("serial", "parallel"):
                with tempfile.TemporaryDirectory() as tmp:
                    t0 = time.perf_counter()
                    if mode == "serial":
                        trainings = [_finish(_start(a.data, model, s, cores, n, tmp), f"{model} seed {s}")
                                     for s in (0, 1)]
                    else:
                        procs = [_start(a.data, model, s, half, n, tmp) for s in (0, 1)]
                        trainings = [_finish(p, f"{model} seed {s}") for s, p in zip((0, 1), procs)]
                    wall = time.perf_counter() - t0
                row = {"round": rnd, "model": model, "mode": mode, "iterations": n, "wall_seconds": round(wall, 2),
                       "trainings": trainings}
                steps = " / ".join(f"{t['step_seconds']:.3f}" for t in trainings)
                print(f"round {rnd} {model:10s} {mode:8s} {wall:7.1f} s wall  ({steps} s/step)", flush=True)
                rows.append(row)
    summary = {}
    for model in a.model or list(MODELS):
        s = [r["wall_seconds"] for r in rows if r["model"] == model and r["mode"] == "serial"]
        p = [r["wall_seconds"] for r in rows if r["model"] == model and r["mode"] == "parallel"]
        summary[model] = {"serial_wall_seconds": statistics.median(s), "parallel_wall_seconds": statistics.median(p),
                          "speedup": statistics.median(s) / statistics.median(p),
                          "speedup_by_round": [a_ / b_ for a_, b_ in zip(s, p)]}
    result = {"machine": {**cpu_description(), "cores": cores,
                          "python": platform.python_version()},
              "command": "python benchmark/diagnosis/parallel_ab.py " + str(a.data), "rows": rows,
              "summary": summary}
    write_json(a.out, result)  # atomically, its folder created
    for model, s in summary.items():
        print(f"{model}: serial {s['serial_wall_seconds']:.1f} s, side by side {s['parallel_wall_seconds']:.1f} s "
              f"(x{s['speedup']:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
