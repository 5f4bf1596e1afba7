"""The room runner: resume, retries, failure isolation, reports; local pool, inline and Ray."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from panorooms3d.run.atomic import atomic_path
from panorooms3d.run.runner import NotEnoughGPUsError, RoomTask, run_rooms


def write_room(task: RoomTask) -> dict:
    """Work function: writes the output atomically; fails on demand; reports its OMP setting."""
    if task.kwargs.get("fail"):
        raise RuntimeError(f"room {task.room_uid} is broken on purpose")
    flaky = task.kwargs.get("flaky_marker")
    if flaky and not Path(flaky).exists():
        Path(flaky).write_text("tried once")
        raise RuntimeError("first attempt fails")
    with atomic_path(task.output) as tmp:
        tmp.write_text(task.room_uid)
    return {"frames": 3, "omp": os.environ.get("OMP_NUM_THREADS", ""),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _tasks(tmp_path: Path, n: int, **kwargs) -> list[RoomTask]:
    return [RoomTask(f"house/room{i}", tmp_path / f"room{i}.txt", dict(kwargs)) for i in range(n)]


@pytest.mark.parametrize("workers", [1, 2])
def test_runs_skips_and_reports(tmp_path: Path, workers: int) -> None:
    tasks = _tasks(tmp_path, 3)
    tasks[1].kwargs["fail"] = True
    report = run_rooms(write_room, tasks, workers=workers, retries=1, desc="test", progress=False,
                       report_path=tmp_path / "report.json")
    assert [r.room_uid for r in report.done] == ["house/room0", "house/room2"]
    assert [r.room_uid for r in report.failed] == ["house/room1"]
    assert report.failed[0].attempts == 2
    assert "broken on purpose" in report.failed[0].error.splitlines()[-1]
    assert (tmp_path / "room0.txt").read_text() == "house/room0"
    assert not (tmp_path / "room1.txt").exists()
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["counts"] == {"done": 2, "skipped": 0, "failed": 1}
    assert report.totals("frames") == 6
    if workers > 1:  # worker processes run with one OpenMP thread
        assert {r.info["omp"] for r in report.done} == {"1"}
    assert "1 failed" in report.summary() and "FAILED house/room1" in report.summary()

    # Second run: finished rooms are skipped, the fixed room is done now.
    tasks[1].kwargs["fail"] = False
    (tmp_path / ".room1.txt.tmp-999-deadbeef").write_text("stale partial output of a killed writer")
    again = run_rooms(write_room, tasks, workers=workers, progress=False)
    assert [r.status for r in again.results] == ["skipped", "done", "skipped"]
    assert not list(tmp_path.glob(".*tmp-*")), "stale temporaries are cleaned"


def test_retry_recovers_a_flaky_room(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path, 1, flaky_marker=str(tmp_path / "marker"))
    report = run_rooms(write_room, tasks, workers=2, retries=1, progress=False)
    assert report.done and report.done[0].attempts == 2


def test_rejects_duplicates_and_unknown_executor(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="listed twice"):
        run_rooms(write_room, _tasks(tmp_path, 1) * 2, progress=False)
    with pytest.raises(ValueError, match="unknown executor"):
        run_rooms(write_room, _tasks(tmp_path, 1), executor="slurm", progress=False)


@pytest.mark.ray
def test_ray_local_cluster(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1",
                                       # Ray workers import this test module by name.
                                       "PYTHONPATH": str(Path(__file__).parent)}})
    try:
        tasks = _tasks(tmp_path, 3)
        tasks[2].kwargs["fail"] = True
        report = run_rooms(write_room, tasks, executor="ray", retries=0, progress=False)
        assert sorted(r.room_uid for r in report.done) == ["house/room0", "house/room1"]
        assert [r.room_uid for r in report.failed] == ["house/room2"]
        assert "broken on purpose" in report.failed[0].error
        assert (tmp_path / "room1.txt").read_text() == "house/room1"
    finally:
        ray.shutdown()


@pytest.mark.ray
def test_ray_tasks_ask_for_what_the_cluster_recipe_says(tmp_path: Path) -> None:
    """render --device gpu: 1 CPU + 1 GPU per room (Ray sets CUDA_VISIBLE_DEVICES); fusion: 1 CPU."""
    ray = pytest.importorskip("ray")
    # One logical GPU: Ray schedules and isolates it as on a GPU node (nothing here uses it).
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}})
    try:
        gpu = run_rooms(write_room, _tasks(tmp_path / "render", 2), executor="ray", ray_num_gpus=1.0, retries=0,
                        progress=False, report_path=tmp_path / "render_report.json")
        assert len(gpu.done) == 2
        for r in gpu.done:
            assert r.info["ray"]["resources"] == {"CPU": 1.0, "GPU": 1.0}
            assert r.info["ray"]["gpu_ids"] == ["0"] and r.info["cuda_visible_devices"] == "0"
        saved = json.loads((tmp_path / "render_report.json").read_text())["rooms"]
        assert all(room["info"]["ray"]["resources"]["GPU"] == 1.0 for room in saved), "the report says it too"
        cpu = run_rooms(write_room, _tasks(tmp_path / "fuse", 2), executor="ray", retries=0, progress=False)
        assert [r.info["ray"]["resources"] for r in cpu.done] == [{"CPU": 1.0}] * 2
        assert all(r.info["ray"]["gpu_ids"] == [] for r in cpu.done)
        with pytest.raises(NotEnoughGPUsError, match="asks Ray for 2 GPU, .* has 1 GPU.* start GPU workers"):
            run_rooms(write_room, _tasks(tmp_path / "two", 1), executor="ray", ray_num_gpus=2.0, progress=False)
    finally:
        ray.shutdown()


def test_ray_cluster_recipe_is_a_valid_ray_cluster_config(tmp_path: Path) -> None:
    """pipelines/ray-cluster.yaml passes Ray's own preparation and schema; GPU-free head, venv's ray."""
    yaml = pytest.importorskip("yaml")
    pytest.importorskip("ray")
    from ray.autoscaler._private.util import prepare_config, validate_config

    root = Path(__file__).parents[1] / "pipelines"
    config = yaml.safe_load((root / "ray-cluster.yaml").read_text())
    prepared = prepare_config(config)
    validate_config(prepared)
    assert prepared["provider"]["type"] == "local" and prepared["max_workers"] == len(config["provider"]["worker_ips"])
    head = " ".join(prepared["head_start_ray_commands"])
    assert "--head" in head and "--num-gpus=0" in head, "no render task lands on the head node"
    assert all(c.split()[-1] != "ray" for c in prepared["worker_start_ray_commands"])
    assert all("/.venv/bin/ray" in c for c in prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]
               if " start" in c or " stop" in c)
    steps = (root / "ray-build.md").read_text()
    for command in ("render --front /shared/front --out /shared/work --executor ray --ray-address auto --device gpu",
                    "fuse --work /shared/work --out /shared/dataset --executor ray --ray-address auto",
                    "ray start --head", "ray start --address=HEAD_IP:6379 --num-gpus=0"):
        assert command in steps, command
    # Every panorooms3d command line of the recipe parses (options exist, required ones are given).
    import shlex

    from panorooms3d.cli import cli

    for sub in ("front", "work", "dataset"):
        (tmp_path / sub).mkdir()
    lines = [ln.strip() for ln in steps.splitlines() if ln.strip().startswith("panorooms3d ")]
    assert len(lines) >= 5
    for line in lines:
        args = shlex.split(line.replace("/shared", str(tmp_path)))[1:]
        command = cli.get_command(None, args[0])
        assert command is not None, line
        command.make_context(args[0], args[1:])
