"""``panorooms3d plan``: what a build will cost, before any render (rooms, frames, core-hours, disk).

The planner multiplies counts by measured figures (:class:`CostFigures`; every figure is printed
with where it was measured) and says which are assumptions:

- **rooms**: the rooms ``build`` would take (:func:`panorooms3d.scene.front.select_rooms`);
- **frames**: ``rooms x --views`` for random views; for coverage-driven views the selection is
  really run on ``--sample-rooms`` rooms drawn at random (seeded) and the mean frames per room is
  scaled to all rooms (with the sampled range, and the cap ``rooms x --max-views`` as a bound);
- **CPU-core-hours**: render seconds per frame (measured at 640 x 480, 4 samples + denoising on
  a 2-core machine) scaled linearly with pixels and, for the part that is not denoising, with
  samples (an assumption; pass ``--seconds-per-frame`` measured at your settings), times the
  cores of the machine it was measured on; plus per room a skybox, the Blender start and scene
  build, the view selection, fusion, the panorama and packing;
- **GPU-hours**: only from a measured ``--gpu-seconds-per-frame`` (the skybox counts as its
  pixels in frames);
- **disk**: frames stores and the dataset, uncompressed from the array sizes (an upper bound)
  and compressed with ratios measured on a Blender-rendered, fused synthetic room (zstd).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

from panorooms3d.render.settings import RenderSettings

#: Bytes per pixel of a frames store (rgb 3 + depth 4 + label 1 + instance 2) and of a panorama (the same four).
FRAME_BYTES_PER_PIXEL = 10
PANO_BYTES_PER_PIXEL = 10
#: Bytes per voxel of a stored room (tsdf 4 + weight 4 + rgb 3 + label 1 + instance 2).
VOXEL_BYTES = 14
#: The paper's views per room and GPU-seconds per frame (2.5 M frames, 120 V100s x 48 h).
PAPER_VIEWS = 424
PAPER_GPU_SECONDS_PER_FRAME = 8.3


@dataclass
class CostFigures:
    """The measured figures the planner uses (wall seconds on the machine of ``cores`` cores).

    Attributes:
        render_s_per_frame: one 640 x 480 frame, all passes, 4 samples + denoising.
        denoise_s_per_frame: the denoising part of it.
        skybox_s: the six 512^2 skybox faces of a room.
        room_overhead_s: Blender start (~1 s) + scene build (0.1 s) per room.
        selection_core_s: CPU-seconds (all threads) of the coverage-driven view selection per room,
            used when no room is sampled.
        fuse_s_per_frame: fusion per 640 x 480 frame (400 frames in 2.8 s).
        fuse_room_s: fixed fusion cost per room (grid read-back, label filling).
        panorama_s: one 512 x 1024 panorama from six 512^2 faces.
        pack_voxels_per_s: packing rate into zstd shards.
        frames_compression: on-disk / uncompressed bytes of a frames store.
        volume_compression, pano_compression: on-disk / uncompressed bytes of a stored room's
            volume and panorama (zstd).
        cores: cores of the machine the seconds were measured on.
        measured_s_per_frame: render seconds per frame measured at the planned settings (used as
            is instead of the scaled 640 x 480 figure).
        sources: where each figure comes from.
    """

    render_s_per_frame: float = 1.106
    denoise_s_per_frame: float = 0.33
    skybox_s: float = 5.315
    room_overhead_s: float = 1.1
    selection_core_s: float = 5.0
    fuse_s_per_frame: float = 0.007
    fuse_room_s: float = 0.5
    panorama_s: float = 0.02
    pack_voxels_per_s: float = 11e6
    frames_compression: float = 0.36
    volume_compression: float = 0.12
    pano_compression: float = 0.33
    cores: int = 2
    measured_s_per_frame: float | None = None
    sources: dict = field(default_factory=lambda: {
        "render_s_per_frame": "benchmark/perf/bench_render.py: 1.106 s per 640x480 frame, 4 samples + OIDN, "
                              "2-core AMD EPYC (docs/performance.md)",
        "denoise_s_per_frame": "docs/rendering.md: denoising costs about 0.33 s of a 640x480 frame",
        "skybox_s": "benchmark/perf/bench_render.py: 5.3 s for 6 faces of 512^2",
        "room_overhead_s": "docs/rendering.md: Blender start ~1 s + scene build 0.1 s",
        "selection_core_s": "measured (process time): 4.8 CPU-s for the largest sample room, "
                            "dc74ad5c.../LivingDiningRoom-9973 (used only when no room is sampled)",
        "fuse_s_per_frame": "benchmark/perf/bench_fusion.py: 400 frames of 640x480 in 2.8 s",
        "fuse_room_s": "benchmark/perf/bench_fusion.py: fixed cost of the 40-frame room (0.65 s - 40 x 7 ms)",
        "panorama_s": "benchmark/perf/bench_dataset.py: 17-22 ms per 512x1024 panorama",
        "pack_voxels_per_s": "benchmark/perf/bench_dataset.py: 11 Mvoxel/s",
        "frames_compression": "measured: build of synth-0-0000/Bedroom-27430 (seed 0) at 320x240, 26 coverage "
                              "views: frames store 8.6 MB of 23.9 MB raw",
        "volume_compression": "measured: the same room's volume, 1.30 MB of 11.1 MB raw (105x99x76 voxels)",
        "pano_compression": "measured: the same room's 256x512 panorama, 0.44 MB of 1.31 MB raw",
        "cores": "the benchmarks' machine: 2 cores",
    })


def render_seconds_per_frame(figures: CostFigures, width: int, height: int, samples: int, denoise: bool) -> float:
    """Wall seconds per frame on the figures' machine, scaled from 640 x 480 at 4 samples + denoising.

    Linear in pixels; the part that is not denoising is linear in samples (an assumption).
    """
    scale = width * height / (640 * 480)
    base = figures.render_s_per_frame - figures.denoise_s_per_frame
    return scale * (base * samples / 4.0 + (figures.denoise_s_per_frame if denoise else 0.0))


@dataclass
class RoomSize:
    """What the planner needs of a room: uid, floor area (m^2) and the grid extent (m)."""

    uid: str
    floor_area: float
    extent: tuple[float, float, float]


def room_sizes(front: Path, selected: list[tuple[str, Path]]) -> list[RoomSize]:
    """:class:`RoomSize` of every selected room (houses read without furniture geometry, once each)."""
    from panorooms3d.scene.front import load_house, summarise_room

    by_house: dict[Path, list[str]] = {}
    for uid, path in selected:
        by_house.setdefault(Path(path), []).append(uid)
    out = []
    for path, uids in by_house.items():
        house = load_house(path, front, load_geometry=False)
        rooms = {r.uid: r for r in house.rooms}
        for uid in uids:
            s = summarise_room(house, rooms[uid])
            out.append(RoomSize(uid, s.floor_area, (s.size[0], s.size[1], s.height)))
    return out


def voxels(extent, voxel_size: float, margin: int = 2) -> int:
    """Voxels of a room's stored grid: ceil(extent / voxel_size) + 2 margin voxels per axis."""
    return int(math.prod(math.ceil(e / voxel_size - 1e-9) + 2 * margin for e in extent))


def sample_frames(front: Path, uids: list[str], settings: RenderSettings, progress: bool = True) -> list[dict]:
    """Run the coverage-driven selection on rooms ``uids``: frames, coverage, reachable, seconds each."""
    import numpy as np

    from panorooms3d.render.cameras import house_index
    from panorooms3d.render.coverage import select_views
    from panorooms3d.render.render_room import room_seed
    from panorooms3d.scene.front import room_by_uid

    out = []
    for uid in uids:
        house, room = room_by_uid(front, uid)
        index = house_index(house)
        t0, c0 = time.perf_counter(), time.process_time()
        poses, info = select_views(house, room.room_id, settings, np.random.default_rng(room_seed(settings.seed, uid)),
                                   index=index)
        row = {"room": uid, "frames": int(len(poses)), "coverage": info["coverage"], "reachable": info["reachable"],
               "selection_s": round(time.perf_counter() - t0, 2),
               "selection_core_s": round(time.process_time() - c0, 2)}  # CPU time of all threads: load-independent
        out.append(row)
        if progress:
            click.echo(f"  sampled {uid}: {row['frames']} frames, {100 * row['coverage']:.1f}% of the interior-visible "
                       f"surface (reachable {100 * row['reachable']:.1f}%), {row['selection_core_s']:.1f} CPU-s",
                       err=True)
    return out


def make_plan(front: Path, selected: list[tuple[str, Path]], settings: RenderSettings, *, voxel_size: float = 0.04,
              pano_height: int = 512, sample_rooms: int = 3, figures: CostFigures | None = None,
              gpu_seconds_per_frame: float | None = None, progress: bool = True) -> dict:
    """The plan as a JSON-able dict (what :func:`format_plan` prints)."""
    import numpy as np

    figures = figures or CostFigures()
    sizes = room_sizes(front, selected)
    n = len(sizes)
    plan: dict = {"front": str(front), "rooms": n, "houses": len({str(p) for _, p in selected}),
                  "settings": settings.to_dict(), "voxel_size": voxel_size, "pano_height": pano_height}
    sampled: list[dict] = []
    if settings.view_selection == "random":
        per_room = float(settings.views)
        frames = {"method": "random", "per_room": per_room, "total": int(per_room * n), "low": int(per_room * n),
                  "high": int(per_room * n), "how": f"{settings.views} random views per room"}
        selection_core_s = 0.0
    else:
        k = min(sample_rooms, n)
        pick = sorted(np.random.default_rng(settings.seed).choice(n, size=k, replace=False).tolist()) if k else []
        if pick:
            sampled = sample_frames(front, [sizes[i].uid for i in pick], settings, progress)
            counts = [r["frames"] for r in sampled]
            per_room = float(np.mean(counts))
            selection_core_s = float(np.mean([r["selection_core_s"] for r in sampled]))
            how = (f"coverage-driven (target {settings.coverage_target:.0%}, cap {settings.max_views}): measured on "
                   f"{k} sampled room(s): {min(counts)}-{max(counts)} frames, mean {per_room:.1f}")
            low, high = min(counts) * n, min(max(counts) * n, settings.max_views * n)
        else:
            per_room = float(settings.max_views)
            selection_core_s = figures.selection_core_s
            how = f"coverage-driven, no room sampled: the cap, {settings.max_views} per room (an upper bound)"
            low, high = 0, settings.max_views * n
        frames = {"method": "coverage", "per_room": per_room, "total": int(round(per_room * n)), "low": int(low),
                  "high": int(high), "how": how}
    plan["frames"] = frames
    plan["sampled_rooms"] = sampled
    total_frames = frames["total"]

    w, h, s = settings.width, settings.height, settings.samples
    spf = figures.measured_s_per_frame or render_seconds_per_frame(figures, w, h, s, settings.denoise)
    sky_s = figures.skybox_s * (settings.skybox_size / 512) ** 2
    fuse_spf = figures.fuse_s_per_frame * w * h / (640 * 480)
    vox = [voxels(r.extent, voxel_size) for r in sizes]
    total_vox = int(sum(vox))
    wall = {  # wall seconds on the figures' machine (every core busy)
        "render frames": total_frames * spf,
        "skyboxes": n * sky_s,
        "Blender start + scene build": n * figures.room_overhead_s,
        "view selection": n * selection_core_s / figures.cores,  # measured in CPU-seconds
        "fusion": total_frames * fuse_spf + n * figures.fuse_room_s,
        "panoramas": n * figures.panorama_s * (pano_height / 512) ** 2,
        "packing": total_vox / figures.pack_voxels_per_s,
    }
    core_hours = {k: v * figures.cores / 3600 for k, v in wall.items()}
    plan["seconds_per_frame"] = spf
    plan["cpu_core_hours"] = {k: round(v, 4) for k, v in core_hours.items()}
    plan["cpu_core_hours_total"] = round(sum(core_hours.values()), 4)
    per_frame_h = (spf + fuse_spf) * figures.cores / 3600  # core-hours that grow with the frame count
    fixed_h = sum(core_hours.values()) - total_frames * per_frame_h
    plan["cpu_core_hours_range"] = [round(fixed_h + frames[b] * per_frame_h, 4) for b in ("low", "high")]
    plan["wall_hours_on_figures_machine"] = round(sum(wall.values()) / 3600, 4)
    if gpu_seconds_per_frame is not None:
        sky_frames = 6 * settings.skybox_size ** 2 / (w * h)
        gpu_h = (total_frames + n * sky_frames) * gpu_seconds_per_frame / 3600
        plan["gpu_hours"] = round(gpu_h, 4)
        plan["gpu_seconds_per_frame"] = gpu_seconds_per_frame
    pano_px = pano_height * 2 * pano_height
    frames_raw = total_frames * w * h * FRAME_BYTES_PER_PIXEL + n * 6 * settings.skybox_size ** 2 * FRAME_BYTES_PER_PIXEL
    volume_raw, pano_raw = total_vox * VOXEL_BYTES, n * pano_px * PANO_BYTES_PER_PIXEL
    plan["disk_bytes"] = {
        "frames_uncompressed": int(frames_raw), "frames_estimated": int(frames_raw * figures.frames_compression),
        "dataset_uncompressed": int(volume_raw + pano_raw),
        "dataset_estimated": int(volume_raw * figures.volume_compression + pano_raw * figures.pano_compression),
    }
    plan["voxels"] = total_vox
    plan["paper"] = {"views_per_room": PAPER_VIEWS, "frames": PAPER_VIEWS * n,
                     "gpu_hours_at_paper_rate": round(PAPER_VIEWS * n * PAPER_GPU_SECONDS_PER_FRAME / 3600, 2),
                     "cpu_core_hours_at_these_settings": round(PAPER_VIEWS * n * spf * figures.cores / 3600, 2)}
    plan["figures"] = {k: v for k, v in asdict(figures).items() if k != "sources"}
    plan["figure_sources"] = dict(figures.sources)
    return plan


def _size(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if b < 1000 or unit == "TB":
            return f"{b:.1f} {unit}" if unit != "B" else f"{int(b)} B"
        b /= 1000
    return f"{b:.1f} TB"


def format_plan(plan: dict) -> str:
    """The plan as text: counts, costs by stage, disk, the paper's scale, and every figure used."""
    st = plan["settings"]
    fr = plan["frames"]
    n = plan["rooms"]
    lines = [f"plan for {plan['front']}: {n} room(s) in {plan['houses']} house(s)",
             f"frames: {fr['total']:,} ({fr['how']}; range {fr['low']:,}-{fr['high']:,})",
             f"render: {st['width']}x{st['height']}, {st['samples']} sample(s){', denoised' if st['denoise'] else ''}: "
             f"{plan['seconds_per_frame']:.3f} s per frame on {plan['figures']['cores']} cores"]
    lines.append(f"CPU: {plan['cpu_core_hours_total']:,.2f} core-hours (range {plan['cpu_core_hours_range'][0]:,.2f}-"
                 f"{plan['cpu_core_hours_range'][1]:,.2f}); {plan['wall_hours_on_figures_machine']:,.2f} h on one "
                 f"{plan['figures']['cores']}-core machine")
    for k, v in plan["cpu_core_hours"].items():
        lines.append(f"  {k:<28} {v:>12,.3f} core-h")
    if "gpu_hours" in plan:
        lines.append(f"GPU: {plan['gpu_hours']:,.2f} GPU-hours at {plan['gpu_seconds_per_frame']} GPU-s per frame "
                     "(given; skyboxes counted as their pixels in frames)")
    else:
        lines.append("GPU: pass --gpu-seconds-per-frame S (measured on your GPU) for GPU-hours "
                     f"(the paper: {PAPER_GPU_SECONDS_PER_FRAME} V100-seconds per frame)")
    d = plan["disk_bytes"]
    lines.append(f"disk: frames {_size(d['frames_estimated'])} (uncompressed {_size(d['frames_uncompressed'])}; "
                 f"delete them after staging with build --delete-frames), dataset {_size(d['dataset_estimated'])} "
                 f"(uncompressed {_size(d['dataset_uncompressed'])}: {plan['voxels']:,} voxels of "
                 f"{plan['voxel_size'] * 100:g} cm + panoramas of {plan['pano_height']}x{2 * plan['pano_height']})")
    p = plan["paper"]
    lines.append(f"the paper's {p['views_per_room']} views per room: {p['frames']:,} frames, "
                 f"{p['gpu_hours_at_paper_rate']:,.1f} GPU-hours at its rate, or {p['cpu_core_hours_at_these_settings']:,.1f} "
                 "CPU-core-hours at these settings")
    lines.append("figures used (override: --seconds-per-frame, --cores, --gpu-seconds-per-frame):")
    for k, v in plan["figures"].items():
        if v is not None:
            lines.append(f"  {k} = {v:g}: {plan['figure_sources'].get(k, '')}")
    lines.append("  scaling: render seconds linear in pixels, and (without the denoising part) in samples; "
                 "skybox in face pixels; fusion in frame pixels")
    return "\n".join(lines)


@click.command("plan")
@click.option("--front", "front", required=True, type=click.Path(path_type=Path),
              help="FRONT_ROOT (3D-FRONT/, 3D-FUTURE-model/, 3D-FRONT-texture/), as for build.")
@click.option("--rooms", multiple=True, metavar="HOUSE/ROOM", help="Only these rooms (repeatable) [default: all].")
@click.option("--views", type=click.IntRange(1), default=RenderSettings.views, show_default=True,
              help="Random views per room (implies --view-selection random, as for build).")
@click.option("--view-selection", type=click.Choice(["random", "coverage"]), default=None,
              help="How build picks views [default: build's: coverage, or random when --views is given].")
@click.option("--coverage-target", type=click.FloatRange(0, 1, min_open=True), default=RenderSettings.coverage_target,
              show_default=True, help="Coverage target of the coverage-driven views.")
@click.option("--max-views", type=click.IntRange(1), default=RenderSettings.max_views, show_default=True,
              help="Frame cap of the coverage-driven views.")
@click.option("--width", type=click.IntRange(8), default=RenderSettings.width, show_default=True,
              help="Frame width in pixels.")
@click.option("--height", type=click.IntRange(8), default=RenderSettings.height, show_default=True,
              help="Frame height in pixels.")
@click.option("--samples", type=click.IntRange(1), default=RenderSettings.samples, show_default=True,
              help="Cycles samples per pixel.")
@click.option("--no-denoise", is_flag=True, help="Plan without OpenImageDenoise.")
@click.option("--skybox-size", type=click.IntRange(8), default=RenderSettings.skybox_size, show_default=True,
              help="Skybox face size in pixels.")
@click.option("--voxel-size", type=click.FloatRange(0, min_open=True), default=0.04, show_default=True,
              help="Voxel edge in metres.")
@click.option("--pano-height", type=click.IntRange(8), default=512, show_default=True,
              help="Panorama height (width = 2x).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the sampled rooms and their views.")
@click.option("--sample-rooms", type=click.IntRange(0), default=3, show_default=True,
              help="Rooms on which the coverage-driven selection is run to measure frames per room (a few s each).")
@click.option("--seconds-per-frame", type=click.FloatRange(0, min_open=True), default=None,
              help="Measured render wall seconds per frame at these settings on a --cores machine (replaces the "
                   "scaled 640x480 figure).")
@click.option("--cores", type=click.IntRange(1), default=None,
              help="Cores of the machine the seconds were measured on [default 2, the benchmarks' machine].")
@click.option("--gpu-seconds-per-frame", type=click.FloatRange(0, min_open=True), default=None,
              help="Measured GPU-seconds per frame: adds GPU-hours.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the plan (every number and figure) as JSON here.")
def plan_command(front, rooms, views, view_selection, coverage_target, max_views, width, height, samples, no_denoise,
                 skybox_size, voxel_size, pano_height, seed, sample_rooms, seconds_per_frame, cores,
                 gpu_seconds_per_frame, json_path):
    """Estimate a build before rendering: rooms, frames, CPU-core-hours (GPU-hours), disk; states its figures.

    Takes build's options. Coverage-driven views are selected for real on --sample-rooms rooms
    (no rendering) to measure frames per room; everything else is counts x measured figures.
    """
    from panorooms3d.render.settings import BUILD_VIEW_SELECTION
    from panorooms3d.scene.front import FrontError, select_rooms

    front = Path(front)
    if not front.is_dir():
        raise click.ClickException(f"--front {front}: no such folder (expected a FRONT_ROOT with 3D-FRONT/ inside)")
    if json_path is not None and Path(json_path).is_dir():
        raise click.ClickException(f"--json {json_path}: is a folder; give a file name such as plan.json")
    if view_selection is None:
        given = click.get_current_context().get_parameter_source("views")
        view_selection = "random" if given == click.core.ParameterSource.COMMANDLINE else BUILD_VIEW_SELECTION
    try:
        settings = RenderSettings(views=views, width=width, height=height, samples=samples, denoise=not no_denoise,
                                  skybox_size=skybox_size, seed=seed, view_selection=view_selection,
                                  coverage_target=coverage_target, max_views=max_views)
        selected, problems = select_rooms(front, [r for item in rooms for r in item.replace(",", " ").split()])
    except (ValueError, FrontError) as exc:
        raise click.ClickException(str(exc)) from None
    for p in problems:
        click.echo(f"skipping house: {p}", err=True)
    if not selected:
        raise click.ClickException(f"--front {front}: no rooms to plan")
    figures = CostFigures()
    if cores is not None:
        figures.cores = cores
        figures.sources["cores"] = "given (--cores)"
    if seconds_per_frame is not None:  # measured at the asked settings: used as is
        figures.measured_s_per_frame = seconds_per_frame
        figures.sources["measured_s_per_frame"] = "given (--seconds-per-frame), used instead of the scaled figure"
    plan = make_plan(front, selected, settings, voxel_size=voxel_size, pano_height=pano_height,
                     sample_rooms=sample_rooms, figures=figures, gpu_seconds_per_frame=gpu_seconds_per_frame)
    click.echo(format_plan(plan))
    if json_path is not None:
        from panorooms3d.run.atomic import atomic_path

        with atomic_path(Path(json_path)) as tmp:
            Path(tmp).write_text(json.dumps(plan, indent=2))
        click.echo(f"plan written to {json_path}")


__all__ = ["CostFigures", "make_plan", "format_plan", "plan_command", "render_seconds_per_frame", "voxels"]
