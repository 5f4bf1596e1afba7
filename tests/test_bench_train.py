"""Benchmark data, training (deterministic, kill and resume) and whole-room evaluation."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_rooms import BED, FLOOR, make_dataset, moving_average

from panorooms3d.bench.data import BlockConfig, BlockDataset, augment, encode_input, encode_target, padded_shape
from panorooms3d.bench.evaluate import evaluate, predict_logits
from panorooms3d.bench.train import CHECKPOINT, TrainConfig, build, continue_training, train
from panorooms3d.run.errors import UserError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


def test_encoding_follows_the_official_code() -> None:
    tsdf = np.array([[[1.0, -0.5]]], np.float32)
    rgb = np.array([[[[255, 0, 127], [10, 20, 30]]]], np.uint8)
    weight = np.array([[[0.0, 2.0]]], np.float32)
    x = encode_input(tsdf, rgb, weight)
    assert x.shape == (4, 1, 1, 2)
    assert x[0, 0, 0].tolist() == [-3.0, 1.5], "channel 0 = -3 tsdf"
    assert x[1:, 0, 0, 0].tolist() == [-1, -1, -1], "unobserved colour is -1"
    assert np.allclose(x[1:, 0, 0, 1], np.array([10, 20, 30]) / 127.5 - 1)
    y = encode_target(np.array([[[FLOOR, BED]]], np.uint8), weight)
    assert y.tolist() == [[[0, 13]]], "unobserved is void; raw ids map to paper30 (bed = 13)"
    assert padded_shape((130, 128, 20)) == (256, 128, 128)


def test_encoding_without_weight_is_the_same_on_stored_rooms(dataset: Path) -> None:
    from panorooms3d.store.dataset import Dataset

    ds = Dataset(dataset)
    for uid in ds.rooms:
        v = ds.load_volume(uid)
        assert np.array_equal(encode_input(v.tsdf, v.rgb, v.weight), encode_input(v.tsdf, v.rgb))
        assert np.array_equal(encode_target(v.label, v.weight), encode_target(v.label))


def test_augmentation_moves_volume_and_labels_together() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, (4, 5, 3))
    x = np.stack([y * 1.0, -y * 1.0])
    for flips in [(True, False, 0), (False, True, 1), (True, True, 3), (False, False, 2)]:
        xa, ya = augment(x, y, *flips)
        assert np.array_equal(xa[0], ya) and np.array_equal(xa[1], -ya)
    assert augment(x, y, False, False, 1)[1].shape == (5, 4, 3), "a quarter turn about z swaps x and y"


def test_blocks_are_a_pure_function_of_seed_and_index(dataset: Path) -> None:
    from panorooms3d.store.dataset import Dataset

    rooms = Dataset(dataset).split("train")
    a = BlockDataset(dataset, rooms, BlockConfig(block=16, seed=3))
    b = BlockDataset(dataset, rooms, BlockConfig(block=16, seed=3))
    xa, ya = a[7]
    xb, yb = b[7]
    assert xa.shape == (4, 16, 16, 16) and ya.shape == (16, 16, 16) and ya.dtype == torch.int64
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert any(not torch.equal(a[i][0], xa) for i in range(8, 12))


def test_colour_is_the_float32_formula_for_every_uint8_value() -> None:
    values = np.arange(256, dtype=np.uint8)
    rgb = np.stack([values, values[::-1], values], axis=-1).reshape(256, 1, 1, 3)
    x = encode_input(np.zeros((256, 1, 1), np.float32), rgb)  # tsdf 0: every voxel observed
    for c in range(3):
        expected = rgb[..., c].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        assert x[1 + c].tobytes() == expected.tobytes(), "bit for bit the float32 formula"
    assert x[1:].min() == -1.0 and x[1:].max() == 1.0


@pytest.mark.parametrize("encoding", ["project", "official"])
def test_blocks_are_the_stored_rooms_crops_encoded(dataset: Path, encoding: str) -> None:
    """Blocks come from rooms kept encoded in memory; each must equal its crop read from the store and encoded,
    inside the room, across its border (padding) and after the rooms kept have been dropped and read again."""
    from panorooms3d.bench.data import encode
    from panorooms3d.store.dataset import Dataset

    stored = Dataset(dataset)
    rooms = stored.split("train")
    blocks = BlockDataset(dataset, rooms, BlockConfig(block=[16, 12, 8], pad_to=16, sampling="uniform", seed=5,
                                                      encoding=encoding))
    blocks.CACHE_BYTES = 1  # keep one room only: every other room is read again when drawn
    inside = padded = 0
    for i in range(40):
        uid, start, aug = blocks.draw(i)
        crop = stored.read_crop(uid, start, (16, 12, 8), arrays=("tsdf", "rgb", "label"))
        x, y = augment(*encode(crop["tsdf"], crop["rgb"], crop["label"], None, {}, "paper30", encoding), *aug)
        xb, yb = blocks[i]
        assert xb.dtype == torch.float32 and yb.dtype == torch.int64
        assert xb.numpy().tobytes() == x.tobytes() and np.array_equal(yb.numpy(), y), (i, uid, start)
        fits = np.all(start + (16, 12, 8) <= stored.room_info(uid).shape)
        inside += bool(fits)
        padded += not fits
    assert inside and padded, "both kinds of crop were drawn"
    assert len(blocks._rooms) == 1


def test_pad_to_per_axis_starts_every_lower_block_at_the_floor(dataset: Path) -> None:
    """A block lower than its other edges pads the rooms to its largest edge by default, so its start moves in z;
    ``pad_to`` per axis equal to the block (rooms lower than it) starts every block at the room's floor."""
    from panorooms3d.bench.train import training_blocks

    assert padded_shape((130, 128, 20), [64, 64, 48]) == (192, 128, 48)
    base = dict(data=str(dataset), block=[32, 32, 24], sampling="surface")  # the rooms are 32 x 27 x 22
    default = training_blocks(TrainConfig(**base)).dataset
    floor = training_blocks(TrainConfig(**base, pad_to=[32, 32, 24])).dataset
    assert len({int(default.draw(i)[1][2]) for i in range(60)}) > 1, "z padded to 32: starts 0 to 8"
    assert {int(floor.draw(i)[1][2]) for i in range(60)} == {0}
    assert [tuple(t.shape) for t in floor[0]] == [(4, 32, 32, 24), (32, 32, 24)]
    with pytest.raises(ValueError, match=r"pad_to = \[32, 0, 24\]"):
        training_blocks(TrainConfig(**base, pad_to=[32, 0, 24]))


def test_evaluation_pads_each_axis_to_its_own_multiple_with_free_space(dataset: Path) -> None:
    """``pad_to`` per axis: the room (32 x 27 x 22) padded with free space to (32, 32, 24) for (16, 16, 8), the
    model run on that and cropped back; the eight turned passes swap the x and y multiples with the room's axes."""
    from panorooms3d.bench.data import free_space_input, load_room
    from panorooms3d.bench.evaluate import forward_room
    from panorooms3d.store.dataset import Dataset

    model = build(TrainConfig(data=str(dataset), model="3dseg-t"))
    model.eval()
    x = torch.as_tensor(load_room(Dataset(dataset), Dataset(dataset).split("train")[0]).x)[None]
    padded = free_space_input((1, 32, 32, 24))
    padded[:, :, :32, :27, :22] = x
    with torch.no_grad():
        want = model(padded)[:, :, :32, :27, :22]
        assert torch.equal(forward_room(model, x, (16, 16, 8)), want)
        assert not torch.allclose(forward_room(model, x, 32), want, atol=1e-4), "z padded to 32 differs"
        turned = predict_logits(model, x[0], pad_to=(16, 32, 8), tta="d4")
    assert turned.shape == (30, 32, 27, 22) and torch.isfinite(turned).all()
    with pytest.raises(ValueError, match="one int or three"):
        forward_room(model, x, (16, 16))


def test_augment_false_draws_the_crops_as_they_lie_in_the_room(dataset: Path) -> None:
    from panorooms3d.bench.train import training_blocks
    from panorooms3d.store.dataset import Dataset

    base = dict(data=str(dataset), block=16, sampling="uniform")
    plain = training_blocks(TrainConfig(**base, augment=False)).dataset
    turned = training_blocks(TrainConfig(**base)).dataset  # the default: flips and turns
    stored = Dataset(dataset)
    moved = 0
    for i in range(12):
        uid, start, aug = plain.draw(i)
        assert aug == (False, False, 0)
        x, y = plain[i]
        # the block is the stored room's crop at its start, in the room's own orientation
        crop = stored.read_crop(uid, start, (16, 16, 16), arrays=("label",))["label"]
        assert np.array_equal(y.numpy(), encode_target(crop))
        # uniform sampling draws the same room and start either way; the default only flips and turns them
        uid_t, start_t, aug_t = turned.draw(i)
        assert (uid_t, start_t.tolist()) == (uid, start.tolist())
        xt, yt = turned[i]
        xa, ya = augment(x.numpy(), y.numpy(), *aug_t)
        assert np.array_equal(xa, xt.numpy()) and np.array_equal(ya, yt.numpy())
        moved += aug_t != (False, False, 0) and not np.array_equal(ya, y.numpy())
    assert moved >= 3


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_training_resumes_to_the_same_result(dataset: Path, tmp_path: Path) -> None:
    base = dict(data=str(dataset), model="3dseg-t", iterations=6, batch_size=1, block=16, workers=0,
                checkpoint_every=2, log_every=1)
    full = train(TrainConfig(out=str(tmp_path / "full"), **base), progress=False)
    assert full.iterations == 6 and np.isfinite(full.final_loss)
    # interrupted after 3 iterations, then resumed
    cfg = TrainConfig(out=str(tmp_path / "split"), **base)
    part = train(cfg, stop_after=3, progress=False)
    assert part.iterations == 3
    rest = train(cfg, progress=False)
    assert rest.resumed_from == 3 and rest.iterations == 6
    a, b = _state(full.checkpoint), _state(rest.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run ends with the same weights"
    assert (tmp_path / "full" / "model.pt").exists()
    log = [json.loads(line) for line in (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2, 3, 4, 5, 6]


def test_a_longer_training_continues_a_finished_shorter_one(dataset: Path, tmp_path: Path) -> None:
    base = dict(data=str(dataset), model="3dseg-t", batch_size=1, block=16, workers=0, checkpoint_every=2,
                log_every=1, schedule="constant", warmup=2, ema=0.9)
    train(TrainConfig(out=str(tmp_path / "short"), iterations=4, **base), progress=False)
    # 7 steps whose rate falls over the last 3 (steps 5-7): the first 4 run at the short training's rates
    seven = dict(base, iterations=7, cooldown=3 / 7)
    full = train(TrainConfig(out=str(tmp_path / "full"), **seven), progress=False)
    longer = TrainConfig(out=str(tmp_path / "long"), **{**seven, "log_every": 2})
    assert continue_training(tmp_path / "short", longer) == 4
    rest = train(longer, progress=False)
    assert rest.resumed_from == 4 and rest.iterations == 7
    a, b = _state(full.checkpoint), _state(rest.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a), "continued, it ends with the weights trained from nothing"
    fa = torch.load(tmp_path / "full" / "model.pt", map_location="cpu", weights_only=False)
    fb = torch.load(tmp_path / "long" / "model.pt", map_location="cpu", weights_only=False)
    fa, fb = fa.get("model", fa), fb.get("model", fb)
    assert all(torch.equal(fa[k], fb[k]) for k in fa), "and the same weight average"
    logs = [[json.loads(x) for x in (tmp_path / d / "train_log.jsonl").read_text().splitlines()]
            for d in ("full", "long")]
    kept = [(r["iteration"], r["loss"]) for r in logs[0] if r["iteration"] <= 4 or r["iteration"] in (6, 7)]
    assert kept == [(r["iteration"], r["loss"]) for r in logs[1]], "the short log, then every 2nd step and the last"
    # refused, and nothing written: a decay that starts before the short training ends, another rate, a shorter
    # run, a folder that has begun, a training that has not finished
    cases = [(dict(seven, cooldown=5 / 7), "step 4 runs at 0.8 x lr"), (dict(seven, lr=5e-4), "lr: "),
             (dict(base, iterations=3), "nothing to continue")]
    for i, (settings, message) in enumerate(cases):
        with pytest.raises(UserError, match=message):
            continue_training(tmp_path / "short", TrainConfig(out=str(tmp_path / f"no{i}"), **settings))
        assert not (tmp_path / f"no{i}").exists()
    with pytest.raises(UserError, match="has begun already"):
        continue_training(tmp_path / "short", longer)
    with pytest.raises(UserError, match="not a finished training"):
        continue_training(tmp_path / "no0", longer)


def test_training_killed_with_sigkill_resumes(dataset: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(data=str(dataset), model="3dseg-t", out=str(tmp_path / "killed"), iterations=40, batch_size=1,
                      block=16, workers=0, checkpoint_every=2, log_every=1)
    script = (f"import json; from panorooms3d.bench.train import TrainConfig, train; "
              f"train(TrainConfig(**json.loads({json.dumps(json.dumps(asdict(cfg)))})), progress=False)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    ckpt = tmp_path / "killed" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, map_location="cpu", weights_only=False)["iteration"]
    assert 0 < killed_at < 40, "the run was killed part-way"
    torch.set_num_threads(1)
    try:
        resumed = train(cfg, progress=False)
        reference = train(TrainConfig(**{**asdict(cfg), "out": str(tmp_path / "ref")}), progress=False)
    finally:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    assert resumed.resumed_from == killed_at
    a, b = _state(resumed.checkpoint), _state(reference.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_whole_room_evaluation_and_sliding_window(dataset: Path) -> None:
    model = build(TrainConfig(data=str(dataset), model="3dseg-t"))
    x = torch.randn(4, 40, 30, 20)
    one = predict_logits(model, x)
    tiled = predict_logits(model, x, max_voxels=1000, window=32, overlap=8)
    assert one.shape == tiled.shape == (30, 40, 30, 20)
    result = evaluate(model, dataset, split="test", progress=False)
    assert set(result["metrics"]) == {"aAcc", "mIoU", "mAcc", "mDice", "mFscore", "mPrecision", "mRecall"}
    assert len(result["rooms"]) == 1 and result["rooms"][0]["weight"] == 1
    assert len(result["per_class_iou"]) == 30
    assert np.asarray(result["confusion"]).sum() == result["rooms"][0]["voxels"]
    # validation keeps its rooms loaded between calls: the same scores from the kept rooms
    kept: dict = {}
    first = evaluate(model, dataset, split="test", progress=False, samples=kept)
    assert list(kept) == ["box3/Room-3"]
    again = evaluate(model, dataset, split="test", progress=False, samples=kept)
    assert first["rooms"] == again["rooms"] == result["rooms"]


def test_rooms_patterns_select_the_training_rooms(dataset: Path, tmp_path: Path) -> None:
    from panorooms3d.bench.data import select_rooms
    from panorooms3d.bench.train import training_blocks

    # the fixture's training split: box0..box2 (box3 is the test room)
    base = dict(data=str(dataset), block=16, sampling="uniform", class_weights="sqrt-inverse")
    every = training_blocks(TrainConfig(**base))
    assert sorted(every.dataset.rooms) == ["box0/Room-0", "box1/Room-1", "box2/Room-2"]
    some = training_blocks(TrainConfig(**base, rooms=["box[02]/*"]))
    assert some.dataset.rooms == ["box0/Room-0", "box2/Room-2"] and "2 train room(s)" in some.description
    # the class weights are counted over the selected rooms only
    alone = training_blocks(TrainConfig(**base, rooms=["box1/*"]))
    assert alone.dataset.rooms == ["box1/Room-1"]
    assert not torch.equal(alone.weights, every.weights)
    assert torch.equal(training_blocks(TrainConfig(**base, rooms=["box1/Room-1"])).weights, alone.weights)
    # patterns never reach beyond the split (box3 is a test room), and a pattern that matches nothing is an error
    with pytest.raises(ValueError, match=r"\['box3/\*'\] match none of the 3 rooms of the 'train' split of"):
        training_blocks(TrainConfig(**base, rooms=["box0/*", "box3/*"]))
    with pytest.raises(ValueError, match=r"rooms = \[\] selects none of the 3 rooms"):
        select_rooms(every.dataset.rooms, [])
    with pytest.raises(ValueError, match=r"a list of uid patterns"):
        select_rooms(every.dataset.rooms, "box0/*")
    with pytest.raises(ValueError, match=r"rooms = \['box0/\*'\] does not apply to the official blocks"):
        train(TrainConfig(blocks="official:" + str(tmp_path), rooms=["box0/*"], out=str(tmp_path / "r")),
              progress=False)


def test_train_command_rooms_option(dataset: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from panorooms3d.cli import cli

    out = tmp_path / "run"
    bad = CliRunner().invoke(cli, ["benchmark", "train", "--data", str(dataset), "--out", str(out), "--rooms", "nope*",
                                   "--workers", "0", "--device", "cpu"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output, bad.output
    assert "['nope*'] match none of the 3 rooms of the 'train' split of" in bad.output
    assert not out.exists() or not any(out.iterdir()), "a refused run leaves no files"
    ok = CliRunner().invoke(cli, ["benchmark", "train", "--data", str(dataset), "--out", str(out), "--rooms", "box1/*",
                                  "--rooms", "box2/*", "--iterations", "2", "--block", "16", "--workers", "0",
                                  "--device", "cpu"])
    assert ok.exit_code == 0, ok.output
    assert json.loads((out / "config.json").read_text())["rooms"] == ["box1/*", "box2/*"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_large_allocations_stay_in_the_heap_after_the_allocator_is_tuned():
    # The tuning's whole point: a freed 64 MiB activation is served again from kept pages, not faulted in anew
    # (glibc's default returns it to the kernel and the next step pays ~16,000 minor page faults for it).
    from panorooms3d.bench.train import keep_large_allocations_in_heap

    def faults_of_one_allocation() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = torch.ones(16 * 1024 * 1024)  # 64 MiB, every page written
        del t
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    assert keep_large_allocations_in_heap() is True
    # The first one or two allocations grow the heap (how many depends on its state); untuned, every one of them
    # faults its 16,384 pages in again, tuned the later ones fault none.
    assert min(faults_of_one_allocation() for _ in range(4)) < 1000


def test_cpu_amp_setting_chooses_bf16_autocast() -> None:
    from panorooms3d.bench.train import bf16_autocast, cpu_has_bf16

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert bf16_autocast(cpu, True, "off") is False  # amp is CUDA's switch
    assert bf16_autocast(cpu, False, "on") is True
    assert bf16_autocast(cpu, False, "auto") is cpu_has_bf16()
    assert bf16_autocast(cuda, True, "off") is True and bf16_autocast(cuda, False, "on") is False
    # cpu_has_bf16 is torch's own CPU feature check of AMX tiles or AVX512-BF16
    flags = set()
    if Path("/proc/cpuinfo").is_file():
        flags = {f for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
                 for f in line.split(":", 1)[1].split()}
        assert cpu_has_bf16() == bool(flags & {"amx_bf16", "avx512_bf16"}), sorted(flags & {"amx_bf16", "avx512_bf16"})
    # what the benchmark scripts record beside their timings: the same flags and check
    from panorooms3d.bench.train import cpu_description

    described = cpu_description()
    assert described["cpu_has_bf16"] is cpu_has_bf16() and described["cpu"]
    assert set(described["bf16_flags"]) == flags & {"amx_bf16", "amx_tile", "avx512_bf16"}
    with pytest.raises(ValueError, match="cpu_amp = 'yes'.*off, on, auto"):
        bf16_autocast(cpu, True, "yes")


def test_cpu_amp_on_trains_under_bf16_autocast(dataset: Path, tmp_path: Path) -> None:
    base = dict(data=str(dataset), model="3dseg-t", iterations=3, batch_size=1, block=16, workers=0,
                checkpoint_every=10, log_every=1, device="cpu")
    runs = {name: train(TrainConfig(out=str(tmp_path / name), cpu_amp=amp, **base), progress=False)
            for name, amp in (("fp32", "off"), ("fp32-again", "off"), ("bf16", "on"))}
    fp32, again, bf16 = (_state(runs[n].checkpoint) for n in ("fp32", "fp32-again", "bf16"))
    assert all(torch.equal(fp32[k], again[k]) for k in fp32)
    # the same blocks and initialisation, other arithmetic: the weights move apart, but not far
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32 if fp32[k].is_floating_point())
    assert all(torch.allclose(fp32[k], bf16[k], atol=0.05) for k in fp32 if fp32[k].is_floating_point())
    for name, flag in (("fp32", False), ("bf16", True)):
        log = [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
        assert [r["bf16"] for r in log] == [flag] * 3
    # a bad value is refused before the run folder is written
    with pytest.raises(ValueError, match="cpu_amp = 'bf16'"):
        train(TrainConfig(out=str(tmp_path / "bad"), cpu_amp="bf16", **base), progress=False)
    assert not (tmp_path / "bad").exists()


def test_a_resumed_run_keeps_the_precision_it_began_in(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """cpu_amp = auto is decided by the machine that starts a run: resumed on a CPU of the other kind it goes on
    in the precision its checkpoint records; an explicit setting that contradicts the checkpoint is refused."""
    import panorooms3d.bench.train as train_module

    base = dict(data=str(dataset), model="3dseg-t", iterations=4, batch_size=1, block=16, workers=0,
                checkpoint_every=10, log_every=1, device="cpu")
    whole = {amp: _state(train(TrainConfig(out=str(tmp_path / f"whole-{amp}"), cpu_amp=amp, **base),
                               progress=False).checkpoint) for amp in ("off", "on")}
    for began, other_machine in (("off", True), ("on", False)):
        out = tmp_path / f"began-{began}"
        train(TrainConfig(out=str(out), cpu_amp=began, **base), stop_after=2, progress=False)
        # the other kind of machine: auto would choose the other precision there
        monkeypatch.setattr(train_module, "cpu_has_bf16", lambda flag=other_machine: flag)
        assert train_module.bf16_autocast(torch.device("cpu"), False, "auto") is other_machine
        result = train(TrainConfig(out=str(out), cpu_amp="auto", **base), progress=False)
        monkeypatch.undo()
        assert (result.resumed_from, result.iterations) == (2, 4)
        log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        assert [r["bf16"] for r in log] == [began == "on"] * 4
        # bit for bit the run trained in one go in its first precision
        state = _state(result.checkpoint)
        assert all(torch.equal(state[k], whole[began][k]) for k in state)
        assert torch.load(out / "model.pt", weights_only=True)["bf16"] is (began == "on")
    # an explicit setting against the checkpoint: refused, naming it, and the run is left as it was
    out = tmp_path / "explicit"
    train(TrainConfig(out=str(out), cpu_amp="on", **base), stop_after=2, progress=False)
    before = (out / CHECKPOINT).read_bytes(), (out / "train_log.jsonl").read_text()
    with pytest.raises(UserError, match=r"last\.pt: this run began under bf16 autocast and this call asks "
                                         r"float32 \(cpu_amp = 'off'.*'on'"):
        train(TrainConfig(out=str(out), cpu_amp="off", **base), progress=False)
    assert ((out / CHECKPOINT).read_bytes(), (out / "train_log.jsonl").read_text()) == before


def test_weight_average_is_the_moving_average_of_the_trained_weights(dataset: Path, tmp_path: Path) -> None:
    """ema: the average follows avg_t = d_t avg_(t-1) + (1 - d_t) w_t with d_t = min(ema, (1 + t) / (10 + t)) over
    the raw weights w_t the optimiser makes (which the average does not change); model.pt holds it; a resumed run
    ends with the same average bit for bit."""
    decay = 0.3  # (1 + t) / (10 + t) is below it for t <= 2 and above it from t = 3
    base = dict(data=str(dataset), model="3dseg-t", iterations=5, batch_size=1, block=16, workers=0,
                checkpoint_every=10, log_every=1, device="cpu")
    plain = train(TrainConfig(out=str(tmp_path / "plain"), **base), progress=False)
    whole = train(TrainConfig(out=str(tmp_path / "whole"), ema=decay, **base), progress=False)
    # step by step: the raw weights after each step, from the checkpoint of a run resumed one step at a time
    cfg = TrainConfig(out=str(tmp_path / "steps"), ema=decay, **base)
    train(cfg, stop_after=0, progress=False)  # the initial weights, as checkpoint 0
    raw = [_state(tmp_path / "steps" / CHECKPOINT)]
    for _ in range(5):
        train(cfg, stop_after=1, progress=False)
        raw.append(_state(tmp_path / "steps" / CHECKPOINT))
    expected = moving_average(raw, decay)
    stepped = torch.load(tmp_path / "steps" / CHECKPOINT, weights_only=False)
    whole_ckpt = torch.load(whole.checkpoint, weights_only=False)
    assert all(torch.equal(stepped["ema"][k], whole_ckpt["ema"][k]) for k in expected), "resumed: the same average"
    assert all(torch.allclose(whole_ckpt["ema"][k].float(), v.float(), atol=1e-6) for k, v in expected.items())
    assert not all(torch.equal(whole_ckpt["ema"][k], raw[5][k]) for k in expected), "the average is not the weights"
    final = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(final[k], whole_ckpt["ema"][k]) for k in final), "model.pt holds the average"
    plain_state = _state(plain.checkpoint)
    assert all(torch.equal(plain_state[k], whole_ckpt["model"][k]) for k in plain_state), "training is unchanged"
    # ema_ramp: d_t = min(ema, (1 + t) / (ema_ramp + t)); with 2 the decay 0.7 is reached at t = 2 (10: at t = 21)
    ramped = torch.load(train(TrainConfig(out=str(tmp_path / "ramp2"), ema=0.7, ema_ramp=2.0, **base),
                              progress=False).checkpoint, weights_only=False)
    expected = moving_average(raw, 0.7, ramp=2.0)
    assert all(torch.allclose(ramped["ema"][k].float(), v.float(), atol=1e-6) for k, v in expected.items())
    slow = moving_average(raw, 0.7)  # the default ramp averages otherwise: the test tells the two apart
    assert not all(torch.allclose(slow[k].float(), v.float(), atol=1e-6) for k, v in expected.items())
    assert all(torch.equal(ramped["model"][k], whole_ckpt["model"][k]) for k in plain_state), "training is unchanged"


def test_weight_average_settings_are_checked(dataset: Path, tmp_path: Path) -> None:
    base = dict(data=str(dataset), model="3dseg-t", iterations=2, batch_size=1, block=16, workers=0, device="cpu")
    with pytest.raises(ValueError, match=r"ema = 1\.0: the decay of the weight average must be in \(0, 1\)"):
        train(TrainConfig(out=str(tmp_path / "bad"), ema=1.0, **base), progress=False)
    assert not (tmp_path / "bad").exists(), "refused before the run folder is written"
    with pytest.raises(ValueError, match=r"ema_ramp = 0\.5: the ramp of the weight average's decay.*>= 1"):
        train(TrainConfig(out=str(tmp_path / "bad"), ema=0.9, ema_ramp=0.5, **base), progress=False)
    assert not (tmp_path / "bad").exists(), "refused before the run folder is written"
    # a run begun without an average cannot go on with one: it is refused, its checkpoint left as it was
    out = tmp_path / "began-plain"
    train(TrainConfig(out=str(out), **base), stop_after=1, progress=False)
    before = (out / CHECKPOINT).read_bytes()
    with pytest.raises(UserError, match=r"last\.pt was written without a weight average \(ema\).*ema = 0\.9"):
        train(TrainConfig(out=str(out), ema=0.9, **base), progress=False)
    assert (out / CHECKPOINT).read_bytes() == before


def test_cooldown_lowers_the_rate_linearly_to_zero_over_the_last_steps(dataset: Path, tmp_path: Path) -> None:
    """cooldown = 0.4 of 10 steps after a 2-step warm-up: steps 0-5 at the warm-up / constant rate, steps 6-9 at
    4/4, 3/4, 2/4, 1/4 of it (written out here, not from lr_factor); the steps before the decay are the constant
    run's bit for bit; a cooldown of 1 or one reaching into the warm-up is refused before the run folder is written."""
    base = dict(data=str(dataset), model="3dseg-t", iterations=10, batch_size=1, block=16, workers=0, lr=1e-3,
                warmup=2, checkpoint_every=100, log_every=1, device="cpu")
    train(TrainConfig(out=str(tmp_path / "cool"), cooldown=0.4, **base), progress=False)
    log = [json.loads(line) for line in (tmp_path / "cool" / "train_log.jsonl").read_text().splitlines()]
    # the log's lr after iteration k is the rate of step k (0-based), the next one
    assert [r["iteration"] for r in log] == list(range(1, 11))
    assert [r["lr"] for r in log] == pytest.approx([1e-3 * f for f in (0.505, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0.0)])
    # before its decay the run is the constant one: 6 steps of each give the same weights
    train(TrainConfig(out=str(tmp_path / "cool6"), cooldown=0.4, **base), stop_after=6, progress=False)
    train(TrainConfig(out=str(tmp_path / "const6"), **base), stop_after=6, progress=False)
    cool, const = _state(tmp_path / "cool6" / CHECKPOINT), _state(tmp_path / "const6" / CHECKPOINT)
    assert all(torch.equal(cool[k], const[k]) for k in const)
    for cooldown, text in ((1.0, r"cooldown = 1\.0: .*must be a number in \[0, 1\)"),
                           (0.9, r"cooldown = 0\.9 of 10 iterations starts inside the 2-step warm-up")):
        with pytest.raises(ValueError, match=text):
            train(TrainConfig(out=str(tmp_path / "bad"), cooldown=cooldown, **base), progress=False)
        assert not (tmp_path / "bad").exists(), "refused before the run folder is written"


def test_block_kd_loss_is_the_tempered_kl_divergence() -> None:
    """tau^2 KL(softmax(t / tau) || softmax(s / tau)), summed over classes and averaged over voxels, computed here in
    float64 numpy; zero when the student is the teacher; a gradient step moves the student toward the teacher."""
    from panorooms3d.bench.train import block_kd_loss

    gen = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(2, 5, 3, 4, 2, generator=gen), 3 * torch.randn(2, 5, 3, 4, 2, generator=gen)
    tau = 2.0

    def softmax(a: np.ndarray) -> np.ndarray:
        e = np.exp(a - a.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p, q = softmax(teacher.double().numpy() / tau), softmax(student.double().numpy() / tau)
    want = tau * tau * (p * np.log(p / q)).sum(axis=1).mean()
    assert float(block_kd_loss(student, teacher, tau)) == pytest.approx(want, rel=1e-5)
    assert float(block_kd_loss(teacher, teacher, tau)) == pytest.approx(0.0, abs=1e-6)
    s = student.clone().requires_grad_(True)
    block_kd_loss(s, teacher, tau).backward()
    assert s.grad is not None
    assert float(block_kd_loss(s.detach() - 0.5 * s.grad, teacher, tau)) < float(block_kd_loss(student, teacher, tau))


def test_a_block_teacher_adds_its_kd_term_to_every_block(dataset: Path, tmp_path: Path) -> None:
    """``block_teacher``: the first step's logged loss is CE of the student on block 0 plus weight x the KD term of
    the teacher's logits on the same (augmented) block, recomputed here from the two models; the KD term is logged
    and falls as the student learns; a missing teacher is a clean error before the run folder is written."""
    import torch.nn.functional as F

    from panorooms3d.bench.train import block_kd_loss, training_blocks

    base = dict(data=str(dataset), batch_size=1, block=16, workers=0, device="cpu", log_every=1)
    teacher_run = tmp_path / "teacher"
    train(TrainConfig(out=str(teacher_run), model="3dseg-t", iterations=20, lr=2e-3, sampling="surface",
                      model_overrides={"drop_path_rate": 0.0}, **base), progress=False)
    cfg = TrainConfig(out=str(tmp_path / "student"), model="3dseg-t", iterations=30, lr=2e-3, sampling="surface",
                      block_teacher=str(teacher_run / "model.pt"), block_teacher_weight=2.5, block_teacher_tau=2.0,
                      **base)
    train(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "student" / "train_log.jsonl").read_text().splitlines()]
    # the first step, recomputed: the student's initial weights, the run's seeding, the teacher's weights
    x, y = training_blocks(cfg).dataset[0]
    student = build(cfg).train()
    teacher = build(TrainConfig(model="3dseg-t", model_overrides={"drop_path_rate": 0.0}))
    teacher.load_state_dict(torch.load(teacher_run / "model.pt", weights_only=True)["model"])
    teacher.eval()
    torch.manual_seed(cfg.seed * 1_000_003)
    s_logits = student(x[None])
    with torch.no_grad():
        t_logits = teacher(x[None])
    kd = float(block_kd_loss(s_logits.detach(), t_logits, 2.0))
    assert log[0]["kd"] == pytest.approx(kd, rel=1e-4)
    assert log[0]["loss"] == pytest.approx(float(F.cross_entropy(s_logits.detach(), y[None])) + 2.5 * kd, rel=1e-4)
    assert np.mean([r["kd"] for r in log[-5:]]) < 0.5 * np.mean([r["kd"] for r in log[:5]])
    saved = torch.load(tmp_path / "student" / "model.pt", weights_only=False)["config"]
    assert saved["block_teacher"] == str(teacher_run / "model.pt")

    with pytest.raises(UserError, match=r"block_teacher: no checkpoint at .*nowhere\.pt; train the teacher first"):
        train(TrainConfig(out=str(tmp_path / "orphan"), model="3dseg-t", iterations=2,
                          block_teacher=str(tmp_path / "nowhere.pt"), **base), progress=False)
    with pytest.raises(UserError, match=r"block_teacher_tau must be > 0, got 0"):
        train(TrainConfig(out=str(tmp_path / "orphan"), model="3dseg-t", iterations=2,
                          block_teacher=str(teacher_run / "model.pt"), block_teacher_tau=0, **base), progress=False)
    assert not (tmp_path / "orphan").exists()


@pytest.mark.parametrize("bf16", [False, True])
def test_a_diverged_step_names_the_iteration_and_what_to_change(bf16: bool) -> None:
    """A non-finite loss saves (``on_diverge``) and stops with the iteration; under bf16 autocast it also names
    float32, which is what cured the CPU track's SparseConv on an AMD CPU with AVX512-BF16."""
    from panorooms3d.bench.train import optimisation_step

    w = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([w], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    saved = []
    message = r"loss became nan at iteration 7; " + (r"train in float32 \(cpu_amp = 'off'.*or lower the learning rate"
                                                     if bf16 else r"lower the learning rate$")
    with pytest.raises(FloatingPointError, match=message):
        optimisation_step((w * float("nan")).sum(), optimizer, scheduler, on_diverge=lambda: saved.append(1),
                          where="iteration 7", bf16=bf16)
    assert saved == [1]


def test_train_command_takes_every_block_training_setting(dataset: Path, tmp_path: Path) -> None:
    # The CPU track's [train] from the command line: each option reaches the run's config.json as the suite would
    # write it, and a malformed shape or a missing teacher is refused before any file is written.
    from click.testing import CliRunner

    from panorooms3d.bench import commands, data, train
    from panorooms3d.cli import cli

    assert (commands.SCHEDULES, commands.SAMPLINGS, commands.CLASS_WEIGHTS, commands.CPU_AMP) == (
        train.SCHEDULES, data.SAMPLINGS, train.CLASS_WEIGHTS, train.CPU_AMP)
    base = ["benchmark", "train", "--data", str(dataset), "--workers", "0", "--device", "cpu", "--iterations", "2"]
    out = tmp_path / "run"
    ok = CliRunner().invoke(cli, [*base, "--out", str(out), "--block", "16x16x8", "--batch-size", "1", "--lr", "2e-3",
                                  "--warmup", "1", "--schedule", "cosine", "--sampling", "surface", "--no-augment",
                                  "--class-weights", "sqrt-inverse", "--dice-weight", "0.5", "--decoder-lr-mult", "10",
                                  "--ema", "0.99", "--ema-ramp", "2", "--cpu-amp", "off", "--threads", "1",
                                  "--cooldown", "0.5", "--adam-beta2", "0.95"])
    assert ok.exit_code == 0, ok.output
    cfg = json.loads((out / "config.json").read_text())
    assert {k: cfg[k] for k in ("block", "warmup", "schedule", "sampling", "augment", "class_weights", "dice_weight",
                                "decoder_lr_mult", "ema", "ema_ramp", "cpu_amp", "threads", "block_teacher",
                                "cooldown", "adam_beta2")} == {
        "block": [16, 16, 8], "warmup": 1, "schedule": "cosine", "sampling": "surface", "augment": False,
        "class_weights": "sqrt-inverse", "dice_weight": 0.5, "decoder_lr_mult": 10.0, "ema": 0.99, "ema_ramp": 2.0,
        "cpu_amp": "off", "threads": 1, "block_teacher": None, "cooldown": 0.5, "adam_beta2": 0.95}
    # the optimiser the run stepped with has it (its state in the checkpoint)
    state = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["optimizer"]
    assert {tuple(g["betas"]) for g in state["param_groups"]} == {(0.9, 0.95)}

    taught = tmp_path / "taught"
    r = CliRunner().invoke(cli, [*base, "--out", str(taught), "--block", "16", "--block-teacher", str(out / "model.pt"),
                                 "--block-teacher-weight", "0.5", "--block-teacher-tau", "2"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((taught / "config.json").read_text())
    assert (cfg["block"], cfg["block_teacher"], cfg["block_teacher_weight"], cfg["block_teacher_tau"]) == (
        16, str(out / "model.pt"), 0.5, 2.0)

    # a negative Dice weight from a suite or the API is refused before the run folder is made
    with pytest.raises(ValueError, match=r"dice_weight = -1.0: the weight of the Dice term must be a number >= 0"):
        train.train(train.TrainConfig(data=str(dataset), out=str(tmp_path / "neg"), block=16, iterations=1,
                                      workers=0, device="cpu", dice_weight=-1.0), progress=False)
    assert not (tmp_path / "neg").exists()

    for args, code, says in ((["--block", "64x32"], 2, "give one edge (e.g. 64) or three"),
                             (["--block", "4"], 2, "each at least 8 voxels"),
                             (["--block-teacher", str(tmp_path / "none.pt")], 1, "none.pt")):
        bad = tmp_path / "bad"
        r = CliRunner().invoke(cli, [*base, "--out", str(bad), *args])
        assert r.exit_code == code and says in r.output and "Traceback" not in r.output, r.output
        assert not bad.exists() or not any(bad.iterdir()), "a refused run leaves no files"
