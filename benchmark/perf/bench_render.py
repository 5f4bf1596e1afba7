"""Render speed: seconds per 640 x 480 frame (all passes), per skybox (6 faces at 512) and per scene build.

The room is the living room of a synthetic house (``panorooms3d.scene.synth``, seed 0: textured
architecture and furniture, the whole house loaded as in a real run). The render is the real
``render_room`` (Cycles on the CPU, 4 samples, OpenImageDenoise, one Blender subprocess). Target:
<= 1.0 s per 640 x 480 frame on 2 cores. Prints a Markdown table and writes
benchmark/results/perf_render.json.

    python benchmark/perf/bench_render.py [--quick]     # --quick: 3 frames at 320 x 240, skybox 128
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def bench_house(tmp: Path):
    """(house, room_id) of the benchmark: the largest room of synthetic house 0 (seed 0)."""
    from panorooms3d.scene.front import load_house
    from panorooms3d.scene.synth import synthesize

    paths = synthesize(tmp / "front", 1, seed=0, rooms_per_house=(3, 3))
    house = load_house(paths[0], tmp / "front")
    room = max(house.rooms, key=lambda r: sum(m.area() for m in r.floor_meshes()))
    return house, room.room_id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 frames at 320 x 240 and a 128-pixel skybox (a smoke run)")
    ap.add_argument("--views", type=int, default=None, help="frames to render (default 10, quick 3)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmark" / "results" / "perf_render.json")
    args = ap.parse_args()

    from panorooms3d.render.render_room import render_room
    from panorooms3d.render.settings import RenderSettings

    w, h, sky = (320, 240, 128) if args.quick else (640, 480, 512)
    views = args.views or (3 if args.quick else 10)
    with tempfile.TemporaryDirectory(prefix="panorooms3d-bench-render-") as td:
        tmp = Path(td)
        house, room_id = bench_house(tmp)
        n_tri = sum(m.num_faces for m in house.all_meshes())
        settings = RenderSettings(width=w, height=h, views=views, samples=4, denoise=True, skybox_size=sky, seed=0)
        t0 = time.perf_counter()
        info = render_room(house, room_id, tmp / "bench.zarr", settings)
        wall = time.perf_counter() - t0
        shutil.rmtree(tmp / "bench.zarr", ignore_errors=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    row = {
        "room": f"{house.uid}/{room_id}", "triangles": n_tri, "views": views, "width": w, "height": h,
        "samples": 4, "denoise": True, "skybox_size": sky,
        "seconds_per_frame": round(info["seconds_per_frame"], 3),
        "seconds_per_skybox": round(info["skybox_seconds"], 3),
        "seconds_scene_build": round(info["build_seconds"], 3),
        "seconds_room_total": round(wall, 2),
        "coverage": info["coverage"],
    }
    result = {
        "benchmark": "render", "quick": args.quick, "rows": [row],
        "targets": {"seconds_per_frame_640x480_2_cores": 1.0},
        "device": info["device"], "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_1min_after": load,
        "python": platform.python_version(), "machine": platform.machine(),
    }
    print(f"render speed (Cycles {info['device']}, {result['affinity']} cores usable, load {load})\n")
    print(f"| room | triangles | frame size | views | s/frame | skybox (6 x {sky}^2) s | scene build s | room total s | "
          "coverage |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {row['room']} | {n_tri} | {w}x{h} | {views} | {row['seconds_per_frame']:.3f} | "
          f"{row['seconds_per_skybox']:.2f} | {row['seconds_scene_build']:.2f} | {row['seconds_room_total']:.1f} | "
          f"{100 * row['coverage']:.1f} % |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
