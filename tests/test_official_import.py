"""Import of the official PanoRooms3D release format (files written here in that format)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from panorooms3d.store.commands import import_official_command
from panorooms3d.store.dataset import Dataset, DatasetError
from panorooms3d.store.official import LABEL_SOURCE, ORIENTATION, read_official_room, unpack_colour
from panorooms3d.taxonomy import get_class_set


def write_official_room(path: Path, seed: int, shape=(24, 20, 16)) -> dict:
    rng = np.random.default_rng(seed)
    sdf = np.ones(shape, np.float32)
    sdf[:, :, :4] = rng.uniform(-0.99, 0.99, (*shape[:2], 4))  # a floor band is observed
    rgb = rng.integers(0, 256, (*shape, 3))
    packed = (rgb[..., 2] * 65536 + rgb[..., 1] * 256 + rgb[..., 0]).astype(np.float64)
    label = np.where(sdf < 1, rng.choice([51, 40, 17], size=shape), 0).astype(np.int64)
    np.savez_compressed(path, sdf128=sdf, color128=packed, semanticlabel=label)
    return {"sdf": sdf, "rgb": rgb.astype(np.uint8), "label": label}


def write_official_pano(root: Path, split: str, stem: str, seed: int, h=16, w=32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 30, (h, w)).astype(np.uint8)
    classes[0, 0] = 200  # an out-of-range value: stored as void and counted
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / split / f"{stem}.jpg")
    ann = np.stack([classes, np.zeros_like(classes), np.zeros_like(classes)], -1)
    Image.fromarray(ann).save(root / "annotations" / split / f"{stem}.png")
    return classes


def test_unpack_colour():
    packed = np.array([0.0, 255.0, 256.0, 65536.0, 2 * 65536 + 3 * 256 + 4])
    np.testing.assert_array_equal(unpack_colour(packed), [[0, 0, 0], [255, 0, 0], [0, 1, 0], [0, 0, 1], [4, 3, 2]])


def test_import_official_rooms_and_panoramas(tmp_path):
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    truth = {stem: write_official_room(rooms / f"{stem}.npz", i) for i, stem in enumerate(["h1_r1", "h1_r2", "h2_r1"])}
    panos = tmp_path / "panos"
    classes = {"h1_r1": write_official_pano(panos, "training", "h1_r1", 0),
               "h2_r1": write_official_pano(panos, "validation", "h2_r1", 1)}
    out = tmp_path / "data"
    r = CliRunner().invoke(import_official_command, ["--rooms", str(rooms), "--panoramas", str(panos), "--out", str(out),
                                                     "--rooms-per-shard", "2"])
    assert r.exit_code == 0, r.output
    ds = Dataset(out)
    assert ds.rooms == ["h1_r1", "h1_r2", "h2_r1"]
    assert ds.split("val") == ["h2_r1"] and ds.split("train") == ["h1_r1", "h1_r2"]
    for stem, t in truth.items():
        v = ds.load_volume(stem)
        observed = t["sdf"] < 1  # the official loaders' mask: -3 * sdf > -3
        np.testing.assert_array_equal(v.tsdf, t["sdf"])
        np.testing.assert_array_equal(v.weight, observed.astype(np.float32))
        np.testing.assert_array_equal(v.rgb[observed], t["rgb"][observed])
        assert (v.rgb[~observed] == 0).all()
        np.testing.assert_array_equal(v.label, t["label"])
        assert v.voxel_size == 0.04 and (v.origin == 0).all() and (v.instance == 0).all()
    paper30 = get_class_set("paper30")
    for stem, cls in classes.items():
        p = ds.load_panorama(stem)
        expect = np.where(cls < 30, cls, 0)[:, ::-1]  # stored mirrored: column u = official column W-1-u
        np.testing.assert_array_equal(paper30.map(p.label), expect)  # exact under paper30
        assert (p.depth == 0).all()
        np.testing.assert_allclose(p.camera, np.array([24, 20, 16]) * 0.04 / 2)
        attrs = ds.panorama_attrs(stem)
        assert attrs["label_source"] == LABEL_SOURCE and attrs["unknown_class_pixels"] == 1
        assert attrs["orientation"] == ORIENTATION
    assert ds.load_panorama("h1_r2") is None
    assert ds.verify() == []


def test_bad_official_files_name_the_file(tmp_path):
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    np.savez(rooms / "broken.npz", sdf128=np.ones((4, 4, 4), np.float32))
    with pytest.raises(DatasetError, match=r"broken\.npz.*color128"):
        read_official_room(rooms / "broken.npz")
    r = CliRunner().invoke(import_official_command, ["--rooms", str(rooms), "--out", str(tmp_path / "d")])
    assert r.exit_code != 0 and "broken.npz" in r.output and "Traceback" not in r.output
    (rooms / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"broken\.npz"):
        read_official_room(rooms / "broken.npz")
    np.savez(rooms / "broken.npz", sdf128=np.ones((4, 4, 4)), color128=np.zeros((4, 4, 4)),
             semanticlabel=np.full((4, 4, 4), 120))
    with pytest.raises(DatasetError, match="outside 0..98"):
        read_official_room(rooms / "broken.npz")


SPLITS = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "official-splits"


def test_official_splits_decide_each_room(tmp_path):
    from panorooms3d.store.official import read_official_splits

    splits = read_official_splits(SPLITS)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [5325, 297, 295]
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    names = {"train": splits["train"][0], "val": splits["val"][0], "test": splits["test"][-1]}
    for i, name in enumerate(names.values()):
        write_official_room(rooms / f"{name}.npz", i)
    out = tmp_path / "data"
    r = CliRunner().invoke(import_official_command, ["--rooms", str(rooms), "--splits", str(SPLITS), "--out", str(out)])
    assert r.exit_code == 0, r.output
    ds = Dataset(out)
    for split, name in names.items():
        assert ds.split(split) == [name]
    write_official_room(rooms / "not_listed_1.npz", 9)
    r = CliRunner().invoke(import_official_command, ["--rooms", str(rooms), "--splits", str(SPLITS), "--out",
                                                     str(tmp_path / "d2")])
    assert r.exit_code != 0 and "not_listed_1.npz" in r.output and "Traceback" not in r.output


def test_official_block_release_is_read_as_the_official_collate(tmp_path):
    from panorooms3d.store.official import OfficialBlocks, read_official_block

    rng = np.random.default_rng(0)
    n = 500
    loc = np.unique(rng.integers(0, 128, (n, 3)), axis=0)
    sdf = rng.uniform(-3, 3, len(loc)).astype(np.float32)
    colour = rng.uniform(0, 1, (len(loc), 3)).astype(np.float32)
    sem = rng.integers(0, 30, len(loc)).astype(np.int64)
    (tmp_path / "train").mkdir()
    np.savez(tmp_path / "train" / "b0.npz", targetsdf128loc=loc, targetsdf128=sdf, targetsdf128color=colour,
             semanticlabel=sem)
    x, y = read_official_block(tmp_path / "train" / "b0.npz")
    # the official sparse_to_dense_np + collate, written out
    dense_sdf = np.full((128, 128, 128), -3.0, np.float32)
    dense_col = np.zeros((128, 128, 128, 3), np.float32)
    dense_sem = np.zeros((128, 128, 128), np.int64)
    for (i, j, k), s, c, lab in zip(loc, sdf, colour, sem):
        dense_sdf[i, j, k], dense_col[i, j, k], dense_sem[i, j, k] = s, c, lab
    np.testing.assert_array_equal(x[0], dense_sdf)
    np.testing.assert_array_equal(x[1:], (dense_col * 2 - 1).transpose(3, 0, 1, 2))
    np.testing.assert_array_equal(y, dense_sem)
    blocks = OfficialBlocks(tmp_path / "train")
    assert len(blocks) == 1 and blocks[0][1].shape == (128, 128, 128)
    np.savez(tmp_path / "train" / "bad.npz", targetsdf128loc=loc, targetsdf128=sdf, targetsdf128color=colour,
             semanticlabel=sem + 40)
    with pytest.raises(DatasetError, match=r"bad\.npz.*paper30"):
        read_official_block(tmp_path / "train" / "bad.npz")
