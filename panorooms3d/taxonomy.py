"""Label taxonomy: the 99 raw 3D-FRONT category ids and the class sets built on them.

Every stored label in panorooms3d is a *raw* 3D-FRONT id (0-98, uint8, 0 = void); a class set
such as the paper's 30 classes (``paper30``) is a lookup table applied when training and
scoring, never baked into data (see docs/formats.md).

Source of the tables: ``shared/reference/labels.md`` (BlenderProc's ``3D_front_mapping.csv``
ids and the 3D Segmenter paper's merge).
"""

from __future__ import annotations

import colorsys
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

RAW_NAMES = (
    'void',  # 0
    'smartcustomizedceiling',  # 1
    'cabinet/lightband',  # 2
    'tea table',  # 3
    'cornice',  # 4
    'sewerpipe',  # 5
    'children cabinet',  # 6
    'hole',  # 7
    'ceiling lamp',  # 8
    'chaise longue sofa',  # 9
    'lazy sofa',  # 10
    'appliance',  # 11
    'round end table',  # 12
    'build element',  # 13
    'dining chair',  # 14
    'others',  # 15
    'armchair',  # 16
    'bed',  # 17
    'two-seat sofa',  # 18
    'lighting',  # 19
    'kids bed',  # 20
    'pocket',  # 21
    'storage unit',  # 22
    'media unit',  # 23
    'slabside',  # 24
    'footstool / sofastool / bed end stool / stool',  # 25
    '300 - on top of others',  # 26
    'customizedplatform',  # 27
    'sideboard / side cabinet / console',  # 28
    'plants',  # 29
    'ceiling',  # 30
    'slabtop',  # 31
    'pendant lamp',  # 32
    'lightband',  # 33
    'electric',  # 34
    'pier/stool',  # 35
    'table',  # 36
    'extrusioncustomizedceilingmodel',  # 37
    'baseboard',  # 38
    'front',  # 39
    'wallinner',  # 40
    'basin',  # 41
    'bath',  # 42
    'customizedpersonalizedmodel',  # 43
    'baywindow',  # 44
    'customizedfurniture',  # 45
    'sofa',  # 46
    'kitchen cabinet',  # 47
    'cabinet',  # 48
    'walltop',  # 49
    'chair',  # 50
    'floor',  # 51
    'customizedceiling',  # 52
    '500 - attach to ceiling',  # 53
    'customizedbackgroundmodel',  # 54
    'drawer chest / corner cabinet',  # 55
    'tv stand',  # 56
    '400 - attach to wall',  # 57
    'window',  # 58
    'art',  # 59
    'back',  # 60
    'accessory',  # 61
    '200 - on the floor',  # 62
    'beam',  # 63
    'stair',  # 64
    'wine cooler',  # 65
    'outdoor furniture',  # 66
    'double bed',  # 67
    'dining table',  # 68
    'cabinet/shelf/desk',  # 69
    'single bed',  # 70
    'classic chinese chair',  # 71
    'corner/side table',  # 72
    'flue',  # 73
    'shelf',  # 74
    'customizedfeaturewall',  # 75
    'nightstand',  # 76
    'recreation',  # 77
    'lounge chair / book-chair / computer chair',  # 78
    'slabbottom',  # 79
    'dressing table',  # 80
    'desk',  # 81
    'column',  # 82
    'dressing chair',  # 83
    'wardrobe',  # 84
    'extrusioncustomizedbackgroundwall',  # 85
    'electronics',  # 86
    'bunk bed',  # 87
    'bed frame',  # 88
    'three-seat / multi-person sofa',  # 89
    'customizedfixedfurniture',  # 90
    'bookcase / jewelry armoire',  # 91
    'mirror',  # 92
    'wallbottom',  # 93
    'barstool',  # 94
    'wallouter',  # 95
    'l-shaped sofa',  # 96
    'customized_wainscot',  # 97
    'door',  # 98
)
PAPER30 = (
    ('void', (0,)),  # 0
    ('ceiling', (1, 4, 30, 31, 37, 52, 53)),  # 1
    ('cabinet', (2, 6, 22, 23, 28, 47, 48, 55, 56, 69, 74, 76, 91)),  # 2
    ('table', (3, 12, 36, 68, 72, 80, 81)),  # 3
    ('sewerpipe', (5,)),  # 4
    ('door(+window)', (7, 21, 44, 58, 98)),  # 5
    ('lamp', (8, 19, 32, 33)),  # 6
    ('sofa', (9, 10, 18, 46, 89, 96)),  # 7
    ('chair', (14, 16, 50, 71, 78, 83)),  # 8
    ('stool', (25, 35, 94)),  # 9
    ('appliance', (11, 34, 65, 86)),  # 10
    ('build element', (13,)),  # 11
    ('others', (15, 26)),  # 12
    ('bed', (17, 20, 67, 70, 87, 88)),  # 13
    ('customized platform', (27, 43, 45, 54, 61, 66, 90)),  # 14
    ('plant', (29,)),  # 15
    ('baseboard', (38,)),  # 16
    ('wall', (24, 39, 40, 49, 57, 60, 75, 85, 93, 95)),  # 17
    ('basin', (41,)),  # 18
    ('bath', (42,)),  # 19
    ('floor', (51, 62, 79)),  # 20
    ('art', (59,)),  # 21
    ('beam', (63,)),  # 22
    ('stair', (64,)),  # 23
    ('flue', (73,)),  # 24
    ('recreation', (77,)),  # 25
    ('column', (82,)),  # 26
    ('wardrobe', (84,)),  # 27
    ('mirror', (92,)),  # 28
    ('customized wainscot', (97,)),  # 29
)


NUM_RAW = len(RAW_NAMES)  # 99
VOID = 0
OTHERS = 15
#: Frequently used raw ids (architecture).
WALL = 40  # wallinner
FLOOR = 51
CEILING = 30
BASEBOARD = 38
DOOR = 98
WINDOW = 58
#: Raw ids of architecture (building shell) rather than furniture: ceilings, walls, floors,
#: baseboards, doors, windows, openings, slabs, beams, columns, stairs, flues, pipes.
ARCHITECTURE_IDS = frozenset(
    {1, 4, 5, 7, 13, 21, 24, 30, 31, 37, 38, 39, 40, 44, 49, 51, 52, 58, 60, 63, 64, 73, 75, 79,
     82, 85, 93, 95, 97, 98}
)

_ALIASES = {
    # Strings seen in house files that are spelled differently from the mapping's names.
    "wallouter": 95,
    "wall": 40,
    "customized_wainscot": 97,
    "lshapedsofa": 96,
    "l-shaped sofa": 96,
    "three-seat sofa": 89,
    "multi-person sofa": 89,
    "stool": 25,
    "footstool": 25,
    "plant": 29,
    "lamp": 19,
    "nightstand": 76,
    "wardrobe": 84,
}

#: The current 3D-FUTURE names (model_info.json's 42 categories, categories.txt section B) that
#: renamed a 2020 name: the same models under a new name, so they keep the 2020 name's raw id
#: (the ids of :data:`RAW_NAMES` come from the 2020 spellings). Section B's own list pairs them
#: (its ids 43-49 are the older spellings of ids 13, 5, 7, 28, 26, 19 and 8).
RENAMED_CATEGORIES: dict[str, int] = {
    "King-size Bed": 67,  # was "Double Bed"
    "Coffee Table": 3,  # was "Tea Table"
    "Sideboard / Side Cabinet / Console Table": 28,  # was "Sideboard / Side Cabinet / Console"
    "Lounge Chair / Cafe Chair / Office Chair": 78,  # was "Lounge Chair / Book-chair / Computer Chair"
    "Three-Seat / Multi-seat Sofa": 89,  # was "Three-Seat / Multi-person sofa"
    "Loveseat Sofa": 18,  # was "Two-seat Sofa"
    "Wine Cabinet": 65,  # was "Wine Cooler" (paper30 puts it under appliance, as the paper's data did)
}

#: Current 3D-FUTURE categories that are new (no 2020 name and no raw id of their own): they take
#: the raw id of their 3D-FUTURE super-category, which the raw table holds (``bed`` 17, ``chair``
#: 50, ``table`` 36, ``sofa`` 46, ``lighting`` 19, ``cabinet/shelf/desk`` 69).
SUPER_CATEGORY_FALLBACKS: dict[str, int] = {
    "Shoe Cabinet": 69,  # Cabinet/Shelf/Desk
    "Couch Bed": 17,  # Bed
    "Hanging Chair": 50,  # Chair
    "Folding chair": 50,  # Chair
    "Bar": 36,  # Table
    "U-shaped Sofa": 46,  # Sofa
    "Floor Lamp": 19,  # Lighting
    "Wall Lamp": 19,  # Lighting
}

#: Non-Latin category strings of real house files (on ``valid: false`` items, which the loader
#: skips anyway). Translated: plant, floor lamp; craftwork (vases, ornaments) has no raw id of
#: its own and is ``others`` on purpose.
TRANSLATED_CATEGORIES: dict[str, int] = {
    "\u690d\u7269": 29,  # 植物 "plant" -> plants
    "\u843d\u5730\u706f": 19,  # 落地灯 "floor lamp" -> lighting
    "\u5de5\u827a\u54c1": 15,  # 工艺品 "craftwork" -> others (on purpose)
}


def normalise_category(name: str) -> str:
    """The lookup key of a category string: lower case, one space between words, none around ``/``.

    So ``"Three-Seat / Multi-seat  Sofa"``, ``"three-seat/multi-seat sofa"`` (ATISS) and
    ``"THREE-SEAT /MULTI-SEAT SOFA"`` are one key.
    """
    text = " ".join(str(name).replace("\u00a0", " ").lower().split())
    return re.sub(r"\s*/\s*", "/", text)


def _build_lookup() -> dict[str, int]:
    table: dict[str, int] = {}
    names = [(name, raw_id) for raw_id, name in enumerate(RAW_NAMES)]
    names += [(n, r) for d in (RENAMED_CATEGORIES, SUPER_CATEGORY_FALLBACKS, TRANSLATED_CATEGORIES) for n, r in d.items()]
    for name, raw_id in names:
        table.setdefault(normalise_category(name), raw_id)
    for name, raw_id in names:
        # "sideboard / side cabinet / console" also answers to each part (only names whose parts
        # are spaced: "cabinet/lightband" and "corner/side table" are one word each).
        if " / " in name:
            for part in name.split(" / "):
                table.setdefault(normalise_category(part), raw_id)
    for alias, raw_id in _ALIASES.items():
        table.setdefault(normalise_category(alias), raw_id)
    return table


_LOOKUP = _build_lookup()


def _normalise(name: str) -> str:
    return normalise_category(name)


@dataclass
class LabelLookup:
    """Category string -> raw id lookup that counts the strings it did not know.

    Matching ignores case, repeated spaces and spaces around ``/`` (:func:`normalise_category`).
    Unknown strings map to ``others`` (15) and are counted in :attr:`unknown` under the string
    as written (stripped; ``"<empty>"`` for a missing or blank one), never a crash.
    """

    unknown: Counter = field(default_factory=Counter)

    def __call__(self, name: str | None) -> int:
        return self.lookup(name)

    def lookup(self, name: str | None) -> int:
        if name is None or not str(name).strip():
            self.unknown["<empty>"] += 1
            return OTHERS
        found = raw_id(name)
        if found is None:
            self.unknown[" ".join(str(name).split())] += 1
            return OTHERS
        return found


def raw_id(name: str | None) -> int | None:
    """Raw 3D-FRONT id of a category string or mesh type; ``None`` when unknown.

    Knows the raw names (:data:`RAW_NAMES`, 2020 spellings), the current 3D-FUTURE names
    (:data:`RENAMED_CATEGORIES`, :data:`SUPER_CATEGORY_FALLBACKS`), the super-categories, the
    parts of ``" / "`` names and a few translations, whatever the case and spacing.
    """
    if name is None:
        return None
    key = _normalise(name)
    return _LOOKUP.get(key, _LOOKUP.get(key.replace(" ", "")))


@dataclass(frozen=True)
class ClassSet:
    """A merge of raw ids into training classes.

    Attributes:
        name: registry name (e.g. ``"paper30"``).
        class_names: one name per class; class 0 is void.
        raw_to_class: uint8 array of length 256 mapping a raw id to its class (ids >= 99 -> 0).
        colours: uint8 (num_classes, 3) RGB colours for pictures (void is black).
    """

    name: str
    class_names: tuple[str, ...]
    raw_to_class: np.ndarray
    colours: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def map(self, raw: np.ndarray) -> np.ndarray:
        """Map an array of raw ids (any integer dtype) to class ids (uint8, same shape)."""
        return self.raw_to_class[np.asarray(raw).astype(np.int64) & 0xFF]


def distinct_colours(n: int, seed: int = 7) -> np.ndarray:
    """``n`` well separated RGB colours (uint8, (n, 3)); colour 0 is black for void."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 3), np.uint8)
    golden = 0.618033988749895
    h = rng.random()
    for i in range(1, n):
        h = (h + golden) % 1.0
        s = 0.55 + 0.35 * ((i * 37) % 7) / 6
        v = 0.65 + 0.3 * ((i * 53) % 5) / 4
        out[i] = np.round(np.array(colorsys.hsv_to_rgb(h, s, v)) * 255)
    return out


def _paper30() -> ClassSet:
    table = np.zeros(256, np.uint8)
    for cls, (_, raw_ids) in enumerate(PAPER30):
        for r in raw_ids:
            table[r] = cls
    return ClassSet("paper30", tuple(n for n, _ in PAPER30), table, distinct_colours(len(PAPER30)))


def _raw99() -> ClassSet:
    table = np.zeros(256, np.uint8)
    table[:NUM_RAW] = np.arange(NUM_RAW)
    return ClassSet("raw99", RAW_NAMES, table, distinct_colours(NUM_RAW))


CLASS_SETS: dict[str, ClassSet] = {"paper30": _paper30(), "raw99": _raw99()}


def get_class_set(name: str) -> ClassSet:
    """The class set registered under ``name`` (``paper30`` or ``raw99``)."""
    try:
        return CLASS_SETS[name]
    except KeyError:
        raise KeyError(f"unknown class set {name!r}; known: {', '.join(CLASS_SETS)}") from None


def colourise(raw_labels: np.ndarray, class_set: str = "paper30") -> np.ndarray:
    """RGB picture (uint8, shape + (3,)) of raw label ids coloured by class."""
    cs = get_class_set(class_set)
    return cs.colours[cs.map(raw_labels)]
