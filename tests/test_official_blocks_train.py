"""Block training from the official sparse block release (``TrainConfig.blocks = "official:<folder>"``).

The release is written here with ``np.savez`` from the format alone (paper.md, the official
``train.py``): a folder ``train/`` (and ``val/``) of ``.npz`` blocks, each with ``targetsdf128loc``
(N, 3) voxel indices, ``targetsdf128`` (N,) the network's channel 0 (-3 * sdf), ``targetsdf128color``
(N, 3) colour in [0, 1] and ``semanticlabel`` (N,) paper30 classes, in float16 / float32 / uint8 /
int64 as a release may hold them. Blocks have a 16-voxel edge (the release: 128) to keep training
fast on a CPU.

Checked against an independent re-derivation: the official ``collate`` rebuilt step by step in
torch (dense grids filled with -3 / 0 / 0 in the file's dtype, ``colour * 2 - 1`` in the colour's
dtype, ``torch.cat`` of sdf and colour), compared with what the real ``train()`` hands the model
(a forward pre-hook) and the loss (the real ``cross_entropy``, observed): every sample is one
training block exactly, every block once per epoch, no augmentation.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import panorooms3d.bench.train as train_module
from panorooms3d.bench.commands import benchmark
from panorooms3d.bench.train import TrainConfig, train
from panorooms3d.store.dataset import DatasetError

EDGE = 16
ITERATIONS = 6  # two epochs of the three training blocks
TRAIN_BLOCKS = ("blockA.npz", "blockB.npz", "blockC.npz")


def _write_block(path: Path, seed: int, *, edge: int = EDGE, n: int = 600, sdf_dtype=np.float32,
                 colour_dtype=np.float32, label_dtype=np.int64) -> None:
    """One official block: ``n`` distinct voxels of an ``edge``^3 block (one of them the far corner)."""
    rng = np.random.default_rng(seed)
    # distinct voxels, the first the far corner: the block reaches its last voxel, its edge shows in the data
    flat = np.concatenate([[edge**3 - 1], rng.choice(edge**3 - 1, size=n - 1, replace=False)])
    loc = np.stack(np.unravel_index(flat, (edge,) * 3), axis=-1).astype(np.int32)
    sdf = (-3.0 * rng.uniform(-1.3, 1.0, n)).astype(sdf_dtype)  # -3 * sdf, also beyond [-3, 3]
    colour = rng.uniform(0, 1, (n, 3)).astype(colour_dtype)
    label = rng.integers(0, 30, n).astype(label_dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, targetsdf128loc=loc, targetsdf128=sdf, targetsdf128color=colour, semanticlabel=label)


def _official_collate(path: Path, edge: int = EDGE) -> tuple[torch.Tensor, torch.Tensor]:
    """The official trainer's ``collate`` of one block, written out in torch (independent of the reader)."""
    with np.load(path) as d:
        loc = torch.from_numpy(d["targetsdf128loc"].astype(np.int64))
        sdf = torch.from_numpy(d["targetsdf128"])
        colour = torch.from_numpy(d["targetsdf128color"])
        label = torch.from_numpy(d["semanticlabel"])
    i, j, k = loc[:, 0], loc[:, 1], loc[:, 2]
    dense_sdf = torch.full((edge,) * 3, -3, dtype=sdf.dtype)
    dense_sdf[i, j, k] = sdf
    dense_colour = torch.zeros((edge,) * 3 + (3,), dtype=colour.dtype)
    dense_colour[i, j, k] = colour
    dense_label = torch.zeros((edge,) * 3, dtype=label.dtype)
    dense_label[i, j, k] = label
    colour_in = dense_colour.permute(3, 0, 1, 2) * 2 - 1
    x = torch.cat([dense_sdf.unsqueeze(0), colour_in], dim=0)  # torch promotes float16 + float32 to float32
    assert x.dtype == torch.float32
    return x, dense_label.long()


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """An official block release: train/ with three blocks (float16 sdf, uint8 labels, float16 colour), val/ with one."""
    root = tmp_path_factory.mktemp("release")
    _write_block(root / "train" / "blockA.npz", 1)
    _write_block(root / "train" / "blockB.npz", 2, sdf_dtype=np.float16, label_dtype=np.uint8)
    _write_block(root / "train" / "blockC.npz", 3, colour_dtype=np.float16)
    _write_block(root / "val" / "blockV.npz", 4)
    return root


def _config(release: Path, out: Path, **kw) -> TrainConfig:
    base = dict(blocks=f"official:{release}", model="3dseg-t", out=str(out), iterations=ITERATIONS, batch_size=1,
                block=EDGE, workers=0, checkpoint_every=2, log_every=1, device="cpu", amp=False, seed=3,
                model_overrides={"drop_path_rate": 0.0})
    base.update(kw)
    return TrainConfig(**base)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.fixture(scope="module")
def observed_run(release: Path, tmp_path_factory) -> tuple[Path, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A full run from the release, recording every (input, target) the model and the loss receive."""
    out = tmp_path_factory.mktemp("official-run") / "run"
    inputs: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    build, cross_entropy = train_module.build, train_module.voxel_cross_entropy

    def observed_build(cfg):
        model = build(cfg)
        model.register_forward_pre_hook(lambda m, inp: inputs.append(inp[0].detach().clone()))
        return model

    def observed_loss(logits, target, *args, **kwargs):
        targets.append(target.detach().clone())
        return cross_entropy(logits, target, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "build", observed_build)
        mp.setattr(train_module, "voxel_cross_entropy", observed_loss)
        mp.delenv("WORLD_SIZE", raising=False)
        mp.delenv("RANK", raising=False)
        result = train(_config(release, out), progress=False)
    assert result.iterations == ITERATIONS and np.isfinite(result.final_loss)
    samples = [(x[b], y[b]) for x, y in zip(inputs, targets, strict=True) for b in range(x.shape[0])]
    return out, samples


def test_trainer_sees_the_official_collate_of_every_block_once_per_epoch(release, observed_run):
    out, samples = observed_run
    assert len(samples) == ITERATIONS
    reference = {name: _official_collate(release / "train" / name) for name in TRAIN_BLOCKS}
    val_x, _ = _official_collate(release / "val" / "blockV.npz")
    order = []
    for x, y in samples:
        assert x.shape == (4, EDGE, EDGE, EDGE) and x.dtype == torch.float32 and y.dtype == torch.int64
        matches = [n for n, (rx, ry) in reference.items() if torch.equal(x, rx) and torch.equal(y, ry)]
        assert len(matches) == 1, "each input and target is exactly one training block (no flip, no turn)"
        assert not torch.equal(x, val_x), "val/ blocks are not trained on"
        order.append(matches[0])
    assert sorted(order[:3]) == sorted(order[3:]) == sorted(TRAIN_BLOCKS), f"every block once per epoch: {order}"
    # the defaults the official collate fills in, and its colour arithmetic in float16, reached the model
    x_b, y_b = reference["blockB.npz"]
    assert (x_b[0] == -3).sum() > 0 and (y_b == 0).sum() > 0
    with np.load(release / "train" / "blockC.npz") as d:
        c16 = d["targetsdf128color"]
    loc = np.load(release / "train" / "blockC.npz")["targetsdf128loc"].astype(np.int64)
    x_c = reference["blockC.npz"][0]
    got = x_c[1:, loc[:, 0], loc[:, 1], loc[:, 2]].T.numpy()
    assert np.array_equal(got, (c16 * np.float16(2) - np.float16(1)).astype(np.float32))
    assert not np.array_equal(got, c16.astype(np.float32) * 2 - 1), "float16 arithmetic differs from float32 here"
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == list(range(1, ITERATIONS + 1))
    assert json.loads((out / "config.json").read_text())["blocks"] == f"official:{release}"


def test_official_block_run_resumes_to_the_same_weights(release, observed_run, tmp_path):
    out_ref, _ = observed_run
    cfg = _config(release, tmp_path / "split")
    part = train(cfg, stop_after=4, progress=False)
    assert part.iterations == 4
    rest = train(cfg, progress=False)
    assert rest.resumed_from == 4 and rest.iterations == ITERATIONS
    a, b = _weights(rest.checkpoint), _weights(out_ref / "checkpoints" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a), "stopped at 4 + resumed ends where the uninterrupted run does"
    other = train(_config(release, tmp_path / "seed", seed=4, iterations=3), progress=False)
    assert not all(torch.equal(a[k], v) for k, v in _weights(other.checkpoint).items())


def test_validation_uses_the_dataset_val_split(release, tmp_path):
    from bench_rooms import make_dataset

    uids = [f"box{i}/Room-{i}" for i in range(2)]
    data = make_dataset(tmp_path / "data", n_rooms=2, splits={"train": uids[:1], "val": uids[1:], "test": []})
    out = tmp_path / "val-run"
    train(_config(release, out, data=str(data), iterations=2, val_every=2), progress=False)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    val = [r for r in log if "val_mIoU" in r]
    assert len(val) == 1 and val[0]["iteration"] == 2 and np.isfinite(val[0]["val_mIoU"])
    with pytest.raises(ValueError, match=r"val_every = 2 .*data is not set"):
        train(_config(release, tmp_path / "noval", val_every=2), progress=False)
    assert not (tmp_path / "noval").exists(), "refused before the run folder is made"


def test_settings_that_official_blocks_cannot_honour_are_refused(release, tmp_path):
    for kw, pattern in [({"sampling": "surface"}, r"sampling = 'surface'"),
                        ({"class_weights": "inverse"}, r"class_weights = 'inverse'"),
                        ({"labelled_fraction": 0.5}, r"labelled_fraction = 0\.5"),
                        ({"class_set": "nyu40"}, r"class_set = 'nyu40'"),
                        ({"block": [EDGE, EDGE, 8]}, r"cubes"),
                        ({"blocks": "official:"}, r"name the folder"),
                        ({"blocks": "nosuch:x"}, r"unknown blocks 'nosuch:x'")]:
        with pytest.raises(ValueError, match=pattern):
            train(_config(release, tmp_path / "r", **kw), progress=False)
    with pytest.raises(ValueError, match=r"no dataset to crop blocks from"):
        train(_config(release, tmp_path / "r", blocks="crops"), progress=False)
    with pytest.raises(DatasetError, match=r"outside a 8\^3 block.*set block to their edge"):
        train(_config(release, tmp_path / "r", block=8), progress=False)
    assert not (tmp_path / "r").exists()


def _cli(args: list[str]):
    return CliRunner().invoke(benchmark, ["train", *args], catch_exceptions=False)


def test_bad_block_folders_give_one_line_errors(release, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    np.savez(wrong / "room.npz", sdf128=np.ones((4, 4, 4), np.float32))
    big_first = tmp_path / "bigfirst"
    _write_block(big_first / "a.npz", 5, edge=2 * EDGE)
    _write_block(big_first / "b.npz", 6)
    cases = [
        (tmp_path / "nope", [r"official block folder not found: .*nope", r"train/\*\.npz"]),
        (empty, [r"no official block files \(\*\.npz\) in .*empty", r"targetsdf128loc"]),
        (wrong, [r"wrong/room\.npz: missing \['targetsdf128loc'", r"not an official block file"]),
        (big_first, [r"bigfirst/a\.npz: targetsdf128loc reaches voxel 31, outside a 16\^3 block",
                     r"set block to their edge \(the official release: 128\)"]),
    ]
    for folder, patterns in cases:
        out = tmp_path / f"out-{folder.name}"
        r = _cli(["--blocks", f"official:{folder}", "--out", str(out), "--block", str(EDGE), "--iterations", "2",
                  "--workers", "0", "--device", "cpu"])
        assert r.exit_code == 1, r.output
        assert "Traceback" not in r.output and r.output.startswith("Error: "), r.output
        for p in patterns:
            assert re.search(p, r.output), (p, r.output)
        assert not out.exists(), "a command that fails early leaves nothing"
    r = _cli(["--blocks", "official:", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "use crops or official:DIR" in r.output
    r = _cli(["--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "--blocks crops needs --data" in r.output and "official:DIR" in r.output
    r = _cli(["--blocks", f"official:{release}", "--val-every", "2", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "--val-every 2 needs --data" in r.output


def test_mixed_block_sizes_fail_naming_the_file_even_from_a_worker(tmp_path):
    mixed = tmp_path / "mixed"
    _write_block(mixed / "a.npz", 7)
    _write_block(mixed / "b.npz", 8)
    _write_block(mixed / "c.npz", 9, edge=2 * EDGE)  # drawn within the first epoch
    out = tmp_path / "out"
    r = _cli(["--blocks", f"official:{mixed}", "--out", str(out), "--block", str(EDGE), "--iterations", "3",
              "--batch-size", "1", "--workers", "1", "--device", "cpu"])
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and "DataLoader worker" not in r.output, r.output
    assert re.search(r"^Error: .*mixed/c\.npz: targetsdf128loc reaches voxel 31, outside a 16\^3 block; the blocks "
                     r"of .*mixed are larger than block = 16", r.output, re.M), "the error starts its own line"


def test_the_summary_line_is_printed_by_rank_zero_only(release, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = ["--blocks", f"official:{release}", "--block", str(EDGE), "--iterations", "1", "--batch-size", "1",
            "--workers", "0", "--device", "cpu"]
    monkeypatch.setenv("RANK", "1")  # a second rank: it trains, and neither writes nor prints the summary
    r = _cli([*args, "--out", str(tmp_path / "rank1")])
    assert r.exit_code == 0, r.output
    assert "trained" not in r.output
    monkeypatch.setenv("RANK", "0")
    r = _cli([*args, "--out", str(tmp_path / "rank0")])
    assert r.exit_code == 0, r.output
    assert r.output.count("trained 3dseg-t: 1 iterations") == 1


@pytest.mark.slow
def test_torchrun_prints_one_summary(release, tmp_path):
    """The real ``torchrun --nproc_per_node 2 panorooms3d benchmark train``: one summary line, not two."""
    exe = Path(sys.executable).with_name("torchrun")
    launcher = [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]
    cli = Path(sys.executable).with_name("panorooms3d")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    proc = subprocess.run([*launcher, "--standalone", "--nproc_per_node", "2", str(cli), "benchmark", "train",
                           "--blocks", f"official:{release}", "--block", str(EDGE), "--iterations", "2",
                           "--batch-size", "1", "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "ddp")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("trained 3dseg-t: 2 iterations") == 1, proc.stdout
