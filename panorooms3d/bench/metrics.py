"""Segmentation metrics with the mmsegmentation definitions and NaN rules (paper.md).

Per class c, over the voxels of one room: I = |pred = c and gt = c|, P = |pred = c|,
L = |gt = c|, U = P + L - I, and

    IoU = I / U        Acc = Recall = I / L        Dice = 2 I / (P + L)
    Precision = I / P  Fscore = 2 Pr Rc / (Pr + Rc)

A 0/0 is NaN (so is anything computed from a NaN). A mean (mIoU, ...) is the NaN-ignoring mean
over all classes, class 0 (void) included as in the paper; aAcc = sum I / sum L. The NaN rules
that follow:

- a class absent from both gt and pred: every metric NaN (it does not count in the means);
- a class predicted but absent from gt: IoU = Dice = Precision = 0, Acc = Recall = NaN, Fscore NaN;
- a class present in gt but never predicted: IoU = Dice = Acc = Recall = 0, Precision NaN, Fscore NaN.

Rooms are averaged weighted by volume (the paper: number of 128^3 blocks) with :func:`aggregate`;
:func:`pooled_metrics` instead sums I, P, L over the dataset first. Values are in percent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRICS = ("aAcc", "mIoU", "mAcc", "mDice", "mFscore", "mPrecision", "mRecall")
PER_CLASS = ("IoU", "Acc", "Dice", "Fscore", "Precision", "Recall")


def confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix (num_classes, num_classes) int64, rows = gt class, columns = predicted class.

    Args:
        pred, gt: integer class arrays of the same shape (any shape), values in [0, num_classes).
    """
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    gt = np.asarray(gt).reshape(-1).astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"pred has {pred.size} elements, gt has {gt.size}")
    for name, a in (("pred", pred), ("gt", gt)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} holds class ids outside [0, {num_classes})")
    return np.bincount(gt * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a / b
    return np.where(b == 0, np.nan, out)


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def metrics_from_confusion(cm: np.ndarray, *, exclude: Sequence[int] = ()) -> dict:
    """Metrics (percent) of a confusion matrix; ``exclude`` lists classes left out of the means.

    Returns a dict with the scalar metrics of ``METRICS``, ``per_class`` (name -> (K,) array in
    percent, NaN where undefined), and the raw counts ``I``, ``P``, ``L`` (K,) int64.
    """
    cm = np.asarray(cm, np.int64)
    inter = np.diag(cm)
    pred = cm.sum(axis=0)
    label = cm.sum(axis=1)
    union = pred + label - inter
    iou = _div(inter, union)
    acc = _div(inter, label)
    dice = _div(2 * inter, pred + label)
    precision = _div(inter, pred)
    recall = acc
    with np.errstate(invalid="ignore"):
        fscore = _div(2 * precision * recall, precision + recall)  # NaN in -> NaN out
    keep = np.ones(len(inter), bool)
    keep[list(exclude)] = False
    per_class = {"IoU": iou, "Acc": acc, "Dice": dice, "Fscore": fscore, "Precision": precision, "Recall": recall}
    out = {
        "aAcc": 100.0 * float(_div(inter[keep].sum(), label[keep].sum())),
        "mIoU": 100.0 * _nanmean(iou[keep]),
        "mAcc": 100.0 * _nanmean(acc[keep]),
        "mDice": 100.0 * _nanmean(dice[keep]),
        "mFscore": 100.0 * _nanmean(fscore[keep]),
        "mPrecision": 100.0 * _nanmean(precision[keep]),
        "mRecall": 100.0 * _nanmean(recall[keep]),
    }
    out["per_class"] = {k: 100.0 * v for k, v in per_class.items()}
    out["I"], out["P"], out["L"] = inter, pred, label
    return out


def room_metrics(pred: np.ndarray, gt: np.ndarray, num_classes: int, *, exclude_void: bool = False) -> dict:
    """Metrics of one room (percent): aAcc, mIoU, mAcc, mDice, mFscore, mPrecision, mRecall.

    Args:
        pred, gt: (X, Y, Z) (or any shape) integer class ids in [0, num_classes).
        num_classes: K (30 for paper30; class 0 void is scored like the others, as in the paper).
        exclude_void: the clearly labelled variant that leaves class 0 out of every number.

    Returns the dict of :func:`metrics_from_confusion` plus ``confusion`` (K, K) and ``voxels``.
    """
    cm = confusion(pred, gt, num_classes)
    out = metrics_from_confusion(cm, exclude=(0,) if exclude_void else ())
    out["confusion"] = cm
    out["voxels"] = int(cm.sum())
    return out


def room_volume(shape: Sequence[int], block: int = 128) -> int:
    """A room's weight in the paper's protocol: the number of ``block``^3 blocks of its padded volume."""
    return int(np.prod([int(np.ceil(s / block)) for s in shape]))


def aggregate(rooms: Sequence[dict], volumes: Sequence[float]) -> dict:
    """Volume-weighted average of per-room metrics (the paper's protocol).

    Args:
        rooms: dicts from :func:`room_metrics`.
        volumes: one weight per room (e.g. :func:`room_volume` of its shape).

    A room whose metric is NaN does not count for that metric (the weights are renormalised).
    """
    if len(rooms) != len(volumes):
        raise ValueError(f"{len(rooms)} rooms but {len(volumes)} volumes")
    if not rooms:
        raise ValueError("no rooms to aggregate")
    w = np.asarray(volumes, np.float64)
    out = {}
    for key in METRICS:
        v = np.array([r[key] for r in rooms], np.float64)
        ok = np.isfinite(v) & (w > 0)
        out[key] = float(np.sum(v[ok] * w[ok]) / np.sum(w[ok])) if ok.any() else float("nan")
    return out


def pooled_metrics(rooms: Sequence[dict], *, exclude_void: bool = False) -> dict:
    """Dataset-level metrics from the summed confusion matrices of all rooms (not the paper's protocol)."""
    cm = np.sum([r["confusion"] for r in rooms], axis=0)
    return metrics_from_confusion(cm, exclude=(0,) if exclude_void else ())
