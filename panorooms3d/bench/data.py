"""Training and evaluation data: the official input encoding, random blocks, official blocks, whole rooms.

Input encoding (the official 3D Segmenter code, paper.md): a 4-channel volume
``x = [-3 * tsdf, r, g, b]`` with colour mapped from uint8 to [-1, 1]; unobserved voxels
(weight 0) get colour -1 and label 0 (void); free space therefore has channel 0 = -3.
Targets are raw 3D-FRONT ids mapped through a class set (``paper30`` by default).

Rooms are padded as the paper does: each spatial dimension up to a multiple of ``pad_to``
(128) with free space (tsdf 1, unobserved). Random ``block``^3 crops are drawn from the padded
room; augmentation flips x and/or y and turns 0/90/180/270 degrees about z, identically for the
volume and the labels. Every sample is a pure function of (seed, index), so training is
deterministic and resumable whatever the number of DataLoader workers.

The official sparse block release (pre-cut 128^3 blocks) is read by :class:`OfficialBlockStream`:
the files in a fresh shuffle each epoch, no augmentation, as the official ``train.py`` draws them.
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from panorooms3d.taxonomy import get_class_set

TSDF_SCALE = -3.0
_COLOUR = np.arange(256, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)  # uint8 colour -> [-1, 1]


def encode_input(tsdf: np.ndarray, rgb: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """The official 4-channel input (4, X, Y, Z) float32 of a volume.

    Args:
        tsdf: (X, Y, Z) normalised tsdf in [-1, 1] (1 = free or unobserved).
        rgb: (X, Y, Z, 3) uint8 colour.
        weight: (X, Y, Z) observation weight (0 = unobserved). Optional: without it, voxels with
            tsdf 1 (free or unobserved) get colour -1. Stored rooms have rgb 0 (= colour -1)
            wherever they are unobserved or free, so both give the same input on stored data, and
            training reads one array less.

    Returns:
        channel 0 = -3 * tsdf, channels 1-3 = rgb / 127.5 - 1 (unobserved: -1).
    """
    x = np.empty((4, *tsdf.shape), np.float32)
    x[0] = TSDF_SCALE * np.asarray(tsdf, np.float32)
    unobserved = np.asarray(weight) <= 0 if weight is not None else np.asarray(tsdf) >= 1.0
    # rgb / 127.5 - 1 in float32 through a table of the 256 values (the same float32 operations, so the same bits,
    # 4-5x faster); unobserved voxels read entry 0, which is -1.
    rgb = np.where(unobserved[..., None], np.uint8(0), np.asarray(rgb, np.uint8))
    for c in range(3):
        np.take(_COLOUR, rgb[..., c], out=x[1 + c])
    return x


def free_space_input(shape, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """An encoded input (B, 4, X, Y, Z) of free space everywhere: channel 0 = -3 (tsdf 1), colours -1.

    What padding and the outside of a room look like in training blocks (``read_crop``).
    """
    x = torch.full(tuple(shape[:1]) + (4,) + tuple(shape[1:]), -1.0, dtype=dtype, device=device)
    x[:, 0] = TSDF_SCALE
    return x


def encode_target(label: np.ndarray, weight: np.ndarray | None = None, class_set: str = "paper30") -> np.ndarray:
    """Class ids (X, Y, Z) int64 of raw labels; unobserved voxels (weight 0, when given) are void (0)."""
    target = get_class_set(class_set).map(label).astype(np.int64)
    if weight is not None:
        target[np.asarray(weight) <= 0] = 0
    return target


def encode_official(tsdf: np.ndarray, rgb: np.ndarray, label: np.ndarray, class_set: str = "paper30",
                    sdf_dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """The official loaders' input (4, X, Y, Z) float32 and target (X, Y, Z) int64 of a room.

    Element-wise as eval.py / distill.py build them from an official ``.npz`` (rooms imported by
    ``import-official`` keep ``sdf128`` unclipped and its file dtype in the attribute ``sdf_dtype``):
    ``s = -3 * sdf`` computed in ``sdf_dtype`` (float16 files: in float16); colour and label are kept
    where ``s > -3`` (sdf < 1, including sdf <= -1) and are -1 and void (0) elsewhere; colour is
    ``(rgb / 255) * 2 - 1``; the label goes through ``class_set``; channel 0 is ``s``, not clipped.

    Args:
        tsdf: (X, Y, Z) sdf as stored (float16 values are exact in float32).
        rgb: (X, Y, Z, 3) uint8 colour.
        label: (X, Y, Z) raw 3D-FRONT ids.
        class_set: target class set (the official 30 classes = ``paper30``).
        sdf_dtype: the dtype the official file had (``float16`` or ``float32``).
    """
    sdf = np.asarray(tsdf).astype(np.dtype(sdf_dtype))
    s = sdf.dtype.type(-3) * sdf
    keep = s > -3
    x = np.empty((4, *sdf.shape), np.float32)
    x[0] = s
    colour = np.moveaxis(np.asarray(rgb).astype(np.float32), -1, 0) / np.float32(255)
    x[1:] = np.where(keep[None], colour, np.float32(0)) * np.float32(2) - np.float32(1)
    y = get_class_set(class_set).map(np.where(keep, np.asarray(label), 0)).astype(np.int64)
    return x, y


def _encode_project(tsdf, rgb, label, weight, attrs, class_set):
    return encode_input(tsdf, rgb, weight), encode_target(label, weight, class_set)


def _encode_official(tsdf, rgb, label, weight, attrs, class_set):
    return encode_official(tsdf, rgb, label, class_set, str((attrs or {}).get("sdf_dtype", "float32")))


#: Input encodings: name -> fn(tsdf, rgb, label, weight | None, room attrs, class_set) -> (x, y).
#: ``project``: :func:`encode_input` / :func:`encode_target` (this project's documented encoding);
#: ``official``: :func:`encode_official` (the official loaders, element-wise).
ENCODINGS = {"project": _encode_project, "official": _encode_official}


def encode(tsdf, rgb, label, weight=None, attrs: dict | None = None, class_set: str = "paper30",
           encoding: str = "project") -> tuple[np.ndarray, np.ndarray]:
    """(x (4, X, Y, Z) float32, y (X, Y, Z) int64) of a room or a crop with the named encoding (:data:`ENCODINGS`)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown input encoding {encoding!r}; use one of {tuple(ENCODINGS)}")
    return ENCODINGS[encoding](tsdf, rgb, label, weight, attrs, class_set)


def padded_shape(shape, pad_to: int | Sequence[int] = 128) -> tuple[int, int, int]:
    """Each dimension rounded up to a multiple of ``pad_to`` (the paper's padding), one int or one per axis."""
    pads = block_size(pad_to)
    return tuple(int(np.ceil(s / p) * p) for s, p in zip(shape, pads))  # type: ignore[return-value]


def augment(x: np.ndarray, y: np.ndarray, flip_x: bool, flip_y: bool, turns: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip and turn a (C, X, Y, Z) input and its (X, Y, Z) target identically about the z axis."""
    if flip_x:
        x, y = x[:, ::-1], y[::-1]
    if flip_y:
        x, y = x[:, :, ::-1], y[:, ::-1]
    if turns % 4:
        x, y = np.rot90(x, turns, axes=(1, 2)), np.rot90(y, turns, axes=(0, 1))
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


@dataclass
class BlockConfig:
    """How training blocks are drawn.

    Attributes:
        block: block size in voxels: an int (a cube, the paper: 128) or [bx, by, bz].
        pad_to: rooms are padded to multiples of this before a block start is drawn, one int or [px, py, pz]
            (default: the block's largest edge; the paper: 128). With ``pad_to`` equal to a block edge that
            is at least a room's extent, every block starts at the room's first voxel along that axis.
        class_set: target class set.
        augment: random flips and turns about z (quarter turns only when bx == by).
        seed: the sampling seed.
        sampling: ``uniform`` (the paper: the block start uniform over the padded room) or
            ``surface``: with probability ``surface_fraction`` the block is centred (plus a
            uniform jitter of a quarter block) on a voxel drawn uniformly from the room's
            labelled (non-void) voxels, otherwise uniform; keeps blocks from being mostly empty
            space when blocks are much smaller than rooms.
        surface_fraction: see ``sampling``.
        encoding: the input encoding (:data:`ENCODINGS`): ``project`` for rooms this project builds,
            ``official`` for imported official rooms (the official loaders, element-wise).
    """

    block: int | list[int] | tuple[int, int, int] = 128
    pad_to: int | list[int] | tuple[int, int, int] | None = None
    class_set: str = "paper30"
    augment: bool = True
    seed: int = 0
    sampling: str = "uniform"
    surface_fraction: float = 0.75
    encoding: str = "project"

    @property
    def size(self) -> tuple[int, int, int]:
        """The block size (bx, by, bz)."""
        return block_size(self.block)


SAMPLINGS = ("uniform", "surface")


def block_size(block) -> tuple[int, int, int]:
    """(bx, by, bz) of a block given as an int (cube) or three ints."""
    if isinstance(block, (int, np.integer)):
        return (int(block),) * 3  # type: ignore[return-value]
    b = tuple(int(v) for v in block)
    if len(b) != 3 or min(b) <= 0:
        raise ValueError(f"block must be a positive int or three positive ints, got {block!r}")
    return b  # type: ignore[return-value]


def labelled_subset(rooms: list[str], fraction: float, seed: int = 0) -> list[str]:
    """The rooms whose 3D labels a run may use when only ``fraction`` of the training rooms are labelled.

    A seeded permutation of the sorted uids, so every run (whatever its own seed) sees the same
    labelled rooms; at least one room when ``fraction`` > 0; none when it is 0 (distillation from the
    teacher alone). ``fraction`` = 1 keeps all rooms.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"labelled fraction must be in [0, 1], got {fraction}")
    ordered = sorted(rooms)
    if fraction >= 1.0:
        return ordered
    if fraction <= 0.0:  # no 3D labels at all (distillation from the teacher alone)
        return []
    keep = max(1, int(round(fraction * len(ordered))))
    perm = np.random.default_rng([seed, 7]).permutation(len(ordered))
    return [ordered[i] for i in sorted(perm[:keep])]


def select_rooms(rooms: list[str], patterns: list[str], where: str = "") -> list[str]:
    """The rooms whose uid matches one of ``patterns`` (``fnmatch``: ``*``, ``?``, ``[...]``), in their order.

    Raises ValueError when ``patterns`` is not a list of strings, when it is empty, or when one of
    them matches no room (a misspelt pattern would otherwise silently drop rooms); ``where`` (e.g.
    "the 'train' split of out/data") names the rooms in the message.
    """
    if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"rooms must be a list of uid patterns such as ['synth-1-*'], got {patterns!r}")
    of = f" of {where}" if where else ""
    if not patterns:
        raise ValueError(f"rooms = [] selects none of the {len(rooms)} rooms{of}; leave rooms unset to keep them all")
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(r, p) for r in rooms)]
    if unmatched:
        raise ValueError(f"rooms pattern(s) {unmatched} match none of the {len(rooms)} rooms{of} (e.g. {rooms[:2]})")
    return [r for r in rooms if any(fnmatch.fnmatchcase(r, p) for p in patterns)]


class BlockDataset(TorchDataset):
    """Random ``block``^3 crops of the rooms of one split; sample ``i`` is a pure function of (seed, i).

    ``len`` is nominal (``samples``); any index is valid. Returns (x (4, B, B, B) float32,
    y (B, B, B) int64) tensors. Rooms are read and encoded once and kept in memory (up to ``CACHE_BYTES``
    per worker, the rooms drawn most recently), so a sample is a crop of an array: 4-5x faster than reading and
    encoding each block, with the same values.
    """

    #: The encoded rooms a worker keeps (bytes): 17 bytes a voxel, about 400 of the CPU track's rooms (8 cm) or 50 at 4 cm.
    CACHE_BYTES = 1 << 30

    def __init__(self, dataset_dir: Path, rooms: list[str], config: BlockConfig, samples: int = 10**9):
        if not rooms:
            raise ValueError(f"no rooms to draw training blocks from in {dataset_dir}")
        self.dataset_dir = Path(dataset_dir)
        self.rooms = list(rooms)
        self.config = config
        self.samples = samples
        if config.sampling not in SAMPLINGS:
            raise ValueError(f"unknown block sampling {config.sampling!r}; use one of {SAMPLINGS}")
        if config.encoding not in ENCODINGS:
            raise ValueError(f"unknown input encoding {config.encoding!r}; use one of {tuple(ENCODINGS)}")
        self._attrs: dict[str, dict] = {}
        self._ds = None
        self._surface: dict[str, np.ndarray] = {}
        self._rooms: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._room_bytes = 0

    def _dataset(self):
        if self._ds is None:  # opened lazily: once per DataLoader worker
            from panorooms3d.store.dataset import Dataset

            self._ds = Dataset(self.dataset_dir)
        return self._ds

    def __len__(self) -> int:
        return self.samples

    def _surface_voxels(self, uid: str) -> np.ndarray:
        """(N, 3) int32 indices of the room's labelled (non-void) voxels (cached per worker)."""
        if uid not in self._surface:
            label = self._dataset().read_crop(uid, (0, 0, 0), self._dataset().room_info(uid).shape,
                                              arrays=("label",))["label"]
            target = get_class_set(self.config.class_set).map(label)
            self._surface[uid] = np.argwhere(target > 0).astype(np.int32)
        return self._surface[uid]

    def _room_attrs(self, uid: str) -> dict:
        """The room's stored attributes (e.g. an imported room's ``sdf_dtype``), read once per worker."""
        if uid not in self._attrs:
            group = self._dataset()._group(uid)
            self._attrs[uid] = dict(group.attrs).get("attrs", {}) or {}
        return self._attrs[uid]

    def draw(self, index: int) -> tuple[str, np.ndarray, tuple[bool, bool, int]]:
        """The room, block start (3,) and augmentation of sample ``index``."""
        rng = np.random.default_rng([self.config.seed, int(index)])
        uid = self.rooms[int(rng.integers(len(self.rooms)))]
        shape = self._dataset().room_info(uid).shape
        b = np.asarray(self.config.size)
        padded = np.asarray(padded_shape(shape, int(b.max()) if self.config.pad_to is None else self.config.pad_to))
        start = np.array([int(rng.integers(0, max(p - s, 0) + 1)) for p, s in zip(padded, b)])
        aug = (bool(rng.integers(2)), bool(rng.integers(2)), int(rng.integers(4))) if self.config.augment else (
            False, False, 0)
        if b[0] != b[1]:  # a quarter turn would swap bx and by: half turns only
            aug = (aug[0], aug[1], aug[2] & 2)
        if self.config.sampling == "surface" and rng.random() < self.config.surface_fraction:
            voxels = self._surface_voxels(uid)
            if len(voxels):
                centre = voxels[int(rng.integers(len(voxels)))]
                jitter = rng.integers(-(b // 4), b // 4 + 1)
                start = np.clip(centre + jitter - b // 2, 0, np.maximum(padded - b, 0))
        return uid, start, aug

    def encoded_room(self, uid: str) -> tuple[np.ndarray, np.ndarray]:
        """The whole room encoded: (x (4, X, Y, Z) float32, y (X, Y, Z) uint8 class ids), kept in memory (per worker).

        The rooms most recently drawn are kept up to :attr:`CACHE_BYTES`; older ones are dropped and read
        again when drawn. Encoding is element-wise, so a crop of the encoded room is the encoded crop.
        """
        if uid in self._rooms:
            self._rooms.move_to_end(uid)
            return self._rooms[uid]
        ds = self._dataset()
        arrays = ds.read_crop(uid, (0, 0, 0), ds.room_info(uid).shape, arrays=("tsdf", "rgb", "label"))
        x, y = encode(arrays["tsdf"], arrays["rgb"], arrays["label"], None, self._room_attrs(uid),
                      self.config.class_set, self.config.encoding)
        room = (x, y.astype(np.uint8) if 0 <= y.min(initial=0) and y.max(initial=0) < 256 else y)  # class ids: 0-98
        self._rooms[uid] = room
        self._room_bytes += x.nbytes + room[1].nbytes
        while self._room_bytes > self.CACHE_BYTES and len(self._rooms) > 1:
            _, (ox, oy) = self._rooms.popitem(last=False)
            self._room_bytes -= ox.nbytes + oy.nbytes
        return room

    def _outside(self, uid: str) -> tuple[np.ndarray, int]:
        """The encoding (4,) of the voxels outside a room (``read_crop``'s fill: tsdf 1, rgb 0, label 0) and its class."""
        x, y = encode(np.ones((1, 1, 1), np.float32), np.zeros((1, 1, 1, 3), np.uint8), np.zeros((1, 1, 1), np.uint8),
                      None, self._room_attrs(uid), self.config.class_set, self.config.encoding)
        return x[:, 0, 0, 0], int(y[0, 0, 0])

    def crop(self, uid: str, start, size) -> tuple[np.ndarray, np.ndarray]:
        """The encoded box [start, start + size) of a room: (x (4, *size) float32, y (*size) int64), padded with
        the encoding of free space outside it; equal to encoding ``read_crop``'s box."""
        from panorooms3d.store.dataset import crop_slices

        room_x, room_y = self.encoded_room(uid)
        src, dst, inside = crop_slices(room_y.shape, start, size)
        if inside:  # no padding
            return room_x[(slice(None), *src)].copy(), room_y[src].astype(np.int64)
        fill_x, fill_y = self._outside(uid)
        x = np.empty((4, *map(int, size)), np.float32)
        x[:] = fill_x[:, None, None, None]
        y = np.full(tuple(map(int, size)), fill_y, np.int64)
        if src is not None:
            x[(slice(None), *dst)] = room_x[(slice(None), *src)]
            y[dst] = room_y[src]
        return x, y

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        uid, start, aug = self.draw(index)
        x, y = augment(*self.crop(uid, start, self.config.size), *aug)
        return torch.from_numpy(x), torch.from_numpy(y)


class OfficialBlockStream(TorchDataset):
    """The official sparse block release as a training stream: epochs of a fresh shuffle of the files.

    The official ``train.py`` iterates a DataLoader with ``shuffle=True`` over the block files, epoch
    after epoch, without augmentation. Here sample ``index`` is block ``perm_e[index % n]`` of the
    ``n`` files (sorted by name), with ``e = index // n`` and ``perm_e`` a permutation drawn from
    (seed, e): a pure function of (seed, index), so training stays deterministic and resumable and
    DDP ranks (which draw interleaved indices) share out each epoch's files. Every file is seen once
    per epoch, as in the official trainer; unlike it, a batch may straddle two epochs (batches are
    always full, the official last batch of an epoch is short).

    Items are (x (4, B, B, B) float32, y (B, B, B) int64) tensors, element-wise as the official
    ``collate`` builds them (:func:`panorooms3d.store.official.read_official_block`); ``len`` is
    nominal (``samples``), any index is valid.

    Args:
        folder: a folder of official block ``.npz`` files.
        seed: the shuffling seed.
        size: the block edge B (the official release: 128).
    """

    def __init__(self, folder: Path, seed: int = 0, size: int = 128, samples: int = 10**9) -> None:
        from panorooms3d.store.official import OfficialBlocks

        self.blocks = OfficialBlocks(Path(folder), size=size)
        self.seed = int(seed)
        self.samples = samples
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.samples

    def block_of(self, index: int) -> int:
        """The position (in sorted file order) of the block file of sample ``index``."""
        n = len(self.blocks)
        epoch, position = divmod(int(index), n)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, 11, epoch]).permutation(n))
        return int(self._perm[1][position])

    def file_of(self, index: int) -> Path:
        """The block file of sample ``index``."""
        return self.blocks.files[self.block_of(index)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.blocks[self.block_of(index)]
        return torch.from_numpy(x), torch.from_numpy(y)


@dataclass
class RoomSample:
    """A whole room for evaluation and distillation.

    Attributes:
        uid: room uid.
        x: (4, X, Y, Z) float32 encoded input (unpadded; models pad internally).
        y: (X, Y, Z) int64 class targets.
        tsdf: (X, Y, Z) float32 normalised tsdf (for the panoramic projection).
        origin: (3,) world corner of the grid (metres); voxel_size: metres.
        panorama_label: (H, W) int64 class ids of the panorama, or None.
        camera: (3,) world position of the panorama camera, or None.
    """

    uid: str
    x: np.ndarray
    y: np.ndarray
    tsdf: np.ndarray
    origin: np.ndarray
    voxel_size: float
    panorama_label: np.ndarray | None = None
    panorama_rgb: np.ndarray | None = None
    camera: np.ndarray | None = None


def load_room(ds, uid: str, class_set: str = "paper30", encoding: str = "project") -> RoomSample:
    """Load and encode room ``uid`` of a :class:`panorooms3d.store.dataset.Dataset` (``encoding``: see ENCODINGS)."""
    vol = ds.load_volume(uid)
    pano = ds.load_panorama(uid)
    cs = get_class_set(class_set)
    x, y = encode(vol.tsdf, vol.rgb, vol.label, vol.weight, vol.attrs, class_set, encoding)
    return RoomSample(
        uid=uid,
        x=x,
        y=y,
        tsdf=np.asarray(vol.tsdf, np.float32),
        origin=vol.origin,
        voxel_size=vol.voxel_size,
        panorama_label=None if pano is None else cs.map(pano.label).astype(np.int64),
        panorama_rgb=None if pano is None else pano.rgb,
        camera=None if pano is None else pano.camera,
    )
