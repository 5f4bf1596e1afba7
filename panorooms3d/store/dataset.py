"""The dataset store: per-room staging, packing into checksummed zarr v3 shards, and reading.

Layout of a dataset folder (docs/dataset.md has the full schema)::

    DATASET/
        manifest.json                   written LAST and atomically; the dataset's source of truth
        splits/{train,val,test}.txt     one room uid per line (also in the manifest per room)
        shards/shard-00000.zarr/        zarr v3 group, up to ``rooms_per_shard`` rooms, one writer
            <room key>/{tsdf, weight, rgb, label, instance}      attrs: origin, voxel_size, ...
            <room key>/pano/{rgb, label, instance, depth}       attrs: camera
        staging/<room key>/{volume.zarr, pano.zarr}   per-room outputs of fuse / panorama (kept)

Volume arrays are stored in their in-memory dtypes (tsdf and weight float32, so a round trip is
exact), indexed [x, y, z], in 64^3 chunks (rgb 64^3 x 3) inside the zarr sharding codec (128^3 per
shard file), each chunk compressed with zstd and followed by a crc32c checksum (the shard index
carries its own crc32c). Chunks equal to the fill value (tsdf 1, weight 0, ...) are not written.

Staging is kept after packing: re-packing (after adding rooms) is then trivial and deterministic;
delete ``staging/`` by hand to save space once the dataset is final.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from panorooms3d.run.atomic import atomic_path, clean_stale_temporaries, temp_sibling
from panorooms3d.taxonomy import CLASS_SETS, NUM_RAW, RAW_NAMES, get_class_set
from panorooms3d.volume import Panorama, RoomVolume

FORMAT = "panorooms3d-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
#: Inner chunk edge (voxels) and zarr shard-file edge of the volume arrays.
CHUNK = 64
SHARD = 128
PANO_CHUNK = (256, 256)
ZSTD_LEVEL = 3
def crop_slices(shape, start, size) -> tuple[tuple[slice, ...] | None, tuple[slice, ...] | None, bool]:
    """Where the box [start, start + size) of a grid of ``shape`` overlaps it: (the overlap's slices in the grid,
    the same voxels' slices in the box, whether the box lies wholly inside); both slices None when the box
    misses the grid. The box's voxels outside the grid are padding (``read_crop``'s fill)."""
    shape = np.asarray(shape, np.int64).reshape(3)
    start = np.asarray(start, np.int64).reshape(3)
    size = np.asarray(size, np.int64).reshape(3)
    lo, hi = np.clip(start, 0, shape), np.clip(start + size, 0, shape)
    inside = bool(np.array_equal(lo, start) and np.array_equal(hi, start + size))
    if not np.all(hi > lo):
        return None, None, inside
    src = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    dst = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start))
    return src, dst, inside


VOLUME_ARRAYS: dict[str, tuple[type, float]] = {
    "tsdf": (np.float32, 1.0),
    "weight": (np.float32, 0.0),
    "rgb": (np.uint8, 0),
    "label": (np.uint8, 0),
    "instance": (np.uint16, 0),
}
PANO_ARRAYS: dict[str, type] = {"rgb": np.uint8, "label": np.uint8, "instance": np.uint16, "depth": np.float32}


class DatasetError(RuntimeError):
    """A dataset, shard or room cannot be read or written; the message names the file and room."""


def _tool_version() -> str:
    try:
        from panorooms3d import __version__

        return str(__version__)
    except Exception:  # pragma: no cover - version is always there in a real install
        return "unknown"


# ----------------------------------------------------------------------------------------------
# room keys and staging


_UID_RE = re.compile(r"^[A-Za-z0-9._\-]+(/[A-Za-z0-9._\-]+)?$")


def room_key(room_uid: str) -> str:
    """File-system key of a room uid: ``"HOUSE/ROOM"`` -> ``"HOUSE__ROOM"``.

    Raises ValueError for an empty uid, one with ``__``, more than one ``/`` or characters other
    than letters, digits, ``.``, ``_`` and ``-`` (so keys map back to uids one to one).
    """
    if not isinstance(room_uid, str) or not _UID_RE.match(room_uid) or "__" in room_uid or room_uid.startswith("."):
        raise ValueError(f"bad room uid {room_uid!r}: expected HOUSE/ROOM of letters, digits, '.', '_', '-'")
    return room_uid.replace("/", "__")


def room_uid_from_key(key: str) -> str:
    """Inverse of :func:`room_key`."""
    return key.replace("__", "/", 1)


def _staging_dir(dataset_dir: Path, room_uid: str) -> Path:
    return Path(dataset_dir) / "staging" / room_key(room_uid)


def room_volume_path(dataset_dir: Path, room_uid: str) -> Path:
    """Path of a room's staged volume store: ``dataset_dir/staging/<key>/volume.zarr``."""
    return _staging_dir(dataset_dir, room_uid) / "volume.zarr"


def room_panorama_path(dataset_dir: Path, room_uid: str) -> Path:
    """Path of a room's staged panorama store: ``dataset_dir/staging/<key>/pano.zarr``."""
    return _staging_dir(dataset_dir, room_uid) / "pano.zarr"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_volume(volume: RoomVolume) -> None:
    """Raise ValueError naming the room when ``volume`` is empty or has wrong dtypes/ranges."""
    uid = volume.room_uid or "?"
    if min(volume.shape) <= 0:
        raise ValueError(f"room {uid}: empty room volume (shape {volume.shape})")
    if not np.any(np.asarray(volume.weight) > 0):
        raise ValueError(f"room {uid}: empty room volume (no observed voxel: weight is 0 everywhere)")
    if not np.all(np.isfinite(volume.tsdf)):
        raise ValueError(f"room {uid}: tsdf holds NaN or infinite values")
    if not volume.voxel_size > 0:
        raise ValueError(f"room {uid}: voxel_size must be positive, got {volume.voxel_size}")


def _volume_attrs(volume: RoomVolume) -> dict:
    return {
        "room_uid": volume.room_uid,
        "origin": [float(c) for c in volume.origin],
        "voxel_size": float(volume.voxel_size),
        "truncation": float(volume.truncation),
        "attrs": _jsonable(volume.attrs),
    }


def write_room_volume(dataset_dir: Path, volume: RoomVolume) -> Path:
    """Stage a fused room: atomic write of ``dataset_dir/staging/<key>/volume.zarr`` (zarr v3).

    Args:
        dataset_dir: the dataset folder (created if needed).
        volume: the room; ``volume.room_uid`` names it. Arrays are stored in their documented
            dtypes (tsdf/weight float32, rgb/label uint8, instance uint16), indexed [x, y, z].

    Returns the store's path. Raises ValueError naming the room for an empty volume.
    """
    check_volume(volume)
    path = room_volume_path(dataset_dir, volume.room_uid)
    with atomic_path(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        for name, (dtype, _) in VOLUME_ARRAYS.items():
            root.create_array(name, data=np.ascontiguousarray(getattr(volume, name), dtype=dtype))
        root.attrs.update(_volume_attrs(volume) | {"format": "panorooms3d-staged-volume"})
    return path


def _read_volume_group(group, where: str) -> RoomVolume:
    attrs = dict(group.attrs)
    arrays = {name: np.asarray(group[name][...]) for name in VOLUME_ARRAYS}
    return RoomVolume(
        origin=np.asarray(attrs["origin"], np.float64),
        voxel_size=float(attrs["voxel_size"]),
        truncation=float(attrs.get("truncation", 3.0)),
        room_uid=str(attrs.get("room_uid", "")),
        attrs=dict(attrs.get("attrs", {})),
        **arrays,
    )


def read_room_volume(dataset_dir: Path, room_uid: str) -> RoomVolume:
    """Read a staged room volume (see :func:`write_room_volume`). Raises DatasetError naming it."""
    path = room_volume_path(dataset_dir, room_uid)
    if not path.exists():
        raise DatasetError(f"room {room_uid}: no staged volume at {path}")
    try:
        return _read_volume_group(zarr.open_group(str(path), mode="r"), str(path))
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"room {room_uid}: cannot read staged volume {path}: {exc}") from exc


def write_room_panorama(dataset_dir: Path, room_uid: str, pano: Panorama, attrs: dict | None = None) -> Path:
    """Stage a room's panorama: atomic write of ``dataset_dir/staging/<key>/pano.zarr`` (zarr v3).

    Args:
        dataset_dir: the dataset folder.
        room_uid: ``HOUSE/ROOM``.
        pano: rgb (H,W,3) uint8, label (H,W) uint8 raw ids, instance (H,W) uint16, depth (H,W)
            float32 range in metres, camera (3,) world metres.
        attrs: optional extra JSON-able attributes (e.g. where the labels came from).

    Returns the store's path.
    """
    h, w = pano.label.shape
    for name in PANO_ARRAYS:
        shape = getattr(pano, name).shape
        if shape[:2] != (h, w):
            raise ValueError(f"room {room_uid}: panorama {name} is {shape}, label is {(h, w)}")
    path = room_panorama_path(dataset_dir, room_uid)
    with atomic_path(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        for name, dtype in PANO_ARRAYS.items():
            root.create_array(name, data=np.ascontiguousarray(getattr(pano, name), dtype=dtype))
        root.attrs.update(
            {"room_uid": room_uid, "camera": [float(c) for c in pano.camera], "attrs": _jsonable(attrs or {})}
        )
    return path


def _read_pano_group(group) -> Panorama:
    arrays = {name: np.asarray(group[name][...]) for name in PANO_ARRAYS}
    return Panorama(camera=np.asarray(group.attrs["camera"], np.float64), **arrays)


def read_room_panorama(dataset_dir: Path, room_uid: str) -> Panorama | None:
    """Read a staged panorama, or ``None`` when the room has none."""
    path = room_panorama_path(dataset_dir, room_uid)
    if not path.exists():
        return None
    try:
        return _read_pano_group(zarr.open_group(str(path), mode="r"))
    except Exception as exc:
        raise DatasetError(f"room {room_uid}: cannot read staged panorama {path}: {exc}") from exc


def staged_rooms(dataset_dir: Path) -> tuple[list[str], list[str]]:
    """Staged rooms: (uids with a volume, uids with only a panorama), each sorted by uid."""
    staging = Path(dataset_dir) / "staging"
    with_volume, pano_only = [], []
    if staging.is_dir():
        for d in staging.iterdir():
            if not d.is_dir() or d.name.startswith("."):
                continue
            uid = room_uid_from_key(d.name)
            if (d / "volume.zarr").is_dir():
                with_volume.append(uid)
            elif (d / "pano.zarr").is_dir():
                pano_only.append(uid)
    return sorted(with_volume), sorted(pano_only)


# ----------------------------------------------------------------------------------------------
# hashing


def iter_files(folder: Path) -> list[tuple[str, Path]]:
    """Every file under ``folder`` as (relative POSIX path, path), in the canonical order.

    The canonical order is the byte order of the relative paths' UTF-8 encodings (Python's
    sorted order of ``str`` for the ASCII names zarr writes).
    """
    folder = Path(folder)
    out = []
    for dirpath, _, filenames in os.walk(folder):
        for f in filenames:
            p = Path(dirpath) / f
            out.append((p.relative_to(folder).as_posix(), p))
    out.sort(key=lambda item: item[0].encode())
    return out


def hash_shard(folder: Path) -> tuple[str, int, dict[str, str]]:
    """sha256 of a shard store, its size in bytes, and the sha256 of each room in it.

    The shard's sha256 is taken over its files in the canonical order (:func:`iter_files`): for each
    file, its relative path (UTF-8), a NUL byte, its size as 8 bytes little-endian, its content.
    A room's sha256 is the same over the files under ``<room key>/`` (paths relative to the shard).
    """
    total = hashlib.sha256()
    rooms: dict[str, hashlib._Hash] = {}
    size = 0
    for rel, path in iter_files(folder):
        data = path.read_bytes()
        size += len(data)
        head = rel.encode() + b"\0" + len(data).to_bytes(8, "little")
        total.update(head)
        total.update(data)
        top = rel.split("/", 1)[0]
        if "/" in rel:
            h = rooms.setdefault(top, hashlib.sha256())
            h.update(head)
            h.update(data)
    return total.hexdigest(), size, {k: h.hexdigest() for k, h in rooms.items()}


# ----------------------------------------------------------------------------------------------
# packing


def _compressors():
    return [ZstdCodec(level=ZSTD_LEVEL), Crc32cCodec()]


def _write_room_into(group, key: str, volume: RoomVolume, pano: Panorama | None, pano_attrs: dict) -> None:
    g = group.create_group(key)
    for name, (dtype, fill) in VOLUME_ARRAYS.items():
        data = np.ascontiguousarray(getattr(volume, name), dtype=dtype)
        extra = data.shape[3:]
        a = g.create_array(
            name,
            shape=data.shape,
            dtype=dtype,
            chunks=(CHUNK, CHUNK, CHUNK, *extra),
            shards=(SHARD, SHARD, SHARD, *extra),
            compressors=_compressors(),
            fill_value=fill,
            dimension_names=("x", "y", "z", "c")[: data.ndim],
        )
        a[...] = data
    g.attrs.update(_volume_attrs(volume))
    if pano is not None:
        _write_pano_into(g, pano, pano_attrs)


def _write_pano_into(g, pano: Panorama, pano_attrs: dict) -> None:
    """Write ``pano`` as the ``pano`` sub-group of room group ``g`` (chunked, checksummed)."""
    p = g.create_group("pano")
    for name, dtype in PANO_ARRAYS.items():
        data = np.ascontiguousarray(getattr(pano, name), dtype=dtype)
        extra = data.shape[2:]
        h, w = data.shape[:2]
        chunks = (min(PANO_CHUNK[0], h), min(PANO_CHUNK[1], w), *extra)
        shards = (-(-h // chunks[0]) * chunks[0], -(-w // chunks[1]) * chunks[1], *extra)
        a = p.create_array(name, shape=data.shape, dtype=dtype, chunks=chunks, shards=shards,
                           compressors=_compressors(), fill_value=0)
        a[...] = data
    p.attrs.update({"camera": [float(c) for c in pano.camera], "attrs": _jsonable(pano_attrs)})


def _write_panorama_room(root, dataset_dir: Path, uid: str) -> dict:
    """Write a room of a panorama-only dataset (its ``pano`` group, no volume); returns its facts."""
    pano = read_room_panorama(dataset_dir, uid)
    if pano is None:
        raise DatasetError(f"room {uid}: no staged panorama at {room_panorama_path(dataset_dir, uid)}")
    pano_attrs = dict(zarr.open_group(str(room_panorama_path(dataset_dir, uid)), mode="r").attrs.get("attrs", {}))
    g = root.create_group(room_key(uid))
    g.attrs.update({"room_uid": uid, "panorama_only": True})
    _write_pano_into(g, pano, pano_attrs)
    counts = np.bincount(pano.label.ravel(), minlength=NUM_RAW)
    return {"shape": None, "origin": None, "voxel_size": None, "truncation": None, "has_volume": False,
            "has_panorama": True, "pano_shape": list(pano.label.shape),
            "pano_camera": [float(c) for c in pano.camera],
            "pixel_label_counts": {str(i): int(c) for i, c in enumerate(counts) if c}}


def _write_panorama_shard(path: Path, dataset_dir: Path, uids: Sequence[str]) -> dict[str, dict]:
    """:func:`_write_shard` of a panorama-only dataset: each room holds its ``pano`` group alone."""
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "rooms": list(uids),
                       "content": "panoramas"})
    return {uid: _write_panorama_room(root, dataset_dir, uid) for uid in uids}


def _write_shard(path: Path, dataset_dir: Path, uids: Sequence[str]) -> dict[str, dict]:
    """Write one shard store at ``path`` (a temporary name) holding ``uids``; returns room facts."""
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "rooms": list(uids)})
    facts: dict[str, dict] = {}
    for uid in uids:
        volume = read_room_volume(dataset_dir, uid)
        try:
            check_volume(volume)
        except ValueError as exc:
            raise DatasetError(f"{exc} (staged at {room_volume_path(dataset_dir, uid)})") from None
        pano_path = room_panorama_path(dataset_dir, uid)
        pano = read_room_panorama(dataset_dir, uid)
        pano_attrs = dict(zarr.open_group(str(pano_path), mode="r").attrs.get("attrs", {})) if pano else {}
        _write_room_into(root, room_key(uid), volume, pano, pano_attrs)
        counts = np.bincount(volume.label.ravel(), minlength=NUM_RAW)
        facts[uid] = {
            "shape": list(volume.shape),
            "origin": [float(c) for c in volume.origin],
            "voxel_size": float(volume.voxel_size),
            "truncation": float(volume.truncation),
            "has_panorama": pano is not None,
            "pano_shape": list(pano.label.shape) if pano is not None else None,
            "observed_voxels": int(np.count_nonzero(volume.weight > 0)),
            "label_counts": {str(i): int(c) for i, c in enumerate(counts) if c},
        }
    return facts


def _fingerprint(dataset_dir: Path, uids: Sequence[str]) -> str:
    """Cheap identity of the staged inputs of a shard (uids, file names, sizes, mtimes)."""
    h = hashlib.sha256(f"{FORMAT_VERSION}:{CHUNK}:{SHARD}:{ZSTD_LEVEL}".encode())
    for uid in uids:
        h.update(uid.encode() + b"\n")
        for rel, p in iter_files(_staging_dir(dataset_dir, uid)):
            st = p.stat()
            h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def make_splits(uids: Sequence[str], splits=(0.9, 0.05, 0.05), seed: int = 0) -> dict[str, str]:
    """Assign each room to ``train``, ``val`` or ``test`` (split by room, deterministic).

    Args:
        uids: room uids.
        splits: fractions (train, val, test) summing to 1 -- rooms are sorted, shuffled with
            ``numpy.random.default_rng(seed)``, and val/test take round(n * fraction) rooms -- or a
            mapping {split name: [uids]} that must place every room exactly once.
        seed: shuffle seed.

    Returns {uid: split}. Raises ValueError naming the offending rooms.
    """
    uids = sorted(uids)
    if isinstance(splits, dict):
        out: dict[str, str] = {}
        for name, members in splits.items():
            if name not in SPLITS:
                raise ValueError(f"unknown split {name!r}; splits are {SPLITS}")
            for uid in members:
                if uid in out:
                    raise ValueError(f"room {uid} is in both {out[uid]} and {name}")
                out[uid] = name
        unknown = sorted(set(out) - set(uids))
        missing = sorted(set(uids) - set(out))
        if unknown:
            raise ValueError(f"splits name rooms that are not staged: {unknown[:5]}")
        if missing:
            raise ValueError(f"splits do not place {len(missing)} staged rooms, e.g. {missing[:5]}")
        return out
    fractions = np.asarray(splits, np.float64)
    if fractions.shape != (3,) or np.any(fractions < 0) or abs(fractions.sum() - 1) > 1e-6:
        raise ValueError(f"split fractions must be 3 non-negative numbers summing to 1, got {list(splits)}")
    order = np.random.default_rng(seed).permutation(len(uids))
    n_val = int(round(len(uids) * fractions[1]))
    n_test = int(round(len(uids) * fractions[2]))
    out = {}
    for rank, i in enumerate(order):
        out[uids[i]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return out


def taxonomy_json() -> dict:
    """The manifest's taxonomy: raw id names and every registered class set's mapping."""
    return {
        "raw_names": list(RAW_NAMES),
        "class_sets": {
            name: {"class_names": list(cs.class_names), "raw_to_class": cs.raw_to_class[:NUM_RAW].tolist()}
            for name, cs in CLASS_SETS.items()
        },
    }


def read_manifest(dataset_dir: Path) -> dict:
    """Parse ``dataset_dir/manifest.json``. Raises DatasetError naming the file when missing/corrupt."""
    path = Path(dataset_dir) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"no dataset manifest at {path} (pack the dataset first: panorooms3d pack)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"corrupt dataset manifest {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "rooms" not in manifest:
        raise DatasetError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise DatasetError(f"{path} has format_version {manifest['format_version']}; this tool reads <= {FORMAT_VERSION}")
    return manifest


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def pack_dataset(
    dataset_dir: Path,
    *,
    rooms_per_shard: int = 8,
    splits=(0.9, 0.05, 0.05),
    seed: int = 0,
    class_set: str = "paper30",
    progress: Callable[[int, int], None] | None = None,
    panoramas_only: bool = False,
) -> dict:
    """Pack every staged room (with a volume; panorama optional) into shards + manifest + splits.

    With ``panoramas_only`` (the panorama-only build), every staged room that has a panorama is
    packed with its ``pano`` group alone (no volume); the manifest says ``"content": "panoramas"``
    and its rooms have ``has_volume: false`` and ``shape: null``.

    Rooms are sorted by uid and cut into shards of ``rooms_per_shard`` (shard i holds rooms
    [i * n, (i + 1) * n)): the same staged rooms always give the same assignment and the same shard
    bytes. Each shard is written to a temporary name; only when every shard is complete are they
    renamed into ``shards/shard-NNNNN.zarr``, then ``splits/*.txt`` and finally ``manifest.json``
    (atomically). A shard whose staged inputs (uids, sizes, mtimes) are unchanged since the previous
    manifest is reused as it is. Stale temporaries of killed packs are removed first.

    Args:
        dataset_dir: the dataset folder with ``staging/``.
        rooms_per_shard: rooms per shard store (>= 1).
        splits: fractions (train, val, test) or {split: [uids]} (see :func:`make_splits`).
        seed: split seed.
        class_set: the class set the manifest names as the default for training (``paper30``).
        progress: optional callback(shards done, shards total).

    Returns the manifest (dict). Raises DatasetError naming the room for unreadable or empty rooms.
    """
    dataset_dir = Path(dataset_dir)
    get_class_set(class_set)
    if rooms_per_shard < 1:
        raise ValueError(f"rooms_per_shard must be >= 1, got {rooms_per_shard}")
    shards_dir = dataset_dir / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    for folder in (dataset_dir, shards_dir, dataset_dir / "splits", dataset_dir / "staging"):
        clean_stale_temporaries(folder)
    uids, pano_only = staged_rooms(dataset_dir)
    content = "panoramas" if panoramas_only else "volumes"
    if panoramas_only:
        uids = sorted(pano_only + [u for u in uids if room_panorama_path(dataset_dir, u).is_dir()])
        pano_only = []
        if not uids:
            raise DatasetError(f"no staged panoramas under {dataset_dir / 'staging'} (run `panorooms3d panoramas`)")
    if not uids:
        raise DatasetError(f"no staged room volumes under {dataset_dir / 'staging'} (run fuse first)")
    split_of = make_splits(uids, splits, seed)
    try:
        previous = read_manifest(dataset_dir)
    except DatasetError:
        previous = None
    if previous is not None and previous.get("content", "volumes") != content:
        previous = None  # packed the other way before: reuse nothing
    prev_shards = {s["file"]: s for s in (previous or {}).get("shards", [])}
    prev_rooms = {r["uid"]: r for r in (previous or {}).get("rooms", [])}

    groups = [uids[i : i + rooms_per_shard] for i in range(0, len(uids), rooms_per_shard)]
    shard_entries: list[dict] = []
    room_facts: dict[str, dict] = {}
    pending: list[tuple[Path, Path]] = []  # (temporary, final)
    try:
        for index, members in enumerate(groups):
            rel = f"shards/shard-{index:05d}.zarr"
            final = dataset_dir / rel
            fingerprint = _fingerprint(dataset_dir, members)
            old = prev_shards.get(rel)
            if (
                old is not None
                and old.get("rooms") == list(members)
                and old.get("source_fingerprint") == fingerprint
                and final.is_dir()
                and all(u in prev_rooms for u in members)
            ):
                shard_entries.append(old)
                for uid in members:
                    room_facts[uid] = {k: v for k, v in prev_rooms[uid].items() if k not in ("uid", "split")}
            else:
                tmp = temp_sibling(final)
                pending.append((tmp, final))
                facts = (_write_panorama_shard if panoramas_only else _write_shard)(tmp, dataset_dir, members)
                sha, size, room_sha = hash_shard(tmp)
                for uid in members:
                    facts[uid]["shard"] = rel
                    facts[uid]["sha256"] = room_sha.get(room_key(uid), "")
                room_facts.update(facts)
                shard_entries.append(
                    {"file": rel, "size_bytes": size, "sha256": sha, "rooms": list(members),
                     "source_fingerprint": fingerprint}
                )
            if progress:
                progress(index + 1, len(groups))
    except BaseException:
        for tmp, _ in pending:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    # every new shard is complete: move them into place (fast renames), then splits, then manifest
    for tmp, final in pending:
        if final.exists():
            old = temp_sibling(final)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    rooms = []
    for uid in uids:
        facts = room_facts[uid]
        rooms.append({"uid": uid, "key": room_key(uid), **facts, "split": split_of[uid]})
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "tool": {"name": "panorooms3d", "version": _tool_version()},
        "class_set": class_set,
        "taxonomy": taxonomy_json(),
        "layout": {"chunk": CHUNK, "shard": SHARD, "compressor": f"zstd(level={ZSTD_LEVEL})",
                   "checksum": "crc32c per chunk and per shard index",
                   "sha256": "over files sorted by relative path: path NUL size(u64 le) content"},
        "rooms_per_shard": rooms_per_shard,
        "seed": seed,
        "rooms": rooms,
        "shards": shard_entries,
        "skipped_without_volume": pano_only,
    }
    if panoramas_only:
        manifest["content"] = content
    for name in SPLITS:
        members = [r["uid"] for r in rooms if r["split"] == name]
        _write_text_atomic(dataset_dir / "splits" / f"{name}.txt", "".join(f"{u}\n" for u in members))
    _write_text_atomic(dataset_dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    listed = {Path(s["file"]).name for s in shard_entries}
    for p in shards_dir.iterdir():
        if p.name.startswith("shard-") and p.name.endswith(".zarr") and p.name not in listed:
            shutil.rmtree(p, ignore_errors=True)  # shards of an earlier, larger pack
    return manifest


# ----------------------------------------------------------------------------------------------
# reading


@dataclass
class RoomInfo:
    """A room as the manifest lists it (shape in voxels [x, y, z], origin in world metres)."""

    uid: str
    shard: str
    shape: tuple[int, int, int]
    origin: np.ndarray
    voxel_size: float
    has_panorama: bool
    split: str
    entry: dict


class Dataset:
    """A packed dataset (read-only): rooms, splits, volumes, panoramas, crops and verification.

    Args:
        dataset_dir: folder holding ``manifest.json`` and ``shards/``.

    Raises DatasetError naming the manifest when it is missing or corrupt.
    """

    def __init__(self, dataset_dir: Path):
        self.root = Path(dataset_dir)
        self.manifest = read_manifest(self.root)
        self._rooms = {r["uid"]: r for r in self.manifest["rooms"]}
        self._groups: dict[str, zarr.Group] = {}
        self._arrays: dict[tuple[str, str], zarr.Array] = {}

    # -- listing
    @property
    def rooms(self) -> list[str]:
        """Room uids in manifest (uid) order."""
        return list(self._rooms)

    def split(self, name: str) -> list[str]:
        """Room uids of split ``name`` (``train``, ``val`` or ``test``)."""
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; splits are {SPLITS}")
        return [u for u, r in self._rooms.items() if r["split"] == name]

    def _entry(self, uid: str) -> dict:
        try:
            return self._rooms[uid]
        except KeyError:
            raise KeyError(f"room {uid!r} is not in {self.root / MANIFEST}") from None

    def room_info(self, uid: str) -> RoomInfo:
        """The manifest's facts about room ``uid``."""
        r = self._entry(uid)
        if not r.get("has_volume", True):  # a room of a panorama-only dataset
            return RoomInfo(uid=uid, shard=r["shard"], shape=None, origin=None, voxel_size=float("nan"),  # type: ignore[arg-type]
                            has_panorama=bool(r["has_panorama"]), split=r["split"], entry=r)
        return RoomInfo(uid=uid, shard=r["shard"], shape=tuple(r["shape"]), origin=np.asarray(r["origin"]),
                        voxel_size=float(r["voxel_size"]), has_panorama=bool(r["has_panorama"]),
                        split=r["split"], entry=r)

    @property
    def panoramas_only(self) -> bool:
        """True for a panorama-only dataset (``panorooms3d panoramas``): rooms have panoramas, no volumes."""
        return self.manifest.get("content") == "panoramas"

    def _volume_entry(self, uid: str) -> dict:
        r = self._entry(uid)
        if not r.get("has_volume", True):
            raise DatasetError(f"room {uid} of {self.root} has a panorama but no volume (a panorama-only "
                               "dataset, made by `panorooms3d panoramas`); use a dataset made by `panorooms3d build`")
        return r

    # -- zarr access
    def _group(self, uid: str):
        r = self._entry(uid)
        shard = r["shard"]
        if shard not in self._groups:
            path = self.root / shard
            if not path.is_dir():
                raise DatasetError(f"shard {shard} (room {uid}) is missing from {self.root}")
            try:
                self._groups[shard] = zarr.open_group(str(path), mode="r")
            except Exception as exc:
                raise DatasetError(f"shard {shard} (room {uid}): cannot open: {exc}") from exc
        try:
            return self._groups[shard][r["key"]]
        except Exception as exc:
            raise DatasetError(f"shard {shard}: room {uid} ({r['key']}) cannot be opened: {exc}") from exc

    def _array(self, uid: str, name: str):
        """The opened zarr array ``name`` of room ``uid``, cached (opening re-reads its metadata)."""
        key = (uid, name)
        if key not in self._arrays:
            self._arrays[key] = self._group(uid)[name]
        return self._arrays[key]

    def _read(self, uid: str, name: str, selection=Ellipsis) -> np.ndarray:
        try:
            return np.asarray(self._array(uid, name)[selection])
        except Exception as exc:
            shard = self._rooms[uid]["shard"]
            raise DatasetError(f"shard {shard}: room {uid}: array {name} is unreadable "
                               f"(corrupt or truncated chunk: {exc}); run `panorooms3d info --verify`") from exc

    def load_volume(self, uid: str) -> RoomVolume:
        """The room's full volume (arrays [x, y, z] in their stored dtypes)."""
        self._volume_entry(uid)
        arrays = {name: self._read(uid, name) for name in VOLUME_ARRAYS}
        attrs = dict(self._group(uid).attrs)
        return RoomVolume(origin=np.asarray(attrs["origin"]), voxel_size=float(attrs["voxel_size"]),
                          truncation=float(attrs["truncation"]), room_uid=uid, attrs=dict(attrs.get("attrs", {})),
                          **arrays)

    def load_panorama(self, uid: str) -> Panorama | None:
        """The room's panorama, or None when it has none."""
        if not self._entry(uid)["has_panorama"]:
            return None
        arrays = {name: self._read(uid, f"pano/{name}") for name in PANO_ARRAYS}
        camera = self._group(uid)["pano"].attrs["camera"]
        return Panorama(camera=np.asarray(camera), **arrays)

    def panorama_attrs(self, uid: str) -> dict:
        """Extra attributes stored with a room's panorama (e.g. its label source); {} if none."""
        if not self._entry(uid)["has_panorama"]:
            return {}
        return dict(self._group(uid)["pano"].attrs.get("attrs", {}))

    def read_crop(self, uid: str, start, size, arrays: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """A box of voxels [start, start + size) of a room, padded outside the room.

        Args:
            uid: room uid.
            start: (3,) int voxel index [x, y, z] of the crop's first voxel (may be negative).
            size: (3,) int crop size in voxels.
            arrays: names to read (default all of tsdf, weight, rgb, label, instance).

        Returns {name: array of shape size (+ (3,) for rgb)} in the stored dtypes; outside the room
        tsdf is 1, weight 0, rgb 0, label 0, instance 0.
        """
        size = np.asarray(size, np.int64).reshape(3)
        if np.any(size <= 0):
            raise ValueError(f"crop size must be positive, got {size.tolist()}")
        src, dst, inside = crop_slices(self._volume_entry(uid)["shape"], start, size)
        names = list(arrays) if arrays is not None else list(VOLUME_ARRAYS)
        out = {}
        for name in names:
            if name not in VOLUME_ARRAYS:
                raise KeyError(f"unknown volume array {name!r}; arrays are {list(VOLUME_ARRAYS)}")
            dtype, fill = VOLUME_ARRAYS[name]
            extra = (3,) if name == "rgb" else ()
            if inside:  # no padding
                out[name] = self._read(uid, name, src)
                continue
            block = np.full((*size.tolist(), *extra), fill, dtype=dtype)
            if src is not None:
                block[dst] = self._read(uid, name, src)
            out[name] = block
        return out

    def class_histogram(self, class_set: str = "paper30") -> np.ndarray:
        """Voxel counts per class over all rooms (int64, (num_classes,)); void counts free space too."""
        cs = get_class_set(class_set)
        hist = np.zeros(cs.num_classes, np.int64)
        for r in self._rooms.values():
            for raw, count in r.get("label_counts", {}).items():
                hist[cs.raw_to_class[int(raw)]] += int(count)
        return hist

    def pixel_histogram(self, class_set: str = "paper30") -> np.ndarray:
        """Panorama pixel counts per class (int64, (num_classes,)) from ``pixel_label_counts`` (panorama-only rooms)."""
        cs = get_class_set(class_set)
        hist = np.zeros(cs.num_classes, np.int64)
        for r in self._rooms.values():
            for raw, count in r.get("pixel_label_counts", {}).items():
                hist[cs.raw_to_class[int(raw)]] += int(count)
        return hist

    def verify(self, progress: Callable[[str], None] | None = None) -> list[str]:
        """Check every shard against the manifest and every chunk's crc32c; returns the problems.

        For each shard: it exists, its size and sha256 match, each room's sha256 matches (naming the
        room whose files changed), and every array of every room reads fully (zarr checks the crc32c
        of every chunk and shard index), chunk by chunk. Each problem names the shard and room.
        """
        problems: list[str] = []
        for shard in self.manifest["shards"]:
            rel = shard["file"]
            path = self.root / rel
            if progress:
                progress(rel)
            if not path.is_dir():
                problems.append(f"shard {rel}: missing (rooms {', '.join(shard['rooms'])})")
                continue
            sha, size, room_sha = hash_shard(path)
            if sha != shard["sha256"] or size != shard["size_bytes"]:
                bad = [u for u in shard["rooms"] if room_sha.get(room_key(u), "") != self._rooms[u].get("sha256")]
                where = f"rooms {', '.join(bad)}" if bad else "shard metadata"
                problems.append(f"shard {rel}: sha256 mismatch ({where} changed; size {size} bytes, "
                                f"manifest says {shard['size_bytes']})")
            for uid in shard["rooms"]:
                problems.extend(self._verify_room(rel, uid))
        return problems

    def _verify_room(self, rel: str, uid: str) -> list[str]:
        try:
            group = self._group(uid)
        except DatasetError as exc:
            return [str(exc)]
        names = list(VOLUME_ARRAYS) * bool(self._rooms[uid].get("has_volume", True)) + ([f"pano/{n}" for n in PANO_ARRAYS] if self._rooms[uid]["has_panorama"] else [])
        problems = []
        for name in names:
            try:
                array = group[name]
                chunks = array.chunks
                grid = [range(0, n, c) for n, c in zip(array.shape, chunks)]
                for corner in np.ndindex(*[len(g) for g in grid]):
                    sel = tuple(slice(g[i], g[i] + c) for g, i, c in zip(grid, corner, chunks))
                    array[sel]
            except Exception as exc:
                problems.append(f"shard {rel}: room {uid}: array {name}: checksum/read error: {exc}")
        return problems
