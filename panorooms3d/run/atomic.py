"""Atomic outputs: write to a temporary sibling, rename into place only when complete.

The writer never deletes what it did not create: a target that is a directory is only replaced
by a directory (a store written earlier by the same kind of writer), a target that is a file only
by a file, and a target that is neither (a link, a device, a pipe) is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from panorooms3d.run.errors import UserError

TMP_MARK = ".tmp-"


class OutputPathError(UserError):
    """An output path that cannot be written as asked (a folder where a file goes, a link, ...)."""


def temp_sibling(path: Path) -> Path:
    """A unique temporary path next to ``path`` (same file system, so rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _kind(path: Path) -> str | None:
    """``"file"``, ``"dir"``, ``"other"`` (a link, device, pipe, socket) or None when absent (no link followed)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "other"


def check_target(path: Path, kind: str | None = None) -> None:
    """Raise :class:`OutputPathError` when ``path`` exists and may not be replaced by a ``kind`` output.

    ``kind`` is ``"file"``, ``"dir"`` or None (either: only links and special files are refused).
    """
    path = Path(path)
    have = _kind(path)
    if have is None:
        return
    what = {"file": "a file", "dir": "a folder", "other": "a link or special file"}[have]
    if have == "other" or (kind is not None and have != kind):
        want = {"file": "a file", "dir": "a folder", None: "an output"}[kind]
        raise OutputPathError(f"{path}: is {what}, refusing to replace it with {want}; "
                              "choose another path or move it away")


@contextmanager
def atomic_path(path: Path, kind: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` (a file or a directory) into.

    On success the temporary is renamed onto ``path``; on any exception it is removed and ``path``
    is left as it was. So an existing ``path`` is complete.

    An existing ``path`` is replaced only by an output of the same kind (file by file, folder by
    folder); a link or special file is never replaced. ``kind`` (``"file"`` or ``"dir"``) checks
    this before any work; otherwise it is checked when the temporary is complete. A refused
    target raises :class:`OutputPathError` and is left untouched.
    """
    path = Path(path)
    check_target(path, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        made = _kind(tmp)
        if made is None:
            raise OutputPathError(f"{path}: the writer produced nothing")
        have = _kind(path)
        if have is not None:
            check_target(path, made)
            old = temp_sibling(path)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (:func:`atomic_path` creates its folder)."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(obj, indent=1) + "\n")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink(missing_ok=True)


def clean_stale_temporaries(folder: Path) -> int:
    """Remove temporaries left by killed writers in ``folder``; returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    for p in folder.iterdir():
        if p.name.startswith(".") and TMP_MARK in p.name:
            _remove(p)
            n += 1
    return n
