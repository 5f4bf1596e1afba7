"""benchmark/diagnosis/compare_recordings.py on hand-made recordings whose differences are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_module import load_script

ROOMS = [("r0", 1.0), ("r1", 1.0), ("r2", 2.0)]


def write_run(results: Path, run: str, per_seed: list[list[float]], rooms=ROOMS) -> None:
    """One run's metrics.json per seed: per-room mIoU (void-excluded = mIoU - 10) on ``rooms``."""
    for k, values in enumerate(per_seed):
        d = results / "runs" / run / (f"seed{k}" if len(per_seed) > 1 else "")
        d.mkdir(parents=True, exist_ok=True)
        recs = [{"uid": uid, "weight": w, "mIoU": v, "void_excluded": {"mIoU": v - 10}} for (uid, w), v in zip(rooms, values)]
        (d / "metrics.json").write_text(json.dumps({"rooms": recs}))


def test_paired_differences_of_the_runs_in_both_recordings(tmp_path: Path, capsys) -> None:
    script = load_script("benchmark/diagnosis/compare_recordings.py")
    a, b = tmp_path / "a", tmp_path / "b"
    base = [[30.0, 40.0, 50.0], [20.0, 60.0, 40.0]]
    write_run(b, "seg", base)
    write_run(a, "seg", [[v + 5.0 for v in seed] for seed in base])  # every room and seed 5 points higher
    write_run(b, "conv", [[50.0, 50.0, 50.0]])
    write_run(a, "conv", [[40.0, 60.0, 47.0]])  # one seed: -10, +10, -3 on rooms of weight 1, 1, 2
    write_run(a, "only-in-a", [[1.0, 2.0, 3.0]])
    out = tmp_path / "cmp.json"
    rec = script.main([str(a), str(b), "--out", str(out)])
    assert json.loads(out.read_text()) == rec
    assert set(rec["runs"]) == {"seg", "conv"}, "a run recorded in one folder only is left out"
    seg = rec["runs"]["seg"]["paper"]
    # B's point: weighted room means (30+40+100)/4 = 42.5 and (20+60+80)/4 = 40, their seed mean 41.25
    assert seg["b"] == pytest.approx(41.25, abs=0.01) and seg["a"] == pytest.approx(46.25, abs=0.01)
    assert (seg["difference"], seg["lo"], seg["hi"]) == (5.0, 5.0, 5.0)  # the same shift in every resample
    assert seg["verdict_a_greater"] == "reproduced" and seg["seeds"] == {"a": 2, "b": 2, "paired": True}
    assert rec["runs"]["seg"]["void_excluded"]["difference"] == 5.0
    conv = rec["runs"]["conv"]["paper"]
    assert conv["difference"] == pytest.approx((-10 + 10 - 6) / 4, abs=0.01)  # -1.5, weighted by the rooms
    assert conv["lo"] < conv["difference"] < conv["hi"] and conv["verdict_a_greater"] == "unresolved"
    assert "| seg | 46.2 | 41.2 | +5.0 [+5.0, +5.0] | +5.0 [+5.0, +5.0] | 2 / 2 paired |" in capsys.readouterr().out


def test_recordings_of_other_rooms_or_no_common_run_are_refused(tmp_path: Path) -> None:
    script = load_script("benchmark/diagnosis/compare_recordings.py")
    a, b = tmp_path / "a", tmp_path / "b"
    write_run(a, "seg", [[1.0, 2.0, 3.0]])
    write_run(b, "seg", [[1.0, 2.0, 3.0]], rooms=[("r0", 1.0), ("r1", 1.0), ("other", 2.0)])
    with pytest.raises(SystemExit, match="run 'seg': the two runs were evaluated on different rooms"):
        script.main([str(a), str(b)])
    with pytest.raises(SystemExit, match="no run is recorded in both"):
        script.main([str(a / "nothing"), str(b)])


def test_pairs_compare_runs_of_other_names(tmp_path: Path) -> None:
    script = load_script("benchmark/diagnosis/compare_recordings.py")
    a, b = tmp_path / "a", tmp_path / "b"
    base = [[30.0, 40.0, 50.0], [20.0, 60.0, 40.0]]
    write_run(b, "dist", base)
    write_run(b, "finetune", [[v + 1.0 for v in seed] for seed in base])
    write_run(a, "dist-std", [[v - 2.0 for v in seed] for seed in base])  # every room and seed 2 points lower
    rec = script.main([str(a), str(b), "--pair", "dist-std=dist"])
    assert set(rec["runs"]) == {"dist-std=dist"}
    got = rec["runs"]["dist-std=dist"]["paper"]
    assert (got["difference"], got["lo"], got["hi"], got["verdict_a_greater"]) == (-2.0, -2.0, -2.0, "contradicted")
    assert got["seeds"] == {"a": 2, "b": 2, "paired": True}
    with pytest.raises(SystemExit, match=r"run 'dist' is not recorded in .*a/runs"):
        script.main([str(a), str(b), "--pair", "dist=dist"])
    with pytest.raises(SystemExit):  # argparse's error: not A=B
        script.main([str(a), str(b), "--pair", "dist-std"])
