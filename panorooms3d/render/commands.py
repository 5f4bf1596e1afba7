"""CLI of the render stage: ``render`` (rooms -> frames stores) and ``preview`` (a contact sheet).

Both are click commands; ``panorooms3d.cli`` registers them. Every user mistake (missing folder,
unknown room, not a frames store) is a one-line error that names the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from panorooms3d.render.settings import RenderSettings

REPORT_NAME = "render_report.json"

#: Render settings that do not change the frames (where and how fast they are computed): not compared
#: when deciding whether a stored room was rendered with the asked settings.
IGNORED_SETTINGS = ("timeout", "threads", "device")

#: Settings read by one view mode (``view_selection``) only: random views draw ``views`` poses pitched
#: ``pitch_range_deg``; coverage-driven views pick among ``candidates`` poses pitched
#: ``candidate_pitch_range_deg`` until ``coverage_target`` or ``max_views``. A setting that neither the
#: stored room's mode nor the asked mode reads cannot change the frames, so it is not compared.
VIEW_MODE_SETTINGS = {
    "random": ("views", "pitch_range_deg"),
    "coverage": ("coverage_target", "max_views", "candidates", "candidate_pitch_range_deg"),
}

#: Picture formats of ``preview --out``, by suffix.
PICTURE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def stored_render_settings(store: Path) -> dict | None:
    """The render settings stored with a frames store (``attrs["settings"]``), or None when unreadable."""
    try:
        import zarr

        settings = zarr.open_group(str(store), mode="r").attrs.get("settings")
    except Exception:  # noqa: BLE001 - an unreadable store is judged by the runner, not here
        return None
    return dict(settings) if isinstance(settings, dict) else None


def settings_differences(stored: dict, wanted: dict) -> dict[str, list]:
    """``{setting: [stored, wanted]}`` for every setting that differs and can change the frames.

    Not compared: :data:`IGNORED_SETTINGS`, and the settings of a view mode (:data:`VIEW_MODE_SETTINGS`)
    that neither the stored room nor the asked settings use (e.g. ``max_views`` when both render random
    views). A setting missing from an older store counts as its default value.
    """
    from dataclasses import fields

    defaults = {f.name: f.default for f in fields(RenderSettings)}
    modes = {str(stored.get("view_selection", defaults["view_selection"])).lower(),
             str(wanted.get("view_selection", defaults["view_selection"])).lower()}
    unused = {key for mode, keys in VIEW_MODE_SETTINGS.items() if mode not in modes for key in keys}
    out = {}
    for key, value in wanted.items():
        if key in IGNORED_SETTINGS or key in unused:
            continue
        old = stored.get(key, defaults.get(key))
        if _plain(old) != _plain(value):
            out[key] = [_plain(old), _plain(value)]
    return out


def mismatched_rooms(stores: dict[str, Path], wanted: dict) -> dict[str, dict]:
    """``{room uid: differences}`` for the rooms (``{uid: frames store}``) whose existing store was rendered
    with other settings than ``wanted`` (a RenderSettings dict)."""
    out = {}
    for uid, store in stores.items():
        store = Path(store)
        if store.exists():
            stored = stored_render_settings(store)
            if stored is not None:
                diff = settings_differences(stored, wanted)
                if diff:
                    out[uid] = diff
    return out


def describe_differences(diff: dict[str, list]) -> str:
    """``views 8 (asked 48), width 160 (asked 640)``."""
    return ", ".join(f"{k} {old} (asked {new})" for k, (old, new) in diff.items())


def report_mismatches(mismatched: dict[str, dict], overwrite: bool, echo=None) -> None:
    """Print which stored rooms were rendered with other settings and what happens to them."""
    echo = echo or (lambda line: click.echo(line, err=True))
    if not mismatched:
        return
    action = "re-rendering them (--overwrite)" if overwrite else "kept as they are; pass --overwrite to re-render them"
    echo(f"{len(mismatched)} room(s) already rendered with other settings: {action}")
    for uid, diff in list(mismatched.items())[:20]:
        echo(f"  {uid}: {describe_differences(diff)}")
    if len(mismatched) > 20:
        echo(f"  ... and {len(mismatched) - 20} more (see the run report)")


def add_mismatches_to_report(report, mismatched: dict[str, dict], overwrite: bool, path: Path) -> None:
    """Record in the run report which rooms' settings differed (and whether they were re-rendered)."""
    if not mismatched:
        return
    for r in report.results:
        if r.room_uid in mismatched:
            r.info["settings_differ"] = mismatched[r.room_uid]
            r.info["rerendered"] = bool(overwrite and r.status != "skipped")
    report.write(path)


def render_task(task) -> dict:
    """Work function of the runner: load the task's house and render its room (module-level, picklable).

    ``task.kwargs``: ``house_json`` (path), ``front`` (FRONT_ROOT), ``room_id``, ``settings``
    (RenderSettings as a dict). Returns the info dict of :func:`render_room`.
    """
    from panorooms3d.render.render_room import render_room
    from panorooms3d.scene.front import load_house

    kw = task.kwargs
    house = load_house(Path(kw["house_json"]), Path(kw["front"]))
    return render_room(house, kw["room_id"], Path(task.output), RenderSettings.from_dict(kw["settings"]))


def _split_rooms(rooms: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for item in rooms:
        out += [r for r in item.replace(",", " ").split() if r]
    return out


def _tasks(front: Path, out: Path, rooms: list[str], settings: RenderSettings) -> tuple[list, list[str]]:
    """Room tasks for the selected rooms (all rooms of all houses when ``rooms`` is empty), and
    lines about houses that could not be listed."""
    from panorooms3d.run.runner import RoomTask
    from panorooms3d.scene.front import FrontError, select_rooms
    from panorooms3d.store.dataset import room_key

    try:
        selected, problems = select_rooms(front, rooms)
    except FrontError as exc:
        raise click.ClickException(str(exc)) from None
    tasks = [
        RoomTask(room_uid=uid, output=out / f"{room_key(uid)}.zarr",
                 kwargs={"house_json": str(house_json), "front": str(front), "room_id": uid.split("/", 1)[1],
                         "settings": settings.to_dict()})
        for uid, house_json in selected
    ]
    return tasks, [f"skipped a house: {p}" for p in problems]


@click.command("render")
@click.option("--front", "front", required=True, type=click.Path(path_type=Path),
              help="FRONT_ROOT: a folder with 3D-FRONT/, 3D-FUTURE-model/, 3D-FRONT-texture/ (or `synth` output).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Work folder: one WORK/<house>__<room>.zarr frames store per room, plus render_report.json.")
@click.option("--rooms", multiple=True, metavar="HOUSE/ROOM",
              help="Rooms to render (repeat the option or separate with commas); default: every room of every house.")
@click.option("--views", default=RenderSettings.views, show_default=True, type=click.IntRange(1),
              help="Perspective frames per room (--view-selection random).")
@click.option("--view-selection", type=click.Choice(["random", "coverage"]), default=RenderSettings.view_selection,
              show_default=True,
              help="random: --views random hand-held views; coverage: as few hand-held views as see --coverage-target "
                   "of the room's interior-visible surface, at most --max-views (docs/rendering.md).")
@click.option("--coverage-target", default=RenderSettings.coverage_target, show_default=True,
              type=click.FloatRange(0, 1, min_open=True),
              help="Share of the interior-visible surface the coverage-driven views must see.")
@click.option("--max-views", default=RenderSettings.max_views, show_default=True, type=click.IntRange(1),
              help="Frame cap of the coverage-driven views.")
@click.option("--width", default=RenderSettings.width, show_default=True, type=click.IntRange(8))
@click.option("--height", default=RenderSettings.height, show_default=True, type=click.IntRange(8))
@click.option("--hfov", default=RenderSettings.hfov_deg, show_default=True, type=click.FloatRange(20, 120),
              help="Horizontal field of view of the perspective frames, degrees.")
@click.option("--skybox-size", default=RenderSettings.skybox_size, show_default=True, type=click.IntRange(8),
              help="Side of the six square skybox faces, pixels.")
@click.option("--samples", default=RenderSettings.samples, show_default=True, type=click.IntRange(1),
              help="Cycles samples per pixel (denoised).")
@click.option("--no-denoise", is_flag=True, help="Turn OpenImageDenoise off.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Rooms rendered in parallel (local); Cycles threads are split between them. With "
                   "--executor ray each room renders on one thread and Ray runs one room per CPU.")
@click.option("--ray-address", default=None, help="Ray cluster address for --executor ray (default: auto).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seeds cameras, textures and noise.")
@click.option("--timeout", default=RenderSettings.timeout, show_default=True, type=click.FloatRange(1),
              help="Seconds before a room's Blender process is killed.")
@click.option("--retries", default=1, show_default=True, type=click.IntRange(0),
              help="Extra attempts for a failing room.")
@click.option("--device", type=click.Choice(["cpu", "gpu"], case_sensitive=False), default="cpu", show_default=True,
              help="Cycles device; gpu uses OptiX/CUDA/HIP when Blender finds one, else the CPU.")
@click.option("--overwrite", is_flag=True,
              help="Re-render rooms whose stored frames were rendered with other settings (default: keep them "
                   "and say so).")
@click.option("--force", is_flag=True, help="Write into a non-empty --out folder that is not a work folder.")
def render(front, out, rooms, views, width, height, hfov, skybox_size, samples, no_denoise, executor, workers,
           ray_address, seed, timeout, retries, device, overwrite, force, view_selection="random",
           coverage_target=RenderSettings.coverage_target, max_views=RenderSettings.max_views):
    """Render rooms with Blender: RGB-D, label and instance frames plus a 6-face skybox per room.

    Resumable: a room whose store exists is skipped; a failing or hanging room is retried, then
    recorded in WORK/render_report.json, and the run goes on. A stored room rendered with other
    settings (views, size, samples, seed...) is reported and kept, or re-rendered with
    --overwrite. One render at a time per WORK folder (a second one is refused).
    """
    from panorooms3d.run.lock import check_folder_kind, check_output_dir, output_folder
    from panorooms3d.run.runner import default_workers, run_rooms

    front, out = Path(front), Path(out)
    if not front.is_dir():
        what = "is not a folder" if front.exists() else "no such folder"
        raise click.ClickException(f"--front {front}: {what} (expected a FRONT_ROOT with 3D-FRONT/ inside)")
    check_output_dir(out)
    check_folder_kind(out, "work", force)
    threads = 0  # Cycles uses every core
    if executor == "local" and workers > 1:
        threads = max(1, default_workers() // workers)
    elif executor == "ray":
        threads = 1  # Ray packs one room per CPU it schedules (num_cpus=1 per task)
    try:
        settings = RenderSettings(width=width, height=height, hfov_deg=hfov, views=views, samples=samples,
                                  denoise=not no_denoise, skybox_size=skybox_size, seed=seed, device=device.upper(),
                                  timeout=timeout, threads=threads, view_selection=view_selection,
                                  coverage_target=coverage_target, max_views=max_views)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    tasks, notes = _tasks(front, out, _split_rooms(rooms), settings)
    for line in notes:
        click.echo(line, err=True)
    if not tasks:
        raise click.ClickException(f"--front {front}: no rooms to render")
    mismatched = mismatched_rooms({t.room_uid: t.output for t in tasks}, settings.to_dict())
    report_mismatches(mismatched, overwrite)
    if overwrite:
        for t in tasks:
            if t.room_uid in mismatched:
                t.overwrite = True
    if settings.device == "GPU":
        click.echo("device gpu: Cycles uses OptiX/CUDA/HIP when available and falls back to the CPU (see attrs.device)")
    with output_folder(out, "work", force=force, command="render", on_message=lambda m: click.echo(m, err=True)):
        report = run_rooms(render_task, tasks, executor=executor, workers=workers, retries=retries, desc="render",
                           report_path=out / REPORT_NAME, ray_address=ray_address, info_postfix="frames",
                           ray_num_gpus=1.0 if settings.device == "GPU" else 0.0)  # Ray: one GPU per room
        add_mismatches_to_report(report, mismatched, overwrite, out / REPORT_NAME)
    click.echo(report.summary())
    frames = int(report.totals("frames"))
    if frames:
        per_frame = sum(r.info.get("seconds_per_frame", 0) * r.info.get("frames", 0) for r in report.done) / frames
        click.echo(f"frames: {frames} rendered, {per_frame:.3f} s per frame (render only, {width}x{height}, "
                   f"{samples} samples), {report.seconds / max(frames, 1):.3f} s per frame overall")
        for r in report.done:
            click.echo(f"  {r.room_uid}: {r.info.get('frames', 0)} frames, coverage "
                       f"{100 * r.info.get('coverage', 0):.1f}% of the room's surface seen"
                       + (f", {100 * r.info['interior_coverage']:.1f}% of its interior-visible surface"
                          if r.info.get("interior_coverage") is not None else "")
                       + (", panorama camera moved off the centre" if r.info.get("moved") else ""))
    click.echo(f"report: {out / REPORT_NAME}")
    if report.failed:
        raise SystemExit(1)


def _depth_colour(depth: np.ndarray, vmax: float) -> np.ndarray:
    import cv2

    d = np.clip(depth / max(vmax, 1e-6), 0, 1)
    img = cv2.applyColorMap((d * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    img[depth <= 0] = 0
    return img


def contact_sheet(path: Path, frames: int = 4) -> np.ndarray:
    """A contact sheet (H, W, 3) uint8 of a frames store.

    One row per shown frame (``frames`` frames evenly spread): RGB | depth (turbo colour map,
    black = no hit) | labels coloured by paper30 class. Then two rows of the skybox faces
    (+x -x +y -y +z -z): RGB and labels, scaled so the six faces span the sheet's width.
    """
    import cv2

    from panorooms3d.geometry import SKYBOX_FACES
    from panorooms3d.store.frames import read_frames
    from panorooms3d.taxonomy import colourise

    fr = read_frames(Path(path))
    n = fr.num_frames
    pick = np.unique(np.linspace(0, n - 1, min(frames, n)).round().astype(int)) if n else []
    vmax = float(np.percentile(fr.depth[fr.depth > 0], 99)) if (fr.depth > 0).any() else 1.0
    rows = [np.concatenate([fr.rgb[i], _depth_colour(fr.depth[i], vmax), colourise(fr.label[i])], axis=1)
            for i in pick]
    if fr.skybox:
        h = max(r.shape[1] for r in rows) // 6 if rows else 128
        faces = [f for f in SKYBOX_FACES if f in fr.skybox]

        def strip(images):
            return np.concatenate([cv2.resize(im, (h, h), interpolation=cv2.INTER_NEAREST) for im in images], axis=1)

        rows.append(strip([fr.skybox[f]["rgb"] for f in faces]))
        rows.append(strip([colourise(fr.skybox[f]["label"]) for f in faces]))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


@click.command("preview")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Picture file to write: .png, .jpg or .webp (the format follows the suffix).")
@click.option("--frames", default=4, show_default=True, type=click.IntRange(1), help="Frames to show.")
def preview(store, out, frames):
    """Contact sheet of a frames store: RGB, depth and labels of a few frames plus the skybox faces."""
    from PIL import Image

    from panorooms3d.run.atomic import atomic_path
    from panorooms3d.run.lock import check_output_file

    store, out = Path(store), Path(out)
    if not store.exists():
        raise click.ClickException(f"{store}: no such frames store")
    check_output_file(out, suffixes=tuple(PICTURE_FORMATS))
    if not (store / "zarr.json").exists() or not (store / "rgb").exists():
        raise click.ClickException(f"{store}: not a frames store (no zarr group with an rgb array)")
    try:
        sheet = contact_sheet(store, frames)
    except (KeyError, ValueError, OSError) as exc:
        raise click.ClickException(f"{store}: cannot read the frames store ({exc})") from None
    with atomic_path(out, kind="file") as tmp:
        Image.fromarray(sheet).save(tmp, format=PICTURE_FORMATS[out.suffix.lower()])
    click.echo(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]})")


__all__ = ["render", "preview", "render_task", "contact_sheet", "settings_differences", "mismatched_rooms"]
