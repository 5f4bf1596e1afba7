"""Output folders: checked before any work, one writer at a time, nothing left behind on failure.

:func:`output_folder` is what every writing command wraps its work in::

    with output_folder(out, kind="dataset", force=force, command="build"):
        ...

It

1. checks the path (:func:`check_output_dir`): not a file, its parent creatable, writable;
2. refuses a non-empty folder that is not a panorooms3d folder of the same ``kind`` unless
   ``force`` (:func:`check_folder_kind`), so user files are never mixed with outputs silently;
3. creates the folder and takes its lock (:class:`FolderLock`, the file ``.panorooms3d.lock``
   holding the writer's pid, host, command and start time). A second writer on the same folder is
   refused with the holder's pid, host and command. A lock whose process is gone (same host, pid not
   running, or running but started later than the lock) is stale: it is taken over with a message.
   The lock is taken by the process that runs the command (the Ray driver), never by workers;
4. on leaving, releases the lock; when the command failed, removes the folders it created if they
   are still empty (a command that fails before doing work leaves nothing behind).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from panorooms3d.run.atomic import TMP_MARK
from panorooms3d.run.errors import UserError

LOCK_NAME = ".panorooms3d.lock"

#: Entries that mark a folder as a panorooms3d folder of a kind (any one of them is enough).
KIND_MARKERS: dict[str, tuple[str, ...]] = {
    "front": ("3D-FRONT", "3D-FUTURE-model", "3D-FRONT-texture", "synth_report.json"),
    "work": ("*.zarr", "render_report.json"),
    # work/*.zarr: frames (or skybox) stores of `build` (`panoramas`) in their default OUT/work, as a build
    # interrupted before its first room was staged leaves them
    "dataset": ("manifest.json", "staging", "shards", "splits", "build_report.json", "fuse_report.json",
                "panoramas_report.json", "work/*.zarr"),
    "suite": ("suite_log.jsonl", "runs", "pretrain", "teacher", "table.md"),
    "run": ("config.json", "checkpoints", "model.pt", "teacher.pt", "best.pt", "final.pt", "cache"),
    "site": ("index.json",),
}

#: What each kind is, for messages.
KIND_NAMES = {"front": "a 3D-FRONT folder", "work": "a work folder of frames stores", "dataset": "a dataset folder",
              "suite": "a benchmark suite folder", "run": "a training run folder", "site": "a published site"}


class LockError(UserError):
    """The folder is being written by another process."""


class FolderError(UserError):
    """An output folder that cannot or should not be written."""


def _ignored(name: str) -> bool:
    return name == LOCK_NAME or (name.startswith(".") and TMP_MARK in name) or name in (".DS_Store",)


def visible_entries(folder: Path) -> list[str]:
    """Names in ``folder`` other than our lock and temporaries (``[]`` when it does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not _ignored(p.name))


def folder_is_kind(folder: Path, kind: str) -> bool:
    """True when ``folder`` holds at least one marker entry of ``kind`` (see :data:`KIND_MARKERS`)."""
    folder = Path(folder)
    for marker in KIND_MARKERS[kind]:
        if "*" in marker:
            if any(not p.name.startswith(".") for p in folder.glob(marker)):
                return True
        elif (folder / marker).exists():
            return True
    return False


def check_output_dir(path: Path, option: str = "--out") -> None:
    """Raise :class:`FolderError` unless ``path`` is a folder that exists or can be created, and is writable."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            what = "is a file" if path.is_file() else "is not a folder"
            raise FolderError(f"{option} {path}: exists and {what}, not a folder; choose a folder path")
        if not os.access(path, os.W_OK | os.X_OK):
            raise FolderError(f"{option} {path}: the folder is not writable (read-only); "
                              "fix its permissions or choose another folder")
        return
    parent = path.parent
    while not (parent.exists() or parent.is_symlink()) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise FolderError(f"{option} {path}: cannot create it, {parent} is a file, not a folder; "
                          "choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FolderError(f"{option} {path}: cannot create it, {parent} is not writable; "
                          "choose a folder you can write to")


def check_output_file(path: Path, option: str = "--out", suffixes: tuple[str, ...] = ()) -> None:
    """Raise :class:`FolderError` unless ``path`` can be written as a file (absent, or a file; parent ok)."""
    path = Path(path)
    if path.is_dir():
        raise FolderError(f"{option} {path}: is a folder; give a file name (e.g. {path / ('out' + (suffixes or ('',))[0])})")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise FolderError(f"{option} {path}: exists and is not a plain file; choose another path")
    if suffixes and path.suffix.lower() not in suffixes:
        raise FolderError(f"{option} {path}: unsupported file type {path.suffix or '(none)'}; "
                          f"use one of {', '.join(suffixes)}")
    if path.exists() and not os.access(path, os.W_OK):
        raise FolderError(f"{option} {path}: the file is read-only; choose another path")
    if path.parent != path:
        check_output_dir(path.parent, option=f"{option} {path}: its folder")


def check_folder_kind(path: Path, kind: str, force: bool, option: str = "--out") -> None:
    """Refuse a non-empty ``path`` that is not a panorooms3d folder of ``kind`` unless ``force``."""
    entries = visible_entries(path)
    if not entries or force or folder_is_kind(path, kind):
        return
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise FolderError(f"{option} {path}: the folder is not empty ({shown}) and is not {KIND_NAMES[kind]}; "
                      "choose an empty or new folder, or pass --force to write into it anyway")


def _proc_start(pid: int) -> float | None:
    """Start time of a process as seconds since the epoch (Linux /proc), or None when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def _alive(pid: int, since: float | None) -> bool:
    """Whether ``pid`` runs on this host and is the process that took a lock at ``since``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = _proc_start(pid)
    if start is not None and since is not None and start > since + 2.0:
        return False  # the pid was reused by a later process
    return True


class FolderLock:
    """The lock of one folder; :meth:`acquire` it, :meth:`release` it (also a context manager)."""

    def __init__(self, folder: Path, command: str = "") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.held = False
        self.took_over: dict | None = None

    def holder(self) -> dict | None:
        """The lock file's content, or None when there is no lock (or it is unreadable)."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def acquire(self, on_stale: Callable[[str], None] | None = None) -> FolderLock:
        """Take the lock; raise :class:`LockError` when a live process holds it.

        A stale lock (its process is gone) is replaced, and ``on_stale`` gets a message saying so.
        """
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "started": time.time(), "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        tmp = self.folder / f".{LOCK_NAME}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(info))
        try:
            for _ in range(3):
                try:
                    os.link(tmp, self.path)  # atomic: fails when a lock exists, and never shows a half file
                except FileExistsError:
                    pass
                except FileNotFoundError:  # our temporary was swept as a stale one by another writer
                    tmp.write_text(json.dumps(info))
                    continue
                else:
                    self.held = True
                    return self
                held = self.holder()
                if held is None:  # vanished or unreadable: look again
                    if self.path.exists() and time.time() - self.path.stat().st_mtime > 10:
                        self.path.unlink(missing_ok=True)
                    time.sleep(0.2)
                    continue
                same_host = held.get("host") == info["host"]
                pid = int(held.get("pid", 0) or 0)
                if same_host and not _alive(pid, held.get("started")):
                    self.path.unlink(missing_ok=True)
                    self.took_over = held
                    if on_stale:
                        on_stale(f"{self.folder}: taking over a stale lock of pid {pid} "
                                 f"(`{held.get('command', '?')}`, since {held.get('started_utc', '?')}): "
                                 "that process is gone")
                    continue
                where = "this host" if same_host else f"host {held.get('host', '?')}"
                raise LockError(
                    f"{self.folder} is in use by pid {pid} on {where} (`{held.get('command', '?')}`, since "
                    f"{held.get('started_utc', '?')}); wait until it ends, or use another folder. If that process "
                    f"is gone, delete {self.path}")
            raise LockError(f"{self.folder}: could not take the lock {self.path}; try again")
        finally:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock file if this process holds it."""
        if not self.held:
            return
        held = self.holder()
        if held is not None and held.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _missing_parents(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    out = []
    p = Path(path)
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        out.append(p)
        p = p.parent
    return out


@contextmanager
def output_folder(path: Path, kind: str, *, force: bool = False, command: str = "", option: str = "--out",
                  lock: bool = True, on_message: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Check, create and lock an output folder for the duration of a command (see the module docstring).

    Yields the folder. On an exception the lock is released and the folders this call created are
    removed again when they hold nothing but the lock.
    """
    path = Path(path)
    check_output_dir(path, option)
    check_folder_kind(path, kind, force, option)
    created = _missing_parents(path)
    fl = None
    try:
        path.mkdir(parents=True, exist_ok=True)
        if lock:
            fl = FolderLock(path, command).acquire(on_stale=on_message)
        yield path
    except BaseException:
        if fl is not None:
            fl.release()
            fl = None
        for d in created:  # deepest first; stop at the first that holds something
            try:
                if visible_entries(d) or any(d.iterdir()):
                    break
                d.rmdir()
            except OSError:
                break
        raise
    finally:
        if fl is not None:
            fl.release()


def locked_output(param: str = "out", kind: str = "dataset", command: str = "", option: str = "--out",
                  force_param: str = "force"):
    """Decorator of a command callback: run it inside :func:`output_folder` of its ``param`` argument.

    The folder is checked, created and locked before the callback runs, released after it, and
    removed again when the callback fails and the folder is still empty. ``force_param`` names the
    callback's ``--force`` flag. Under ``torchrun`` only rank 0 takes the lock.
    """
    import functools
    import sys

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            path = kwargs.get(param)
            if path is None or os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 holds the lock
                return fn(*args, **kwargs)
            with output_folder(Path(path), kind, force=bool(kwargs.get(force_param, False)), command=command,
                               option=option, on_message=lambda m: print(m, file=sys.stderr)):
                return fn(*args, **kwargs)

        return wrapper

    return deco
