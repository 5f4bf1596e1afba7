"""CLI commands of the dataset store: ``pack``, ``info``, ``view`` and ``import-official``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

_DATASET = click.Path(file_okay=False, path_type=Path)


def _open(dataset: Path):
    from panorooms3d.store.dataset import Dataset, DatasetError

    try:
        return Dataset(dataset)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None


def parse_splits(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise click.BadParameter(f"expected three fractions TRAIN,VAL,TEST such as 0.9,0.05,0.05, got {text!r}")
    return parts  # type: ignore[return-value]


def _summary(manifest: dict) -> str:
    n = len(manifest["rooms"])
    counts = {s: sum(r["split"] == s for r in manifest["rooms"]) for s in ("train", "val", "test")}
    mb = sum(s["size_bytes"] for s in manifest["shards"]) / 1e6
    return (f"{n} rooms in {len(manifest['shards'])} shards ({mb:.1f} MB): "
            f"train {counts['train']}, val {counts['val']}, test {counts['test']}")


@click.command("pack")
@click.argument("dataset", type=_DATASET)
@click.option("--rooms-per-shard", default=8, show_default=True, type=click.IntRange(1), help="Rooms per shard store.")
@click.option("--splits", "splits", default="0.9,0.05,0.05", show_default=True, help="Fractions TRAIN,VAL,TEST.")
@click.option("--seed", default=0, show_default=True, type=int, help="Split seed (splits are by room).")
def pack(dataset: Path, rooms_per_shard: int, splits: str, seed: int) -> None:
    """Pack the staged rooms of DATASET into checksummed zarr shards, splits and manifest.json.

    DATASET is a folder that `fuse`, `panorama` or `build` staged rooms into (DATASET/staging/).
    One writer at a time per DATASET.
    """
    from tqdm import tqdm

    from panorooms3d.run.lock import FolderLock, check_output_dir
    from panorooms3d.store.dataset import DatasetError, pack_dataset, staged_rooms

    fractions = parse_splits(splits)
    if not dataset.is_dir():
        what = "is not a folder" if dataset.exists() else "no such folder"
        raise click.ClickException(f"{dataset}: {what}; give a dataset folder with staged rooms (run fuse first)")
    check_output_dir(dataset, "DATASET")
    if not (dataset / "staging").is_dir() or not staged_rooms(dataset)[0]:
        raise click.ClickException(f"{dataset}: no staged room volumes in {dataset / 'staging'}; "
                                   "stage rooms with `panorooms3d fuse --work WORK --out DATASET` first")
    lock = FolderLock(dataset, "pack").acquire(on_stale=lambda m: click.echo(m, err=True))
    bar = tqdm(desc="pack", unit="shard")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        manifest = pack_dataset(dataset, rooms_per_shard=rooms_per_shard, splits=fractions, seed=seed,
                                progress=progress)
    except (DatasetError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()
        lock.release()
    click.echo(f"packed {_summary(manifest)} -> {dataset / 'manifest.json'}")
    if manifest["skipped_without_volume"]:
        click.echo(f"skipped {len(manifest['skipped_without_volume'])} rooms with a panorama but no volume")


@click.command("info")
@click.argument("dataset", type=_DATASET)
@click.option("--verify", is_flag=True, help="Check every shard's sha256 and every chunk's crc32c; exit 1 on a problem.")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
@click.option("--class-set", default="paper30", show_default=True, help="Class set of the histogram.")
def info(dataset: Path, verify: bool, as_json: bool, class_set: str) -> None:
    """Rooms, splits, sizes and class histogram of a packed DATASET (and --verify its checksums)."""
    from panorooms3d.taxonomy import get_class_set

    ds = _open(dataset)
    m = ds.manifest
    try:
        cs = get_class_set(class_set)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    hist = ds.class_histogram(class_set)
    voxels = sum(int(np.prod(r["shape"])) for r in m["rooms"] if r.get("shape"))
    facts = {
        "dataset": str(dataset),
        "format_version": m["format_version"],
        "created": m.get("created"),
        "rooms": len(m["rooms"]),
        "rooms_with_panorama": sum(bool(r["has_panorama"]) for r in m["rooms"]),
        "splits": {s: len(ds.split(s)) for s in ("train", "val", "test")},
        "shards": len(m["shards"]),
        "size_mb": round(sum(s["size_bytes"] for s in m["shards"]) / 1e6, 3),
        "voxels": voxels,
        "observed_voxels": sum(int(r.get("observed_voxels", 0)) for r in m["rooms"]),
        "class_histogram": {name: int(c) for name, c in zip(cs.class_names, hist)},
    }
    if ds.panoramas_only:  # `panorooms3d panoramas`: rooms have a panorama and no volume
        facts["content"] = "panoramas"
        facts["pano_shapes"] = sorted({"x".join(map(str, r["pano_shape"])) for r in m["rooms"]})
        hist = ds.pixel_histogram(class_set)
        facts["class_histogram"] = {name: int(c) for name, c in zip(cs.class_names, hist)}
    problems: list[str] = []
    if verify:
        problems = ds.verify()
        facts["verify"] = {"ok": not problems, "problems": problems}
    if as_json:
        click.echo(json.dumps(facts, indent=1))
    elif ds.panoramas_only:
        click.echo(f"{dataset}: panorama-only dataset (no volumes; for the 2D teacher): {_summary(m)}")
        click.echo(f"  panoramas: {facts['rooms_with_panorama']} rooms, {', '.join(facts['pano_shapes'])} pixels")
        total = max(int(hist.sum()), 1)
        click.echo(f"  class histogram ({class_set}, panorama pixels):")
        for name, count in facts["class_histogram"].items():
            if count:
                click.echo(f"    {name:<22} {count:>12,}  {100 * count / total:6.2f} %")
        if verify:
            click.echo("  verify: OK" if not problems else f"  verify: {len(problems)} problem(s)")
    else:
        click.echo(f"{dataset}: {_summary(m)}")
        click.echo(f"  panoramas: {facts['rooms_with_panorama']} rooms; voxels: {voxels:,} "
                   f"({facts['observed_voxels']:,} observed)")
        total = max(int(hist.sum()), 1)
        click.echo(f"  class histogram ({class_set}, voxels):")
        for name, count in facts["class_histogram"].items():
            if count:
                click.echo(f"    {name:<22} {count:>12,}  {100 * count / total:6.2f} %")
        if verify:
            click.echo("  verify: OK" if not problems else f"  verify: {len(problems)} problem(s)")
    if problems:
        for p in problems:
            click.echo(f"ERROR {p}", err=True)
        raise SystemExit(1)


@click.command("view")
@click.argument("dataset", type=_DATASET)
@click.argument("room")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="X.ply (marching-cubes mesh in world metres) or X.png (slices: tsdf | rgb | labels).")
@click.option("--color", type=click.Choice(["rgb", "class"]), default="rgb", show_default=True, help="Mesh colours.")
@click.option("--axis", type=click.Choice(["x", "y", "z"]), default="z", show_default=True, help="Slice axis (png).")
@click.option("--index", type=int, default=None, help="Slice index along --axis (png; default the middle).")
def view(dataset: Path, room: str, out: Path, color: str, axis: str, index: int | None) -> None:
    """Write a mesh (.ply) or a slice picture (.png) of ROOM of DATASET."""
    from panorooms3d.run.lock import check_output_file
    from panorooms3d.store.dataset import DatasetError
    from panorooms3d.store.view import write_view

    check_output_file(out, suffixes=(".ply", ".png"))
    ds = _open(dataset)
    if room not in ds.rooms:
        near = [u for u in ds.rooms if room in u][:5]
        raise click.ClickException(f"room {room!r} is not in {dataset}" + (f"; did you mean {near}?" if near else ""))
    try:
        write_view(ds.load_volume(room), out, color=color, axis=axis, index=index)
    except (DatasetError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out}")


@click.command("import-official")
@click.option("--rooms", "rooms", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder of official per-room .npz files (sdf128, color128, semanticlabel).")
@click.option("--panoramas", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Official panoramas in the ADE layout (images/<split>/*.jpg, annotations/<split>/*.png).")
@click.option("--splits", "splits", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Folder with the official train.txt/val.txt/test.txt: they decide each room's split.")
@click.option("--out", "out", required=True, type=_DATASET, help="Dataset folder to create.")
@click.option("--rooms-per-shard", default=8, show_default=True, type=click.IntRange(1), help="Rooms per shard store.")
@click.option("--force", is_flag=True, help="Write into a non-empty OUT that is not a dataset folder.")
def import_official_command(rooms: Path, panoramas: Path | None, splits: Path | None, out: Path, rooms_per_shard: int,
                            force: bool) -> None:
    """Convert the official PanoRooms3D release into a panorooms3d dataset (see docs/dataset.md)."""
    from tqdm import tqdm

    from panorooms3d.run.lock import output_folder
    from panorooms3d.store.dataset import DatasetError
    from panorooms3d.store.official import import_official

    with output_folder(out, "dataset", force=force, command="import-official"):
        bar = tqdm(desc="import", unit="room")
        try:
            manifest = import_official(rooms, out, panoramas, splits=splits, rooms_per_shard=rooms_per_shard,
                                       progress=lambda uid: bar.update(1))
        except (DatasetError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            bar.close()
    click.echo(f"imported {_summary(manifest)} -> {out}")

