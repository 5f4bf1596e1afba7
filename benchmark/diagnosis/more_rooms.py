"""A dataset with more labelled training rooms and the same validation and test rooms.

    .venv/bin/python benchmark/diagnosis/more_rooms.py out/cpu-track/data out/more/data --out out/more/merged

Is the 3D Segmenter held back by the steps it gets or by the rooms it learns from? This makes the
data for the second question. ``BASE`` is a built dataset (``panorooms3d build``, which keeps its
``staging/`` rooms), ``EXTRA`` one or more built datasets of other houses. The new dataset holds
every staged room of all of them, packed again with explicit splits: the base's train, val and test
rooms keep their split, and every room of the extra datasets joins ``train``. So a run on the new
dataset is scored on exactly the rooms a run on the base is scored on.

The staged room folders are hard-linked (copied where the file system cannot link), never moved:
the inputs stay as they are. The new dataset is packed by the project's own ``pack`` (checksummed
shards, manifest last), so an interrupted call leaves no dataset that looks complete; run it again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` under ``dst`` (copy where linking fails)."""
    for root, _dirs, files in os.walk(src):
        target = dst / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            if (target / name).exists():
                continue
            try:
                os.link(Path(root) / name, target / name)
            except OSError:
                shutil.copy2(Path(root) / name, target / name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="See the module docstring for what is kept and what is added.")
    ap.add_argument("base", type=Path, help="a built dataset whose splits are kept (e.g. out/cpu-track/data)")
    ap.add_argument("extra", type=Path, nargs="+", help="built datasets whose rooms all join the train split")
    ap.add_argument("--out", type=Path, required=True, help="the new dataset folder (must not hold a dataset)")
    ap.add_argument("--rooms-per-shard", type=int, default=8)
    a = ap.parse_args(argv)

    from panorooms3d.store.dataset import Dataset, DatasetError, pack_dataset, room_key, staged_rooms

    if (a.out / "manifest.json").exists():
        print(f"error: {a.out} already holds a dataset (manifest.json); choose another --out", file=sys.stderr)
        return 2
    try:
        base = Dataset(a.base)
        splits = {name: list(base.split(name)) for name in ("train", "val", "test")}
    except DatasetError as exc:
        print(f"error: {a.base}: {exc}", file=sys.stderr)
        return 2
    base_train = len(splits["train"])
    listed = {u for members in splits.values() for u in members}
    missing = sorted(listed - set(staged_rooms(a.base)[0]))
    if missing:
        print(f"error: {a.base}: {len(missing)} room(s) of its splits are not staged, e.g. {missing[:3]} "
              "(use a dataset built here: `panorooms3d build` keeps staging/)", file=sys.stderr)
        return 2
    sources = [(a.base, sorted(listed))]  # (dataset folder, its rooms to take)
    for folder in a.extra:
        uids = staged_rooms(folder)[0]
        if not uids:
            print(f"error: {folder}: no staged rooms under {folder / 'staging'} (build it with `panorooms3d build`)",
                  file=sys.stderr)
            return 2
        clash = sorted(listed.intersection(uids))
        if clash:
            print(f"error: {folder}: rooms already in another input, e.g. {clash[:3]}", file=sys.stderr)
            return 2
        splits["train"] += uids
        listed.update(uids)
        sources.append((folder, uids))
    for folder, uids in sources:
        for uid in uids:
            link_tree(folder / "staging" / room_key(uid), a.out / "staging" / room_key(uid))
    manifest = pack_dataset(a.out, rooms_per_shard=a.rooms_per_shard, splits=splits)
    counts = {name: len(members) for name, members in splits.items()}
    print(f"{a.out}: {len(manifest['rooms'])} rooms; train {counts['train']} "
          f"({counts['train'] - base_train} added), val {counts['val']}, test {counts['test']} "
          f"(as in {a.base})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
