"""``panorooms3d build``: every stage for every room, resumable, one progress bar, one summary."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click


@click.command("build")
@click.option("--front", "front", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="3D-FRONT root (3D-FRONT/, 3D-FUTURE-model/, 3D-FRONT-texture/), e.g. from `panorooms3d synth`.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder to create or resume (manifest.json, shards/, splits/, staging/).")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the per-room frames stores go [default: OUT/work].")
@click.option("--rooms", multiple=True, metavar="HOUSE/ROOM", help="Only these rooms (repeatable) [default: all].")
@click.option("--views", type=int, default=None, help="Perspective frames per room [default: the renderer's, 48].")
@click.option("--width", type=int, default=None, help="Frame width in pixels [default 640].")
@click.option("--height", type=int, default=None, help="Frame height in pixels [default 480].")
@click.option("--samples", type=int, default=None, help="Cycles samples per pixel [default 4, denoised].")
@click.option("--skybox-size", type=int, default=None, help="Skybox face size in pixels [default 512].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds cameras, textures, noise and splits.")
@click.option("--device", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="Cycles device.")
@click.option("--timeout", type=float, default=None, help="Seconds before a room's Blender is killed [default 1800].")
@click.option("--voxel-size", type=float, default=0.04, show_default=True, help="Voxel edge in metres.")
@click.option("--truncation", type=float, default=3.0, show_default=True, help="TSDF truncation in voxels.")
@click.option("--pano-height", type=int, default=512, show_default=True, help="Panorama height (width = 2x).")
@click.option("--rooms-per-shard", type=int, default=8, show_default=True, help="Rooms per zarr shard.")
@click.option("--splits", default="0.9,0.05,0.05", show_default=True,
              help="Fractions TRAIN,VAL,TEST of rooms (split by room, seeded).")
@click.option("--delete-frames", is_flag=True, help="Delete each room's frames store once it is staged.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: process pool; ray: an existing Ray cluster (see --ray-address).")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Rooms in parallel (local). Blender already uses every core for one room.")
@click.option("--retries", type=int, default=1, show_default=True, help="Extra attempts for a failing room.")
@click.option("--ray-address", default=None, help="Ray cluster address (auto, ray://host:port) [default auto].")
def build(front: Path, out: Path, work: Path | None, rooms: tuple[str, ...], views, width, height, samples,
          skybox_size, seed: int, device: str, timeout, voxel_size: float, truncation: float, pano_height: int,
          rooms_per_shard: int, splits: str, delete_frames: bool, executor: str, workers: int, retries: int,
          ray_address: str | None) -> None:
    """Render, fuse and make panoramas for every room of FRONT, then pack the dataset OUT.

    Resumable: rooms already staged are skipped, and their shards are reused; run the same
    command again after an interruption. Rooms that fail are retried, then listed (with the reason)
    in OUT/build_report.json, and the others go on.
    """
    from panorooms3d.render.settings import RenderSettings
    from panorooms3d.run.build import BuildSettings, build_dataset
    from panorooms3d.scene.front import FrontError, select_rooms
    from panorooms3d.store.commands import parse_splits

    try:
        selected, problems = select_rooms(front, rooms)
    except FrontError as exc:
        raise click.ClickException(str(exc)) from None
    uids = [uid for uid, _ in selected]
    for p in problems:
        click.echo(f"skipping house: {p}", err=True)
    if not uids:
        raise click.ClickException(f"no rooms to build in {front}")
    overrides = {k: v for k, v in dict(views=views, width=width, height=height, samples=samples,
                                       skybox_size=skybox_size, timeout=timeout).items() if v is not None}
    render = RenderSettings(seed=seed, device=device.upper(), **overrides)
    settings = BuildSettings(voxel_size=voxel_size, truncation=truncation, pano_height=pano_height,
                             pano_width=2 * pano_height, keep_frames=not delete_frames)
    click.echo(f"building {len(uids)} room(s) from {front} into {out}")
    try:
        report, manifest = build_dataset(front, out, uids, work=work, render=render.to_dict(),
                                         build=asdict(settings), executor=executor, workers=workers,
                                         retries=retries, rooms_per_shard=rooms_per_shard,
                                         splits=parse_splits(splits), seed=seed,
                                         ray_address=ray_address)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.summary())
    frames = report.totals("frames")
    if report.done:
        secs = sum(r.info.get("render_seconds", 0) for r in report.done)
        click.echo(f"frames rendered: {int(frames)} ({secs / max(frames, 1):.2f} s per frame incl. scene builds)")
    n_rooms = len(manifest["rooms"])
    click.echo(f"dataset {out}: {n_rooms} room(s) in {len(manifest['shards'])} shard(s); "
               f"run `panorooms3d info {out} --verify` to check it")
    if report.failed:
        raise SystemExit(1)
