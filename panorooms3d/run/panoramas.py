"""``panoramas``: the panorama-only build -- a skybox render and an equirect panorama per room, no volume.

The paper's premise is that 2D data is abundant: a room's panorama costs one skybox render (six
square faces), no perspective frames, no fusion, no volume. This is the build of such data for the
2D teacher (docs/teacher.md).

One room is one task (:func:`panorama_room`): render only its six skybox faces
(:func:`panorooms3d.render.render_room.render_room` with ``skybox_only=True``; the cameras of a full
render are still *sampled*, not rendered, so the seeded texture choice and hence the panorama are
exactly those of ``build`` with the same settings), turn the skybox into the panorama
(:func:`panorooms3d.panorama.equirect.make_panorama`: rgb, raw labels, instances, range depth and
camera) and stage it (``staging/<key>/pano.zarr``, written atomically and last). A re-run skips the
rooms whose staged panorama exists, so an interrupted build finishes the rest when run again. After
all rooms, the staged panoramas are packed (:func:`panorooms3d.store.dataset.pack_dataset` with
``panoramas_only=True``) into checksummed zarr shards, ``splits/*.txt`` and a manifest whose
``content`` is ``"panoramas"``: a dataset folder the teacher reads like any other
(:meth:`Dataset.load_panorama`), whose rooms have ``has_volume: false``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from panorooms3d.run.runner import RoomTask, RunReport, run_rooms


@dataclass
class PanoramaSettings:
    """Settings of the panorama stage of ``panoramas`` (render settings travel separately).

    Attributes:
        pano_height, pano_width: panorama size in pixels (default 512 x 1024).
        keep_skybox: keep each room's skybox store (``WORK/<key>.zarr``) after its panorama is staged.
    """

    pano_height: int = 512
    pano_width: int = 1024
    keep_skybox: bool = False


def panorama_room(task: RoomTask) -> dict:
    """Render a room's skybox (if needed), make and stage its panorama.

    ``task.kwargs``: ``front`` (3D-FRONT root), ``work`` (skybox stores), ``dataset`` (the output
    folder), ``render`` (RenderSettings as a dict), ``panorama`` (PanoramaSettings as a dict).
    Returns the room's info: ``skybox_seconds`` (render incl. scene build), ``panorama_seconds``.
    """
    from panorooms3d.panorama.equirect import make_panorama
    from panorooms3d.render.render_room import render_room
    from panorooms3d.render.settings import RenderSettings
    from panorooms3d.run.commands import PANORAMA_ONLY_SOURCE
    from panorooms3d.scene.front import room_by_uid
    from panorooms3d.store.dataset import write_room_panorama
    from panorooms3d.store.frames import read_frames

    kw = task.kwargs
    settings = PanoramaSettings(**kw["panorama"])
    render = RenderSettings.from_dict(kw["render"])
    front, work, dataset = Path(kw["front"]), Path(kw["work"]), Path(kw["dataset"])
    house, room = room_by_uid(front, task.room_uid)
    skybox_path = work / f"{room.key}.zarr"
    info: dict = {"room_uid": task.room_uid, "panoramas": 1}
    t0 = time.perf_counter()
    created = False
    if not skybox_path.exists():  # a store left by an interrupted run (complete: written atomically) is reused
        render_room(house, room.room_id, skybox_path, render, skybox_only=True)
        created = True
    info["skybox_seconds"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    frames = read_frames(skybox_path)
    pano = make_panorama(frames, settings.pano_height, settings.pano_width)
    attrs = {"source": PANORAMA_ONLY_SOURCE, "render": render.to_dict(),
             "skybox_size": render.skybox_size}
    write_room_panorama(dataset, task.room_uid, pano, attrs)  # last: its existence marks the room done
    info["panorama_seconds"] = time.perf_counter() - t1
    if not settings.keep_skybox and (created or frames.attrs.get("skybox_only")):
        shutil.rmtree(skybox_path, ignore_errors=True)  # only skybox-only stores this stage made
    return info


#: Settings that change a panorama's pixels; a staged room made with others is not silently mixed in.
PIXEL_SETTINGS = ("skybox_size", "samples", "denoise", "seed", "views", "width", "height", "hfov_deg",
                  "view_selection", "resample_textures", "world_strength")


def staged_with_other_settings(dataset: Path, room_uids: list[str], render: dict, pano_shape: tuple[int, int]) -> dict:
    """Rooms of ``room_uids`` already staged in ``dataset`` with other pixel settings: {uid: what differs}."""
    import zarr

    from panorooms3d.store.dataset import room_panorama_path

    out = {}
    for uid in room_uids:
        path = room_panorama_path(dataset, uid)
        if not path.is_dir():
            continue
        group = zarr.open_group(str(path), mode="r")
        had = dict(group.attrs.get("attrs", {}).get("render", {}))
        diff = {k: (had.get(k), render.get(k)) for k in PIXEL_SETTINGS if k in had and had.get(k) != render.get(k)}
        shape = tuple(group["label"].shape)
        if shape != tuple(pano_shape):
            diff["panorama"] = (list(shape), list(pano_shape))
        if diff:
            out[uid] = diff
    return out


def panorama_tasks(front: Path, dataset: Path, work: Path, room_uids: list[str], render: dict,
                   panorama: dict) -> list[RoomTask]:
    """One :class:`RoomTask` per room; its output is the staged panorama (written last)."""
    from panorooms3d.store.dataset import room_panorama_path

    kwargs = {"front": str(front), "work": str(work), "dataset": str(dataset), "render": render, "panorama": panorama}
    return [RoomTask(uid, room_panorama_path(dataset, uid), kwargs) for uid in room_uids]


def build_panoramas(front: Path, dataset: Path, room_uids: list[str], *, work: Path | None = None,
                    render: dict | None = None, panorama: dict | None = None, executor: str = "local",
                    workers: int = 1, retries: int = 1, rooms_per_shard: int = 64, splits=(1.0, 0.0, 0.0),
                    seed: int = 0, ray_address: str | None = None, progress: bool = True) -> tuple[RunReport, dict]:
    """Build (or resume building) a panorama-only dataset from the rooms of a 3D-FRONT folder.

    Args:
        front: 3D-FRONT root. dataset: output folder. room_uids: rooms to build.
        work: where skybox stores go while a room is made (default ``dataset/work``).
        render: RenderSettings as a dict (``skybox_size``, ``samples``, ``seed`` ... matter; the
            perspective-frame settings only seed the texture choice, as in ``build``).
        panorama: PanoramaSettings as a dict.
        executor, workers, retries, ray_address, progress: see :func:`panorooms3d.run.runner.run_rooms`.
        rooms_per_shard, splits, seed: packing (default: every room in ``train``).

    Returns the run report and the manifest. Rooms that failed are reported and left out; a later run
    retries them.
    """
    from panorooms3d.store.dataset import pack_dataset

    dataset = Path(dataset)
    work = Path(work) if work is not None else dataset / "work"
    work_existed = work.exists()
    tasks = panorama_tasks(Path(front), dataset, work, room_uids, render or {}, panorama or {})
    # On Ray a room task renders its skybox, so it asks for a GPU when the render settings say GPU (as `build`).
    gpus = 1.0 if str((render or {}).get("device", "CPU")).upper() == "GPU" else 0.0
    report = run_rooms(panorama_room, tasks, executor=executor, workers=workers, retries=retries, desc="panoramas",
                       report_path=dataset / "panoramas_report.json", ray_address=ray_address, progress=progress,
                       info_postfix="panoramas", ray_num_gpus=gpus)
    manifest = pack_dataset(dataset, rooms_per_shard=rooms_per_shard, splits=splits, seed=seed, panoramas_only=True)
    if not work_existed and work.is_dir() and not any(work.iterdir()):  # nothing kept in it: leave no trace
        work.rmdir()
    return report, manifest


@click.command("panoramas")
@click.option("--front", "front", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="3D-FRONT root (3D-FRONT/, 3D-FUTURE-model/, 3D-FRONT-texture/), e.g. from `panorooms3d synth`.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Panorama-only dataset folder to create or resume (manifest.json, shards/, splits/, staging/).")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where each room's skybox store goes while it is made [default: OUT/work].")
@click.option("--rooms", multiple=True, metavar="HOUSE/ROOM", help="Only these rooms (repeatable) [default: all].")
@click.option("--skybox-size", type=int, default=None, help="Skybox face size in pixels [default 512].")
@click.option("--samples", type=int, default=None, help="Cycles samples per pixel [default 4, denoised].")
@click.option("--pano-height", type=int, default=512, show_default=True, help="Panorama height (width = 2x).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds textures, noise and splits (as `build`).")
@click.option("--views", type=int, default=None,
              help="Only to match a `build`: perspective cameras are sampled (never rendered) because they seed "
                   "the texture choice; a `build` given the same --views/--width/--height makes the same "
                   "panoramas [default 48].")
@click.option("--width", type=int, default=None, help="See --views [default 640].")
@click.option("--height", type=int, default=None, help="See --views [default 480].")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True, help="Cycles device.")
@click.option("--timeout", type=float, default=None, help="Seconds before a room's Blender is killed [default 1800].")
@click.option("--rooms-per-shard", type=int, default=64, show_default=True, help="Rooms per zarr shard.")
@click.option("--splits", default="1,0,0", show_default=True,
              help="Fractions TRAIN,VAL,TEST of rooms (seeded). The teacher trains on the train split.")
@click.option("--keep-skybox", is_flag=True, help="Keep each room's skybox store in WORK after its panorama is made.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: process pool; ray: an existing Ray cluster (see --ray-address).")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Rooms in parallel (local). Blender renders one room on every core, but its scene builds "
                   "and writing use one: on 2 cores 2 workers rendered panoramas 1.4x sooner, the same "
                   "bytes (docs/performance.md).")
@click.option("--retries", type=int, default=1, show_default=True, help="Extra attempts for a failing room.")
@click.option("--ray-address", default=None, help="Ray cluster address (auto, ray://host:port) [default auto].")
@click.option("--force", is_flag=True,
              help="Write into a non-empty OUT (or WORK) that is not a dataset (work) folder. Never into a dataset "
                   "with volumes.")
def panoramas_command(front: Path, out: Path, work: Path | None, rooms: tuple[str, ...], skybox_size, samples,
                      pano_height: int, seed: int, views, width, height, device: str, timeout, rooms_per_shard: int,
                      splits: str, keep_skybox: bool, executor: str, workers: int, retries: int,
                      ray_address: str | None, force: bool) -> None:
    """Render only the skybox of every room of FRONT and pack the panoramas into OUT (no frames, no volume).

    A panorama costs one 6-face skybox render: this is the cheap, abundant 2D data of the paper's
    premise, for training the 2D teacher (`teacher.panoramas` in a suite). OUT is a dataset folder
    whose manifest says `content: panoramas`; `panorooms3d info OUT` describes it.

    Resumable: rooms whose panorama is staged are skipped; run the same command again after an
    interruption. Failed rooms are retried, then listed (with the reason) in OUT/panoramas_report.json.

    OUT is checked before any work, as `build` checks its OUT: a file, or a non-empty folder that is
    not a dataset folder (e.g. a work folder of `render`), is refused unless --force; a dataset with
    volumes (made by `build`) is always refused; one writer at a time per OUT and per WORK (a
    second run is refused, naming the first one's pid).
    """
    from contextlib import ExitStack, suppress

    from panorooms3d.render.settings import RenderSettings
    from panorooms3d.run.commands import check_dataset_content, hold_dataset_folders, selected_rooms
    from panorooms3d.run.lock import check_folder_kind, check_output_dir
    from panorooms3d.store.commands import parse_splits
    from panorooms3d.store.dataset import DatasetError

    if pano_height < 8:
        raise click.BadParameter(f"must be >= 8, got {pano_height}", param_hint="--pano-height")
    if rooms_per_shard < 1:
        raise click.BadParameter(f"must be >= 1, got {rooms_per_shard}", param_hint="--rooms-per-shard")
    out = Path(out)
    check_output_dir(out)
    check_folder_kind(out, "dataset", force)
    check_dataset_content(out, "panoramas")  # not a dataset with volumes (`build`), --force or not
    work_existed = work is not None and Path(work).exists()
    if work is not None:
        check_output_dir(work, "--work")
        check_folder_kind(work, "work", force, "--work")
    uids = [uid for uid, _ in selected_rooms(front, rooms, "no rooms")]
    overrides = {k: v for k, v in dict(views=views, width=width, height=height, samples=samples,
                                       skybox_size=skybox_size, timeout=timeout).items() if v is not None}
    try:
        render = RenderSettings(seed=seed, device=device.upper(), **overrides)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    settings = PanoramaSettings(pano_height=pano_height, pano_width=2 * pano_height, keep_skybox=keep_skybox)
    fractions = parse_splits(splits)
    other = staged_with_other_settings(out, uids, render.to_dict(), (pano_height, 2 * pano_height))
    if other:
        uid, diff = next(iter(other.items()))
        what = ", ".join(f"{k} {a} (asked {b})" for k, (a, b) in diff.items())
        raise click.ClickException(f"--out {out}: {len(other)} room(s) are staged with other settings, e.g. {uid}: "
                                   f"{what}; use the same settings to resume, or another --out")
    click.echo(f"panoramas of {len(uids)} room(s) from {front} into {out} (skybox {render.skybox_size} px, "
               f"panorama {pano_height} x {2 * pano_height})")
    t0 = time.perf_counter()
    try:
        with ExitStack() as stack:
            hold_dataset_folders(stack, out, work, command="panoramas", content="panoramas", force=force)
            report, manifest = build_panoramas(front, out, uids, work=work, render=render.to_dict(),
                                               panorama=asdict(settings), executor=executor, workers=workers,
                                               retries=retries, rooms_per_shard=rooms_per_shard, splits=fractions,
                                               seed=seed, ray_address=ray_address)
    except (ValueError, DatasetError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:  # a --work this run created and left empty (skybox stores deleted) leaves no trace
        if work is not None and not work_existed and Path(work).is_dir() and not any(Path(work).iterdir()):
            with suppress(OSError):
                Path(work).rmdir()
    click.echo(report.summary())
    if report.done:
        secs = sum(r.info.get("skybox_seconds", 0) for r in report.done)
        click.echo(f"skybox renders: {secs / len(report.done):.2f} s per room (incl. scene builds); "
                   f"{time.perf_counter() - t0:.1f} s in all")
    counts = {s: sum(r["split"] == s for r in manifest["rooms"]) for s in ("train", "val", "test")}
    click.echo(f"panorama dataset {out}: {len(manifest['rooms'])} room(s) in {len(manifest['shards'])} shard(s) "
               f"(train {counts['train']}, val {counts['val']}, test {counts['test']}); "
               f"run `panorooms3d info {out} --verify` to check it")
    if report.failed:
        raise SystemExit(1)
