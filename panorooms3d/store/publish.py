"""Publish a packed dataset as a static site that any HTTP server or object store can serve.

Layout of a published site (docs/download.md has the details)::

    SITE/
        index.json                      what ``download`` reads first: the manifest and, per shard,
                                        every file with its relative path, size (bytes) and sha256
        manifest.json                   a copy of the dataset's manifest (so SITE is itself a dataset)
        splits/{train,val,test}.txt
        shards/shard-00000.zarr/...     the shard stores, file for file (hard links when possible)

The site is built in a temporary sibling folder and renamed into place when complete, so a site
that exists is complete. ``index.json`` holds no timestamp: publishing the same dataset twice gives
the same index, and a site whose index and files already match is left untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from panorooms3d.run.atomic import TMP_MARK, atomic_path
from panorooms3d.store.dataset import MANIFEST, SPLITS, Dataset, DatasetError, iter_files

SITE_FORMAT = "panorooms3d-site"
SITE_FORMAT_VERSION = 1
INDEX = "index.json"
_HASH_BLOCK = 1 << 20  # bytes read at a time when hashing a file


def file_sha256(path: Path) -> tuple[str, int]:
    """sha256 (hex) and size in bytes of the file at ``path``, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def _file_entry(rel: str, path: Path) -> dict:
    sha, size = file_sha256(path)
    return {"path": rel, "size": size, "sha256": sha}


def build_index(dataset_dir: Path) -> dict:
    """The site index of the packed dataset at ``dataset_dir`` (no verification, no writing).

    Returns ``{"format": "panorooms3d-site", "format_version": 1, "manifest": <manifest.json content>,
    "files": [manifest.json and splits/*.txt entries], "shards": [{"file", "sha256", "size_bytes",
    "rooms", "files": [{"path", "size", "sha256"}, ...]}], "total_bytes"}``. File paths are
    relative to the shard folder in the canonical order of :func:`iter_files`; sizes are bytes.
    """
    dataset_dir = Path(dataset_dir)
    manifest = json.loads((dataset_dir / MANIFEST).read_text())
    shards = []
    total = 0
    for shard in manifest["shards"]:
        files = [_file_entry(rel, p) for rel, p in iter_files(dataset_dir / shard["file"])]
        total += sum(f["size"] for f in files)
        shards.append({"file": shard["file"], "sha256": shard["sha256"], "size_bytes": shard["size_bytes"],
                       "rooms": list(shard["rooms"]), "files": files})
    top = [_file_entry(MANIFEST, dataset_dir / MANIFEST)]
    for name in SPLITS:
        p = dataset_dir / "splits" / f"{name}.txt"
        if p.is_file():
            top.append(_file_entry(f"splits/{name}.txt", p))
    return {"format": SITE_FORMAT, "format_version": SITE_FORMAT_VERSION, "manifest": manifest,
            "files": top, "shards": shards, "total_bytes": total + sum(f["size"] for f in top)}


def _index_text(index: dict) -> str:
    return json.dumps(index, indent=1) + "\n"


def _place(src: Path, dst: Path, counts: dict[str, int]) -> None:
    """Hard-link ``src`` to ``dst`` (same file system), else copy it; counts what was done."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        counts["linked"] += 1
    except OSError:
        shutil.copy2(src, dst)
        counts["copied"] += 1


def _site_matches(site: Path, text: str, index: dict) -> bool:
    """Whether ``site`` already holds exactly this index and files of the listed sizes."""
    try:
        if (site / INDEX).read_text() != text:
            return False
        for f in index["files"]:
            if (site / f["path"]).stat().st_size != f["size"]:
                return False
        for shard in index["shards"]:
            for f in shard["files"]:
                if (site / shard["file"] / f["path"]).stat().st_size != f["size"]:
                    return False
    except OSError:
        return False
    return True


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def publish_dataset(dataset_dir: Path, site_dir: Path) -> dict:
    """Write a static site for the packed dataset at ``dataset_dir`` into ``site_dir``.

    The dataset is verified first (:meth:`Dataset.verify`: sha256 of every shard, crc32c of every
    chunk); a dataset with problems is refused. The site (``index.json``, ``manifest.json``,
    ``splits/*.txt``, the listed shard stores) is written into a temporary sibling and renamed onto
    ``site_dir`` when complete (replacing an earlier site). Shard files are hard-linked when the site
    is on the same file system as the dataset, else copied; replace a published file (write a new
    file and rename it) rather than edit it in place, which would change the dataset's copy too.
    Idempotent: when ``site_dir`` already holds the same index and files, nothing is written.

    Args:
        dataset_dir: a packed dataset (``manifest.json``, ``shards/``, ``splits/``).
        site_dir: the folder to serve; it must be absent, empty or an earlier site (has ``index.json``).

    Returns the index (see :func:`build_index`) with, not written to the site, either
    ``"unchanged": True`` (the site was already up to date) or ``"placed": {"linked": n, "copied": m}``
    (how many shard files were hard-linked or copied).

    Raises DatasetError naming every problem of the dataset, or why ``site_dir`` cannot be used.
    """
    dataset_dir = Path(dataset_dir).resolve()
    site_dir = Path(site_dir).resolve()
    if _inside(site_dir, dataset_dir) or _inside(dataset_dir, site_dir):
        raise DatasetError(f"the site {site_dir} and the dataset {dataset_dir} must not contain each other")
    if site_dir.exists():
        if not site_dir.is_dir():
            raise DatasetError(f"{site_dir} exists and is not a folder")
        if any(site_dir.iterdir()) and not (site_dir / INDEX).is_file():
            raise DatasetError(f"{site_dir} is not empty and holds no {INDEX}: it is not an earlier site; "
                               "choose an empty or new folder")
    problems = Dataset(dataset_dir).verify()
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DatasetError(f"refusing to publish {dataset_dir}: {len(problems)} problem(s):\n  {shown}{more}\n"
                           "re-pack the dataset (panorooms3d pack) and check it with `panorooms3d info --verify`")
    index = build_index(dataset_dir)
    text = _index_text(index)
    if _site_matches(site_dir, text, index):
        return index | {"unchanged": True}
    site_dir.parent.mkdir(parents=True, exist_ok=True)
    for p in site_dir.parent.iterdir():  # temporaries of killed publishes of this site
        if p.name.startswith(f".{site_dir.name}{TMP_MARK}"):
            shutil.rmtree(p, ignore_errors=True)
    counts = {"linked": 0, "copied": 0}
    with atomic_path(site_dir) as tmp:
        tmp.mkdir()
        for f in index["files"]:
            (tmp / f["path"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(dataset_dir / f["path"], tmp / f["path"])  # small; never linked
        for shard in index["shards"]:
            for f in shard["files"]:
                _place(dataset_dir / shard["file"] / f["path"], tmp / shard["file"] / f["path"], counts)
        (tmp / INDEX).write_text(text)
    return index | {"placed": counts}
