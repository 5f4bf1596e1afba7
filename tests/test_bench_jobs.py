"""The suite's job scheduler (bench/jobs.py): real spawned processes, dependencies, failures."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from panorooms3d.bench.jobs import JobError, Task, longest_first, run_tasks


def stamp(folder: str, name: str, seconds: float) -> None:
    """A task: record when it started and ended (and its torch threads), sleeping in between."""
    import torch

    t0 = time.time()
    time.sleep(seconds)
    Path(folder, f"{name}.json").write_text(json.dumps({"start": t0, "end": time.time(),
                                                        "threads": torch.get_num_threads(), "pid": os.getpid()}))


def fail(message: str) -> None:
    raise ValueError(message)


def die(code: int) -> None:
    os._exit(code)


def read(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def test_tasks_run_side_by_side_after_their_dependencies(tmp_path: Path) -> None:
    d = str(tmp_path)
    done = []
    tasks = [Task("a", "a", stamp, (d, "a", 1.5)), Task("b", "b", stamp, (d, "b", 1.5)),
             Task("c", "c", stamp, (d, "c", 0.1), after=("a", "b"))]
    run_tasks(tasks, jobs=2, threads=1, on_done=lambda t, s: done.append(t.key))
    a, b, c = (read(tmp_path, k) for k in "abc")
    assert a["start"] < b["end"] and b["start"] < a["end"]  # a and b overlapped
    assert c["start"] >= max(a["end"], b["end"])            # c waited for both
    assert {a["pid"], b["pid"], c["pid"]}.isdisjoint({os.getpid()}) and len({a["pid"], b["pid"], c["pid"]}) == 3
    assert a["threads"] == b["threads"] == c["threads"] == 1
    assert sorted(done[:2]) == ["a", "b"] and done[2] == "c"


def test_one_job_at_a_time_keeps_the_priority_order(tmp_path: Path) -> None:
    d = str(tmp_path)
    run_tasks([Task(k, k, stamp, (d, k, 0.0)) for k in ("x", "y", "z")], jobs=1, threads=1)
    x, y, z = (read(tmp_path, k) for k in "xyz")
    assert x["end"] <= y["start"] and y["end"] <= z["start"]


def test_a_failing_task_raises_its_error_and_stops_the_others(tmp_path: Path) -> None:
    d = str(tmp_path)
    tasks = [Task("slow", "slow", stamp, (d, "slow", 30.0)), Task("bad", "train (x)", fail, ("room 7 is broken",)),
             Task("later", "later", stamp, (d, "later", 0.0), after=("bad",))]
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="room 7 is broken") as info:
        run_tasks(tasks, jobs=2, threads=1)
    assert time.perf_counter() - t0 < 25  # the 30 s task was stopped, not waited for
    assert any("train (x)" in note and "Traceback" in note for note in info.value.__notes__)
    assert not (tmp_path / "slow.json").exists() and not (tmp_path / "later.json").exists()


def test_a_process_that_dies_silently_is_reported(tmp_path: Path) -> None:
    with pytest.raises(JobError, match=r"dies: its process ended with exit code 3"):
        run_tasks([Task("d", "dies", die, (3,))], jobs=2, threads=1)


def test_bad_task_lists_are_refused() -> None:
    with pytest.raises(JobError, match="unknown task"):
        run_tasks([Task("a", "a", die, (0,), after=("nope",))], jobs=1)
    with pytest.raises(JobError, match="wait on each other"):
        run_tasks([Task("a", "a", die, (0,), after=("b",)), Task("b", "b", die, (0,), after=("a",))], jobs=2)
    with pytest.raises(ValueError, match="unique"):
        run_tasks([Task("a", "a", die, (0,)), Task("a", "a", die, (0,))], jobs=1)


def test_longest_first_orders_each_rank_by_its_chains_of_seconds() -> None:
    """Chains worked out by hand: a task's seconds plus the chains of the tasks waiting on it."""
    t = {k: Task(k, k.upper(), die, (0,), after, rank) for k, after, rank in [
        ("a", (), 0), ("b", (), 0), ("c", ("a",), 0), ("d", (), 0), ("e", (), 1), ("f", (), 1), ("g", (), 0)]}
    seconds = {"A": 10.0, "B": 12.0, "C": 5.0, "D": 3.0, "E": 1.0, "F": 50.0}  # G: not measured
    order = longest_first(list(t.values()), seconds)
    # rank 0: A 10 + C 5 = 15 before B 12, C 5, D 3 and G 0; rank 1 after it, whatever its seconds: F 50, E 1
    assert [x.key for x in order] == ["a", "b", "c", "d", "g", "f", "e"]
    # ties (nothing measured) keep the given order
    assert [x.key for x in longest_first(list(t.values()), {})] == ["a", "b", "c", "d", "g", "e", "f"]
    with pytest.raises(JobError, match="cycle"):
        longest_first([Task("x", "X", die, (0,), ("y",)), Task("y", "Y", die, (0,), ("x",))], {})


def fail_loudly(size: int) -> None:
    raise ValueError("x" * size)


def test_a_large_error_message_does_not_block_its_process(tmp_path: Path) -> None:
    # the report is read while the process still runs: a message larger than a pipe's buffer must come through
    with pytest.raises(ValueError) as info:
        run_tasks([Task("big", "big", fail_loudly, (1_000_000,))], jobs=1, threads=1)
    assert len(str(info.value)) == 1_000_000
