"""benchmark/diagnosis/oracle_teacher.py: the oracle teacher's logits are the true panorama labels, as peaked as the teacher's."""

from __future__ import annotations

import numpy as np
import pytest
from bench_rooms import CEILING, FLOOR, WALL, make_dataset
from script_module import load_script


@pytest.fixture(scope="module")
def oracle():
    return load_script("benchmark/diagnosis/oracle_teacher.py")


def test_oracle_cache_holds_the_true_labels_with_the_teachers_margin(tmp_path, oracle):
    from panorooms3d.store.dataset import Dataset
    from panorooms3d.taxonomy import get_class_set

    data = make_dataset(tmp_path / "data", n_rooms=3)
    teacher = tmp_path / "teacher-cache"
    teacher.mkdir()
    k = get_class_set("paper30").num_classes
    logits = np.zeros((k, 4, 8), np.float16)
    logits[5] = 3.0  # top minus mean: 3 - 3 / K on every pixel
    np.save(teacher / "a.npy", logits)
    margin = oracle.teacher_margin(teacher)
    assert margin == pytest.approx(3.0 - 3.0 / k, rel=1e-3)

    out = tmp_path / "oracle"
    assert oracle.write_oracle_cache(data, out, margin, 16, 32, "paper30") == 2  # the 2 training rooms
    assert oracle.write_oracle_cache(data, out, margin, 16, 32, "paper30") == 0  # resumes: nothing rewritten
    cs = get_class_set("paper30")
    ds = Dataset(data)
    for uid in ds.split("train"):
        cached = np.load(out / f"{uid.replace('/', '__')}.npy").astype(np.float32)
        assert cached.shape == (k, 16, 32)
        # the box rooms' panoramas: ceiling above, floor below, wall between (bench_rooms.box_room)
        raw = ds.load_panorama(uid).label
        step_y, step_x = raw.shape[0] // 16, raw.shape[1] // 32
        expected = cs.map(raw[step_y // 2::step_y, step_x // 2::step_x])
        assert set(np.unique(expected)) == {int(cs.map(np.array([c]))[0]) for c in (CEILING, FLOOR, WALL)}
        assert (cached.argmax(0) == expected).mean() > 0.9  # nearest-neighbour resizing may shift a boundary
        assert (cached.max(0) - cached.mean(0)) == pytest.approx(margin, rel=1e-2)

    with pytest.raises(SystemExit, match="no cached teacher logits"):
        oracle.teacher_margin(tmp_path / "empty")
