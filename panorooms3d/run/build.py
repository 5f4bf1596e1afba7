"""``build``: render, fuse and make the panorama of every room, then pack the dataset.

One room is one task (:func:`build_room`): render its frames store (skipped when it exists),
fuse it into a :class:`~panorooms3d.volume.RoomVolume`, turn its skybox into a panorama, and
stage both in the dataset (``staging/<key>/``). The panorama is staged last, so a room whose
staged panorama exists is complete, and a re-run skips it. After all rooms, the staged rooms are
packed into shards + manifest (:func:`panorooms3d.store.dataset.pack_dataset`), which reuses
shards whose rooms did not change. Every step is deterministic for a seed, so an interrupted
build that is run again produces the same dataset as an uninterrupted one.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from panorooms3d.run.runner import RoomTask, RunReport, run_rooms


@dataclass
class BuildSettings:
    """Settings of the fusion and panorama stages of ``build`` (render settings travel separately).

    Attributes:
        voxel_size: metres (default 0.04, as the paper).
        truncation: voxels (default 3).
        pano_height, pano_width: panorama size (default 512 x 1024).
        keep_frames: keep the per-room frames store after the room is staged.
    """

    voxel_size: float = 0.04
    truncation: float = 3.0
    pano_height: int = 512
    pano_width: int = 1024
    keep_frames: bool = True
    extra: dict = field(default_factory=dict)


def build_room(task: RoomTask) -> dict:
    """Render (if needed), fuse and make the panorama of one room; stage both in the dataset.

    ``task.kwargs``: ``front`` (3D-FRONT root), ``work`` (frames folder), ``dataset``,
    ``render`` (RenderSettings as a dict), ``build`` (BuildSettings as a dict).
    Returns the room's info: frames, coverage, seconds per stage.
    """
    from panorooms3d.fusion.fuse_room import fuse_room
    from panorooms3d.panorama.equirect import make_panorama
    from panorooms3d.render.render_room import render_room
    from panorooms3d.render.settings import RenderSettings
    from panorooms3d.scene.front import room_by_uid
    from panorooms3d.store.dataset import write_room_panorama, write_room_volume
    from panorooms3d.store.frames import read_frames

    kw = task.kwargs
    settings = BuildSettings(**kw["build"])
    front, work, dataset = Path(kw["front"]), Path(kw["work"]), Path(kw["dataset"])
    house, room = room_by_uid(front, task.room_uid)
    frames_path = work / f"{room.key}.zarr"
    info: dict = {"room_uid": task.room_uid}
    t0 = time.perf_counter()
    if task.overwrite or not frames_path.exists():  # overwrite: rendered with other settings
        rinfo = render_room(house, room.room_id, frames_path, RenderSettings.from_dict(kw["render"]))
        info.update(coverage=rinfo.get("coverage"), seconds_per_frame=rinfo.get("seconds_per_frame"),
                    view_selection=rinfo.get("view_selection"), interior_coverage=rinfo.get("interior_coverage"))
    info["render_seconds"] = time.perf_counter() - t0
    frames = read_frames(frames_path)
    info["frames"] = frames.num_frames
    t1 = time.perf_counter()
    volume = fuse_room(frames, voxel_size=settings.voxel_size, truncation=settings.truncation, bounds=room,
                       room_uid=task.room_uid)
    write_room_volume(dataset, volume)
    info["fuse_seconds"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    pano = make_panorama(frames, settings.pano_height, settings.pano_width)
    write_room_panorama(dataset, task.room_uid, pano)  # last: its existence marks the room done
    info["panorama_seconds"] = time.perf_counter() - t2
    if not settings.keep_frames:
        shutil.rmtree(frames_path, ignore_errors=True)
    return info


def build_tasks(front: Path, dataset: Path, work: Path, room_uids: list[str], render: dict, build: dict) -> list[RoomTask]:
    """One :class:`RoomTask` per room; its output is the staged panorama (written last)."""
    from panorooms3d.store.dataset import room_panorama_path

    kwargs = {"front": str(front), "work": str(work), "dataset": str(dataset), "render": render, "build": build}
    return [RoomTask(uid, room_panorama_path(dataset, uid), kwargs) for uid in room_uids]


def build_dataset(front: Path, dataset: Path, room_uids: list[str], *, work: Path | None = None,
                  render: dict | None = None, build: dict | None = None, executor: str = "local",
                  workers: int = 1, retries: int = 1, rooms_per_shard: int = 8, splits=(0.9, 0.05, 0.05),
                  seed: int = 0, ray_address: str | None = None, progress: bool = True,
                  overwrite=()) -> tuple[RunReport, dict]:
    """Build (or resume building) a dataset from the rooms of a 3D-FRONT folder.

    Returns the run report of the per-room stage and the manifest of the packed dataset. Rooms that
    failed are reported and left out of the manifest; a later run retries them.
    Rooms in ``overwrite`` are re-rendered and re-staged even when they are staged already.
    """
    from panorooms3d.store.dataset import pack_dataset

    dataset = Path(dataset)
    work = Path(work) if work is not None else dataset / "work"
    tasks = build_tasks(Path(front), dataset, work, room_uids, render or {}, build or {})
    for t in tasks:
        t.overwrite = t.room_uid in set(overwrite)
    # On Ray a room task renders, so it asks for a GPU when the render settings say GPU.
    gpus = 1.0 if str((render or {}).get("device", "CPU")).upper() == "GPU" else 0.0
    report = run_rooms(build_room, tasks, executor=executor, workers=workers, retries=retries, desc="build",
                       report_path=dataset / "build_report.json", ray_address=ray_address, progress=progress,
                       info_postfix="frames", ray_num_gpus=gpus)
    manifest = pack_dataset(dataset, rooms_per_shard=rooms_per_shard, splits=splits, seed=seed)
    return report, manifest

