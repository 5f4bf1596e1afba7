"""Tiny packed datasets of analytic box rooms for the benchmark tests (no rendering needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from panorooms3d.geometry import equirect_directions, voxel_centres
from panorooms3d.volume import Panorama, RoomVolume

# raw ids: floor, wall, ceiling, and a bed standing in the room
FLOOR, WALL, CEILING, BED = 51, 40, 30, 17


def box_room(uid: str, size_m=(1.2, 1.0, 0.8), voxel_size: float = 0.04, seed: int = 0) -> tuple[RoomVolume, Panorama]:
    """A box room with a box object; tsdf is the analytic signed distance (truncated), labels exact.

    The room spans [0, size] (metres) inside a grid with one voxel of margin; the object is a box
    on the floor. Everything within the truncation band is observed (weight 1).
    """
    rng = np.random.default_rng(seed)
    size = np.asarray(size_m)
    origin = np.full(3, -voxel_size)
    shape = tuple(int(round(s / voxel_size)) + 2 for s in size)
    c = voxel_centres(origin, voxel_size, shape)
    # distance to each wall plane (positive inside the room)
    d = np.stack([c[..., 0], size[0] - c[..., 0], c[..., 1], size[1] - c[..., 1], c[..., 2], size[2] - c[..., 2]], -1)
    room_sd = d.min(-1)
    lo = np.array([0.3, 0.3, 0.0]) + rng.uniform(0, 0.2, 3) * [1, 1, 0]
    hi = lo + np.array([0.4, 0.3, 0.3])
    # signed distance to the object box (positive outside), approximate inside
    q = np.maximum(lo - c, c - hi)
    obj_sd = np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)
    sd = np.minimum(room_sd, obj_sd)
    trunc = 3 * voxel_size
    tsdf = np.clip(sd / trunc, -1, 1).astype(np.float32)
    near = np.abs(sd) < trunc
    face = d.argmin(-1)
    label = np.zeros(shape, np.uint8)
    label[near] = np.array([WALL, WALL, WALL, WALL, FLOOR, CEILING], np.uint8)[face[near]]
    on_obj = near & (obj_sd < room_sd)
    label[on_obj] = BED
    weight = near.astype(np.float32)
    tsdf[~near & (sd > 0)] = 1.0
    colours = {0: (0, 0, 0), FLOOR: (150, 100, 60), WALL: (220, 220, 210), CEILING: (250, 250, 250), BED: (40, 60, 160)}
    rgb = np.zeros((*shape, 3), np.uint8)
    for lab, col in colours.items():
        rgb[label == lab] = col
    instance = (label == BED).astype(np.uint16)
    vol = RoomVolume(tsdf=tsdf, weight=weight, rgb=rgb, label=label, instance=instance, origin=origin,
                     voxel_size=voxel_size, truncation=3.0, room_uid=uid)
    h, w = 16, 32
    dirs = equirect_directions(h, w)
    pano_label = np.where(dirs[..., 2] > 0.3, CEILING, np.where(dirs[..., 2] < -0.3, FLOOR, WALL)).astype(np.uint8)
    pano = Panorama(rgb=np.zeros((h, w, 3), np.uint8), label=pano_label, instance=np.zeros((h, w), np.uint16),
                    depth=np.ones((h, w), np.float32), camera=size / 2)
    return vol, pano


def make_dataset(root: Path, n_rooms: int = 4, splits: dict | None = None, house: str = "box",
                 relabel=None) -> Path:
    """Stage and pack ``n_rooms`` box rooms (uids ``<house><i>/Room-<i>``) into a dataset at ``root``; returns root.

    ``relabel(label) -> label``, when given, replaces each volume's label array before it is stored.
    """
    from panorooms3d.store.dataset import pack_dataset, write_room_panorama, write_room_volume

    uids = [f"{house}{i}/Room-{i}" for i in range(n_rooms)]
    for i, uid in enumerate(uids):
        vol, pano = box_room(uid, seed=i)
        if relabel is not None:
            vol.label = relabel(vol.label)
        write_room_volume(root, vol)
        write_room_panorama(root, uid, pano)
    if splits is None:
        splits = {"train": uids[:-1], "val": [], "test": uids[-1:]}
    pack_dataset(root, rooms_per_shard=2, splits=splits)
    return root


def moving_average(states: list[dict], decay: float, ramp: float = 10.0) -> dict:
    """The weight average a run with ``ema = decay`` and ``ema_ramp = ramp`` should hold after ``len(states) - 1``
    steps, from the raw weights after each step (``states[0]``: the initial ones), written out from its definition:
    avg_t = d_t avg_(t-1) + (1 - d_t) w_t with d_t = min(decay, (1 + t) / (ramp + t)); integer buffers (counters)
    are the latest raw value."""
    expected = {k: v.clone() for k, v in states[0].items()}
    for t in range(1, len(states)):
        d = min(decay, (1 + t) / (ramp + t))
        for k, v in expected.items():
            if v.is_floating_point():
                v.mul_(d).add_(states[t][k], alpha=1 - d)
            else:
                v.copy_(states[t][k])
    return expected
