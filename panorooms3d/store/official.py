"""Import the official PanoRooms3D release into a panorooms3d dataset.

Official per-room files (``<room>.npz``, vertical = last axis, 4 cm voxels, padded to 128):

- ``sdf128`` (X, Y, Z) float: TSDF normalised to [-1, 1], 1 = free or unobserved, positive in front.
- ``color128`` (X, Y, Z) float holding a packed colour b * 65536 + g * 256 + r.
- ``semanticlabel`` (X, Y, Z): raw 3D-FRONT ids 0-98.

They become a ``RoomVolume`` with origin (0, 0, 0) (the release stores no world position),
voxel_size 0.04, truncation 3 voxels (the release does not record it), instance 0 everywhere and a
*derived* weight: 1 where |sdf| < 1 (near a surface, hence observed), 0 elsewhere -- the release
does not separate free from unobserved space, so free space counts as unobserved.

Official panoramas (optional) in the ADE layout ``images/<split>/<room>.jpg`` and
``annotations/<split>/<room>.png`` carry labels that are already merged to the paper's 30 classes
(channel 0). The dataset stores raw ids, so each class c is stored as one *canonical* raw id of that
class (:data:`CANONICAL_RAW`): mapping back with the ``paper30`` class set gives exactly the
official class, but the raw id itself is not the object's true raw category. Such panoramas carry
the attribute ``label_source = "official-paper30-canonical-raw"``. Official panoramas have no depth
(stored as 0 = no hit) and no instances (0); their camera is the centre of the volume, as in the
official code. Values >= 30 in an annotation are stored as void (0) and counted.
When panoramas are given, their split folders (training/validation/test) decide each room's split;
rooms without a panorama go to train.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from panorooms3d.store.dataset import DatasetError, pack_dataset, write_room_panorama, write_room_volume
from panorooms3d.taxonomy import CEILING, DOOR, FLOOR, PAPER30, WALL
from panorooms3d.volume import Panorama, RoomVolume

VOXEL_SIZE = 0.04
TRUNCATION = 3.0
REQUIRED_KEYS = ("sdf128", "color128", "semanticlabel")
LABEL_SOURCE = "official-paper30-canonical-raw"
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "validation": "val", "valid": "val",
                "test": "test", "testing": "test"}


def _canonical_raw() -> np.ndarray:
    table = np.zeros(256, np.uint8)
    preferred = {"wall": WALL, "floor": FLOOR, "ceiling": CEILING, "door(+window)": DOOR}
    for cls, (name, raw_ids) in enumerate(PAPER30):
        table[cls] = preferred.get(name, raw_ids[0])
    return table


#: paper30 class id -> the raw id stored for it (uint8, 256 entries; >= 30 -> 0).
CANONICAL_RAW = _canonical_raw()


def unpack_colour(packed: np.ndarray) -> np.ndarray:
    """Unpack b * 65536 + g * 256 + r (any float/int array) into (..., 3) uint8 RGB."""
    c = np.rint(np.asarray(packed, np.float64)).astype(np.int64)
    c = np.clip(c, 0, 0xFFFFFF)
    return np.stack([c & 0xFF, (c >> 8) & 0xFF, (c >> 16) & 0xFF], axis=-1).astype(np.uint8)


def room_uid_of(path: Path) -> str:
    """Room uid of an official file: its stem with characters outside [A-Za-z0-9._-] made '-'."""
    uid = re.sub(r"[^A-Za-z0-9._\-]", "-", Path(path).stem)
    return re.sub(r"_{2,}", "_", uid).lstrip(".") or "room"


def read_official_room(path: Path, room_uid: str | None = None) -> RoomVolume:
    """Read one official ``.npz`` room as a ``RoomVolume`` (see the module docstring for the mapping).

    Raises DatasetError naming the file for a missing key, mismatched shapes or bad values.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in REQUIRED_KEYS if k not in data.files]
            if missing:
                raise DatasetError(f"{path}: missing {missing} (has {data.files}); not an official PanoRooms3D room")
            sdf = np.asarray(data["sdf128"], np.float32)
            colour = np.asarray(data["color128"])
            label = np.asarray(data["semanticlabel"])
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read as .npz: {exc}") from None
    sdf = np.squeeze(sdf)
    colour = colour.reshape(sdf.shape) if colour.size == sdf.size else colour
    label = label.reshape(sdf.shape) if label.size == sdf.size else label
    if sdf.ndim != 3 or colour.shape != sdf.shape or label.shape != sdf.shape:
        raise DatasetError(f"{path}: shapes differ: sdf128 {sdf.shape}, color128 {colour.shape}, "
                           f"semanticlabel {label.shape} (expected one (X, Y, Z) grid)")
    if not np.all(np.isfinite(sdf)):
        raise DatasetError(f"{path}: sdf128 holds NaN or infinite values")
    if label.min() < 0 or label.max() > 98:
        raise DatasetError(f"{path}: semanticlabel holds ids outside 0..98 ({label.min()}..{label.max()})")
    sdf = np.clip(sdf, -1.0, 1.0)
    observed = np.abs(sdf) < 1.0
    return RoomVolume(
        tsdf=sdf,
        weight=observed.astype(np.float32),
        rgb=unpack_colour(colour) * observed[..., None],
        label=label.astype(np.uint8),
        instance=np.zeros(sdf.shape, np.uint16),
        origin=np.zeros(3),
        voxel_size=VOXEL_SIZE,
        truncation=TRUNCATION,
        room_uid=room_uid or room_uid_of(path),
        attrs={"source": "official PanoRooms3D release", "file": path.name,
               "weight": "derived: 1 where |sdf| < 1, else 0"},
    )


def read_official_panorama(image: Path, annotation: Path, camera) -> tuple[Panorama, int]:
    """Read an official panorama (RGB ``.jpg`` + label ``.png``, class in channel 0).

    Returns (Panorama with labels as canonical raw ids, number of pixels whose class was >= 30).
    """
    try:
        rgb = np.asarray(Image.open(image).convert("RGB"))
        ann = np.asarray(Image.open(annotation))
    except Exception as exc:
        raise DatasetError(f"cannot read official panorama {image} / {annotation}: {exc}") from None
    classes = ann[..., 0] if ann.ndim == 3 else ann
    if classes.shape != rgb.shape[:2]:
        raise DatasetError(f"{annotation}: label is {classes.shape}, image {image} is {rgb.shape[:2]}")
    unknown = int(np.count_nonzero(classes >= len(PAPER30)))
    label = np.where(classes < len(PAPER30), CANONICAL_RAW[classes.astype(np.int64) & 0xFF], 0).astype(np.uint8)
    h, w = label.shape
    return Panorama(rgb=rgb, label=label, instance=np.zeros((h, w), np.uint16), depth=np.zeros((h, w), np.float32),
                    camera=np.asarray(camera, np.float64)), unknown


def find_official_panoramas(panoramas: Path) -> dict[str, tuple[Path, Path, str]]:
    """Map room stem -> (image, annotation, split) for an ADE-style folder; unpaired files error."""
    panoramas = Path(panoramas)
    images = panoramas / "images"
    if not images.is_dir():
        raise DatasetError(f"{panoramas}: no images/ folder (expected images/<split>/<room>.jpg)")
    out = {}
    for split_dir in sorted(p for p in images.iterdir() if p.is_dir()):
        split = _SPLIT_NAMES.get(split_dir.name.lower())
        if split is None:
            raise DatasetError(f"{split_dir}: unknown split folder (expected one of {sorted(_SPLIT_NAMES)})")
        for img in sorted(split_dir.glob("*.jpg")) + sorted(split_dir.glob("*.png")):
            ann = panoramas / "annotations" / split_dir.name / f"{img.stem}.png"
            if not ann.is_file():
                raise DatasetError(f"{img}: no annotation at {ann}")
            out[img.stem] = (img, ann, split)
    return out


def import_official(rooms: Path, out: Path, panoramas: Path | None = None, *, rooms_per_shard: int = 8,
                    seed: int = 0, progress: Callable[[str], None] | None = None) -> dict:
    """Convert an official release folder (``rooms/*.npz`` [+ ADE panoramas]) into a packed dataset.

    Stages every room (``write_room_volume``/``write_room_panorama``) under ``out`` then packs
    (``pack_dataset``). Returns the manifest. Raises DatasetError naming the bad file.
    """
    rooms = Path(rooms)
    files = sorted(rooms.glob("*.npz"))
    if not files:
        raise DatasetError(f"no official room files (*.npz) in {rooms}")
    panos = find_official_panoramas(panoramas) if panoramas is not None else {}
    split_of: dict[str, str] = {}
    for f in files:
        volume = read_official_room(f)
        if progress:
            progress(volume.room_uid)
        write_room_volume(out, volume)
        if f.stem in panos:
            image, ann, split = panos[f.stem]
            camera = np.asarray(volume.shape) * volume.voxel_size / 2
            pano, unknown = read_official_panorama(image, ann, camera)
            write_room_panorama(out, volume.room_uid, pano,
                                attrs={"label_source": LABEL_SOURCE, "image": image.name, "unknown_class_pixels": unknown})
            split_of[volume.room_uid] = split
    if panos:
        splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for f in files:
            uid = room_uid_of(f)
            splits[split_of.get(uid, "train")].append(uid)
        return pack_dataset(out, rooms_per_shard=rooms_per_shard, splits=splits, seed=seed)
    return pack_dataset(out, rooms_per_shard=rooms_per_shard, seed=seed)
