"""Taxonomy: the raw 3D-FRONT ids and the paper's 30-class merge, against labels.md."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from panorooms3d import taxonomy

LABELS_MD = Path(__file__).resolve().parents[2] / "shared" / "reference" / "labels.md"


def test_raw_ids_cover_0_to_98() -> None:
    assert taxonomy.NUM_RAW == 99
    assert taxonomy.RAW_NAMES[0] == "void" and taxonomy.RAW_NAMES[98] == "door"
    assert taxonomy.RAW_NAMES[taxonomy.FLOOR] == "floor"
    assert taxonomy.RAW_NAMES[taxonomy.WALL] == "wallinner"


@pytest.mark.skipif(not LABELS_MD.exists(), reason="shared/reference/labels.md not beside the checkout")
def test_tables_match_the_reference() -> None:
    text = LABELS_MD.read_text()
    raw = dict(re.findall(r"^\| (\d+) \| ([^|]+?) \|$", text, re.M))
    assert {int(k): v for k, v in raw.items()} == dict(enumerate(taxonomy.RAW_NAMES))


def test_paper30_is_a_partition_of_the_raw_ids() -> None:
    cs = taxonomy.get_class_set("paper30")
    assert cs.num_classes == 30
    seen = sorted(r for _, ids in taxonomy.PAPER30 for r in ids)
    assert seen == list(range(99)), "every raw id belongs to exactly one class"
    assert cs.map(np.array([0, 40, 51, 30, 17, 96, 98, 58])).tolist() == [0, 17, 20, 1, 13, 7, 5, 5]
    assert cs.map(np.array([[250]], np.uint8)).tolist() == [[0]], "ids beyond 98 are void"
    assert cs.colours.shape == (30, 3) and cs.colours[0].tolist() == [0, 0, 0]
    assert len({tuple(c) for c in cs.colours}) == 30, "colours are distinct"


def test_lookup_is_case_insensitive_and_counts_unknowns() -> None:
    lookup = taxonomy.LabelLookup()
    assert lookup("WallInner") == 40
    assert lookup("Floor") == 51
    assert lookup("  Double   Bed ") == 67
    assert lookup("side cabinet") == 28, "each part of a ' / ' name answers"
    assert lookup("L-shaped Sofa") == 96
    assert lookup("spaceship") == taxonomy.OTHERS
    assert lookup("spaceship") == taxonomy.OTHERS
    assert lookup(None) == taxonomy.OTHERS
    assert lookup.unknown["spaceship"] == 2 and lookup.unknown["<empty>"] == 1
    assert taxonomy.raw_id("Baseboard") == 38 and taxonomy.raw_id("spaceship") is None


def test_colourise_and_unknown_class_set() -> None:
    img = taxonomy.colourise(np.array([[0, 51], [40, 17]], np.uint8))
    assert img.shape == (2, 2, 3) and img.dtype == np.uint8 and img[0, 0].tolist() == [0, 0, 0]
    with pytest.raises(KeyError, match="paper30"):
        taxonomy.get_class_set("nope")
