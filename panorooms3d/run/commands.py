"""``panorooms3d build``: every stage for every room, resumable, one progress bar, one summary."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from panorooms3d.render.settings import BUILD_VIEW_SELECTION, RenderSettings


def _skip_unlabelled(front: Path, out: Path, uids: list[str]) -> tuple[list[str], dict[str, dict[str, int]]]:
    """The paper's filter: (rooms kept, {room left out: {unknown furniture category: count}}), listed."""
    from panorooms3d.scene.front import FrontError, unlabelled_furniture

    try:
        unknown = {uid: c for uid, c in unlabelled_furniture(front, uids).items() if c}
    except FrontError as exc:
        raise click.ClickException(str(exc)) from None
    for uid, counts in unknown.items():
        shown = ", ".join(f"{k!r}" + (f" x{v}" if v > 1 else "") for k, v in sorted(counts.items()))
        click.echo(f"skipping {uid}: unlabelled furniture {shown}")
    kept = [uid for uid in uids if uid not in unknown]
    click.echo(f"--skip-unlabelled-furniture: {len(unknown)} of {len(uids)} room(s) left out "
               f"(listed in {out / 'skipped_rooms.json'})")
    if not kept:
        raise click.ClickException(f"every selected room holds unlabelled furniture; nothing to build from {front} "
                                   "(drop --skip-unlabelled-furniture to build them with those items labelled others)")
    return kept, unknown


def _write_skipped(out: Path, unknown: dict[str, dict[str, int]]) -> None:
    """OUT/skipped_rooms.json: the rooms --skip-unlabelled-furniture left out, with the strings that caused it."""
    import json

    from panorooms3d.run.atomic import atomic_path

    with atomic_path(Path(out) / "skipped_rooms.json", "file") as tmp:
        tmp.write_text(json.dumps({"filter": "unlabelled_furniture", "rooms": unknown}, indent=2, sort_keys=True))



#: ``source`` of a panorama staged by ``panoramas`` (its pano.zarr's ``attrs``): marks a panorama-only dataset.
PANORAMA_ONLY_SOURCE = "panorama-only build (skybox render, no volume)"


def dataset_content(folder: Path) -> str | None:
    """What the dataset folder ``folder`` holds, or is being built into: ``"volumes"``, ``"panoramas"`` or None.

    The first that answers: ``manifest.json``'s ``content`` (absent: volumes); the report of the command
    that writes the folder (``build_report.json``, ``fuse_report.json``: volumes; ``panoramas_report.json``:
    panoramas); the staged rooms (a ``volume.zarr``: volumes; a ``pano.zarr`` staged by ``panoramas``:
    panoramas; one staged by ``panorama``, waiting for ``fuse``: volumes). None for a folder with none of
    these (new, empty, or not a dataset). An unreadable manifest says nothing (packing rewrites it).
    """
    import json

    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        manifest = None
    if isinstance(manifest, dict) and "rooms" in manifest:
        return "panoramas" if manifest.get("content") == "panoramas" else "volumes"
    if (folder / "build_report.json").is_file() or (folder / "fuse_report.json").is_file():
        return "volumes"
    if (folder / "panoramas_report.json").is_file():
        return "panoramas"
    staging = folder / "staging"
    rooms = sorted(d for d in staging.iterdir() if d.is_dir() and not d.name.startswith(".")) if staging.is_dir() else []
    if any((d / "volume.zarr").is_dir() for d in rooms):
        return "volumes"
    for d in rooms:
        if (d / "pano.zarr").is_dir():
            try:
                meta = json.loads((d / "pano.zarr" / "zarr.json").read_text())
                source = meta["attributes"]["attrs"].get("source")
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
                continue
            return "panoramas" if source == PANORAMA_ONLY_SOURCE else "volumes"
    return None


def check_dataset_content(out: Path, wanted: str) -> None:
    """Refuse (:class:`~panorooms3d.run.lock.FolderError`) an ``out`` that holds the other kind of dataset.

    ``wanted`` is ``"volumes"`` (``build``) or ``"panoramas"`` (``panoramas``). ``--force`` does not
    override this: the two kinds are never mixed in one folder.
    """
    from panorooms3d.run.lock import FolderError

    have = dataset_content(out)
    if have is None or have == wanted:
        return
    if wanted == "volumes":
        raise FolderError(f"--out {out}: holds a panorama-only dataset (made by `panorooms3d panoramas`: panoramas, "
                          "no volumes); `build` makes a dataset with volumes and never mixes the two in one folder, "
                          "even with --force; choose another --out (a teacher trains on both when its `panoramas` "
                          "setting names this folder)")
    raise FolderError(f"--out {out}: holds a dataset with volumes (made by `build`, or `fuse`/`panorama`/`pack`), "
                      "whose rooms have their panoramas already; `panoramas` makes a panorama-only dataset and never "
                      "mixes the two in one folder, even with --force; choose another --out")


def hold_dataset_folders(stack, out: Path, work, *, command: str, content: str, force: bool) -> None:
    """Lock ``out`` (a dataset folder) and ``work`` (when given) for ``command`` on ``stack`` (an
    :class:`~contextlib.ExitStack`), then check ``out``'s kind of dataset again under the lock
    (:func:`check_dataset_content` with ``content``): another command may have ended meanwhile."""
    from panorooms3d.run.lock import output_folder

    say = lambda m: click.echo(m, err=True)  # noqa: E731
    stack.enter_context(output_folder(out, "dataset", force=force, command=command, on_message=say))
    check_dataset_content(out, content)
    if work is not None:
        stack.enter_context(output_folder(Path(work), "work", force=force, command=command, option="--work",
                                          on_message=say))


def selected_rooms(front: Path, rooms, empty: str) -> list:
    """``select_rooms(front, rooms)`` for a command: unreadable houses are echoed as skipped, a front
    error or an empty selection is an ``Error:`` (``empty``: what to say, e.g. "no rooms to build")."""
    from panorooms3d.scene.front import FrontError, select_rooms

    try:
        selected, problems = select_rooms(front, rooms)
    except FrontError as exc:
        raise click.ClickException(str(exc)) from None
    for p in problems:
        click.echo(f"skipping house: {p}", err=True)
    if not selected:
        raise click.ClickException(f"{empty} in {front}")
    return selected

@click.command("build")
@click.option("--front", "front", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="3D-FRONT root (3D-FRONT/, 3D-FUTURE-model/, 3D-FRONT-texture/), e.g. from `panorooms3d synth`.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder to create or resume (manifest.json, shards/, splits/, staging/).")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None, show_default="OUT/work",
              help="Where the per-room frames stores go.")
@click.option("--rooms", multiple=True, metavar="HOUSE/ROOM", show_default="all", help="Only these rooms (repeatable).")
@click.option("--skip-unlabelled-furniture", is_flag=True,
              help="Leave out rooms holding furniture of an unknown category (the paper's filter); each is "
                   "listed with the strings that caused it, and in OUT/skipped_rooms.json.")
@click.option("--views", type=click.IntRange(1), default=RenderSettings.views, show_default=True,
              help="Render exactly this many random hand-held views per room (implies --view-selection random).")
@click.option("--view-selection", type=click.Choice(["random", "coverage"]), default=None,
              help="coverage: as few hand-held views as see --coverage-target of each room's interior-visible "
                   "surface (docs/rendering.md); random: --views random views. [default: coverage, or random when "
                   "--views is given]")
@click.option("--coverage-target", type=click.FloatRange(0, 1, min_open=True),
              default=RenderSettings.coverage_target, show_default=True,
              help="Share of the interior-visible surface the coverage-driven views must see.")
@click.option("--max-views", type=click.IntRange(1), default=RenderSettings.max_views, show_default=True,
              help="Frame cap of the coverage-driven views.")
@click.option("--width", type=click.IntRange(8), default=RenderSettings.width, show_default=True,
              help="Frame width in pixels.")
@click.option("--height", type=click.IntRange(8), default=RenderSettings.height, show_default=True,
              help="Frame height in pixels.")
@click.option("--samples", type=click.IntRange(1), default=RenderSettings.samples, show_default=True,
              help="Cycles samples per pixel (denoised).")
@click.option("--skybox-size", type=click.IntRange(8), default=RenderSettings.skybox_size, show_default=True,
              help="Skybox face size in pixels.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds cameras, textures, noise and splits.")
@click.option("--device", type=click.Choice(["cpu", "gpu"], case_sensitive=False), default="cpu", show_default=True,
              help="Cycles device.")
@click.option("--timeout", type=click.FloatRange(1), default=RenderSettings.timeout, show_default=True,
              help="Seconds before a room's Blender is killed.")
@click.option("--voxel-size", type=click.FloatRange(0, min_open=True), default=0.04, show_default=True,
              help="Voxel edge in metres.")
@click.option("--truncation", type=click.FloatRange(0, min_open=True), default=3.0, show_default=True,
              help="TSDF truncation in voxels.")
@click.option("--pano-height", type=click.IntRange(8), default=512, show_default=True,
              help="Panorama height (width = 2x).")
@click.option("--rooms-per-shard", type=click.IntRange(1), default=8, show_default=True, help="Rooms per zarr shard.")
@click.option("--splits", default="0.9,0.05,0.05", show_default=True,
              help="Fractions TRAIN,VAL,TEST of rooms (split by room, seeded).")
@click.option("--delete-frames", is_flag=True, help="Delete each room's frames store once it is staged.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: process pool; ray: an existing Ray cluster (see --ray-address).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Rooms in parallel (local). Blender renders one room on every core, but its scene builds, "
                   "fusion and writing use one: on 2 cores 2 workers built rooms 1.2x sooner, the same "
                   "bytes (docs/performance.md).")
@click.option("--retries", type=click.IntRange(0), default=1, show_default=True,
              help="Extra attempts for a failing room.")
@click.option("--ray-address", default=None, help="Ray cluster address (auto, ray://host:port); default: auto.")
@click.option("--overwrite", is_flag=True,
              help="Re-render (and re-stage) rooms whose frames were rendered with other settings; default: keep "
                   "them and say so.")
@click.option("--force", is_flag=True, help="Write into a non-empty OUT (or WORK) that is not a dataset (work) folder.")
def build(front: Path, out: Path, work: Path | None, rooms: tuple[str, ...], views, width, height, samples,
          skybox_size, seed: int, device: str, timeout, voxel_size: float, truncation: float, pano_height: int,
          rooms_per_shard: int, splits: str, delete_frames: bool, executor: str, workers: int, retries: int,
          ray_address: str | None, overwrite: bool, force: bool, skip_unlabelled_furniture: bool = False,
          view_selection: str | None = None, coverage_target: float = RenderSettings.coverage_target,
          max_views: int = RenderSettings.max_views) -> None:
    """Render, fuse and make panoramas for every room of FRONT, then pack the dataset OUT.

    Resumable: rooms already staged are skipped, and their shards are reused; run the same
    command again after an interruption. Rooms that fail are retried, then listed (with the reason)
    in OUT/build_report.json, and the others go on. Rooms whose stored frames were rendered with
    other settings are reported and kept, or re-rendered with --overwrite. One build at a time per
    OUT (a second one is refused).
    """
    from contextlib import ExitStack

    from panorooms3d.render.commands import add_mismatches_to_report, mismatched_rooms, report_mismatches
    from panorooms3d.run.build import BuildSettings, build_dataset
    from panorooms3d.run.lock import check_folder_kind, check_output_dir
    from panorooms3d.store.commands import parse_splits
    from panorooms3d.store.dataset import room_key

    fractions = parse_splits(splits)
    work_dir = Path(work) if work is not None else Path(out) / "work"
    check_output_dir(out)
    check_folder_kind(out, "dataset", force)
    check_dataset_content(out, "volumes")  # not a panorama-only dataset (`panoramas`), --force or not
    if work is not None:
        check_output_dir(work, "--work")
        check_folder_kind(work, "work", force, "--work")
    selected = selected_rooms(front, rooms, "no rooms to build")
    uids = [uid for uid, _ in selected]
    unlabelled: dict[str, dict[str, int]] = {}
    if skip_unlabelled_furniture:
        uids, unlabelled = _skip_unlabelled(front, out, uids)
    if view_selection is None:  # coverage-driven views win (docs/fusion.md), unless a view count is asked for
        given = click.get_current_context().get_parameter_source("views")
        view_selection = "random" if given == click.core.ParameterSource.COMMANDLINE else BUILD_VIEW_SELECTION
    render = RenderSettings(seed=seed, device=device.upper(), views=views, width=width, height=height, samples=samples,
                            skybox_size=skybox_size, timeout=timeout, view_selection=view_selection,
                            coverage_target=coverage_target, max_views=max_views)
    settings = BuildSettings(voxel_size=voxel_size, truncation=truncation, pano_height=pano_height,
                             pano_width=2 * pano_height, keep_frames=not delete_frames)
    mismatched = mismatched_rooms({u: work_dir / f"{room_key(u)}.zarr" for u in uids}, render.to_dict())
    report_mismatches(mismatched, overwrite)
    click.echo(f"building {len(uids)} room(s) from {front} into {out}")
    with ExitStack() as stack:
        hold_dataset_folders(stack, out, work, command="build", content="volumes", force=force)
        try:
            report, manifest = build_dataset(front, out, uids, work=work, render=render.to_dict(),
                                             build=asdict(settings), executor=executor, workers=workers,
                                             retries=retries, rooms_per_shard=rooms_per_shard,
                                             splits=fractions, seed=seed, ray_address=ray_address,
                                             overwrite=list(mismatched) if overwrite else ())
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        add_mismatches_to_report(report, mismatched, overwrite, Path(out) / "build_report.json")
        if skip_unlabelled_furniture:
            _write_skipped(out, unlabelled)
    click.echo(report.summary())
    frames = report.totals("frames")
    if report.done:
        secs = sum(r.info.get("render_seconds", 0) for r in report.done)
        click.echo(f"frames rendered: {int(frames)} ({secs / max(frames, 1):.2f} s per frame incl. scene builds)")
        covs = [r.info["interior_coverage"] for r in report.done if r.info.get("interior_coverage") is not None]
        if covs:
            click.echo(f"views: {render.view_selection}, {frames / len(report.done):.1f} frames per room, "
                       f"{100 * min(covs):.1f}-{100 * max(covs):.1f}% of each room's interior-visible surface seen "
                       f"(target {100 * render.coverage_target:.0f}%; per room in build_report.json)")
    n_rooms = len(manifest["rooms"])
    click.echo(f"dataset {out}: {n_rooms} room(s) in {len(manifest['shards'])} shard(s); "
               f"run `panorooms3d info {out} --verify` to check it")
    if report.failed:
        raise SystemExit(1)
