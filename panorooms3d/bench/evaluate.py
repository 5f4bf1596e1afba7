"""Whole-room evaluation: predict every voxel of a room, score with the paper's protocol.

A room is predicted in one pass (as the official code does) when it has at most
``max_voxels`` voxels; larger rooms go through a sliding window of ``window`` tiles (an edge, or x, y, z) with
``overlap`` voxels of context on each side, whose centres are stitched (logits are not
averaged: each voxel takes the prediction of the tile whose centre region contains it).
With test-time augmentation (``tta``, a protocol setting: :data:`TTA`) the room is predicted once per
transform of the training augmentation's group (flips in x and y, turns about z; the room turned, predicted and
turned back) and the class probabilities averaged (the official eval.py predicts once: ``tta = "none"``).
Metrics: :mod:`panorooms3d.bench.metrics` — per room, then averaged weighted by the room's
volume in 128^3 blocks (the paper's protocol); pooled and void-excluded variants beside them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from panorooms3d.bench.data import load_room
from panorooms3d.bench.metrics import METRICS, aggregate, official_rounded, pooled_metrics, room_metrics, room_weight
from panorooms3d.run.atomic import atomic_path
from panorooms3d.taxonomy import get_class_set

#: Rooms are padded with free space (tsdf 1, unobserved) to multiples of this many voxels before
#: the model sees them: the 3D Segmenter's windows span 8 tokens of 4 voxels.
PAD_TO = 32

#: Test-time augmentation: name -> the transforms, each (quarter turns about z, flip of x before the turns).
#: ``flips``: the room as it is, mirrored in x, in y, and in both (= a half turn); ``d4``: those and the four
#: with a quarter turn, the eight transforms of ``BlockDataset``'s flips and turns (the square's symmetries).
TTA: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((0, False),),
    "flips": ((0, False), (0, True), (2, False), (2, True)),
    "d4": tuple((k, f) for k in range(4) for f in (False, True)),
}


def tta_transforms(tta: str) -> tuple[tuple[int, bool], ...]:
    """The transforms of a test-time augmentation name (:data:`TTA`); ValueError naming the choices otherwise."""
    if tta not in TTA:
        raise ValueError(f"unknown test-time augmentation {tta!r}: choose one of {', '.join(TTA)}")
    return TTA[tta]


def _turn(x: torch.Tensor, turns: int, flip: bool, axes: tuple[int, int]) -> torch.Tensor:
    """x mirrored along ``axes[0]`` (when ``flip``), then turned ``turns`` quarter turns in the plane of ``axes``."""
    if flip:
        x = x.flip(axes[0])
    return torch.rot90(x, turns, axes) if turns % 4 else x


def _unturn(x: torch.Tensor, turns: int, flip: bool, axes: tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`_turn`."""
    if turns % 4:
        x = torch.rot90(x, -turns, axes)
    return x.flip(axes[0]) if flip else x


def forward_room(model: torch.nn.Module, x: torch.Tensor, pad_to: int | Sequence[int] = PAD_TO) -> torch.Tensor:
    """``model(x)`` for encoded rooms x (B, 4, X, Y, Z) padded at the far ends with free space.

    Training blocks are crops of rooms padded with free space (the encoding of tsdf 1 and no
    colour: channel 0 = -3, colours -1), so a whole room is shown to the model the same way and
    the output cropped back; the models' own padding would fill zeros, an input that training
    never shows (measured: 3DSeg-T's accuracy on a room fell from 93% to 79%). ``pad_to`` 128
    is the official evaluation's padding, 1 none; one int or one per axis (x, y, z).
    """
    from panorooms3d.bench.data import free_space_input

    size = tuple(x.shape[2:])
    multiples = [int(pad_to)] * 3 if isinstance(pad_to, (int, np.integer)) else [int(p) for p in pad_to]
    if len(multiples) != 3:
        raise ValueError(f"pad_to must be one int or three (x, y, z), got {pad_to!r}")
    pads = [(-n) % max(p, 1) for n, p in zip(size, multiples)]
    if any(pads):
        padded = free_space_input((x.shape[0], *[n + p for n, p in zip(size, pads)]), dtype=x.dtype, device=x.device)
        padded[:, :, : size[0], : size[1], : size[2]] = x
        x = padded
    return model(x)[:, :, : size[0], : size[1], : size[2]]


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: np.ndarray | torch.Tensor, *, max_voxels: int = 256 * 256 * 128,
                   window: int | Sequence[int] = 128, overlap: int | Sequence[int] = 16,
                   device: str | torch.device = "cpu", pad_to: int | Sequence[int] = PAD_TO,
                   tta: str = "none") -> torch.Tensor:
    """Logits (K, X, Y, Z) float32 of an encoded room x (4, X, Y, Z).

    One pass when X*Y*Z <= max_voxels, otherwise a sliding window (see the module docstring) of
    ``window`` voxels with ``overlap`` voxels of context a side (each an int, or 3 ints for x, y, z);
    the room (or tile) is padded with free space to multiples of ``pad_to`` (:func:`forward_room`).
    With ``tta`` other than ``none`` (:data:`TTA`): the log of the class probabilities averaged over the
    transformed rooms' predictions, each turned back (a window of a turned room has the turned extents).
    """
    transforms = tta_transforms(tta)
    model.eval()
    xt = torch.as_tensor(x, dtype=torch.float32)
    if transforms == TTA["none"]:
        return _predict_once(model, xt, max_voxels, window, overlap, device, pad_to)
    axes = (1, 2)  # x and y of (C, X, Y, Z)
    total = None
    for turns, flip in transforms:
        turned = _turn(xt, turns, flip, axes).contiguous()
        win, ovl = window, overlap
        if turns % 2 and not isinstance(window, int):  # a quarter turn swaps the room's x and y extents
            win = (window[1], window[0], window[2])
        if turns % 2 and not isinstance(overlap, int):
            ovl = (overlap[1], overlap[0], overlap[2])
        pad = pad_to
        if turns % 2 and not isinstance(pad_to, (int, np.integer)):
            pad = (pad_to[1], pad_to[0], pad_to[2])
        logits = _predict_once(model, turned, max_voxels, win, ovl, device, pad)
        probs = _unturn(logits, turns, flip, axes).softmax(0)
        total = probs if total is None else total.add_(probs)
    return (total / len(transforms)).clamp_min_(1e-30).log_().contiguous()


def _predict_once(model: torch.nn.Module, xt: torch.Tensor, max_voxels: int, window: int | Sequence[int],
                  overlap: int | Sequence[int], device: str | torch.device,
                  pad_to: int | Sequence[int]) -> torch.Tensor:
    """:func:`predict_logits` of one room as it is (one pass or the sliding window)."""
    shape = xt.shape[1:]
    if int(np.prod(shape)) <= max_voxels:
        return forward_room(model, xt[None].to(device), pad_to)[0].float().cpu()
    win = [int(window)] * 3 if isinstance(window, int) else [int(w) for w in window]
    ovl = [int(overlap)] * 3 if isinstance(overlap, int) else [int(o) for o in overlap]
    core = [w - 2 * o for w, o in zip(win, ovl)]
    if len(win) != 3 or len(ovl) != 3 or min(core) <= 0:
        raise ValueError(f"window {window} must exceed twice the overlap {overlap} on every axis")
    out = None
    for i in range(0, shape[0], core[0]):
        for j in range(0, shape[1], core[1]):
            for k in range(0, shape[2], core[2]):
                lo = [max(a - o, 0) for a, o in zip((i, j, k), ovl)]
                hi = [min(a + c + o, s) for a, c, o, s in zip((i, j, k), core, ovl, shape)]
                tile = xt[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
                pred = forward_room(model, tile[None].to(device), pad_to)[0].float().cpu()
                if out is None:
                    out = torch.empty((pred.shape[0], *shape), dtype=torch.float32)
                c_hi = [min(a + c, s) for a, c, s in zip((i, j, k), core, shape)]
                out[:, i:c_hi[0], j:c_hi[1], k:c_hi[2]] = pred[:, i - lo[0]:c_hi[0] - lo[0],
                                                               j - lo[1]:c_hi[1] - lo[1], k - lo[2]:c_hi[2] - lo[2]]
    return out


def evaluate(model: torch.nn.Module, dataset_dir: Path, *, split: str = "test", rooms: list[str] | None = None,
             class_set: str = "paper30", max_voxels: int = 256 * 256 * 128,
             window: int | Sequence[int] = 128, overlap: int | Sequence[int] = 16, device: str = "cpu",
             progress: bool = True, keep_predictions: bool = False, room_weights: str = "project",
             round_per_room: bool = False, input_encoding: str = "project", pad_to: int | Sequence[int] = PAD_TO,
             samples: dict | None = None, tta: str = "none") -> dict:
    """Score ``model`` on whole rooms of a dataset.

    Protocol settings (benchmark/protocols/*.toml): ``room_weights`` names the room weight
    (:data:`panorooms3d.bench.metrics.ROOM_WEIGHTS`: ``project`` = 128^3 blocks of the padded room,
    ``official`` = prod(shape / 128)); ``round_per_room`` rounds each room's metrics as the official
    eval.py does (:func:`panorooms3d.bench.metrics.official_rounded`); ``input_encoding`` names the
    input encoding (:data:`panorooms3d.bench.data.ENCODINGS`); ``pad_to`` the free-space padding
    before the model (:func:`forward_room`; the official eval.py: 1, the room as stored, the network
    padding with zeros inside). ``max_voxels``, ``window``, ``overlap``: one pass or tiles (:func:`predict_logits`).
    ``samples``: a dict {uid: loaded room} to reuse between calls (validation during training): rooms not in it
    are loaded and added. ``tta``: test-time augmentation (:data:`TTA`; recorded in the result's ``eval``).

    Returns a JSON-able dict: ``metrics`` (volume-weighted, the paper's protocol), ``pooled``,
    ``void_excluded`` (volume-weighted, class 0 left out), ``per_class_iou`` (pooled, by class
    name), ``confusion`` (pooled, K x K), ``rooms`` (per-room metrics and weights, the per-room
    ``void_excluded`` metrics and ``counts`` I/P/L per class, for :mod:`panorooms3d.bench.stats`), ``eval``
    (the settings that change the predictions: ``tta`` and its number of ``passes``). With
    ``keep_predictions`` also ``predictions`` {uid: (X, Y, Z) uint8 class ids} (not JSON-able).
    """
    from panorooms3d.store.dataset import Dataset

    ds = Dataset(Path(dataset_dir))
    uids = rooms if rooms is not None else ds.split(split)
    if not uids:
        raise ValueError(f"{dataset_dir}: no rooms in split {split!r} to evaluate")
    passes = len(tta_transforms(tta))
    rooms_scored, preds = RoomScores(class_set, round_per_room=round_per_room), {}
    model.to(device)
    for uid in tqdm(uids, desc="evaluate", unit="room", disable=not progress, dynamic_ncols=True):
        sample = samples.get(uid) if samples is not None else None
        if sample is None:
            sample = load_room(ds, uid, class_set, encoding=input_encoding)
            if samples is not None:
                samples[uid] = sample
        pred = predict_logits(model, sample.x, max_voxels=max_voxels, window=window, overlap=overlap, device=device,
                              pad_to=pad_to, tta=tta).argmax(0).numpy()
        rooms_scored.add(uid, pred, sample.y, room_weight(sample.y.shape, room_weights))
        if keep_predictions:
            preds[uid] = pred.astype(np.uint8)
    how = {"tta": tta, "passes": passes, **({} if pad_to == PAD_TO else {"pad_to": pad_to})}  # as earlier records
    result = {"class_set": class_set, "split": split, "eval": how,
              **rooms_scored.result()}
    if keep_predictions:
        result["predictions"] = preds
    return result


class RoomScores:
    """The scores of predictions, collected one room (or panorama) at a time: every scorer of the project
    (:func:`evaluate`, :func:`evaluate_on_panoramas`, the teacher's ``evaluate_teacher``, diagnosis scripts) adds
    its rooms here and reads the same result layout back.

    ``add(uid, pred, gt, weight)`` scores one room's predicted class ids against its class ids (equal shapes: a
    room's voxels or a panorama's pixels) with :func:`room_metrics`, with void and without (class 0 left out);
    ``result()`` aggregates the rooms added so far, in the order added.

    Args:
        class_set: the class set both ids are in (its number of classes and names).
        size_key: what a room's size counts in its record: ``voxels`` or ``pixels`` (:func:`room_record`).
        round_per_room: round each room's metrics as the official eval.py does (:func:`official_rounded`).
    """

    def __init__(self, class_set: str, *, size_key: str = "voxels", round_per_room: bool = False) -> None:
        cs = get_class_set(class_set)
        self.num_classes, self.class_names = cs.num_classes, cs.class_names
        self.size_key = size_key
        self.round_per_room = round_per_room
        self.per_room: list[dict] = []
        self.no_void: list[dict] = []
        self.weights: list[float] = []
        self.records: list[dict] = []

    def __len__(self) -> int:
        return len(self.records)

    def add(self, uid: str, pred: np.ndarray, gt: np.ndarray, weight: float = 1.0) -> None:
        """Score room ``uid``: ``pred`` and ``gt`` class ids of the same shape; ``weight`` its weight in the
        rooms' mean (:func:`panorooms3d.bench.metrics.room_weight`; 1 for panoramas, which are all one size)."""
        m = room_metrics(pred, gt, self.num_classes)
        mv = room_metrics(pred, gt, self.num_classes, exclude_void=True)
        if self.round_per_room:  # the official eval.py's per-room numbers
            m.update(official_rounded(m["confusion"]))
            mv.update(official_rounded(mv["confusion"], exclude=(0,)))
        self.per_room.append(m)
        self.no_void.append(mv)
        self.weights.append(weight)
        self.records.append(room_record(uid, m, mv, weight, self.size_key))

    def result(self) -> dict:
        """The aggregated result of the rooms added (percent; NaN where undefined): ``metrics`` (weighted mean over
        rooms), ``pooled`` (summed confusion), ``void_excluded`` (weighted, class 0 left out), ``per_class_iou``
        (pooled, by class name), ``confusion`` (pooled), ``rooms`` (:func:`room_record` each)."""
        pooled = pooled_metrics(self.per_room)
        return {
            "metrics": aggregate(self.per_room, self.weights),
            "pooled": {k: pooled[k] for k in METRICS},
            "void_excluded": aggregate(self.no_void, self.weights),
            "per_class_iou": {name: _num(v) for name, v in zip(self.class_names, pooled["per_class"]["IoU"])},
            "confusion": np.sum([m["confusion"] for m in self.per_room], axis=0).tolist(),
            "rooms": self.records,
        }


def room_record(uid: str, m: dict, mv: dict, weight: float, size_key: str = "voxels") -> dict:
    """One room's entry of a result's ``rooms``: its metrics and weight, and for intervals
    (:mod:`panorooms3d.bench.stats`) its void-excluded metrics and per-class I/P/L counts.

    ``m``, ``mv``: :func:`room_metrics` with and without void; ``size_key``: ``voxels`` or ``pixels``.
    """
    return {"uid": uid, "weight": weight, size_key: m["voxels"], **{k: m[k] for k in METRICS},
            "void_excluded": {k: mv[k] for k in METRICS}, "counts": {c: m[c].tolist() for c in ("I", "P", "L")}}


def evaluate_on_panoramas(predictions: dict, dataset_dir: Path, *, class_set: str = "paper30",
                          input_encoding: str = "project") -> dict:
    """Score 3D predictions on the panorama pixels, the unit of the 2D teacher's score.

    Each room's predicted class ids (X, Y, Z) are seen from its panorama camera
    (:func:`panorooms3d.bench.report.project_labels`: rays marched through the room's tsdf to the
    zero crossing, the nearest voxel's class at the hit, void where a ray hits nothing) at the
    stored panorama size and scored against the stored panorama labels, per room with the
    project's metric functions. The same call with the ground-truth volume labels as
    ``predictions`` gives the ceiling of any 3D model at this voxel size on these pixels.

    Args:
        predictions: {uid: (X, Y, Z) class ids} (``evaluate(..., keep_predictions=True)``).
        dataset_dir: the dataset folder; rooms without a panorama or camera are left out.

    Returns the layout of :func:`panorooms3d.bench.teacher.evaluate_teacher` (each panorama weighs 1):
    ``unit``, ``metrics``, ``pooled``, ``void_excluded``, ``per_class_iou``, ``confusion``, ``rooms``.

    Raises:
        ValueError: none of the rooms has a panorama and a camera.
    """
    from panorooms3d.bench.report import project_labels
    from panorooms3d.store.dataset import Dataset

    ds = Dataset(Path(dataset_dir))
    cs = get_class_set(class_set)
    rooms_scored = RoomScores(class_set, size_key="pixels")
    for uid, pred in predictions.items():
        sample = load_room(ds, uid, class_set, encoding=input_encoding)
        pano = ds.load_panorama(uid) if sample.camera is not None else None
        if pano is None:
            continue
        gt = cs.map(pano.label)
        labels, _ = project_labels(sample, np.asarray(pred), *gt.shape)
        rooms_scored.add(uid, labels, gt)
    if not rooms_scored:
        raise ValueError(f"{dataset_dir}: none of the {len(predictions)} room(s) has a panorama and a camera")
    return {"class_set": class_set, "unit": "panorama pixels", **rooms_scored.result()}


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def write_metrics(result: dict, path: Path) -> None:
    """Write an evaluation result as JSON (NaN as null), leaving out predictions; atomically (a cut-short
    write leaves ``path`` as it was)."""
    clean = {k: v for k, v in result.items() if k != "predictions"}
    text = json.dumps(_nan_to_none(clean), indent=2)
    with atomic_path(Path(path), "file") as tmp:
        tmp.write_text(text)


def _nan_to_none(obj):
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj
