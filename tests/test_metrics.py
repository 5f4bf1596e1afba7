"""Metrics against hand-computed cases, every NaN rule, and the volume weighting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from panorooms3d.bench.metrics import aggregate, pooled_metrics, room_metrics, room_volume


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
