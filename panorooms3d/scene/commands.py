"""CLI commands of the scene stage: ``scenes`` (list houses and rooms) and ``export`` (a room as PLY).

Thin wrappers over :mod:`panorooms3d.scene.front` and :mod:`panorooms3d.scene.export`; the
lead registers them in ``panorooms3d/cli.py``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import numpy as np

from panorooms3d.scene.export import export_room_ply
from panorooms3d.scene.front import (
    FrontError,
    HouseLoadError,
    load_houses,
    problem_kind,
    room_by_uid,
    summarise_room,
)
from panorooms3d.taxonomy import RAW_NAMES

_FRONT_OPTION = click.option(
    "--front",
    "front_root",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="FRONT_ROOT: the folder holding 3D-FRONT/, 3D-FUTURE-model/ and 3D-FRONT-texture/.",
)


@contextmanager
def _scene_warnings(show: bool) -> Iterator[None]:
    """Show (``show``) or silence the loader's per-item warnings (logger ``panorooms3d.scene``).

    Showing sets the logger's own level, so the lines come out even when the ``panorooms3d`` group
    configured the root logger at ERROR.
    """
    logger = logging.getLogger("panorooms3d.scene")
    old = logger.level
    logger.setLevel(logging.WARNING if show else logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


def _unknowns(counts: dict[str, int]) -> str:
    """Unknown category strings as written, with their counts: ``'Foo Bar' x2, 'Baz'``."""
    return ", ".join(f"{k!r}" + (f" x{v}" if v > 1 else "") for k, v in sorted(counts.items())) or "-"


def _table(rows: list[list[str]], header: list[str], right: set[int]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def _scan(
    front_root: Path, houses: tuple[str, ...], report: list[dict], rows: list[list[str]], totals: Counter, full: bool
) -> None:
    """Load the houses one by one (a house is dropped before the next is read) into report rows."""
    for item in load_houses(front_root, list(houses) or None, load_geometry=full):
        if isinstance(item, HouseLoadError):
            report.append({"house": item.house_uid, "error": str(item)})
            rows.append([item.house_uid, "-", "-", "", "", "", "", f"ERROR: {item}", ""])
            continue
        totals.update(item.counts)
        entry: dict = {
            "house": item.uid,
            "rooms": [],
            "counts": dict(item.counts),
            "problems": list(item.problems),
            "unknown_categories": dict(item.unknown_categories),
            "missing_textures": dict(item.missing_textures),
        }
        for room in item.rooms:
            s = summarise_room(item, room)
            entry["rooms"].append(
                {
                    "room": room.room_id,
                    "uid": s.uid,
                    "type": s.type,
                    "floor_area_m2": round(s.floor_area, 3),
                    "height_m": round(s.height, 3),
                    "size_m": [round(s.size[0], 3), round(s.size[1], 3)],
                    "furniture": s.furniture,
                    "problems": s.problems,
                    "unknown_categories": dict(room.unknown_categories),
                    "unlabelled_furniture": dict(room.unlabelled_furniture),
                }
            )
            rows.append(
                [item.uid, room.room_id, room.type or "-", f"{s.floor_area:.2f}", f"{s.height:.2f}",
                 f"{s.size[0]:.2f} x {s.size[1]:.2f}", str(s.furniture), _kinds(s.problems),
                 _unknowns(room.unknown_categories)]
            )  # fmt: skip
        house_only = Counter(problem_kind(p) for p in item.problems) - Counter(
            problem_kind(p) for r in item.rooms for p in r.problems
        )
        if not item.rooms or house_only:
            house_unknown = Counter(item.unknown_categories) - Counter(
                {k: v for r in item.rooms for k, v in r.unknown_categories.items()})
            rows.append([item.uid, "(house)", "-", "", "", "", "", _kinds(dict(house_only)) or "no rooms",
                         _unknowns(dict(house_unknown))])
        report.append(entry)


@click.command("scenes")
@_FRONT_OPTION
@click.option("--house", "houses", multiple=True, help="Only this house uid (repeatable). Default: all houses.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (houses, rooms, problems) instead of a table.")
@click.option("--full", is_flag=True, help="Also read every furniture OBJ (slower; finds bad_obj and missing_uv).")
@click.option("-v", "--verbose", is_flag=True, help="Also log every problem line (house, room, item) to stderr.")
def scenes_command(front_root: Path, houses: tuple[str, ...], as_json: bool, full: bool, verbose: bool) -> None:
    """List the houses and rooms of a 3D-FRONT folder, with the problems the loader found.

    Parses the house files only (furniture OBJs are not read unless --full). A bad house file
    is listed with its error and the run goes on. The problems column counts, per room, what the
    loader skipped or repaired (see docs/scenes.md); --verbose (or `panorooms3d -v scenes`) prints
    each one. The last column names each category string the taxonomy does not know (labelled
    others), with its count; --json carries them per room (unknown_categories,
    unlabelled_furniture). A --house that is not in FRONT_ROOT is an error.

    Example: panorooms3d scenes --front data/front
    """
    from panorooms3d.cli import verbose_requested
    from panorooms3d.scene.front import HOUSES_DIR

    missing = [h for h in houses if not (Path(front_root) / HOUSES_DIR / f"{h}.json").is_file()]
    if missing and Path(front_root).is_dir():
        known = sorted(p.stem for p in (Path(front_root) / HOUSES_DIR).glob("*.json"))
        shown = ", ".join(known[:10]) + (f" ... ({len(known)} in all)" if len(known) > 10 else "")
        raise click.ClickException(f"--house {', '.join(missing)}: no such house in {Path(front_root) / HOUSES_DIR}"
                                   f" (houses: {shown or 'none'}); run `panorooms3d scenes --front {front_root}` "
                                   "to list them")
    report: list[dict] = []
    rows: list[list[str]] = []
    totals: Counter = Counter()
    try:
        with _scene_warnings(verbose or verbose_requested()):
            _scan(front_root, houses, report, rows, totals, full)
    except FrontError as exc:
        raise click.ClickException(str(exc)) from None
    n_houses = len(report)
    n_bad = sum(1 for h in report if "error" in h)
    n_rooms = sum(len(h.get("rooms", [])) for h in report)
    n_unlabelled = sum(1 for h in report for r in h.get("rooms", []) if r["unlabelled_furniture"])
    n_textures = len({t for h in report for t in h.get("missing_textures", {})})
    if as_json:
        summary = {"houses": n_houses, "bad_houses": n_bad, "rooms": n_rooms, "problems": dict(totals),
                   "rooms_with_unlabelled_furniture": n_unlabelled, "missing_textures": n_textures}
        click.echo(json.dumps({"summary": summary, "houses": report}, indent=2))
        return
    header = ["house", "room", "type", "floor m2", "height m", "size m (x by y)", "furniture", "problems",
              "unknown categories"]
    click.echo(_table(rows, header, right={3, 4, 6}) + "\n")
    if n_textures:
        click.echo(f"{n_textures} texture file(s) named by the houses are missing: those items render in plain "
                   "colours (--json lists them)")
    if n_unlabelled:
        click.echo(f"{n_unlabelled} room(s) hold furniture of unknown categories (labelled others); "
                   "`build --skip-unlabelled-furniture` leaves them out, as the paper did")
    click.echo(f"{n_houses} houses ({n_bad} unreadable), {n_rooms} rooms; problems: {_kinds(dict(totals))}")


@click.command("export")
@_FRONT_OPTION
@click.option("--room", "room_uid", required=True, help="The room as HOUSE_UID/ROOM_INSTANCEID (see `scenes`).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="Output .ply file.")
@click.option("--class-set", default="paper30", show_default=True, type=click.Choice(["paper30", "raw99"]),
              help="Class set whose colours colour the vertices.")  # fmt: skip
def export_command(front_root: Path, room_uid: str, out: Path, class_set: str) -> None:
    """Export one room's labelled triangles (world frame, metres, Z up) as a binary PLY.

    Faces carry the raw 3D-FRONT label and the instance id; vertices are coloured by class.

    Example: panorooms3d export --front data/front --room HOUSE_UID/Bedroom-2741 --out bedroom.ply
    """
    try:
        house, room = room_by_uid(front_root, room_uid)
    except FrontError as exc:
        raise click.ClickException(str(exc)) from None
    if not room.meshes:
        raise click.ClickException(f"room {room.uid}: no meshes to export")
    try:
        export_room_ply(room, out, class_set=class_set)
    except OSError as exc:
        raise click.ClickException(f"{out}: cannot write: {exc.strerror or exc}") from None
    _, faces, label, _ = room.triangles()
    lo, hi = room.mesh_bounds()
    ids, counts = np.unique(label, return_counts=True)
    click.echo(
        f"wrote {out}: room {room.uid} ({room.type or 'no type'}), {len(faces)} faces, {len(room.meshes)} meshes"
    )
    click.echo("labels: " + ", ".join(f"{int(i)} {RAW_NAMES[int(i)]} ({int(c)})" for i, c in zip(ids, counts)))
    click.echo(
        f"bbox (m, world Z up): [{lo[0]:.3f}, {lo[1]:.3f}, {lo[2]:.3f}] .. [{hi[0]:.3f}, {hi[1]:.3f}, {hi[2]:.3f}]"
    )
    if room.problems:
        click.echo(f"problems in this room: {_kinds(dict(Counter(problem_kind(p) for p in room.problems)))}")
