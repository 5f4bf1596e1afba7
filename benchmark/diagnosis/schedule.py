"""How long would a suite's jobs take in another order? A replay of the job scheduler with measured seconds.

    .venv/bin/python benchmark/diagnosis/schedule.py benchmark/cpu-track.toml out/fn5k/data \\
        out/fn5k/bench/suite_log.jsonl --out benchmark/results/cpu-track/from-nothing/schedule.json

The suite's jobs (block trainings, the teacher, each run and seed's rest) are built exactly as
``benchmark run`` builds them for an empty out folder (:func:`panorooms3d.bench.suite.run_suite`, whose
call of :func:`panorooms3d.bench.jobs.run_tasks` is intercepted here: nothing is trained or written but
an empty temporary folder). Each job is given the seconds a recorded run's ``suite_log.jsonl`` measured
for it, and the scheduler is replayed: ``--jobs`` at a time, a job starting when the jobs it waits on are
done, the first ready job in priority order first, no time between jobs. Replayed orders:

- ``suite order``: the suite's priority without a ``schedule_log``, seed-major (every row's first seed
  before any row's second): the order of the track's runs before 2026-12-07 evening;
- ``seed-major, most dependants first``: the same, each seed's jobs sorted by how many jobs wait on them;
- ``seed-major, longest first``: each seed's jobs sorted by their own seconds plus those of the jobs that
  wait on them (:func:`panorooms3d.bench.jobs.longest_first`: the suite's order when its ``[settings]
  schedule_log`` names a log that measured every job);
- ``longest first``: the same without the seed-major rule.

Recorded: each order's makespan in seconds and its trainings in order. The replay of the order a log was
measured in against the measured suite shows what it leaves out (the seconds between jobs, the tables at the end).
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def replay(tasks: list, seconds: dict[str, float], jobs: int) -> float:
    """The makespan of ``tasks`` (in priority order) run ``jobs`` at a time, each taking ``seconds[label]``."""
    done_at: dict[str, float] = {}
    running: list[tuple[float, str]] = []
    waiting = list(tasks)
    now = 0.0
    while waiting or running:
        ready = [t for t in waiting if all(k in done_at for k in t.after)]
        while ready and len(running) < jobs:
            task = ready.pop(0)
            waiting.remove(task)
            heapq.heappush(running, (now + seconds[task.label], task.key))
        if not running:
            raise ValueError(f"jobs wait on each other: {[t.key for t in waiting]}")
        now, key = heapq.heappop(running)
        done_at[key] = now
    return now


def suite_tasks(suite: Path, data: Path) -> list:
    """The jobs ``benchmark run --jobs 2`` makes for ``suite`` on ``data`` into an empty folder, in the suite's
    priority before any ``schedule_log`` reorders them."""
    import panorooms3d.bench.jobs as jobs
    from panorooms3d.bench.suite import run_suite

    class Captured(Exception):
        pass

    got: list = []

    def capture(tasks, *args, **kwargs):
        got.extend(tasks)
        raise Captured

    real, real_order = jobs.run_tasks, jobs.longest_first
    jobs.run_tasks = capture
    jobs.longest_first = lambda tasks, seconds: tasks
    try:
        with tempfile.TemporaryDirectory() as empty:  # jobs=2 whatever --jobs: with 1 the suite would train
            run_suite(suite, data, empty, progress=False, jobs=2)
    except Captured:
        pass
    finally:
        jobs.run_tasks, jobs.longest_first = real, real_order
    if not got:
        raise SystemExit(f"{suite}: the suite made no jobs for an empty folder: nothing to replay")
    return got


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("suite", type=Path, help="the suite's toml (benchmark/cpu-track.toml)")
    ap.add_argument("data", type=Path, help="its dataset (only read for the suite's checks)")
    ap.add_argument("log", type=Path, help="a recorded run's suite_log.jsonl: every job's seconds")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write the result here (JSON)")
    args = ap.parse_args(argv)

    from panorooms3d.bench.jobs import longest_first
    from panorooms3d.bench.suite import recorded_job_seconds
    from panorooms3d.run.atomic import write_json

    tasks = suite_tasks(args.suite, args.data)
    seconds = recorded_job_seconds(args.log)
    missing = [t.label for t in tasks if t.label not in seconds]
    if missing:
        raise SystemExit(f"{args.log}: no measured seconds for {', '.join(missing)}: a log of the whole suite is needed")
    waiting_on = {t.key: [u for u in tasks if t.key in u.after] for t in tasks}
    orders = {
        "suite order": tasks,
        "seed-major, most dependants first": sorted(tasks, key=lambda t: (t.rank, -len(waiting_on[t.key]))),
        "seed-major, longest first": longest_first(tasks, seconds),
        "longest first": longest_first([dataclasses.replace(t, rank=0) for t in tasks], seconds),
    }
    result = {"suite": str(args.suite), "log": str(args.log), "jobs": args.jobs,
              "job_seconds": round(sum(seconds[t.label] for t in tasks), 1), "orders": {}}
    for name, order in orders.items():
        span = replay(order, seconds, args.jobs)
        result["orders"][name] = {"seconds": round(span, 1), "minutes": round(span / 60, 1),
                                  "trainings_in_order": [t.key for t in order if not t.key.startswith("run ")]}
        print(f"{name:36s} {span:8.1f} s  {span / 60:6.1f} min")
    if args.out:
        write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
