"""benchmark/diagnosis/kd_agreement.py against a teacher whose answer is known: the labels themselves."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from bench_rooms import make_dataset
from script_module import load_script


def test_a_teacher_that_is_the_labels(tmp_path):
    from panorooms3d.bench.data import load_room
    from panorooms3d.bench.teacher import teacher_cache_path
    from panorooms3d.bench.train import save_checkpoint
    from panorooms3d.nn.registry import build_model
    from panorooms3d.store.dataset import Dataset

    script = load_script("benchmark/diagnosis/kd_agreement.py")
    data = make_dataset(tmp_path / "data", n_rooms=3)
    ds = Dataset(data)
    cache = tmp_path / "cache"
    cache.mkdir()
    k, scale = 30, 10.0
    for uid in ds.split("train"):  # the teacher: the panorama's labels, one-hot x 10
        label = torch.as_tensor(load_room(ds, uid).panorama_label.astype(np.int64))
        onehot = torch.nn.functional.one_hot(label, k).permute(2, 0, 1) * scale
        np.save(teacher_cache_path(cache, uid), onehot.numpy().astype(np.float16))
    torch.manual_seed(0)
    overrides = {"depths": [1, 1], "num_heads": [3, 3]}
    model = build_model("3dseg-t", num_classes=k, in_channels=4, **overrides)
    ckpt = tmp_path / "student.pt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "config": {"model": "3dseg-t", "model_overrides": overrides}})
    out = tmp_path / "kd.json"
    script.main([str(data), "--teacher-cache", str(cache), "--student", f"a={ckpt}", "--student", f"b={ckpt}",
                 "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["rooms"] == 2 and record["hit_pixels"] > 0
    teacher, a, b = (record["models"][n] for n in ("teacher", "a", "b"))
    assert teacher["vs_labels"] == {"pixel_accuracy": 100.0, "mIoU_void_excluded": 100.0}
    # one logit of 10 and 29 of 0: standard deviation 10 / sqrt(30); softmax(z / 20)'s top e^0.5 / (e^0.5 + 29)
    assert teacher["logit_spread"] == pytest.approx(scale / math.sqrt(k), rel=1e-5)
    top = math.exp(scale / 20) / (math.exp(scale / 20) + k - 1)
    assert teacher["softened_top_probability"] == pytest.approx(top, rel=1e-5)
    # the teacher is the labels, so agreeing with it is being right
    assert a["agreement_with_teacher"] == pytest.approx(a["vs_labels"]["pixel_accuracy"])
    assert a == b and a["kd_official"] > 0
    # --max-rooms: the first and the last of the 2 rooms when asked for 2, the first when asked for 1
    one = tmp_path / "one.json"
    script.main([str(data), "--teacher-cache", str(cache), "--student", f"a={ckpt}", "--max-rooms", "1",
                 "--out", str(one)])
    assert json.loads(one.read_text())["room_uids"] == ds.split("train")[:1] == record["room_uids"][:1]
    assert record["room_uids"] == ds.split("train")
    # --unlabelled-of 0.5: only the room a run with half the rooms labelled has no 3D labels for
    from panorooms3d.bench.data import labelled_subset

    half = tmp_path / "half.json"
    script.main([str(data), "--teacher-cache", str(cache), "--student", f"a={ckpt}", "--unlabelled-of", "0.5",
                 "--out", str(half)])
    labelled = labelled_subset(ds.split("train"), 0.5)
    got = json.loads(half.read_text())
    assert got["room_uids"] == [u for u in ds.split("train") if u not in labelled] and len(got["room_uids"]) == 1
    assert got["unlabelled_of"] == 0.5 and record["unlabelled_of"] is None
    with pytest.raises(SystemExit):
        script.main([str(data), "--teacher-cache", str(cache), "--student", "no-equals-sign"])
