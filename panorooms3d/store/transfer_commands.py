"""CLI commands to share a dataset: ``publish`` (a static site) and ``download`` (from a site)."""

from __future__ import annotations

from pathlib import Path

import click

from panorooms3d.run.lock import locked_output

_SPLITS = ("train", "val", "test")


@click.command("publish")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "site", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the site to write (absent, empty, or an earlier site: it is replaced atomically).")
def publish_command(dataset: Path, site: Path) -> None:
    """Verify DATASET and write it as a static site that `panorooms3d download` reads.

    The site holds index.json (every shard file's size and sha256), manifest.json, splits/ and the
    shard stores (hard links when SITE is on the same file system, else copies). Serve it with any
    static HTTP server or object store, e.g.

        python -m http.server 8000 --directory SITE

    A dataset with checksum problems is refused. Re-publishing an unchanged dataset writes nothing.
    """
    from panorooms3d.run.lock import check_output_dir
    from panorooms3d.store.dataset import DatasetError
    from panorooms3d.store.publish import publish_dataset

    check_output_dir(site)
    if site.is_dir() and any(site.iterdir()) and not (site / "index.json").is_file():
        raise click.ClickException(f"--out {site}: the folder is not empty and holds no index.json, so it is not "
                                   "an earlier site; publishing replaces the whole folder: choose an empty or new one")
    try:
        index = publish_dataset(dataset, site)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot publish {dataset} to {site}: {exc}") from None
    n_rooms = sum(len(s["rooms"]) for s in index["shards"])
    n_files = sum(len(s["files"]) for s in index["shards"])
    what = "unchanged" if index.get("unchanged") else (
        f"{index['placed']['linked']} files hard-linked, {index['placed']['copied']} copied")
    click.echo(f"published {n_rooms} rooms in {len(index['shards'])} shards ({n_files} files, "
               f"{index['total_bytes'] / 1e6:.1f} MB) -> {site} ({what})")
    click.echo(f"serve it, e.g.: python -m http.server 8000 --directory {site}")


@click.command("download")
@click.argument("url")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to fill (created; complete shards already there are skipped).")
@click.option("--split", "splits", multiple=True, type=click.Choice(_SPLITS),
              help="Only the shards holding this split's rooms (repeatable).")
@click.option("--room", "rooms", multiple=True, metavar="HOUSE/ROOM",
              help="Only the shard holding this room (repeatable; adds to --split).")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 64), help="Parallel HTTP GETs.")
@click.option("--retries", default=3, show_default=True, type=click.IntRange(0, 20),
              help="Retries of a request that failed transiently (connection error, timeout, HTTP 5xx).")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds without an answer or a byte before a request fails.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True, help="Write into a non-empty --out folder that is not a dataset folder.")
@locked_output("out_dir", "dataset", "download")
def download_command(url: str, out_dir: Path, splits: tuple[str, ...], rooms: tuple[str, ...], workers: int,
                     retries: int, timeout: float, no_progress: bool, force: bool) -> None:
    """Download a published dataset from URL into --out, checking every file's size and sha256.

    URL is a site written by `panorooms3d publish`: http(s)://..., file://... or a local folder.
    Whole shards are downloaded: all of them by default, or those holding the rooms of --split /
    --room. Interrupted files resume (HTTP Range) when the command is run again; complete shards are
    skipped. manifest.json and splits/ are written last and list only the shards present in --out,
    so the folder is a dataset of that subset. Exits 1 naming each failed shard and file.
    """
    from panorooms3d.store.download import DownloadError, download_dataset

    try:
        report = download_dataset(url, out_dir, splits=list(splits) or None, rooms=list(rooms) or None,
                                  workers=workers, retries=retries, timeout=timeout, progress=not no_progress)
    except DownloadError as exc:
        if exc.report is not None:
            click.echo(exc.report.summary(), err=True)
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write the download of {url} into {out_dir}: {exc}") from None
    click.echo(report.summary())
