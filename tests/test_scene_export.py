"""PLY export/read-back and the `scenes` / `export` commands, on hand-written tiny houses."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from script_module import load_script

from panorooms3d.scene.commands import export_command, scenes_command
from panorooms3d.scene.export import PlyError, export_room_ply, read_ply_faces, write_ply
from panorooms3d.scene.front import load_house
from panorooms3d.taxonomy import colourise

tf = load_script("tests/fixtures/tiny_front.py")


def _vertex_block(path: Path, n_vertices: int) -> np.ndarray:
    data = path.read_bytes()
    start = data.index(b"end_header\n") + len(b"end_header\n")
    dt = np.dtype([("xyz", "<f4", (3,)), ("rgb", "u1", (3,))])
    return np.frombuffer(data, dt, count=n_vertices, offset=start)


def test_write_and_read_ply_by_hand(tmp_path):
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 2.5]], float)
    f = np.array([[0, 1, 2], [0, 1, 3]])
    p = write_ply(tmp_path / "t.ply", v, f, label=[51, 67], instance=[3, 700])
    data = p.read_bytes()
    header = data[: data.index(b"end_header\n")].decode()
    assert "format binary_little_endian 1.0" in header
    assert "element vertex 4" in header and "element face 2" in header
    assert "property uchar label" in header and "property ushort instance" in header
    assert len(data) == len(header) + len("end_header\n") + 4 * 15 + 2 * 16
    verts, faces, label, inst = read_ply_faces(p)
    np.testing.assert_array_equal(verts, v)
    assert faces.tolist() == [[0, 1, 2], [0, 1, 3]]
    assert label.tolist() == [51, 67] and label.dtype == np.uint8
    assert inst.tolist() == [3, 700] and inst.dtype == np.uint16
    # Vertex colours: vertex 2 is only in the floor face (51), vertex 3 only in the bed face (67).
    rgb = _vertex_block(p, 4)["rgb"]
    assert rgb[2].tolist() == colourise(np.array(51)).tolist()
    assert rgb[3].tolist() == colourise(np.array(67)).tolist()
    assert rgb[2].tolist() != rgb[3].tolist()
    # Atomic: nothing but the file itself in the folder; rewriting replaces it.
    write_ply(p, v[:3], f[:1], label=[30], instance=[1])
    assert [x.name for x in tmp_path.iterdir()] == ["t.ply"]
    assert read_ply_faces(p)[2].tolist() == [30]


def test_read_ply_errors(tmp_path):
    p = write_ply(tmp_path / "t.ply", np.eye(3), [[0, 1, 2]], [40], [1])
    (tmp_path / "cut.ply").write_bytes(p.read_bytes()[:-5])
    with pytest.raises(PlyError, match="cut.ply: truncated"):
        read_ply_faces(tmp_path / "cut.ply")
    (tmp_path / "a.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    with pytest.raises(PlyError, match="a.ply: format ascii 1.0 not supported"):
        read_ply_faces(tmp_path / "a.ply")
    (tmp_path / "x.ply").write_text("hello")
    with pytest.raises(PlyError, match="x.ply: not a PLY"):
        read_ply_faces(tmp_path / "x.ply")


def test_export_room_world_coordinates_and_labels(tmp_path):
    root = tf.write_front(tmp_path / "front", {"house1": tf.base_house()})
    room = load_house(root / "3D-FRONT" / "house1.json").room("Bedroom-1")
    out = export_room_ply(room, tmp_path / "out" / "room.ply")
    verts, faces, label, inst = read_ply_faces(out)
    assert len(faces) == 6 * 2 + 4
    assert sorted(np.unique(label).tolist()) == [30, 40, 51, 67]
    assert (label == 40).sum() == 8 and (label == 51).sum() == 2
    bed = label == 67
    assert set(inst[bed].tolist()) == {7}
    bed_corners = verts[faces[bed]].reshape(-1, 3)
    # The hand-computed world corners of the tetrahedron (see fixtures/tiny_front.py), float32.
    for corner in tf.TETRA_WORLD:
        assert np.isclose(bed_corners, corner, atol=1e-6).all(axis=1).any(), corner
    assert tf.signed_volume(verts, faces[bed]) == pytest.approx(2.0, abs=1e-5)
    floor = verts[faces[label == 51]].reshape(-1, 3)
    np.testing.assert_allclose(floor.min(0), [0, -3, 0])
    np.testing.assert_allclose(floor.max(0), [4, 0, 0])


def test_scenes_command_table_and_json(tmp_path):
    h2 = tf.base_house()
    h2["scene"]["room"][0]["instanceid"] = "Living-5"
    h2["scene"]["room"][0]["type"] = "LivingRoom"
    h2["scene"]["room"][0]["children"].append({"ref": "ghost", "instanceid": "x"})
    root = tf.write_front(tmp_path, {"house1": tf.base_house(), "house2": h2, "broken": '{"uid": '})
    res = CliRunner().invoke(scenes_command, ["--front", str(root)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    row1 = next(line for line in lines if line.startswith("house1 "))
    assert row1.split() == ["house1", "Bedroom-1", "Bedroom", "12.00", "2.80", "4.00", "x", "3.00", "1", "-", "-"]
    row2 = next(line for line in lines if line.startswith("house2 "))
    assert "Living-5" in row2 and "LivingRoom" in row2 and "unknown_ref 1" in row2
    bad = next(line for line in lines if line.startswith("broken "))
    assert "ERROR: 3D-FRONT/broken.json: invalid JSON at line 1 column 9" in bad
    assert lines[-1] == "3 houses (1 unreadable), 2 rooms; problems: unknown_ref 1"
    assert "Traceback" not in res.output

    res = CliRunner().invoke(scenes_command, ["--front", str(root), "--json", "--house", "house1"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["summary"] == {"houses": 1, "bad_houses": 0, "rooms": 1, "problems": {},
                               "rooms_with_unlabelled_furniture": 0, "missing_textures": 1}
    (room,) = data["houses"][0]["rooms"]
    assert room["uid"] == "house1/Bedroom-1" and room["floor_area_m2"] == 12.0 and room["height_m"] == 2.8
    assert room["size_m"] == [4.0, 3.0] and room["furniture"] == 1


def test_scenes_command_bad_layout_is_a_clean_error(tmp_path):
    res = CliRunner().invoke(scenes_command, ["--front", str(tmp_path)])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert "Error:" in res.output and "not a 3D-FRONT root" in res.output and "Traceback" not in res.output


def test_export_command(tmp_path):
    root = tf.write_front(tmp_path / "front", {"house1": tf.base_house()})
    out = tmp_path / "room.ply"
    res = CliRunner().invoke(export_command, ["--front", str(root), "--room", "house1/Bedroom-1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "16 faces" in res.output
    assert "51 floor (2)" in res.output and "67 double bed (4)" in res.output and "40 wallinner (8)" in res.output
    assert "[0.000, -3.000, 0.000] .. [6.000, 1.000, 2.800]" in res.output
    verts, faces, label, inst = read_ply_faces(out)
    assert len(faces) == 16 and sorted(set(label.tolist())) == [30, 40, 51, 67]
    np.testing.assert_allclose(verts.min(0), [0, -3, 0], atol=1e-6)
    np.testing.assert_allclose(verts.max(0), [6, 1, 2.8], atol=1e-6)


@pytest.mark.parametrize(
    ("room", "expect"),
    [
        ("house1/Kitchen-3", "house house1 has no room 'Kitchen-3'; rooms: Bedroom-1"),
        ("nohouse/Bedroom-1", "no house 'nohouse'"),
        ("house1", "expected HOUSE_UID/ROOM_INSTANCEID"),
    ],
)
def test_export_command_bad_room(tmp_path, room, expect):
    root = tf.write_front(tmp_path / "front", {"house1": tf.base_house()})
    out = tmp_path / "room.ply"
    res = CliRunner().invoke(export_command, ["--front", str(root), "--room", room, "--out", str(out)])
    assert res.exit_code != 0 and isinstance(res.exception, SystemExit)
    assert "Error:" in res.output and expect in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_export_command_bad_house_file(tmp_path):
    root = tf.write_front(tmp_path / "front", {"house1": '{"uid": "house1", "scene": '})
    res = CliRunner().invoke(
        export_command, ["--front", str(root), "--room", "house1/Bedroom-1", "--out", str(tmp_path / "r.ply")]
    )
    assert res.exit_code == 1 and "3D-FRONT/house1.json: invalid JSON" in res.output


def test_scenes_command_verbose_logs_each_problem(tmp_path, caplog):
    h = tf.base_house()
    h["scene"]["room"][0]["children"].append({"ref": "ghost", "instanceid": "x"})
    root = tf.write_front(tmp_path, {"house1": h})
    with caplog.at_level(logging.WARNING, logger="panorooms3d.scene"):
        res = CliRunner().invoke(scenes_command, ["--front", str(root)])
    assert res.exit_code == 0 and "unknown_ref 1" in res.output
    assert not [r for r in caplog.records if r.name == "panorooms3d.scene"]  # quiet by default
    with caplog.at_level(logging.WARNING, logger="panorooms3d.scene"):
        res = CliRunner().invoke(scenes_command, ["--front", str(root), "--verbose"])
    msgs = [r.getMessage() for r in caplog.records if r.name == "panorooms3d.scene"]
    assert msgs == [
        "unknown_ref: house1/Bedroom-1: child 'x' (ref 'ghost'): ref names no furniture or mesh uid: skipped"
    ]
    assert logging.getLogger("panorooms3d.scene").level == logging.NOTSET  # restored


def test_scenes_command_full_reads_objs(tmp_path):
    h = tf.base_house()
    h["furniture"].append({"uid": "f/cut", "jid": "cut", "category": "desk"})
    h["scene"]["room"][0]["children"].append({"ref": "f/cut", "instanceid": "furniture/9"})
    root = tf.write_front(tmp_path, {"house1": h}, {"tetra": tf.TETRA_OBJ, "cut": "v 0 0 0\nv 1 0"})
    res = CliRunner().invoke(scenes_command, ["--front", str(root)])
    assert res.exit_code == 0 and res.output.splitlines()[-1].endswith("problems: -")
    res = CliRunner().invoke(scenes_command, ["--front", str(root), "--full"])
    row = next(line for line in res.output.splitlines() if line.startswith("house1 "))
    assert row.split()[-4:] == ["1", "bad_obj", "1", "-"]  # furniture 1: the cut model is dropped
