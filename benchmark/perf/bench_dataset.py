"""Performance of the data side: panorama making, random 128^3 crop reads, packing throughput.

Usage: python benchmark/perf/bench_dataset.py [--quick]

Prints a Markdown table and writes benchmark/results/perf_dataset.json. Targets: a 512 x 1024
panorama from 512^2 faces in <= 20 ms; a random 128^3 crop (all five volume arrays) in <= 30 ms.
--quick uses fewer repetitions and smaller rooms (the crop stays 128^3).
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

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from panorooms3d import geometry as g  # noqa: E402
from panorooms3d.panorama.equirect import make_panorama, sampling_maps  # noqa: E402
from panorooms3d.store.dataset import Dataset, pack_dataset, write_room_volume  # noqa: E402
from panorooms3d.store.frames import Frames  # noqa: E402
from panorooms3d.volume import RoomVolume  # noqa: E402


def synthetic_frames(face: int) -> Frames:
    """Skybox faces of a 5 x 4 x 2.8 m box room (analytic depth, label per wall)."""
    lo, hi, cam = np.array([-2.0, -1.5, 0.0]), np.array([3.0, 2.5, 2.8]), np.array([0.3, 0.2, 1.5])
    K = g.intrinsics(face, face, 90.0)
    rays = g.pixel_rays(K, face, face)
    rng = np.random.default_rng(0)
    faces = {}
    for name in g.SKYBOX_FACES:
        d = rays @ g.SKYBOX_ROTATIONS[name].T
        with np.errstate(divide="ignore"):
            t = np.min(np.where(d > 0, (hi - cam) / d, np.where(d < 0, (lo - cam) / d, np.inf)), axis=-1)
        label = (np.argmax(np.abs(d), -1) * 20 + 10).astype(np.uint8)
        faces[name] = {"rgb": rng.integers(0, 256, (face, face, 3), dtype=np.uint8), "depth": t.astype(np.float32),
                       "label": label, "instance": label.astype(np.uint16)}
    z = np.zeros((0, 2, 2), np.uint8)
    return Frames(rgb=np.zeros((0, 2, 2, 3), np.uint8), depth=z.astype(np.float32), label=z, instance=z.astype(np.uint16),
                  K=K, cam_to_world=np.zeros((0, 4, 4)), skybox=faces, skybox_K=K, pano_camera=cam,
                  attrs={"room_uid": "bench/room"})


def synthetic_volume(uid: str, shape, seed: int) -> RoomVolume:
    """A room-like volume: free space (tsdf 1) with observed shell and furniture bands."""
    rng = np.random.default_rng(seed)
    tsdf = np.ones(shape, np.float32)
    weight = np.zeros(shape, np.float32)
    shell = np.zeros(shape, bool)
    shell[:3], shell[-3:], shell[:, :3], shell[:, -3:], shell[:, :, :3], shell[:, :, -3:] = (True,) * 6
    shell[20:40, 30:60, :25] = True  # furniture
    tsdf[shell] = rng.uniform(-1, 1, shell.sum()).astype(np.float32)
    weight[shell] = rng.integers(1, 20, shell.sum())
    rgb = np.zeros((*shape, 3), np.uint8)
    rgb[shell] = rng.integers(0, 256, (shell.sum(), 3))
    label = np.where(shell, rng.choice([40, 51, 30, 17], size=shape), 0).astype(np.uint8)
    return RoomVolume(tsdf=tsdf, weight=weight, rgb=rgb, label=label, instance=label.astype(np.uint16),
                      origin=np.zeros(3), room_uid=uid)


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller rooms")
    args = parser.parse_args()
    repeat = 5 if args.quick else 20
    room_shape = (160, 140, 72) if args.quick else (200, 180, 80)
    n_rooms = 2 if args.quick else 6
    rows = []

    frames = synthetic_frames(512)
    t0 = time.perf_counter()
    sampling_maps(512, frames.skybox_K, 512, 1024)
    first = (time.perf_counter() - t0) * 1000
    make_panorama(frames, 512, 1024)
    pano_ms = timed(lambda: make_panorama(frames, 512, 1024), repeat)
    rows.append({"name": "panorama 512x1024 from 6 x 512^2 faces", "median_ms": float(np.median(pano_ms)),
                 "target_ms": 20.0, "note": f"maps cached; first call builds them in {first:.0f} ms"})

    work = Path(tempfile.mkdtemp(prefix="bench_dataset_"))
    try:
        for i in range(n_rooms):
            write_room_volume(work, synthetic_volume(f"bench/room{i:02d}", room_shape, i))
        voxels = n_rooms * int(np.prod(room_shape))
        t0 = time.perf_counter()
        pack_dataset(work, rooms_per_shard=4)
        pack_s = time.perf_counter() - t0
        rows.append({"name": f"pack {n_rooms} rooms of {room_shape}", "median_ms": pack_s * 1000, "target_ms": None,
                     "note": f"{voxels / pack_s / 1e6:.1f} Mvoxel/s, {n_rooms / pack_s:.2f} rooms/s"})
        ds = Dataset(work)
        rng = np.random.default_rng(0)

        def crop(arrays=None):
            uid = ds.rooms[rng.integers(len(ds.rooms))]
            start = rng.integers(0, np.maximum(np.asarray(room_shape) - 64, 1))
            ds.read_crop(uid, start, (128, 128, 128), arrays)

        crop()
        crop_ms = timed(crop, repeat)
        rows.append({"name": "random 128^3 crop, all 5 arrays", "median_ms": float(np.median(crop_ms)),
                     "target_ms": 30.0, "note": "64^3 chunks in 128^3 shard files, zstd + crc32c"})
        crop3_ms = timed(lambda: crop(["tsdf", "rgb", "label"]), repeat)
        rows.append({"name": "random 128^3 crop, tsdf+rgb+label", "median_ms": float(np.median(crop3_ms)),
                     "target_ms": 30.0, "note": "what training reads"})
        t0 = time.perf_counter()
        problems = ds.verify()
        rows.append({"name": f"verify {n_rooms} rooms", "median_ms": (time.perf_counter() - t0) * 1000,
                     "target_ms": None, "note": "ok" if not problems else f"{len(problems)} problems"})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("| benchmark | median ms | target ms | note |")
    print("|---|---:|---:|---|")
    for r in rows:
        target = "" if r["target_ms"] is None else f"{r['target_ms']:.0f}"
        print(f"| {r['name']} | {r['median_ms']:.1f} | {target} | {r['note']} |")
    out = ROOT / "benchmark" / "results" / "perf_dataset.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"\nload average while measuring: {load[0]:.1f} on {os.cpu_count()} cores (timings scale with it)")
    out.write_text(json.dumps({"quick": args.quick, "machine": platform.platform(), "python": platform.python_version(),
                               "cpu_count": os.cpu_count(), "load_average": load, "results": rows}, indent=1) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
