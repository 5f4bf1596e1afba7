"""Fusion speed: frames/s for 640 x 480 frames (TSDF + colour + label votes) and seconds for a 400-frame room.

Frames are exact ray casts (Open3D RaycastingScene, tests/raycast_frames.py) of a 5 x 4 x 2.8 m box
room with a few boxes inside, made once and cached in a temporary folder. The fusion is the real
``fuse_room`` at 4 cm voxels, truncation 3 voxels. Prints a Markdown table and writes
benchmark/results/perf_fusion.json.

    python benchmark/perf/bench_fusion.py [--quick]     # --quick: 40 frames at 320 x 240
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

FURNITURE = [((1.0, 1.0, 0.0), (2.6, 2.2, 0.5), 17), ((3.5, 0.2, 0.0), (4.3, 0.8, 1.8), 48),
             ((0.5, 3.0, 0.0), (1.3, 3.6, 0.75), 36), ((3.2, 2.6, 0.0), (4.4, 3.6, 0.45), 46)]


def cached_frames(n: int, width: int, height: int):
    """Ray-cast frames of the benchmark room, cached as a frames store in the temp folder."""
    from raycast_frames import box_room, raycast_frames, room_cameras

    from panorooms3d.store.frames import read_frames, write_frames

    path = Path(tempfile.gettempdir()) / f"panorooms3d-bench-fusion-{n}x{width}x{height}.zarr"
    room = box_room(size=(5.0, 4.0, 2.8), lo=(0.0, 0.0, 0.0), furniture=FURNITURE, uid="benchhouse/Bench-1")
    if not path.exists():
        t0 = time.perf_counter()
        frames = raycast_frames(room, room_cameras(room, n, seed=0), width, height, hfov_deg=70)
        write_frames(path, frames)
        print(f"made {n} frames of {width} x {height} in {time.perf_counter() - t0:.1f} s -> {path}", file=sys.stderr)
    return read_frames(path, skybox=False), room


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="40 frames at 320 x 240 (a smoke run)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark" / "results" / "perf_fusion.json")
    args = ap.parse_args()

    import open3d

    from panorooms3d.fusion.fidelity import measure_fidelity
    from panorooms3d.fusion.fuse_room import fuse_room

    cases = [(40, 320, 240)] if args.quick else [(40, 640, 480), (400, 640, 480)]
    rows = []
    for n, w, h in cases:
        frames, room = cached_frames(n, w, h)
        if not rows:  # warm-up (imports, first allocations) on two frames
            fuse_room(dataclasses.replace(frames, **{k: getattr(frames, k)[:2] for k in
                                                     ("rgb", "depth", "label", "instance", "cam_to_world")}))
        t0 = time.perf_counter()
        s: dict = {}
        vol = fuse_room(frames, timings=s)
        sec = time.perf_counter() - t0
        fid = measure_fidelity(vol, *room.triangles())
        rows.append({
            "frames": n, "width": w, "height": h, "seconds": round(sec, 3), "frames_per_s": round(n / sec, 2),
            "integrate_s": round(s["integrate"], 3), "extract_s": round(s["extract"], 3),
            "vote_s": round(s["vote"], 3),
            "grid": list(vol.shape), "near_surface_voxels": vol.attrs["fusion"]["near_surface_voxels"],
            "label_agreement": round(fid["label_agreement"], 4),
            "surface_distance_mean_m": round(fid["surface_distance_mean_m"], 5),
            "observed_surface_share": round(fid["observed_surface_share"], 4),
        })
    result = {
        "benchmark": "fusion", "quick": args.quick, "rows": rows,
        "targets": {"frames_per_s_640x480": 30, "seconds_400_frames": 20},
        "voxel_size": 0.04, "truncation_voxels": 3.0,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "open3d": open3d.__version__, "python": platform.python_version(), "machine": platform.machine(),
    }
    print(f"fusion speed (OMP_NUM_THREADS={result['omp_num_threads']}, {result['affinity']} cores usable, "
          f"open3d {open3d.__version__})\n")
    print("| frames | size | seconds | frames/s | integrate s | extract s | vote s | grid | label agree | "
          "surface dist | observed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['frames']} | {r['width']}x{r['height']} | {r['seconds']:.2f} | {r['frames_per_s']:.1f} | "
              f"{r['integrate_s']:.2f} | {r['extract_s']:.2f} | {r['vote_s']:.2f} | {'x'.join(map(str, r['grid']))} | "
              f"{100 * r['label_agreement']:.2f} % | {100 * r['surface_distance_mean_m']:.2f} cm | "
              f"{100 * r['observed_surface_share']:.1f} % |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
