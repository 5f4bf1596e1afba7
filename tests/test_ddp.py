"""DDP on CPU: real ``torchrun --standalone --nproc_per_node 2`` (gloo) of the real training loop.

Checked against independent truth, not against the index formula in the code:
- the two ranks see different blocks, and together, step by step, exactly the blocks a single
  process with the doubled batch sees (digests of the model's inputs, observed by tests/ddp_train.py);
- after N steps the DDP weights equal that single process's weights (float tolerance: gloo
  averages two per-rank means, one process takes one mean), and differ from a single process with
  the per-rank batch (so the comparison can tell);
- only rank 0 writes in the run folder (a Python audit hook on every open-for-write, rename and
  remove of each rank), one log line per iteration and one TensorBoard event file;
- a DDP run killed with SIGKILL (agent and both workers, at a fixed iteration) resumes from its last
  checkpoint and ends with exactly the weights of an uninterrupted DDP run.

The model is 3dseg-t without stochastic depth (drop_path_rate 0): with it, the per-sample drop masks
come from per-rank random streams, so DDP and one process drop different branches (same
distribution, different draws) and cannot be compared weight for weight.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from bench_rooms import make_dataset

import panorooms3d.bench.train as train_module
from panorooms3d.bench.train import TrainConfig, train

TESTS = Path(__file__).parent
ITERATIONS = 8
KILL_AT = 5  # rank 1 kills the job as iteration 5 (0-based) starts: checkpoint 4 is complete by then


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def _config(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), model="3dseg-t", out=str(out), iterations=ITERATIONS, batch_size=1, block=16,
                workers=0, checkpoint_every=2, log_every=1, device="cpu", amp=False, seed=5,
                model_overrides={"drop_path_rate": 0.0})
    base.update(kw)
    return TrainConfig(**base)


def _launch(config: TrainConfig, trace: Path, *, wait: bool = True, kill_at: int | None = None) -> subprocess.Popen:
    """torchrun 2 CPU ranks of tests/ddp_train.py on ``config`` (rank 1 kills the job at ``kill_at``)."""
    cfg_file = trace.with_suffix(".config.json")
    cfg_file.write_text(json.dumps(asdict(config)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    cmd = [*_torchrun(), "--standalone", "--nproc_per_node", "2", str(TESTS / "ddp_train.py"), str(cfg_file),
           str(trace), *([str(kill_at)] if kill_at is not None else [])]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    if wait:
        output = _communicate(proc)
        assert proc.returncode == 0, f"torchrun failed:\n{output[-4000:]}"
    return proc


def _communicate(proc: subprocess.Popen, timeout: float = 900) -> str:
    """Wait for torchrun; on a timeout kill it and its workers (each runs in its own session)."""
    from panorooms3d.doctor import _kill_tree

    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        proc.communicate()
        raise


def _trace(trace: Path) -> tuple[dict, dict]:
    return tuple(json.loads((trace / f"rank{r}.json").read_text()) for r in (0, 1))


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]


def _single(config: TrainConfig) -> tuple[dict, list[list[str]]]:
    """Train in this process (WORLD_SIZE unset), recording the input blocks as the driver does."""
    import hashlib

    samples: list[list[str]] = []
    build = train_module.build

    def observed(cfg):
        model = build(cfg)
        model.register_forward_pre_hook(lambda m, inp: samples.append(
            [hashlib.sha1(inp[0][i].detach().contiguous().numpy().tobytes()).hexdigest()[:16]
             for i in range(inp[0].shape[0])]))
        return model

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "build", observed)
        mp.delenv("WORLD_SIZE", raising=False)
        mp.delenv("RANK", raising=False)
        torch.set_num_threads(1)
        try:
            train(config, progress=False)
        finally:
            torch.set_num_threads(max(1, os.cpu_count() or 1))
    return _weights(Path(config.out)), samples


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ddp-data"))


@pytest.fixture(scope="module")
def ddp_run(dataset: Path, tmp_path_factory) -> tuple[Path, dict, dict]:
    root = tmp_path_factory.mktemp("ddp")
    out = root / "run"
    _launch(_config(dataset, out), root / "trace")
    return out, *_trace(root / "trace")


@pytest.fixture(scope="module")
def single2(dataset: Path, tmp_path_factory) -> tuple[dict, list[list[str]]]:
    """One process, batch 2 = the two ranks' batches together."""
    return _single(_config(dataset, tmp_path_factory.mktemp("single") / "run", batch_size=2))


def test_ranks_draw_different_blocks_that_make_up_the_doubled_batch(ddp_run, single2):
    out, r0, r1 = ddp_run
    assert r0["world"] == r1["world"] == 2 and r0["iterations"] == r1["iterations"] == ITERATIONS
    assert len(r0["samples"]) == len(r1["samples"]) == ITERATIONS and all(len(s) == 1 for s in r0["samples"])
    seen0 = {d for s in r0["samples"] for d in s}
    seen1 = {d for s in r1["samples"] for d in s}
    assert not seen0 & seen1, "the two ranks never train on the same block"
    assert single2[1] == [a + b for a, b in zip(r0["samples"], r1["samples"], strict=True)], (
        "step by step, rank 0 + rank 1 see exactly the blocks of one process with batch 2")


def test_ddp_weights_equal_one_process_with_the_doubled_batch(ddp_run, single2, dataset, tmp_path):
    out, _, _ = ddp_run
    ddp, double = _weights(out), single2[0]
    per_rank, _ = _single(_config(dataset, tmp_path / "single1", batch_size=1))
    worst = max(float((ddp[k] - double[k]).abs().max()) for k in ddp)
    print(f"largest weight difference DDP vs one process: {worst:.2e}")
    assert worst < 3e-5, f"DDP and one process with batch 2 differ by {worst}"
    moved = max(float((ddp[k] - per_rank[k]).abs().max()) for k in ddp)
    assert moved > 100 * max(worst, 1e-7), "batch 1 in one process must end elsewhere (the check can tell)"


def test_only_rank_zero_writes(ddp_run):
    out, r0, r1 = ddp_run
    assert r1["writes"] == [], f"rank 1 wrote in the run folder: {r1['writes']}"
    written = {w.split(" ", 1)[1] for w in r0["writes"]}
    assert {"checkpoints/last.pt", "model.pt", "train_log.jsonl", "config.json"} <= written, written
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == list(range(1, ITERATIONS + 1)), "one log line per iteration"
    pytest.importorskip("tensorboard")
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1, "one TensorBoard writer"


def test_killed_ddp_run_resumes_to_the_same_weights(ddp_run, dataset, tmp_path):
    out_ref, _, _ = ddp_run
    out = tmp_path / "killed"
    cfg = _config(dataset, out)
    proc = _launch(cfg, tmp_path / "trace-killed", wait=False, kill_at=KILL_AT)
    _communicate(proc)
    assert proc.returncode == -signal.SIGKILL, "the torchrun agent was killed"
    ckpt = out / "checkpoints" / "last.pt"
    killed_at = torch.load(ckpt, map_location="cpu", weights_only=True)["iteration"]
    assert killed_at == 4, "the last complete checkpoint before the kill (every 2 iterations)"
    assert not (out / "model.pt").exists()
    _launch(cfg, tmp_path / "trace-resumed")
    r0, r1 = _trace(tmp_path / "trace-resumed")
    assert r0["resumed_from"] == r1["resumed_from"] == killed_at
    assert len(r0["samples"]) == ITERATIONS - killed_at
    a, b = _weights(out), _weights(out_ref)
    assert all(torch.equal(a[k], b[k]) for k in a), "killed + resumed DDP ends exactly where uninterrupted DDP does"
