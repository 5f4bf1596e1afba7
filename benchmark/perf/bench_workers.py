"""Rooms in parallel: ``build`` and ``panoramas`` with one worker against two, on the CPU track's settings.

Synthetic houses (``synth``) are built into volumes (``build``, the track's 192 x 144 frames at 8 cm) and
rendered into panoramas only (``panoramas``, the track's 128 x 256), once with ``--workers 1`` and once
with ``--workers 2``, through the real command line (Blender renders, Open3D fuses, zarr stores). A
room's Blender renders on every core, but its scene build, the fusion and the writing run on one, so
two rooms at a time can use the second core. Measured: wall seconds and the CPU seconds of the
command's processes (user + system, from ``os.wait4``), and whether the shards of both are the same
bytes (the sha256 each ``manifest.json`` records for its shards; they must be equal: a room's output does
not depend on what runs beside it).

    python benchmark/perf/bench_workers.py             # quick (make bench): 2 houses built, 4 rendered
    python benchmark/perf/bench_workers.py --houses-3d 3 --houses-2d 10   # the numbers in docs/performance.md

Writes benchmark/results/perf_workers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from panorooms3d.run.atomic import write_json

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "panorooms3d.cli"]
BUILD = ["--width", "192", "--height", "144", "--skybox-size", "256", "--pano-height", "256", "--voxel-size", "0.08",
         "--splits", "0.47,0.2,0.33", "--seed", "0", "--delete-frames"]
PANORAMAS = ["--skybox-size", "128", "--pano-height", "128", "--seed", "0"]


def timed(args: list[str]) -> dict:
    """Run a command; its wall seconds and its processes' CPU seconds (user + system, children included)."""
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: the progress bars would fill a pipe and block
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(args)} failed ({code}):\n{err.read()[-2000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "cores_busy": round((usage.ru_utime + usage.ru_stime) / wall, 2)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--houses-3d", type=int, default=2, help="synthetic houses built into volumes")
    ap.add_argument("--houses-2d", type=int, default=4, help="synthetic houses rendered into panoramas")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark" / "results" / "perf_workers.json")
    args = ap.parse_args(argv)
    result = {"machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()},
              "command": " ".join(["python benchmark/perf/bench_workers.py", *(argv or sys.argv[1:])]), "steps": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, houses, seed, command, extra in [("build", args.houses_3d, 7, "build", BUILD),
                                                   ("panoramas", args.houses_2d, 5, "panoramas", PANORAMAS)]:
            front = tmp / f"front-{name}"
            subprocess.run([*CLI, "synth", "--out", str(front), "--houses", str(houses), "--seed", str(seed)],
                           check=True, stdout=subprocess.DEVNULL)
            rows = {}
            for workers in (1, 2):
                out = tmp / f"{name}-{workers}"
                rows[workers] = timed([*CLI, command, "--front", str(front), "--out", str(out), *extra,
                                       "--workers", str(workers)])
                manifest = json.loads((out / "manifest.json").read_text())
                rows[workers]["rooms"] = len(manifest["rooms"])
                rows[workers]["shards_sha256"] = {s["file"]: s["sha256"] for s in manifest["shards"]}
                print(f"{name}: {houses} houses, {rows[workers]['rooms']} rooms, --workers {workers}: "
                      f"{rows[workers]['wall_s']} s ({rows[workers]['cores_busy']} cores busy)", flush=True)
            result["steps"][name] = {
                "houses": houses, "workers_1": rows[1], "workers_2": rows[2],
                "speedup": round(rows[1]["wall_s"] / rows[2]["wall_s"], 2),
                "same_bytes": rows[1]["shards_sha256"] == rows[2]["shards_sha256"]}
            print(f"{name}: 2 workers {result['steps'][name]['speedup']}x, same bytes: "
                  f"{result['steps'][name]['same_bytes']}", flush=True)
    write_json(args.out, result)
    print(f"wrote {args.out}")
    if not all(step["same_bytes"] for step in result["steps"].values()):
        raise SystemExit("two workers wrote other bytes than one: a room's output depends on what runs beside it")


if __name__ == "__main__":
    main()
