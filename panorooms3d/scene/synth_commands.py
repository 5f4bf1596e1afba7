"""``panorooms3d synth``: write synthetic houses in the 3D-FRONT layout (a thin wrapper of synthesize)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from panorooms3d.run.lock import locked_output


@click.command("synth")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output FRONT_ROOT folder (gets 3D-FRONT/, 3D-FUTURE-model/, 3D-FRONT-texture/).",
)
@click.option("--houses", default=3, show_default=True, type=click.IntRange(min=0), help="Number of houses.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed: same seed, same bytes.")
@click.option(
    "--rooms",
    "rooms",
    default="2-3",
    show_default=True,
    help="Rooms per house, 'N' or 'LO-HI' (1-3; one living room, the rest bedrooms).",
)
@click.option(
    "--with-faults",
    is_flag=True,
    help="Add deliberately broken items (missing model, truncated OBJ, "
    "unknown category, valid:false, duplicate instanceid, zero scale); listed in synth_report.json.",
)
@click.option("--force", is_flag=True, help="Write into a non-empty --out folder that is not a 3D-FRONT folder.")
@locked_output("out", "front", "synth")
def synth_command(out: Path, houses: int, seed: int, rooms: str, with_faults: bool, force: bool) -> None:
    """Generate synthetic 3D-FRONT-style houses (2-3 furnished rooms each) so every stage runs without the
    licensed dataset. Example: panorooms3d synth --out data/front_synth --houses 3 --seed 0

    A non-empty --out that is not a 3D-FRONT folder needs --force; one writer at a time per folder."""
    from tqdm import tqdm

    from panorooms3d.scene.synth import REPORT_NAME, synthesize

    try:
        parts = [int(p) for p in rooms.split("-")]
        lo, hi = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        if not 1 <= lo <= hi <= 3:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"expected N or LO-HI with 1 <= LO <= HI <= 3, got {rooms!r}",
                                 param_hint="--rooms") from None

    bar = tqdm(total=houses, unit="house", desc="synth", disable=houses == 0)

    def progress(res) -> None:
        bar.set_postfix_str(f"{res.uid}: {sum(res.rooms.values())} rooms, {sum(res.furniture.values())} items")
        bar.update(1)

    try:
        synthesize(out, houses, seed, with_faults=with_faults, rooms_per_house=(lo, hi), progress=progress)
    finally:
        bar.close()
    report = json.loads((out / REPORT_NAME).read_text())
    click.echo(f"Wrote {len(report['houses'])} houses (seed {seed}) to {out}")
    rooms_txt = ", ".join(f"{k} {v}" for k, v in report["rooms_by_type"].items()) or "none"
    click.echo(f"  rooms: {sum(report['rooms_by_type'].values())} ({rooms_txt})")
    fur = report["furniture_by_category"]
    click.echo(f"  furniture: {sum(fur.values())} items in {len(fur)} categories")
    for cat, n in sorted(fur.items(), key=lambda kv: (-kv[1], kv[0])):
        click.echo(f"    {n:4d}  {cat}")
    click.echo(f"  files written: {report['files_written']}")
    if with_faults:
        click.echo(f"  faults injected: {len(report['faults'])}")
        for f in report["faults"]:
            click.echo(f"    {f['kind']:22s} {f['house']}/{f['room']} {f['furniture_uid']} ({f['jid']})")
        for f in report.get("faults_dropped", []):
            click.echo(f"    {f['kind']:22s} {f['house']}: dropped ({f['reason']})")
    click.echo(f"  report: {out / REPORT_NAME}")
