"""Start a suite's longer block trainings from its finished shorter ones, seed by seed, instead of from nothing.

    python benchmark/diagnosis/continue_training.py SUITE --data DATA --out OUT --from SHORT_RUN --to LONG_RUN
    panorooms3d benchmark run SUITE --data DATA --out OUT      # trains only the steps beyond

SHORT_RUN is a run of SUITE, or of ``--from-suite`` (its block trainings in the same OUT/pretrain).

For each seed of LONG_RUN, the folder of its block training under ``OUT/pretrain`` gets the last checkpoint and
the log of SHORT_RUN's training with the same seed (:func:`panorooms3d.bench.train.continue_training`), so the
suite then resumes it there. The two runs must differ only in their length (and where and how often they
report, or a decay that starts after the shorter one ends), and the learning rate of every step the shorter one
took must be the same in the longer one: then the longer training goes through the shorter one step for step, and
ends with the weights it would reach from nothing. Otherwise nothing is written and the reason is printed.

Used for ``benchmark/cpu-track-steps.toml`` (5,000 -> 6,000 -> 7,000 -> 8,000 steps),
``benchmark/cpu-track-decay.toml`` and ``benchmark/cpu-track-7000.toml``; their READMEs in ``benchmark/results/``
give the commands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from panorooms3d.bench.suite import SuiteError, load_suite, pretrain_config, run_seeds, suite_settings
from panorooms3d.bench.train import continue_training
from panorooms3d.run.errors import UserError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("suite", help="suite file or name (benchmark/NAME.toml)")
    ap.add_argument("--data", type=Path, required=True, help="the dataset folder given to `benchmark run`")
    ap.add_argument("--out", type=Path, required=True, help="the suite's out folder")
    ap.add_argument("--from", dest="short", required=True, help="the run whose finished block trainings to start from")
    ap.add_argument("--to", dest="long", required=True, help="the longer run to start from them")
    ap.add_argument("--from-suite", help="the suite of the --from run, when it is not SUITE")
    a = ap.parse_args(argv)
    try:
        suite = load_suite(a.suite)
        short_suite = load_suite(a.from_suite) if a.from_suite else suite
    except (SuiteError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    def run_of(which, name: str):
        found = [r for r in which.runs if r.name == name]
        if not found:
            print(f"error: {which.path} has no run {name!r} (its runs: {', '.join(r.name for r in which.runs)})",
                  file=sys.stderr)
        return found[0] if found else None

    short, long = run_of(short_suite, a.short), run_of(suite, a.long)
    if short is None or long is None:
        return 2
    short_settings, settings = suite_settings(short_suite), suite_settings(suite)
    missing = sorted(set(run_seeds(long, settings)) - set(run_seeds(short, short_settings)))
    if missing:
        print(f"error: {a.short} has no seed {missing} of {a.long}", file=sys.stderr)
        return 2
    plans = []
    for seed in run_seeds(long, settings):
        plans.append((seed, pretrain_config(short_suite, short, {**short_settings, "seed": seed}, a.data, a.out),
                      pretrain_config(suite, long, {**settings, "seed": seed}, a.data, a.out)))
    try:  # every seed is checked before any is written
        for _seed, shorter, longer in plans:
            continue_training(Path(shorter.out), longer, check_only=True)
        for seed, shorter, longer in plans:
            step = continue_training(Path(shorter.out), longer)
            print(f"seed {seed}: {Path(longer.out).name} ({longer.iterations} steps) starts at step {step} of "
                  f"{Path(shorter.out).name}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
