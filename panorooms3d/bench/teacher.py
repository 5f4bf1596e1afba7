"""The 2D teacher of panoramic distillation: finetune Segmenter2D on training panoramas, cache its logits.

``train_teacher`` finetunes :class:`panorooms3d.nn.segmenter2d.Segmenter2D` on the equirect
panoramas of a dataset's *training* rooms (RGB -> class ids of a class set, ``paper30`` by
default), the paper's step "finetuned on the rendered training panoramas"; ``variant = "unet2d-s"``
(or ``-m``) trains the convolutional :class:`panorooms3d.nn.unet2d.UNet2D` instead, for CPU budgets
without pretrained weights. It is

- deterministic: sample ``i`` (room, roll, flip) is a pure function of (seed, i) and the torch
  RNG is re-seeded at every iteration (as :mod:`panorooms3d.bench.train` does);
- resumable: ``<out>/checkpoints/last.pt`` (model, optimizer, scheduler, iteration, config) is
  written atomically every ``checkpoint_every`` iterations and at the end; the finished teacher
  is ``<out>/teacher.pt`` in :meth:`Segmenter2D.save_checkpoint`'s format;
- local: ``init`` names a local checkpoint (ours, or the official Segmenter layout with its
  ``variant.yml`` beside it); nothing is ever downloaded.

Input: RGB uint8 -> [0, 1] -> the backbone's normalisation (:meth:`Segmenter2D.normalize`),
optionally resized to ``height`` x ``width`` (bilinear for RGB, nearest for labels).

Augmentation keeps the equirect convention consistent (docs/formats.md): a horizontal **roll**
by ``s`` columns is a yaw rotation of the camera by ``2 pi s / W`` about +z (still a valid
panorama of the same room); a horizontal **flip** maps longitude ``lon -> -lon``, i.e. it is the
panorama of the room mirrored in the camera's x-z plane (``y -> -y``) — a valid panorama of a
mirrored room, which is a plausible room for 2D segmentation (furniture classes are mirror
symmetric as classes). Both are applied identically to RGB and labels. Teacher predictions are
always cached on the unaugmented panoramas.

``cache_teacher_predictions`` writes per-room teacher **logits** as float16 ``[K, H, W]`` to
``<out_dir>/<room key>.npy`` (atomically; a room whose file exists is skipped).

**More 2D data than 3D** (the paper's premise): ``TeacherConfig.panoramas`` names extra
panorama-only dataset folders (``panorooms3d panoramas``; paths relative to the dataset folder
``data`` or absolute). The teacher trains on the dataset's training panoramas *and* on the rooms of
those folders' ``panorama_splits`` (:func:`teacher_rooms`). It must never see the 3D dataset's
held-out rooms: an extra room whose uid is a val/test room of ``data`` is an error
(:class:`TeacherDataError`); a uid that is a training room of ``data`` is the same panorama and is
counted once. What the teacher trained on is written to ``<out>/teacher_data.json``.

``evaluate_teacher`` scores a teacher on a split's panoramas (default ``test``) with the project's
metric functions (:mod:`panorooms3d.bench.metrics`), at the stored panorama resolution.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from tqdm import tqdm

from panorooms3d.bench.train import (
    bf16_autocast,
    check_ema,
    keep_large_allocations_in_heap,
    make_scheduler,
    optimisation_step,
    resolve_device,
    resume,
    resumed_average,
    resumed_bf16,
    save_checkpoint,
    weights_from_counts,
)
from panorooms3d.run.atomic import atomic_path, write_json
from panorooms3d.run.checkpoint import load_checkpoint
from panorooms3d.run.errors import UserError
from panorooms3d.taxonomy import get_class_set

CHECKPOINT = "checkpoints/last.pt"
TEACHER = "teacher.pt"


@dataclass
class TeacherConfig:
    """Settings of a teacher finetuning run (JSON-able; stored in every checkpoint).

    Attributes:
        data: dataset folder.
        out: run folder (checkpoints, logs, ``teacher.pt``).
        variant: Segmenter2D size: tiny | small | base | large (the paper: base or large), or a
            convolutional teacher of :mod:`panorooms3d.nn.unet2d` (``unet2d-s``, ``unet2d-m``: no
            patch grid, the panorama's wrap built in; for CPU budgets without pretrained weights).
        iterations: optimisation steps.
        batch_size: panoramas per step.
        lr: Adam learning rate.
        schedule: ``poly`` (Segmenter's default, power 0.9) or ``constant``.
        height, width: training/prediction size in pixels (None = the stored panorama size).
        patch_size: ViT patch size in pixels (16 for Seg-*-Mask/16).
        class_set: target classes.
        seed: seed of sampling and initialisation.
        augment: random horizontal roll (yaw) and flip (mirror), see the module docstring.
        init: optional local checkpoint to start from (ours or the official Segmenter layout).
        split: the split whose panoramas are trained on.
        checkpoint_every, log_every: iterations between checkpoints / log lines.
        workers: DataLoader workers.
        device: ``auto``, ``cpu`` or ``cuda``.
        cpu_amp: bf16 autocast on the CPU: ``off``, ``on`` or ``auto`` (where the CPU has AMX or AVX512-BF16), as
            block training's (:class:`~panorooms3d.bench.train.TrainConfig`); the CUDA path is unchanged (float32).
            The convolutional teacher's steps were 1.65x as fast with it on an AMX CPU. Validation stays float32.
        model_overrides: extra Segmenter2D constructor arguments (e.g. ``{"n_layers": 2}`` for tiny demos).
        panoramas: extra panorama-only dataset folders (``panorooms3d panoramas``), relative to ``data``
            or absolute, whose rooms are trained on as well (see the module docstring).
        panorama_splits: the splits of those folders that are trained on.
        class_weights: cross-entropy class weights from the pixel frequencies of the training panoramas
            at the training size: ``none``, ``sqrt-inverse`` or ``inverse`` (as block training's).
        val_every: iterations between validations on the panoramas of ``val_split`` of ``data``
            (0 = none); each adds ``val_mIoU`` to ``train_log.jsonl``, the curve that shows when the
            teacher has flattened.
        val_split: the split of ``data`` validated on (never a split the teacher trains on).
        ema: decay of an exponential moving average of the weights (0 = none), as block training's
            (:class:`~panorooms3d.bench.train.TrainConfig`): with it the average is what is validated and what
            ``teacher.pt`` holds (and so what is cached and distilled from); the checkpoint keeps both.
    """

    data: str
    out: str = "runs/teacher"
    variant: str = "tiny"
    iterations: int = 2000
    batch_size: int = 2
    lr: float = 1e-4
    schedule: str = "poly"
    height: int | None = None
    width: int | None = None
    patch_size: int = 16
    class_set: str = "paper30"
    seed: int = 0
    augment: bool = True
    init: str | None = None
    split: str = "train"
    checkpoint_every: int = 200
    log_every: int = 10
    workers: int = 0
    device: str = "auto"
    cpu_amp: str = "off"
    model_overrides: dict = field(default_factory=dict)
    panoramas: list[str] = field(default_factory=list)
    panorama_splits: list[str] = field(default_factory=lambda: ["train"])
    class_weights: str = "none"
    val_every: int = 0
    val_split: str = "val"
    ema: float = 0.0


class TeacherDataError(UserError):
    """The teacher's panoramas cannot be used as asked (missing folder, held-out room, mixed sizes)."""


@dataclass
class TeacherResult:
    """Where a finished teacher is and how its training went."""

    checkpoint: Path
    iterations: int
    final_loss: float
    seconds: float
    resumed_from: int


def prepare_rgb(rgb: np.ndarray, height: int | None = None, width: int | None = None) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float (3, h, w) in [0, 1], bilinearly resized to (height, width) when given."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0
    if height and width and tuple(x.shape[1:]) != (height, width):
        x = F.interpolate(x[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True)[0]
    return x


def prepare_label(label: np.ndarray, height: int | None = None, width: int | None = None) -> torch.Tensor:
    """Class ids (H, W) -> int64 (h, w), resized by nearest neighbour to (height, width) when given."""
    y = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))
    if height and width and tuple(y.shape) != (height, width):
        y = F.interpolate(y[None, None].float(), size=(height, width), mode="nearest")[0, 0].long()
    return y


def roll_flip(x: torch.Tensor, y: torch.Tensor, shift: int, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Yaw a panorama by ``shift`` columns (a roll) and optionally mirror it (lon -> -lon).

    Args:
        x: (C, H, W) image; y: (H, W) labels. Column u of the result shows column (u - shift) mod W.
        flip: after the roll, reverse the columns. For the convention lon_u = ((u + 0.5)/W - 0.5) 2 pi,
            reversing columns maps lon -> -lon exactly (the centre column's +x direction stays at the seam
            between columns W/2 - 1 and W/2, as before).
    """
    if shift:
        x, y = torch.roll(x, shift, dims=-1), torch.roll(y, shift, dims=-1)
    if flip:
        x, y = torch.flip(x, dims=(-1,)), torch.flip(y, dims=(-1,))
    return x, y


class PanoramaDataset(TorchDataset):
    """Augmented training panoramas; sample ``i`` is a pure function of (seed, i).

    Args:
        dataset_dir: the dataset folder of rooms given as plain uids.
        rooms: uids of ``dataset_dir``, or (dataset folder, uid) pairs (several folders: the main
            dataset and panorama-only ones, see :func:`teacher_rooms`). Rooms are drawn uniformly.
        config: the run's settings (seed, class set, size, augmentation).

    Returns (rgb (3, H, W) float in [0, 1], label (H, W) int64 class ids). ``len`` is nominal.
    """

    def __init__(self, dataset_dir: Path, rooms: list, config: TeacherConfig, samples: int = 10**9) -> None:
        if not rooms:
            raise ValueError(f"{dataset_dir}: no training rooms with a panorama for the teacher")
        self.dataset_dir = Path(dataset_dir)
        self.rooms = [(str(r[0]), str(r[1])) if isinstance(r, (tuple, list)) else (str(dataset_dir), str(r))
                      for r in rooms]
        self.config = config
        self.samples = samples
        self._ds: dict[str, object] = {}

    def __len__(self) -> int:
        return self.samples

    def _dataset(self, folder: str | None = None):
        from panorooms3d.store.dataset import Dataset

        folder = str(self.dataset_dir) if folder is None else folder
        if folder not in self._ds:
            self._ds[folder] = Dataset(Path(folder))
        return self._ds[folder]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 7, int(index)])
        folder, uid = self.rooms[int(rng.integers(len(self.rooms)))]
        pano = self._dataset(folder).load_panorama(uid)
        cs = get_class_set(cfg.class_set)
        x = prepare_rgb(pano.rgb, cfg.height, cfg.width)
        y = prepare_label(cs.map(pano.label), cfg.height, cfg.width)
        if cfg.augment:
            shift, flip = int(rng.integers(x.shape[-1])), bool(rng.integers(2))
            x, y = roll_flip(x, y, shift, flip)
        return x, y


def build_teacher(config: TeacherConfig, image_size: tuple[int, int]):
    """The teacher network of a run: from ``config.init`` when given, else freshly initialised from the seed.

    An ``init`` checkpoint whose class count differs (e.g. an official ADE20K Segmenter, 150 classes) keeps
    its encoder and decoder blocks; the class-shaped decoder parameters (``cls_emb``, ``mask_norm``) are new.
    """
    from panorooms3d.nn.segmenter2d import Segmenter2D
    from panorooms3d.nn.unet2d import UNET2D_VARIANTS, UNet2D

    num_classes = get_class_set(config.class_set).num_classes
    torch.manual_seed(config.seed)
    if config.variant in UNET2D_VARIANTS:
        if config.init:
            raise TeacherDataError(f"teacher variant {config.variant} starts from random weights; init is for "
                                   "Segmenter checkpoints")
        return UNet2D(num_classes=num_classes, **{**UNET2D_VARIANTS[config.variant], **config.model_overrides})
    if not config.init:
        size = tuple(int(math.ceil(s / config.patch_size) * config.patch_size) for s in image_size)
        return Segmenter2D(num_classes=num_classes, variant=config.variant, image_size=size,
                           patch_size=config.patch_size, **config.model_overrides)
    loaded = load_teacher(Path(config.init))
    if loaded.num_classes == num_classes:
        return loaded
    cfg = {**loaded.config, "num_classes": num_classes}
    fresh = Segmenter2D(**cfg)
    own = fresh.state_dict()
    state = {k: v for k, v in loaded.state_dict().items() if k in own and own[k].shape == v.shape}
    fresh.load_state_dict(state, strict=False)
    return fresh


def load_teacher(path: Path):
    """A teacher from a local file: our ``teacher.pt``, a teacher run's ``last.pt``, or an official checkpoint.

    Ours are a Segmenter2D or, when their config names ``arch = "unet2d"``, a :class:`~panorooms3d.nn.unet2d.UNet2D`.

    Official checkpoints (``rstrudel/segmenter``: a dict with ``"model"``) need ``variant.yml`` beside them.

    Raises:
        FileNotFoundError: the file (or the official ``variant.yml``) is missing.
        ValueError: the file is not a checkpoint of a known layout.
    """
    from panorooms3d.nn.segmenter2d import Segmenter2D, load_official_segmenter
    from panorooms3d.nn.unet2d import ARCH, UNet2D

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint not found: {path}")
    data = load_checkpoint(path, "cpu")
    if isinstance(data, dict) and "state_dict" in data and "config" in data:
        return (UNet2D if data["config"].get("arch") == ARCH else Segmenter2D).from_checkpoint(path)
    if isinstance(data, dict) and "teacher_config" in data and "model" in data:  # a run's last.pt
        cls = UNet2D if data["teacher_config"].get("arch") == ARCH else Segmenter2D
        model = cls(**data["teacher_config"])
        model.load_state_dict(data["model"])
        return model
    if isinstance(data, dict) and "model" in data:
        return load_official_segmenter(path)
    raise ValueError(f"{path} is not a teacher checkpoint (ours: 'config' + 'state_dict'; official: 'model')")


def _training_rooms(ds, split: str) -> list[str]:
    return [u for u in ds.split(split) if ds.room_info(u).has_panorama]


def panorama_folders(data: str | Path, panoramas: list[str]) -> list[Path]:
    """The extra panorama folders of a config: relative paths are taken from the dataset folder ``data``."""
    return [Path(p) if Path(p).is_absolute() else Path(data) / p for p in panoramas]


def teacher_rooms(config: TeacherConfig) -> tuple[list[tuple[str, str]], dict]:
    """Every panorama the teacher trains on, as (dataset folder, uid), and a summary of where they come from.

    The dataset's ``config.split`` rooms with a panorama, then the rooms of each folder of
    ``config.panoramas`` (in ``config.panorama_splits``) that have a panorama. An extra room that is a
    training room of the dataset is the same panorama and is counted once.

    Raises:
        TeacherDataError: an extra folder is missing or not a dataset, names an unknown split, or holds
            a room that is a held-out (not ``config.split``) room of the dataset -- the teacher would
            have seen the rooms the 3D models are scored on.
    """
    from panorooms3d.store.dataset import SPLITS, Dataset, DatasetError

    ds = Dataset(Path(config.data))
    main = _training_rooms(ds, config.split)
    rooms = [(str(config.data), u) for u in main]
    seen = set(main)
    held_out = {u for u in ds.rooms if ds.room_info(u).split != config.split}
    held_houses = {u.split("/", 1)[0] for u in held_out}
    summary: dict = {"data": str(config.data), "split": config.split, "main_rooms": len(main), "extra": [],
                     "held_out_rooms_of_data": len(held_out)}
    bad = sorted(set(config.panorama_splits) - set(SPLITS))
    if bad:
        raise TeacherDataError(f"teacher panorama_splits {bad} are not splits; use some of {list(SPLITS)}")
    for folder in panorama_folders(config.data, config.panoramas):
        if not folder.is_dir():
            raise TeacherDataError(f"teacher panoramas folder {folder} does not exist (relative paths are taken from "
                                   f"the dataset folder {config.data}); make it with "
                                   f"`panorooms3d panoramas --front FRONT --out {folder}`")
        try:
            extra = Dataset(folder)
        except DatasetError as exc:
            raise TeacherDataError(f"teacher panoramas folder {folder}: {exc}") from None
        uids = [u for s in config.panorama_splits for u in extra.split(s) if extra.room_info(u).has_panorama]
        leaked = sorted(u for u in uids if u in held_out)
        if leaked:
            raise TeacherDataError(
                f"teacher panoramas folder {folder} holds {len(leaked)} room(s) that are val/test rooms of the dataset "
                f"{config.data} (e.g. {', '.join(leaked[:3])}): the teacher must never see the rooms the models are "
                "scored on. Build the extra panoramas from other houses (e.g. `panorooms3d synth` with another --seed)")
        new = [u for u in uids if u not in seen]
        seen.update(new)
        rooms += [(str(folder), u) for u in new]
        summary["extra"].append({"folder": str(folder), "splits": list(config.panorama_splits), "rooms": len(new),
                                 "duplicates_of_training_rooms": len(uids) - len(new),
                                 "rooms_from_houses_with_held_out_rooms": sum(u.split("/", 1)[0] in held_houses
                                                                              for u in new)})
    summary["rooms"] = len(rooms)
    summary["extra_rooms"] = len(rooms) - len(main)
    return rooms, summary


def _pano_shapes(rooms: list[tuple[str, str]]) -> set[tuple[int, int]]:
    from panorooms3d.store.dataset import Dataset

    shapes: set[tuple[int, int]] = set()
    by_folder: dict[str, list[str]] = {}
    for folder, uid in rooms:
        by_folder.setdefault(folder, []).append(uid)
    for folder, uids in by_folder.items():
        ds = Dataset(Path(folder))
        for uid in uids:
            shape = ds.room_info(uid).entry.get("pano_shape")
            if shape:
                shapes.add((int(shape[0]), int(shape[1])))
    return shapes


def pixel_class_weights(rooms: list[tuple[str, str]], config: TeacherConfig) -> torch.Tensor | None:
    """Cross-entropy class weights from the label frequencies of the teacher's panoramas (None for ``none``).

    Labels are counted at the training size (nearest-neighbour resize, as training sees them); classes
    that never occur keep weight 1; the weights of the present classes have mean 1.
    """
    mode = config.class_weights
    if mode == "none":
        return None
    if mode not in ("sqrt-inverse", "inverse"):
        raise TeacherDataError(f"unknown teacher class_weights {mode!r}; use none, sqrt-inverse or inverse")
    from panorooms3d.store.dataset import Dataset

    cs = get_class_set(config.class_set)
    counts = np.zeros(cs.num_classes, np.float64)
    datasets: dict[str, object] = {}
    for folder, uid in rooms:
        ds = datasets.setdefault(folder, Dataset(Path(folder)))
        label = prepare_label(cs.map(ds.load_panorama(uid).label), config.height, config.width)
        counts += np.bincount(label.numpy().ravel(), minlength=cs.num_classes)[: cs.num_classes]
    return weights_from_counts(counts, mode)


def train_teacher(data: str | Path, out: str | Path, *, variant: str = "tiny", iterations: int = 2000,
                  lr: float = 1e-4, stop_after: int | None = None, progress: bool = True,
                  **settings) -> TeacherResult:
    """Finetune (or resume) a Segmenter2D teacher on a dataset's training panoramas.

    Args:
        data: dataset folder. out: run folder.
        variant, iterations, lr: see :class:`TeacherConfig`; ``**settings`` sets its other fields.
        stop_after: stop (with a checkpoint) after this many iterations of this call; resume later.
        progress: show a progress bar.

    Returns:
        :class:`TeacherResult`; ``<out>/teacher.pt`` exists once ``iterations`` are done.
    """
    from panorooms3d.store.dataset import Dataset

    config = TeacherConfig(data=str(data), out=str(out), variant=variant, iterations=iterations, lr=lr, **settings)
    out = Path(out)
    rooms, data_summary = teacher_rooms(config)
    if not rooms:
        raise TeacherDataError(f"{data}: no rooms of the {config.split!r} split have a panorama to train the teacher "
                               "on, and no extra panoramas are given")
    shapes = _pano_shapes(rooms)
    if len(shapes) > 1 and not (config.height and config.width):
        raise TeacherDataError(f"the teacher's panoramas have different sizes {sorted(shapes)}; set the teacher's "
                               "height and width (e.g. height = 256, width = 512) to train on all of them")
    device = resolve_device(config.device)
    use_amp = bf16_autocast(device, False, config.cpu_amp)  # CUDA: float32 as before; a bad cpu_amp fails here
    check_ema(config.ema)
    out.mkdir(parents=True, exist_ok=True)
    folder0, uid0 = rooms[0]
    first = Dataset(Path(folder0)).load_panorama(uid0)
    size = (config.height or first.rgb.shape[0], config.width or first.rgb.shape[1])
    if device.type == "cpu":
        keep_large_allocations_in_heap()
    if config.val_every > 0 and config.val_split == config.split:
        raise TeacherDataError(f"the teacher validates on the {config.val_split!r} split, which it trains on; "
                               "set val_split to a held-out split (e.g. val)")
    val_rooms = _training_rooms(Dataset(Path(data)), config.val_split) if config.val_every > 0 else []
    if config.val_every > 0 and not val_rooms:
        raise TeacherDataError(f"{data}: no rooms of the {config.val_split!r} split have a panorama to validate the "
                               "teacher on; set val_every = 0 or build panoramas for that split")
    weight = pixel_class_weights(rooms, config)
    weight = None if weight is None else weight.to(device)
    model = build_teacher(config, size).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = make_scheduler(optimizer, config)
    ckpt_path = out / CHECKPOINT
    ckpt = resume(ckpt_path, model, optimizer, scheduler)
    use_amp = resumed_bf16(ckpt, use_amp, device, config.cpu_amp, ckpt_path)
    average = resumed_average(model, config.ema, ckpt, ckpt_path, out)
    trained = model if average is None else average.model  # what is validated and saved as the teacher
    start = int(ckpt["iteration"]) if ckpt else 0
    resumed_from = start
    b = config.batch_size
    end = config.iterations if stop_after is None else min(config.iterations, start + stop_after)
    indices = [it * b + j for it in range(start, end) for j in range(b)]
    loader = DataLoader(PanoramaDataset(Path(data), rooms, config), batch_size=b, sampler=indices,
                        num_workers=config.workers)
    write_json(out / "config.json", asdict(config))
    with atomic_path(out / "teacher_data.json") as tmp:
        tmp.write_text(json.dumps(data_summary, indent=2))
    log = (out / "train_log.jsonl").open("a")

    def checkpoint(iteration: int) -> None:
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "iteration": iteration, "config": asdict(config),
                          "teacher_config": dict(model.config), "bf16": use_amp,
                          **({"ema": average.model.state_dict()} if average is not None else {})})

    def validate(iteration: int) -> None:
        result = evaluate_teacher(trained, data, split=config.val_split, rooms=val_rooms, class_set=config.class_set,
                                  height=size[0], width=size[1], device=str(device), progress=False)
        model.train()
        log.write(json.dumps({"iteration": iteration, "val_mIoU": result["metrics"]["mIoU"],
                              "val_aAcc": result["metrics"]["aAcc"], "seconds": time.perf_counter() - t0}) + "\n")
        log.flush()

    t0 = time.perf_counter()
    loss_value = math.nan
    bar = tqdm(total=config.iterations, initial=start, desc=f"teacher {config.variant}", unit="it",
               disable=not progress, dynamic_ncols=True)
    model.train()
    for it, (x, y) in enumerate(loader, start=start):
        torch.manual_seed(config.seed * 1_000_003 + it)
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(model.normalize(x))
        loss_value = optimisation_step(F.cross_entropy(logits.float(), y, weight=weight), optimizer, scheduler,
                                       on_diverge=lambda it=it: checkpoint(it), where=f"teacher iteration {it + 1}",
                                       bf16=use_amp)
        if average is not None:
            average.update(it + 1)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        if (it + 1) % config.log_every == 0 or it + 1 == end:
            log.write(json.dumps({"iteration": it + 1, "loss": loss_value, "lr": scheduler.get_last_lr()[0],
                                  "seconds": time.perf_counter() - t0, "bf16": use_amp}) + "\n")
            log.flush()
        if val_rooms and ((it + 1) % config.val_every == 0 or it + 1 == config.iterations):
            validate(it + 1)
        if (it + 1) % config.checkpoint_every == 0:
            checkpoint(it + 1)
    done = max(end, start)
    checkpoint(done)
    bar.close()
    log.close()
    final = out / TEACHER
    if done >= config.iterations:
        with atomic_path(final) as tmp:
            trained.cpu().save_checkpoint(tmp)
    return TeacherResult(checkpoint=final if final.exists() else ckpt_path, iterations=done, final_loss=loss_value,
                         seconds=time.perf_counter() - t0, resumed_from=resumed_from)


#: What the teacher is fed, by name: ``rgb`` (this project) or ``bgr`` (the official distill.py reads the
#: panorama with cv2.imread and feeds the BGR image to the teacher as it is).
TEACHER_INPUTS = {"rgb": lambda rgb: rgb, "bgr": lambda rgb: np.asarray(rgb)[..., ::-1]}


@torch.no_grad()
def predict_panorama(teacher, rgb: np.ndarray, *, height: int | None = None, width: int | None = None,
                     device: str | torch.device = "cpu", teacher_input: str = "rgb") -> torch.Tensor:
    """Teacher logits (K, h, w) float32 of one RGB uint8 (H, W, 3) panorama (resized to (height, width) if given).

    ``teacher_input``: the channel order fed to the teacher (:data:`TEACHER_INPUTS`).
    """
    if teacher_input not in TEACHER_INPUTS:
        raise ValueError(f"unknown teacher input {teacher_input!r}; use one of {tuple(TEACHER_INPUTS)}")
    teacher.eval()
    x = prepare_rgb(TEACHER_INPUTS[teacher_input](rgb), height, width)[None].to(device)
    return teacher(teacher.normalize(x))[0].float().cpu()


def cache_teacher_predictions(teacher, data: str | Path, out_dir: str | Path, *, splits=("train",),
                              height: int | None = None, width: int | None = None, device: str = "auto",
                              progress: bool = True, teacher_input: str = "rgb") -> dict:
    """Write the teacher's logits of each room's panorama to ``<out_dir>/<room key>.npy``.

    ``teacher_input``: ``rgb`` or ``bgr`` (:data:`TEACHER_INPUTS`; the official protocol: bgr). A
    panorama imported from the official release (stored mirrored, :mod:`panorooms3d.store.official`)
    is shown to the teacher in its official orientation -- the official image -- and the logits are
    mirrored back to the stored orientation.

    Args:
        teacher: a Segmenter2D, or a path to a teacher checkpoint (:func:`load_teacher`).
        data: dataset folder.
        out_dir: cache folder.
        splits: splits whose rooms are cached (distillation uses the training rooms).
        height, width: prediction size (default: the teacher run's training size, else the stored size).
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: show a progress bar.

    Each file holds float16 logits ``[K, h, w]`` (the equirect convention of the stored panorama); it is
    written atomically, and rooms whose file exists are skipped. Rooms without a panorama are skipped.

    Returns:
        {"written": n, "skipped": n, "no_panorama": n, "dir": str}.
    """
    from panorooms3d.store.dataset import Dataset, room_key

    if not isinstance(teacher, torch.nn.Module):
        path = Path(teacher)
        teacher = load_teacher(path)
        if height is None and width is None:
            cfg_path = path.parent / "config.json"
            if cfg_path.is_file():
                cfg = json.loads(cfg_path.read_text())
                height, width = cfg.get("height"), cfg.get("width")
    dev = resolve_device(device)
    teacher = teacher.to(dev)
    ds = Dataset(Path(data))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    uids = [u for s in splits for u in ds.split(s)]
    counts = {"written": 0, "skipped": 0, "no_panorama": 0, "dir": str(out_dir)}
    for uid in tqdm(uids, desc="teacher cache", unit="room", disable=not progress, dynamic_ncols=True):
        path = out_dir / f"{room_key(uid)}.npy"
        if path.exists():
            counts["skipped"] += 1
            continue
        pano = ds.load_panorama(uid)
        if pano is None:
            counts["no_panorama"] += 1
            continue
        from panorooms3d.store.official import ORIENTATION, official_view

        mirrored = ds.panorama_attrs(uid).get("orientation") == ORIENTATION
        rgb = official_view(pano.rgb) if mirrored else pano.rgb
        logits = predict_panorama(teacher, rgb, height=height, width=width, device=dev, teacher_input=teacher_input)
        logits = logits.flip(-1) if mirrored else logits
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, logits.numpy().astype(np.float16))
        counts["written"] += 1
    return counts


def teacher_cache_path(cache_dir: str | Path, uid: str) -> Path:
    """The cache file of room ``uid``."""
    from panorooms3d.store.dataset import room_key

    return Path(cache_dir) / f"{room_key(uid)}.npy"


def _teacher_size(path: Path, height: int | None, width: int | None) -> tuple[int | None, int | None]:
    """The prediction size of a teacher checkpoint: given, else its run's training size (``config.json`` beside it)."""
    if height is None and width is None:
        cfg_path = Path(path).parent / "config.json"
        if cfg_path.is_file():
            cfg = json.loads(cfg_path.read_text())
            return cfg.get("height"), cfg.get("width")
    return height, width


@torch.no_grad()
def evaluate_teacher(teacher, data: str | Path, *, split: str = "test", rooms: list[str] | None = None,
                     class_set: str = "paper30", height: int | None = None, width: int | None = None,
                     device: str = "auto", progress: bool = True) -> dict:
    """Score a teacher on the panoramas of a dataset's ``split`` (the test rooms by default).

    The teacher predicts at (height, width) (default: its run's training size, else the stored size);
    its logits are upsampled bilinearly to the stored panorama size, and the argmax is scored against
    the stored labels mapped to ``class_set``, per room (:class:`panorooms3d.bench.evaluate.RoomScores`).

    Returns the layout of :func:`panorooms3d.bench.evaluate.evaluate` (so tables read both):
    ``metrics`` (mean over rooms; every panorama has the same pixel count, so each room weighs 1),
    ``pooled`` (summed confusion), ``void_excluded`` (mean over rooms, class 0 left out),
    ``per_class_iou`` (pooled, by class name), ``confusion``, ``rooms`` (per room: metrics,
    ``void_excluded``, ``counts`` I/P/L), plus ``unit: "panorama pixels"``. Percent; NaN where undefined.

    Raises TeacherDataError when the split has no room with a panorama.
    """
    from panorooms3d.bench.evaluate import RoomScores
    from panorooms3d.store.dataset import Dataset

    if not isinstance(teacher, torch.nn.Module):
        path = Path(teacher)
        height, width = _teacher_size(path, height, width)
        teacher = load_teacher(path)
    dev = resolve_device(device)
    teacher = teacher.to(dev)
    ds = Dataset(Path(data))
    uids = rooms if rooms is not None else [u for u in ds.split(split) if ds.room_info(u).has_panorama]
    if not uids:
        raise TeacherDataError(f"{data}: no rooms of the {split!r} split have a panorama to score the teacher on")
    cs = get_class_set(class_set)
    rooms_scored = RoomScores(class_set, size_key="pixels")
    for uid in tqdm(uids, desc="evaluate teacher", unit="room", disable=not progress, dynamic_ncols=True):
        pano = ds.load_panorama(uid)
        if pano is None:
            raise TeacherDataError(f"{data}: room {uid} has no panorama to score the teacher on")
        logits = predict_panorama(teacher, pano.rgb, height=height, width=width, device=dev)
        if tuple(logits.shape[1:]) != tuple(pano.label.shape):
            logits = F.interpolate(logits[None], size=pano.label.shape, mode="bilinear", align_corners=False)[0]
        pred = logits.argmax(0).numpy()
        rooms_scored.add(uid, pred, cs.map(pano.label))
    return {"class_set": class_set, "split": split, "unit": "panorama pixels", **rooms_scored.result()}


def _teacher_name(teacher) -> str:
    cfg = getattr(teacher, "config", {}) or {}
    return str(cfg.get("variant") or f"{cfg.get('arch', 'unknown')}-c{cfg.get('channels', '?')}")


def write_teacher_metrics(checkpoint: str | Path, data: str | Path, out: str | Path, *, split: str = "test",
                          class_set: str = "paper30", height: int | None = None, width: int | None = None,
                          device: str = "auto", progress: bool = True) -> dict:
    """Evaluate a teacher checkpoint (:func:`evaluate_teacher`) and write the result as JSON to ``out`` (atomically).

    Adds ``run``: label, model, checkpoint, parameter count and, when the run folder has it, what the
    teacher trained on (``teacher_data.json``: main and extra rooms). Returns the result.
    """
    from panorooms3d.bench.evaluate import write_metrics

    checkpoint = Path(checkpoint)
    height, width = _teacher_size(checkpoint, height, width)
    teacher = load_teacher(checkpoint)
    result = evaluate_teacher(teacher, data, split=split, class_set=class_set, height=height, width=width,
                              device=device, progress=progress)
    trained_on = checkpoint.parent / "teacher_data.json"
    result["run"] = {"name": "teacher", "label": "Teacher (2D, panoramas)", "model": f"teacher-{_teacher_name(teacher)}",
                     "checkpoint": str(checkpoint),
                     "params": int(sum(p.numel() for p in teacher.parameters())), "size": [height, width],
                     "trained_on": json.loads(trained_on.read_text()) if trained_on.is_file() else None}
    with atomic_path(Path(out)) as tmp:
        write_metrics(result, tmp)
    return result
