"""CLI command ``panorama``: every room's skybox -> equirect panorama, staged into the dataset."""

from __future__ import annotations

import time
from pathlib import Path

import click
from tqdm import tqdm

from panorooms3d.run.lock import locked_output


@click.command("panorama")
@click.option("--work", "work", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of frames stores (WORK/<room key>.zarr) written by `render`.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder; panoramas are staged in OUT/staging/<room key>/pano.zarr.")
@click.option("--height", default=512, show_default=True, type=click.IntRange(8), help="Panorama height (pixels).")
@click.option("--width", default=1024, show_default=True, type=click.IntRange(8), help="Panorama width (pixels).")
@click.option("--png", "png", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write a picture (RGB + labels) per room into this folder.")
@click.option("--overwrite", is_flag=True, help="Remake panoramas that are already staged.")
@click.option("--pack/--no-pack", default=True, show_default=True,
              help="Pack the dataset (shards + manifest) at the end, as `fuse` does.")
@click.option("--force", is_flag=True, help="Write into a non-empty OUT that is not a dataset folder.")
@locked_output("out", "dataset", "panorama")
def panorama(work: Path, out: Path, height: int, width: int, png: Path | None, overwrite: bool, pack: bool,
             force: bool) -> None:
    """Make the 360-degree panorama (RGB, labels, instances, range depth) of every rendered room.

    Resumable: rooms whose panorama is already staged are skipped. A room that fails is reported
    with its reason and the others go on; the exit code is 1 when any room failed. One writer at a
    time per OUT; a non-empty OUT that is not a dataset folder needs --force. Like `fuse`, it
    packs the dataset when it finishes (unless --no-pack), so `fuse` then `panorama` (or the other
    way round) leaves a manifest whose rooms have their panoramas; before any room is fused there
    is nothing to pack yet and it says so.
    """
    from panorooms3d.panorama.equirect import make_panorama, save_panorama_picture
    from panorooms3d.run.atomic import atomic_path
    from panorooms3d.store.dataset import room_key, room_panorama_path, write_room_panorama
    from panorooms3d.store.frames import read_frames

    if not work.is_dir():
        what = "is not a folder" if work.exists() else "no such folder"
        raise click.ClickException(f"--work {work}: {what} (run `panorooms3d render` first)")
    if png is not None:
        from panorooms3d.run.lock import check_output_dir

        check_output_dir(png, "--png")
    if width % 2:
        raise click.ClickException(f"--width must be even, got {width}")
    stores = sorted(p for p in work.glob("*.zarr") if p.is_dir() and not p.name.startswith("."))
    if not stores:
        raise click.ClickException(f"no frames stores (*.zarr) in {work}")
    done, skipped, failed = 0, 0, []
    t0 = time.perf_counter()
    for store in tqdm(stores, desc="panorama", unit="room"):
        try:
            try:
                import zarr

                uid = str(zarr.open_group(str(store), mode="r").attrs.get("room_uid", "")) or None
            except Exception:
                uid = None
            uid = uid or store.stem.replace("__", "/", 1)
            target = room_panorama_path(out, uid)
            if target.exists() and not overwrite:
                skipped += 1
                continue
            frames = read_frames(store, skybox=True, frames=slice(0, 0))
            frames.attrs.setdefault("room_uid", uid)
            pano = make_panorama(frames, height, width)
            write_room_panorama(out, uid, pano, attrs={"source": str(store), "height": height, "width": width})
            if png is not None:
                picture = png / f"{room_key(uid)}.png"
                with atomic_path(picture) as tmp:
                    save_panorama_picture(pano, tmp)
            done += 1
        except Exception as exc:  # one room's failure must not stop the others
            failed.append((store.name, f"{type(exc).__name__}: {exc}"))
    seconds = time.perf_counter() - t0
    click.echo(f"panorama: done {done}, skipped {skipped}, failed {len(failed)} in {seconds:.1f} s -> {out}")
    for name, reason in failed:
        click.echo(f"  FAILED {name}: {reason}")
    if pack and (done or skipped):
        from panorooms3d.store.dataset import DatasetError, pack_dataset, staged_rooms

        if not staged_rooms(out)[0]:
            click.echo(f"not packed: no room of {out} is fused yet (`panorooms3d fuse` packs when it finishes)")
        else:
            try:
                manifest = pack_dataset(out)
            except (DatasetError, ValueError) as exc:
                raise click.ClickException(f"packing {out}: {exc}") from None
            click.echo(f"packed {len(manifest.get('rooms', {}))} rooms into {out}")
    if failed:
        raise SystemExit(1)
