"""The two-level bootstrap and paired comparisons (bench/stats.py) against answers known without the code.

Oracles: identical runs differ by exactly 0; constant rooms have a zero-width interval; tiny cases
whose bootstrap distribution is enumerable by hand; the suite's own aggregation (metrics.py) for the
point values; and the coverage of the interval on synthetic normal data with a known mean.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from panorooms3d.bench.metrics import METRICS, aggregate, metrics_from_confusion, pooled_metrics, room_metrics
from panorooms3d.bench.stats import (
    RunRecords,
    _statistic,
    bootstrap,
    compare,
    metrics_from_counts,
    parse_claims,
    verdict,
)

K = 5


def _room(uid: str, weight: int, rng: np.random.Generator, skill: float) -> dict:
    """A per-room record made as evaluate() makes it, from a random room and a prediction of given skill."""
    gt = rng.integers(0, K, size=400)
    gt[rng.random(400) < 0.5] = 0  # lots of void
    pred = np.where(rng.random(400) < skill, gt, rng.integers(0, K, size=400))
    m = room_metrics(pred, gt, K)
    mv = room_metrics(pred, gt, K, exclude_void=True)
    return {"uid": uid, "weight": weight, "voxels": m["voxels"], **{k: m[k] for k in METRICS},
            "void_excluded": {k: mv[k] for k in METRICS}, "counts": {c: m[c].tolist() for c in ("I", "P", "L")},
            "_m": m, "_mv": mv}


def _run(n_rooms: int, n_seeds: int, skill: float, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    weights = [1 + (i % 3) for i in range(n_rooms)]
    return [{"rooms": [_room(f"r{i}", weights[i], rng, skill) for i in range(n_rooms)]} for _ in range(n_seeds)]


def _scalar_run(values: np.ndarray, weights=None) -> list[dict]:
    """Records with only the paper metrics: values (S, R) for every metric."""
    values = np.atleast_2d(values)
    weights = np.ones(values.shape[1]) if weights is None else weights
    return [{"rooms": [{"uid": f"r{r}", "weight": float(weights[r]), **{k: float(v) for k in METRICS}}
                       for r, v in enumerate(row)]} for row in values]


def test_point_values_are_the_suites_aggregations() -> None:
    runs = _run(6, 2, 0.6)
    for agg in ("paper", "void_excluded", "pooled"):
        for key in METRICS:
            per_seed = []
            for res in runs:
                rooms = res["rooms"]
                if agg == "pooled":
                    per_seed.append(pooled_metrics([r["_m"] for r in rooms])[key])
                else:
                    src = [r["_m"] if agg == "paper" else r["_mv"] for r in rooms]
                    per_seed.append(aggregate(src, [r["weight"] for r in rooms])[key])
            iv = bootstrap(runs, key, agg, n_boot=50)
            assert iv.mean == pytest.approx(np.mean(per_seed), abs=1e-9), (agg, key)
            assert iv.n_seeds == 2 and iv.n_rooms == 6


def test_a_room_drawn_twice_counts_twice() -> None:
    """The statistic of a resample equals the suite's aggregation of the explicit list of drawn rooms."""
    (res,) = _run(4, 1, 0.5)
    rec = RunRecords.from_metrics([res])
    draw = np.array([[2, 0, 1, 1]])  # room 0 twice, room 1 never
    listed = [res["rooms"][i] for i in (0, 0, 2, 3)]
    for key in METRICS:
        want = aggregate([r["_m"] for r in listed], [r["weight"] for r in listed])[key]
        assert _statistic(rec, key, "paper", draw, np.ones((1, 1), int))[0] == pytest.approx(want, abs=1e-9)
        want = pooled_metrics([r["_m"] for r in listed])[key]
        assert _statistic(rec, key, "pooled", draw, np.ones((1, 1), int))[0] == pytest.approx(want, abs=1e-9)


def test_counts_give_the_metrics_of_the_confusion_matrix() -> None:
    rng = np.random.default_rng(3)
    for trial in range(20):
        cm = rng.integers(0, 20, size=(K, K))
        cm[rng.integers(0, K), :] = 0  # a class absent from gt
        cm[:, rng.integers(0, K)] = 0  # a class never predicted
        for exclude in (False, True):
            want = metrics_from_confusion(cm, exclude=(0,) if exclude else ())
            i, p, lab = np.diag(cm), cm.sum(0), cm.sum(1)
            for key in METRICS:
                got = metrics_from_counts(i, p, lab, key, exclude_void=exclude)
                assert (math.isnan(want[key]) and math.isnan(got)) or got == pytest.approx(want[key]), (trial, key)


def test_identical_runs_differ_by_exactly_zero() -> None:
    runs = _run(8, 3, 0.6)
    for agg in ("paper", "void_excluded", "pooled"):
        c = compare(runs, runs, "mIoU", agg, n_boot=300)
        assert (c.mean, c.lo, c.hi) == (0.0, 0.0, 0.0)
        assert c.verdict == "unresolved" and c.paired_seeds
    # seeds are paired by label, not by position
    rec = RunRecords.from_metrics(runs, seeds=["0", "1", "2"])
    shuffled = RunRecords.from_metrics([runs[2], runs[0], runs[1]], seeds=["2", "0", "1"])
    c = compare(rec, shuffled, n_boot=300)
    assert (c.lo, c.hi) == (0.0, 0.0)
    # different seed labels: drawn independently, so the same data no longer differ by exactly 0
    other = RunRecords.from_metrics(runs, seeds=["a", "b", "c"])
    c = compare(rec, other, n_boot=300)
    assert not c.paired_seeds and c.lo < 0 < c.hi and c.verdict == "unresolved"


def test_constant_rooms_have_a_zero_width_interval() -> None:
    iv = bootstrap(_scalar_run(np.full((3, 7), 42.5), weights=np.arange(1, 8)), "mIoU", n_boot=500)
    assert iv.mean == pytest.approx(42.5) and iv.lo == pytest.approx(42.5) and iv.hi == pytest.approx(42.5)


def test_intervals_of_enumerable_bootstraps() -> None:
    # two rooms (0 and 100), one seed: resampled means 0, 50, 100 with probability 1/4, 1/2, 1/4
    iv = bootstrap(_scalar_run(np.array([[0.0, 100.0]])), "mIoU", n_boot=2000)
    assert (iv.mean, iv.lo, iv.hi) == (50.0, 0.0, 100.0)
    # one room, three seeds (1, 2, 3): all-equal draws have probability 1/27 > 2.5% at either end
    iv = bootstrap(_scalar_run(np.array([[1.0], [2.0], [3.0]])), "aAcc", n_boot=2000)
    assert (iv.mean, iv.lo, iv.hi) == (2.0, 1.0, 3.0)
    # nothing to resample: no interval, and no verdict either way
    iv = bootstrap(_scalar_run(np.array([[7.0]])), "mIoU")
    assert iv.mean == 7.0 and not iv.defined
    c = compare(_scalar_run(np.array([[9.0]])), _scalar_run(np.array([[7.0]])))
    assert c.mean == 2.0 and c.verdict == "unresolved"


def test_a_clear_effect_is_reproduced_and_its_reverse_contradicted() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(50, 8, size=(3, 12))
    better = base + 10 + rng.normal(0, 1, size=base.shape)
    a, b = _scalar_run(better), _scalar_run(base)
    c = compare(a, b, "mIoU", n_boot=1000)
    assert 8 < c.lo < c.mean < c.hi < 12 and c.verdict == "reproduced"
    assert compare(b, a, "mIoU", n_boot=1000).verdict == "contradicted"
    assert compare(b, a, "mIoU", relation=">=", margin=20, n_boot=1000).verdict == "reproduced"
    # the real thing: a more skilful prediction on the same rooms
    good, bad = _run(10, 3, 0.9, seed=4), _run(10, 3, 0.3, seed=4)
    for agg in ("paper", "void_excluded", "pooled"):
        assert compare(good, bad, "mIoU", agg, n_boot=400).verdict == "reproduced", agg


def test_the_interval_covers_the_true_mean_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2026)
    mu, reps, n_rooms = 60.0, 400, 30
    hits = 0
    for rep in range(reps):
        values = rng.normal(mu, 10.0, size=(1, n_rooms))
        iv = bootstrap(_scalar_run(values), "mIoU", n_boot=400, seed=rep)
        hits += iv.lo <= mu <= iv.hi
    # the percentile bootstrap of a mean of 30 covers ~93-94% (it is narrow by sqrt((n-1)/n)); 400 draws: SE 1.1%
    print(f"coverage {hits / reps:.3f}")
    assert 0.90 <= hits / reps <= 0.975, hits / reps


def test_two_levels_cover_room_and_seed_variation() -> None:
    """Rooms and seeds both vary: the two-level interval is wider than rooms alone and covers the truth."""
    rng = np.random.default_rng(7)
    mu, reps, n_rooms, n_seeds = 50.0, 200, 20, 5
    hits = hits_rooms_only = 0
    for rep in range(reps):
        values = mu + rng.normal(0, 6, size=(1, n_rooms)) + rng.normal(0, 3, size=(n_seeds, 1)) \
            + rng.normal(0, 1, size=(n_seeds, n_rooms))
        both = bootstrap(_scalar_run(values), "mIoU", n_boot=300, seed=rep)
        rooms_only = bootstrap(_scalar_run(values[:1]), "mIoU", n_boot=300, seed=rep)
        hits += both.lo <= mu <= both.hi
        hits_rooms_only += rooms_only.lo <= mu <= rooms_only.hi
    print(f"coverage {hits / reps:.3f}, rooms only {hits_rooms_only / reps:.3f}")
    assert hits / reps >= 0.85 and hits_rooms_only / reps < 0.85, (hits / reps, hits_rooms_only / reps)


def test_deterministic() -> None:
    runs = _run(6, 2, 0.5)
    assert bootstrap(runs, "mIoU", "pooled") == bootstrap(runs, "mIoU", "pooled")
    assert compare(runs, _run(6, 2, 0.4)) == compare(runs, _run(6, 2, 0.4))
    assert bootstrap(runs, seed=1) != bootstrap(runs, seed=2)


def test_verdict_rules() -> None:
    assert verdict(0.1, 2.0, ">") == "reproduced"
    assert verdict(-2.0, -0.1, ">") == "contradicted"
    assert verdict(-1.0, 1.0, ">") == verdict(0.0, 0.0, ">") == "unresolved"
    # ">=" without a margin needs the same evidence as ">"; with a margin it is non-inferiority
    assert verdict(-1.0, 1.0, ">=") == "unresolved" and verdict(0.5, 1.0, ">=") == "reproduced"
    assert verdict(-0.5, 1.0, ">=", margin=1.0) == "reproduced"
    assert verdict(-0.9, -0.5, ">=", margin=1.0) == "reproduced"  # measurably worse, but within the margin
    assert verdict(-3.0, -1.5, ">=", margin=1.0) == "contradicted"
    assert verdict(-1.5, -0.5, ">=", margin=1.0) == "unresolved"
    assert verdict(float("nan"), float("nan")) == "unresolved"
    with pytest.raises(ValueError, match="relation"):
        verdict(0, 1, "<")
    with pytest.raises(ValueError, match="margin"):
        verdict(0, 1, ">", margin=1.0)


def test_bad_inputs_are_clear_errors() -> None:
    a = _run(4, 1, 0.5)
    b = [{"rooms": a[0]["rooms"][:3]}]
    with pytest.raises(ValueError, match="different rooms"):
        compare(a, b)
    with pytest.raises(ValueError, match="other rooms"):
        RunRecords.from_metrics([a[0], b[0]])
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap(a, "mIoUU")
    with pytest.raises(ValueError, match="aggregation"):
        bootstrap(a, "mIoU", "median")
    with pytest.raises(ValueError, match="no per-room values for void_excluded"):
        bootstrap(_scalar_run(np.ones((1, 3))), "mIoU", "void_excluded")
    assert bootstrap(a, "Dice").mean == bootstrap(a, "mDice").mean  # the paper's column names work


def test_parse_claims() -> None:
    runs = ["t", "t-ft", "t-dist", "b"]
    (c,) = parse_claims([{"better": "t-dist", "worse": "t-ft", "source": "Table 3", "text": "KD helps"}], runs)
    assert (c.relation, c.metric, c.aggregation, c.margin) == (">", "mIoU", "paper", 0.0)
    (c,) = parse_claims([{"better": "b", "worse": "t", "relation": ">=", "margin": 1.0, "metric": "Dice",
                          "aggregation": "void_excluded"}], runs)
    assert c.relation == ">=" and c.margin == 1.0
    for raw, msg in (({"better": "x", "worse": "t"}, "not a run"), ({"better": "t"}, "needs worse"),
                     ({"better": "t", "worse": "t"}, "itself"), ({"better": "t", "worse": "b", "relation": "<"}, "relation"),
                     ({"better": "t", "worse": "b", "metric": "IoU"}, "unknown metric"),
                     ({"better": "t", "worse": "b", "wrose": "b"}, "unknown key"),
                     ({"better": "t", "worse": "b", "margin": 1.0}, "margin")):
        with pytest.raises(ValueError, match=msg):
            parse_claims([raw], runs)
