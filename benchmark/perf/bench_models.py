"""CPU latency and peak memory of every registered 3D model (one forward, torch.no_grad, all cores).

Sizes: a 128^3 training block and a 256x256x96 room (``--quick``: 64^3 only). Each (model, size) runs in a
fresh subprocess (``panorooms3d.nn.commands.profile_model``), so peak memory is that process's ``ru_maxrss``.
A run that fails (out of memory, timeout, missing family) is recorded with its error and the others go on.

Also prints the paper's CPU comparison: inference time for 20 random scenes, 3DSeg-T 43.62 s, B 44.79 s,
M 61.08 s, L 95.89 s, 3D U-Net 254.75 s (3D U-Net 5.8x slower than 3DSeg-T), against our ratios.

    python benchmark/perf/bench_models.py [--quick] [--threads N] [--repeats N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from panorooms3d.nn.commands import profile_model
from panorooms3d.nn.registry import list_models

ROOT = Path(__file__).resolve().parents[2]
PAPER_CPU_S = {"3dseg-t": 43.62, "3dseg-b": 44.79, "3dseg-m": 61.08, "3dseg-l": 95.89, "unet3d": 254.75}
"""The paper's CPU inference time for 20 random scenes (seconds)."""


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print Markdown tables; write JSON. Returns the exit status (0 unless nothing ran)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64^3 only, one timed forward after a warm-up")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    ap.add_argument("--repeats", type=int, default=1, help="timed forwards per (model, size); the median is reported")
    ap.add_argument("--warmup", type=int, default=None, help="untimed forwards first (default 1 quick, 0 full)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per (model, size) before giving up")
    ap.add_argument("--models", nargs="*", default=None, help="only these registry names")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark" / "results" / "perf_models.json")
    args = ap.parse_args(argv)

    sizes = [(64, 64, 64)] if args.quick else [(128, 128, 128), (256, 256, 96)]
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 0)
    specs = [s for s in list_models() if s.is_3d and (args.models is None or s.name in args.models)]
    rows = []
    for spec in specs:
        for shape in sizes:
            row = {"name": spec.name, "family": spec.family, "paper_params_m": spec.paper_params,
                   "size": list(shape), "error": None}
            t0 = time.perf_counter()
            try:
                row.update(profile_model(spec.name, shape, threads=args.threads, repeats=args.repeats,
                                         warmup=warmup, timeout=args.timeout))
            except Exception as e:  # noqa: BLE001 - record and go on (OOM, timeout, missing family)
                row["error"] = str(e)[-400:]
            row["wall_s"] = time.perf_counter() - t0
            rows.append(row)
            status = "error" if row["error"] else f"{row['latency_s']:.2f} s"
            print(f"  {spec.name} {'x'.join(map(str, shape))}: {status}", file=sys.stderr, flush=True)

    print(f"\n### Model CPU forward ({args.threads} threads, torch {torch.__version__}, {platform.processor() or ''})\n")
    print("| model | family | params (M) | paper (M) | input | latency (s) | peak RSS (MiB) | forward peak (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        size = "x".join(map(str, r["size"]))
        paper = "-" if r["paper_params_m"] is None else f"{r['paper_params_m']:g}"
        if r["error"]:
            print(f"| {r['name']} | {r['family']} | - | {paper} | {size} | failed: {r['error'][:80]} | - | - |")
            continue
        print(f"| {r['name']} | {r['family']} | {r['params'] / 1e6:.4f} | {paper} | {size} | {r['latency_s']:.2f} "
              f"| {r['peak_rss_mb']:.0f} | {r['forward_peak_mb']:.0f} |")

    comparison = []
    for shape in sizes:
        lat = {r["name"]: r["latency_s"] for r in rows if r["size"] == list(shape) and not r["error"]}
        if "3dseg-t" not in lat:
            continue
        for name, paper_s in PAPER_CPU_S.items():
            if name in lat:
                comparison.append({"size": list(shape), "name": name, "ratio_to_3dseg_t": lat[name] / lat["3dseg-t"],
                                   "paper_ratio_to_3dseg_t": paper_s / PAPER_CPU_S["3dseg-t"]})
    if comparison:
        print("\n### CPU time relative to 3DSeg-T (paper: 20 scenes, 3D U-Net 5.8x slower)\n")
        print("| input | model | ours / 3DSeg-T | paper / 3DSeg-T |")
        print("|---|---|---|---|")
        for c in comparison:
            print(f"| {'x'.join(map(str, c['size']))} | {c['name']} | {c['ratio_to_3dseg_t']:.2f}x "
                  f"| {c['paper_ratio_to_3dseg_t']:.2f}x |")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "models", "quick": args.quick, "threads": args.threads, "repeats": args.repeats,
        "warmup": warmup, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "memory_method": "ru_maxrss high-water mark of a fresh subprocess per (model, size)",
        "paper_cpu_s_20_scenes": PAPER_CPU_S, "rows": rows, "comparison": comparison,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0 if any(not r["error"] for r in rows) or not rows else 1


if __name__ == "__main__":
    sys.exit(main())
