"""benchmark/diagnosis/teacher_lead.py's per-class lead on hand-made scores."""

from __future__ import annotations

import pytest
from script_module import load_script


def test_lead_per_class_and_the_classes_the_teacher_leads() -> None:
    script = load_script("benchmark/diagnosis/teacher_lead.py")
    teacher = {"void": 99.0, "wall": 90.0, "bed": 30.0, "mirror": 75.0, "lamp": 10.0}
    # two students; 'mirror' seen by one only, 'lamp' by none (left out)
    students = [{"void": 98.0, "wall": 80.0, "bed": 90.0, "mirror": 15.0}, {"void": 97.0, "wall": 84.0, "bed": 94.0}]
    table = script.lead(teacher, students)
    assert list(table) == ["mirror", "wall", "void", "bed"], "largest lead first"
    assert table["wall"] == pytest.approx({"teacher": 90.0, "students": 82.0, "lead": 8.0})
    assert table["mirror"]["students"] == 15.0 and table["bed"]["lead"] == pytest.approx(-62.0)
    assert "lamp" not in table
    assert script.lead_classes(table) == ["mirror", "wall"], "void never counts; bed, behind, is left out"
