"""Two recordings of the same suite, row by row: the paired difference of each run's test score, with its interval.

    .venv/bin/python benchmark/diagnosis/compare_recordings.py \\
        benchmark/results/cpu-track/steps-1400 benchmark/results/cpu-track/epyc-bf16 \\
        --out benchmark/results/cpu-track/steps-1400/versus-epyc-bf16.json

A suite's claims compare rows of one recording. When a setting of the whole suite changes (the CPU track's
learning-rate schedule, say), the question is how every row moved: this compares recording A (the change)
with recording B (the base), for each run recorded in both (``runs/<name>/seed<k>/metrics.json`` or
``runs/<name>/metrics.json``), with :func:`panorooms3d.bench.stats.compare` — the statistic a suite's claims
use: A - B on the same resampled test rooms, seeds paired when both runs have the same seed labels, the
95% percentile interval and the verdict on "A > B". The test rooms must be the same (uid and weight) in
both recordings, i.e. both evaluated on one dataset.

For each metric (``--metric``, default mIoU) and aggregation (the paper's volume-weighted one and, where
the records hold it, void-excluded) it writes A's mean, B's mean, the difference and its interval.
``--pair A_RUN=B_RUN`` compares run A_RUN of A with run B_RUN of B instead (repeatable), for a change that a
suite names as a row of its own (``3dseg-t-dist-std`` against the track's ``3dseg-t-dist``, say); the result is
keyed ``A_RUN=B_RUN``. Reads recorded files only: no data, no model, no torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from panorooms3d.bench import stats
from panorooms3d.bench.report import metrics_files
from panorooms3d.run.atomic import write_json

AGGREGATIONS = ("paper", "void_excluded")


def load_run(results: Path, run: str) -> stats.RunRecords | None:
    """The per-room records of ``<results>/runs/<run>``, or None when it has no evaluation there."""
    files = metrics_files(results / "runs" / run)
    if not files:
        return None
    return stats.RunRecords.from_metrics([json.loads(p.read_text()) for _, p in files], [s for s, _ in files])


def run_names(results: Path) -> list[str]:
    base = results / "runs"
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def compare_recordings(a: Path, b: Path, metric: str = "mIoU", n_boot: int = stats.N_BOOT,
                       pairs: list[tuple[str, str]] | None = None) -> dict:
    """``{"a", "b", "metric", "runs": {name: {aggregation: {a, b, difference, lo, hi, verdict, seeds}}}}``.

    ``pairs``: (run of A, run of B) to compare, keyed ``"A_RUN=B_RUN"``; default every run recorded in both."""
    if pairs:
        for rec, run in [(a, x) for x, _ in pairs] + [(b, y) for _, y in pairs]:
            if load_run(rec, run) is None:
                raise SystemExit(f"run {run!r} is not recorded in {rec}/runs")
        names = [(f"{x}={y}", x, y) for x, y in pairs]
    else:
        in_b = set(run_names(b))
        names = [(n, n, n) for n in run_names(a) if n in in_b]
    if not names:
        raise SystemExit(f"no run is recorded in both {a}/runs and {b}/runs")
    out: dict = {"a": str(a), "b": str(b), "metric": metric, "runs": {}}
    key = stats.metric_key(metric)
    for name, name_a, name_b in names:
        ra, rb = load_run(a, name_a), load_run(b, name_b)
        if ra is None or rb is None:
            continue
        row = {}
        for agg in AGGREGATIONS:
            if not (ra.has(key, agg) and rb.has(key, agg)):
                continue
            try:
                cmp = stats.compare(ra, rb, metric, agg, n_boot=n_boot)
            except ValueError as exc:
                raise SystemExit(f"run {name!r}: {exc}") from None
            pa = stats.bootstrap(ra, metric, agg, n_boot=1).mean  # the point estimate (B's: A's - the difference)
            pb = pa - cmp.mean
            row[agg] = {"a": round(pa, 2), "b": round(pb, 2), "difference": round(cmp.mean, 2),
                        "lo": round(cmp.lo, 2), "hi": round(cmp.hi, 2), "verdict_a_greater": cmp.verdict,
                        "seeds": {"a": ra.n_seeds, "b": rb.n_seeds, "paired": cmp.paired_seeds}}
        out["runs"][name] = row
    return out


def _cell(r: dict | None) -> str:
    return f"{r['difference']:+.1f} [{r['lo']:+.1f}, {r['hi']:+.1f}]" if r else "–"


def markdown(result: dict) -> str:
    lines = ["| run | A | B | A - B [95% CI] | void-excluded A - B [95% CI] | seeds A / B |", "|---|---|---|---|---|---|"]
    for name, row in result["runs"].items():
        p, v = row.get("paper"), row.get("void_excluded")
        lines.append(f"| {name} | {p['a']:.1f} | {p['b']:.1f} | {_cell(p)} | {_cell(v)} | "
                     f"{p['seeds']['a']} / {p['seeds']['b']}{' paired' if p['seeds']['paired'] else ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="results folder of recording A (the change)")
    ap.add_argument("b", type=Path, help="results folder of recording B (the base)")
    ap.add_argument("--metric", default="mIoU")
    ap.add_argument("--out", type=Path, help="write the comparison here (JSON)")
    ap.add_argument("--pair", action="append", metavar="A_RUN=B_RUN", default=[],
                    help="compare run A_RUN of A with run B_RUN of B (repeatable; default: the runs of one name)")
    args = ap.parse_args(argv)
    pairs = []
    for p in args.pair:
        x, sep, y = p.partition("=")
        if not (sep and x and y):
            ap.error(f"--pair {p!r}: write it as A_RUN=B_RUN")
        pairs.append((x, y))
    result = compare_recordings(args.a, args.b, args.metric, pairs=pairs)
    print(markdown(result))
    if args.out:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
