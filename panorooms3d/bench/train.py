"""Training on random blocks: Adam, checkpoints with optimizer and scheduler, resume, DDP.

``train(TrainConfig(...))`` trains a registered model (``panorooms3d models``) on random
``block``^3 crops of a dataset's training rooms. It is

- deterministic for a seed: sample ``i`` is a pure function of (seed, i) (see
  :mod:`panorooms3d.bench.data`) and the torch RNG is re-seeded at every iteration, so a run
  killed and resumed from its checkpoint ends with the same weights as an uninterrupted one;
- resumable: ``<out>/checkpoints/last.pt`` (model, optimizer, scheduler, scaler, iteration,
  config) is written atomically every ``checkpoint_every`` iterations and at the end;
- observable: a progress bar with the loss, TensorBoard logs in ``<out>/tb`` (when tensorboard
  is installed), ``<out>/train_log.jsonl``;
- scalable: DDP when launched with ``torchrun`` (``WORLD_SIZE`` > 1; gloo on CPU, nccl on GPU),
  bf16 autocast on GPU (``amp``).

Defaults follow the paper: Adam, learning rate 1e-3, 128^3 blocks drawn uniformly, cross-entropy
over all 30 classes (void included), no learning-rate decay. The CPU track
(benchmark/cpu-track.toml, docs/benchmark.md) changes what the diagnosis showed to matter on a
small budget, each a setting here: non-cubic blocks that hold a room's height (``block``),
blocks centred on labelled voxels (``sampling="surface"``), class-frequency weights
(``class_weights``), a linear warm-up and a cosine or poly decay (``warmup``, ``schedule``), and
validation during training (``val_every``) whose curve shows when training has flattened.
``labelled_fraction`` < 1 trains on a fixed subset of the training rooms (the rooms whose 3D
labels the run may use; :func:`panorooms3d.bench.data.labelled_subset`). ``block_teacher`` adds a
second target beside the labels, beyond the paper: the softened predictions of another trained 3D
model (e.g. SparseConv) on the same augmented block (:func:`block_kd_loss`).

Where the blocks come from is a setting too (``blocks``, :data:`BLOCK_SOURCES`): ``crops`` (random
crops of the dataset's rooms, above) or ``official:<folder>``, the official sparse block release as
the official ``train.py`` reads it (:class:`panorooms3d.bench.data.OfficialBlockStream`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from panorooms3d.bench.data import (
    BlockConfig,
    BlockDataset,
    OfficialBlockStream,
    block_size,
    labelled_subset,
    select_rooms,
)
from panorooms3d.nn.losses import voxel_cross_entropy
from panorooms3d.run.atomic import atomic_path, write_json
from panorooms3d.run.checkpoint import load_checkpoint
from panorooms3d.run.errors import UserError
from panorooms3d.taxonomy import get_class_set

CHECKPOINT = "checkpoints/last.pt"
VAL_CACHE_BYTES = 1 << 30  # validation rooms are kept loaded between validations up to this size


@dataclass
class TrainConfig:
    """Settings of a block-training run (all JSON-able; stored in every checkpoint).

    Attributes:
        data: dataset folder (``manifest.json``): the rooms of ``crops`` blocks and the rooms validated
            on (``val_every``). Optional with ``official:`` blocks (then no validation).
        blocks: where training blocks come from (:data:`BLOCK_SOURCES`): ``crops`` (random ``block``
            crops of the ``split`` rooms of ``data``) or ``official:<folder>`` (the official sparse
            block release: ``<folder>/<split>/*.npz`` when that folder exists, as the official
            ``train.py --train_data`` reads ``train/``, else ``<folder>/*.npz``; ``block`` is their
            edge, 128 in the release; inputs and targets element-wise as the official ``collate``).
        model: registered model name (``3dseg-t`` ...).
        out: run folder (checkpoints, logs, final weights).
        iterations: optimisation steps.
        batch_size: blocks per step (per process under DDP).
        block: block edge in voxels (paper: 128), or [bx, by, bz].
        pad_to: ``crops`` only: rooms are padded to multiples of this (an int or [px, py, pz]) before a block
            start is drawn (:class:`BlockConfig`); ``None`` (the default): the block's largest edge. A block
            lower than its room pads (64 x 64 x 48 with ``pad_to = [64, 64, 48]`` for rooms up to 48 voxels
            high) then starts at the room's floor, as every 64^3 block does.
        room_pad_to: how whole rooms are padded with free space when shown to the trained model: in its
            validation, in room-level training from it (:mod:`panorooms3d.bench.distill`) and in a suite's
            evaluation of it (an int or [px, py, pz]; ``None``: the evaluation's, ``evaluate.PAD_TO`` = 32 or
            the suite's ``[eval] pad_to``). A model trained on blocks lower than 64 needs its rooms padded to
            its blocks' height: on 64 x 64 x 48 blocks the track's 3DSeg-T scored 8 points more with rooms
            padded to 48 in z ([32, 32, 16]) than to 64 (``benchmark/diagnosis/eval_padding.py``).
        lr: Adam learning rate (paper: 1e-3).
        weight_decay: Adam weight decay.
        adam_beta2: Adam's second-moment decay (torch's default and the official code's: 0.999; lower forgets
            the gradients' scale sooner).
        schedule: ``constant`` (paper), ``poly`` (power 0.9) or ``cosine`` (to 1% of lr); after the warm-up.
        warmup: iterations of linear learning-rate warm-up from 1% (0 = none, the paper).
        cooldown: share of the iterations, at the end, over which the rate falls linearly to 0 on top of
            ``schedule`` (in [0, 1); 0 = none, the paper): with ``constant`` the warm-up / stable / decay
            schedule; its last step runs at ``1 / round(cooldown * iterations)`` of the rate before it.
        sampling: block sampling, ``uniform`` (paper) or ``surface`` (see BlockConfig).
        augment: random flips in x / y and quarter turns about z of each ``crops`` block (True, the
            project's default); False draws the crops as they lie in the room, as the official trainer
            draws its pre-cut blocks (``official:`` blocks are never augmented).
        class_weights: cross-entropy class weights: ``none`` (paper), ``sqrt-inverse`` or ``inverse``
            frequency of each class over the training rooms' voxels (normalised to mean 1 over
            the classes present; absent classes weigh 1).
        labelled_fraction: share of the training rooms whose labels are used (1 = all).
        rooms: optional uid patterns (``fnmatch``, e.g. ``["synth-1-*"]``): train only on the ``split``
            rooms whose uid matches one of them (:func:`panorooms3d.bench.data.select_rooms`); ``None``
            = every room of the split. Compares training sets within one dataset, whose val and test
            rooms stay the same (``benchmark/cpu-track-more-rooms.toml``). Block training only: a
            suite's room-level finetuning and distillation keep their own rooms.
        val_every: iterations between validations on ``val_split`` (0 = none); the curve goes
            to ``train_log.jsonl`` (``val_mIoU``, ``val_mIoU_void_excluded``).
        val_split: the split validated on.
        threads: torch intra-op threads (0 = torch's default).
        input_encoding: ``project`` (rooms this project builds) or ``official`` (imported official
            rooms; see :data:`panorooms3d.bench.data.ENCODINGS`); the protocol files set it.
        decoder_lr_mult: learning-rate multiplier of the 3D Segmenter's linear decoder (``head`` and
            ``skip``; 1 = the paper). Adam moves each weight by about lr per step, and the skip's
            per-voxel weights must grow to O(1) to draw voxel-sharp boundaries that the 4-voxel
            tokens blur: at lr 1e-3 that takes ~1000 steps (measured in docs/benchmark.md).
        class_set: target classes.
        seed: the seed of sampling and initialisation.
        workers: DataLoader workers.
        checkpoint_every: iterations between checkpoints.
        log_every: iterations between log lines.
        amp: bf16 autocast on CUDA.
        cpu_amp: bf16 autocast on the CPU (:data:`CPU_AMP`): ``off`` (float32), ``on``, or ``auto`` (on where the
            CPU multiplies bf16 in hardware, :func:`cpu_has_bf16`). Where it does (AMX), steps were 1.03x (3DSeg-T),
            1.75x (SparseConv) and 2.45x (the reduced U-Net) as fast at one thread; where it does not, bf16 is 3-5x
            slower (docs/performance.md). Validation and evaluation stay float32.
        device: ``auto``, ``cpu`` or ``cuda``.
        split: the split to train on.
        init: optional checkpoint to initialise the model from (e.g. a pretrained student).
        model_overrides: constructor overrides (e.g. ``{"skip": False}``).
        ema: decay of an exponential moving average of the weights (0 = none, the paper). With it the
            average is what is validated and what ``model.pt`` holds (the optimiser still steps the raw
            weights, kept in the checkpoint); its decay at step t is ``min(ema, (1 + t) / (ema_ramp + t))`` so
            that the first steps are not averaged with the random initialisation.
        ema_ramp: the ramp of that decay (>= 1): with the default 10 the window grows by about one step in 9
            (``ema = 0.99`` is reached at step 890, 0.998 at 4,490); with 2 by about one in each (0.99 at step
            98, 0.998 at 498); 1 = no ramp, ``ema`` from the first step.
        block_teacher: optional checkpoint of a trained 3D model (a block training's ``model.pt``, e.g.
            SparseConv's): every training block also goes through it (no gradient, float32 as in evaluation),
            and ``block_teacher_weight`` x :func:`block_kd_loss` of its logits is added to the cross-entropy.
            Beyond the paper (whose teacher is 2D and acts at room level): a convolutional teacher of the
            3D student, as DeiT distils a convnet into a vision transformer. ``None``: labels only.
        block_teacher_weight: weight of that term.
        block_teacher_tau: its temperature (both softmaxes divided by it; the term is scaled by tau^2).
        dice_weight: weight of a soft Dice term (:func:`panorooms3d.nn.losses.soft_dice_loss`, over the classes
            present in each batch) added to the cross-entropy; 0 = cross-entropy only (the paper). Beyond the
            paper: a loss that counts each class as mIoU does.
    """

    data: str | None = None
    model: str = "3dseg-t"
    out: str = "runs/3dseg-t"
    iterations: int = 20000
    batch_size: int = 2
    block: int = 128
    pad_to: int | list[int] | None = None
    room_pad_to: int | list[int] | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    adam_beta2: float = 0.999
    schedule: str = "constant"
    warmup: int = 0
    cooldown: float = 0.0
    sampling: str = "uniform"
    augment: bool = True
    class_weights: str = "none"
    labelled_fraction: float = 1.0
    rooms: list[str] | None = None
    val_every: int = 0
    val_split: str = "val"
    threads: int = 0
    decoder_lr_mult: float = 1.0
    input_encoding: str = "project"
    class_set: str = "paper30"
    seed: int = 0
    workers: int = 2
    checkpoint_every: int = 200
    log_every: int = 10
    amp: bool = True
    cpu_amp: str = "off"
    device: str = "auto"
    split: str = "train"
    init: str | None = None
    model_overrides: dict = field(default_factory=dict)
    blocks: str = "crops"
    ema: float = 0.0
    ema_ramp: float = 10.0
    block_teacher: str | None = None
    block_teacher_weight: float = 1.0
    block_teacher_tau: float = 1.0
    dice_weight: float = 0.0


@dataclass
class TrainResult:
    """Where a finished run's weights are and how it went."""

    checkpoint: Path
    iterations: int
    final_loss: float
    seconds: float
    resumed_from: int


#: Values of ``cpu_amp`` (:class:`TrainConfig`, :class:`~panorooms3d.bench.teacher.TeacherConfig`).
CPU_AMP = ("off", "on", "auto")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware: AMX tiles or AVX512-BF16 (torch's own CPU feature checks)."""
    checks = (getattr(torch.cpu, "_is_amx_tile_supported", None), getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    return any(bool(check()) for check in checks if check is not None)


def cpu_description() -> dict:
    """The CPU's model name (``/proc/cpuinfo`` where there is one), its bf16 flags and :func:`cpu_has_bf16`: what
    the benchmark scripts record beside their timings."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": name, "bf16_flags": sorted(flags & {"amx_bf16", "amx_tile", "avx512_bf16"}),
            "cpu_has_bf16": cpu_has_bf16()}


def bf16_autocast(device: torch.device, amp: bool, cpu_amp: str) -> bool:
    """Whether training on ``device`` runs under bf16 autocast: ``amp`` on CUDA, ``cpu_amp`` on the CPU.

    Raises:
        ValueError: ``cpu_amp`` is not one of :data:`CPU_AMP`.
    """
    if cpu_amp not in CPU_AMP:
        raise ValueError(f"cpu_amp = {cpu_amp!r}; use one of {', '.join(CPU_AMP)} (auto: bf16 where the CPU has "
                         "AMX or AVX512-BF16)")
    if device.type == "cuda":
        return bool(amp)
    if device.type == "cpu":
        return cpu_amp == "on" or (cpu_amp == "auto" and cpu_has_bf16())
    return False


def resumed_bf16(ckpt: dict | None, use_amp: bool, device: torch.device, cpu_amp: str, path: Path) -> bool:
    """The precision a run continues in: what its checkpoint was trained in, so that no run mixes the two.

    ``cpu_amp = "auto"`` is decided by the machine that *starts* a run; a run resumed on a CPU of the other
    kind (bf16 hardware or not) goes on in the precision it began in, which is what its checkpoint records
    (``"bf16"``; checkpoints written before it was recorded are not checked). ``on`` and ``off`` are the
    user's explicit choice: one that contradicts the checkpoint is refused.

    Raises:
        UserError: an explicit ``cpu_amp`` (or CUDA ``amp``) disagrees with the checkpoint's precision (nothing
            of the run is changed).
    """
    recorded = None if ckpt is None or "bf16" not in ckpt else bool(ckpt["bf16"])
    if recorded is None or recorded == use_amp:
        return use_amp
    if device.type == "cpu" and cpu_amp == "auto":
        return recorded
    began = "under bf16 autocast" if recorded else "in float32"
    asked = "bf16" if use_amp else "float32"
    raise UserError(f"{path}: this run began {began} and this call asks {asked} (cpu_amp = {cpu_amp!r} on "
                     f"{device.type}); resuming would mix the two precisions. Resume it with cpu_amp = 'auto' or "
                     f"{'on' if recorded else 'off'!r}, or start it again in a new output folder")


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else the CPU), ``cpu`` or ``cuda[:N]`` as a torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def keep_large_allocations_in_heap() -> bool:
    """Ask glibc's malloc to serve large tensors from its heap and keep freed memory there (CPU training).

    By default glibc hands every allocation above its mmap threshold (at most 32 MiB) out as fresh pages and
    returns them on free, so each training step faults in and zeroes its activations again: about 120,000 minor
    page faults a step for SparseConv on a 64^3 block (a tenth of its CPU time in the kernel). Raising the mmap and
    trim thresholds to 1 GiB keeps the pages: SparseConv's steps 5-13% and the reduced U-Net's 10% faster in the
    real trainer, alternated (3DSeg-T's unchanged) (``benchmark/diagnosis/allocator_ab.py``, ``docs/performance.md``); the numbers
    computed are unchanged (allocation only). A no-op returning False where the C library is not glibc (macOS,
    musl).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    one_gib = ctypes.c_int(1 << 30)
    return bool(libc.mallopt(m_mmap_threshold, one_gib)) and bool(libc.mallopt(m_trim_threshold, one_gib))


def build(config: TrainConfig) -> torch.nn.Module:
    """The model of a run, initialised deterministically from the seed."""
    from panorooms3d.nn.registry import build_model

    torch.manual_seed(config.seed)
    num_classes = get_class_set(config.class_set).num_classes
    return build_model(config.model, num_classes=num_classes, in_channels=4, **config.model_overrides)


SCHEDULES = ("constant", "poly", "cosine")
CLASS_WEIGHTS = ("none", "sqrt-inverse", "inverse")


def lr_factor(it: int, schedule: str, total: int, warmup: int = 0, cooldown: float = 0.0) -> float:
    """Multiplier of the base learning rate at step ``it``: linear warm-up from 1%, then ``schedule``, times
    a linear fall to 0 over the last ``cooldown`` share of the ``total`` steps (the step ``total - n``
    of ``n`` cooldown steps runs at ``n / n``, the last at ``1 / n``)."""
    if warmup > 0 and it < warmup:
        return 0.01 + 0.99 * it / warmup
    n = round(cooldown * total)
    fall = min(1.0, (total - it) / n) if n > 0 else 1.0
    if schedule == "constant":
        return fall
    frac = min(max(it - warmup, 0) / max(total - warmup, 1), 1.0)
    if schedule == "poly":
        return fall * max(1.0 - frac, 0.0) ** 0.9
    if schedule == "cosine":
        return fall * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * frac)))
    raise ValueError(f"unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")


def check_cooldown(cooldown: float, iterations: int | None = None, warmup: int = 0) -> None:
    """``cooldown`` is a share in [0, 1), and its steps do not reach into the warm-up."""
    if isinstance(cooldown, bool) or not isinstance(cooldown, (int, float)) or not 0 <= cooldown < 1:
        raise ValueError(f"cooldown = {cooldown!r}: the share of the iterations, at the end, over which the "
                         "learning rate falls linearly to 0 must be a number in [0, 1) (0 = none, the paper; "
                         "0.2 = the last fifth)")
    if iterations is not None and cooldown > 0 and iterations - round(cooldown * iterations) < warmup:
        raise ValueError(f"cooldown = {cooldown!r} of {iterations} iterations starts inside the {warmup}-step "
                         "warm-up; shorten one of them")


def check_adam_beta2(beta2: float) -> None:
    """``adam_beta2`` is a number in (0, 1)."""
    if isinstance(beta2, bool) or not isinstance(beta2, (int, float)) or not 0 < beta2 < 1:
        raise ValueError(f"adam_beta2 = {beta2!r}: Adam's second-moment decay must be a number in (0, 1) "
                         "(0.999: torch's default and the official code's)")


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    """The learning-rate schedule (a LambdaLR, so its state is checkpointed).

    ``multistep`` (the official distill.py: ``MultiStepLR(milestones, gamma)`` stepped once per epoch
    of ``milestone_step`` iterations): iteration ``it`` runs at ``lr * gamma ** #{m in milestones:
    m <= it // milestone_step}``; a milestone at 0 applies from the first iteration. The config's
    ``milestones``, ``milestone_step``, ``gamma`` default to the official [0, 2, 4, 6], 1500, 0.5.
    """
    if config.schedule == "multistep":
        milestones = sorted(int(m) for m in getattr(config, "milestones", (0, 2, 4, 6)))
        step, gamma = max(int(getattr(config, "milestone_step", 1500)), 1), float(getattr(config, "gamma", 0.5))
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda it: gamma ** sum(1 for m in milestones if m <= it // step))
    total, warmup = max(config.iterations, 1), int(getattr(config, "warmup", 0))
    cooldown = float(getattr(config, "cooldown", 0.0))
    lr_factor(0, config.schedule, total, warmup, cooldown)  # fails early on an unknown schedule
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, config.schedule, total, warmup, cooldown))


def param_groups(model: torch.nn.Module, lr: float, decoder_lr_mult: float = 1.0) -> list[dict]:
    """Adam parameter groups: the decoder (``head.*``, ``skip.*``) at ``lr * decoder_lr_mult``, the rest at ``lr``."""
    decoder = [p for n, p in model.named_parameters() if n.split(".")[0] in ("head", "skip")]
    ids = {id(p) for p in decoder}
    rest = [p for p in model.parameters() if id(p) not in ids]
    if decoder_lr_mult == 1.0 or not decoder:
        return [{"params": rest + decoder, "lr": lr}]
    return [{"params": rest, "lr": lr}, {"params": decoder, "lr": lr * decoder_lr_mult}]


def class_weights(data: Path, rooms: list[str], class_set: str, mode: str) -> torch.Tensor | None:
    """Cross-entropy class weights from the voxel frequencies of ``rooms`` (None for ``none``)."""
    if mode == "none":
        return None
    if mode not in CLASS_WEIGHTS:
        raise ValueError(f"unknown class_weights {mode!r}; use none, sqrt-inverse or inverse")
    from panorooms3d.store.dataset import Dataset

    ds = Dataset(Path(data))
    cs = get_class_set(class_set)
    counts = np.zeros(cs.num_classes, np.float64)
    for uid in rooms:
        label = ds.read_crop(uid, (0, 0, 0), ds.room_info(uid).shape, arrays=("label",))["label"]
        counts += np.bincount(cs.map(label).ravel(), minlength=cs.num_classes)[: cs.num_classes]
    return weights_from_counts(counts, mode)


def weights_from_counts(counts: np.ndarray, mode: str) -> torch.Tensor:
    """Class weights (K,) from class counts: frequency^-0.5 (``sqrt-inverse``) or ^-1 (``inverse``).

    Classes that never occur keep weight 1; the weights of the present classes have mean 1.
    """
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    freq = counts[present] / counts[present].sum()
    w = np.ones(len(counts), np.float64)
    w[present] = freq ** (-0.5 if mode == "sqrt-inverse" else -1.0)
    w[present] /= w[present].mean()
    return torch.tensor(w, dtype=torch.float32)


@dataclass
class TrainingBlocks:
    """The training samples of a run.

    Attributes:
        dataset: a map-style dataset whose item ``i`` is (x (4, bx, by, bz) float32, y (bx, by, bz)
            int64), a pure function of (seed, i) (the DataLoader draws indices, see :func:`train`).
        weights: cross-entropy class weights (K,) or None.
        description: one line naming the source (for logs and errors).
    """

    dataset: torch.utils.data.Dataset
    weights: torch.Tensor | None
    description: str


def _crop_blocks(config: TrainConfig, argument: str) -> TrainingBlocks:
    """``crops``: random crops of the ``split`` rooms of the dataset ``data`` (this module's docstring)."""
    from panorooms3d.store.dataset import Dataset

    if argument:
        raise ValueError(f"blocks = {config.blocks!r}: 'crops' takes no folder (the rooms come from data)")
    if not config.data:
        raise ValueError("no dataset to crop blocks from: set data (a dataset folder) or "
                         "blocks = 'official:<folder>' (the official block release)")
    rooms = Dataset(Path(config.data)).split(config.split)
    if not rooms:
        raise ValueError(f"{config.data}: the {config.split!r} split has no rooms")
    if config.rooms is not None:
        rooms = select_rooms(rooms, config.rooms, where=f"the {config.split!r} split of {config.data}")
    rooms = labelled_subset(rooms, config.labelled_fraction)
    if not rooms:
        raise ValueError(f"labelled_fraction {config.labelled_fraction} leaves no labelled room to train on")
    if config.pad_to is not None:
        try:
            block_size(config.pad_to)
        except (ValueError, TypeError) as e:
            raise ValueError(f"pad_to = {config.pad_to!r}: a positive int or three, e.g. [64, 64, 48] ({e})") from e
    dataset = BlockDataset(Path(config.data), rooms, BlockConfig(block=config.block, pad_to=config.pad_to,
                                                                   class_set=config.class_set,
                                                                   seed=config.seed, sampling=config.sampling,
                                                                   augment=bool(config.augment),
                                                                   encoding=config.input_encoding))
    return TrainingBlocks(dataset, class_weights(Path(config.data), rooms, config.class_set, config.class_weights),
                          f"random crops of {len(rooms)} {config.split} room(s) of {config.data}")


#: Settings of random crops that official blocks (pre-cut, labels already paper30) cannot honour,
#: with the value they must keep.
_OFFICIAL_FIXED = {"sampling": "uniform", "labelled_fraction": 1.0, "rooms": None, "class_weights": "none",
                   "class_set": "paper30", "pad_to": None}


def _official_blocks(config: TrainConfig, argument: str) -> TrainingBlocks:
    """``official:<folder>``: the official sparse block release, drawn as the official ``train.py`` does."""
    if not argument:
        raise ValueError(f"blocks = {config.blocks!r}: name the folder, e.g. 'official:/data/panorooms3d-blocks'")
    bad = [f"{k} = {getattr(config, k)!r}" for k, v in _OFFICIAL_FIXED.items() if getattr(config, k) != v]
    if bad:
        raise ValueError(f"blocks = {config.blocks!r}: {', '.join(bad)} does not apply to the official blocks "
                         "(pre-cut blocks holding paper30 classes, no per-room labels); use "
                         + ", ".join(f"{k} = {v!r}" for k, v in _OFFICIAL_FIXED.items()))
    edge = block_size(config.block)
    if len(set(edge)) != 1:
        raise ValueError(f"blocks = {config.blocks!r}: official blocks are cubes; block {list(edge)} must be one "
                         "edge (the release: 128)")
    root = Path(argument)
    folder = root / config.split if (root / config.split).is_dir() else root
    stream = OfficialBlockStream(folder, seed=config.seed, size=edge[0])
    return TrainingBlocks(stream, None, f"official blocks: {len(stream.blocks)} file(s) of {folder}, "
                                        "a fresh shuffle each epoch")


#: Sources of training blocks: ``TrainConfig.blocks`` = ``<name>`` or ``<name>:<argument>`` ->
#: fn(config, argument) -> :class:`TrainingBlocks`. ``crops``: random crops of a dataset's rooms (this
#: project); ``official``: a folder of the official sparse block release (the official trainer).
BLOCK_SOURCES = {"crops": _crop_blocks, "official": _official_blocks}


def training_blocks(config: TrainConfig) -> TrainingBlocks:
    """The training samples of ``config`` from its ``blocks`` source (:data:`BLOCK_SOURCES`).

    Raises ValueError (unknown source, settings that do not apply, no rooms) or
    :class:`panorooms3d.store.dataset.DatasetError` (a missing or bad folder), naming what to change.
    """
    name, _, argument = str(config.blocks).partition(":")
    if name not in BLOCK_SOURCES:
        raise ValueError(f"unknown blocks {config.blocks!r}; use one of: crops, official:<folder>")
    return BLOCK_SOURCES[name](config, argument)


def block_kd_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """tau^2 x KL(softmax(teacher / tau) || softmax(student / tau)) over the class axis (1), mean over voxels.

    Both are logits (N, K, ...), computed in float32; the teacher's carry no gradient. It is the distillation
    term of :func:`panorooms3d.nn.losses.distillation_loss` (``normalisation="project"``, every voxel counted)
    with the voxels laid out as one image row per block.
    """
    from panorooms3d.nn.losses import distillation_loss

    n, k = student.shape[:2]
    return distillation_loss(student.float().reshape(n, k, 1, -1), teacher.float().reshape(n, k, 1, -1), None,
                             tau=tau, normalisation="project")


def load_block_teacher(config: TrainConfig, device: torch.device) -> torch.nn.Module | None:
    """The frozen 3D teacher of ``config.block_teacher`` (eval mode, no gradients), or None.

    Raises:
        UserError: no such checkpoint, or one of another class set, or a temperature that is not positive.
    """
    if not config.block_teacher:
        return None
    if not config.block_teacher_tau > 0:
        raise UserError(f"block_teacher_tau must be > 0, got {config.block_teacher_tau!r}")
    path = Path(config.block_teacher)
    if not path.is_file():
        raise UserError(f"block_teacher: no checkpoint at {path}; train the teacher first (a block training's "
                        "model.pt)")
    ckpt = load_checkpoint(path, "cpu")
    cfg = ckpt.get("config", {}) if isinstance(ckpt, dict) else {}
    if not cfg.get("model"):
        raise UserError(f"block_teacher: {path} does not name its model (not a block training's model.pt)")
    if cfg.get("class_set", config.class_set) != config.class_set:
        raise UserError(f"block_teacher: {path} predicts the {cfg['class_set']!r} classes, this run trains "
                        f"{config.class_set!r}")
    from panorooms3d.nn.registry import build_model

    net = build_model(cfg["model"], num_classes=get_class_set(config.class_set).num_classes, in_channels=4,
                      **cfg.get("model_overrides", {}))
    net.load_state_dict(ckpt["model"])
    net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_weights(path: Path, model: torch.nn.Module) -> dict:
    """Load a run checkpoint's model weights into ``model``; returns the checkpoint dict."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = load_checkpoint(path, "cpu")
    state = ckpt["model"] if "model" in ckpt else ckpt
    model.load_state_dict(state)
    return ckpt


def resume(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> dict | None:
    """Restore model, optimizer and scheduler from a run checkpoint if it exists.

    Returns the checkpoint dict (``iteration`` and whatever else the run stored) or None.
    """
    if not Path(path).exists():
        return None
    ckpt = load_checkpoint(path, "cpu")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    return ckpt


def optimisation_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, *, on_diverge,
                      where: str, bf16: bool = False) -> float:
    """One step on ``loss`` (zero grads, backward, optimizer and scheduler step); returns its value.

    A non-finite loss calls ``on_diverge()`` (e.g. to save a checkpoint), then raises
    FloatingPointError naming ``where`` (e.g. ``"iteration 12"``) and what to change: the learning rate, and
    float32 when the step ran under bf16 autocast (``bf16``), whose kernels can fail where float32's do not (the
    CPU track's SparseConv stopped at step 85 on an AMD EPYC with AVX512-BF16, from a wrong bf16 weight gradient
    of oneDNN that ``layers.conv3d`` now avoids).
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    value = float(loss.detach())
    if not math.isfinite(value):
        on_diverge()
        advice = ("train in float32 (cpu_amp = 'off', or amp = false on a GPU; it ran under bf16 autocast) or "
                  "lower the learning rate") if bf16 else "lower the learning rate"
        raise FloatingPointError(f"loss became {value} at {where}; {advice}")
    return value


class WeightAverage:
    """An exponential moving average of a model's weights (``TrainConfig.ema``).

    ``update(step)`` after optimiser step ``step`` (1-based) moves each floating-point parameter and buffer of
    the average toward the model's by ``1 - min(decay, (1 + step) / (ramp + step))``; other buffers (counters)
    are copied. ``model`` is a copy of the trained model holding the average, in eval mode.
    """

    def __init__(self, model: torch.nn.Module, decay: float, ramp: float = 10.0) -> None:
        """``decay`` in (0, 1), ``ramp`` >= 1; :func:`train` checks ``TrainConfig.ema`` and ``ema_ramp`` before
        its run folder is written."""
        import copy

        self.decay = decay
        self.ramp = ramp
        self.source = model
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (self.ramp + step))
        avg = self.model.state_dict()
        for name, value in self.source.state_dict().items():
            if value.is_floating_point():
                avg[name].lerp_(value.detach(), 1.0 - d)
            else:
                avg[name].copy_(value)


def check_ema(ema: float) -> None:
    """Refuse a weight-average decay that is not a number in [0, 1) (0 = none) before a run folder is written."""
    if isinstance(ema, bool) or not isinstance(ema, (int, float)):
        raise ValueError(f"ema = {ema!r}: the decay of the weight average must be a number in (0, 1), or 0 for none")
    if not 0.0 <= ema < 1.0:
        raise ValueError(f"ema = {ema}: the decay of the weight average must be in (0, 1), or 0 for none")


def check_ema_ramp(ramp: float) -> None:
    """Refuse a weight-average ramp that is not a number >= 1 before a run folder is written."""
    if isinstance(ramp, bool) or not isinstance(ramp, (int, float)) or not math.isfinite(ramp) or ramp < 1:
        raise ValueError(f"ema_ramp = {ramp!r}: the ramp of the weight average's decay, min(ema, (1 + t) / "
                         "(ema_ramp + t)), must be a number >= 1 (10 by default; 1 = no ramp)")


def resumed_average(model: torch.nn.Module, decay: float, ckpt: dict | None, ckpt_path: Path,
                    out: Path, ramp: float = 10.0) -> WeightAverage | None:
    """The run's weight average (None for ``decay = 0``), restored from its checkpoint when the run resumes.

    Raises:
        UserError: the checkpoint was written without an average and the run's settings ask for one.
    """
    if not decay:
        return None
    average = WeightAverage(model, decay, ramp)
    if ckpt is not None:
        if "ema" not in ckpt:
            raise UserError(f"{ckpt_path} was written without a weight average (ema), and the run's settings ask "
                            f"for ema = {decay}: move {out} away to train with it from the start.")
        average.model.load_state_dict(ckpt["ema"])
    return average


def save_checkpoint(path: Path, payload: dict) -> None:
    """``torch.save`` to ``path`` atomically (temp + rename): a checkpoint that exists is complete."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


#: TrainConfig fields a longer training may set differently from the shorter one it continues
#: (:func:`continue_training`): where it runs and reports, and its length and the decay at its end.
CONTINUE_NEUTRAL = ("out", "iterations", "cooldown", "threads", "workers", "checkpoint_every", "log_every",
                    "val_every")


def continue_training(shorter: Path, longer: TrainConfig, *, check_only: bool = False) -> int:
    """Start the training ``longer`` from the finished training in the folder ``shorter``, which it goes through
    step for step: the shorter one's last checkpoint and its log are copied into ``longer.out``, and
    :func:`train` then resumes ``longer`` from there. It ends with the weights a training of ``longer`` from
    nothing would reach: every step's randomness comes from (seed, step), and a resumed training ends where an
    uninterrupted one does (tests/test_bench_train.py). Returns the step it resumes from.

    It holds only where the two trainings take the same steps up to the shorter one's end, so the folders are
    checked first (nothing is written otherwise); ``check_only`` checks and writes nothing.

    Raises:
        UserError: ``shorter`` has not finished (no ``model.pt``, or its checkpoint is not at its last step);
            ``longer.out`` already holds a checkpoint; the settings differ other than in
            :data:`CONTINUE_NEUTRAL`; ``longer`` is not longer; or the learning rate of some step the shorter
            training took differs in ``longer`` (a cosine, or a decay that starts before the shorter one ends).
    """
    shorter, out = Path(shorter), Path(longer.out)
    config_file, ckpt_file = shorter / "config.json", shorter / CHECKPOINT
    if not (shorter / "model.pt").is_file() or not config_file.is_file() or not ckpt_file.is_file():
        raise UserError(f"{shorter}: not a finished training (it needs config.json, model.pt and {CHECKPOINT}); "
                        "train it to its end first")
    if (out / CHECKPOINT).exists():
        raise UserError(f"{out / CHECKPOINT} exists: {out} has begun already; move it away to continue "
                        f"{shorter} there")
    names = {f.name for f in fields(TrainConfig)}
    base = TrainConfig(**{k: v for k, v in json.loads(config_file.read_text()).items() if k in names})
    theirs, mine = asdict(base), asdict(longer)
    for key in ("data", "init", "block_teacher"):  # the same file under another spelling is the same setting
        for d in (theirs, mine):
            d[key] = str(Path(d[key]).resolve()) if d[key] else d[key]
    changed = [f"{k}: {theirs[k]!r} -> {mine[k]!r}" for k in sorted(names - set(CONTINUE_NEUTRAL))
               if theirs[k] != mine[k]]
    if changed:
        raise UserError(f"{out} cannot continue {shorter}: they differ in {'; '.join(changed)} (only "
                        f"{', '.join(CONTINUE_NEUTRAL)} may)")
    if longer.iterations <= base.iterations:
        raise UserError(f"{out} trains {longer.iterations} steps, {shorter} {base.iterations} already: nothing to "
                        "continue")
    ckpt = load_checkpoint(ckpt_file, "cpu")
    if int(ckpt["iteration"]) != base.iterations:
        raise UserError(f"{ckpt_file} is at step {ckpt['iteration']}, not at the training's last step "
                        f"{base.iterations}: let it finish first")
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    rate_s, rate_l = make_scheduler(probe, base).lr_lambdas[0], make_scheduler(probe, longer).lr_lambdas[0]
    differ = next((it for it in range(base.iterations) if rate_s(it) != rate_l(it)), None)
    if differ is not None:
        raise UserError(f"{out} cannot continue {shorter}: step {differ + 1} runs at {rate_l(differ):g} x lr in "
                        f"the longer training and at {rate_s(differ):g} x lr in the shorter one (schedule "
                        f"{longer.schedule!r}, cooldown {base.cooldown} -> {longer.cooldown}); train it from nothing")
    if check_only:
        return base.iterations
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "train_log.jsonl", "file") as tmp:
        shutil.copyfile(shorter / "train_log.jsonl", tmp)
    with atomic_path(out / CHECKPOINT, "file") as tmp:  # last: a checkpoint that exists comes with its log
        shutil.copyfile(ckpt_file, tmp)
    return base.iterations


def train(config: TrainConfig, *, stop_after: int | None = None, progress: bool = True) -> TrainResult:
    """Train (or resume) the run described by ``config``.

    Args:
        config: the run.
        stop_after: stop (with a checkpoint) after this many iterations of this call — for tests
            and time-sliced schedulers; the run resumes later from there.
        progress: show a progress bar.
    """
    out = Path(config.out)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if config.val_every > 0 and not config.data:
        raise ValueError(f"val_every = {config.val_every} validates on the {config.val_split!r} rooms of a dataset, "
                         "and data is not set: set data (e.g. the imported official dataset) or val_every = 0")
    source = training_blocks(config)  # a bad source fails here, before the run folder is written
    device = resolve_device(config.device)
    use_amp = bf16_autocast(device, config.amp, config.cpu_amp)  # a bad cpu_amp fails here too
    check_ema(config.ema)
    check_ema_ramp(config.ema_ramp)
    check_cooldown(config.cooldown, config.iterations, config.warmup)
    check_adam_beta2(config.adam_beta2)
    if not (isinstance(config.dice_weight, int | float) and math.isfinite(config.dice_weight)
            and config.dice_weight >= 0):
        raise ValueError(f"dice_weight = {config.dice_weight!r}: the weight of the Dice term must be a number >= 0 "
                         "(0 = cross-entropy only)")
    teacher = load_block_teacher(config, device)  # a missing or unfit teacher fails here too
    if rank == 0:  # DDP: only rank 0 writes in the run folder
        out.mkdir(parents=True, exist_ok=True)
    owns_group = False  # a process group this call made is destroyed by it before it returns
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            owns_group = True
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)

    if config.threads > 0:
        torch.set_num_threads(config.threads)
    if device.type == "cpu":
        keep_large_allocations_in_heap()
    model = build(config).to(device)
    if config.init:
        load_weights(Path(config.init), model)
    optimizer = torch.optim.Adam(param_groups(model, config.lr, config.decoder_lr_mult), lr=config.lr,
                                 weight_decay=config.weight_decay, betas=(0.9, config.adam_beta2))
    scheduler = make_scheduler(optimizer, config)

    ckpt_path = out / CHECKPOINT
    ckpt = resume(ckpt_path, model, optimizer, scheduler)
    use_amp = resumed_bf16(ckpt, use_amp, device, config.cpu_amp, ckpt_path)
    average = resumed_average(model, config.ema, ckpt, ckpt_path, out, config.ema_ramp)
    start = int(ckpt["iteration"]) if ckpt else 0
    resumed_from = start
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    weights = source.weights.to(device) if source.weights is not None else None
    val_rooms: list[str] = []
    val_samples: dict | None = None  # the validation rooms, loaded once (when they fit)
    if config.val_every > 0:
        from panorooms3d.store.dataset import Dataset

        val_data = Dataset(Path(config.data))
        val_rooms = val_data.split(config.val_split)
        # The validation rooms stay loaded between validations when they fit (about 30 bytes a voxel loaded).
        val_voxels = sum(int(np.prod(val_data.room_info(uid).shape)) for uid in val_rooms)
        val_samples = {} if 30 * val_voxels <= VAL_CACHE_BYTES else None
    b = config.batch_size
    end = config.iterations if stop_after is None else min(config.iterations, start + stop_after)
    # Sample index of (iteration, rank, item): a pure function, so resuming draws the same blocks.
    indices = [(it * world + rank) * b + j for it in range(start, end) for j in range(b)]
    loader = DataLoader(source.dataset, batch_size=b, sampler=indices, num_workers=config.workers,
                        persistent_workers=False, pin_memory=device.type == "cuda")

    writer = None
    if rank == 0:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tb"))
        except ImportError:  # tensorboard is optional
            writer = None
    if rank == 0:  # DDP: only rank 0 writes in the run folder
        write_json(out / "config.json", asdict(config))
    log = (out / "train_log.jsonl").open("a") if rank == 0 else None

    def validate(iteration: int) -> None:
        from panorooms3d.bench.evaluate import evaluate

        result = evaluate(model if average is None else average.model, Path(config.data), rooms=val_rooms,
                          split=config.val_split, class_set=config.class_set, device=str(device), progress=False,
                          input_encoding=config.input_encoding, samples=val_samples,
                          **({} if config.room_pad_to is None else {"pad_to": config.room_pad_to}))
        net.train()
        record = {"iteration": iteration, "val_mIoU": result["metrics"]["mIoU"],
                  "val_mIoU_void_excluded": result["void_excluded"]["mIoU"], "seconds": time.perf_counter() - t0}
        log.write(json.dumps(record) + "\n")
        log.flush()
        if writer is not None:
            writer.add_scalar("val/mIoU", record["val_mIoU"], iteration)

    def checkpoint(iteration: int) -> None:
        if rank == 0:
            save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "iteration": iteration,
                              "config": asdict(config), "bf16": use_amp,
                              **({"ema": average.model.state_dict()} if average is not None else {})})

    t0 = time.perf_counter()
    loss_value = math.nan
    bar = tqdm(total=config.iterations, initial=start, desc=f"train {config.model}", unit="it",
               disable=not progress or rank != 0, dynamic_ncols=True)
    net.train()
    it = start
    try:  # the bar ends its line even when a block fails to load, so the error starts on its own line
        for it, (x, y) in enumerate(loader, start=start):
            torch.manual_seed(config.seed * 1_000_003 + it * world + rank)
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = net(x)
            loss = voxel_cross_entropy(logits.float(), y, weight=weights)
            if config.dice_weight:
                from panorooms3d.nn.losses import soft_dice_loss

                loss = loss + config.dice_weight * soft_dice_loss(logits, y)
            if teacher is not None:
                with torch.no_grad():  # float32, as evaluation runs models (a bf16 step may overflow where it did not)
                    teacher_logits = teacher(x)
                kd = block_kd_loss(logits, teacher_logits, config.block_teacher_tau)
                kd_value = float(kd.detach())
                loss = loss + config.block_teacher_weight * kd
            loss_value = optimisation_step(loss, optimizer, scheduler,
                                           on_diverge=lambda it=it: checkpoint(it), where=f"iteration {it + 1}",
                                           bf16=use_amp)
            if average is not None:
                average.update(it + 1)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
            if rank == 0 and ((it + 1) % config.log_every == 0 or it + 1 == end):
                record = {"iteration": it + 1, "loss": loss_value, "lr": scheduler.get_last_lr()[0],
                          "seconds": time.perf_counter() - t0, "bf16": use_amp,
                          **({"kd": kd_value} if teacher is not None else {})}
                log.write(json.dumps(record) + "\n")
                log.flush()
                if writer is not None:
                    writer.add_scalar("train/loss", loss_value, it + 1)
                    writer.add_scalar("train/lr", record["lr"], it + 1)
            if rank == 0 and val_rooms and ((it + 1) % config.val_every == 0 or it + 1 == config.iterations):
                validate(it + 1)
            if (it + 1) % config.checkpoint_every == 0:
                checkpoint(it + 1)
    finally:
        bar.close()
    done = end if end > start else start
    checkpoint(done)
    if log is not None:
        log.close()
    if writer is not None:
        writer.close()
    if rank == 0 and done >= config.iterations:
        final = model if average is None else average.model  # with ema, the average is the trained model
        save_checkpoint(out / "model.pt", {"model": final.state_dict(), "config": asdict(config), "iteration": done,
                                           "bf16": use_amp})
    if owns_group:
        # every rank leaves together: a gloo group left to the interpreter's exit aborted a rank now and
        # then on 2 cores ("terminate called without an active exception", SIGABRT after training)
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(checkpoint=ckpt_path, iterations=done, final_loss=loss_value,
                       seconds=time.perf_counter() - t0, resumed_from=resumed_from)
