"""The resumable room runner: one room = one task, run by a local process pool or on Ray.

Every stage (render, fuse, panorama, build) hands ``run_rooms`` a module-level work function
and a list of :class:`RoomTask`. The runner

- skips tasks whose ``output`` exists (outputs are written atomically, so an existing output is
  complete) and removes stale temporaries left by killed writers next to them;
- runs the rest in worker processes (``local``: a process pool, one BLAS/OpenMP thread per
  worker) or as Ray tasks (``ray``: an existing cluster, ``auto`` or ``ray://...``);
- retries a failed room ``retries`` times, then records it with its reason and goes on;
- shows a progress bar (rooms/s, ETA) and ends with a summary and a JSON run report.
"""

from __future__ import annotations

import json
import os
import re
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from panorooms3d.run.atomic import atomic_path, clean_stale_temporaries
from panorooms3d.run.errors import UserError

#: Environment of worker processes: one thread of BLAS/OpenMP each (measured 6x faster label
#: voting than letting every worker start one thread per core).
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

EXECUTORS = ("local", "ray")


class NotEnoughGPUsError(UserError):
    """Each room asks for more GPUs than the cluster has (a task no node can take would wait forever)."""


@dataclass
class RoomTask:
    """One room's work.

    Attributes:
        room_uid: ``HOUSE_UID/ROOM_INSTANCEID``.
        output: the final output path; when it exists the task is skipped (resume).
        kwargs: picklable arguments for the work function.
        overwrite: run the task even when ``output`` exists (e.g. rendered with other settings).
    """

    room_uid: str
    output: Path
    kwargs: dict = field(default_factory=dict)
    overwrite: bool = False


@dataclass
class RoomResult:
    """What happened to one room: status is ``done``, ``skipped`` or ``failed``."""

    room_uid: str
    status: str
    seconds: float = 0.0
    attempts: int = 0
    error: str = ""
    info: dict = field(default_factory=dict)


@dataclass
class RunReport:
    """The outcome of a run over many rooms (also written as JSON)."""

    desc: str
    executor: str
    workers: int
    results: list[RoomResult] = field(default_factory=list)
    seconds: float = 0.0
    started: str = ""
    interrupted: bool = False

    def _with(self, status: str) -> list[RoomResult]:
        return [r for r in self.results if r.status == status]

    @property
    def done(self) -> list[RoomResult]:
        return self._with("done")

    @property
    def skipped(self) -> list[RoomResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[RoomResult]:
        return self._with("failed")

    def totals(self, key: str) -> float:
        """Sum of ``info[key]`` over finished rooms (e.g. ``"frames"``)."""
        return float(sum(r.info.get(key, 0) for r in self.done if isinstance(r.info.get(key, 0), int | float)))

    def summary(self) -> str:
        """One paragraph for the end of a command."""
        rate = len(self.done) / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"{self.desc}: {len(self.done)} done, {len(self.skipped)} skipped (already there), "
            f"{len(self.failed)} failed in {self.seconds:.1f} s ({rate:.2f} rooms/s, executor {self.executor}, "
            f"{self.workers} worker{'s' if self.workers != 1 else ''})"
        ]
        if self.interrupted:
            lines.append("interrupted: finished rooms are kept; run the same command again to do the rest")
        for r in self.failed:
            reason = failure_reason(r.error)
            lines.append(f"  FAILED {r.room_uid} after {r.attempts} attempt(s): {reason}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "desc": self.desc,
            "executor": self.executor,
            "workers": self.workers,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "counts": {s: len(self._with(s)) for s in ("done", "skipped", "failed")},
            "rooms": [asdict(r) for r in self.results],
        }

    def write(self, path: Path) -> None:
        """Write the report as JSON, atomically."""
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2, default=str))


def _call(fn: Callable[[RoomTask], dict], task: RoomTask) -> tuple[float, dict]:
    t0 = time.perf_counter()
    info = fn(task) or {}
    return time.perf_counter() - t0, dict(info)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def failure_reason(error: str) -> str:
    """The one-line reason of a failed room: the last non-blank line of its error text."""
    lines = [ln.strip() for ln in _ANSI.sub("", error or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error (no message)"


def _error_text(exc: BaseException) -> str:
    """The reason recorded for a failed room: ``Type: message`` last (summary shows the last line)."""
    tb = _ANSI.sub("", "".join(traceback.format_exception(exc))).strip()
    text = " ".join(ln.strip() for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip())
    msg = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"{tb}\n{msg}" if tb and not tb.endswith(msg) else (tb or msg)


@contextmanager
def _worker_environment():
    """Set WORKER_ENV in os.environ while worker processes are started (they inherit it)."""
    old = {k: os.environ.get(k) for k in WORKER_ENV}
    os.environ.update(WORKER_ENV)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def default_workers() -> int:
    """Worker count when none is given: one per core (at least 1)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def run_rooms(
    fn: Callable[[RoomTask], dict],
    tasks: Iterable[RoomTask],
    *,
    executor: str = "local",
    workers: int | None = None,
    retries: int = 1,
    desc: str = "rooms",
    report_path: Path | None = None,
    ray_address: str | None = None,
    ray_num_gpus: float = 0.0,
    progress: bool = True,
    info_postfix: str | None = None,
) -> RunReport:
    """Run ``fn`` over rooms, resumable, isolated and observable.

    Args:
        fn: module-level function ``fn(task) -> dict`` that writes ``task.output`` atomically and
            raises to fail the room (the message becomes the recorded reason).
        tasks: the rooms; a task whose ``output`` exists is skipped.
        executor: ``local`` (process pool) or ``ray`` (Ray tasks on an existing cluster).
        workers: parallel rooms (local: pool size, default one per core; ``1`` runs in this
            process). Ignored by ``ray`` (the cluster schedules).
        retries: extra attempts for a failing room before it is recorded as failed.
        desc: name of the stage for the progress bar and report.
        report_path: where to write the JSON run report (optional).
        ray_address: Ray cluster address (``auto`` by default, ``ray://host:port``, ``local``).
        ray_num_gpus: GPUs per Ray task (rendering on GPU nodes; Ray sets CUDA_VISIBLE_DEVICES for
            the task, so Cycles sees only its GPU). Every Ray task also asks for one CPU. A
            cluster with fewer GPUs than one task asks for is a :class:`NotEnoughGPUsError`
            (a UserError), not a wait; it is raised before any room runs and before the report is
            written. Each room's ``info["ray"]`` records its node and the resources Ray assigned.
        progress: show a tqdm progress bar.
        info_postfix: an ``info`` key summed over finished rooms and shown per second in the bar
            (e.g. ``"frames"``).

    Returns:
        The :class:`RunReport`. It is also written to ``report_path`` when interrupted.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    tasks = list(tasks)
    seen: set[str] = set()
    for t in tasks:
        if t.room_uid in seen:
            raise ValueError(f"room {t.room_uid} is listed twice")
        seen.add(t.room_uid)
    report = RunReport(desc=desc, executor=executor, workers=1 if executor == "ray" else (workers or default_workers()))
    report.started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()

    pending: list[RoomTask] = []
    for d in {Path(t.output).parent for t in tasks}:
        clean_stale_temporaries(d)
    for t in tasks:
        if Path(t.output).exists() and not t.overwrite:
            report.results.append(RoomResult(t.room_uid, "skipped"))
        else:
            pending.append(t)

    if executor == "ray" and pending:  # before the bar and the report: a refusal leaves nothing behind
        _connect_ray(ray_address, ray_num_gpus)
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(pending), desc=desc, unit="room", disable=not progress,
               dynamic_ncols=True)
    extra = 0.0

    def finished(res: RoomResult) -> None:
        nonlocal extra
        report.results.append(res)
        bar.update(1)
        if info_postfix and res.status == "done":
            extra += float(res.info.get(info_postfix, 0) or 0)
            el = time.perf_counter() - t0
            bar.set_postfix_str(f"{extra / el:.2f} {info_postfix}/s" if el > 0 else "")
        if res.status == "failed":
            bar.write(f"{desc}: {res.room_uid} failed: {failure_reason(res.error)}")

    try:
        if not pending:
            pass
        elif executor == "ray":
            _run_ray(fn, pending, retries, finished, ray_address, ray_num_gpus)
        elif report.workers == 1:
            _run_inline(fn, pending, retries, finished)
        else:
            _run_pool(fn, pending, retries, finished, report.workers)
    except KeyboardInterrupt:
        report.interrupted = True
        raise
    finally:
        bar.close()
        report.seconds = time.perf_counter() - t0
        order = {t.room_uid: i for i, t in enumerate(tasks)}
        report.results.sort(key=lambda r: order.get(r.room_uid, 0))
        if report_path is not None:
            report.write(Path(report_path))
    return report


def _run_inline(fn, pending, retries, finished) -> None:
    for task in pending:
        error = ""
        for attempt in range(1, retries + 2):
            try:
                seconds, info = _call(fn, task)
            except Exception as exc:  # a failing room never stops the run
                error = _error_text(exc)
                continue
            finished(RoomResult(task.room_uid, "done", seconds, attempt, "", info))
            break
        else:
            finished(RoomResult(task.room_uid, "failed", 0.0, retries + 1, error))


def _run_pool(fn, pending, retries, finished, workers) -> None:
    attempts = {t.room_uid: 0 for t in pending}
    errors: dict[str, str] = {}
    queue = list(pending)
    while queue:
        with _worker_environment(), ProcessPoolExecutor(max_workers=min(workers, len(queue)),
                                                        mp_context=get_context("spawn")) as pool:
            futures = {}
            for t in queue:
                attempts[t.room_uid] += 1
                futures[pool.submit(_call, fn, t)] = t
            queue = []
            not_done = set(futures)
            broken = False
            while not_done:
                done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = futures[fut]
                    try:
                        seconds, info = fut.result()
                    except BrokenProcessPool as exc:
                        broken = True
                        errors[task.room_uid] = f"worker process died (crash or out of memory): {exc}"
                    except Exception as exc:
                        errors[task.room_uid] = _error_text(exc)
                    else:
                        finished(RoomResult(task.room_uid, "done", seconds, attempts[task.room_uid], "", info))
                        continue
                    if attempts[task.room_uid] <= retries:
                        queue.append(task)
                    else:
                        finished(RoomResult(task.room_uid, "failed", 0.0, attempts[task.room_uid],
                                            errors[task.room_uid]))
            if broken:
                pool.shutdown(wait=False, cancel_futures=True)


def _call_on_ray(fn: Callable[[RoomTask], dict], task: RoomTask) -> tuple[float, dict]:
    """:func:`_call` in a Ray task; the room's info also records the node and the resources Ray gave it."""
    import ray

    seconds, info = _call(fn, task)
    ctx = ray.get_runtime_context()
    info.setdefault("ray", {"node": ctx.get_node_id(), "resources": ctx.get_assigned_resources(),
                            "gpu_ids": [str(g) for g in ray.get_gpu_ids()]})
    return seconds, info


def _connect_ray(address: str | None, num_gpus: float) -> None:
    """Connect to (or start, for ``local``) the Ray cluster; refuse when a room asks for more GPUs than it has."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise RuntimeError("the ray executor needs Ray: pip install 'panorooms3d[ray]'") from exc
    if not ray.is_initialized():
        ray.init(address=address or "auto", ignore_reinit_error=True, log_to_driver=False,
                 runtime_env={"env_vars": dict(WORKER_ENV)})
    if num_gpus > 0:  # a task no node can take would wait forever: say so instead
        have = float(ray.cluster_resources().get("GPU", 0.0))
        if have < num_gpus:
            raise NotEnoughGPUsError(
                f"--device gpu: each room asks Ray for {num_gpus:g} GPU, but the Ray cluster at {address or 'auto'} "
                f"has {have:g} GPU(s) in all; start GPU workers (`ray start --address ... --num-gpus N`, "
                "pipelines/ray-build.md) or render on the CPUs with --device cpu")


def _run_ray(fn, pending, retries, finished, address, num_gpus) -> None:
    import ray  # connected (and the GPUs checked) by run_rooms

    remote = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=retries, retry_exceptions=True)(_call_on_ray)
    refs = {remote.remote(fn, t): t for t in pending}
    waiting = list(refs)
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        for ref in ready:
            task = refs[ref]
            try:
                seconds, info = ray.get(ref)
            except Exception as exc:
                cause = getattr(exc, "cause", None) or exc
                finished(RoomResult(task.room_uid, "failed", 0.0, retries + 1, _error_text(cause)))
            else:
                finished(RoomResult(task.room_uid, "done", seconds, 1, "", info))
