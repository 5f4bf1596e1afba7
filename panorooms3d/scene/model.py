"""The scene model: House -> Rooms -> triangle meshes, each triangle with a raw label and an instance.

All geometry is in the **world frame** of docs/formats.md: metres, right-handed, Z up. Loaders
(3D-FRONT, synthetic) convert into this frame; every later stage (render, fusion, oracles)
reads only this model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Material:
    """Surface appearance of a mesh.

    Attributes:
        texture: path of an image texture (PNG/JPG) or ``None`` for a plain colour.
        colour: base sRGB colour in [0, 1] (used when there is no texture, and as a tint).
        uv_scale: metres per texture repeat for architecture meshes whose UVs are in metres
            (1.0 means UVs are used as they are).
        roughness: Principled BSDF roughness.
    """

    texture: Path | None = None
    colour: tuple[float, float, float] = (0.8, 0.8, 0.8)
    uv_scale: float = 1.0
    roughness: float = 0.6


@dataclass
class Mesh:
    """One triangle mesh of one item (a wall piece, a floor, one furniture instance).

    Attributes:
        name: a readable unique name within the house (e.g. ``"Floor/1234"``).
        vertices: (V, 3) float64, world frame (metres, Z up).
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from the front.
        label: raw 3D-FRONT id (0-98) of every triangle of this mesh.
        instance: instance id (>= 1, unique within the house) of every triangle; 0 = none.
        uv: optional (F, 3, 2) float32 per-corner texture coordinates.
        material: appearance.
        room_id: the room this mesh belongs to (``Room.room_id``), "" if none.
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    label: int
    instance: int
    uv: np.ndarray | None = None
    material: Material = field(default_factory=Material)
    room_id: str = ""

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float64).reshape(-1, 3)
        self.faces = np.asarray(self.faces, dtype=np.int64).reshape(-1, 3)
        if self.uv is not None:
            self.uv = np.asarray(self.uv, dtype=np.float32).reshape(-1, 3, 2)

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) corners of the axis-aligned bounding box, metres."""
        return self.vertices.min(axis=0), self.vertices.max(axis=0)

    def area(self) -> float:
        """Total triangle area, square metres."""
        t = self.vertices[self.faces]
        return float(0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1).sum())


@dataclass
class Instance:
    """An object instance of a house: furniture or an architectural element.

    Attributes:
        id: instance id, >= 1, unique within the house (stored as uint16).
        label: raw 3D-FRONT id.
        category: the category string the id came from.
        source_uid: the item's ``uid`` in the house file (furniture or mesh).
        jid: the 3D-FUTURE model id (furniture) or "" (architecture).
        room_id: the room the instance belongs to.
    """

    id: int
    label: int
    category: str
    source_uid: str = ""
    jid: str = ""
    room_id: str = ""


@dataclass
class Room:
    """A room of a house: its own meshes (architecture and furniture), in the world frame.

    Attributes:
        house_uid: the house's uid.
        room_id: the room's ``instanceid`` in the house file (e.g. ``"Bedroom-2741"``).
        type: room type (``"Bedroom"``, ``"LivingRoom"``...).
        meshes: the meshes that belong to this room.
        problems: what the loader skipped or repaired for this room (human-readable lines).
        unknown_categories: category strings and mesh types of this room's items that the
            taxonomy does not know (labelled ``others``), as written, with their counts.
        unlabelled_furniture: the furniture part of ``unknown_categories`` (items with a model
            whose category is unknown or empty, ``"<empty>"``): what the paper's filter looks at.
    """

    house_uid: str
    room_id: str
    type: str
    meshes: list[Mesh] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unknown_categories: dict[str, int] = field(default_factory=dict)
    unlabelled_furniture: dict[str, int] = field(default_factory=dict)

    @property
    def uid(self) -> str:
        """``HOUSE_UID/ROOM_INSTANCEID``: the name of the room everywhere (CLI, stores)."""
        return f"{self.house_uid}/{self.room_id}"

    @property
    def key(self) -> str:
        """A file-system-safe name of the room (``HOUSE_UID__ROOM_INSTANCEID``)."""
        return f"{self.house_uid}__{self.room_id}".replace("/", "_")

    def triangles(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All triangles of the room as one soup.

        Returns:
            vertices (V, 3) float64 metres, faces (F, 3) int64, face_label (F,) uint8 raw ids,
            face_instance (F,) uint16.
        """
        return merge_meshes(self.meshes)

    def floor_meshes(self) -> list[Mesh]:
        from panorooms3d.taxonomy import FLOOR

        return [m for m in self.meshes if m.label == FLOOR]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) corners of the room's shell (its architecture meshes), metres.

        Furniture that reaches through the shell (a pendant lamp's stem above the ceiling, a
        cabinet a few cm into a wall) does not stretch the room: these bounds are what fusion
        grids cover. A room without architecture meshes falls back to all its meshes
        (:meth:`mesh_bounds`).
        """
        from panorooms3d.taxonomy import ARCHITECTURE_IDS

        shell = [m for m in self.meshes if m.label in ARCHITECTURE_IDS] or self.meshes
        lo = np.min([m.bounds()[0] for m in shell], axis=0)
        hi = np.max([m.bounds()[1] for m in shell], axis=0)
        return lo, hi

    def mesh_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) corners of all the room's meshes, furniture included, metres."""
        lo = np.min([m.bounds()[0] for m in self.meshes], axis=0)
        hi = np.max([m.bounds()[1] for m in self.meshes], axis=0)
        return lo, hi

    def floor_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) corners of the room's floor meshes (falls back to all meshes)."""
        floors = self.floor_meshes() or self.meshes
        lo = np.min([m.bounds()[0] for m in floors], axis=0)
        hi = np.max([m.bounds()[1] for m in floors], axis=0)
        return lo, hi

    def furniture(self) -> list[Mesh]:
        """Meshes of furniture instances (anything that is not architecture)."""
        from panorooms3d.taxonomy import ARCHITECTURE_IDS

        return [m for m in self.meshes if m.label not in ARCHITECTURE_IDS]


@dataclass
class House:
    """A house: rooms plus any meshes that belong to no room, and the loader's report.

    Attributes:
        uid: the house uid (file stem of the house JSON).
        rooms: rooms in file order.
        loose_meshes: meshes not referenced by any room (still rendered: seen through doors).
        instances: every instance of the house by id.
        problems: house-level problems (skipped items, repaired data), one line each.
        counts: problem counters (e.g. ``{"missing_model": 2, "unknown_category": 1}``).
        unknown_categories: unknown category strings and how often they occurred.
        missing_textures: texture files the house names that are not on disk (paths relative to
            FRONT_ROOT -> items using them); those items get a plain colour (the material's
            ``color``, or light grey for a 3D-FUTURE model). Not a problem kind: a 3D-FRONT copy
            without textures (like the Trescope samples) is usable.
        source: path of the house file.
    """

    uid: str
    rooms: list[Room] = field(default_factory=list)
    loose_meshes: list[Mesh] = field(default_factory=list)
    instances: dict[int, Instance] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    unknown_categories: dict[str, int] = field(default_factory=dict)
    missing_textures: dict[str, int] = field(default_factory=dict)
    source: Path | None = None

    def room(self, room_id: str) -> Room:
        for r in self.rooms:
            if r.room_id == room_id:
                return r
        raise KeyError(f"house {self.uid} has no room {room_id!r}; rooms: {[r.room_id for r in self.rooms]}")

    def all_meshes(self) -> list[Mesh]:
        """Every mesh of the house (all rooms and loose meshes): what a renderer loads."""
        return [m for r in self.rooms for m in r.meshes] + list(self.loose_meshes)


def merge_meshes(meshes: list[Mesh]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate meshes into (vertices (V,3) f64, faces (F,3) i64, label (F,) u8, instance (F,) u16)."""
    if not meshes:
        return (np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.uint8), np.zeros(0, np.uint16))
    verts, faces, labels, insts = [], [], [], []
    offset = 0
    for m in meshes:
        verts.append(m.vertices)
        faces.append(m.faces + offset)
        labels.append(np.full(m.num_faces, m.label, np.uint8))
        insts.append(np.full(m.num_faces, m.instance, np.uint16))
        offset += len(m.vertices)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(labels), np.concatenate(insts)
