"""The 2D teacher of panoramic distillation: finetune Segmenter2D on training panoramas, cache its logits.

``train_teacher`` finetunes :class:`panorooms3d.nn.segmenter2d.Segmenter2D` on the equirect
panoramas of a dataset's *training* rooms (RGB -> class ids of a class set, ``paper30`` by
default), the paper's step "finetuned on the rendered training panoramas". It is

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

from panorooms3d.bench.train import make_scheduler, optimisation_step, resolve_device, resume, save_checkpoint
from panorooms3d.run.atomic import atomic_path
from panorooms3d.run.checkpoint import load_checkpoint
from panorooms3d.taxonomy import get_class_set

CHECKPOINT = "checkpoints/last.pt"
TEACHER = "teacher.pt"


@dataclass
class TeacherConfig:
    """Settings of a teacher finetuning run (JSON-able; stored in every checkpoint).

    Attributes:
        data: dataset folder.
        out: run folder (checkpoints, logs, ``teacher.pt``).
        variant: Segmenter2D size: tiny | small | base | large (the paper: base or large).
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
        model_overrides: extra Segmenter2D constructor arguments (e.g. ``{"n_layers": 2}`` for tiny demos).
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
    model_overrides: dict = field(default_factory=dict)


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

    Returns (rgb (3, H, W) float in [0, 1], label (H, W) int64 class ids). ``len`` is nominal.
    """

    def __init__(self, dataset_dir: Path, rooms: list[str], config: TeacherConfig, samples: int = 10**9) -> None:
        if not rooms:
            raise ValueError(f"{dataset_dir}: no training rooms with a panorama for the teacher")
        self.dataset_dir = Path(dataset_dir)
        self.rooms = list(rooms)
        self.config = config
        self.samples = samples
        self._ds = None

    def __len__(self) -> int:
        return self.samples

    def _dataset(self):
        if self._ds is None:
            from panorooms3d.store.dataset import Dataset

            self._ds = Dataset(self.dataset_dir)
        return self._ds

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 7, int(index)])
        uid = self.rooms[int(rng.integers(len(self.rooms)))]
        pano = self._dataset().load_panorama(uid)
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

    num_classes = get_class_set(config.class_set).num_classes
    torch.manual_seed(config.seed)
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
    """A Segmenter2D from a local file: our ``teacher.pt``, a teacher run's ``last.pt``, or an official checkpoint.

    Official checkpoints (``rstrudel/segmenter``: a dict with ``"model"``) need ``variant.yml`` beside them.

    Raises:
        FileNotFoundError: the file (or the official ``variant.yml``) is missing.
        ValueError: the file is not a checkpoint of a known layout.
    """
    from panorooms3d.nn.segmenter2d import Segmenter2D, load_official_segmenter

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher checkpoint not found: {path}")
    data = load_checkpoint(path, "cpu")
    if isinstance(data, dict) and "state_dict" in data and "config" in data:
        return Segmenter2D.from_checkpoint(path)
    if isinstance(data, dict) and "teacher_config" in data and "model" in data:  # a run's last.pt
        model = Segmenter2D(**data["teacher_config"])
        model.load_state_dict(data["model"])
        return model
    if isinstance(data, dict) and "model" in data:
        return load_official_segmenter(path)
    raise ValueError(f"{path} is not a teacher checkpoint (ours: 'config' + 'state_dict'; official: 'model')")


def _training_rooms(ds, split: str) -> list[str]:
    return [u for u in ds.split(split) if ds.room_info(u).has_panorama]


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
    out.mkdir(parents=True, exist_ok=True)
    ds = Dataset(Path(data))
    rooms = _training_rooms(ds, config.split)
    if not rooms:
        raise ValueError(f"{data}: no rooms of the {config.split!r} split have a panorama to train the teacher on")
    first = ds.load_panorama(rooms[0])
    size = (config.height or first.rgb.shape[0], config.width or first.rgb.shape[1])
    device = resolve_device(config.device)
    model = build_teacher(config, size).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = make_scheduler(optimizer, config)
    ckpt_path = out / CHECKPOINT
    ckpt = resume(ckpt_path, model, optimizer, scheduler)
    start = int(ckpt["iteration"]) if ckpt else 0
    resumed_from = start
    b = config.batch_size
    end = config.iterations if stop_after is None else min(config.iterations, start + stop_after)
    indices = [it * b + j for it in range(start, end) for j in range(b)]
    loader = DataLoader(PanoramaDataset(Path(data), rooms, config), batch_size=b, sampler=indices,
                        num_workers=config.workers)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    log = (out / "train_log.jsonl").open("a")

    def checkpoint(iteration: int) -> None:
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "iteration": iteration, "config": asdict(config),
                          "teacher_config": dict(model.config)})

    t0 = time.perf_counter()
    loss_value = math.nan
    bar = tqdm(total=config.iterations, initial=start, desc=f"teacher {config.variant}", unit="it",
               disable=not progress, dynamic_ncols=True)
    model.train()
    for it, (x, y) in enumerate(loader, start=start):
        torch.manual_seed(config.seed * 1_000_003 + it)
        x, y = x.to(device), y.to(device)
        logits = model(model.normalize(x))
        loss_value = optimisation_step(F.cross_entropy(logits.float(), y), optimizer, scheduler,
                                       on_diverge=lambda it=it: checkpoint(it), where=f"teacher iteration {it + 1}")
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        if (it + 1) % config.log_every == 0 or it + 1 == end:
            log.write(json.dumps({"iteration": it + 1, "loss": loss_value, "lr": scheduler.get_last_lr()[0],
                                  "seconds": time.perf_counter() - t0}) + "\n")
            log.flush()
        if (it + 1) % config.checkpoint_every == 0:
            checkpoint(it + 1)
    done = max(end, start)
    checkpoint(done)
    bar.close()
    log.close()
    final = out / TEACHER
    if done >= config.iterations:
        with atomic_path(final) as tmp:
            model.cpu().save_checkpoint(tmp)
    return TeacherResult(checkpoint=final if final.exists() else ckpt_path, iterations=done, final_loss=loss_value,
                         seconds=time.perf_counter() - t0, resumed_from=resumed_from)


@torch.no_grad()
def predict_panorama(teacher, rgb: np.ndarray, *, height: int | None = None, width: int | None = None,
                     device: str | torch.device = "cpu") -> torch.Tensor:
    """Teacher logits (K, h, w) float32 of one RGB uint8 (H, W, 3) panorama (resized to (height, width) if given)."""
    teacher.eval()
    x = prepare_rgb(rgb, height, width)[None].to(device)
    return teacher(teacher.normalize(x))[0].float().cpu()


def cache_teacher_predictions(teacher, data: str | Path, out_dir: str | Path, *, splits=("train",),
                              height: int | None = None, width: int | None = None, device: str = "auto",
                              progress: bool = True) -> dict:
    """Write the teacher's logits of each room's panorama to ``<out_dir>/<room key>.npy``.

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
        logits = predict_panorama(teacher, pano.rgb, height=height, width=width, device=dev)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, logits.numpy().astype(np.float16))
        counts["written"] += 1
    return counts


def teacher_cache_path(cache_dir: str | Path, uid: str) -> Path:
    """The cache file of room ``uid``."""
    from panorooms3d.store.dataset import room_key

    return Path(cache_dir) / f"{room_key(uid)}.npy"
