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
    assert {key: teacher["vs_labels"][key] for key in ("pixel_accuracy", "mIoU_void_excluded")} == {
        "pixel_accuracy": 100.0, "mIoU_void_excluded": 100.0}
    # one logit of 10 and 29 of 0: standard deviation 10 / sqrt(30); softmax(z / 20)'s top e^0.5 / (e^0.5 + 29)
    assert teacher["logit_spread"] == pytest.approx(scale / math.sqrt(k), rel=1e-5)
    top = math.exp(scale / 20) / (math.exp(scale / 20) + k - 1)
    assert teacher["softened_top_probability"] == pytest.approx(top, rel=1e-5)
    # the teacher is the labels, so agreeing with it is being right
    assert a["agreement_with_teacher"] == pytest.approx(a["vs_labels"]["pixel_accuracy"])
    assert a == b and a["kd_official"] > 0
    # where a student disagrees with a teacher that is the labels, the teacher is right and the student is not
    dis = a["disagreement"]
    assert dis["share_of_hit"] == pytest.approx(100.0 - a["agreement_with_teacher"])
    assert dis["share_of_hit"] > 0 and dis["teacher_right"] == 100.0 and dis["student_right"] == 0.0
    # the pixels the teacher leads the reference student on are all the reference's errors: none right there
    assert record["teacher_leads_reference"] == "a" and a["teacher_leads"]["accuracy"] == 0.0
    assert record["teacher_leads_pixels"] == pytest.approx(record["hit_pixels"] * dis["share_of_hit"] / 100, abs=0.5)
    assert a["teacher_leads"]["margin"] > 0 and 0 < a["kd_gradient"]["decision_share_all"] <= 100.0
    assert 0 < a["kd_gradient"]["margin_share_disagreement"] <= a["kd_gradient"]["decision_share_disagreement"]
    # against itself nothing changes; the teacher's per-class IoU is 100 wherever a class is present
    assert a["versus_reference"] == {"changed": 0.0, "toward": 0.0, "away": 0.0, "gained": 0.0, "lost": 0.0}
    present = {c: v for c, v in teacher["vs_labels"]["per_class_iou"].items() if v is not None}
    assert present and set(present.values()) == {100.0} and "void" not in teacher["vs_labels"]["per_class_iou"]
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


def test_near_label_boundary_wraps_longitude_only():
    script = load_script("benchmark/diagnosis/kd_agreement.py")
    label = np.zeros((4, 6), np.int64)
    label[0, 0] = 1
    near = script.near_label_boundary(label)
    expected = np.zeros((4, 6), bool)
    expected[0:2, [5, 0, 1]] = True  # its 3 x 3 neighbourhood, wrapped across longitude 0, not across the pole
    assert (near == expected).all()
    assert not script.near_label_boundary(np.full((3, 5), 7)).any()


def test_kd_logit_gradient_is_the_gradient_of_the_kd_term():
    from panorooms3d.nn.losses import distillation_loss

    script = load_script("benchmark/diagnosis/kd_agreement.py")
    torch.manual_seed(0)
    k, h, w, tau = 5, 3, 4, 20.0
    s = (torch.randn(k, h, w) * 4).requires_grad_()
    t = torch.randn(k, h, w) * 2
    distillation_loss(s, t, None, tau=tau, normalisation="official").backward()
    # official: tau^2 * summed KL / (K H W), so the autograd gradient is the helper's / (K H W)
    got = script.kd_logit_gradient(s.detach().permute(1, 2, 0).reshape(-1, k), t.permute(1, 2, 0).reshape(-1, k), tau)
    want = s.grad.permute(1, 2, 0).reshape(-1, k) * (k * h * w)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)
    assert torch.allclose(got.sum(1), torch.zeros(h * w), atol=1e-5)  # the pull sums to 0 over the classes
