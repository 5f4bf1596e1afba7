"""benchmark/diagnosis/more_rooms.py: more training rooms, the same validation and test rooms, inputs untouched."""

from __future__ import annotations

import numpy as np
import pytest
from bench_rooms import make_dataset
from script_module import load_script


def test_extra_rooms_join_train_and_the_scored_rooms_stay(tmp_path, capsys):
    from panorooms3d.store.dataset import Dataset

    script = load_script("benchmark/diagnosis/more_rooms.py")
    base = make_dataset(tmp_path / "base", n_rooms=4,
                        splits={"train": ["box0/Room-0", "box1/Room-1"], "val": ["box2/Room-2"],
                                "test": ["box3/Room-3"]})
    extra = make_dataset(tmp_path / "extra", n_rooms=3, house="other",
                         splits={"train": ["other0/Room-0"], "val": ["other1/Room-1"], "test": ["other2/Room-2"]})
    before = (base / "manifest.json").read_bytes(), (extra / "manifest.json").read_bytes()
    out = tmp_path / "merged"
    assert script.main([str(base), str(extra), "--out", str(out)]) == 0
    merged, b = Dataset(out), Dataset(base)
    # every room of the extra dataset trains, whatever its own split was; val and test are the base's
    assert sorted(merged.split("train")) == sorted(b.split("train") + ["other0/Room-0", "other1/Room-1",
                                                                      "other2/Room-2"])
    assert merged.split("val") == b.split("val") and merged.split("test") == b.split("test")
    assert merged.verify() == []  # checksummed shards that read back
    # the rooms are the same arrays
    for uid in ("box3/Room-3", "other1/Room-1"):
        src = b if uid.startswith("box") else Dataset(extra)
        assert np.array_equal(merged.load_volume(uid).label, src.load_volume(uid).label)
    assert "train 5 (3 added), val 1, test 1" in capsys.readouterr().out
    # the inputs are untouched, and a second call does not overwrite the dataset it made
    assert ((base / "manifest.json").read_bytes(), (extra / "manifest.json").read_bytes()) == before
    assert script.main([str(base), str(extra), "--out", str(out)]) == 2
    assert "already holds a dataset" in capsys.readouterr().err


def test_bad_inputs_are_named(tmp_path, capsys):
    script = load_script("benchmark/diagnosis/more_rooms.py")
    base = make_dataset(tmp_path / "base", n_rooms=2)
    (tmp_path / "empty").mkdir()
    assert script.main([str(base), str(tmp_path / "empty"), "--out", str(tmp_path / "m1")]) == 2
    assert "no staged rooms" in capsys.readouterr().err
    assert script.main([str(base), str(base), "--out", str(tmp_path / "m2")]) == 2
    assert "rooms already in another input" in capsys.readouterr().err
    assert script.main([str(tmp_path / "empty"), str(base), "--out", str(tmp_path / "m3")]) == 2
    assert str(tmp_path / "empty") in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([str(base)])
