"""A ``torchrun`` entry point for tests/test_ddp.py: the real ``train()`` with a per-rank trace.

Usage: ``torchrun --standalone --nproc_per_node 2 tests/ddp_train.py CONFIG.json TRACE_DIR [KILL_AT]``

Runs :func:`panorooms3d.bench.train.train` unchanged, and records, per rank, outside the run
folder (``TRACE_DIR/rank<R>.json``, written when the run returns):

- ``samples``: for every forward pass, a digest of each input block the model saw, in batch order
  (a forward pre-hook on the built model; it observes, it changes nothing);
- ``writes``: every file this process opened for writing, created, renamed or removed inside the
  run folder (a Python audit hook: ``open``, ``os.rename``, ``os.replace``, ``os.remove``,
  ``os.mkdir``), so the test can check that only rank 0 writes there.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import panorooms3d.bench.train as train_module
from panorooms3d.bench.train import TrainConfig, train

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def kill_job() -> None:
    """SIGKILL the torchrun agent (this worker's parent), every other worker it started, then this one."""
    import psutil

    agent = psutil.Process(os.getppid())
    workers = [p for p in agent.children() if p.pid != os.getpid()]
    agent.kill()
    for p in workers:
        p.kill()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    config = TrainConfig(**json.loads(Path(sys.argv[1]).read_text()))
    trace_dir = Path(sys.argv[2])
    kill_at = int(sys.argv[3]) if len(sys.argv) > 3 else None
    rank = int(os.environ.get("RANK", "0"))
    out = os.path.realpath(config.out)
    writes: list[str] = []
    samples: list[list[str]] = []

    def inside(path) -> str | None:
        if isinstance(path, int):
            return None
        try:
            p = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return None
        return os.path.relpath(p, out) if p == out or p.startswith(out + os.sep) else None

    def audit(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & WRITE_FLAGS)
            rel = inside(path) if writing else None
            if rel is not None:
                writes.append(f"open {rel}")
        elif event in ("os.rename", "os.replace"):
            for p in args[:2]:
                rel = inside(p)
                if rel is not None:
                    writes.append(f"{event} {rel}")
        elif event in ("os.remove", "os.mkdir"):
            rel = inside(args[0])
            if rel is not None and (event == "os.remove" or not os.path.isdir(os.fsdecode(args[0]))):
                writes.append(f"{event} {rel}")

    sys.addaudithook(audit)

    build = train_module.build

    def build_and_observe(cfg: TrainConfig):
        model = build(cfg)

        def record(module, inputs) -> None:
            x = inputs[0].detach().cpu().contiguous()
            samples.append([hashlib.sha1(x[i].numpy().tobytes()).hexdigest()[:16] for i in range(x.shape[0])])
            if kill_at is not None and rank == 1 and len(samples) == kill_at + 1:
                kill_job()

        model.register_forward_pre_hook(record)
        return model

    train_module.build = build_and_observe
    result = train(config, progress=False)
    trace_dir.mkdir(parents=True, exist_ok=True)
    (trace_dir / f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "world": int(os.environ.get("WORLD_SIZE", "1")), "samples": samples, "writes": writes,
        "iterations": result.iterations, "resumed_from": result.resumed_from, "final_loss": result.final_loss}))


if __name__ == "__main__":
    main()
