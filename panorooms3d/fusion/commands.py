"""``panorooms3d fuse``: fuse every frames store of a work folder into the dataset (thin; logic in fuse_room)."""

from __future__ import annotations

import logging
import math
import re
import time
from pathlib import Path

import click

#: Fidelity numbers averaged over rooms in the summary of ``fuse --report``.
FIDELITY_KEYS = ("label_agreement", "surface_distance_mean_m", "observed_surface_share")


def _frames_room_uid(store: Path) -> str:
    """The room uid of a frames store: its ``room_uid`` attribute, else its folder name (HOUSE__ROOM.zarr)."""
    from panorooms3d.store.dataset import room_uid_from_key

    try:
        import zarr

        uid = zarr.open_group(str(store), mode="r").attrs.get("room_uid")
        if isinstance(uid, str) and "/" in uid:
            return uid
    except Exception:  # an unreadable store fails as its own task, with the reason
        pass
    return room_uid_from_key(store.name[: -len(".zarr")])


def fuse_task(task) -> dict:
    """:func:`_fuse_task` with the loader's per-item warnings shown only under ``panorooms3d -v``.

    Worker processes do not inherit the command's logging set-up, so the level is set here, and
    restored afterwards: a task run in the calling process must not leave the logger changed.
    """
    from panorooms3d.cli import verbose_requested

    logger = logging.getLogger("panorooms3d.scene")
    old = logger.level
    logger.setLevel(logging.INFO if verbose_requested() else logging.ERROR)
    try:
        return _fuse_task(task)
    finally:
        logger.setLevel(old)


def _fuse_task(task) -> dict:
    """Run-room work function: read a frames store, fuse it, optionally measure fidelity, stage it.

    ``task.kwargs``: ``frames`` (path of the frames store), ``dataset`` (dataset folder),
    ``voxel_size`` (m), ``truncation`` (voxels), ``device``, ``front`` (3D-FRONT root or None; when
    given the room's mesh bounds define the grid) and ``report`` (measure fidelity against the mesh).
    Returns the room's info: frames, fuse_seconds, invalid depth pixels and the fidelity numbers.
    """
    from panorooms3d.store.dataset import write_room_volume
    from panorooms3d.store.frames import read_frames

    from .fidelity import measure_fidelity
    from .fuse_room import fuse_room

    kw = task.kwargs
    t0 = time.perf_counter()
    room = None
    if kw.get("front"):
        from panorooms3d.scene.front import room_by_uid

        _, room = room_by_uid(Path(kw["front"]), task.room_uid)
    frames = read_frames(Path(kw["frames"]), skybox=False)
    volume = fuse_room(frames, voxel_size=kw["voxel_size"], truncation=kw["truncation"], bounds=room,
                       device=kw.get("device", "CPU:0"), room_uid=task.room_uid)
    info: dict = {"frames": frames.num_frames, "invalid_depth_pixels": volume.attrs["fusion"]["invalid_depth_pixels"]}
    if kw.get("report") and room is not None:
        fid = measure_fidelity(volume, *room.triangles())
        volume.attrs["fidelity"] = fid
        info.update({k: fid.get(k) for k in FIDELITY_KEYS})
    write_room_volume(Path(kw["dataset"]), volume)
    info["fuse_seconds"] = round(time.perf_counter() - t0, 3)
    return info


def check_device(device: str) -> str:
    """Normalise an Open3D device (``cpu``, ``CPU:0``, ``cuda``, ``CUDA:1``) and check that it is usable.

    Raises click.BadParameter for an unknown device, or for CUDA when this Open3D has none.
    """
    m = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", device.strip(), flags=re.IGNORECASE)
    if not m:
        raise click.BadParameter(f"{device!r} is not an Open3D device; use CPU:0 or CUDA:0", param_hint="--device")
    kind, index = m.group(1).upper(), int(m.group(2) or 0)
    if kind == "CUDA":
        import open3d as o3d

        n = o3d.core.cuda.device_count() if o3d.core.cuda.is_available() else 0
        if index >= n:
            raise click.BadParameter(f"{device}: this Open3D sees {n} CUDA device(s); use CPU:0"
                                     + (f" or CUDA:0..{n - 1}" if n else ""), param_hint="--device")
    return f"{kind}:{index}"


def _mean(values) -> float | None:
    vals = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


@click.command("fuse")
@click.option("--work", "work", required=True, type=click.Path(path_type=Path),
              help="Folder of frames stores (WORK/*.zarr) written by `panorooms3d render`.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Dataset folder: each room is staged there, then the dataset is packed.")
@click.option("--voxel-size", default=0.04, show_default=True, type=float, help="Voxel edge in metres (> 0).")
@click.option("--truncation", default=3.0, show_default=True, type=float, help="Truncation distance in voxels (> 0).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Run rooms in a local process pool or as Ray tasks.")
@click.option("--workers", type=click.IntRange(1), default=None, help="Rooms in parallel (local; default one per core).")
@click.option("--ray-address", default=None, help="Ray cluster address (auto, ray://host:port).")
@click.option("--retries", default=1, show_default=True, type=click.IntRange(0), help="Extra attempts for a failing room.")
@click.option("--front", type=click.Path(path_type=Path), default=None,
              help="3D-FRONT root: the rooms' meshes bound the grid, and --report measures fidelity against them.")
@click.option("--report", is_flag=True, help="Measure fidelity to the scene mesh (needs --front) and print it.")
@click.option("--device", default="CPU:0", show_default=True,
              help="Open3D device: CPU:0, or CUDA:N when Open3D was built with CUDA.")
@click.option("--pack/--no-pack", default=True, show_default=True, help="Pack the dataset (shards + manifest) at the end.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.option("--force", is_flag=True, help="Write into a non-empty OUT that is not a dataset folder.")
def fuse(work: Path, out: Path, voxel_size: float, truncation: float, executor: str, workers: int | None,
         ray_address: str | None, retries: int, front: Path | None, report: bool, device: str, pack: bool,
         progress: bool, force: bool) -> None:
    """Fuse every room's frames (TSDF + colour + voted labels) into the dataset, resumably.

    Rooms already fused in OUT are skipped; a failing room is retried, then reported, and the others
    go on. Settings and counts are stored with each room (docs/fusion.md). One fuse at a time per
    OUT (a second one is refused).
    """
    from panorooms3d.run.lock import check_folder_kind, check_output_dir, output_folder
    from panorooms3d.run.runner import RoomTask, run_rooms
    from panorooms3d.store.dataset import room_volume_path

    if work.exists() and not work.is_dir():
        raise click.ClickException(f"--work {work}: is a file, not a folder; give the folder `panorooms3d render` "
                                   "wrote (WORK/*.zarr)")
    if not work.is_dir():
        raise click.ClickException(f"--work {work}: no such folder (render the rooms first: panorooms3d render)")
    stores = sorted(p for p in work.glob("*.zarr") if p.is_dir() and not p.name.startswith("."))
    if not stores:
        raise click.ClickException(f"--work {work}: no frames stores (*.zarr) in it; render the rooms first")
    if not voxel_size > 0 or not truncation > 0:
        raise click.ClickException(f"--voxel-size ({voxel_size}) and --truncation ({truncation}) must be positive")
    if report and front is None:
        raise click.ClickException("--report needs --front FRONT_ROOT to load the rooms' meshes")
    if front is not None and not front.is_dir():
        raise click.ClickException(f"--front {front}: no such folder")
    device = check_device(device)
    check_output_dir(out)
    check_folder_kind(out, "dataset", force)

    tasks, seen = [], {}
    for store in stores:
        uid = _frames_room_uid(store)
        try:
            output = room_volume_path(out, uid)
        except ValueError as exc:
            raise click.ClickException(f"{store}: {exc}") from None
        if uid in seen:
            raise click.ClickException(f"{store} and {seen[uid]} hold the same room {uid}")
        seen[uid] = store
        tasks.append(RoomTask(uid, output, {"frames": str(store), "dataset": str(out), "voxel_size": voxel_size,
                                            "truncation": truncation, "device": device,
                                            "front": str(front) if front else None, "report": report}))
    with output_folder(out, "dataset", force=force, command="fuse", on_message=lambda m: click.echo(m, err=True)):
        run = run_rooms(fuse_task, tasks, executor=executor, workers=workers, retries=retries, desc="fuse",
                        report_path=out / "fuse_report.json", ray_address=ray_address, progress=progress,
                        info_postfix="frames")
        _summarise(run, report)
        if pack and (run.done or run.skipped):
            from panorooms3d.store.dataset import DatasetError, pack_dataset

            try:
                manifest = pack_dataset(out)
            except (DatasetError, ValueError) as exc:
                raise click.ClickException(f"packing {out}: {exc}") from None
            click.echo(f"packed {len(manifest.get('rooms', {}))} rooms into {out}")
    if run.failed:
        raise click.ClickException(f"{len(run.failed)} room(s) failed; run the same command again to retry them "
                                   f"(details in {out / 'fuse_report.json'})")


def _summarise(run, report: bool) -> None:
    """The end-of-run lines of ``fuse``: counts, speed, invalid depth, fidelity."""
    click.echo(run.summary())
    frames = run.totals("frames")
    if run.done:
        busy = sum(r.seconds for r in run.done)
        click.echo(f"fused {int(frames)} frames in {run.seconds:.1f} s: {frames / max(run.seconds, 1e-9):.1f} frames/s "
                   f"({frames / max(busy, 1e-9):.1f} per busy worker-second)")
        bad = int(run.totals("invalid_depth_pixels"))
        if bad:
            click.echo(f"ignored {bad} invalid depth pixels (NaN or negative); see each room's attrs")
    if report and run.done:
        means = {k: _mean(r.info.get(k) for r in run.done) for k in FIDELITY_KEYS}

        def fmt(v, scale=1.0, unit=""):
            return "n/a" if v is None else f"{v * scale:.2f}{unit}"

        click.echo(f"fidelity (mean over {len(run.done)} fused rooms): label agreement "
                   f"{fmt(means['label_agreement'], 100, ' %')}, surface distance "
                   f"{fmt(means['surface_distance_mean_m'], 100, ' cm')}, observed surface "
                   f"{fmt(means['observed_surface_share'], 100, ' %')}")
