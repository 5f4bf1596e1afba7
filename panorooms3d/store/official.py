"""Import the official PanoRooms3D release into a panorooms3d dataset.

Official per-room files (``<room>.npz``, vertical = last axis, 4 cm voxels):

- ``sdf128`` (X, Y, Z) float (float16 or float32): TSDF normalised to about [-1, 1], 1 = free or
  unobserved, positive in front; values below -1 (inside objects) and above 1 occur.
- ``color128`` (X, Y, Z) float holding a packed colour b * 65536 + g * 256 + r.
- ``semanticlabel`` (X, Y, Z): raw 3D-FRONT ids 0-98.

They become a ``RoomVolume`` with origin (0, 0, 0) (the release stores no world position; world
axes = array axes), voxel_size 0.04, truncation 3 voxels (the release does not record it),
instance 0 everywhere, and, so that the official inputs and targets can be rebuilt element-wise
(:func:`panorooms3d.bench.data.encode_official`):

- ``tsdf`` = ``sdf128`` exactly as stored (float32, **not clipped**), its file dtype in the
  attribute ``sdf_dtype`` (the official loaders compute ``-3 * sdf`` in that dtype);
- ``weight`` = 1 where the official loaders keep colour and label -- ``-3 * sdf > -3`` in the file's
  dtype, i.e. sdf < 1, including sdf <= -1 -- and 0 elsewhere (the release does not separate free
  from unobserved space);
- ``rgb`` = the unpacked colour where the weight is 1, else 0; ``label`` = the raw ids as stored
  (the encodings set them to void where the weight is 0, as the official loaders do).

Official panoramas (optional) in the ADE layout ``images/<split>/<room>.jpg`` and
``annotations/<split>/<room>.png`` carry labels that are already merged to the paper's 30 classes
(channel 0). The dataset stores raw ids, so each class c is stored as one *canonical* raw id of that
class (:data:`CANONICAL_RAW`): mapping back with the ``paper30`` class set gives exactly the
official class, but the raw id itself is not the object's true raw category. Such panoramas carry
the attribute ``label_source = "official-paper30-canonical-raw"``. Official panoramas have no depth
(stored as 0 = no hit) and no instances (0); their camera is the centre of the volume
(``shape * 0.04 / 2``), as in the official ``render()``.

**Orientation.** The official panorama has its centre column along +x (array axis 0), a quarter to
the right along **+y** and its top along +z (derived from the official ``render()`` and pytorch3d's
camera conventions, docs/formats.md); this project's convention has a quarter to the right along
**-y**. The importer therefore stores each official panorama (RGB and labels) with its columns
reversed: stored column u = official column W - 1 - u (attribute ``orientation``). The project's
projection of the imported room then lands on the stored panorama (the official code's longitudes
``linspace(-pi, pi, W)`` are at most half a pixel from this project's pixel centres), and
:func:`official_view` gives the official image back (for the official teacher).

Splits: ``splits`` (a folder with the official ``train.txt``/``val.txt``/``test.txt``, one room a
line) decides each room's split; otherwise panorama split folders (training/validation/test) do,
rooms without a panorama going to train; otherwise a seeded 90/5/5 split.

The official **block release** (per-block ``.npz`` with ``targetsdf128loc`` (N, 3) voxel indices,
``targetsdf128`` (N,) network input channel 0, ``targetsdf128color`` (N, 3) colour in [0, 1] and
``semanticlabel`` (N,) paper30 classes) is read by :func:`read_official_block` exactly as the
official trainer's ``collate`` densifies it (:class:`OfficialBlocks` is a map-style dataset of a
folder of them).
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
BLOCK_KEYS = ("targetsdf128loc", "targetsdf128", "targetsdf128color", "semanticlabel")
LABEL_SOURCE = "official-paper30-canonical-raw"
ORIENTATION = "official mirrored: stored column u = official column W-1-u"
SPLIT_FILES = {"train": "train.txt", "val": "val.txt", "test": "test.txt"}
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


def official_keep_mask(sdf: np.ndarray) -> np.ndarray:
    """Where the official loaders keep colour and label: ``-3 * sdf > -3`` computed in sdf's own dtype."""
    sdf = np.asarray(sdf)
    return (sdf.dtype.type(-3) * sdf) > -3


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
            sdf_file = np.asarray(data["sdf128"])
            colour = np.asarray(data["color128"])
            label = np.asarray(data["semanticlabel"])
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read as .npz: {exc}") from None
    if sdf_file.dtype.kind != "f":
        raise DatasetError(f"{path}: sdf128 has dtype {sdf_file.dtype}, expected a float array")
    sdf_file = np.squeeze(sdf_file)
    colour = colour.reshape(sdf_file.shape) if colour.size == sdf_file.size else colour
    label = label.reshape(sdf_file.shape) if label.size == sdf_file.size else label
    if sdf_file.ndim != 3 or colour.shape != sdf_file.shape or label.shape != sdf_file.shape:
        raise DatasetError(f"{path}: shapes differ: sdf128 {sdf_file.shape}, color128 {colour.shape}, "
                           f"semanticlabel {label.shape} (expected one (X, Y, Z) grid)")
    if not np.all(np.isfinite(sdf_file)):
        raise DatasetError(f"{path}: sdf128 holds NaN or infinite values")
    if label.min() < 0 or label.max() > 98:
        raise DatasetError(f"{path}: semanticlabel holds ids outside 0..98 ({label.min()}..{label.max()})")
    keep = official_keep_mask(sdf_file)
    return RoomVolume(
        tsdf=sdf_file.astype(np.float32),
        weight=keep.astype(np.float32),
        rgb=unpack_colour(colour) * keep[..., None],
        label=label.astype(np.uint8),
        instance=np.zeros(sdf_file.shape, np.uint16),
        origin=np.zeros(3),
        voxel_size=VOXEL_SIZE,
        truncation=TRUNCATION,
        room_uid=room_uid or room_uid_of(path),
        attrs={"source": "official PanoRooms3D release", "file": path.name, "encoding": "official",
               "sdf_dtype": str(sdf_file.dtype),
               "tsdf": "sdf128 as stored (not clipped to [-1, 1])",
               "weight": "derived: 1 where -3 * sdf128 > -3 (the official loaders' mask), else 0"},
    )


def read_official_panorama(image: Path, annotation: Path, camera) -> tuple[Panorama, int]:
    """Read an official panorama (RGB ``.jpg`` + label ``.png``, class in channel 0).

    Returns (Panorama in this project's orientation -- columns reversed, see the module docstring --
    with labels as canonical raw ids, number of pixels whose class was >= 30).
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
    return Panorama(rgb=official_view(rgb), label=official_view(label), instance=np.zeros((h, w), np.uint16),
                    depth=np.zeros((h, w), np.float32), camera=np.asarray(camera, np.float64)), unknown


def official_view(image: np.ndarray) -> np.ndarray:
    """Reverse the columns of an (H, W[, C]) panorama: official orientation <-> this project's (an involution)."""
    return np.ascontiguousarray(np.asarray(image)[:, ::-1])


def read_official_splits(folder: Path) -> dict[str, list[str]]:
    """The official split lists ``train.txt``, ``val.txt``, ``test.txt`` of ``folder`` -> {split: [room uids]}.

    One room name a line as the official repository ships them (the official loaders read
    ``f.read().split("\\n")[:-1]``: every line ends with a newline); surrounding whitespace and blank
    lines are ignored. Names become uids with :func:`room_uid_of`. Raises DatasetError naming a
    missing file or a room listed twice.
    """
    folder = Path(folder)
    out: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for split, name in SPLIT_FILES.items():
        path = folder / name
        if not path.is_file():
            raise DatasetError(f"{path}: no such split file (expected {', '.join(SPLIT_FILES.values())} in {folder})")
        uids = [room_uid_of(Path(line.strip())) for line in path.read_text().splitlines() if line.strip()]
        for uid in uids:
            if uid in seen:
                raise DatasetError(f"{path}: room {uid} is already in {seen[uid]}.txt")
            seen[uid] = split
        out[split] = uids
    return out


def read_official_block(path: Path, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One block of the official sparse block release, densified as the official trainer's ``collate``.

    ``targetsdf128`` (N,) fills a ``size``^3 grid whose default is -3 (it is the network's channel 0,
    -3 * sdf), ``targetsdf128color`` (N, 3) one whose default is 0 (then ``* 2 - 1``, in the file's
    colour dtype), ``semanticlabel`` (N,) one whose default is 0 (paper30 classes, used as they are:
    no mask), at ``targetsdf128loc`` (N, 3). ``size`` is the block edge: the official ``collate``
    hard-codes 128 (the default); smaller edges serve tests and CPU runs on official-format blocks.

    Returns (x (4, size, size, size) float32, y (size, size, size) int64). Raises DatasetError naming
    the file (and, for a block that does not fit, the edge to use).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in BLOCK_KEYS if k not in data.files]
            if missing:
                raise DatasetError(f"{path}: missing {missing} (has {data.files}); not an official block file")
            loc, sdf, colour, sem = (np.asarray(data[k]) for k in BLOCK_KEYS)
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read as .npz: {exc}") from None
    n = int(size)
    if loc.size % 3 or colour.size % 3:
        raise DatasetError(f"{path}: targetsdf128loc {loc.shape} / targetsdf128color {colour.shape} are not (N, 3)")
    loc = loc.reshape(-1, 3).astype(np.int64)
    sdf, sem = sdf.reshape(-1), sem.reshape(-1)
    colour = colour.reshape(-1, 3)
    if not (len(loc) == len(sdf) == len(colour) == len(sem)):
        raise DatasetError(f"{path}: {len(loc)} locations but {len(sdf)} sdf, {len(colour)} colour, {len(sem)} labels")
    if len(loc) and loc.min() < 0:
        raise DatasetError(f"{path}: targetsdf128loc holds negative voxel indices")
    if len(loc) and loc.max() >= n:
        raise DatasetError(f"{path}: targetsdf128loc reaches voxel {int(loc.max())}, outside a {n}^3 block; the "
                           f"blocks of {path.parent} are larger than block = {n}: set block to their edge "
                           "(the official release: 128)")
    if len(sem) and (sem.min() < 0 or sem.max() >= len(PAPER30)):
        raise DatasetError(f"{path}: semanticlabel outside 0..{len(PAPER30) - 1} "
                           "(the block release holds paper30 classes)")
    dense_sdf = np.full((n, n, n), -3, dtype=sdf.dtype)
    dense_sdf[loc[:, 0], loc[:, 1], loc[:, 2]] = sdf
    dense_col = np.zeros((n, n, n, 3), dtype=colour.dtype)
    dense_col[loc[:, 0], loc[:, 1], loc[:, 2]] = colour
    dense_sem = np.zeros((n, n, n), dtype=sem.dtype)
    dense_sem[loc[:, 0], loc[:, 1], loc[:, 2]] = sem
    x = np.empty((4, n, n, n), np.float32)
    x[0] = dense_sdf
    x[1:] = np.moveaxis(dense_col * dense_col.dtype.type(2) - dense_col.dtype.type(1), -1, 0)
    return x, dense_sem.astype(np.int64)


class OfficialBlocks:
    """A map-style dataset (for ``torch.utils.data.DataLoader``) of a folder of official block files.

    Item ``i`` is :func:`read_official_block` of the i-th ``*.npz`` of ``folder`` in sorted order:
    (x (4, size, size, size) float32, y (size, size, size) int64), as the official ``BlockDataset`` +
    ``collate`` give them (the official trainer shuffles the files each epoch; a DataLoader with
    ``shuffle=True`` does the same, :class:`panorooms3d.bench.data.OfficialBlockStream` as a pure
    function of a seed and the sample index).

    The first file is read when the folder is opened, so a wrong folder, format or ``size`` fails
    at once; a later file that does not fit fails when it is read, naming the file. A block whose
    voxels all lie below ``size`` is densified into the ``size``^3 grid with the defaults, as the
    official ``collate`` does (a smaller block cannot be told apart from a sparse one).

    Raises DatasetError naming the folder when it is missing, is not a folder or holds no ``*.npz``.
    """

    def __init__(self, folder: Path, size: int = 128) -> None:
        self.folder = Path(folder)
        self.size = int(size)
        if not self.folder.exists():
            raise DatasetError(f"official block folder not found: {self.folder}; pass the folder of the "
                               "official block release (its train/*.npz) or a folder of block .npz files")
        if not self.folder.is_dir():
            raise DatasetError(f"{self.folder} is a file, not a folder of official block files (*.npz)")
        self.files = sorted(self.folder.glob("*.npz"))
        if not self.files:
            raise DatasetError(f"no official block files (*.npz) in {self.folder}; pass the folder that holds "
                               "the block .npz files (targetsdf128loc, targetsdf128, targetsdf128color, "
                               "semanticlabel)")
        read_official_block(self.files[0], self.size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return read_official_block(self.files[int(index)], self.size)


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


def import_official(rooms: Path, out: Path, panoramas: Path | None = None, *, splits: Path | None = None,
                    rooms_per_shard: int = 8, seed: int = 0, progress: Callable[[str], None] | None = None) -> dict:
    """Convert an official release folder (``rooms/*.npz`` [+ ADE panoramas]) into a packed dataset.

    Stages every room (``write_room_volume``/``write_room_panorama``) under ``out`` then packs
    (``pack_dataset``). ``splits``: a folder with the official ``train.txt``/``val.txt``/``test.txt``
    (every imported room must be listed; rooms listed but not imported are ignored). Returns the
    manifest. Raises DatasetError naming the bad file or room.
    """
    rooms = Path(rooms)
    files = sorted(rooms.glob("*.npz"))
    if not files:
        raise DatasetError(f"no official room files (*.npz) in {rooms}")
    official_splits = read_official_splits(splits) if splits is not None else None
    if official_splits is not None:
        listed = {u for members in official_splits.values() for u in members}
        unlisted = [f.name for f in files if room_uid_of(f) not in listed]
        if unlisted:
            raise DatasetError(f"{len(unlisted)} room(s) of {rooms} are in none of the split files of {splits}, "
                               f"e.g. {unlisted[:3]}; import only listed rooms or pass other --splits")
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
                                attrs={"label_source": LABEL_SOURCE, "image": image.name,
                                       "unknown_class_pixels": unknown, "orientation": ORIENTATION})
            split_of[volume.room_uid] = split
    uids = [room_uid_of(f) for f in files]
    if official_splits is not None:
        present = set(uids)
        chosen = {name: [u for u in members if u in present] for name, members in official_splits.items()}
        return pack_dataset(out, rooms_per_shard=rooms_per_shard, splits=chosen, seed=seed)
    if panos:
        by_split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for uid in uids:
            by_split[split_of.get(uid, "train")].append(uid)
        return pack_dataset(out, rooms_per_shard=rooms_per_shard, splits=by_split, seed=seed)
    return pack_dataset(out, rooms_per_shard=rooms_per_shard, seed=seed)
