"""Fidelity against views: how much of a room the fused volume observes with 8 ... 424 views, and coverage-driven views.

For each room, random hand-held views (the renderer's own sampler and seed, so the first N views
are exactly what ``render --views N`` uses) and the coverage-driven views
(``render --view-selection coverage``) are turned into frames by exact ray casts of the house
(Open3D; Blender's depth and labels agree with these casts to 1 mm / 99 %, tests/test_render.py),
fused with the real ``fuse_room`` at 4 cm, and measured:

- ``observed``: share of the room's interior-visible surface (render/coverage.py: area-uniform
  samples of the room's mesh seen from free space inside the room) within one voxel of an
  observed near-surface voxel, on samples drawn with another seed than the selection's;
- ``surface_distance_mean_m``, ``label_agreement``: ``fusion.fidelity.measure_fidelity``;
- seconds: ``select_s`` (pose sampling or selection, measured), ``fuse_s`` (measured, at the
  benchmark's frame size) and ``render_est_s`` (frames x the measured Blender seconds per
  640 x 480 frame + skybox + start, from benchmark/results/perf_render.json): Blender is not run.

    python benchmark/perf/bench_views.py            # quick (make bench): box room + 1 synthetic room, 8-32 views, 96x72
    python benchmark/perf/bench_views.py --full     # 2 synthetic + 2 real rooms, 8 ... 424 views, 160x120

Writes benchmark/results/views/{quick,full}.json and a plot {quick,full}.png (each number against views).
"""

from __future__ import annotations

import argparse
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

SAMPLES = ROOT.parent / "shared" / "data" / "3d-front-samples"
REAL_ROOMS = ["07700701-1835-4532-8af0-bd8c7f624b1b/MasterBedroom-142", "dc74ad5c-34cf-4237-a3f3-a94297a907c8/MasterBedroom-11202"]
#: Measured Blender costs at 640 x 480, 4 samples + denoising (docs/performance.md), used when perf_render.json is absent.
RENDER_FALLBACK = {"seconds_per_frame": 1.106, "seconds_per_skybox": 5.315, "seconds_scene_build": 0.103}
BLENDER_START_S = 1.0
PAPER_VIEWS = 424


def box_house():
    """A plain closed 4 x 3 x 2.8 m box room with one cabinet in a corner (the issue's example room)."""
    from raycast_frames import box_room

    from panorooms3d.scene.model import House

    room = box_room(size=(4.0, 3.0, 2.8), lo=(0.0, 0.0, 0.0), furniture=[((0.0, 0.0, 0.0), (0.6, 1.2, 1.0), 17)],
                    uid="boxhouse/Box-1")
    return House(uid="boxhouse", rooms=[room])


def ray_cast_frames(index, K, width, height, poses, room_uid):
    """Frames of the house seen from ``poses`` by exact ray casts (depth planar, labels/instances of the hit triangle)."""
    import numpy as np

    from panorooms3d.render.cameras import cast_frame
    from panorooms3d.store.frames import Frames
    from panorooms3d.taxonomy import colourise

    n = len(poses)
    depth = np.zeros((n, height, width), np.float32)
    label = np.zeros((n, height, width), np.uint8)
    inst = np.zeros((n, height, width), np.uint16)
    for i, c2w in enumerate(poses):
        d, lab, ins, _ = cast_frame(index, K, width, height, c2w)
        depth[i], label[i], inst[i] = d, lab, ins
    return Frames(rgb=colourise(label), depth=depth, label=label, instance=inst, K=K, cam_to_world=np.asarray(poses),
                  attrs={"room_uid": room_uid})


def measure(house, room, index, K, width, height, poses, eval_samples):
    """Fuse the ray-cast frames of ``poses`` and measure them (fields in the module docstring)."""
    from panorooms3d.fusion.fidelity import measure_fidelity
    from panorooms3d.fusion.fuse_room import fuse_room
    from panorooms3d.render.coverage import observed_share, view_visibility

    t0 = time.perf_counter()
    frames = ray_cast_frames(index, K, width, height, poses, room.uid)
    cast_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    vol = fuse_room(frames, bounds=room, room_uid=room.uid)
    fuse_s = time.perf_counter() - t0
    fid = measure_fidelity(vol, *room.triangles())
    seen = view_visibility(index, eval_samples.points[eval_samples.visible], K, width, height, poses).any(axis=0)
    return {
        "frames": int(len(poses)),
        "observed": round(observed_share(vol, eval_samples), 4),
        "seen_by_views": round(float(seen.mean()), 4),
        "surface_distance_mean_m": None if fid["surface_distance_mean_m"] is None else round(fid["surface_distance_mean_m"], 5),
        "label_agreement": None if fid["label_agreement"] is None else round(fid["label_agreement"], 4),
        "observed_mesh_share": round(fid["observed_surface_share"], 4),
        "cast_s": round(cast_s, 3),
        "fuse_s": round(fuse_s, 3),
    }


def render_costs() -> dict:
    path = ROOT / "benchmark" / "results" / "perf_render.json"
    try:
        row = json.loads(path.read_text())["rows"][0]
        return {k: float(row[k]) for k in RENDER_FALLBACK} | {"source": str(path.relative_to(ROOT))}
    except (OSError, KeyError, IndexError, ValueError):
        return dict(RENDER_FALLBACK, source="docs/performance.md (fallback constants)")


def rooms_for(args, tmp: Path):
    """[(label, house, room)] for the run."""
    from panorooms3d.scene.front import room_by_uid, select_rooms
    from panorooms3d.scene.synth import synthesize

    out = []
    if args.box:
        h = box_house()
        out.append(("box (plain)", h, h.rooms[0]))
    if args.synth_rooms:
        front = tmp / "front"
        synthesize(front, houses=1, seed=args.seed)
        uids = [u for u, _ in select_rooms(front)[0]][: args.synth_rooms]
        for uid in uids:
            h, r = room_by_uid(front, uid)
            out.append((f"synthetic {r.type}", h, r))
    for uid in args.real:
        h, r = room_by_uid(SAMPLES, uid)
        out.append((f"real {r.type}", h, r))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true",
                    help="the recorded run: 2 synthetic + 2 real rooms, 8-424 views, 160x120 (several minutes)")
    ap.add_argument("--views", default=None, help="comma-separated random view counts [quick 8,16,32; full 8,...,424]")
    ap.add_argument("--size", default=None, help="frame WxH for the ray-cast frames [quick 96x72; full 160x120]")
    ap.add_argument("--target", type=float, default=0.99, help="coverage target of the coverage-driven views")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="JSON to write [benchmark/results/views/{quick,full}.json]")
    ap.add_argument("--replot", type=Path, default=None, help="only redraw the table and plot of a written JSON")
    args = ap.parse_args()
    if args.replot:
        result = json.loads(args.replot.read_text())
        print(table(result))
        plot(result, args.replot.with_suffix(".png"))
        return
    views = [int(v) for v in (args.views or ("8,16,32,64,128,424" if args.full else "8,16,32")).split(",")]
    w, h = (int(x) for x in (args.size or ("160x120" if args.full else "96x72")).split("x"))
    args.box = True
    args.synth_rooms = 2 if args.full else 1
    args.real = REAL_ROOMS if args.full and SAMPLES.is_dir() else []
    name = "full" if args.full else "quick"
    out = args.out or ROOT / "benchmark" / "results" / "views" / f"{name}.json"

    import logging

    import numpy as np

    logging.disable(logging.WARNING)  # the real houses' loader notes (missing models) are not news here
    from panorooms3d.geometry import intrinsics
    from panorooms3d.render.cameras import house_index, sample_cameras
    from panorooms3d.render.coverage import interior_visible_surface, select_views
    from panorooms3d.render.render_room import room_seed
    from panorooms3d.render.settings import RenderSettings

    costs = render_costs()

    def render_est(frames: int) -> float:
        return frames * costs["seconds_per_frame"] + costs["seconds_per_skybox"] + costs["seconds_scene_build"] \
            + BLENDER_START_S

    K = intrinsics(w, h, RenderSettings.hfov_deg)
    rows = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-views-") as tmp:
        for label, house, room in rooms_for(args, Path(tmp)):
            t0 = time.perf_counter()
            index = house_index(house)
            index_s = time.perf_counter() - t0
            ev = interior_visible_surface(house, room.room_id, index, seed=args.seed + 1000, max_samples=12000)
            print(f"{label} {room.uid}: {len(index.faces)} triangles in the house, surface {ev.area_m2:.1f} m^2, "
                  f"interior-visible {100 * ev.visible_share:.1f}% ({len(ev.probes)} probes)", file=sys.stderr)
            base = {"room": room.uid, "kind": label, "area_m2": round(ev.area_m2, 2),
                    "interior_visible_share": round(ev.visible_share, 4), "index_s": round(index_s, 3)}
            st = RenderSettings(seed=args.seed, views=max(views), width=w, height=h, coverage_target=args.target)
            t0 = time.perf_counter()
            try:
                poses, _ = sample_cameras(house, room.room_id, st, np.random.default_rng(room_seed(args.seed, room.uid)),
                                          index=index)
            except RuntimeError as exc:  # too few valid poses for the largest count: use what there is
                print(f"  {exc}", file=sys.stderr)
                poses = None
            sample_s = time.perf_counter() - t0
            for n in views:
                if poses is None or n > len(poses):
                    continue
                r = measure(house, room, index, K, w, h, poses[:n], ev)
                r.update(base, method="random", select_s=round(sample_s * n / max(views), 3),
                         render_est_s=round(render_est(n), 1))
                rows.append(r)
                print(f"  random {n:4d}: observed {100 * r['observed']:.1f}%, label {r['label_agreement']}, "
                      f"dist {r['surface_distance_mean_m']}, fuse {r['fuse_s']} s", file=sys.stderr)
            t0 = time.perf_counter()
            cposes, info = select_views(house, room.room_id, st.__class__(**{**st.to_dict(), "view_selection": "coverage"}),
                                        np.random.default_rng(room_seed(args.seed, room.uid)), index=index)
            select_s = time.perf_counter() - t0
            r = measure(house, room, index, K, w, h, cposes, ev)
            r.update(base, method="coverage", select_s=round(select_s, 3), render_est_s=round(render_est(len(cposes)), 1),
                     predicted=info["coverage"], reachable=info["reachable"], goal=info["goal"])
            rows.append(r)
            print(f"  coverage {len(cposes):3d}: observed {100 * r['observed']:.1f}% (predicted "
                  f"{100 * info['coverage']:.1f}%, reachable {100 * info['reachable']:.1f}%), select {select_s:.1f} s",
                  file=sys.stderr)
    import open3d

    result = {
        "benchmark": "views", "mode": name, "frame_size": [w, h], "views": views, "target": args.target,
        "seed": args.seed, "rows": rows, "render_costs_640x480": costs, "blender_start_s": BLENDER_START_S,
        "paper_views": PAPER_VIEWS, "seconds_total": round(time.perf_counter() - t_all, 1),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "open3d": open3d.__version__, "python": platform.python_version(), "machine": platform.machine(),
    }
    print(table(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    from panorooms3d.run.atomic import atomic_path

    with atomic_path(out) as tmp_path:
        tmp_path.write_text(json.dumps(result, indent=2))
    png = out.with_suffix(".png")
    plot(result, png)
    print(f"\nwrote {out} and {png} in {result['seconds_total']} s")


def table(result: dict) -> str:
    lines = ["| room | views | frames | observed (interior-visible) | surface dist | label agreement | select s | "
             "fuse s | render est. s (640x480) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        how = "coverage" if r["method"] == "coverage" else "random"
        dist = "-" if r["surface_distance_mean_m"] is None else f"{100 * r['surface_distance_mean_m']:.2f} cm"
        lab = "-" if r["label_agreement"] is None else f"{100 * r['label_agreement']:.1f} %"
        lines.append(f"| {r['kind']} {r['room'].split('/')[-1]} | {how} | {r['frames']} | {100 * r['observed']:.1f} % | {dist} | {lab} | "
                     f"{r['select_s']:.1f} | {r['fuse_s']:.2f} | {r['render_est_s']:.0f} |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Four panels against views (log x): observed share, surface distance, label agreement, seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from panorooms3d.run.atomic import atomic_path

    keys = [("observed", "observed share of interior-visible surface", 100, "%"),
            ("surface_distance_mean_m", "zero-level distance to the mesh", 100, "cm"),
            ("label_agreement", "label agreement", 100, "%"),
            ("render_est_s", "s per room (Blender 640x480 est. + fusion)", 1, "s")]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    rooms = list(dict.fromkeys(r["room"] for r in result["rows"]))
    for i, room in enumerate(rooms):
        col = f"C{i}"
        rand = [r for r in result["rows"] if r["room"] == room and r["method"] == "random"]
        cov = [r for r in result["rows"] if r["room"] == room and r["method"] == "coverage"]
        name = f"{(rand or cov)[0]['kind']} {room.split('/')[-1]}"
        for ax, (k, title, scale, unit) in zip(axes, keys):
            def val(r, k=k, scale=scale):
                v = r[k] + (r["fuse_s"] if k == "render_est_s" else 0)
                return None if r[k] is None else v * scale
            xs = [r["frames"] for r in rand if r[k] is not None]
            ax.plot(xs, [val(r) for r in rand if r[k] is not None], "o-", color=col, label=f"{name} random")
            for r in cov:
                if r[k] is not None:
                    ax.plot([r["frames"]], [val(r)], "*", ms=14, color=col, label=f"{name} coverage-driven")
            ax.set_title(title, fontsize=10)
            ax.set_xscale("log")
            ax.set_xlabel("views")
            ax.set_ylabel(unit)
    for ax in axes:
        ax.axvline(result["paper_views"], color="grey", ls=":", lw=1)
    axes[0].axhline(100 * result["target"], color="grey", ls="--", lw=1)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.suptitle(f"fidelity against views ({result['frame_size'][0]}x{result['frame_size'][1]} ray-cast frames, "
                 f"4 cm voxels; dotted: the paper's {result['paper_views']} views; stars: coverage-driven)", fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
