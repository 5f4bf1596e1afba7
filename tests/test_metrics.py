"""Metrics against hand-computed cases, every NaN rule, and the volume weighting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from panorooms3d.bench.metrics import METRICS, aggregate, confusion, pooled_metrics, room_metrics, room_volume


def test_hand_computed_four_classes() -> None:
    # class 0: gt 3, pred 2, both 2 | class 1: gt 2, pred 3, both 2
    # class 2: absent everywhere     | class 3: predicted only (1 voxel); gt class 1... see below
    gt = np.array([0, 0, 0, 1, 1, 4, 4])
    pred = np.array([0, 0, 1, 1, 1, 3, 0])
    m = room_metrics(pred, gt, num_classes=5)
    pc = m["per_class"]
    # I = [2, 2, 0, 0, 0]; P = [3, 3, 0, 1, 0]; L = [3, 2, 0, 0, 2]
    assert m["I"].tolist() == [2, 2, 0, 0, 0] and m["P"].tolist() == [3, 3, 0, 1, 0] and m["L"].tolist() == [3, 2, 0, 0, 2]
    # class 0: U = 4 -> IoU 50; Acc 2/3; Dice 4/6; Precision 2/3; Fscore 2/3
    assert pc["IoU"][0] == pytest.approx(50.0) and pc["Acc"][0] == pytest.approx(200 / 3)
    assert pc["Dice"][0] == pytest.approx(400 / 6) and pc["Fscore"][0] == pytest.approx(200 / 3)
    # class 1: U = 3 -> IoU 2/3; Acc 1; Precision 2/3; Dice 4/5; Fscore 2*(2/3)/(5/3) = 0.8
    assert pc["IoU"][1] == pytest.approx(200 / 3) and pc["Acc"][1] == pytest.approx(100.0)
    assert pc["Fscore"][1] == pytest.approx(80.0) and pc["Dice"][1] == pytest.approx(80.0)
    # class 2: absent everywhere -> every metric NaN
    assert all(math.isnan(pc[k][2]) for k in pc)
    # class 3: predicted only -> IoU, Dice, Precision 0; Acc/Recall NaN; Fscore NaN
    assert pc["IoU"][3] == 0 and pc["Dice"][3] == 0 and pc["Precision"][3] == 0
    assert math.isnan(pc["Acc"][3]) and math.isnan(pc["Recall"][3]) and math.isnan(pc["Fscore"][3])
    # class 4: present but missed -> IoU, Dice, Acc 0; Precision NaN; Fscore NaN
    assert pc["IoU"][4] == 0 and pc["Acc"][4] == 0 and pc["Dice"][4] == 0
    assert math.isnan(pc["Precision"][4]) and math.isnan(pc["Fscore"][4])
    # means ignore NaN: mIoU over classes 0, 1, 3, 4
    assert m["mIoU"] == pytest.approx((50 + 200 / 3 + 0 + 0) / 4)
    assert m["mAcc"] == pytest.approx((200 / 3 + 100 + 0) / 3)
    assert m["mPrecision"] == pytest.approx((200 / 3 + 200 / 3 + 0) / 3)
    assert m["mFscore"] == pytest.approx((200 / 3 + 80) / 2)
    assert m["aAcc"] == pytest.approx(100 * 4 / 7)
    assert m["mRecall"] == m["mAcc"]


def test_void_excluded_variant() -> None:
    gt = np.array([0, 0, 1, 1])
    pred = np.array([1, 0, 1, 1])
    full = room_metrics(pred, gt, 2)
    novoid = room_metrics(pred, gt, 2, exclude_void=True)
    assert novoid["mIoU"] == pytest.approx(full["per_class"]["IoU"][1]) == pytest.approx(200 / 3)
    assert novoid["aAcc"] == pytest.approx(100.0)  # 2 of 2 class-1 voxels right


def test_volume_weighting_and_pooling() -> None:
    a = room_metrics(np.array([1, 1]), np.array([1, 1]), 2)  # perfect
    b = room_metrics(np.array([0, 0]), np.array([1, 1]), 2)  # all wrong
    assert a["mIoU"] == 100.0 and b["mIoU"] == 0.0
    agg = aggregate([a, b], [3, 1])
    assert agg["mIoU"] == pytest.approx(75.0) and agg["aAcc"] == pytest.approx(75.0)
    assert room_volume((200, 130, 96)) == 2 * 2 * 1
    pooled = pooled_metrics([a, b])
    assert pooled["aAcc"] == pytest.approx(50.0)
    with pytest.raises(ValueError):
        aggregate([a], [1, 2])


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="outside"):
        room_metrics(np.array([5]), np.array([0]), 3)
    with pytest.raises(ValueError, match="elements"):
        room_metrics(np.array([0, 1]), np.array([0]), 3)


def _mmseg_room(pred: np.ndarray, gt: np.ndarray, k: int) -> dict:
    """mmsegmentation's intersect_and_union + eval_metrics (torch float32 histc) and eval.py's rounding."""
    import torch

    p = torch.from_numpy(pred.reshape(-1))
    g = torch.from_numpy(gt.reshape(-1))
    inter = p[p == g]
    ai = torch.histc(inter.float(), bins=k, min=0, max=k - 1)
    ap = torch.histc(p.float(), bins=k, min=0, max=k - 1)
    al = torch.histc(g.float(), bins=k, min=0, max=k - 1)
    au = ap + al - ai
    acc = ai / al
    prec = ai / ap
    vals = {"aAcc": (ai.sum() / al.sum()).numpy(), "mIoU": (ai / au).numpy(), "mAcc": acc.numpy(),
            "mDice": (2 * ai / (ap + al)).numpy(), "mFscore": ((1 + 1) * (prec * acc) / (prec + acc)).numpy(),
            "mPrecision": prec.numpy(), "mRecall": acc.numpy()}
    # eval.py under NumPy 1.x: a float32 mean times 100 is float64
    return {name: float(np.round(np.float64(np.nanmean(v.astype(np.float32))) * 100, 2)) for name, v in vals.items()}


def test_official_rounding_equals_mmseg_and_eval_py():
    from panorooms3d.bench.metrics import official_rounded

    rng = np.random.default_rng(5)
    for _ in range(5):
        gt = rng.integers(0, 7, (9, 8, 7))
        pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 9, gt.shape))
        got = official_rounded(confusion(pred, gt, 10))
        expect = _mmseg_room(pred, gt, 10)
        assert got == pytest.approx(expect, nan_ok=True, abs=0)


def test_room_weights_on_a_room_that_is_not_a_multiple_of_128():
    from panorooms3d.bench.metrics import official_room_weight, room_weight

    shape = (136, 128, 120)
    assert room_weight(shape, "project") == 2  # ceil: 2 x 1 x 1 blocks of the padded room
    assert official_room_weight(shape) == room_weight(shape, "official") == 136 * 128 * 120 / 128**3  # eval.py
    assert room_weight((256, 128, 128), "official") == room_weight((256, 128, 128), "project") == 2
    # eval.py: np.dot(IoUs, weight) / np.sum(weight) with weight = prod(shape / 128)
    rooms = [{k: v for k, v in zip(METRICS, [90.0, 50.0, 60, 55, 55, 58, 60])},
             {k: v for k, v in zip(METRICS, [80.0, 30.0, 40, 35, 35, 38, 40])}]
    shapes = [shape, (128, 128, 128)]
    w_off = [136 * 128 * 120 / 128**3, 1.0]
    got = aggregate(rooms, [room_weight(s, "official") for s in shapes])
    assert got["mIoU"] == pytest.approx((50 * w_off[0] + 30 * w_off[1]) / sum(w_off))
    proj = aggregate(rooms, [room_weight(s, "project") for s in shapes])
    assert proj["mIoU"] == pytest.approx((50 * 2 + 30) / 3) and abs(proj["mIoU"] - got["mIoU"]) > 3
    with pytest.raises(ValueError, match="unknown room weights"):
        room_weight(shape, "blocks")
