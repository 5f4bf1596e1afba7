"""The ``panorooms3d`` command line: one thin command per stage, no logic of its own.

Commands are loaded lazily (``--help`` must not import bpy, torch or Open3D), from the table
below: name -> (module, attribute, one-line summary).
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
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
    "plan": ("panorooms3d.run.plan", "plan_command", "Estimate a build before rendering: rooms, frames, CPU/GPU-hours, disk."),
    "panoramas": ("panorooms3d.run.panoramas", "panoramas_command", "Panorama-only build: skybox render + panorama per room, no volume (teacher data)."),
    # get and inspect the data
    "publish": ("panorooms3d.store.transfer_commands", "publish_command", "Verify a dataset and write it as a static site (index.json with every file's sha256)."),
    "download": ("panorooms3d.store.transfer_commands", "download_command", "Download a published dataset (all, --split, --room): checksummed, resumable, parallel."),
    "info": ("panorooms3d.store.commands", "info", "Rooms, sizes and class histogram of a dataset; --verify checks checksums."),
    "view": ("panorooms3d.store.commands", "view", "A room of a dataset as a marching-cubes mesh (.ply) or volume slices (.png)."),
    "import-official": ("panorooms3d.store.commands", "import_official_command", "Convert the official PanoRooms3D release (.npz rooms, ADE panoramas)."),
    # use the data
    "models": ("panorooms3d.nn.commands", "models", "List the models with parameter counts vs the paper; `models profile` times one."),
    "benchmark": ("panorooms3d.bench.commands", "benchmark", "Train, distil, evaluate and run the paper's experiment suites (tables 1, 3, 4)."),
    # the machine
    "doctor": ("panorooms3d.doctor", "doctor", "Check versions, devices, system libraries, disk, memory; --gpu: every GPU path, timed."),
}


#: Set by ``panorooms3d -v``; commands and their worker processes read it (:func:`verbose_requested`).
VERBOSE_ENV = "PANOROOMS3D_VERBOSE"
#: Set to 1 to see the traceback of an expected error too (for bug reports).
TRACEBACK_ENV = "PANOROOMS3D_TRACEBACK"

#: Library errors that are user mistakes, by module (checked only when that module is loaded).
USER_ERRORS = (
    ("panorooms3d.run.errors", "UserError"),
    ("panorooms3d.scene.front", "FrontError"),
    ("panorooms3d.store.dataset", "DatasetError"),
    ("panorooms3d.bench.suite", "SuiteError"),
    ("panorooms3d.store.download", "DownloadError"),
)

_ADVICE = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.ENOSPC: "the disk is full; free some space or choose another disk",
    errno.EDQUOT: "the disk quota is used up; free some space or choose another disk",
    errno.ENOENT: "check the path",
    errno.EEXIST: "it exists already; choose another path",
    errno.EISDIR: "it is a folder; give a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def verbose_requested() -> bool:
    """True when ``panorooms3d -v`` was given (also inside worker processes, via the environment)."""
    return os.environ.get(VERBOSE_ENV, "") == "1"


def os_error_message(exc: OSError) -> str:
    """``PATH: what went wrong; what to do`` for an OSError raised on a user's path."""
    what = exc.strerror or str(exc) or type(exc).__name__
    advice = _ADVICE.get(exc.errno or 0, "check the path and try again")
    paths = [str(p) for p in (exc.filename, exc.filename2) if p not in (None, "")]
    return f"{' -> '.join(paths)}: {what}; {advice}" if paths else f"{what}; {advice}"


def _cuda_missing(exc: BaseException) -> bool:
    msg = str(exc)
    return isinstance(exc, AssertionError | RuntimeError) and "CUDA" in msg.upper() and any(
        s in msg for s in ("not compiled with CUDA", "no NVIDIA driver", "no CUDA GPUs", "CUDA driver", "CUDA is not available"))


def user_error_message(exc: BaseException) -> str | None:
    """The ``Error:`` message of an expected error, or None for anything else (a bug: keep its traceback)."""
    for module, name in USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            if isinstance(exc, KeyError) and exc.args:
                return str(exc.args[0])
            return str(exc)
    if isinstance(exc, OSError):
        return os_error_message(exc)
    if _cuda_missing(exc):
        return (f"CUDA was asked for but is not usable here ({str(exc).strip().splitlines()[0]}); "
                "use --device cpu (or auto)")
    return None


def _progress_only_on_terminals() -> None:
    """Progress bars only where they can redraw: on a terminal; none in a log file or a pipe.

    tqdm writes a carriage return and cursor codes on every refresh, which fill a log file. The
    one place that decides: every tqdm bar whose stream is not a terminal is disabled (the commands
    print their summary lines either way).
    """
    from tqdm import std

    if getattr(std.tqdm, "_panorooms3d_tty_only", False):
        return
    original = std.tqdm.__init__

    def __init__(self, *args, **kwargs):
        stream = kwargs.get("file") or sys.stderr
        isatty = getattr(stream, "isatty", None)
        if not (callable(isatty) and isatty()):
            kwargs["disable"] = True
        original(self, *args, **kwargs)

    std.tqdm.__init__ = __init__
    std.tqdm._panorooms3d_tty_only = True


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command runs.

    It is also the one place where expected errors of any command (a user's path that cannot be
    written, a folder in use, a bad checkpoint, CUDA missing) become ``Error: ...`` with exit
    code 1 instead of a traceback (:func:`user_error_message`); other exceptions are bugs and keep
    their traceback.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            message = user_error_message(exc)
            if message is None or os.environ.get(TRACEBACK_ENV) == "1":
                raise
            raise click.ClickException(message) from None

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
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)
    _progress_only_on_terminals()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="panorooms3d")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
