"""benchmark/diagnosis/same_suite.py on two hand-made suite folders: equal, then one tensor and one score apart."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from script_module import load_script


def write_suite(out: Path, weight: float = 1.0, miou: float = 50.0, config_path: str = "/a") -> None:
    """A suite folder: a block training, the teacher, a room-level run, its evaluation and the tables."""
    state = {"w": torch.full((2, 3), weight), "b": torch.zeros(3)}
    for rel in ("pretrain/m-123/model.pt", "teacher/teacher.pt", "runs/m/seed0/distill/model.pt"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": state, "config": {"out": config_path}}, out / rel)  # the config's paths differ
    for name in ("metrics.json", "panorama_metrics.json"):
        (out / "runs/m/seed0" / name).write_text(json.dumps(
            {"metrics": {"mIoU": miou}, "void_excluded": {"mIoU": miou - 5}, "per_class_iou": {"wall": miou},
             "run": {"out": config_path}}))
    for name in ("table.csv", "claims.csv", "curves.json"):
        (out / name).write_text(f"{name}\n")


def test_equal_suites_are_the_same_and_a_changed_tensor_or_score_is_named(tmp_path: Path, capsys) -> None:
    script = load_script("benchmark/diagnosis/same_suite.py")
    a, b = tmp_path / "a", tmp_path / "b"
    write_suite(a, config_path="/a")
    write_suite(b, config_path="/b")
    result = script.main([str(a), str(b), "--out", str(tmp_path / "same.json")])
    assert result["same"] and json.loads((tmp_path / "same.json").read_text()) == result
    assert {k: c["compared"] for k, c in result["checks"].items()} == {
        "block training": 1, "teacher": 1, "room-level run": 1, "evaluation": 1, "evaluation on panorama pixels": 1,
        "table.csv": 1, "claims.csv": 1, "curves.json": 1}

    write_suite(b, weight=1.0 + 1e-6, miou=50.001, config_path="/b")  # one float apart: not the same
    (b / "pretrain/m-456").mkdir()
    torch.save({"w": torch.ones(1)}, b / "pretrain/m-456/model.pt")  # a bare state dict, in B alone
    result = script.main([str(a), str(b)])
    assert not result["same"]
    block = result["checks"]["block training"]
    assert block["differ"] == {"pretrain/m-123/model.pt": "1 of 2 tensors differ, e.g. w"}
    assert block["only_b"] == ["pretrain/m-456/model.pt"] and block["only_a"] == []
    assert result["checks"]["evaluation"]["differ"] == {
        "runs/m/seed0/metrics.json": "differ in ['metrics', 'void_excluded', 'per_class_iou']"}
    assert result["checks"]["table.csv"]["differ"] == {}

    (a / "runs/m/seed0/panorama_metrics.json").write_text("{}")  # equal files without scores are not "the same"
    (b / "runs/m/seed0/panorama_metrics.json").write_text("{}")
    assert script.main([str(a), str(b)])["checks"]["evaluation on panorama pixels"]["differ"] == {
        "runs/m/seed0/panorama_metrics.json": "holds none of ['metrics', 'void_excluded', 'pooled', 'per_class_iou']"}
    assert "NOT the same" in capsys.readouterr().out
