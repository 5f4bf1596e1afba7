"""Uncertainty of benchmark numbers: a two-level bootstrap over test rooms and seeds, paired comparisons, claims.

A run is evaluated once per training seed; each evaluation (``metrics.json``) lists its test rooms
under ``rooms`` with the room's ``weight`` (the paper's volume in 128^3 blocks) and its per-room
metrics. :class:`RunRecords` gathers those records, one row per seed, rooms in one order.

**The statistic** is computed exactly as the suite does, for one seed:

- ``"paper"`` (the paper's protocol): per-room metric averaged over rooms weighted by ``weight``; a room
  whose value is NaN (undefined) does not count and the weights are renormalised
  (:func:`panorooms3d.bench.metrics.aggregate`);
- ``"void_excluded"``: the same with the per-room values computed without class 0;
- ``"pooled"``: the metric of the summed per-room counts I, P, L (intersection, predicted, labelled per
  class; :func:`panorooms3d.bench.metrics.pooled_metrics`).

With several seeds the statistic is the mean over seeds of the per-seed statistic (what the table shows).

**The bootstrap** (percentile, ``n_boot`` resamples, fixed RNG seed: deterministic): each resample draws
S seeds from the S seeds with replacement and R rooms from the R rooms with replacement; the same room
draw is applied to every drawn seed (rooms are matched by uid), so room-to-room variation and
seed-to-seed variation both enter. A room drawn twice counts twice. With one seed this is a bootstrap
over rooms only; with one room, over seeds only; with one room and one seed there is nothing to
resample and the interval is undefined (NaN). The interval is the 2.5th and 97.5th percentile of the
resampled statistics; the point value (``mean``) is the statistic of the observed data, not the
bootstrap average.

**A paired comparison** of runs A and B evaluates both on the same resampled rooms. When both runs
have the same seeds (e.g. seed k of a distilled student starts from seed k of the block-trained one)
the seed draw is shared too; otherwise each run's seeds are drawn independently (a run with one seed
always uses it). The difference A - B of every resample gives the interval.

**Verdicts** for a claim "A > B" or "A >= B" about a metric (higher is better), with the interval
[lo, hi] of A - B and a margin m >= 0 (metric points, default 0, only for ">="):

- ``>``: ``reproduced`` when lo > 0 (A measurably better), ``contradicted`` when hi < 0 (B measurably
  better), otherwise ``unresolved`` (the interval contains 0).
- ``>=``: the claim is A - B >= -m. ``reproduced`` when lo > -m, ``contradicted`` when hi < -m,
  otherwise ``unresolved``. With m = 0 this needs the same evidence as ">": an interval can never
  show that two runs are equal, so "no measurable difference" stays ``unresolved`` (consistent with
  the claim, not a demonstration of it). A suite that means non-inferiority states its margin.

An undefined interval (nothing to resample, or a metric NaN in most resamples) gives ``unresolved``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from panorooms3d.bench.metrics import METRICS

AGGREGATIONS = ("paper", "pooled", "void_excluded")
RELATIONS = (">", ">=")
VERDICTS = ("reproduced", "contradicted", "unresolved")
#: resamples of every interval, and the RNG seed that makes them deterministic
N_BOOT = 2000
BOOT_SEED = 0
LEVEL = 0.95
#: the paper's column names (Table 1 header) accepted as metric names
METRIC_ALIASES = {"Dice": "mDice", "Fscore": "mFscore", "Precision": "mPrecision", "Recall": "mRecall"}
_CHUNK = 500  # resamples drawn and evaluated at a time (fixed: the output does not depend on memory)


def metric_key(name: str) -> str:
    """The :data:`METRICS` key of a metric name (``"mIoU"``, or the paper's column name ``"Dice"`` ...).

    Raises:
        ValueError: not a metric.
    """
    key = METRIC_ALIASES.get(name, name)
    if key not in METRICS:
        raise ValueError(f"unknown metric {name!r}; one of {', '.join(METRICS)} (or Dice, Fscore, Precision, Recall)")
    return key


@dataclass(frozen=True)
class RunRecords:
    """The per-room records of one run's evaluations: one row per seed, the same rooms in the same order.

    Attributes:
        seeds: (S,) seed labels. uids: (R,) room uids. weights: (R,) float64 room weights.
        values: ``(aggregation, metric)`` -> (S, R) float64 per-room values (NaN where undefined) for
            ``"paper"`` and, when every record has them, ``"void_excluded"``.
        counts: (S, R, 3, K) int64 per-room I, P, L per class, or None when a record lacks them.
    """

    seeds: tuple[str, ...]
    uids: tuple[str, ...]
    weights: np.ndarray
    values: dict = field(repr=False)
    counts: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_metrics(cls, results: Sequence[dict], seeds: Sequence[str] | None = None) -> RunRecords:
        """Records from one evaluation result (``metrics.json`` contents) per seed.

        Raises:
            ValueError: no results, a result without ``rooms``, duplicate uids, or seeds that were
                evaluated on different rooms or with different room weights.
        """
        if not results:
            raise ValueError("no evaluation results")
        seeds = tuple(str(s) for s in (seeds if seeds is not None else range(len(results))))
        if len(seeds) != len(results) or len(set(seeds)) != len(seeds):
            raise ValueError(f"{len(results)} results need as many distinct seed labels, got {list(seeds)}")
        rooms0 = results[0].get("rooms")
        if not rooms0:
            raise ValueError("an evaluation result has no per-room records ('rooms')")
        uids = tuple(str(r["uid"]) for r in rooms0)
        if len(set(uids)) != len(uids):
            raise ValueError("an evaluation lists a room twice")
        weights = np.array([float(r["weight"]) for r in rooms0], np.float64)
        by_seed = []
        for s, res in zip(seeds, results):
            rooms = {str(r["uid"]): r for r in res.get("rooms") or []}
            if set(rooms) != set(uids) or len(rooms) != len(res["rooms"]):
                raise ValueError(f"seed {s} was evaluated on other rooms than seed {seeds[0]}")
            ordered = [rooms[u] for u in uids]
            if not np.array_equal([float(r["weight"]) for r in ordered], weights):
                raise ValueError(f"seed {s} gives the rooms other weights than seed {seeds[0]}")
            by_seed.append(ordered)
        values = {}
        for key in METRICS:
            values[("paper", key)] = np.array([[_num(r.get(key)) for r in rs] for rs in by_seed], np.float64)
        if all("void_excluded" in r for rs in by_seed for r in rs):
            for key in METRICS:
                values[("void_excluded", key)] = np.array([[_num(r["void_excluded"].get(key)) for r in rs]
                                                           for rs in by_seed], np.float64)
        counts = None
        if all("counts" in r for rs in by_seed for r in rs):
            counts = np.array([[[r["counts"][c] for c in ("I", "P", "L")] for r in rs] for rs in by_seed], np.int64)
        return cls(seeds=seeds, uids=uids, weights=weights, values=values, counts=counts)

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def n_rooms(self) -> int:
        return len(self.uids)

    def has(self, metric: str, aggregation: str = "paper") -> bool:
        """Whether the records hold what ``(metric, aggregation)`` needs (older files lack some)."""
        _check_aggregation(aggregation)
        if aggregation == "pooled":
            return self.counts is not None
        return (aggregation, metric_key(metric)) in self.values

    def reordered(self, uids: Sequence[str]) -> RunRecords:
        """The same records with the rooms in the order of ``uids`` (the same set)."""
        if set(uids) != set(self.uids) or len(uids) != len(self.uids):
            raise ValueError("the two runs were evaluated on different rooms; a paired comparison needs the same rooms")
        idx = np.array([self.uids.index(u) for u in uids])
        return RunRecords(seeds=self.seeds, uids=tuple(uids), weights=self.weights[idx],
                          values={k: v[:, idx] for k, v in self.values.items()},
                          counts=None if self.counts is None else self.counts[:, idx])


@dataclass(frozen=True)
class Interval:
    """A statistic with its bootstrap interval (``lo``/``hi`` NaN when undefined)."""

    mean: float
    lo: float
    hi: float
    n_seeds: int
    n_rooms: int
    n_boot: int

    @property
    def defined(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)


@dataclass(frozen=True)
class Comparison:
    """The difference A - B of a statistic between two runs, its interval and the verdict on the claim."""

    mean: float
    lo: float
    hi: float
    verdict: str
    relation: str
    margin: float
    paired_seeds: bool
    n_rooms: int
    n_seeds: tuple[int, int]
    n_boot: int


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def _check_aggregation(aggregation: str) -> None:
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; one of {', '.join(AGGREGATIONS)}")


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(a, np.float64) / np.asarray(b, np.float64)
    return np.where(np.asarray(b) == 0, np.nan, out)


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    n = ok.sum(-1)
    s = np.where(ok, x, 0.0).sum(-1)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def metrics_from_counts(inter: np.ndarray, pred: np.ndarray, label: np.ndarray, metric: str,
                        *, exclude_void: bool = False) -> np.ndarray:
    """One metric (percent) from per-class counts, vectorised over leading axes.

    Args:
        inter, pred, label: (..., K) counts I, P, L (float or int; a resampled sum may count a room twice).
        metric: a :data:`METRICS` key. exclude_void: leave class 0 out of the mean.

    Returns:
        (...) float64; the definitions and NaN rules of :mod:`panorooms3d.bench.metrics`.
    """
    metric = metric_key(metric)
    i, p, lab = (np.asarray(a, np.float64) for a in (inter, pred, label))
    if exclude_void:
        i, p, lab = i[..., 1:], p[..., 1:], lab[..., 1:]
    if metric == "aAcc":
        return 100.0 * _div(i.sum(-1), lab.sum(-1))
    if metric == "mIoU":
        per = _div(i, p + lab - i)
    elif metric in ("mAcc", "mRecall"):
        per = _div(i, lab)
    elif metric == "mDice":
        per = _div(2 * i, p + lab)
    elif metric == "mPrecision":
        per = _div(i, p)
    else:  # mFscore
        pr, rc = _div(i, p), _div(i, lab)
        with np.errstate(invalid="ignore"):
            per = _div(2 * pr * rc, pr + rc)
        per = np.where(np.isfinite(pr) & np.isfinite(rc), per, np.nan)
    return 100.0 * _nanmean_rows(per)


def _statistic(rec: RunRecords, metric: str, aggregation: str, rooms: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The statistic for each resample: rooms (B, R) and seeds (B, S) multiplicities -> (B,)."""
    per_seed = np.empty((rooms.shape[0], rec.n_seeds))
    c = rooms.astype(np.float64)
    for s in range(rec.n_seeds):
        if aggregation == "pooled":
            cnt = rec.counts[s].astype(np.float64)  # (R, 3, K)
            sums = [c @ cnt[:, j, :] for j in range(3)]
            per_seed[:, s] = metrics_from_counts(*sums, metric, exclude_void=False)
        else:
            v = rec.values[(aggregation, metric)][s]
            ok = np.isfinite(v) & (rec.weights > 0)
            num = c @ np.where(ok, v * rec.weights, 0.0)
            den = c @ np.where(ok, rec.weights, 0.0)
            per_seed[:, s] = _div(num, den)
    d = seeds.astype(np.float64)
    return np.where(d > 0, per_seed * d, 0.0).sum(1) / d.sum(1)


def _draws(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(size, n) multiplicities of n items drawn n times with replacement."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=size)


def _percentiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    ok = np.isfinite(stats)
    if ok.sum() < 0.5 * len(stats):
        return float("nan"), float("nan")
    a = 100 * (1 - level) / 2
    lo, hi = np.percentile(stats[ok], [a, 100 - a])
    return float(lo), float(hi)


def _point(rec: RunRecords, metric: str, aggregation: str) -> float:
    return float(_statistic(rec, metric, aggregation, np.ones((1, rec.n_rooms), np.int64),
                            np.ones((1, rec.n_seeds), np.int64))[0])


def _prepare(rec: RunRecords | Sequence[dict], metric: str, aggregation: str) -> tuple[RunRecords, str]:
    if not isinstance(rec, RunRecords):
        rec = RunRecords.from_metrics(rec)
    _check_aggregation(aggregation)
    key = metric_key(metric)
    if not rec.has(key, aggregation):
        raise ValueError(f"the records hold no per-room values for {aggregation} {key} (evaluated by an older version?)")
    return rec, key


def bootstrap(rec: RunRecords | Sequence[dict], metric: str = "mIoU", aggregation: str = "paper", *,
              n_boot: int = N_BOOT, seed: int = BOOT_SEED, level: float = LEVEL) -> Interval:
    """The statistic of one run and its percentile interval over resampled rooms and seeds.

    Args:
        rec: the run's records, or its evaluation results (one per seed).
        metric: a :data:`METRICS` key or the paper's column name. aggregation: one of :data:`AGGREGATIONS`.
        n_boot: resamples. seed: RNG seed (the same inputs give the same interval). level: 0.95.

    Raises:
        ValueError: bad metric or aggregation, or records without what they need.
    """
    rec, key = _prepare(rec, metric, aggregation)
    mean = _point(rec, key, aggregation)
    if rec.n_rooms < 2 and rec.n_seeds < 2:
        return Interval(mean, float("nan"), float("nan"), rec.n_seeds, rec.n_rooms, 0)
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, n_boot, _CHUNK):
        b = min(_CHUNK, n_boot - start)
        rooms = _draws(rng, rec.n_rooms, b)
        seeds = _draws(rng, rec.n_seeds, b)
        stats.append(_statistic(rec, key, aggregation, rooms, seeds))
    lo, hi = _percentiles(np.concatenate(stats), level)
    return Interval(mean, lo, hi, rec.n_seeds, rec.n_rooms, n_boot)


def verdict(lo: float, hi: float, relation: str = ">", margin: float = 0.0) -> str:
    """The verdict on "A <relation> B" from the interval [lo, hi] of A - B (see the module docstring)."""
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation {relation!r}; one of {', '.join(RELATIONS)}")
    if margin < 0 or (relation == ">" and margin != 0):
        raise ValueError("a margin is >= 0 and only for a '>=' claim")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "unresolved"
    floor = -margin if relation == ">=" else 0.0
    if lo > floor:
        return "reproduced"
    if hi < floor:
        return "contradicted"
    return "unresolved"


def compare(a: RunRecords | Sequence[dict], b: RunRecords | Sequence[dict], metric: str = "mIoU",
            aggregation: str = "paper", *, relation: str = ">", margin: float = 0.0, n_boot: int = N_BOOT,
            seed: int = BOOT_SEED, level: float = LEVEL) -> Comparison:
    """Paired comparison of run A against run B: the difference A - B on the same resampled rooms.

    Seeds are shared between the runs when both have the same seed labels, drawn independently otherwise.
    The verdict is on the claim "A <relation> B" (see the module docstring).

    Raises:
        ValueError: bad metric, aggregation or relation; runs evaluated on different rooms or weights.
    """
    verdict(0.0, 0.0, relation, margin)  # validates relation and margin
    a, key = _prepare(a, metric, aggregation)
    b, _ = _prepare(b, metric, aggregation)
    b = b.reordered(a.uids)
    if not np.array_equal(a.weights, b.weights):
        raise ValueError("the two runs give the same rooms different weights")
    paired = set(a.seeds) == set(b.seeds)
    mean = _point(a, key, aggregation) - _point(b, key, aggregation)
    n_rooms = a.n_rooms
    if n_rooms < 2 and a.n_seeds < 2 and b.n_seeds < 2:
        return Comparison(mean, float("nan"), float("nan"), "unresolved", relation, margin, paired, n_rooms,
                          (a.n_seeds, b.n_seeds), 0)
    order_b = np.array([b.seeds.index(s) for s in a.seeds]) if paired else None
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, n_boot, _CHUNK):
        n = min(_CHUNK, n_boot - start)
        rooms = _draws(rng, n_rooms, n)
        seeds_a = _draws(rng, a.n_seeds, n)
        if paired:
            seeds_b = np.empty_like(seeds_a)
            seeds_b[:, order_b] = seeds_a
        else:
            seeds_b = _draws(rng, b.n_seeds, n)
        diffs.append(_statistic(a, key, aggregation, rooms, seeds_a) - _statistic(b, key, aggregation, rooms, seeds_b))
    lo, hi = _percentiles(np.concatenate(diffs), level)
    return Comparison(mean, lo, hi, verdict(lo, hi, relation, margin), relation, margin, paired, n_rooms,
                      (a.n_seeds, b.n_seeds), n_boot)


# -- claims in suite files -------------------------------------------------------------------------------------

CLAIM_KEYS = {"better", "worse", "relation", "metric", "aggregation", "margin", "source", "text"}


@dataclass(frozen=True)
class Claim:
    """A claim of a suite: run ``better`` <relation> run ``worse`` on ``metric`` (``aggregation``)."""

    better: str
    worse: str
    relation: str = ">"
    metric: str = "mIoU"
    aggregation: str = "paper"
    margin: float = 0.0
    source: str = ""
    text: str = ""


def parse_claims(raw, run_names: Sequence[str]) -> list[Claim]:
    """Claims from a suite's ``[[claim]]`` tables; checks keys, run names, relation, metric, margin.

    Raises:
        ValueError: a message naming the claim (the caller adds the file).
    """
    if not isinstance(raw, list):
        raise ValueError("claim must be an array of tables ([[claim]])")
    claims = []
    for i, c in enumerate(raw):
        where = f"[[claim]] #{i + 1}"
        if not isinstance(c, dict):
            raise ValueError(f"{where} must be a table")
        bad = sorted(set(c) - CLAIM_KEYS)
        if bad:
            raise ValueError(f"unknown key(s) {', '.join(bad)} in {where}; allowed: {', '.join(sorted(CLAIM_KEYS))}")
        for k in ("better", "worse"):
            if k not in c:
                raise ValueError(f"{where} needs {k} = <run name>")
            if c[k] not in run_names:
                raise ValueError(f"{where}: {k} = {c[k]!r} is not a run of this suite; runs: {', '.join(run_names)}")
        if c["better"] == c["worse"]:
            raise ValueError(f"{where} compares run {c['better']!r} with itself")
        claim = Claim(better=str(c["better"]), worse=str(c["worse"]), relation=str(c.get("relation", ">")),
                      metric=str(c.get("metric", "mIoU")), aggregation=str(c.get("aggregation", "paper")),
                      margin=float(c.get("margin", 0.0)), source=str(c.get("source", "")), text=str(c.get("text", "")))
        try:
            metric_key(claim.metric)
            _check_aggregation(claim.aggregation)
            verdict(0.0, 0.0, claim.relation, claim.margin)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
        claims.append(claim)
    return claims
