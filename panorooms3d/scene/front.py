"""3D-FRONT loader: house JSON + 3D-FUTURE models -> :class:`~panorooms3d.scene.model.House` (Z-up world).

Reads exactly the subset of docs/front-format.md::

    FRONT_ROOT/3D-FRONT/<house uid>.json
    FRONT_ROOT/3D-FUTURE-model/<jid>/raw_model.obj (+ texture.png, model_info.json)
    FRONT_ROOT/3D-FUTURE-model/model_info.json       (optional global list)
    FRONT_ROOT/3D-FRONT-texture/<material jid>/texture.png

Every item is converted into the world frame of docs/formats.md (metres, right-handed, Z up):
``world = C @ (R(q) @ (scale * v) + pos)`` with ``C = FRONT_TO_WORLD`` (R_x(+90 deg)) and the
quaternion ``q = [x, y, z, w]``; never an axis swap (a mirror). Architecture meshes (``mesh[]``)
are already in the house frame and only get ``C``.

3D-FRONT is dirty. Every fault is skipped or repaired, logged as a warning on the
``panorooms3d.scene`` logger, written as one line to ``Room.problems`` (room items) and
``House.problems`` (all), and counted in ``House.counts`` under its kind (see
:data:`PROBLEM_KINDS`). A problem line reads ``"<kind>: <house>/<room>: <item>: <what>"``; a
malformed or missing house file raises :class:`HouseLoadError` instead.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from panorooms3d.geometry import FRONT_TO_WORLD, front_item_to_world, front_to_world, quat_xyzw_to_matrix
from panorooms3d.scene.model import House, Instance, Material, Mesh, Room
from panorooms3d.scene.obj import ObjError, read_obj
from panorooms3d.taxonomy import ARCHITECTURE_IDS, CEILING, RAW_NAMES, LabelLookup, raw_id

log = logging.getLogger("panorooms3d.scene")

HOUSES_DIR = "3D-FRONT"
MODELS_DIR = "3D-FUTURE-model"
TEXTURES_DIR = "3D-FRONT-texture"

#: Kinds of problems the loader counts in ``House.counts`` and what it does about each.
PROBLEM_KINDS: dict[str, str] = {
    "missing_model": "furniture without a jid, model folder or raw_model.obj: skipped",
    "bad_obj": "unreadable, truncated or corrupt raw_model.obj: skipped",
    "invalid_furniture": "furniture marked valid: false: skipped",
    "missing_uv": "a textured mesh without (valid) UVs: texture dropped, plain colour used",
    "bad_scale": "zero/non-finite scale: skipped; negative scale: abs() used (a mirror otherwise)",
    "bad_rotation": "zero/non-finite/malformed quaternion: identity used",
    "bad_position": "non-finite/malformed position: skipped",
    "duplicate_room": "a room instanceid seen before in the house: renamed with a suffix",
    "duplicate_child": "a child instanceid seen before in the room: kept (instance ids come from the loader)",
    "unknown_ref": "a room child whose ref is no furniture or mesh uid: skipped",
    "unknown_category": "a category or mesh type not in the taxonomy: labelled others (15)",
    "empty_mesh": "an architecture mesh without vertices or faces: skipped",
    "bad_mesh": "an architecture mesh with malformed xyz/faces/uv arrays: skipped",
    "bad_model_info": "an unreadable model_info.json: ignored",
    "room_transform": "a room with a non-identity pos/rot/scale: ignored (3D-FRONT rooms are identity)",
    "room_without_floor": "a room without a floor mesh: skipped, its meshes kept as loose meshes",
}


class FrontError(Exception):
    """Base class of the loader's user-facing errors (the CLI turns them into clean messages)."""


class FrontLayoutError(FrontError):
    """FRONT_ROOT does not have the 3D-FRONT folder layout (the message says what was expected)."""


class HouseLoadError(FrontError):
    """A house file that cannot be loaded (missing, unreadable, invalid or truncated JSON).

    Attributes:
        path: the house file.
        house_uid: its uid (file stem).
    """

    def __init__(self, message: str, path: Path | None = None, house_uid: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.house_uid = house_uid


class RoomNotFoundError(FrontError):
    """A ``HOUSE_UID/ROOM_INSTANCEID`` that names no loadable room (the message lists the rooms)."""


def problem_kind(line: str) -> str:
    """The kind (a key of :data:`PROBLEM_KINDS`) of a problem line written by the loader."""
    return line.split(":", 1)[0].strip()


# --------------------------------------------------------------------------- folder layout


def _check_root(front_root: Path) -> Path:
    front_root = Path(front_root)
    if not front_root.is_dir():
        raise FrontLayoutError(f"{front_root}: no such folder (expected FRONT_ROOT with a {HOUSES_DIR}/ folder)")
    houses = front_root / HOUSES_DIR
    if not houses.is_dir():
        hint = ""
        if front_root.name == HOUSES_DIR or any(front_root.glob("*.json")):
            hint = f"; it looks like the {HOUSES_DIR} folder itself: pass its parent"
        raise FrontLayoutError(
            f"{front_root}: not a 3D-FRONT root: expected {HOUSES_DIR}/<house uid>.json "
            f"(and {MODELS_DIR}/<jid>/raw_model.obj) under it{hint}"
        )
    return front_root


def find_houses(front_root: Path) -> list[Path]:
    """The house files ``FRONT_ROOT/3D-FRONT/*.json``, sorted by name.

    Raises:
        FrontLayoutError: FRONT_ROOT is missing, has no ``3D-FRONT/`` folder, or that folder holds
            no ``.json`` file.
    """
    root = _check_root(front_root)
    files = sorted(p for p in (root / HOUSES_DIR).glob("*.json") if p.is_file())
    if not files:
        raise FrontLayoutError(f"{root / HOUSES_DIR}: no house files (expected <house uid>.json)")
    return files


# --------------------------------------------------------------------------- small parsers


def _shown(path: Path, front_root: Path | None) -> str:
    if front_root is not None:
        try:
            return str(Path(path).relative_to(front_root))
        except ValueError:
            pass
    return str(path)


def _read_json(path: Path, shown: str, uid: str):
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HouseLoadError(f"{shown}: no such file", path, uid) from None
    except UnicodeDecodeError as exc:
        raise HouseLoadError(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start})", path, uid) from None
    except OSError as exc:
        raise HouseLoadError(f"{shown}: cannot read: {exc.strerror or exc}", path, uid) from None
    if not text.strip():
        raise HouseLoadError(f"{shown}: empty file", path, uid)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HouseLoadError(
            f"{shown}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", path, uid
        ) from None


def _vec(value, n: int) -> np.ndarray | None:
    """A float64 vector of length n, or None when malformed (wrong length, not numbers)."""
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) else None


def _colour(value) -> tuple[float, float, float] | None:
    arr = _vec(value[:3] if isinstance(value, list | tuple) else None, 3)
    if arr is None or not np.isfinite(arr).all():
        return None
    return tuple(float(c) for c in np.clip(arr / 255.0, 0.0, 1.0))  # type: ignore[return-value]


def _str(value) -> str:
    return value.strip() if isinstance(value, str) else ""


_GLOBAL_INFO: dict[tuple[str, float], dict[str, str]] = {}


def _global_model_info(front_root: Path) -> dict[str, str]:
    """jid -> category from the optional global ``3D-FUTURE-model/model_info.json`` (cached)."""
    path = front_root / MODELS_DIR / "model_info.json"
    try:
        key = (str(path.resolve()), path.stat().st_mtime)
    except OSError:
        return {}
    if key not in _GLOBAL_INFO:
        table: dict[str, str] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable global model_info.json ignored: %s", path, exc)
            data = []
        if isinstance(data, list):
            for entry in data:
                if isinstance(entry, dict) and _str(entry.get("model_id")) and _str(entry.get("category")):
                    table[entry["model_id"].strip()] = entry["category"].strip()
        _GLOBAL_INFO[key] = table
    return _GLOBAL_INFO[key]


# --------------------------------------------------------------------------- the loader


@dataclass
class _Ctx:
    house: House
    front_root: Path
    lookup: LabelLookup

    def problem(self, kind: str, where: str, what: str, room: Room | None = None) -> None:
        line = f"{kind}: {where}: {what}"
        log.warning("%s", line)
        self.house.problems.append(line)
        self.house.counts[kind] = self.house.counts.get(kind, 0) + 1
        if room is not None:
            room.problems.append(line)

    def missing_texture(self, path: Path) -> None:
        """Note a texture file that is not on disk (its item gets a plain colour instead)."""
        key = _shown(path, self.front_root)
        self.house.missing_textures[key] = self.house.missing_textures.get(key, 0) + 1


@dataclass
class _ArchMesh:
    """A parsed architecture mesh (house frame already converted to world)."""

    uid: str
    type: str
    vertices: np.ndarray  # (V, 3) world
    faces: np.ndarray  # (F, 3)
    uv: np.ndarray | None  # (F, 3, 2)
    material: Material
    problem: tuple[str, str] | None  # (kind, what) when unusable or repaired


def _material(ctx: _Ctx, materials: dict, uid: str) -> tuple[Material, bool]:
    """(Material of a material uid, whether it has a texture)."""
    entry = materials.get(uid)
    if not isinstance(entry, dict):
        return Material(), False
    colour = _colour(entry.get("color")) or Material().colour
    jid = _str(entry.get("jid"))
    tex = ctx.front_root / TEXTURES_DIR / jid / "texture.png" if jid else None
    if tex is not None and tex.is_file():
        return Material(texture=tex, colour=colour), True
    if tex is not None:
        ctx.missing_texture(tex)
    return Material(colour=colour), False


def _parse_arch(ctx: _Ctx, entry: dict, materials: dict) -> _ArchMesh:
    uid = _str(entry.get("uid"))
    mtype = _str(entry.get("type"))
    material, textured = _material(ctx, materials, _str(entry.get("material")))
    empty = np.zeros((0, 3))

    def bad(kind: str, what: str) -> _ArchMesh:
        return _ArchMesh(uid, mtype, empty, np.zeros((0, 3), np.int64), None, material, (kind, what))

    try:
        xyz = np.asarray(entry.get("xyz") or [], dtype=np.float64).reshape(-1)
        faces = np.asarray(entry.get("faces") or [], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return bad("bad_mesh", "xyz or faces is not a list of numbers")
    if xyz.size == 0 or faces.size == 0:
        return bad("empty_mesh", f"{xyz.size // 3} vertices, {faces.size // 3} faces")
    if xyz.size % 3 or faces.size % 3:
        return bad("bad_mesh", f"xyz has {xyz.size} values and faces {faces.size}: not multiples of 3")
    if not np.isfinite(xyz).all():
        return bad("bad_mesh", "non-finite vertex coordinates")
    nv = xyz.size // 3
    if (faces != np.round(faces)).any() or faces.min() < 0 or faces.max() >= nv:
        return bad("bad_mesh", f"face indices outside 0..{nv - 1}")
    faces_i = faces.astype(np.int64).reshape(-1, 3)
    verts = front_to_world(xyz.reshape(-1, 3))
    uv = None
    problem = None
    raw_uv = entry.get("uv")
    try:
        uv_arr = np.asarray(raw_uv if raw_uv is not None else [], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        uv_arr = np.zeros(1)  # malformed: treated like a wrong length
    if uv_arr.size == 2 * nv and np.isfinite(uv_arr).all():
        uv = uv_arr.reshape(-1, 2)[faces_i].astype(np.float32)
    elif uv_arr.size or textured:
        what = "no uv" if uv_arr.size == 0 else f"uv has {uv_arr.size} values for {nv} vertices"
        if textured:
            what += f"; texture {_shown(material.texture, ctx.front_root)} dropped"
            material = Material(colour=material.colour, uv_scale=material.uv_scale, roughness=material.roughness)
        problem = ("missing_uv", what)
    return _ArchMesh(uid, mtype, verts, faces_i, uv, material, problem)


def _furniture_category(ctx: _Ctx, entry: dict, jid: str, where: str, room: Room | None) -> str:
    for key in ("category", "title"):
        if _str(entry.get(key)):
            return _str(entry.get(key))
    if jid:
        info = ctx.front_root / MODELS_DIR / jid / "model_info.json"
        if info.is_file():
            try:
                data = json.loads(info.read_text(encoding="utf-8"))
                if isinstance(data, dict) and _str(data.get("category")):
                    return _str(data.get("category"))
            except (OSError, ValueError) as exc:
                ctx.problem("bad_model_info", where, f"{_shown(info, ctx.front_root)} unreadable ({exc})", room)
        return _global_model_info(ctx.front_root).get(jid, "")
    return ""


def _label(ctx: _Ctx, category: str, where: str, room: Room | None, furniture: bool = False) -> int:
    label = ctx.lookup(category)
    if raw_id(category) is None:
        key = " ".join(category.split()) or "<empty>"
        ctx.problem("unknown_category", where, f"category {category!r} not in the taxonomy: labelled others", room)
        if room is not None:
            room.unknown_categories[key] = room.unknown_categories.get(key, 0) + 1
            if furniture:
                room.unlabelled_furniture[key] = room.unlabelled_furniture.get(key, 0) + 1
    return label


#: Built-in pieces (architecture meshes with a furniture label, e.g. ``Cabinet``) whose boxes
#: come within this many metres of each other form one instance (see :func:`_group_builtins`).
BUILTIN_GAP_M = 0.3


def _builtin_part_key(uid: str) -> str:
    """The part a built-in mesh belongs to: its uid without the last ``/`` component.

    Real files split one part (a plinth segment) into one mesh per material, with uids
    ``<part>/<subpart>/<n>`` that differ only in the last component.
    """
    return uid.rsplit("/", 1)[0] if uid.count("/") >= 2 else uid


def _group_builtins(house: House, pieces: list[tuple[int, Mesh, str]]) -> None:
    """Merge a room's built-in mesh pieces into one instance per unit.

    3D-FRONT stores built-in kitchen cabinetry as loose ``Cabinet`` meshes (plinths, worktop
    layers, door panels, top boards; no carcass, no field naming the unit they belong to: the
    door panels' ``jid`` is the door style, shared by every panel, and the mesh ``uid`` groups
    only the material parts of one piece). Pieces of one label are joined when their uids name
    the same part (:func:`_builtin_part_key`) or when their axis-aligned boxes come within
    :data:`BUILTIN_GAP_M` of each other; each joined group keeps the smallest instance id of
    its pieces and the other ids are dropped from ``house.instances``. In the sample kitchens
    this gives the floor-standing counter and the wall-hung cabinets: two units each.

    Args:
        house: the house (its ``instances`` are updated).
        pieces: (instance id, mesh, mesh uid) of each built-in piece of one room.
    """
    if len(pieces) < 2:
        return
    parent = list(range(len(pieces)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    boxes = [m.bounds() for _, m, _ in pieces]
    parts: dict[tuple[int, str], int] = {}
    for i, (_, mesh, uid) in enumerate(pieces):
        j = parts.setdefault((mesh.label, _builtin_part_key(uid)), i)
        parent[find(i)] = find(j)
        for j in range(i):
            if pieces[j][1].label != mesh.label:
                continue
            gap = np.maximum(0.0, np.maximum(boxes[i][0] - boxes[j][1], boxes[j][0] - boxes[i][1]))
            if (gap <= BUILTIN_GAP_M).all():
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(pieces)):
        groups.setdefault(find(i), []).append(i)
    for members in groups.values():
        keep = min(pieces[i][0] for i in members)
        for i in members:
            inst_id, mesh, _ = pieces[i]
            if inst_id != keep:
                mesh.instance = keep
                house.instances.pop(inst_id, None)


def _transform(ctx: _Ctx, child: dict, where: str, room: Room) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(pos, rot_xyzw, scale) of a child, repaired; None when it must be skipped."""
    pos = _vec(child.get("pos", [0.0, 0.0, 0.0]), 3)
    if pos is None or not np.isfinite(pos).all():
        ctx.problem("bad_position", where, f"position {child.get('pos')!r}: skipped", room)
        return None
    scale = _vec(child.get("scale", [1.0, 1.0, 1.0]), 3)
    if scale is None or not np.isfinite(scale).all() or (np.abs(scale) < 1e-9).any():
        ctx.problem("bad_scale", where, f"scale {child.get('scale')!r}: skipped", room)
        return None
    if (scale < 0).any():
        ctx.problem("bad_scale", where, f"negative scale {scale.tolist()} would mirror the model: abs() used", room)
        scale = np.abs(scale)
    rot = _vec(child.get("rot", [0.0, 0.0, 0.0, 1.0]), 4)
    if rot is None or not np.isfinite(rot).all() or np.linalg.norm(rot) < 1e-12:
        ctx.problem("bad_rotation", where, f"quaternion {child.get('rot')!r}: identity used", room)
        rot = np.array([0.0, 0.0, 0.0, 1.0])
    return pos, rot, scale


def _load_model(ctx: _Ctx, jid: str, pos, rot, scale, where: str, room: Room | None):
    """(vertices world (V,3), faces (F,3), uv (F,3,2)|None, Material) of a furniture model, or None."""
    obj = ctx.front_root / MODELS_DIR / jid / "raw_model.obj"
    try:
        mesh = read_obj(obj)
    except ObjError as exc:
        what = str(exc).replace(str(obj), _shown(obj, ctx.front_root), 1)
        ctx.problem("bad_obj", where, f"{what}: skipped", room)
        return None
    tex = obj.parent / "texture.png"
    material = Material(texture=tex if tex.is_file() else None)
    uv = mesh.uv
    if material.texture is not None and uv is None:
        ctx.problem(
            "missing_uv", where, f"{_shown(obj, ctx.front_root)} has no uv for every corner: texture dropped", room
        )
        material = Material()
    verts = front_item_to_world(mesh.vertices, pos, rot, scale)
    return verts, mesh.faces, uv, material


def load_house(house_json: Path, front_root: Path | None = None, *, load_geometry: bool = True) -> House:
    """Load one 3D-FRONT house into the scene model, in the Z-up world frame.

    Args:
        house_json: ``FRONT_ROOT/3D-FRONT/<uid>.json``; the house uid is the file stem.
        front_root: FRONT_ROOT (models and textures are found under it); default: the house
            file's grandparent.
        load_geometry: read the furniture OBJs. With ``False`` only the JSON is parsed (fast,
            for listings): rooms, architecture meshes (they live in the JSON), instances and
            labels are all there, model folders are checked, but furniture OBJs are not read,
            so ``Room.meshes`` hold architecture only and ``bad_obj``/``missing_uv`` of models
            are not detected. Instance ids are the same either way.

    Returns:
        :class:`House`: rooms in file order (rooms without a floor skipped, their meshes in
        ``loose_meshes``), meshes with vertices (V, 3) float64 metres Z-up, faces (F, 3) int64,
        uv (F, 3, 2) float32 or None, raw label ids, instance ids >= 1 unique in the house (one per
        room child, then one per mesh no room refers to; ids of children skipped while reading
        OBJs are not reused; the pieces of one built-in unit such as a kitchen counter share the
        id of their first piece, see :func:`_group_builtins`), ``House.instances``, problems and
        counts (see :data:`PROBLEM_KINDS`), each room's ``unknown_categories`` and
        ``unlabelled_furniture``.

    Raises:
        HouseLoadError: missing or unreadable file, invalid or truncated JSON, or a JSON without
            the ``scene.room`` list; the message names the file and the problem.
    """
    house_json = Path(house_json)
    front_root = Path(front_root) if front_root is not None else house_json.parent.parent
    uid = house_json.stem
    shown = _shown(house_json, front_root)
    data = _read_json(house_json, shown, uid)
    if not isinstance(data, dict):
        raise HouseLoadError(f"{shown}: expected a JSON object, found {type(data).__name__}", house_json, uid)
    scene = data.get("scene")
    rooms_json = scene.get("room") if isinstance(scene, dict) else None
    if not isinstance(rooms_json, list):
        raise HouseLoadError(f"{shown}: no 'scene.room' list (not a 3D-FRONT house file?)", house_json, uid)

    house = House(uid=uid, source=house_json)
    ctx = _Ctx(house, front_root, LabelLookup())

    furniture = {}
    for f in data.get("furniture") or []:
        if isinstance(f, dict) and _str(f.get("uid")):
            furniture[_str(f["uid"])] = f
    materials = {}
    for m in data.get("material") or []:
        if isinstance(m, dict) and _str(m.get("uid")):
            materials[_str(m["uid"])] = m
    mesh_entries: dict[str, dict] = {}
    for m in data.get("mesh") or []:
        if isinstance(m, dict) and _str(m.get("uid")):
            mesh_entries[_str(m["uid"])] = m
    arch_cache: dict[str, _ArchMesh] = {}
    referenced: set[str] = set()
    next_id = 1
    seen_rooms: set[str] = set()

    def arch(uid_: str) -> _ArchMesh:
        if uid_ not in arch_cache:
            arch_cache[uid_] = _parse_arch(ctx, mesh_entries[uid_], materials)
        return arch_cache[uid_]

    for index, rj in enumerate(rooms_json):
        if not isinstance(rj, dict):
            ctx.problem("room_without_floor", f"{uid}/room[{index}]", "not a JSON object: skipped")
            continue
        rtype = _str(rj.get("type"))
        rid = _str(rj.get("instanceid")) or f"{rtype or 'Room'}-{index}"
        rid = rid.replace("/", "_")
        duplicate = rid in seen_rooms
        if duplicate:
            k = 2
            while f"{rid}_{k}" in seen_rooms:
                k += 1
            old_rid, rid = rid, f"{rid}_{k}"
        seen_rooms.add(rid)
        room = Room(house_uid=uid, room_id=rid, type=rtype)
        if duplicate:
            ctx.problem(
                "duplicate_room", f"{uid}/{rid}", f"room instanceid {old_rid!r} seen before: renamed {rid}", room
            )
        rwhere = f"{uid}/{rid}"
        identity = (
            _vec(rj.get("pos", [0, 0, 0]), 3),
            _vec(rj.get("rot", [0, 0, 0, 1]), 4),
            _vec(rj.get("scale", [1, 1, 1]), 3),
        )
        if any(v is None for v in identity) or not (
            np.allclose(identity[0], 0)
            and np.allclose(np.abs(identity[1]), [0, 0, 0, 1])
            and np.allclose(identity[2], 1)
        ):
            ctx.problem("room_transform", rwhere, "non-identity room pos/rot/scale ignored", room)

        children = rj.get("children") or []
        seen_children: set[str] = set()
        builtin: list[tuple[int, Mesh, str]] = []
        for ci, child in enumerate(children if isinstance(children, list) else []):
            if not isinstance(child, dict):
                ctx.problem("unknown_ref", rwhere, f"child [{ci}] is not a JSON object: skipped", room)
                continue
            ref = _str(child.get("ref"))
            cname = _str(child.get("instanceid")) or f"child[{ci}]"
            where = f"{rwhere}: child {cname!r} (ref {ref!r})"
            if cname in seen_children:
                ctx.problem(
                    "duplicate_child", where, f"child instanceid seen before in the room (child [{ci}]): kept", room
                )
            seen_children.add(cname)
            if ref in furniture:
                entry = furniture[ref]
                jid = _str(entry.get("jid"))
                where = f"{rwhere}: child {cname!r} (ref {ref!r}, jid {jid!r})"
                if entry.get("valid", True) is False:
                    ctx.problem("invalid_furniture", where, "furniture marked valid: false: skipped", room)
                    continue
                obj = ctx.front_root / MODELS_DIR / jid / "raw_model.obj"
                if not jid or not obj.is_file():
                    what = "no jid" if not jid else f"no {_shown(obj, ctx.front_root)}"
                    ctx.problem("missing_model", where, f"{what}: skipped", room)
                    continue
                tr = _transform(ctx, child, where, room)
                if tr is None:
                    continue
                if not (obj.parent / "texture.png").is_file():
                    ctx.missing_texture(obj.parent / "texture.png")
                category = _furniture_category(ctx, entry, jid, where, room)
                label = _label(ctx, category, where, room, furniture=True)
                inst_id, next_id = next_id, next_id + 1
                house.instances[inst_id] = Instance(inst_id, label, category, ref, jid, rid)
                if load_geometry:
                    got = _load_model(ctx, jid, *tr, where, room)
                    if got is None:
                        del house.instances[inst_id]
                        continue
                    verts, faces, uv, material = got
                    room.meshes.append(
                        Mesh(
                            f"{category or 'furniture'}/{ref}#{inst_id}",
                            verts,
                            faces,
                            label,
                            inst_id,
                            uv,
                            material,
                            rid,
                        )
                    )
            elif ref in mesh_entries:
                referenced.add(ref)
                am = arch(ref)
                if am.problem is not None:
                    kind, what = am.problem
                    ctx.problem(kind, f"{rwhere}: mesh {ref!r} ({am.type or 'no type'})", what, room)
                if am.faces.shape[0] == 0:
                    continue
                label = _label(ctx, am.type.lower(), f"{rwhere}: mesh {ref!r}", room)
                inst_id, next_id = next_id, next_id + 1
                house.instances[inst_id] = Instance(inst_id, label, am.type, ref, "", rid)
                mesh = Mesh(
                    f"{am.type or 'mesh'}/{ref}#{inst_id}",
                    am.vertices,
                    am.faces,
                    label,
                    inst_id,
                    am.uv,
                    am.material,
                    rid,
                )
                room.meshes.append(mesh)
                if label not in ARCHITECTURE_IDS:
                    builtin.append((inst_id, mesh, ref))
            else:
                ctx.problem("unknown_ref", where, "ref names no furniture or mesh uid: skipped", room)
        _group_builtins(house, builtin)

        if not room.floor_meshes():
            ctx.problem("room_without_floor", rwhere, f"room ({rtype or 'no type'}) has no floor mesh: skipped")
            for m in room.meshes:
                m.room_id = ""
            house.loose_meshes.extend(room.meshes)
            for i in [i for i, inst in house.instances.items() if inst.room_id == rid]:
                house.instances[i].room_id = ""
            continue
        house.rooms.append(room)

    # Meshes that no room refers to: kept (seen through doors), each its own instance.
    for muid in mesh_entries:
        if muid in referenced:
            continue
        am = arch(muid)
        if am.problem is not None:
            ctx.problem(am.problem[0], f"{uid}: loose mesh {muid!r} ({am.type or 'no type'})", am.problem[1])
        if am.faces.shape[0] == 0:
            continue
        label = _label(ctx, am.type.lower(), f"{uid}: loose mesh {muid!r}", None)
        inst_id, next_id = next_id, next_id + 1
        house.instances[inst_id] = Instance(inst_id, label, am.type, muid, "", "")
        house.loose_meshes.append(
            Mesh(f"{am.type or 'mesh'}/{muid}#{inst_id}", am.vertices, am.faces, label, inst_id, am.uv, am.material, "")
        )

    house.unknown_categories = dict(ctx.lookup.unknown)
    if next_id > 65535:
        raise HouseLoadError(f"{shown}: {next_id - 1} instances do not fit uint16", house_json, uid)
    return house


def load_houses(
    front_root: Path, house_ids: Iterable[str] | None = None, *, load_geometry: bool = True
) -> Iterator[House | HouseLoadError]:
    """Load many houses, going on past bad ones.

    Args:
        front_root: FRONT_ROOT.
        house_ids: house uids to load (file stems); default every house of :func:`find_houses`.
        load_geometry: see :func:`load_house`.

    Yields:
        a :class:`House` per loadable house, or the :class:`HouseLoadError` of a bad or missing one
        (in order).

    Raises:
        FrontLayoutError: FRONT_ROOT has the wrong layout (raised before the first house).
    """
    front_root = _check_root(front_root)
    if house_ids is None:
        paths = find_houses(front_root)
    else:
        paths = [front_root / HOUSES_DIR / f"{h}.json" for h in house_ids]
    for path in paths:
        try:
            yield load_house(path, front_root, load_geometry=load_geometry)
        except HouseLoadError as exc:
            log.warning("%s", exc)
            yield exc


def room_by_uid(front_root: Path, room_uid: str, *, load_geometry: bool = True) -> tuple[House, Room]:
    """The house and room named ``HOUSE_UID/ROOM_INSTANCEID``.

    Raises:
        RoomNotFoundError: a malformed name, an unknown house (lists some houses), or an unknown
            or skipped room (lists the house's rooms).
        HouseLoadError: the house file is bad.
        FrontLayoutError: FRONT_ROOT has the wrong layout.
    """
    root = _check_root(front_root)
    house_uid, sep, room_id = str(room_uid).strip().partition("/")
    if not sep or not house_uid or not room_id:
        raise RoomNotFoundError(f"room {room_uid!r}: expected HOUSE_UID/ROOM_INSTANCEID (e.g. abc123/Bedroom-2741)")
    path = root / HOUSES_DIR / f"{house_uid}.json"
    if not path.is_file():
        known = [p.stem for p in sorted((root / HOUSES_DIR).glob("*.json"))]
        shown = ", ".join(known[:10]) + (f" ... ({len(known)} in all)" if len(known) > 10 else "")
        raise RoomNotFoundError(f"room {room_uid!r}: no house {house_uid!r} in {root / HOUSES_DIR}; houses: {shown}")
    house = load_house(path, root, load_geometry=load_geometry)
    for room in house.rooms:
        if room.room_id == room_id:
            return house, room
    rooms = ", ".join(r.room_id for r in house.rooms) or "none"
    skipped = [p for p in house.problems if problem_kind(p) == "room_without_floor" and f"/{room_id}:" in p]
    why = f" (skipped: {skipped[0]})" if skipped else ""
    raise RoomNotFoundError(f"room {room_uid!r}: house {house_uid} has no room {room_id!r}{why}; rooms: {rooms}")


# --------------------------------------------------------------------------- summaries


@dataclass
class RoomSummary:
    """Numbers of a room for listings (``scenes``).

    Attributes:
        uid: ``HOUSE_UID/ROOM_INSTANCEID``.
        type: room type.
        floor_area: total area of the floor meshes, m^2.
        height: highest ceiling point (else highest point) minus lowest floor point, m.
        size: (x, y) extent of the floor meshes' bounding box, m.
        furniture: number of furniture instances (non-architecture labels) in the room.
        problems: problem counts by kind for this room.
    """

    uid: str
    type: str
    floor_area: float
    height: float
    size: tuple[float, float]
    furniture: int
    problems: dict[str, int]


def summarise_room(house: House, room: Room) -> RoomSummary:
    """A :class:`RoomSummary` of ``room`` (works on houses loaded with or without geometry)."""
    floors = room.floor_meshes()
    arch = [m for m in room.meshes if m.label in ARCHITECTURE_IDS]
    if floors:
        flo, fhi = room.floor_bounds()
        area = float(sum(m.area() for m in floors))
        ceilings = [m for m in room.meshes if m.label == CEILING] or arch or room.meshes
        top = max(float(m.vertices[:, 2].max()) for m in ceilings)
        height = top - float(flo[2])
        size = (float(fhi[0] - flo[0]), float(fhi[1] - flo[1]))
    else:
        area, height, size = 0.0, 0.0, (0.0, 0.0)
    n_furniture = sum(
        1 for inst in house.instances.values() if inst.room_id == room.room_id and inst.label not in ARCHITECTURE_IDS
    )
    return RoomSummary(
        room.uid, room.type, area, height, size, n_furniture, dict(Counter(problem_kind(p) for p in room.problems))
    )


def label_name(raw: int) -> str:
    """The 3D-FRONT name of a raw label id (``"?"`` when out of range)."""
    return RAW_NAMES[raw] if 0 <= raw < len(RAW_NAMES) else "?"


def linear_map_det(rot_xyzw, scale) -> float:
    """Determinant of the full linear part ``C @ R(q) @ diag(scale)`` of the item-to-world map.

    Positive means handedness is preserved (no mirror). Used by tests and sanity checks.
    """
    m = FRONT_TO_WORLD @ quat_xyzw_to_matrix(rot_xyzw) @ np.diag(np.asarray(scale, dtype=np.float64))
    return float(np.linalg.det(m))


def select_rooms(front_root: Path, selected: Iterable[str] = ()) -> tuple[list[tuple[str, Path]], list[str]]:
    """The rooms a batch command works on, with the house file of each.

    Args:
        front_root: FRONT_ROOT.
        selected: ``HOUSE_UID/ROOM_INSTANCEID`` names (duplicates dropped); empty = every room
            of every loadable house.

    Returns:
        ([(room uid, house JSON path)], problems): ``problems`` names the houses that could not
        be read when listing all rooms (the batch goes on without them).

    Raises:
        RoomNotFoundError / HouseLoadError for a selected room that does not exist or whose
        house is bad; FrontLayoutError for a wrong layout.
    """
    root = _check_root(front_root)
    if selected:
        out = []
        for uid in dict.fromkeys(selected):
            house, room = room_by_uid(root, uid, load_geometry=False)
            out.append((room.uid, Path(house.source) if house.source else root / HOUSES_DIR / f"{house.uid}.json"))
        return out, []
    rooms: list[tuple[str, Path]] = []
    problems: list[str] = []
    for house in load_houses(root, load_geometry=False):
        if isinstance(house, HouseLoadError):
            problems.append(str(house))
            continue
        path = Path(house.source) if house.source else root / HOUSES_DIR / f"{house.uid}.json"
        rooms.extend((r.uid, path) for r in house.rooms)
    return rooms, problems


def unlabelled_furniture(front_root: Path, room_uids: Iterable[str]) -> dict[str, dict[str, int]]:
    """The furniture category strings the taxonomy does not know, per room (the paper's filter).

    The paper left out every room holding furniture without a label; a room is such a room when
    one of its furniture items that has a model (``valid`` not false, model folder present) has
    an empty or unknown category (``Room.unlabelled_furniture``). Houses are parsed once each,
    without reading OBJs.

    Args:
        front_root: FRONT_ROOT.
        room_uids: ``HOUSE_UID/ROOM_INSTANCEID`` names.

    Returns:
        {room uid: {category string as written: count}}; an empty dict for a fully labelled room.

    Raises:
        RoomNotFoundError / HouseLoadError / FrontLayoutError as :func:`room_by_uid`.
    """
    root = _check_root(front_root)
    by_house: dict[str, list[str]] = {}
    for uid in room_uids:
        house_uid, _, room_id = str(uid).partition("/")
        by_house.setdefault(house_uid, []).append(room_id)
    out: dict[str, dict[str, int]] = {}
    for house_uid, room_ids in by_house.items():
        house, _ = room_by_uid(root, f"{house_uid}/{room_ids[0]}", load_geometry=False)
        rooms = {r.room_id: r for r in house.rooms}
        for room_id in room_ids:
            if room_id not in rooms:
                room_by_uid(root, f"{house_uid}/{room_id}", load_geometry=False)  # raises, naming the rooms
            out[f"{house_uid}/{room_id}"] = dict(rooms[room_id].unlabelled_furniture)
    return out
