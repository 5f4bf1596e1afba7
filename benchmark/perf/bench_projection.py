"""Time and peak memory of the differentiable panoramic projection (forward + backward).

    python benchmark/perf/bench_projection.py            # 512 x 1024 over a 256 x 256 x 96 room, K = 30
    python benchmark/perf/bench_projection.py --quick    # 128 x 256 over 96^3

A synthetic box room (4 cm voxels, truncation 3 voxels, unobserved behind the walls) with random
logits (K = 30) is rendered from its centre by the three variants: ``render_equirect`` (one ray
per pixel), ``render_equirect_faces`` (six faces of height/2 px stitched) and
``render_equirect_emission`` (100 samples over 0.1-7 m). Each variant runs in a fresh subprocess;
its peak memory is the process's peak resident set (VmHWM, reset after the inputs are built) above
the resident set with the inputs (tsdf, logits) in memory, so it includes the gradient of the
logits (K X Y Z float32) that any backward must produce. Prints a Markdown table and writes
benchmark/results/perf_projection.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results" / "perf_projection.json"
VARIANTS = ("direct", "faces", "emission")


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _box_room(shape, voxel_size):
    """A box room filling the grid less 3 voxels on each side: tsdf [X, Y, Z] float32 and the camera."""
    import numpy as np
    import torch

    from panorooms3d.geometry import voxel_centres

    c = voxel_centres(np.zeros(3), voxel_size, shape)
    lo = np.full(3, 3 * voxel_size)
    hi = np.asarray(shape, dtype=np.float64) * voxel_size - 3 * voxel_size
    dpl = np.concatenate([c - lo, hi - c], -1)
    inside = (dpl > 0).all(-1)
    outside = np.linalg.norm(np.maximum(np.maximum(lo - c, c - hi), 0), axis=-1)
    sd = np.where(inside, dpl.min(-1), -outside)
    tr = 3 * voxel_size
    tsdf = np.clip(sd / tr, -1, 1)
    tsdf[sd < -tr] = 1.0
    return torch.tensor(tsdf, dtype=torch.float32), (lo + hi) / 2


def run_case(variant: str, shape, height: int, width: int, k: int, repeats: int = 3) -> dict:
    """Run one variant (forward + backward) ``repeats`` times in this process after a small warm-up;
    return the fastest timings (the machine is shared: the minimum is the least disturbed run) and
    the peak memory over all runs."""
    import gc

    import numpy as np
    import torch

    from panorooms3d.panorama.projection import render_equirect, render_equirect_emission, render_equirect_faces

    vs = 0.04
    tsdf, cam = _box_room(shape, vs)
    torch.manual_seed(0)
    logits = torch.randn(k, *shape).requires_grad_()
    kwargs = dict(origin=np.zeros(3), voxel_size=vs, camera=cam, height=height, width=width)
    fn = {"direct": render_equirect, "faces": render_equirect_faces, "emission": render_equirect_emission}[variant]
    small, small_cam = _box_room((16, 16, 16), vs)  # warm-up: one-time library initialisation
    wl = torch.zeros(k, 16, 16, 16, requires_grad=True)
    fn(small, wl, **{**kwargs, "camera": small_cam, "height": 16, "width": 32}).values.sum().backward()
    del small, wl
    gc.collect()
    base = _rss_mb("VmRSS")
    try:  # reset the peak resident set (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        peak_reset = True
    except OSError:
        peak_reset = False
    fwd, bwd = [], []
    for _ in range(max(1, repeats)):
        logits.grad = None
        t0 = time.perf_counter()
        res = fn(tsdf, logits, **kwargs)
        t1 = time.perf_counter()
        res.values.sum().backward()
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
        del res.values
    peak = _rss_mb("VmHWM")
    return {
        "variant": variant,
        "forward_s": round(min(fwd), 3),
        "backward_s": round(min(bwd), 3),
        "total_s": round(min(f + b for f, b in zip(fwd, bwd)), 3),
        "forward_s_all": [round(x, 3) for x in fwd],
        "backward_s_all": [round(x, 3) for x in bwd],
        "peak_mb_above_inputs": round(peak - base, 1) if peak_reset else None,
        "peak_rss_mb": round(peak, 1),
        "inputs_rss_mb": round(base, 1),
        "grad_mb": round(k * int(np.prod(shape)) * 4 / 2**20, 1),
        "hit_fraction": round(float(res.hit.float().mean()), 4),
        "threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="128 x 256 panorama over a 96^3 room")
    ap.add_argument("--repeats", type=int, default=3, help="runs per variant; the fastest is reported")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    ap.add_argument("--case", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        shape, height, width = (96, 96, 96), 128, 256
    else:
        shape, height, width = (256, 256, 96), 512, 1024
    k = 30
    if args.case:  # child: one variant, JSON on stdout
        if args.threads > 0:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(run_case(args.case, shape, height, width, k, args.repeats)))
        return 0
    rows = []
    for variant in VARIANTS:
        cmd = [
            sys.executable,
            __file__,
            "--case",
            variant,
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.threads),
        ]
        cmd += ["--quick"] if args.quick else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    import torch

    report = {
        "benchmark": "projection",
        "quick": args.quick,
        "room_shape": list(shape),
        "voxel_size": 0.04,
        "classes": k,
        "panorama": [height, width],
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "repeats": args.repeats,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"projection, {height} x {width} over {shape[0]} x {shape[1]} x {shape[2]}, K = {k}, "
        f"{rows[0]['threads']} threads, torch {torch.__version__}, fastest of {args.repeats}\n"
    )
    print(
        "| variant | forward (s) | backward (s) | total (s) | peak above inputs (MB) | of which dL/dlogits (MB) | hit |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['forward_s']} | {r['backward_s']} | {r['total_s']} | "
            f"{r['peak_mb_above_inputs']} | {r['grad_mb']} | {r['hit_fraction']} |"
        )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
