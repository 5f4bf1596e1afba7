"""3D-FRONT loader and OBJ reader: world coordinates by hand, labels, instances, every fault."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from script_module import load_script

from panorooms3d.scene.front import (
    FrontLayoutError,
    HouseLoadError,
    RoomNotFoundError,
    find_houses,
    linear_map_det,
    load_house,
    load_houses,
    problem_kind,
    room_by_uid,
    select_rooms,
    summarise_room,
)
from panorooms3d.scene.obj import ObjError, read_obj

tf = load_script("tests/fixtures/tiny_front.py")


def _house(root: Path, uid: str = "house1", **kw):
    return load_house(root / "3D-FRONT" / f"{uid}.json", root, **kw)


# ----------------------------------------------------------------------------- OBJ reader


def test_obj_forms_negative_indices_and_polygons(tmp_path):
    p = tmp_path / "m.obj"
    p.write_text(
        "# forms\nmtllib x.mtl\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvn 0 0 1\ng g1\nusemtl a\ns off\n"
        "f 1/1/1 2/2/1 3/3/1 4/4/1\n"  # quad -> (0,1,2), (0,2,3)
        "f -4/-4 -2/-2 -1/-1\n"  # negative: vertices 0, 2, 3
    )
    m = read_obj(p)
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 3]]
    assert m.vertices.shape == (4, 3) and m.vertices[2].tolist() == [1.0, 1.0, 0.0]
    assert m.uv is not None and m.uv.shape == (3, 3, 2)
    assert m.uv[1].tolist() == [[0, 0], [1, 1], [0, 1]]
    assert m.uv[2, 2].tolist() == [0, 1]

    q = tmp_path / "nouv.obj"
    q.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1\nf 3 2 1\n")
    m = read_obj(q)
    assert m.uv is None and m.faces.tolist() == [[0, 1, 2], [2, 1, 0]]


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("v 0 0 0\nv 1 0 0\nv 0 x 0\nf 1 2 3\n", "line 3: bad number"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "line 4: vertex index out of range"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "line 4: face with fewer than 3 corners"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
        ("", "no faces"),
        ("v 0 0 0\nv 1 0 0\nv 0 1", "line 3: vertex with fewer than 3 coordinates"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "line 4: vertex index out of range"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/2 3/1\n", "line 5: texture index out of range"),
        ("v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "vertex 1 has a non-finite coordinate"),
    ],
)
def test_obj_errors_name_file_and_line(tmp_path, text, expect):
    p = tmp_path / "bad.obj"
    p.write_text(text)
    with pytest.raises(ObjError) as exc:
        read_obj(p)
    assert str(p) in str(exc.value) and expect in str(exc.value)


def test_obj_missing_file(tmp_path):
    with pytest.raises(ObjError, match="cannot read"):
        read_obj(tmp_path / "nope.obj")


# ----------------------------------------------------------------------------- geometry


def test_furniture_world_coordinates_by_hand_and_not_mirrored(tmp_path):
    root = tf.write_front(tmp_path, {"house1": tf.base_house()})
    house = _house(root)
    assert house.problems == [] and house.counts == {}
    (room,) = house.rooms
    (bed,) = room.furniture()
    # Hand-computed (see tests/fixtures/tiny_front.py): C (R_y(90) (s * v) + pos).
    np.testing.assert_allclose(bed.vertices, tf.TETRA_WORLD, atol=1e-12)
    assert bed.faces.tolist() == [list(f) for f in tf.TETRA_FACES]
    # Handedness kept: the outward-wound tetrahedron (volume 1) has volume +det = +2 in the world.
    assert tf.signed_volume(tf.TETRA_VERTICES, tf.TETRA_FACES) == pytest.approx(1.0)
    assert tf.signed_volume(bed.vertices, bed.faces) == pytest.approx(2.0)
    assert linear_map_det(tf.TETRA_ROT, tf.TETRA_SCALE) == pytest.approx(2.0)
    # Per-corner UVs of the OBJ (vt i = (0.1 i, 0.2 i)); texture from the model folder.
    assert bed.uv.shape == (4, 3, 2)
    np.testing.assert_allclose(bed.uv[3], [[0.1, 0.2], [0.2, 0.4], [0.3, 0.6]], atol=1e-6)
    assert bed.material.texture == root / "3D-FUTURE-model" / "tetra" / "texture.png"
    assert bed.label == 67  # double bed


def test_architecture_frame_labels_materials_instances(tmp_path):
    root = tf.write_front(tmp_path, {"house1": tf.base_house()})
    house = _house(root)
    room = house.room("Bedroom-1")
    assert room.uid == "house1/Bedroom-1" and room.type == "Bedroom"
    by_type = {}
    for m in room.meshes:
        by_type.setdefault(m.label, []).append(m)
    assert sorted((k, len(v)) for k, v in by_type.items()) == [(30, 1), (40, 4), (51, 1), (67, 1)]
    (floor,) = by_type[51]
    # 3D-FRONT (x, y, z) -> world (x, -z, y): the floor x in [0, 4], z in [0, 3] lies at y in [-3, 0].
    np.testing.assert_allclose(floor.vertices, [[0, 0, 0], [4, 0, 0], [4, -3, 0], [0, -3, 0]], atol=1e-12)
    t = floor.vertices[floor.faces]
    normals = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    assert (normals[:, 2] > 0).all()  # the floor faces up (+z) in the world: a rotation, not a mirror
    (ceiling,) = by_type[30]
    np.testing.assert_allclose(ceiling.vertices[:, 2], 2.8)
    # Per-corner UVs from the per-vertex list: faces (0,2,1) -> uv of vertices 0, 2, 1.
    np.testing.assert_allclose(floor.uv[0], [[0, 0], [1, 1], [1, 0]])
    assert floor.material.texture == root / "3D-FRONT-texture" / "tex-floor" / "texture.png"
    wall = by_type[40][0]
    assert wall.material.texture is None and wall.material.colour == pytest.approx((0.2, 0.4, 0.8))
    # Instances 1..7 in child order, unique, in House.instances.
    assert sorted(m.instance for m in room.meshes) == list(range(1, 8))
    assert sorted(house.instances) == list(range(1, 8))
    inst = house.instances[7]
    assert (inst.label, inst.category, inst.jid, inst.source_uid, inst.room_id) == (
        67,
        "double bed",
        "tetra",
        "f/tetra",
        "Bedroom-1",
    )
    assert house.instances[1].label == 51 and house.instances[1].category == "Floor"
    assert len({m.name for m in house.all_meshes()}) == len(house.all_meshes())
    s = summarise_room(house, room)
    assert s.floor_area == pytest.approx(12.0) and s.height == pytest.approx(2.8)
    assert s.size == pytest.approx((4.0, 3.0)) and s.furniture == 1


def test_parse_only_keeps_ids_and_labels(tmp_path):
    root = tf.write_front(tmp_path, {"house1": tf.base_house()})
    full = _house(root)
    fast = _house(root, load_geometry=False)
    assert fast.instances == full.instances
    assert [m.label for m in fast.rooms[0].meshes] == [51, 30, 40, 40, 40, 40]  # architecture only
    np.testing.assert_allclose(fast.rooms[0].meshes[0].vertices, full.rooms[0].meshes[0].vertices)
    assert fast.rooms[0].furniture() == []  # no OBJ read
    assert summarise_room(fast, fast.rooms[0]).furniture == 1


def test_category_fallbacks_and_unknown(tmp_path):
    h = tf.base_house()
    h["furniture"] = [
        {"uid": "a", "jid": "tetra", "title": "Dining Chair"},  # title
        {"uid": "b", "jid": "m_local"},  # per-model model_info.json
        {"uid": "c", "jid": "m_global"},  # global model_info.json list
        {"uid": "d", "jid": "tetra", "category": "Flux Capacitor"},  # unknown
        {"uid": "e", "jid": "m_both"},  # per-model file wins over the global list
    ]
    ch = h["scene"]["room"][0]["children"]
    del ch[-1]
    for k, ref in enumerate("abcde"):
        ch.append(
            {"ref": ref, "instanceid": f"furniture/{k}", "pos": [1, 0, 1], "rot": [0, 0, 0, 1], "scale": [1, 1, 1]}
        )
    models = {j: tf.TETRA_OBJ for j in ("tetra", "m_local", "m_global", "m_both")}
    root = tf.write_front(tmp_path, {"house1": h}, models)
    (root / "3D-FUTURE-model" / "m_local" / "model_info.json").write_text(
        json.dumps({"model_id": "m_local", "category": "Wardrobe"})
    )
    (root / "3D-FUTURE-model" / "m_both" / "model_info.json").write_text(
        json.dumps({"model_id": "m_both", "category": "Desk"})
    )
    (root / "3D-FUTURE-model" / "model_info.json").write_text(
        json.dumps([{"model_id": "m_global", "category": "Nightstand"}, {"model_id": "m_both", "category": "Sofa"}])
    )
    house = _house(root)
    labels = [m.label for m in house.rooms[0].furniture()]
    assert labels == [14, 84, 76, 15, 81]  # dining chair, wardrobe, nightstand, others, desk
    assert house.counts == {"unknown_category": 1}
    assert house.unknown_categories == {"Flux Capacitor": 1}, "named as written in the file"
    room = house.rooms[0]
    assert room.unknown_categories == room.unlabelled_furniture == {"Flux Capacitor": 1}
    assert "flux capacitor" in house.rooms[0].problems[0].lower()


# ----------------------------------------------------------------------------- faults


def _child(ref, name, pos=(1, 0, 1), rot=(0, 0, 0, 1), scale=(1, 1, 1)):
    return {"ref": ref, "instanceid": name, "pos": list(pos), "rot": list(rot), "scale": list(scale)}


def test_every_fault_is_skipped_or_repaired_and_counted(tmp_path, caplog):
    h = tf.base_house()
    h["furniture"] += [
        {"uid": "f/missing", "jid": "no-such-model", "category": "sofa"},
        {"uid": "f/nojid", "jid": "", "category": "sofa"},
        {"uid": "f/badobj", "jid": "truncated", "category": "sofa"},
        {"uid": "f/invalid", "jid": "tetra", "category": "sofa", "valid": False},
        {"uid": "f/nouv", "jid": "nouv", "category": "sofa"},
        {"uid": "f/ok", "jid": "tetra", "category": "armchair"},
    ]
    bad_uv = tf.quad_mesh("m/baduv", "Floor", [(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)], material="mat-floor")
    bad_uv["uv"] = [0, 0, 1]  # truncated uv list on a textured mesh
    empty = tf.quad_mesh("m/empty", "WallInner", [])
    empty["faces"] = []
    badidx = tf.quad_mesh("m/badidx", "WallInner", [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)], faces=((0, 1, 7),))
    h["mesh"] += [bad_uv, empty, badidx]
    room = h["scene"]["room"][0]
    room["children"] += [
        _child("f/missing", "c-missing"),
        _child("f/nojid", "c-nojid"),
        _child("f/badobj", "c-badobj"),
        _child("f/invalid", "c-invalid"),
        _child("f/nouv", "c-nouv"),
        _child("f/ok", "c-zero-scale", scale=(0, 1, 1)),
        _child("f/ok", "c-nan-scale", scale=(float("nan"), 1, 1)),
        _child("f/ok", "c-neg-scale", scale=(-2, 1, 1)),  # repaired with abs
        _child("f/ok", "c-zero-rot", rot=(0, 0, 0, 0)),  # repaired with identity
        _child("f/ok", "c-null-rot", rot=(None, 0, 0, 1)),  # repaired with identity
        _child("f/ok", "c-nan-rot", rot=(0, float("nan"), 0, 1)),  # repaired with identity
        _child("f/ok", "c-bad-pos", pos=(1, None, 0)),
        _child("no/such/uid", "c-unknown"),
        _child("m/baduv", "c-baduv"),
        _child("m/empty", "c-empty"),
        _child("m/badidx", "c-badidx"),
        _child("f/ok", "c-neg-scale"),  # a child instanceid seen before: kept, counted
    ]
    # A second room with the same instanceid, and a third room without a floor.
    h["mesh"] += tf.room_meshes("r2", x0=5, x1=7)
    second = {"type": "Bedroom", "instanceid": "Bedroom-1",
              "children": [tf.mesh_child(m["uid"], k) for k, m in enumerate(tf.room_meshes("r2", x0=5, x1=7))]}  # fmt: skip
    nofloor = {
        "type": "Hallway",
        "instanceid": "Hall-9",
        "children": [tf.mesh_child("r2/wall0", 0), _child("f/ok", "c-hall")],
    }
    h["scene"]["room"] += [second, nofloor]
    models = {"tetra": tf.TETRA_OBJ, "truncated": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2", "nouv": tf.obj_text(
        tf.TETRA_VERTICES, tf.TETRA_FACES, uv=False)}  # fmt: skip
    root = tf.write_front(tmp_path, {"house1": h}, models, textured=("tetra", "nouv"))
    with caplog.at_level(logging.WARNING, logger="panorooms3d.scene"):
        house = _house(root)
    assert house.counts == {
        "missing_model": 2,
        "bad_obj": 1,
        "invalid_furniture": 1,
        "missing_uv": 2,  # the textured model without vt, the truncated uv list
        "bad_scale": 3,  # zero, NaN (skipped), negative (repaired)
        "bad_rotation": 3,
        "bad_position": 1,
        "unknown_ref": 1,
        "empty_mesh": 1,
        "bad_mesh": 1,
        "duplicate_room": 1,
        "duplicate_child": 1,
        "room_without_floor": 1,
    }
    assert len(house.problems) == sum(house.counts.values())
    # Every problem was logged as a warning on panorooms3d.scene, naming house, room and item.
    logged = [r.getMessage() for r in caplog.records if r.name == "panorooms3d.scene"]
    assert logged == house.problems
    by_item = {
        p.split("child ")[1].split(" ")[0].strip("'"): p
        for p in house.problems
        if "child '" in p and problem_kind(p) != "duplicate_child"
    }
    assert by_item["c-missing"].startswith("missing_model: house1/Bedroom-1: ")
    assert "3D-FUTURE-model/no-such-model/raw_model.obj" in by_item["c-missing"]
    assert "3D-FUTURE-model/truncated/raw_model.obj: line 4: face with fewer than 3 corners" in by_item["c-badobj"]
    assert str(root) not in by_item["c-badobj"]  # paths shown relative to FRONT_ROOT
    assert "valid: false" in by_item["c-invalid"]
    assert "abs() used" in by_item["c-neg-scale"] and "skipped" in by_item["c-zero-scale"]
    assert "identity used" in by_item["c-zero-rot"]

    # What still loaded: the base room's 6 architecture meshes, the base tetra, the no-uv model
    # (texture dropped), the repaired ones (neg scale, 3 rotations) and the truncated-uv floor.
    room1 = house.room("Bedroom-1")
    assert room1.problems == [p for p in house.problems if p.split(": ")[1] == "house1/Bedroom-1"]
    assert house.room("Bedroom-1_2").problems == [
        "duplicate_room: house1/Bedroom-1_2: room instanceid 'Bedroom-1' seen before: renamed Bedroom-1_2"
    ]
    fur = room1.furniture()
    assert len(fur) == 7
    nouv = [m for m in fur if m.name.startswith("sofa/f/nouv")][0]
    assert nouv.uv is None and nouv.material.texture is None
    neg = [m for m in fur if house.instances[m.instance].source_uid == "f/ok"]
    assert len(neg) == 5
    # Negative scale (-2, 1, 1) repaired to (2, 1, 1) at pos (1, 0, 1), identity rotation:
    # local (1, 0, 0) -> (2, 0, 0) + (1, 0, 1) = (3, 0, 1) -> world (3, -1, 0); not mirrored.
    np.testing.assert_allclose(neg[0].vertices[1], [3.0, -1.0, 0.0])
    assert tf.signed_volume(neg[0].vertices, neg[0].faces) == pytest.approx(2.0)
    # Identity rotation repair: local (0, 2, 0) + pos (1, 0, 1) = (1, 2, 1) -> world (1, -1, 2).
    np.testing.assert_allclose(neg[1].vertices[2], [1.0, -1.0, 2.0])
    baduv = [m for m in room1.meshes if house.instances[m.instance].source_uid == "m/baduv"][0]
    assert baduv.uv is None and baduv.material.texture is None and baduv.label == 51
    assert len(room1.meshes) == 6 + 7 + 1
    # Duplicate room renamed; room without floor skipped, its meshes kept as loose meshes.
    assert [r.room_id for r in house.rooms] == ["Bedroom-1", "Bedroom-1_2"]
    assert len(house.room("Bedroom-1_2").meshes) == 6
    assert any(p.startswith("room_without_floor: house1/Hall-9:") for p in house.problems)
    hall = [m for m in house.loose_meshes if m.name.startswith("WallInner/r2/wall0")]
    assert len(hall) == 1 and hall[0].room_id == ""
    # Instance ids unique and >= 1 across everything; gaps only where an OBJ failed to read.
    ids = [m.instance for m in house.all_meshes()]
    assert len(ids) == len(set(ids)) and min(ids) == 1
    assert set(ids) == set(house.instances)
    assert all(problem_kind(p) in house.counts for p in house.problems)


def test_bad_model_info_and_room_transform(tmp_path):
    h = tf.base_house()
    h["furniture"].append({"uid": "g", "jid": "m_broken_info"})
    h["scene"]["room"][0]["children"].append(_child("g", "c-g"))
    h["scene"]["room"][0]["pos"] = [1, 0, 0]
    models = {"tetra": tf.TETRA_OBJ, "m_broken_info": tf.TETRA_OBJ}
    root = tf.write_front(tmp_path, {"house1": h}, models)
    (root / "3D-FUTURE-model" / "m_broken_info" / "model_info.json").write_text('{"category": ')
    (root / "3D-FUTURE-model" / "model_info.json").write_text(
        json.dumps([{"model_id": "m_broken_info", "category": "Bed"}])
    )
    house = _house(root)
    assert house.counts == {"bad_model_info": 1, "room_transform": 1}
    bad_info = [p for p in house.problems if problem_kind(p) == "bad_model_info"][0]
    assert "3D-FUTURE-model/m_broken_info/model_info.json unreadable" in bad_info
    # The category falls back to the global list; the room transform is not applied.
    g = [m for m in house.rooms[0].meshes if house.instances[m.instance].source_uid == "g"][0]
    assert g.label == 17
    np.testing.assert_allclose(g.vertices[0], [1.0, -1.0, 0.0])  # pos (1, 0, 1) only -> world (1, -1, 0)


def test_room_without_floor_is_skipped(tmp_path):
    h = tf.base_house()
    h["scene"]["room"][0]["children"] = h["scene"]["room"][0]["children"][1:]  # drop the floor child
    root = tf.write_front(tmp_path, {"house1": h})
    house = _house(root)
    assert house.rooms == []
    assert house.counts == {"room_without_floor": 1}
    assert "house1/Bedroom-1" in house.problems[0] and "no floor" in house.problems[0]
    # The unreferenced floor and the skipped room's meshes are kept as loose meshes.
    assert sorted(m.label for m in house.loose_meshes) == [30, 40, 40, 40, 40, 51, 67]
    with pytest.raises(RoomNotFoundError, match="no floor"):
        room_by_uid(root, "house1/Bedroom-1")


# ----------------------------------------------------------------------------- files and errors


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        (
            '{"uid": "x",\n "scene": {\n "room": [1 2]}}',
            "3D-FRONT/bad.json: invalid JSON at line 3 column 13: Expecting ','",
        ),
        (
            '{"uid": "x", "scene": {"room": [{"type": "Bed',
            "3D-FRONT/bad.json: invalid JSON at line 1 column 42: Unterminated string",
        ),
        ("", "3D-FRONT/bad.json: empty file"),
        ("[1, 2]", "3D-FRONT/bad.json: expected a JSON object, found list"),
        ('{"uid": "x"}', "3D-FRONT/bad.json: no 'scene.room' list"),
    ],
)
def test_malformed_and_truncated_json(tmp_path, text, expect):
    root = tf.write_front(tmp_path, {"bad": text})
    with pytest.raises(HouseLoadError) as exc:
        _house(root, "bad")
    assert expect in str(exc.value)
    assert exc.value.house_uid == "bad" and exc.value.path == root / "3D-FRONT" / "bad.json"


def test_missing_house_file(tmp_path):
    root = tf.write_front(tmp_path, {})
    with pytest.raises(HouseLoadError, match="3D-FRONT/nope.json: no such file"):
        _house(root, "nope")


def test_find_houses_layout(tmp_path):
    root = tf.write_front(tmp_path / "front", {"b": tf.base_house(), "a": tf.base_house()})
    assert [p.name for p in find_houses(root)] == ["a.json", "b.json"]
    with pytest.raises(FrontLayoutError, match="pass its parent"):
        find_houses(root / "3D-FRONT")
    with pytest.raises(FrontLayoutError, match="no such folder"):
        find_houses(tmp_path / "missing")
    (tmp_path / "empty" / "3D-FRONT").mkdir(parents=True)
    with pytest.raises(FrontLayoutError, match="no house files"):
        find_houses(tmp_path / "empty")


def test_load_houses_goes_on_past_bad_houses(tmp_path):
    root = tf.write_front(tmp_path, {"a": tf.base_house(), "b": "{truncated", "c": tf.base_house()})
    got = list(load_houses(root))
    assert [type(g).__name__ for g in got] == ["House", "HouseLoadError", "House"]
    assert "3D-FRONT/b.json: invalid JSON" in str(got[1])
    got = list(load_houses(root, ["c", "zz"], load_geometry=False))
    assert got[0].uid == "c" and "zz.json: no such file" in str(got[1])


def test_room_by_uid(tmp_path):
    root = tf.write_front(tmp_path, {"house1": tf.base_house()})
    house, room = room_by_uid(root, "house1/Bedroom-1")
    assert house.uid == "house1" and room.room_id == "Bedroom-1" and len(room.meshes) == 7
    with pytest.raises(RoomNotFoundError, match=r"has no room 'Kitchen-3'.*rooms: Bedroom-1"):
        room_by_uid(root, "house1/Kitchen-3")
    with pytest.raises(RoomNotFoundError, match=r"no house 'other'.*houses: house1"):
        room_by_uid(root, "other/Bedroom-1")
    with pytest.raises(RoomNotFoundError, match="expected HOUSE_UID/ROOM_INSTANCEID"):
        room_by_uid(root, "house1")


def test_select_rooms_for_batch_commands(tmp_path):
    root = tf.write_front(tmp_path, {"a": tf.base_house(), "b": "{truncated", "c": tf.base_house()})
    rooms, problems = select_rooms(root)
    assert rooms == [("a/Bedroom-1", root / "3D-FRONT" / "a.json"), ("c/Bedroom-1", root / "3D-FRONT" / "c.json")]
    assert len(problems) == 1 and "b.json" in problems[0], "a bad house is reported, the others go on"
    chosen, problems = select_rooms(root, ["c/Bedroom-1", "c/Bedroom-1"])
    assert chosen == [("c/Bedroom-1", root / "3D-FRONT" / "c.json")] and problems == []
    with pytest.raises(RoomNotFoundError, match="no room 'Kitchen-3'"):
        select_rooms(root, ["a/Kitchen-3"])


def test_obj_reader_speed(tmp_path):
    # A 40k-face model reads well under a second (this machine is shared and slow).
    n = 100
    g = np.stack(np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij"), -1).reshape(-1, 2)
    lines = [f"v {x} {y} 0" for x, y in g] + [f"vt {x / n} {y / n}" for x, y in g]
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1) + 1
    for i in range(n):
        for j in range(n):
            a, b, c, d = idx[i, j], idx[i + 1, j], idx[i + 1, j + 1], idx[i, j + 1]
            lines.append(f"f {a}/{a}/1 {b}/{b}/1 {c}/{c}/1")
            lines.append(f"f {a}/{a}/1 {c}/{c}/1 {d}/{d}/1")
    lines = lines * 2  # 40k faces (vertices repeated: indices stay valid)
    p = tmp_path / "big.obj"
    p.write_text("\n".join(lines))
    import time

    t0 = time.perf_counter()
    m = read_obj(p)
    dt = time.perf_counter() - t0
    assert m.faces.shape == (4 * n * n, 3) and m.uv.shape == (4 * n * n, 3, 2)
    assert m.faces.max() == (n + 1) ** 2 - 1  # 1-based absolute indices refer to the first copy
    assert dt < 3.0, dt
    assert math.isfinite(dt)
