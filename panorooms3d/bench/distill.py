"""2D-to-3D panoramic distillation (and its finetune-only control), per room with batch 1.

A 3D student pretrained on blocks (:mod:`panorooms3d.bench.train`) is finetuned on whole
training rooms, one room per iteration. For a room with input x (4, X, Y, Z), targets y and a
cached teacher prediction T (K, H, W) of its panorama (:mod:`panorooms3d.bench.teacher`):

    S3 = student(x)                                       (K, X, Y, Z) logits
    S2 = project(tsdf, S3, camera)                        (K, H, W), mask M = rays that hit a surface
    L  = CE(S3, y)  +  kd_weight * tau^2 * mean_{p in M} KL( softmax(T_p / tau) || softmax(S2_p / tau) )

(the paper: L = L_CE + L_dist, tau = 20; the terms are :func:`panorooms3d.nn.losses.voxel_cross_entropy`
and :func:`panorooms3d.nn.losses.distillation_loss`). ``project`` is, by ``projection``:

- ``surface`` (default): :func:`panorooms3d.panorama.projection.render_equirect`, one ray per
  panorama pixel from the stored panorama camera, the first zero crossing of the trilinear tsdf,
  the student's logits interpolated trilinearly there;
- ``faces``: the paper's six 90 degree faces stitched to equirect (``render_equirect_faces``);
- ``emission``: the official code's emission-absorption rendering (``render_equirect_emission``).

The panorama is rendered at the cached teacher prediction's size. The hit location carries no
gradient; the gradient of the KD term reaches the student through the interpolation weights.

``kd_weight=0`` is the **finetune-only control** of the paper's Table 3: the same loop, rooms,
schedule and validation, with CE only (no projection is computed; the log's ``kd`` is null).

``labelled_fraction`` < 1 is the setting in which a 2D teacher saves labelling: only a fixed
subset of the training rooms (:func:`panorooms3d.bench.data.labelled_subset`, the same rooms the
block pretraining used) has 3D labels. Distillation then visits every training room with a cached
teacher prediction and applies CE only on the labelled ones (KD only on the others); the
finetune-only control visits the labelled rooms alone. The labelled rooms get the teacher's term too
(``kd_rooms = "all"``, the paper's recipe on every room), or not (``kd_rooms = "unlabelled"``: CE alone there).

``kd_loss`` chooses the teacher's term (:data:`KD_LOSSES`): ``soft``, the KD term above,
``soft-standardised`` (beyond the paper), the same on each pixel's logits z-scored over the classes, or ``hard``
(beyond the paper), the teacher's argmax as pseudo-labels of the projected student
(:func:`panorooms3d.nn.losses.pseudo_label_loss`, weighted like CE, hit pixels whose teacher
probability reaches ``pseudo_threshold``), or ``hard-unweighted``, the same with every class weighing 1.

``unlabelled_data`` adds rooms from other 3D datasets (folders relative to ``data`` or absolute)
whose 3D labels are never read: their ``split`` rooms are distilled with KD only, beside the rooms
of ``data``, so that the teacher's 2D knowledge of many more rooms than the labelled ones reaches
the student (the paper's premise: 2D labels are cheap). By default every room is visited equally
often (the epochs are permutations of all rooms), so with 10x more extra rooms the rooms of ``data``
get CE in 1 iteration of 11. ``unlabelled_share`` s fixes the mix instead: iteration i visits an
extra room when floor((i + 1) s) > floor(i s) (a share s of the iterations, evenly spread), the
others a room of ``data``; each stream has its own epochs, permutations drawn from (seed, epoch)
as below. Finetune-only ignores the extra rooms. A room uid found in two of the datasets is an error.

Validation every ``val_every`` iterations on the ``val_split`` rooms (volume-weighted mIoU via
:func:`panorooms3d.bench.evaluate.evaluate`) keeps ``<out>/best.pt``; with no validation rooms the
final weights are the best. Room order: epoch e is a permutation of the training rooms drawn
from (seed, e), so iteration i's room is a pure function of (seed, i) and a resumed run sees the
same rooms. ``<out>/checkpoints/last.pt`` (model, optimizer, scheduler, iteration, best) is
written atomically every ``checkpoint_every`` iterations; ``<out>/model.pt`` marks a finished run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from panorooms3d.bench.data import RoomSample, labelled_subset, load_room
from panorooms3d.bench.train import (
    check_adam_beta2,
    class_weights,
    keep_large_allocations_in_heap,
    make_scheduler,
    optimisation_step,
    resolve_device,
    resume,
    save_checkpoint,
)
from panorooms3d.nn.losses import distillation_loss, pseudo_label_loss, voxel_cross_entropy
from panorooms3d.run.atomic import write_json
from panorooms3d.run.checkpoint import load_checkpoint
from panorooms3d.taxonomy import get_class_set

CHECKPOINT = "checkpoints/last.pt"
PROJECTIONS = ("surface", "faces", "emission", "official-emission")
#: Options each projection takes from the config (DistillConfig field -> keyword of the render function).
PROJECTION_OPTIONS = {
    "surface": {},
    "faces": {"face_size": "face_size"},
    "emission": {"face_size": "face_size", "n_samples": "n_samples", "near": "near", "far": "far"},
    "official-emission": {"face_size": "face_size", "n_samples": "n_samples", "near": "near", "far": "far",
                          "stitch_padding": "padding"},
}
#: Which pixels the KD term counts: ``hit`` = rays that hit a surface (the project), ``none`` = all (the official).
KD_MASKS = {"hit": lambda result: result.hit, "none": lambda result: None}


def _soft_kd(values, teacher, result, mask, *, tau, normalisation, class_weight, threshold, classes):
    """The paper's KD term: tau^2 KL(softmax(T / tau) || softmax(S / tau)) over ``mask`` (:func:`distillation_loss`)."""
    return distillation_loss(values, teacher, mask, tau=tau, normalisation=normalisation)


def _standardised_kd(values, teacher, result, mask, *, tau, normalisation, class_weight, threshold, classes):
    """Beyond the paper: the KD term above on each pixel's logits z-scored over the classes
    (:func:`panorooms3d.nn.losses.standardise_logits`), the teacher's and the student's alike."""
    return distillation_loss(values, teacher, mask, tau=tau, normalisation=normalisation, standardise=True)


def _hard_kd(values, teacher, result, mask, *, tau, normalisation, class_weight, threshold, classes):
    """Pseudo-labels: class-weighted CE against the teacher's argmax, on hit pixels (of ``mask``) it is sure of."""
    counted = result.hit if mask is None else mask & result.hit
    return pseudo_label_loss(values, teacher, counted, weight=class_weight, threshold=threshold, classes=classes)


def _hard_unweighted_kd(values, teacher, result, mask, *, tau, normalisation, class_weight, threshold, classes):
    """Pseudo-labels as ``hard``, every class weighing 1 (the CE term keeps its weights)."""
    return _hard_kd(values, teacher, result, mask, tau=tau, normalisation=normalisation, class_weight=None,
                    threshold=threshold, classes=classes)


#: What the teacher's term is (``kd_loss``): ``soft`` = the paper's KL at temperature tau (``kd_normalisation``
#: and ``kd_mask`` apply); ``soft-standardised`` = beyond the paper, the same on logits z-scored over the classes
#: at each pixel, the teacher's and the student's (neither's scale counts, only how it ranks and spaces the
#: classes; tau then acts on unit-variance logits: Sun et al. 2024 use about 2); ``hard`` = beyond the paper,
#: the teacher's argmax as labels of the projected student
#: (:func:`panorooms3d.nn.losses.pseudo_label_loss`: weighted like the CE term, only pixels whose ray hit a
#: surface, whose teacher probability reaches ``pseudo_threshold`` and whose teacher class is one of
#: ``pseudo_classes``; tau and the normalisation do not apply);
#: ``hard-unweighted`` = the same without class weights.
KD_LOSSES = {"soft": _soft_kd, "soft-standardised": _standardised_kd, "hard": _hard_kd,
             "hard-unweighted": _hard_unweighted_kd}
#: Which rooms get the teacher's term (``kd_rooms``), by whether the room has 3D labels: ``all`` (the paper's
#: recipe, and the project's default) or ``unlabelled`` (the teacher only where no 3D labels exist, CE alone elsewhere).
KD_ROOMS = {"all": lambda labelled: True, "unlabelled": lambda labelled: not labelled}


@dataclass
class DistillConfig:
    """Settings of a distillation (or finetune-only) run; JSON-able, stored in every checkpoint.

    Attributes:
        data: dataset folder.
        student: checkpoint of the block-pretrained student (a ``bench.train`` ``model.pt``/``last.pt``).
        teacher_cache: folder of cached teacher logits (``<room key>.npy``); unused when kd_weight is 0.
        out: run folder.
        model: registered model name (default: the one stored in the student checkpoint).
        iterations: rooms seen (batch 1); the paper: 45,000.
        tau: distillation temperature (the paper: 20).
        kd_weight: weight of the KD term (1 = the paper; 0 = finetune-only control).
        lr: Adam learning rate (the paper does not state one for this stage; our default 1e-4).
        adam_beta2: Adam's second-moment decay of this stage's optimizer (torch's default and the official code's:
            0.999), whatever the block training used: a fresh Adam starts here either way.
        schedule: ``constant`` or ``poly``.
        val_every: iterations between validations (the official script: 1500); 0 = none (the final weights are the best).
        val_split: the split validated on.
        projection: ``surface`` | ``faces`` | ``emission`` (see the module docstring).
        class_set, seed, device: as in :class:`panorooms3d.bench.train.TrainConfig`.
        split: the split distilled on.
        checkpoint_every, log_every: iterations between checkpoints / log lines.
        max_voxels: rooms above this are validated with a sliding window.
        model_overrides: constructor overrides (e.g. ``{"skip": False}``).
        labelled_fraction: share of the training rooms with 3D labels (see the module docstring).
        warmup: iterations of linear learning-rate warm-up (as in block training).
        class_weights: CE class weights, ``none`` (the paper) or ``sqrt-inverse``/``inverse``
            frequency over the labelled training rooms, as in block training: a student trained
            on weighted blocks and finetuned without weights drifts back toward void and wall.
        kd_normalisation: ``project`` (mean over counted pixels) or ``official`` (sum / (K H W)), see
            :func:`panorooms3d.nn.losses.distillation_loss`.
        kd_mask: ``hit`` or ``none`` (:data:`KD_MASKS`).
        kd_loss: ``soft`` (the paper's KD), ``soft-standardised`` (the same on logits z-scored over the classes),
            ``hard`` (the teacher's argmax as pseudo-labels, weighted like CE) or
            ``hard-unweighted`` (the same, every class weighing 1); :data:`KD_LOSSES`.
        pseudo_threshold: with a ``hard`` kd_loss, the smallest teacher probability of its argmax that counts.
        kd_rooms: ``all`` or ``unlabelled``: the rooms that get the teacher's term (:data:`KD_ROOMS`).
        pseudo_classes: with a ``hard`` kd_loss, the class names (of ``class_set``) whose pseudo-labels count: only
            pixels the teacher gives one of them (None = every class; e.g. the classes the teacher leads on
            held-out panoramas, ``benchmark/diagnosis/teacher_lead.py``).
        face_size, n_samples, near, far, stitch_padding: projection options (:data:`PROJECTION_OPTIONS`;
            ``official-emission``: the official 256, 100, 0.1, 7.0, reflection). ``face_size`` None =
            the render function's default.
        milestones, milestone_step, gamma: the ``multistep`` schedule: the learning rate is multiplied
            by ``gamma`` at each milestone epoch, an epoch being ``milestone_step`` iterations (official:
            [0, 2, 4, 6], 1500, 0.5).
        input_encoding: ``project`` or ``official`` (:data:`panorooms3d.bench.data.ENCODINGS`).
        room_pad_to: the rooms' free-space padding in this stage's training and validation (an int or [px, py, pz];
            :func:`panorooms3d.bench.evaluate.forward_room`); None: the student's block training's ``room_pad_to``,
            and where it has none, the evaluation's (32).
        unlabelled_data: extra 3D dataset folders (relative to ``data`` or absolute) whose ``split``
            rooms are distilled with KD only, their labels never read (see the module docstring).
        unlabelled_share: share of the iterations that visit a room of ``unlabelled_data`` (0 < s < 1),
            or None: every room equally often (see the module docstring). Without such rooms (no
            ``unlabelled_data``, or finetune-only) every iteration visits a room of ``data``.
        The protocol files (benchmark/protocols/*.toml) set these; the defaults are the project's.
    """

    data: str
    student: str
    teacher_cache: str | None = None
    out: str = "runs/distill"
    model: str | None = None
    iterations: int = 45000
    tau: float = 20.0
    kd_weight: float = 1.0
    lr: float = 1e-4
    adam_beta2: float = 0.999
    schedule: str = "constant"
    val_every: int = 1500
    val_split: str = "val"
    projection: str = "surface"
    class_set: str = "paper30"
    seed: int = 0
    device: str = "auto"
    split: str = "train"
    checkpoint_every: int = 100
    log_every: int = 1
    max_voxels: int = 256 * 256 * 128
    model_overrides: dict = field(default_factory=dict)
    labelled_fraction: float = 1.0
    warmup: int = 0
    class_weights: str = "none"
    kd_normalisation: str = "project"
    kd_mask: str = "hit"
    kd_loss: str = "soft"
    pseudo_threshold: float = 0.0
    kd_rooms: str = "all"
    pseudo_classes: list | None = None
    face_size: int | None = None
    n_samples: int = 100
    near: float = 0.1
    far: float = 7.0
    stitch_padding: str = "reflection"
    milestones: list = field(default_factory=lambda: [0, 2, 4, 6])
    milestone_step: int = 1500
    gamma: float = 0.5
    input_encoding: str = "project"
    room_pad_to: int | list[int] | None = None
    unlabelled_data: list = field(default_factory=list)
    unlabelled_share: float | None = None


@dataclass
class DistillResult:
    """How a distillation run went and where its weights are."""

    best: Path
    final: Path
    iterations: int
    best_miou: float | None
    best_iteration: int
    resumed_from: int
    seconds: float


def project_logits(sample: RoomSample, logits: torch.Tensor, height: int, width: int, projection: str = "surface",
                   **options):
    """Render student logits (K, X, Y, Z) into the room's panorama (K, height, width); returns a ProjectionResult.

    ``options``: DistillConfig fields of :data:`PROJECTION_OPTIONS` (others, and None values, are ignored).
    """
    from panorooms3d.panorama import projection as proj

    fn = {"surface": proj.render_equirect, "faces": proj.render_equirect_faces,
          "emission": proj.render_equirect_emission, "official-emission": proj.render_equirect_official}.get(projection)
    if fn is None:
        raise ValueError(f"unknown projection {projection!r}; use one of {PROJECTIONS}")
    kwargs = {kw: options[name] for name, kw in PROJECTION_OPTIONS[projection].items() if options.get(name) is not None}
    tsdf = torch.as_tensor(sample.tsdf, device=logits.device)
    return fn(tsdf, logits, origin=sample.origin, voxel_size=sample.voxel_size, camera=sample.camera,
              height=height, width=width, **kwargs)


def room_losses(model: torch.nn.Module, sample: RoomSample, teacher_logits: torch.Tensor | None, *,
                tau: float = 20.0, kd_weight: float = 1.0, projection: str = "surface",
                device: torch.device | str = "cpu", labelled: bool = True, kd_normalisation: str = "project",
                kd_mask: str = "hit", projection_options: dict | None = None,
                class_weight: torch.Tensor | None = None, kd_loss: str = "soft",
                pseudo_threshold: float = 0.0, pseudo_classes: torch.Tensor | None = None,
                pad_to: int | Sequence[int] | None = None) -> dict:
    """The losses of one room (batch 1): ``ce``, ``kd`` (None when kd_weight is 0 or no teacher), ``loss``, ``hit``.

    Args:
        model: the 3D student ((1, 4, X, Y, Z) -> (1, K, X, Y, Z)).
        sample: the room (needs tsdf, origin, voxel_size, camera for the KD term).
        teacher_logits: (K, H, W) cached teacher logits, or None.
        labelled: False for a room whose 3D labels may not be used: no CE term (``ce`` is None).
        kd_normalisation, kd_mask, projection_options: see :class:`DistillConfig` (the protocol's KD term).
        class_weight: optional (K,) CE class weights (also those of the ``hard`` teacher term).
        kd_loss, pseudo_threshold: the teacher's term (:data:`KD_LOSSES`).
        pseudo_classes: optional (K,) bool: the teacher classes whose pseudo-labels count (``hard`` terms).
        pad_to: the room's free-space padding (:func:`panorooms3d.bench.evaluate.forward_room`); None: its default.
    """
    from panorooms3d.bench.evaluate import forward_room

    x = torch.as_tensor(sample.x, dtype=torch.float32, device=device)[None]
    logits = forward_room(model, x) if pad_to is None else forward_room(model, x, pad_to)
    if labelled:
        y = torch.as_tensor(sample.y, dtype=torch.long, device=device)[None]
        ce = voxel_cross_entropy(logits.float(), y, weight=class_weight)
    else:
        if kd_weight <= 0 or teacher_logits is None:
            raise ValueError(f"room {sample.uid} has no labels and no teacher term: nothing to learn from")
        ce = None
    out = {"ce": ce, "kd": None, "loss": ce, "hit": None}
    if kd_weight > 0 and teacher_logits is not None:
        if sample.camera is None:
            raise ValueError(f"room {sample.uid} has no panorama camera; it cannot be distilled")
        t = torch.as_tensor(teacher_logits, device=device)
        res = project_logits(sample, logits[0].float(), int(t.shape[1]), int(t.shape[2]), projection,
                             **(projection_options or {}))
        if kd_mask not in KD_MASKS:
            raise ValueError(f"unknown KD mask {kd_mask!r}; use one of {tuple(KD_MASKS)}")
        if kd_loss not in KD_LOSSES:
            raise ValueError(f"unknown KD loss {kd_loss!r}; use one of {tuple(KD_LOSSES)}")
        mask = KD_MASKS[kd_mask](res)
        kd = KD_LOSSES[kd_loss](res.values, t.to(res.values.dtype), res, None if mask is None else mask.to(device),
                                tau=tau, normalisation=kd_normalisation, class_weight=class_weight,
                                threshold=pseudo_threshold, classes=pseudo_classes)
        out.update(kd=kd, loss=kd_weight * kd if ce is None else ce + kd_weight * kd, hit=float(res.hit.float().mean()))
    return out


def _class_mask(names: list | None, class_set: str) -> torch.Tensor | None:
    """(K,) bool of the named classes of ``class_set`` (None for None); an unknown name is an error that lists them."""
    if names is None:
        return None
    known = list(get_class_set(class_set).class_names)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"pseudo_classes {unknown or names} are not classes of {class_set!r}; use some of {known}")
    mask = torch.zeros(len(known), dtype=torch.bool)
    mask[[known.index(n) for n in names]] = True
    return mask


def room_order(n_rooms: int, iteration: int, seed: int) -> int:
    """Index of the room seen at ``iteration``: epoch e = iteration // n is a permutation drawn from (seed, e)."""
    epoch, pos = divmod(int(iteration), n_rooms)
    return int(np.random.default_rng([seed, 11, epoch]).permutation(n_rooms)[pos])


def visit(iteration: int, n_rooms: int, n_extra: int, seed: int, share: float | None) -> tuple[bool, int]:
    """(extra, index) of the room seen at ``iteration``: a room of ``data`` (index < n_rooms) or of ``unlabelled_data``.

    ``share`` None: one stream of all n_rooms + n_extra rooms (:func:`room_order`). Otherwise
    iteration i is the extra stream's visit floor(i s) when floor((i + 1) s) > floor(i s), else the
    main stream's visit i - floor(i s); each stream's epochs are permutations drawn from (seed, epoch)
    (the extra stream's with a seed of its own).
    """
    if share is None or n_extra == 0:
        k = room_order(n_rooms + n_extra, iteration, seed)
        return (k >= n_rooms, k - n_rooms if k >= n_rooms else k)
    before = math.floor(iteration * share)
    if math.floor((iteration + 1) * share) > before:
        return True, room_order(n_extra, before, seed + 1_000_003)
    return False, room_order(n_rooms, iteration - before, seed)


def unlabelled_folders(data: str | Path, folders: list[str]) -> list[Path]:
    """``unlabelled_data`` folders resolved: relative ones are relative to the dataset folder ``data``."""
    return [Path(p) if Path(p).is_absolute() else Path(data) / p for p in folders]


def _unlabelled_rooms(data: Path, folders: list[str], split: str, source: dict) -> list[str]:
    """The ``split`` rooms of the ``unlabelled_data`` datasets; adds each room's dataset to ``source``."""
    from panorooms3d.store.dataset import Dataset

    extra = []
    for folder in unlabelled_folders(data, folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"unlabelled_data folder not found: {folder} (a 3D dataset made by "
                                    "`panorooms3d build`; relative paths are relative to the dataset folder)")
        other = Dataset(folder)
        for uid in other.split(split):
            if uid in source:
                raise ValueError(f"room {uid} is in both {source[uid].root} and {folder}: "
                                 "unlabelled_data must hold other rooms than the dataset")
            source[uid] = other
            extra.append(uid)
    return extra


def _read_student(path: Path) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f"student checkpoint not found: {path}")
    return load_checkpoint(path, "cpu")


def distill(data: str | Path, student_checkpoint: str | Path, teacher_cache: str | Path | None, out: str | Path, *,
            iterations: int = 45000, tau: float = 20.0, lr: float = 1e-4, kd_weight: float = 1.0,
            finetune_only: bool = False, stop_after: int | None = None, progress: bool = True,
            **settings) -> DistillResult:
    """Distil a 2D teacher into a block-pretrained 3D student (or finetune it: ``finetune_only`` / ``kd_weight=0``).

    Args:
        data: dataset folder. student_checkpoint: the pretrained student. teacher_cache: cached teacher logits.
        out: run folder. iterations, tau, lr, kd_weight: see :class:`DistillConfig`; ``**settings`` its other fields.
        finetune_only: the control of the paper's Table 3 (sets kd_weight to 0).
        stop_after: stop (with a checkpoint) after this many iterations of this call; resume later.
        progress: show a progress bar.
    """
    from panorooms3d.bench.evaluate import evaluate
    from panorooms3d.nn.registry import build_model
    from panorooms3d.store.dataset import Dataset

    if finetune_only:
        kd_weight = 0.0
    config = DistillConfig(data=str(data), student=str(student_checkpoint),
                           teacher_cache=None if teacher_cache is None else str(teacher_cache), out=str(out),
                           iterations=iterations, tau=tau, lr=lr, kd_weight=kd_weight, **settings)
    if config.projection not in PROJECTIONS:
        raise ValueError(f"unknown projection {config.projection!r}; use one of {PROJECTIONS}")
    if config.unlabelled_share is not None and not 0 < config.unlabelled_share < 1:
        raise ValueError(f"unlabelled_share must be between 0 and 1 (exclusive), not {config.unlabelled_share}; "
                         "leave it unset to visit every room equally often")
    if config.kd_loss not in KD_LOSSES:
        raise ValueError(f"unknown kd_loss {config.kd_loss!r}; use one of {tuple(KD_LOSSES)}")
    if config.kd_rooms not in KD_ROOMS:
        raise ValueError(f"unknown kd_rooms {config.kd_rooms!r}; use one of {tuple(KD_ROOMS)}")
    check_adam_beta2(config.adam_beta2)
    if not 0.0 <= config.pseudo_threshold < 1.0:
        raise ValueError(f"pseudo_threshold must be in [0, 1), not {config.pseudo_threshold}")
    pseudo_classes = _class_mask(config.pseudo_classes, config.class_set)
    if config.kd_weight > 0 and (teacher_cache is None or not Path(teacher_cache).is_dir()):
        raise FileNotFoundError(f"teacher cache folder not found: {teacher_cache} (run train-teacher and cache first)")
    student = _read_student(Path(student_checkpoint))
    saved = student.get("config", {}) if isinstance(student, dict) else {}
    if config.model is None:
        config.model = saved.get("model")
        if config.model is None:
            raise ValueError(f"{student_checkpoint} does not name its model; pass model=...")
    if not config.model_overrides and saved.get("model_overrides"):
        config.model_overrides = dict(saved["model_overrides"])
    if config.room_pad_to is None:  # the rooms padded as the block training validated them
        config.room_pad_to = saved.get("room_pad_to")
    pad = config.room_pad_to
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    if device.type == "cpu":
        keep_large_allocations_in_heap()
    torch.manual_seed(config.seed)
    model = build_model(config.model, num_classes=get_class_set(config.class_set).num_classes, in_channels=4,
                        **config.model_overrides)
    model.load_state_dict(student["model"] if "model" in student else student)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, config.adam_beta2))
    scheduler = make_scheduler(optimizer, config)
    ckpt_path = out / CHECKPOINT
    ckpt = resume(ckpt_path, model, optimizer, scheduler)
    start, best = (int(ckpt["iteration"]), dict(ckpt["best"])) if ckpt else (0, {"miou": None, "iteration": 0})
    resumed_from = start

    ds = Dataset(Path(data))
    rooms = ds.split(config.split)
    labelled = set(labelled_subset(rooms, config.labelled_fraction))
    source = dict.fromkeys(rooms, ds)  # the dataset each room is read from
    extra: list[str] = []  # the rooms of the unlabelled_data datasets
    if config.kd_weight <= 0:  # without a teacher only the labelled rooms teach anything
        rooms = [u for u in rooms if u in labelled]
    else:
        extra = _unlabelled_rooms(Path(data), config.unlabelled_data, config.split, source)
    taught = KD_ROOMS[config.kd_rooms]  # labelled? -> does the room get the teacher's term
    if config.kd_weight > 0:
        from panorooms3d.bench.teacher import teacher_cache_path

        missing = [u for u in rooms + extra
                   if taught(u in labelled) and not teacher_cache_path(teacher_cache, u).exists()]
        rooms = [u for u in rooms if u not in missing]
        extra = [u for u in extra if u not in missing]
        if missing and progress:
            tqdm.write(f"distill: {len(missing)} room(s) without a cached teacher prediction are left out")
    if not rooms:
        raise ValueError(f"{data}: no {config.split!r} rooms to distil on")
    val_rooms = ds.split(config.val_split) if config.val_every > 0 else []  # val_every 0: no validation
    weight = class_weights(Path(data), sorted(labelled), config.class_set, config.class_weights) if labelled else None
    if weight is not None:
        weight = weight.to(device)
    write_json(out / "config.json", asdict(config))
    log = (out / "distill_log.jsonl").open("a")
    best_path, final_path = out / "best.pt", out / "model.pt"

    def payload(iteration: int) -> dict:
        return {"model": model.state_dict(), "iteration": iteration, "config": {**asdict(config)}}

    def checkpoint(iteration: int) -> None:
        save_checkpoint(ckpt_path, {**payload(iteration), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "best": best})

    def validate(iteration: int) -> None:
        result = evaluate(model, Path(data), rooms=val_rooms, split=config.val_split, class_set=config.class_set,
                          max_voxels=config.max_voxels, device=str(device), progress=False,
                          input_encoding=config.input_encoding, **({} if pad is None else {"pad_to": pad}))
        miou = result["metrics"]["mIoU"]
        model.train()
        log.write(json.dumps({"iteration": iteration, "val_mIoU": miou}) + "\n")
        if best["miou"] is None or (math.isfinite(miou) and miou > best["miou"]):
            best.update(miou=miou, iteration=iteration)
            save_checkpoint(best_path, {**payload(iteration), "val_mIoU": miou})

    end = config.iterations if stop_after is None else min(config.iterations, start + stop_after)
    t0 = time.perf_counter()
    mode = "distill" if config.kd_weight > 0 else "finetune"
    bar = tqdm(total=config.iterations, initial=start, desc=f"{mode} {config.model}", unit="room",
               disable=not progress, dynamic_ncols=True)
    cache: dict[str, RoomSample] = {}
    model.train()
    for it in range(start, end):
        torch.manual_seed(config.seed * 1_000_003 + it)
        is_extra, k = visit(it, len(rooms), len(extra), config.seed, config.unlabelled_share)
        uid = extra[k] if is_extra else rooms[k]
        sample = cache.get(uid) or load_room(source[uid], uid, config.class_set, encoding=config.input_encoding)
        if len(cache) < 64:
            cache[uid] = sample
        teacher = None
        if config.kd_weight > 0 and taught(uid in labelled):
            from panorooms3d.bench.teacher import teacher_cache_path

            teacher = torch.from_numpy(np.load(teacher_cache_path(teacher_cache, uid)).astype(np.float32))
        losses = room_losses(model, sample, teacher, tau=config.tau, kd_weight=config.kd_weight,
                             projection=config.projection, device=device, labelled=uid in labelled,
                             kd_normalisation=config.kd_normalisation, kd_mask=config.kd_mask,
                             projection_options={k: getattr(config, k) for k in PROJECTION_OPTIONS[config.projection]},
                             class_weight=weight, kd_loss=config.kd_loss, pseudo_threshold=config.pseudo_threshold,
                             pseudo_classes=pseudo_classes, pad_to=pad)
        value = optimisation_step(losses["loss"], optimizer, scheduler, on_diverge=lambda it=it: checkpoint(it),
                                  where=f"iteration {it + 1} (room {uid})")
        kd = None if losses["kd"] is None else float(losses["kd"].detach())
        ce = None if losses["ce"] is None else float(losses["ce"].detach())
        bar.update(1)
        bar.set_postfix(ce="-" if ce is None else f"{ce:.3f}", kd="-" if kd is None else f"{kd:.3f}")
        if (it + 1) % config.log_every == 0 or it + 1 == end:
            log.write(json.dumps({"iteration": it + 1, "room": uid, "loss": value, "ce": ce,
                                  "kd": kd, "hit_fraction": losses["hit"], "lr": scheduler.get_last_lr()[0],
                                  "seconds": time.perf_counter() - t0}) + "\n")
            log.flush()
        if val_rooms and ((it + 1) % config.val_every == 0 or it + 1 == config.iterations):
            validate(it + 1)
        if (it + 1) % config.checkpoint_every == 0:
            checkpoint(it + 1)
    done = max(end, start)
    checkpoint(done)
    bar.close()
    if done >= config.iterations:
        if not val_rooms:  # nothing to select on: the final weights are the best
            best.update(miou=None, iteration=done)
            save_checkpoint(best_path, payload(done))
        save_checkpoint(final_path, payload(done))
    log.close()
    return DistillResult(best=best_path, final=final_path, iterations=done, best_miou=best["miou"],
                         best_iteration=int(best["iteration"]), resumed_from=resumed_from,
                         seconds=time.perf_counter() - t0)
