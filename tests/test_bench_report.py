"""Suite tables with intervals and claims (bench/report.py, suite.write_tables) on real evaluation records.

The records come from evaluate() itself (a real dataset of box rooms, a real network) or are made as
evaluate() makes them (room_metrics of predictions of known skill), so the tables are checked against
the suite's own aggregations and against effects built in by construction.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_rooms import make_dataset

from panorooms3d.bench import stats
from panorooms3d.bench.evaluate import evaluate
from panorooms3d.bench.metrics import METRICS, aggregate, room_metrics
from panorooms3d.bench.report import metrics_files
from panorooms3d.bench.suite import SuiteError, load_suite, write_tables

K = 30


def test_evaluate_records_reproduce_its_aggregates(tmp_path: Path) -> None:
    """stats recomputes metrics, pooled and void_excluded of a real evaluation from its per-room records."""
    data = make_dataset(tmp_path / "data", n_rooms=3, splits={"train": [], "val": [], "test": [
        "box0/Room-0", "box1/Room-1", "box2/Room-2"]})
    torch.manual_seed(0)
    model = torch.nn.Conv3d(4, K, 1)
    result = json.loads(json.dumps(evaluate(model, data, progress=False)))  # as written to metrics.json
    rec = stats.RunRecords.from_metrics([result])
    assert rec.n_rooms == 3 and rec.counts is not None and rec.counts.shape == (1, 3, 3, K)
    for agg, section in (("paper", "metrics"), ("pooled", "pooled"), ("void_excluded", "void_excluded")):
        for key in METRICS:
            want = result[section][key]
            got = stats.bootstrap(rec, key, agg, n_boot=20).mean
            assert (want is None and np.isnan(got)) or got == pytest.approx(want, abs=1e-9), (agg, key)


def _metrics_json(rng: np.random.Generator, skill: float, label: str) -> dict:
    """A metrics.json as evaluate() writes it, for 8 rooms predicted with accuracy ~skill."""
    rooms, per_room, no_void, weights = [], [], [], []
    for i in range(8):
        room_rng = np.random.default_rng(100 + i)  # the same rooms for every run and seed
        gt = room_rng.integers(0, 6, size=2000)
        pred = np.where(rng.random(gt.size) < skill, gt, rng.integers(0, 6, size=gt.size))
        m, mv, w = room_metrics(pred, gt, K), room_metrics(pred, gt, K, exclude_void=True), 1 + i % 2
        per_room.append(m)
        no_void.append(mv)
        weights.append(w)
        rooms.append({"uid": f"house{i}/Room", "weight": w, "voxels": m["voxels"], **{k: m[k] for k in METRICS},
                      "void_excluded": {k: mv[k] for k in METRICS}, "counts": {c: m[c].tolist() for c in "IPL"}})
    from panorooms3d.bench.metrics import pooled_metrics

    pooled = pooled_metrics(per_room)
    out = {"metrics": aggregate(per_room, weights), "pooled": {k: pooled[k] for k in METRICS},
           "void_excluded": aggregate(no_void, weights), "rooms": rooms,
           "run": {"name": label, "params": 375_000, "paper_params": 0.38}}
    return json.loads(json.dumps(out, default=lambda v: None))


SUITE = """
name = "claims"
description = "claims test"

[[run]]
name = "good"
model = "3dseg-t"
label = "Good"

[[run]]
name = "poor"
model = "3dseg-t"
label = "Poor"

[[run]]
name = "same"
model = "3dseg-t"
label = "Same"

[[run]]
name = "missing"
model = "3dseg-t"
label = "Not run"

[[claim]]
better = "good"
worse = "poor"
source = "Table 3"
text = "skill helps"

[[claim]]
better = "poor"
worse = "good"
metric = "Dice"
aggregation = "void_excluded"
source = "made up"

[[claim]]
better = "same"
worse = "good"
relation = ">="

[[claim]]
better = "good"
worse = "missing"
aggregation = "pooled"
"""


def test_tables_with_seeds_intervals_and_claims(tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    rng = np.random.default_rng(0)
    written = {}
    for k in (0, 1, 2):  # three seeds in the several-seed layout
        written[("good", k)] = _metrics_json(rng, 0.9, "good")
        written[("same", k)] = written[("good", k)]  # the same predictions as "good", seed by seed
    written[("poor", None)] = _metrics_json(rng, 0.4, "poor")  # one seed: runs/poor/metrics.json
    for (name, k), m in written.items():
        p = out / "runs" / name / ("metrics.json" if k is None else f"seed{k}/metrics.json")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(m))
    assert [s for s, _ in metrics_files(out / "runs" / "good")] == ["0", "1", "2"]
    assert [s for s, _ in metrics_files(out / "runs" / "poor")] == ["single"]
    assert metrics_files(out / "runs" / "missing") == []

    res = write_tables(suite, out)
    with open(res.table_csv) as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    good = rows["Good"]
    want = np.mean([written[("good", k)]["metrics"]["mIoU"] for k in range(3)])
    assert float(good["mIoU"]) == pytest.approx(want, abs=1e-3), "the mean over seeds"
    assert (good["n_seeds"], good["n_rooms"], rows["Poor"]["n_seeds"]) == ("3", "8", "1")
    for col in ("aAcc", "mIoU", "Dice", "mIoU_pooled", "mIoU_void_excluded"):
        assert float(good[f"{col}_lo"]) <= float(good[f"{col}_hi"]), col
    assert float(good["mIoU_lo"]) <= float(good["mIoU"]) <= float(good["mIoU_hi"])
    assert rows["Not run"]["mIoU"] == rows["Not run"]["mIoU_lo"] == rows["Not run"]["n_seeds"] == ""

    md = res.markdown
    lo, hi = float(good["mIoU_lo"]), float(good["mIoU_hi"])
    assert f"| Good | {float(good['aAcc']):.1f} [" in md and f"{float(good['mIoU']):.1f} [{lo:.1f}, {hi:.1f}]" in md
    assert "| Not run | – | – |" in md
    assert "| seeds | test rooms |" in md and "| 0.38 | 0.38 | 3 | 8 |" in md

    with open(res.claims_csv) as f:
        claims = list(csv.DictReader(f))
    assert [c["verdict"] for c in claims] == ["reproduced", "contradicted", "unresolved", "–"]
    assert float(claims[0]["difference_lo"]) > 0 and claims[0]["paired_seeds"] == "false"
    assert float(claims[2]["difference"]) == float(claims[2]["difference_lo"]) == float(claims[2]["difference_hi"]) == 0
    assert claims[2]["paired_seeds"] == "true", "same seeds: paired, so identical predictions differ by exactly 0"
    assert "| Good > Poor: skill helps | Table 3 | mIoU | +" in md
    assert "| Same ≥ Good | – | mIoU | +0.0 [+0.0, +0.0] | unresolved | 3 vs 3 paired, 8 rooms |" in md
    assert "no results for Not run" in md and "Dice (void excluded)" in md


def test_claims_in_suite_files_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "ok.toml"
    good.write_text(SUITE)
    suite = load_suite(good)
    assert [(c.better, c.worse, c.relation) for c in suite.claims][:2] == [("good", "poor", ">"), ("poor", "good", ">")]
    bad = tmp_path / "bad.toml"
    bad.write_text(SUITE.replace('worse = "poor"', 'worse = "nosuch"'))
    with pytest.raises(SuiteError, match=r"bad\.toml.*'nosuch' is not a run"):
        load_suite(bad)
    bad.write_text(SUITE.replace('relation = ">="', 'relation = "<"'))
    with pytest.raises(SuiteError, match="unknown relation"):
        load_suite(bad)


def test_training_curves_name_each_training_by_its_model_settings(tmp_path: Path) -> None:
    from panorooms3d.bench.report import training_curves

    runs = {"a": ({}, 0, [(100, 10.0), (400, 20.0), (500, 20.5)]),
            "b": ({"stem": "conv"}, 0, [(100, 12.0), (500, 30.0)]),
            "c": ({"skip": False, "patch_size": 2}, 1, [(100, 5.0)]),
            "d": ({}, 0, [(100, 8.0)])}
    for folder, (overrides, seed, points) in runs.items():
        d = tmp_path / "pretrain" / folder
        d.mkdir(parents=True)
        cfg = {"model": "3dseg-t", "model_overrides": overrides, "seed": seed}
        if folder == "d":
            cfg["rooms"] = ["synth-1-*", "box?/*"]
        (d / "config.json").write_text(json.dumps(cfg))
        lines = [{"iteration": i, "loss": 1.0} for i in (1, 2)] + [{"iteration": i, "val_mIoU": v} for i, v in points]
        (d / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    curves = {c["name"]: c for c in training_curves(tmp_path)}
    assert list(curves) == ["3dseg-t seed0", "3dseg-t (stem=conv) seed0", "3dseg-t-noskip (patch_size=2) seed1",
                            "3dseg-t (rooms synth-1-*, box?/*) seed0"]
    def one_point_training(suite: str, folder: str, **cfg) -> None:
        """A block training of 3DSeg-T, seed 0, with ``cfg`` in its config.json and one validation point."""
        d = tmp_path / suite / "pretrain" / folder
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"model": "3dseg-t", "seed": 0, **cfg}))
        (d / "train_log.jsonl").write_text(json.dumps({"iteration": 400, "val_mIoU": 40.0}) + "\n")

    # two trainings that share a name (the same model and seed) are told apart by the settings they differ in
    for folder, block, batch in (("e", [64, 64, 32], 2), ("f", [64, 64, 64], 1)):
        one_point_training("more", folder, out=str(tmp_path / "more" / "pretrain" / folder), block=block,
                           batch_size=batch, iterations=5600)
    assert [c["name"] for c in training_curves(tmp_path / "more")] == [
        "3dseg-t seed0 (batch_size=2, block=[64, 64, 32])", "3dseg-t seed0 (batch_size=1, block=[64, 64, 64])"]
    # a config.json written before a setting existed (no "ema") has that setting's default, not None
    one_point_training("older", "g")
    one_point_training("older", "h", ema=0.99)
    assert [c["name"] for c in training_curves(tmp_path / "older")] == ["3dseg-t seed0 (ema=0.0)",
                                                                          "3dseg-t seed0 (ema=0.99)"]
    # a training taught by another (block_teacher, an absolute path in its config.json) is named by the teacher's
    # folder, not told apart by that path
    one_point_training("taught", "i")
    one_point_training("taught", "j", block_teacher=str(tmp_path / "taught" / "pretrain" / "sc-1" / "model.pt"))
    assert [c["name"] for c in training_curves(tmp_path / "taught")] == ["3dseg-t seed0",
                                                                           "3dseg-t (block teacher sc-1) seed0"]
    # gain of the last 20%: the final value minus the last one at or before 80% of the final iteration
    assert curves["3dseg-t seed0"]["gain_last_20"] == pytest.approx(0.5)
    assert curves["3dseg-t (stem=conv) seed0"]["gain_last_20"] == pytest.approx(18.0)
    assert curves["3dseg-t-noskip (patch_size=2) seed1"]["gain_last_20"] is None  # one point: nothing before 80%
    # the picture has a panel per kind of training the suite has: block training only -> one panel
    import matplotlib.image

    from panorooms3d.bench.report import plot_training_curves

    rows = list(curves.values())
    plot_training_curves(rows, tmp_path / "one.png")
    rows.append({**rows[0], "name": "3dseg-t-finetune/seed0", "kind": "room level"})
    plot_training_curves(rows, tmp_path / "two.png")
    one, two = (matplotlib.image.imread(tmp_path / f"{n}.png").shape for n in ("one", "two"))
    assert one[1] / one[0] < 1.8 < 2.4 < two[1] / two[0]
