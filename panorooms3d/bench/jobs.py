"""Run a suite's steps several at a time: a small dependency-aware scheduler over fresh processes.

A suite on C cores can train its models one at a time with C threads each, or ``jobs`` at a time with
C / jobs threads each. Small models do not use many threads well: on 2 cores two one-thread trainings side by
side finish a pair of the CPU track's trainings 1.1-1.3x sooner than one two-thread training after the other
(``benchmark/diagnosis/parallel_ab.py``; docs/performance.md).

:func:`run_tasks` takes :class:`Task` s in priority order. Each task is a module-level function and picklable
arguments; it runs in its own ``spawn`` process (a fresh interpreter: nothing of torch's or OpenMP's state is
shared or forked) with ``threads`` torch threads, once every task it comes ``after`` has finished. At most
``jobs`` run at once; when a slot frees, the first waiting task whose dependencies are done starts.
:func:`longest_first` reorders tasks by their expected seconds (measured in an earlier run) within each rank,
so that a long job does not start last and run alone at the end.

When a task fails, the others still running are stopped (a training resumes from its last checkpoint when the
suite runs again) and the task's exception is raised in the caller, with the task's label and its traceback
added as a note. A process that dies without a Python exception (killed, out of memory) raises
:class:`JobError`. ``KeyboardInterrupt`` stops every running task.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait

__all__ = ["JobError", "Task", "default_threads", "longest_first", "run_tasks"]


class JobError(RuntimeError):
    """A task's process ended without reporting (killed, out of memory) or a task depends on an unknown one."""


@dataclass
class Task:
    """One step of work for :func:`run_tasks`.

    Attributes:
        key: unique name; other tasks name it in ``after``.
        label: what the messages call it (e.g. ``train 3dseg-t-acbef5a6``).
        fn: a module-level function (it is pickled by reference into a fresh process).
        args: its picklable positional arguments.
        after: keys of the tasks that must have finished before this one starts.
        rank: the group :func:`longest_first` keeps it in (a suite's seed round: 0 for every run's first seed).
    """

    key: str
    label: str
    fn: Callable
    args: tuple = ()
    after: tuple[str, ...] = ()
    rank: int = 0


def default_threads(jobs: int) -> int:
    """Torch threads for each of ``jobs`` side-by-side jobs: the cores shared out, at least 1."""
    return max(1, (os.cpu_count() or 1) // max(1, int(jobs)))


def longest_first(tasks: list[Task], seconds: dict[str, float]) -> list[Task]:
    """``tasks`` reordered rank by rank, in each rank the longest chain first (a stable sort).

    A task's chain is its expected seconds (``seconds[label]``; 0 when not given) plus the chains of every
    task that waits on it, so a job that others wait for counts with them. Ranks keep their order: with a
    suite's seed rounds as ranks, every run's first seed still comes before any run's second. Tasks with
    no known seconds keep their relative order after the others of their rank (when no task waits on them).
    """
    waiting_on: dict[str, list[Task]] = {t.key: [] for t in tasks}
    for t in tasks:
        for k in t.after:
            if k in waiting_on:
                waiting_on[k].append(t)
    chains: dict[str, float | None] = {}

    def chain(task: Task) -> float:
        if task.key in chains and chains[task.key] is None:
            raise JobError(f"task {task.key!r} waits on itself through the tasks that wait on it (a cycle)")
        if task.key not in chains:
            chains[task.key] = None
            chains[task.key] = float(seconds.get(task.label, 0.0)) + sum(chain(u) for u in waiting_on[task.key])
        return chains[task.key]

    return sorted(tasks, key=lambda t: (t.rank, -chain(t)))


def _child(fn: Callable, args: tuple, threads: int, conn) -> None:
    """In the task's process: set the threads, run ``fn(*args)``, report the exception if any."""
    import torch

    torch.set_num_threads(threads)
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent, which decides
        tb = traceback.format_exc()
        try:
            conn.send((exc, tb))
        except Exception:  # an exception that does not pickle: its text
            conn.send((RuntimeError(f"{type(exc).__name__}: {exc}"), tb))
        raise SystemExit(1) from None
    conn.send(None)


def _receive(task: Task, receive) -> tuple | None | bool:
    """What a task's process sent: None (finished), (exception, traceback), or False (nothing: it died)."""
    try:
        return receive.recv() if receive.poll() else False
    except EOFError:  # the process ended without sending anything
        return False
    except Exception as exc:  # an exception that pickles but does not unpickle
        return (JobError(f"{task.label} failed, and its error could not be passed back: {exc}"), "")


def run_tasks(tasks: list[Task], jobs: int, threads: int | None = None,
              on_start: Callable[[Task], None] | None = None,
              on_done: Callable[[Task, float], None] | None = None) -> None:
    """Run ``tasks`` (in priority order) at most ``jobs`` at a time, each after the tasks it names in ``after``.

    Args:
        tasks: the tasks; keys unique, ``after`` naming keys of this list.
        jobs: how many run at once (>= 1).
        threads: torch threads of each task's process (default :func:`default_threads`).
        on_start, on_done: called in this process when a task starts / finishes (with its seconds).

    Raises:
        the failing task's exception; JobError: a process died without reporting, or an unknown ``after``.
    """
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("task keys must be unique")
    for t in tasks:
        unknown = [k for k in t.after if k not in keys]
        if unknown:
            raise JobError(f"task {t.key!r} comes after unknown task(s) {unknown}")
    jobs = max(1, int(jobs))
    threads = default_threads(jobs) if threads is None else max(1, int(threads))
    ctx = multiprocessing.get_context("spawn")
    waiting = list(tasks)
    done: set[str] = set()
    running: dict = {}  # sentinel -> (task, process, connection, start time)
    reports: dict = {}  # sentinel -> what its task sent (None: finished; (exception, traceback): failed)
    try:
        while waiting or running:
            ready = [t for t in waiting if all(k in done for k in t.after)]
            while ready and len(running) < jobs:
                task = ready.pop(0)
                waiting.remove(task)
                receive, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(task.fn, task.args, threads, send), name=task.key)
                proc.start()
                send.close()
                running[proc.sentinel] = (task, proc, receive, time.perf_counter())
                if on_start:
                    on_start(task)
            if not running:  # waiting tasks whose dependencies can never finish (a cycle)
                raise JobError(f"tasks wait on each other: {', '.join(t.key for t in waiting)}")
            receivers = {entry[2]: sentinel for sentinel, entry in running.items() if sentinel not in reports}
            for ready_object in wait(list(running) + list(receivers)):
                if ready_object in receivers:  # read a report as soon as it comes: a large one must not block
                    sentinel = receivers[ready_object]
                    if sentinel in running:  # not if its process's end came first in this same wait
                        reports[sentinel] = _receive(running[sentinel][0], ready_object)
                    continue
                task, proc, receive, t0 = running.pop(ready_object)
                report = reports.pop(ready_object) if ready_object in reports else _receive(task, receive)
                proc.join()
                receive.close()
                if report is None and proc.exitcode == 0:
                    done.add(task.key)
                    if on_done:
                        on_done(task, time.perf_counter() - t0)
                    continue
                if report:
                    exc, tb = report
                    exc.add_note(f"(in the suite's job {task.label!r}; its traceback:\n{tb.rstrip()})")
                    raise exc
                raise JobError(f"{task.label}: its process ended with exit code {proc.exitcode} without an error "
                               "message (killed, or out of memory?). Run the same command again to resume.")
    finally:
        for _, proc, _, _ in running.values():
            proc.terminate()
        for _, proc, receive, _ in running.values():
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
            receive.close()
