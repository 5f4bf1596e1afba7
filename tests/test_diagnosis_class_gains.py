"""benchmark/diagnosis/class_gains.py on hand-made recorded runs whose per-class means are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_module import load_script


def write_run(results: Path, run: str, seeds: list[dict[str, float | None]], pano: list[dict[str, float | None]]) -> None:
    for k, (volume, panorama) in enumerate(zip(seeds, pano)):
        d = results / "runs" / run / f"seed{k}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"per_class_iou": volume}))
        (d / "panorama_metrics.json").write_text(json.dumps({"per_class_iou": panorama}))


def test_class_gains_means_over_seeds_differences_and_the_teacher(tmp_path: Path) -> None:
    script = load_script("benchmark/diagnosis/class_gains.py")
    a, b = tmp_path / "a", tmp_path / "b"
    # base in another results folder (as the track's own runs), change in this one; 'lamp' absent from one seed
    write_run(a, "ft", [{"bed": 60.0, "chair": 40.0, "lamp": None}, {"bed": 70.0, "chair": 30.0, "lamp": 20.0}],
              [{"bed": 80.0, "chair": 30.0}, {"bed": 70.0, "chair": 20.0}])
    write_run(b, "pl", [{"bed": 40.0, "chair": 40.0, "lamp": 30.0}, {"bed": 50.0, "chair": 36.0, "lamp": None}],
              [{"bed": 50.0, "chair": 10.0}, {"bed": 40.0, "chair": 20.0}])
    teacher = tmp_path / "teacher.json"
    teacher.write_text(json.dumps({"per_class_iou": {"bed": 71.0, "chair": 12.0}}))
    out = tmp_path / "gains.json"
    rec = script.main([str(b), "--base", f"ft={a}", "--change", "pl", "--teacher", str(teacher), "--out", str(out)])
    assert json.loads(out.read_text()) == rec
    assert rec["n_seeds"] == {"base": 2, "change": 2}
    v = rec["volume"]
    assert v["bed"] == {"base": 65.0, "change": 45.0, "difference": -20.0}
    assert v["chair"] == {"base": 35.0, "change": 38.0, "difference": 3.0}
    assert v["lamp"] == {"base": 20.0, "change": 30.0, "difference": 10.0}  # means over the seeds that have it
    assert list(v) == ["bed", "chair", "lamp"], "sorted from the largest loss to the largest gain"
    p = rec["panorama"]
    assert p["bed"] == pytest.approx({"base": 75.0, "change": 45.0, "difference": -30.0, "teacher": 71.0,
                                      "teacher_minus_base": -4.0})
    assert p["chair"]["teacher_minus_base"] == pytest.approx(-13.0)
    with pytest.raises(SystemExit, match="no metrics.json for run 'nosuch'"):
        script.main([str(b), "--base", "nosuch", "--change", "pl"])
