"""The dataset store: staging, packing, reading, checksums, splits and failure modes (real zarr)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from panorooms3d.store import dataset as ds_mod
from panorooms3d.store.commands import info, pack, view
from panorooms3d.store.dataset import (
    Dataset,
    DatasetError,
    make_splits,
    pack_dataset,
    room_key,
    room_panorama_path,
    room_volume_path,
    write_room_panorama,
    write_room_volume,
)
from panorooms3d.volume import Panorama, RoomVolume


def box_volume(uid: str, shape=(40, 30, 20), seed=0, voxel_size=0.04) -> RoomVolume:
    """A room whose tsdf is the (truncated) signed distance to the walls of a box, with labels."""
    rng = np.random.default_rng(seed)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float32)
    dist = np.min(np.concatenate([idx - 2, np.asarray(shape, np.float32) - 3 - idx], -1), -1)  # voxels to a wall
    tsdf = np.clip(dist / 3.0, -1, 1).astype(np.float32)
    weight = (np.abs(tsdf) < 1).astype(np.float32) * rng.integers(1, 5, shape)
    tsdf[weight == 0] = 1.0
    label = np.where(weight > 0, rng.choice([40, 51, 30, 98], size=shape), 0).astype(np.uint8)
    rgb = (rng.integers(0, 256, (*shape, 3)) * (weight > 0)[..., None]).astype(np.uint8)
    instance = (label.astype(np.uint16) * 10)
    return RoomVolume(tsdf=tsdf, weight=weight.astype(np.float32), rgb=rgb, label=label, instance=instance,
                      origin=np.array([-0.8, 1.2, 0.0]), voxel_size=voxel_size, room_uid=uid,
                      attrs={"fusion": {"frames": 12}})


def some_pano(seed=0, h=32, w=64) -> Panorama:
    rng = np.random.default_rng(seed)
    return Panorama(rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), label=rng.integers(0, 99, (h, w), dtype=np.uint8),
                    instance=rng.integers(0, 9, (h, w)).astype(np.uint16),
                    depth=rng.random((h, w)).astype(np.float32) * 5, camera=np.array([1.0, 2.0, 1.5]))


UIDS = ["houseA/room1", "houseA/room2", "houseB/room1"]


@pytest.fixture()
def packed(tmp_path) -> tuple[Path, dict, dict]:
    d = tmp_path / "data"
    vols = {uid: box_volume(uid, shape=(40 + 3 * i, 30, 20), seed=i) for i, uid in enumerate(UIDS)}
    panos = {UIDS[0]: some_pano(0), UIDS[2]: some_pano(2)}
    for v in vols.values():
        write_room_volume(d, v)
    for uid, p in panos.items():
        write_room_panorama(d, uid, p)
    pack_dataset(d, rooms_per_shard=2)
    return d, vols, panos


def test_room_key():
    assert room_key("HOUSE/ROOM") == "HOUSE__ROOM"
    for bad in ("", "a/b/c", "a__b/c", "../x", "a b/c"):
        with pytest.raises(ValueError):
            room_key(bad)


def test_round_trip_volumes_and_panoramas(packed):
    d, vols, panos = packed
    assert room_volume_path(d, UIDS[0]) == d / "staging" / "houseA__room1" / "volume.zarr"
    assert room_panorama_path(d, UIDS[0]).is_dir()
    ds = Dataset(d)
    assert ds.rooms == sorted(UIDS)
    for uid, v in vols.items():
        got = ds.load_volume(uid)
        for name in ("tsdf", "weight", "rgb", "label", "instance"):
            np.testing.assert_array_equal(getattr(got, name), getattr(v, name))
            assert getattr(got, name).dtype == getattr(v, name).dtype
        np.testing.assert_allclose(got.origin, v.origin)
        assert got.voxel_size == v.voxel_size and got.truncation == v.truncation and got.room_uid == uid
        assert got.attrs == {"fusion": {"frames": 12}}
        info_ = ds.room_info(uid)
        assert info_.shape == v.shape and info_.has_panorama == (uid in panos)
    for uid in UIDS:
        p = ds.load_panorama(uid)
        if uid not in panos:
            assert p is None
            continue
        for name in ("rgb", "label", "instance", "depth"):
            np.testing.assert_array_equal(getattr(p, name), getattr(panos[uid], name))
        np.testing.assert_allclose(p.camera, panos[uid].camera)
    # two shards of (2, 1) rooms, assigned in uid order
    m = ds.manifest
    assert [s["rooms"] for s in m["shards"]] == [sorted(UIDS)[:2], sorted(UIDS)[2:]]
    assert m["format_version"] == 1 and m["taxonomy"]["class_sets"]["paper30"]["class_names"][17] == "wall"
    # class histogram: paper30 'wall' (17) = raw 40 + 98 is door (5)
    labels = np.concatenate([v.label.ravel() for v in vols.values()])
    hist = ds.class_histogram("paper30")
    assert hist[17] == np.count_nonzero(labels == 40) and hist[5] == np.count_nonzero(labels == 98)
    assert hist.sum() == labels.size


def test_chunks_have_crc32c_and_sharding(packed):
    d, _, _ = packed
    meta = json.loads((d / "shards/shard-00000.zarr/houseA__room1/tsdf/zarr.json").read_text())
    codec = meta["codecs"][0]
    assert codec["name"] == "sharding_indexed"
    inner = [c["name"] for c in codec["configuration"]["codecs"]]
    assert inner[-1] == "crc32c" and "zstd" in inner
    assert codec["configuration"]["chunk_shape"] == [64, 64, 64]


def test_read_crop_equals_slicing_with_padding(packed):
    d, vols, _ = packed
    ds = Dataset(d)
    uid = UIDS[1]
    v = vols[uid]
    fills = {"tsdf": 1.0, "weight": 0.0, "rgb": 0, "label": 0, "instance": 0}
    for start, size in [((3, 4, 5), (10, 11, 12)), ((-5, -2, -7), (16, 16, 16)), ((35, 25, 15), (16, 16, 16)),
                        ((-50, 0, 0), (8, 8, 8)), ((0, 0, 0), v.shape)]:
        crop = ds.read_crop(uid, start, size)
        for name, fill in fills.items():
            full = getattr(v, name)
            extra = full.shape[3:]
            truth = np.full((*size, *extra), fill, full.dtype)
            src = [np.arange(s, s + n) for s, n in zip(start, size)]
            inside = [(a >= 0) & (a < full.shape[k]) for k, a in enumerate(src)]
            ii = np.ix_(*[np.nonzero(m)[0] for m in inside])
            jj = np.ix_(*[a[m] for a, m in zip(src, inside)])
            truth[ii] = full[jj]
            np.testing.assert_array_equal(crop[name], truth, err_msg=f"{name} {start} {size}")
            assert crop[name].dtype == full.dtype


def _canonical_sha256(folder: Path) -> tuple[str, int]:
    """The documented canonical hash, written here from docs/dataset.md."""
    files = []
    for dirpath, _, names in os.walk(folder):
        for n in names:
            p = Path(dirpath) / n
            files.append((p.relative_to(folder).as_posix(), p))
    h = hashlib.sha256()
    size = 0
    for rel, p in sorted(files, key=lambda f: f[0].encode()):
        data = p.read_bytes()
        size += len(data)
        h.update(rel.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest(), size


def test_manifest_sha256_sizes_and_splits(packed):
    d, _, _ = packed
    m = json.loads((d / "manifest.json").read_text())
    for s in m["shards"]:
        sha, size = _canonical_sha256(d / s["file"])
        assert s["sha256"] == sha and s["size_bytes"] == size
    for name in ("train", "val", "test"):
        listed = (d / "splits" / f"{name}.txt").read_text().split()
        assert listed == [r["uid"] for r in m["rooms"] if r["split"] == name]
    assert Dataset(d).verify() == []
    # re-packing from scratch gives byte-identical shards and the same assignment and splits
    import shutil

    shutil.rmtree(d / "shards")
    m2 = pack_dataset(d, rooms_per_shard=2)
    assert [(s["file"], s["sha256"], s["rooms"]) for s in m2["shards"]] == [
        (s["file"], s["sha256"], s["rooms"]) for s in m["shards"]]
    assert [r["split"] for r in m2["rooms"]] == [r["split"] for r in m["rooms"]]


def test_splits_deterministic_and_by_room():
    uids = [f"h{i // 3}/r{i % 3}" for i in range(100)]
    a = make_splits(uids, (0.8, 0.1, 0.1), seed=3)
    assert a == make_splits(list(reversed(uids)), (0.8, 0.1, 0.1), seed=3)
    assert sum(v == "val" for v in a.values()) == 10 and sum(v == "test" for v in a.values()) == 10
    assert a != make_splits(uids, (0.8, 0.1, 0.1), seed=4)
    explicit = make_splits(["a/1", "b/1"], {"train": ["a/1"], "test": ["b/1"]})
    assert explicit == {"a/1": "train", "b/1": "test"}
    with pytest.raises(ValueError, match="c/1"):
        make_splits(["a/1"], {"train": ["a/1", "c/1"]})
    with pytest.raises(ValueError, match="sum"):
        make_splits(uids, (0.5, 0.1, 0.1))


def _flip_chunk_byte(d: Path, key: str, array: str = "tsdf") -> Path:
    chunk = sorted((d / "shards/shard-00000.zarr" / key / array / "c").rglob("*"))
    chunk = [c for c in chunk if c.is_file()][0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 3] ^= 0xFF
    chunk.write_bytes(bytes(data))
    return chunk


def test_corrupt_chunk_detected_by_verify_dataset_and_cli(packed):
    d, _, _ = packed
    _flip_chunk_byte(d, "houseA__room2")
    ds = Dataset(d)
    problems = ds.verify()
    assert any("shard-00000" in p and "houseA/room2" in p and "sha256" in p for p in problems), problems
    assert any("shard-00000" in p and "houseA/room2" in p and "checksum" in p for p in problems), problems
    assert not any("houseA/room1" in p or "houseB" in p for p in problems)
    with pytest.raises(DatasetError, match=r"shard-00000.*houseA/room2"):
        ds.load_volume("houseA/room2")
    ds.load_volume("houseA/room1")  # the neighbour in the same shard still reads
    result = CliRunner().invoke(info, [str(d), "--verify"])
    assert result.exit_code != 0
    assert "shard-00000" in result.output and "houseA/room2" in result.output
    assert "Traceback" not in result.output


def test_truncated_shard_file_detected(packed):
    d, _, _ = packed
    chunk = [c for c in sorted((d / "shards/shard-00001.zarr/houseB__room1/rgb/c").rglob("*")) if c.is_file()][0]
    chunk.write_bytes(chunk.read_bytes()[:-100])
    problems = Dataset(d).verify()
    assert problems and all("shard-00001" in p and "houseB/room1" in p for p in problems)


def test_interrupted_pack_keeps_previous_manifest(packed, monkeypatch):
    d, vols, _ = packed
    before = (d / "manifest.json").read_bytes()
    write_room_volume(d, box_volume("houseA/room0", seed=9))  # shifts every room to a new shard
    real = ds_mod._write_shard
    calls = []

    def failing(path, dataset_dir, uids):
        calls.append(uids)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated kill during the second shard")
        return real(path, dataset_dir, uids)

    monkeypatch.setattr(ds_mod, "_write_shard", failing)
    with pytest.raises(KeyboardInterrupt):
        pack_dataset(d, rooms_per_shard=2)
    assert (d / "manifest.json").read_bytes() == before
    assert Dataset(d).verify() == []  # the previous dataset is whole
    assert not [p for p in (d / "shards").iterdir() if ".tmp-" in p.name]
    monkeypatch.setattr(ds_mod, "_write_shard", real)
    stale = d / "shards" / ".shard-00000.zarr.tmp-999-deadbeef"
    stale.mkdir()
    (stale / "junk").write_text("half a shard")
    m = pack_dataset(d, rooms_per_shard=2)
    assert not stale.exists()
    assert len(m["rooms"]) == 4 and Dataset(d).verify() == []


def test_repack_reuses_unchanged_shards(packed):
    d, _, _ = packed
    shard = d / "shards/shard-00000.zarr"
    mtime = shard.stat().st_mtime_ns
    pack_dataset(d, rooms_per_shard=2)
    assert shard.stat().st_mtime_ns == mtime


def test_bad_inputs_give_clear_errors(tmp_path):
    v = box_volume("h/r", shape=(8, 8, 8))
    v.weight[...] = 0
    with pytest.raises(ValueError, match="h/r.*empty"):
        write_room_volume(tmp_path, v)
    with pytest.raises(DatasetError, match="manifest.json"):
        Dataset(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="corrupt.*manifest.json"):
        Dataset(tmp_path)
    result = CliRunner().invoke(info, [str(tmp_path)])
    assert result.exit_code != 0 and "manifest.json" in result.output and "Traceback" not in result.output
    with pytest.raises(DatasetError, match="no staged"):
        pack_dataset(tmp_path / "empty")


def test_cli_pack_info_json_and_view(packed, tmp_path):
    d, vols, _ = packed
    r = CliRunner().invoke(pack, [str(d), "--rooms-per-shard", "3"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(info, [str(d), "--json", "--verify"])
    assert r.exit_code == 0, r.output
    facts = json.loads(r.output)
    assert facts["rooms"] == 3 and facts["shards"] == 1 and facts["verify"]["ok"]
    assert facts["voxels"] == sum(int(np.prod(v.shape)) for v in vols.values())
    assert set(facts["class_histogram"]) >= {"wall", "floor", "ceiling"}

    ply = tmp_path / "room.ply"
    r = CliRunner().invoke(view, [str(d), "houseA/room1", "--out", str(ply), "--color", "class"])
    assert r.exit_code == 0, r.output
    import trimesh

    mesh = trimesh.load(ply)
    v = vols["houseA/room1"]
    # the zero level of the box tsdf lies on the walls: index 2 and shape - 3 -> world origin + (i + 0.5) * vs
    lo = v.origin + (2 + 0.5) * v.voxel_size
    hi = v.origin + (np.asarray(v.shape) - 3 + 0.5) * v.voxel_size
    np.testing.assert_allclose(mesh.bounds[0], lo, atol=1e-3)
    np.testing.assert_allclose(mesh.bounds[1], hi, atol=1e-3)
    png = tmp_path / "room.png"
    r = CliRunner().invoke(view, [str(d), "houseA/room1", "--out", str(png), "--axis", "x", "--index", "5"])
    assert r.exit_code == 0, r.output
    from PIL import Image

    assert Image.open(png).size[1] == v.shape[2] * 4
    r = CliRunner().invoke(view, [str(d), "nope/room", "--out", str(png)])
    assert r.exit_code != 0 and "nope/room" in r.output
