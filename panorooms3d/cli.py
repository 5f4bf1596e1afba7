"""The ``panorooms3d`` command line: one thin command per stage, no logic of its own.

Commands are loaded lazily (``--help`` must not import bpy, torch or Open3D), from the table
below: name -> (module, attribute, one-line summary).
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from panorooms3d import __version__

COMMANDS: dict[str, tuple[str, str, str]] = {
    # scenes
    "synth": ("panorooms3d.scene.synth_commands", "synth_command", "Write synthetic houses in the exact 3D-FRONT layout (no licence needed)."),
    "scenes": ("panorooms3d.scene.commands", "scenes_command", "List the houses and rooms of a 3D-FRONT folder, with problems found."),
    "export": ("panorooms3d.scene.commands", "export_command", "Write one room's labelled triangle mesh (world frame, Z up) as PLY."),
    # make the data
    "render": ("panorooms3d.render.commands", "render", "Render RGB-D, label and instance frames plus the 6-face skybox per room (Blender)."),
    "preview": ("panorooms3d.render.commands", "preview", "A contact sheet of a room's frames: rgb, depth, labels, skybox."),
    "fuse": ("panorooms3d.fusion.commands", "fuse", "Fuse rendered frames into TSDF + colour + raw-label volumes (--report: fidelity)."),
    "panorama": ("panorooms3d.panorama.commands", "panorama", "Turn each room's skybox into 512x1024 equirect RGB/label/depth panoramas."),
    "pack": ("panorooms3d.store.commands", "pack", "Pack staged rooms into checksummed zarr shards + manifest + splits."),
    "build": ("panorooms3d.run.commands", "build", "Render, fuse and make panoramas for every room, then pack: resumable."),
    # get and inspect the data
    "publish": ("panorooms3d.store.transfer_commands", "publish_command", "Verify a dataset and write it as a static site (index.json with every file's sha256)."),
    "download": ("panorooms3d.store.transfer_commands", "download_command", "Download a published dataset (all, --split, --room): checksummed, resumable, parallel."),
    "info": ("panorooms3d.store.commands", "info", "Rooms, sizes and class histogram of a dataset; --verify checks checksums."),
    "view": ("panorooms3d.store.commands", "view", "A room of a dataset as a marching-cubes mesh (.ply) or volume slices (.png)."),
    "import-official": ("panorooms3d.store.commands", "import_official_command", "Convert the official PanoRooms3D release (.npz rooms, ADE panoramas)."),
    # use the data
    "models": ("panorooms3d.nn.commands", "models", "List the models with parameter counts vs the paper; `models profile` times one."),
    "benchmark": ("panorooms3d.bench.commands", "benchmark", "Train, distil, evaluate and run the paper's experiment suites (tables 1, 3, 4)."),
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, summary) for name, (_, _, summary) in COMMANDS.items()]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="panorooms3d")
@click.option("-v", "--verbose", is_flag=True, help="Log details (warnings of the loaders, settings).")
def cli(verbose: bool) -> None:
    """Make, ship and benchmark PanoRooms3D-style data for 3D semantic segmentation.

    \b
    Typical flow (each step resumable, one room = one task):
      panorooms3d synth  --out front --houses 2 --seed 0      # or a real 3D-FRONT folder
      panorooms3d render --front front --out work             # Blender frames + skybox
      panorooms3d fuse   --work work --out data               # TSDF + colour + labels
      panorooms3d panorama --work work --out data             # 512 x 1024 equirect
      panorooms3d info data --verify
    or all at once: panorooms3d build --front front --out data
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="panorooms3d")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
