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


# ----------------------------------------------------------------------------- every real naming

CATEGORIES_TXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "3d-front-samples" / "categories.txt"

#: Expected raw name (a row of labels.md's raw table) and paper30 class (a row of its merge table) of
#: every string of categories.txt sections A, A2, B, C and D, written by hand from labels.md:
#: 2020 names are raw names; a renamed current name keeps its 2020 name's id (King-size Bed was
#: Double Bed, Coffee Table was Tea Table, Loveseat Sofa was Two-seat Sofa, Wine Cabinet was Wine
#: Cooler...); a new current name takes its super-category's raw id (Floor Lamp -> lighting).
EXPECTED = """
Ceiling Lamp | ceiling lamp | lamp
Coffee Table | tea table | table
Corner/Side Table | corner/side table | table
Dining Chair | dining chair | chair
Dining Table | dining table | table
Dressing Chair | dressing chair | chair
Dressing Table | dressing table | table
Footstool / Sofastool / Bed End Stool / Stool | footstool / sofastool / bed end stool / stool | stool
King-size Bed | double bed | bed
Lounge Chair / Cafe Chair / Office Chair | lounge chair / book-chair / computer chair | chair
Nightstand | nightstand | cabinet
Pendant Lamp | pendant lamp | lamp
Sideboard / Side Cabinet / Console table | sideboard / side cabinet / console | cabinet
Single bed | single bed | bed
TV Stand | tv stand | cabinet
Three-seat / Multi-seat Sofa | three-seat / multi-person sofa | sofa
Wardrobe | wardrobe | wardrobe
armchair | armchair | chair
\u5de5\u827a\u54c1 | others | others
\u690d\u7269 | plants | plant
\u843d\u5730\u706f | lighting | lamp
Baseboard | baseboard | baseboard
WallInner | wallinner | wall
WallTop | walltop | wall
WallBottom | wallbottom | wall
Cabinet | cabinet | cabinet
Pocket | pocket | door(+window)
WallOuter | wallouter | wall
Door | door | door(+window)
BayWindow | baywindow | door(+window)
Floor | floor | floor
CustomizedFeatureWall | customizedfeaturewall | wall
CustomizedCeiling | customizedceiling | ceiling
Ceiling | ceiling | ceiling
Cornice | cornice | ceiling
Hole | hole | door(+window)
Window | window | door(+window)
CustomizedPersonalizedModel | customizedpersonalizedmodel | customized platform
Cabinet/Shelf/Desk | cabinet/shelf/desk | cabinet
Bed | bed | bed
Chair | chair | chair
Table | table | table
Sofa | sofa | sofa
Pier/Stool | pier/stool | stool
Lighting | lighting | lamp
Others | others | others
Children Cabinet | children cabinet | cabinet
Bookcase / jewelry Armoire | bookcase / jewelry armoire | cabinet
Sideboard / Side Cabinet / Console Table | sideboard / side cabinet / console | cabinet
Wine Cabinet | wine cooler | appliance
Drawer Chest / Corner cabinet | drawer chest / corner cabinet | cabinet
Shelf | shelf | cabinet
Round End Table | round end table | table
Bunk Bed | bunk bed | bed
Bed Frame | bed frame | bed
Kids Bed | kids bed | bed
Classic Chinese Chair | classic chinese chair | chair
Barstool | barstool | stool
Desk | desk | table
Three-Seat / Multi-seat Sofa | three-seat / multi-person sofa | sofa
Loveseat Sofa | two-seat sofa | sofa
L-shaped Sofa | l-shaped sofa | sofa
Lazy Sofa | lazy sofa | sofa
Chaise Longue Sofa | chaise longue sofa | sofa
Shoe Cabinet | cabinet/shelf/desk | cabinet
Couch Bed | bed | bed
Hanging Chair | chair | chair
Folding chair | chair | chair
Bar | table | table
U-shaped Sofa | sofa | sofa
Floor Lamp | lighting | lamp
Wall Lamp | lighting | lamp
Lounge Chair / Book-chair / Computer Chair | lounge chair / book-chair / computer chair | chair
Double Bed | double bed | bed
Sideboard / Side Cabinet / Console | sideboard / side cabinet / console | cabinet
Two-seat Sofa | two-seat sofa | sofa
Three-Seat / Multi-person sofa | three-seat / multi-person sofa | sofa
Tea Table | tea table | table
Wine Cooler | wine cooler | appliance
desk | desk | table
nightstand | nightstand | cabinet
king-size bed | double bed | bed
single bed | single bed | bed
kids bed | kids bed | bed
ceiling lamp | ceiling lamp | lamp
pendant lamp | pendant lamp | lamp
bookcase/jewelry armoire | bookcase / jewelry armoire | cabinet
tv stand | tv stand | cabinet
wardrobe | wardrobe | wardrobe
lounge chair/cafe chair/office chair | lounge chair / book-chair / computer chair | chair
dining chair | dining chair | chair
classic chinese chair | classic chinese chair | chair
dressing table | dressing table | table
dressing chair | dressing chair | chair
corner/side table | corner/side table | table
dining table | dining table | table
round end table | round end table | table
drawer chest/corner cabinet | drawer chest / corner cabinet | cabinet
sideboard/side cabinet/console table | sideboard / side cabinet / console | cabinet
children cabinet | children cabinet | cabinet
shelf | shelf | cabinet
footstool/sofastool/bed end stool/stool | footstool / sofastool / bed end stool / stool | stool
coffee table | tea table | table
loveseat sofa | two-seat sofa | sofa
three-seat/multi-seat sofa | three-seat / multi-person sofa | sofa
l-shaped sofa | l-shaped sofa | sofa
lazy sofa | lazy sofa | sofa
chaise longue sofa | chaise longue sofa | sofa
barstool | barstool | stool
wine cabinet | wine cooler | appliance
"""


def _expected() -> dict[str, tuple[str, str]]:
    out = {}
    for line in EXPECTED.strip().splitlines():
        string, raw, cls = (c.strip() for c in line.split("|"))
        out[string] = (raw, cls)
    return out


def _category_strings(text: str) -> dict[str, list[str]]:
    """The strings of each section of categories.txt (A, A2, B, C, D), as written."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"^## (\w+)\.", line)
        if head:
            current = head.group(1)
            sections[current] = []
            continue
        if current is None or not line.strip() or line.startswith("#") or current == "A3":
            continue
        cells = line.split("\t")
        if current in ("A", "A2"):
            sections[current].append(cells[1])
        elif current == "B":
            sections[current] += [cells[1], cells[2]]  # super-category and category
        elif current == "C":
            sections[current].append(cells[2])
        else:
            sections[current].append(line.strip())
    return sections


def _reference_tables() -> tuple[dict[str, int], dict[str, set[int]]]:
    text = LABELS_MD.read_text()
    raw = {name: int(k) for k, name in re.findall(r"^\| (\d+) \| ([^|]+?) \|$", text, re.M)}
    classes = {}
    for name, ids in re.findall(r"^\| \d+ \| ([^|]+?) \| ([^|]+?) \|$", text, re.M):
        classes[name] = {int(i) for i in re.findall(r"(\d+) \(", ids) or re.findall(r"\d+", ids)}
    return raw, classes


@pytest.mark.skipif(not CATEGORIES_TXT.exists() or not LABELS_MD.exists(),
                    reason="../shared/data/3d-front-samples/categories.txt or ../shared/reference/labels.md "
                           "is not beside the checkout")
def test_every_category_string_of_the_real_releases_maps_to_its_raw_id() -> None:
    expected = _expected()
    raw_ids, classes = _reference_tables()
    sections = _category_strings(CATEGORIES_TXT.read_text(encoding="utf-8"))
    assert [len(sections[s]) for s in ("A", "A2", "B", "C", "D")] == [21, 17, 98, 41, 32]
    walked = 0
    for section, strings in sections.items():
        for string in strings:
            assert string in expected, f"section {section}: {string!r} has no expected row"
            raw_name, cls = expected[string]
            want = raw_ids[raw_name]
            assert taxonomy.raw_id(string) == want, (section, string, raw_name)
            assert want in classes[cls], (string, cls)
            got_cls = taxonomy.get_class_set("paper30").class_names[
                int(taxonomy.get_class_set("paper30").map(np.array([want]))[0])]
            assert got_cls == cls, (string, got_cls, cls)
            walked += 1
    assert walked == 209
    assert set(expected) <= {s for v in sections.values() for s in v}, "no stale expected rows"


@pytest.mark.parametrize("spelling", ["Three-seat / Multi-seat Sofa", "three-seat/multi-seat sofa",
                                      "THREE-SEAT /MULTI-SEAT   SOFA", " Three-seat\u00a0/ Multi-seat Sofa "])
def test_matching_ignores_case_spaces_and_spaces_around_slashes(spelling) -> None:
    lookup = taxonomy.LabelLookup()
    assert lookup(spelling) == 89 and not lookup.unknown
    assert taxonomy.normalise_category(spelling) == "three-seat/multi-seat sofa"


def test_unknown_strings_are_counted_as_written_and_slashed_raw_names_stay_whole() -> None:
    lookup = taxonomy.LabelLookup()
    assert lookup("Hoverboard  Dock") == taxonomy.OTHERS and lookup("") == taxonomy.OTHERS
    assert dict(lookup.unknown) == {"Hoverboard Dock": 1, "<empty>": 1}
    # "cabinet/lightband" (2) is one name: its halves do not shadow "cabinet" (48).
    assert taxonomy.raw_id("Cabinet") == 48 and taxonomy.raw_id("Cabinet/LightBand") == 2
    assert taxonomy.raw_id("side table") is None and taxonomy.raw_id("console table") == 28
