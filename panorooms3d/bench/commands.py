"""The ``benchmark`` click group: train, train-teacher, distill, eval, run (suites).

Every command takes a packed dataset (``--data``, a folder with ``manifest.json``); user mistakes
(missing dataset, checkpoint or suite file, bad suite) end in a one-line error, not a traceback.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path

import click

from panorooms3d.run.lock import locked_output

PAPER_COLUMNS = (("aAcc", "aAcc"), ("mIoU", "mIoU"), ("mAcc", "mAcc"), ("mDice", "Dice"), ("mFscore", "Fscore"),
                 ("mPrecision", "Precision"), ("mRecall", "Recall"))


@contextmanager
def _user_errors():
    """Turn the library's user-facing errors into click errors that name the file and the problem."""
    from panorooms3d.bench.jobs import JobError
    from panorooms3d.bench.suite import SuiteError
    from panorooms3d.store.dataset import DatasetError

    try:
        yield
    except (SuiteError, DatasetError, FileNotFoundError, KeyError, JobError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise click.ClickException(_worker_message(str(msg))) from None
    except ValueError as exc:
        raise click.ClickException(_worker_message(str(exc))) from None


def _worker_message(msg: str) -> str:
    """The error itself of one raised in a DataLoader worker.

    torch re-raises it in the main process with the worker's traceback in the message ("Caught
    DatasetError in DataLoader worker process 0. Original Traceback ... DatasetError: <message>");
    the user needs the last line's message, not the traceback.
    """
    if "Original Traceback" not in msg:
        return msg
    last = msg.rstrip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


def _check_data(data: Path) -> Path:
    if not (Path(data) / "manifest.json").is_file():
        raise click.ClickException(f"{data}: not a dataset (no manifest.json); build one with `panorooms3d pack` "
                                   "or download one")
    return Path(data)


def _check_file(path: Path, what: str) -> Path:
    if not Path(path).is_file():
        raise click.ClickException(f"{what} not found: {path}" + (" (it is a folder)" if Path(path).is_dir() else ""))
    return Path(path)


class DeviceType(click.ParamType):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; CUDA is refused up front when this torch cannot use it."""

    name = "device"

    def convert(self, value, param, ctx):
        import re

        text = str(value).strip().lower()
        m = re.fullmatch(r"auto|cpu|cuda(?::(\d+))?", text)
        if not m:
            self.fail(f"{value!r} is not a device; use auto, cpu, cuda or cuda:N", param, ctx)
        if text.startswith("cuda"):
            import torch

            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = int(m.group(1) or 0)
            if index >= n:
                why = ("this PyTorch is built without CUDA" if not torch.backends.cuda.is_built()
                       else f"PyTorch sees {n} CUDA device(s)")
                self.fail(f"{value}: {why}; use --device cpu or auto", param, ctx)
        return text


DEVICE = DeviceType()


class BlockSourceType(click.ParamType):
    """``crops`` or ``official:DIR`` (:data:`panorooms3d.bench.train.BLOCK_SOURCES`); the folder is checked by training."""

    name = "source"

    def convert(self, value, param, ctx):
        text = str(value).strip()
        name, sep, folder = text.partition(":")
        if name == "crops" and not sep:
            return text
        if name == "official" and folder:
            return text
        self.fail(f"{value!r}: use crops or official:DIR (DIR: the official block release, or a folder of "
                  "its block .npz files)", param, ctx)


BLOCK_SOURCE = BlockSourceType()


class BlockShapeType(click.ParamType):
    """A block edge ``N`` (a cube) or ``XxYxZ``, each at least 8 voxels: an int or [x, y, z] for TrainConfig.block."""

    name = "shape"

    def convert(self, value, param, ctx):
        if isinstance(value, int | list):
            return value
        parts = str(value).lower().replace("×", "x").split("x")
        try:
            edges = [int(p) for p in parts]
        except ValueError:
            edges = []
        if len(edges) not in (1, 3) or min(edges) < 8:
            self.fail(f"{value!r}: give one edge (e.g. 64) or three (e.g. 64x64x32), each at least 8 voxels",
                      param, ctx)
        return edges[0] if len(edges) == 1 else edges


BLOCK_SHAPE = BlockShapeType()
SPLITS = click.Choice(["train", "val", "test"])
# Choices of block training's settings, spelled here so that the CLI starts without importing torch
# (tests/test_bench_train.py checks them against bench.train's and bench.data's).
SCHEDULES = ("constant", "poly", "cosine")
SAMPLINGS = ("uniform", "surface")
CLASS_WEIGHTS = ("none", "sqrt-inverse", "inverse")
CPU_AMP = ("off", "on", "auto")
TTA_NAMES = ("none", "flips", "d4")  # bench.evaluate.TTA's names (a test keeps them equal)


def _print_metrics(result: dict) -> None:
    m = result["metrics"]
    header = " ".join(f"{name:>9}" for _, name in PAPER_COLUMNS)
    click.echo(header)
    click.echo(" ".join(f"{m[key]:9.2f}" if m[key] is not None and math.isfinite(m[key]) else f"{'–':>9}"
                        for key, _ in PAPER_COLUMNS))
    pooled, void = result["pooled"]["mIoU"], result["void_excluded"]["mIoU"]
    click.echo(f"(volume-weighted over {len(result['rooms'])} room(s), the paper's protocol; "
               f"mIoU pooled: {pooled:.2f}, void excluded: {void:.2f})")


@click.group("benchmark")
def benchmark() -> None:
    """Train, distil and score 3D segmentation models; run the paper's tables as suites."""


def _suite_device(suite: Path) -> None:
    """Refuse a suite whose [settings] device is CUDA when this torch cannot use it (before any folder is made)."""
    import tomllib

    try:
        device = tomllib.loads(Path(suite).read_text()).get("settings", {}).get("device")
    except (OSError, ValueError):
        return
    if isinstance(device, str):
        try:
            DEVICE.convert(device, None, None)
        except click.BadParameter as exc:
            raise click.ClickException(f"{suite}: [settings] device = {device!r}: {exc.message}; "
                                       "pass --device cpu to override it") from None


@benchmark.command("train")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Dataset folder (manifest.json): the rooms cropped into blocks, and the rooms validated on "
                   "with --val-every. Optional with --blocks official:DIR.")
@click.option("--blocks", type=BLOCK_SOURCE, default="crops", show_default=True,
              help="Where training blocks come from: crops (random crops of --data's training rooms, with flips "
                   "and turns) or official:DIR, the official sparse block release (DIR/train/*.npz, or DIR/*.npz) "
                   "drawn as the official train.py does: each file once per epoch in a fresh shuffle, no "
                   "augmentation; --block is their edge (the release: 128).")
@click.option("--model", default="3dseg-t", show_default=True, help="Registered model (`panorooms3d models`).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option("--iterations", type=click.IntRange(1), default=20000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=2, show_default=True)
@click.option("--block", type=BLOCK_SHAPE, default="128", show_default=True,
              help="Block edge in voxels (paper: 128), or three edges X x Y x Z such as 64x64x32.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True, help="Adam learning rate (paper: 1e-3).")
@click.option("--adam-beta2", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.999,
              show_default=True, help="Adam's second-moment decay (torch's default and the official code's: 0.999).")
@click.option("--schedule", type=click.Choice(list(SCHEDULES)), default="constant", show_default=True,
              help="Learning rate after the warm-up: constant (paper), poly (power 0.9) or cosine (to 1%).")
@click.option("--warmup", type=click.IntRange(0), default=0, show_default=True,
              help="Iterations of linear warm-up from 1% of --lr (0 = none, the paper).")
@click.option("--cooldown", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Share of the iterations, at the end, over which the rate falls linearly to 0 on top of "
                   "--schedule (0 = none, the paper; 0.2 with constant: warm-up, stable, decay in the last fifth).")
@click.option("--sampling", type=click.Choice(list(SAMPLINGS)), default="uniform", show_default=True,
              help="Where crops are drawn: uniform (paper) or surface (centred on labelled voxels 3 times in 4).")
@click.option("--no-augment", is_flag=True,
              help="Draw crops as they lie in the room: no flips or quarter turns (the official trainer's way).")
@click.option("--class-weights", type=click.Choice(list(CLASS_WEIGHTS)), default="none", show_default=True,
              help="Cross-entropy class weights from the training rooms' class frequencies (none = the paper).")
@click.option("--dice-weight", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Weight of a soft Dice term over the classes in each batch, added to the cross-entropy "
                   "(0 = none, the paper).")
@click.option("--decoder-lr-mult", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Learning-rate multiplier of the 3D Segmenter's linear decoder (head and skip; 1 = the paper).")
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Decay of a moving average of the weights, validated and saved as model.pt (0 = none, the paper).")
@click.option("--ema-ramp", type=click.FloatRange(1), default=10.0, show_default=True,
              help="Ramp of the average's decay at step t, min(EMA, (1 + t) / (EMA_RAMP + t)): 10 reaches 0.99 at "
                   "step 890, 2 at step 98; 1 = no ramp.")
@click.option("--cpu-amp", type=click.Choice(list(CPU_AMP)), default="off", show_default=True,
              help="bf16 autocast on the CPU: off (float32), on, or auto (where the CPU has AMX or AVX512-BF16).")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
              help="torch threads (0 = torch's default: every core).")
@click.option("--block-teacher", type=click.Path(path_type=Path), default=None,
              help="A trained 3D model's model.pt (e.g. SparseConv's) whose logits every block is also distilled "
                   "from (beyond the paper; none = labels only).")
@click.option("--block-teacher-weight", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Weight of the --block-teacher term.")
@click.option("--block-teacher-tau", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Temperature of the --block-teacher term.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True, help="DataLoader workers.")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--no-skip", is_flag=True, help="Drop the 3D Segmenter's skip connection (Table 4).")
@click.option("--init", type=click.Path(path_type=Path), default=None, help="Initialise from a run checkpoint.")
@click.option("--checkpoint-every", type=click.IntRange(1), default=200, show_default=True)
@click.option("--val-every", type=click.IntRange(0), default=0, show_default=True,
              help="Validate on --data's val split every N iterations (0 = never); needs --data.")
@click.option("--rooms", "room_patterns", multiple=True, metavar="PATTERN",
              help="Train only on the training rooms whose uid matches PATTERN (fnmatch: * ? [...], e.g. "
                   "'synth-1-*'); repeatable. Default: every training room.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Resume from <out>/checkpoints/last.pt when present.")
@click.option("--force", is_flag=True, help="Write into a non-empty OUT that is not a run folder.")
@locked_output("out", "run", "benchmark train")
def train_command(data, blocks, model, out, iterations, batch_size, block, lr, adam_beta2, schedule, warmup, cooldown, sampling, no_augment,
                  class_weights, dice_weight, decoder_lr_mult, ema, ema_ramp, cpu_amp, threads, block_teacher, block_teacher_weight,
                  block_teacher_tau, seed, workers, device, no_skip, init, checkpoint_every, val_every, room_patterns,
                  resume, force) -> None:
    """Train a model on blocks (resumable): random crops of the training rooms, or the official block release.

    The defaults are the paper's. The CPU track's block training of a 3D Segmenter (benchmark/cpu-track.toml) is:

    \b
      --block 64 --batch-size 1 --iterations 2300 --lr 2e-3 --warmup 30 --schedule constant
      --sampling surface --class-weights sqrt-inverse --decoder-lr-mult 10 --ema 0.99
      --cpu-amp auto --workers 0 --val-every 100

    and of SparseConv and the reduced U-Net the same with --iterations 1400 --decoder-lr-mult 1.
    """
    from panorooms3d.bench.train import CHECKPOINT, TrainConfig, train

    if data is None and (blocks == "crops" or val_every > 0):
        need = "--blocks crops" if blocks == "crops" else f"--val-every {val_every}"
        raise click.ClickException(f"{need} needs --data (a dataset folder with manifest.json)"
                                   + ("; or train on the official blocks with --blocks official:DIR"
                                      if blocks == "crops" else "; or pass --val-every 0"))
    if data is not None:
        _check_data(data)
    if init:
        _check_file(init, "init checkpoint")
    if block_teacher:
        _check_file(block_teacher, "block teacher checkpoint")
    if not resume and (out / CHECKPOINT).exists():
        raise click.ClickException(f"{out / CHECKPOINT} exists; pass --resume or choose another --out")
    cfg = TrainConfig(data=str(data) if data is not None else None, blocks=blocks, model=model, out=str(out),
                      iterations=iterations, batch_size=batch_size, block=block, lr=lr, adam_beta2=adam_beta2,
                      schedule=schedule,
                      warmup=warmup, cooldown=cooldown, sampling=sampling, augment=not no_augment, class_weights=class_weights,
                      dice_weight=dice_weight,
                      decoder_lr_mult=decoder_lr_mult, ema=ema, ema_ramp=ema_ramp, cpu_amp=cpu_amp, threads=threads,
                      block_teacher=str(block_teacher) if block_teacher else None,
                      block_teacher_weight=block_teacher_weight, block_teacher_tau=block_teacher_tau, seed=seed,
                      workers=workers, device=device, init=str(init) if init else None,
                      checkpoint_every=checkpoint_every, val_every=val_every,
                      rooms=list(room_patterns) if room_patterns else None,
                      model_overrides={"skip": False} if no_skip else {})
    with _user_errors():
        res = train(cfg)
    if os.environ.get("RANK", "0") == "0":  # torchrun: one summary, not one per rank
        click.echo(f"trained {model}: {res.iterations} iterations (resumed from {res.resumed_from}), final loss "
                   f"{res.final_loss:.4f}, {res.seconds:.1f} s; weights: {out / 'model.pt'}")


@benchmark.command("train-teacher")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Dataset folder.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Teacher run folder.")
@click.option("--variant", type=click.Choice(["tiny", "small", "base", "large", "unet2d-s", "unet2d-m"]), default="tiny",
              show_default=True, help="Segmenter ViT size, or a convolutional teacher (unet2d-*: learns from random "
              "weights in a CPU budget; see docs/teacher.md).")
@click.option("--iterations", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=2, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True)
@click.option("--height", type=click.IntRange(16), default=None, help="Train/predict at this height (default: stored size).")
@click.option("--width", type=click.IntRange(16), default=None, help="Train/predict at this width (default: stored size).")
@click.option("--layers", type=click.IntRange(1), default=None, help="ViT layers (override the variant; for tiny demos).")
@click.option("--init", type=click.Path(path_type=Path), default=None,
              help="Local checkpoint to start from (ours, or official Segmenter with variant.yml beside it).")
@click.option("--class-weights", type=click.Choice(list(CLASS_WEIGHTS)), default="none",
              show_default=True, help="Cross-entropy class weights from the training panoramas' pixel frequencies.")
@click.option("--val-every", type=click.IntRange(0), default=0, show_default=True,
              help="Score the val panoramas every N iterations (the teacher's curve in train_log.jsonl); 0: never.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--cache/--no-cache", default=True, show_default=True,
              help="Also cache the teacher's logits of the training panoramas in <out>/cache.")
@click.option("--force", is_flag=True, help="Write into a non-empty OUT that is not a run folder.")
@locked_output("out", "run", "benchmark train-teacher")
def train_teacher_command(data, out, variant, iterations, batch_size, lr, height, width, layers, init, class_weights,
                          val_every, seed, device, cache, force) -> None:
    """Finetune the 2D Segmenter teacher on the training panoramas and cache its predictions."""
    from panorooms3d.bench.teacher import cache_teacher_predictions, train_teacher

    _check_data(data)
    if init:
        _check_file(init, "teacher init checkpoint")
    if variant.startswith("unet2d") and (layers or init):
        raise click.UsageError(f"--layers and --init apply to the Segmenter variants, not to {variant}")
    with _user_errors():
        res = train_teacher(data, out, variant=variant, iterations=iterations, lr=lr, batch_size=batch_size,
                            height=height, width=width, init=str(init) if init else None, seed=seed, device=device,
                            model_overrides={"n_layers": layers} if layers else {}, class_weights=class_weights,
                            val_every=val_every)
        click.echo(f"teacher {variant}: {res.iterations} iterations, final loss {res.final_loss:.4f}, "
                   f"{res.seconds:.1f} s; weights: {res.checkpoint}")
        if cache:
            counts = cache_teacher_predictions(res.checkpoint, data, out / "cache", height=height, width=width,
                                               device=device)
            click.echo(f"cache {counts['dir']}: {counts['written']} written, {counts['skipped']} present, "
                       f"{counts['no_panorama']} without panorama")


@benchmark.command("distill")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Dataset folder.")
@click.option("--student", type=click.Path(path_type=Path), required=True, help="Block-pretrained student checkpoint.")
@click.option("--teacher-cache", type=click.Path(path_type=Path), default=None,
              help="Folder of cached teacher logits (train-teacher's <out>/cache).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option("--iterations", type=click.IntRange(1), default=45000, show_default=True, help="Rooms (batch 1); paper: 45,000.")
@click.option("--tau", type=click.FloatRange(0, min_open=True), default=20.0, show_default=True, help="Temperature (paper: 20).")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True)
@click.option("--finetune-only", is_flag=True, help="CE only, no distillation (the paper's Table 3 control).")
@click.option("--projection", type=click.Choice(["surface", "faces", "emission", "official-emission"]),
              default="surface", show_default=True, help="How the student is rendered into the panorama.")
@click.option("--protocol", type=click.Choice(["project", "official"]), default="project", show_default=True,
              help="benchmark/protocols/<name>.toml as defaults (official: the official code's KD normalisation, "
                   "six-face projection, MultiStepLR schedule, encoding); options given here win.")
@click.option("--kd-loss", type=click.Choice(["soft", "soft-standardised", "hard", "hard-unweighted"]), default="soft",
              show_default=True,
              help="The teacher's term: soft = the paper's KD at --tau; soft-standardised = beyond the paper, the same on "
                   "each pixel's logits z-scored over the classes (teacher and student), so that only their ranking and "
                   "spacing of the classes count, not their scale; hard = beyond the paper, the teacher's argmax as "
                   "pseudo-labels of the projected student (weighted like the CE term, hit pixels only); "
                   "hard-unweighted = the same with every class weighing 1.")
@click.option("--pseudo-threshold", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="With --kd-loss hard: only pixels whose teacher probability of its argmax reaches this count.")
@click.option("--pseudo-classes", default=None,
              help="With a hard --kd-loss: comma-separated class names whose pseudo-labels count (default: every class).")
@click.option("--labelled-fraction", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Share of the training rooms whose 3D labels are used (beyond the paper; the same rooms as block "
                   "training's labelled_fraction). The others get the teacher's term alone.")
@click.option("--kd-rooms", type=click.Choice(["all", "unlabelled"]), default="all", show_default=True,
              help="Rooms that get the teacher's term: all (the paper) or only those without 3D labels "
                   "(--labelled-fraction below 1), CE alone on the others.")
@click.option("--adam-beta2", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.999,
              show_default=True, help="Adam's second-moment decay of this stage's fresh optimizer (torch's default "
                                      "and the official code's: 0.999), whatever the block training used.")
@click.option("--val-every", type=click.IntRange(1), default=1500, show_default=True)
@click.option("--val-split", type=SPLITS, default="val", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--force", is_flag=True, help="Write into a non-empty OUT that is not a run folder.")
@locked_output("out", "run", "benchmark distill")
def distill_command(data, student, teacher_cache, out, iterations, tau, lr, finetune_only, projection, protocol,
                    kd_loss, pseudo_threshold, pseudo_classes, labelled_fraction, kd_rooms, adam_beta2, val_every,
                    val_split, seed, device, force) -> None:
    """Distil the cached teacher into a 3D student room by room (or finetune it with --finetune-only)."""
    from click.core import ParameterSource

    from panorooms3d.bench.distill import distill
    from panorooms3d.bench.protocol import load_protocol

    ctx = click.get_current_context()
    options = dict(iterations=iterations, tau=tau, lr=lr, projection=projection, val_every=val_every,
                   kd_loss=kd_loss, pseudo_threshold=pseudo_threshold, kd_rooms=kd_rooms,
                   labelled_fraction=labelled_fraction, adam_beta2=adam_beta2,
                   pseudo_classes=None if pseudo_classes is None else [c.strip() for c in pseudo_classes.split(",")])
    given = {k: v for k, v in options.items() if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    settings = {**options, **load_protocol(protocol).apply("distill", given)}

    _check_data(data)
    _check_file(student, "student checkpoint")
    if not finetune_only and (teacher_cache is None or not Path(teacher_cache).is_dir()):
        raise click.ClickException(f"teacher cache folder not found: {teacher_cache} (run `benchmark train-teacher`, "
                                   "or pass --finetune-only)")
    with _user_errors():
        res = distill(data, student, teacher_cache, out, finetune_only=finetune_only, val_split=val_split,
                      seed=seed, device=device, **settings)
    best = "none (no validation rooms; final weights)" if res.best_miou is None else f"{res.best_miou:.2f}"
    click.echo(f"{'finetune' if finetune_only else 'distill'}: {res.iterations} rooms in {res.seconds:.1f} s; best "
               f"val mIoU {best} at {res.best_iteration}; best: {res.best}, final: {res.final}")


@benchmark.command("eval")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Dataset folder.")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="Run checkpoint (.pt).")
@click.option("--model", default=None, help="Model name (default: the one stored in the checkpoint).")
@click.option("--split", type=SPLITS, default="test", show_default=True, help="The split whose rooms are scored.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the metrics JSON here.")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--tta", type=click.Choice(list(TTA_NAMES)), default="none", show_default=True,
              help="Test-time augmentation: average the class probabilities over the room mirrored in x and y "
                   "(flips, 4 passes) or also turned a quarter about z (d4, 8 passes; the CPU track's). "
                   "none: one pass, as the official eval.py.")
def eval_command(data, checkpoint, model, split, out, device, tta) -> None:
    """Score a checkpoint on whole rooms; prints the paper's columns (volume-weighted, %).

    The rooms are padded with free space as the checkpoint's training padded them (its ``room_pad_to``, e.g. to 48
    voxels in z for 64 x 64 x 48 blocks), else to multiples of 32. Checkpoints are loaded without running code from
    them (torch.load weights_only).
    """
    from panorooms3d.bench.evaluate import evaluate, write_metrics
    from panorooms3d.bench.suite import load_model, room_padding
    from panorooms3d.bench.train import resolve_device
    from panorooms3d.run.lock import check_output_file

    _check_data(data)
    _check_file(checkpoint, "checkpoint")
    if out:
        check_output_file(out, suffixes=(".json",))
    device = str(resolve_device(device))
    with _user_errors():
        net = load_model(checkpoint, model)
        pad = room_padding(checkpoint)
        result = evaluate(net, data, split=split, device=device, tta=tta, **({} if pad is None else {"pad_to": pad}))
    click.echo(f"\n{checkpoint} on the {split} split ({len(result['rooms'])} room(s)), %:")
    _print_metrics(result)
    if out:
        write_metrics(result, out)
        click.echo(f"metrics: {out}")


@benchmark.command("run")
@click.argument("suite")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Dataset folder.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Suite output folder.")
@click.option("--only", multiple=True, help="Run only this run (repeatable).")
@click.option("--device", type=DEVICE, default=None, help="Override the suite's device: auto, cpu, cuda or cuda:N.")
@click.option("--force", is_flag=True, help="Write into a non-empty OUT that is not a suite folder.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Steps (trainings, evaluations) run at once, each in its own process with cores / JOBS threads. "
                   "Default: the suite's [settings] jobs, else 1 (one step after the other, all cores each).")
def run_command(suite, data, out, only, device, force, jobs) -> None:
    """Run an experiment SUITE end to end, resumably, and print its table.

    SUITE is a suite file or the name of one of the repository's suites (table1, table3, table4,
    cpu, demo, cpu-track and its cpu-track-* variants: benchmark/NAME.toml, each described in
    benchmark/README.md), found from any working folder. One command at a time per OUT; inside it
    --jobs steps at once (small models use two cores better as two one-thread trainings).
    """
    from panorooms3d.bench.suite import find_suite, load_suite, run_suite
    from panorooms3d.run.lock import check_folder_kind, check_output_dir, output_folder

    with _user_errors():
        suite = find_suite(suite)
        load_suite(suite)  # a bad suite file fails before anything is created
    _check_data(data)
    check_output_dir(out)
    check_folder_kind(out, "suite", force)
    if device is None:
        _suite_device(suite)
    with _user_errors(), output_folder(out, "suite", force=force, command="benchmark run",
                                       on_message=lambda m: click.echo(m, err=True)):
        res = run_suite(suite, data, out, only=list(only) or None, device=device, jobs=jobs)
    click.echo(res.markdown)
    click.echo(f"tables: {res.table_md}, {res.table_csv}, {res.paper_csv}")

