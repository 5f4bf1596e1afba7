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

Rooms are averaged weighted by volume with :func:`aggregate`; the weight of a room is chosen by
name (:data:`ROOM_WEIGHTS`): ``project`` = the number of 128^3 blocks of the padded room,
``prod(ceil(shape / 128))`` (:func:`room_volume`), ``official`` = ``prod(shape / 128)`` of the
array fed to the model (eval.py; :func:`official_room_weight`) -- equal on multiples of 128.
:func:`official_rounded` reproduces eval.py's per-room numbers exactly (float32 per-class values,
``np.round(nanmean * 100, 2)``). :func:`pooled_metrics` instead sums I, P, L over the dataset
first. Values are in percent.
"""

from __future__ import annotations

import warnings
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


def official_room_weight(shape: Sequence[int], block: int = 128) -> float:
    """A room's weight in the official eval.py: ``prod(shape / block)`` of the array fed to the model (fractional)."""
    return float(np.prod(np.asarray(shape, np.float64) / block))


#: Room weights by name: ``project`` (:func:`room_volume`) or ``official`` (:func:`official_room_weight`).
ROOM_WEIGHTS = {"project": room_volume, "official": official_room_weight}


def room_weight(shape: Sequence[int], weights: str = "project") -> float:
    """The weight of a room of ``shape`` voxels under the named scheme (:data:`ROOM_WEIGHTS`)."""
    if weights not in ROOM_WEIGHTS:
        raise ValueError(f"unknown room weights {weights!r}; use one of {tuple(ROOM_WEIGHTS)}")
    return ROOM_WEIGHTS[weights](shape)


def official_rounded(cm: np.ndarray, *, exclude: Sequence[int] = ()) -> dict:
    """The :data:`METRICS` of one room exactly as the official eval.py reports them (percent).

    mmsegmentation's ``eval_metrics`` computes the per-class values in float32 (torch); eval.py then
    takes ``np.round(np.nanmean(values.astype(np.float32)) * 100, 2)`` per metric (aAcc from the
    summed counts): a float32 mean, multiplied and rounded in float64 (NumPy 1.x promotes a float32
    scalar times a Python int to float64), and averages rooms in float64. Classes in ``exclude``
    are left out of the means.
    """
    cm = np.asarray(cm, np.int64)
    inter = np.diag(cm).astype(np.float32)
    pred = cm.sum(axis=0).astype(np.float32)
    label = cm.sum(axis=1).astype(np.float32)
    keep = np.ones(len(inter), bool)
    keep[list(exclude)] = False
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (pred + label - inter)
        acc = inter / label
        dice = 2 * inter / (pred + label)
        precision = inter / pred
        fscore = 2 * precision * acc / (precision + acc)
        aacc = np.float32(inter[keep].sum() / label[keep].sum())

    def official(values) -> float:
        values = np.asarray(values, np.float32)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN mean is NaN, as in eval.py
            # the mean in float32; "* 100" of a float32 scalar is float64 under NumPy 1.x (the official's)
            return float(np.round(np.float64(np.nanmean(values)) * 100.0, 2))

    per = {"aAcc": aacc, "mIoU": iou[keep], "mAcc": acc[keep], "mDice": dice[keep], "mFscore": fscore[keep],
           "mPrecision": precision[keep], "mRecall": acc[keep]}
    return {k: official(per[k]) for k in METRICS}


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
