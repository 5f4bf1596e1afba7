"""Real 3D-FRONT files (Alibaba's Trescope samples): every naming, every quirk, two rooms end to end.

The data is read where CI keeps it, beside the checkout: ``<repo>/../shared/data/3d-front-samples``
(two complete houses, 17 rooms, the 42 models they use; see its SOURCES.md). It is never copied
into the repository; a test that needs a changed house writes a changed copy of one house file
into a temporary FRONT_ROOT whose other entries are links to the real files.

Truth comes from the house JSON read here by hand (not through the loader), from the expected
table below (written from ``shared/reference/labels.md``), and from Open3D ray casts of the
loaded meshes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest
from click.testing import CliRunner
from scipy import ndimage

from panorooms3d.cli import cli
from panorooms3d.geometry import SKYBOX_FACES, pixel_rays, skybox_cam_to_world
from panorooms3d.scene.export import read_ply_faces
from panorooms3d.scene.front import load_house, problem_kind, summarise_room, unlabelled_furniture
from panorooms3d.scene.model import merge_meshes
from panorooms3d.store.dataset import Dataset
from panorooms3d.store.frames import read_frames
from panorooms3d.taxonomy import OTHERS

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "3d-front-samples"
pytestmark = pytest.mark.skipif(
    not (SAMPLES / "3D-FRONT").is_dir(),
    reason=f"the real 3D-FRONT samples are not beside the checkout ({SAMPLES}); see issue 10",
)

HOUSE_A = "07700701-1835-4532-8af0-bd8c7f624b1b"
HOUSE_B = "dc74ad5c-34cf-4237-a3f3-a94297a907c8"
BEDROOM = f"{HOUSE_A}/MasterBedroom-142"
LIVING = f"{HOUSE_A}/LivingDiningRoom-1912"

#: Raw id of each valid furniture category of the two houses (categories.txt section A), from labels.md:
#: King-size Bed was the 2020 "Double Bed" (67), Coffee Table the "Tea Table" (3), and so on.
EXPECTED_RAW = {
    "Ceiling Lamp": 8, "Coffee Table": 3, "Corner/Side Table": 72, "Dining Chair": 14, "Dining Table": 68,
    "Dressing Chair": 83, "Dressing Table": 80, "Footstool / Sofastool / Bed End Stool / Stool": 25,
    "King-size Bed": 67, "Lounge Chair / Cafe Chair / Office Chair": 78, "Nightstand": 76, "Pendant Lamp": 32,
    "Sideboard / Side Cabinet / Console table": 28, "Single bed": 70, "TV Stand": 56,
    "Three-seat / Multi-seat Sofa": 89, "Wardrobe": 84, "armchair": 16,
}  # fmt: skip


def _json(house: str) -> dict:
    return json.loads((SAMPLES / "3D-FRONT" / f"{house}.json").read_text(encoding="utf-8"))


def _expected_furniture(data: dict, room_id: str) -> Counter:
    """Raw ids of the furniture a room holds, read from the JSON by hand: valid items with a model."""
    furniture = {f["uid"]: f for f in data["furniture"]}
    room = next(r for r in data["scene"]["room"] if r["instanceid"] == room_id)
    out: Counter = Counter()
    for child in room["children"]:
        f = furniture.get(child["ref"])
        if f is None or f.get("valid") is False or not (SAMPLES / "3D-FUTURE-model" / f["jid"]).is_dir():
            continue
        out[EXPECTED_RAW[f["category"]]] += 1
    return out


@pytest.fixture(scope="module")
def houses():
    return {h: load_house(SAMPLES / "3D-FRONT" / f"{h}.json", SAMPLES) for h in (HOUSE_A, HOUSE_B)}


def _front_copy(root: Path, changes: dict[str, str]) -> Path:
    """A FRONT_ROOT with house A linked and house B copied with some furniture categories changed."""
    (root / "3D-FRONT").mkdir(parents=True)
    (root / "3D-FUTURE-model").symlink_to(SAMPLES / "3D-FUTURE-model", target_is_directory=True)
    (root / "3D-FRONT" / f"{HOUSE_A}.json").symlink_to(SAMPLES / "3D-FRONT" / f"{HOUSE_A}.json")
    data = _json(HOUSE_B)
    for f in data["furniture"]:
        if f["jid"] in changes:
            f["category"] = changes[f["jid"]]
    (root / "3D-FRONT" / f"{HOUSE_B}.json").write_text(json.dumps(data), encoding="utf-8")
    return root


# The bed of house B's SecondBedroom-9047 and the sofa of its LivingDiningRoom-9973 (jids from the JSON).
B_BED_JID = "7eb290b5-fc48-4981-bfe9-84ee0b34b988"
B_SOFA_JID = "79465c7a-26ec-4e33-8f3f-5e500bbdd541"


# ----------------------------------------------------------------------------- naming (points 1, 2)


def test_every_real_room_loads_with_every_furniture_item_labelled(houses):
    total = others = 0
    for uid, house in houses.items():
        data = _json(uid)
        assert [r.room_id for r in house.rooms] == [r["instanceid"] for r in data["scene"]["room"]]
        assert house.unknown_categories == {} and "unknown_category" not in house.counts
        for room in house.rooms:
            got = Counter(i.label for i in house.instances.values() if i.room_id == room.room_id and i.jid)
            assert got == _expected_furniture(data, room.room_id), room.uid
            assert room.unknown_categories == {} and room.unlabelled_furniture == {}
            _, faces, label, _ = room.triangles()
            total += len(faces)
            others += int((label == OTHERS).sum())
    assert total > 300_000 and others == 0, "no face of the 17 real rooms is labelled others (was 31.8%)"
    assert len(houses[HOUSE_A].rooms) + len(houses[HOUSE_B].rooms) == 17


def test_scenes_names_unknown_category_strings_per_room(tmp_path):
    root = _front_copy(tmp_path / "front", {B_BED_JID: "Hoverboard Dock", B_SOFA_JID: "Space Heater"})
    res = CliRunner().invoke(cli, ["scenes", "--front", str(root), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    rooms = {r["uid"]: r for h in data["houses"] for r in h["rooms"]}
    assert rooms[f"{HOUSE_B}/SecondBedroom-9047"]["unknown_categories"] == {"Hoverboard Dock": 1}
    assert rooms[f"{HOUSE_B}/SecondBedroom-9047"]["unlabelled_furniture"] == {"Hoverboard Dock": 1}
    assert rooms[f"{HOUSE_B}/LivingDiningRoom-9973"]["unlabelled_furniture"] == {"Space Heater": 1}
    assert sum(1 for r in rooms.values() if r["unknown_categories"]) == 2
    assert data["summary"]["rooms_with_unlabelled_furniture"] == 2
    by_house = {h["house"]: h for h in data["houses"]}
    assert by_house[HOUSE_B]["unknown_categories"] == {"Hoverboard Dock": 1, "Space Heater": 1}
    res = CliRunner().invoke(cli, ["scenes", "--front", str(root)])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if "SecondBedroom-9047" in line)
    assert row.endswith("'Hoverboard Dock'") and "unknown_category 1" in row
    assert "2 room(s) hold furniture of unknown categories" in res.output
    assert unlabelled_furniture(root, [f"{HOUSE_B}/SecondBedroom-9047", BEDROOM]) == {
        f"{HOUSE_B}/SecondBedroom-9047": {"Hoverboard Dock": 1}, BEDROOM: {}}


def test_build_filter_reports_each_room_and_refuses_an_empty_selection(tmp_path):
    root = _front_copy(tmp_path / "front", {B_BED_JID: "Hoverboard Dock"})
    out = tmp_path / "data"
    res = CliRunner().invoke(cli, ["build", "--front", str(root), "--out", str(out), "--skip-unlabelled-furniture",
                                   "--rooms", f"{HOUSE_B}/SecondBedroom-9047"])
    assert res.exit_code == 1
    assert f"skipping {HOUSE_B}/SecondBedroom-9047: unlabelled furniture 'Hoverboard Dock'" in res.output
    assert "Error: every selected room holds unlabelled furniture" in res.output and "Traceback" not in res.output
    assert not (out / "manifest.json").exists()


# ----------------------------------------------------------------------------- quirks (point 5)


def test_numbers_stored_as_json_strings(houses):
    seen = 0
    for uid, house in houses.items():
        meshes = {m.name.split("#")[0]: m for m in house.all_meshes()}
        for entry in _json(uid)["mesh"]:
            if not any(isinstance(x, str) for x in entry["xyz"]):
                continue
            seen += 1
            xyz = np.array([float(x) for x in entry["xyz"]]).reshape(-1, 3)
            want = np.stack([xyz[:, 0], -xyz[:, 2], xyz[:, 1]], axis=1)  # Y-up -> Z-up: (x, -z, y)
            np.testing.assert_allclose(meshes[f"{entry['type']}/{entry['uid']}"].vertices, want)
    assert seen == 18


def test_negative_scales_are_only_on_modelless_door_and_window_entries(houses):
    doors_seen = 0
    for uid, house in houses.items():
        data = _json(uid)
        furniture = {f["uid"]: f for f in data["furniture"]}
        door_refs = {r for d in data["extension"]["door"] for r in d["ref"]} & set(furniture)
        negative = [(r["instanceid"], c) for r in data["scene"]["room"] for c in r["children"]
                    if any(float(s) < 0 for s in c["scale"])]  # fmt: skip
        assert negative, uid
        for room_id, child in negative:
            f = furniture[child["ref"]]
            assert "category" not in f and "valid" not in f and "bbox" not in f
            assert not (SAMPLES / "3D-FUTURE-model" / f["jid"]).exists()
            lines = [p for p in house.problems if f"child {child['instanceid']!r}" in p and f"{uid}/{room_id}:" in p]
            assert [problem_kind(p) for p in lines] == ["missing_model"], lines
        assert "bad_scale" not in house.counts
        no_category = [f for f in data["furniture"] if "category" not in f]
        assert all("valid" not in f and not (SAMPLES / "3D-FUTURE-model" / f["jid"]).exists() for f in no_category)
        assert door_refs and door_refs <= {f["uid"] for f in no_category}, "the doors are such entries"
        doors_seen += len(door_refs)
    assert doors_seen == 6


def test_non_unit_json_normals_are_not_used(houses):
    for uid, house in houses.items():
        normals = np.concatenate([np.asarray(m["normal"], float).reshape(-1, 3) for m in _json(uid)["mesh"]])
        unit = np.isclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-3)
        assert unit.mean() < 0.5, "most normal triples of the real files are not unit vectors"
        for room in house.rooms:  # the loader takes orientation from the winding: floors face up, ceilings down
            for m in room.meshes:
                t = m.vertices[m.faces]
                nz = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])[:, 2]
                if m.label == 51:  # (zero-area triangles aside)
                    assert (nz > -1e-12).all() and (nz > 0).mean() > 0.7, m.name
                elif m.label == 30:
                    assert (nz < 1e-12).all() and (nz < 0).mean() > 0.7, m.name


def test_invalid_items_with_non_latin_categories_are_skipped(houses):
    for uid, house in houses.items():
        invalid = [f for f in _json(uid)["furniture"] if f.get("valid") is False]
        assert invalid and all(not f["category"].isascii() for f in invalid)
        jids = {i.jid for i in house.instances.values()}
        assert not jids & {f["jid"] for f in invalid}
        assert house.counts["invalid_furniture"] == sum(
            1 for r in _json(uid)["scene"]["room"] for c in r["children"] if c["ref"] in {f["uid"] for f in invalid})
    assert sum(house.counts["invalid_furniture"] for house in houses.values()) == 9


def test_lamps_through_the_ceiling_do_not_stretch_the_room(houses):
    room = houses[HOUSE_A].room("MasterBedroom-142")
    lamp = next(m for m in room.meshes if m.name.startswith("Ceiling Lamp/"))
    assert lamp.bounds()[1][2] > 3.1  # the lamp's model reaches 0.57 m above the 2.6 m ceiling
    lo, hi = room.bounds()
    assert hi[2] == pytest.approx(2.6) and lo[2] == pytest.approx(0.0)
    assert room.mesh_bounds()[1][2] == pytest.approx(lamp.bounds()[1][2])
    living = houses[HOUSE_B].room("LivingDiningRoom-9973")  # a TV stand 4 cm into the wall
    tv = next(m for m in living.meshes if m.name.startswith("TV Stand/"))
    assert tv.bounds()[0][0] < living.floor_bounds()[0][0] and living.bounds()[0][0] <= tv.bounds()[0][0]
    assert living.bounds()[1][2] == pytest.approx(2.6) and living.mesh_bounds()[1][2] > 3.0


# ----------------------------------------------------------------------------- built-in cabinets (point 6)


def test_kitchen_cabinet_pieces_form_two_units(houses):
    for uid, room_id, pieces in ((HOUSE_A, "Kitchen-313", 21), (HOUSE_B, "Kitchen-8344", 27)):
        house = houses[uid]
        room = house.room(room_id)
        data = _json(uid)
        jroom = next(r for r in data["scene"]["room"] if r["instanceid"] == room_id)
        assert not {c["ref"] for c in jroom["children"]} & {f["uid"] for f in data["furniture"]}, "no furniture"
        cab = [m for m in room.meshes if m.name.startswith("Cabinet/")]
        assert len(cab) == pieces
        units: dict[int, list] = {}
        for m in cab:
            units.setdefault(m.instance, []).append(m)
        assert len(units) == 2 and summarise_room(house, room).furniture == 2
        spans = sorted((min(m.bounds()[0][2] for m in ms), max(m.bounds()[1][2] for m in ms)) for ms in units.values())
        assert spans[0][0] == pytest.approx(0.0) and spans[0][1] == pytest.approx(0.84, abs=0.01)  # counter
        assert spans[1][0] > 1.5  # wall-hung cabinets
        # the two material parts of a piece (uids differing only in the last component) share a unit
        by_part: dict[str, set] = {}
        for m in cab:
            ref = m.name.split("/", 1)[1].split("#")[0]
            if ref.count("/") >= 2:
                by_part.setdefault(ref.rsplit("/", 1)[0], set()).add(m.instance)
        assert by_part and all(len(s) == 1 for s in by_part.values())
        assert all(house.instances[i].room_id == room_id for i in units)


# ----------------------------------------------------------------------------- end to end (points 3, 4, 7)

TINY = ["--views", "3", "--width", "80", "--height", "60", "--samples", "2", "--skybox-size", "48",
        "--pano-height", "32", "--splits", "0.5,0,0.5", "--seed", "1"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    root = _front_copy(tmp / "front", {B_BED_JID: "Hoverboard Dock"})
    out = tmp / "data"
    res = CliRunner().invoke(cli, ["build", "--front", str(root), "--out", str(out), *TINY,
                                   "--skip-unlabelled-furniture", "--rooms", BEDROOM, "--rooms", LIVING,
                                   "--rooms", f"{HOUSE_B}/SecondBedroom-9047"])
    assert res.exit_code == 0, res.output
    return root, out, res.output


def _raycaster(house):
    v, f, lab, inst = merge_meshes(house.all_meshes())
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
    return scene, lab, inst


def _cast(caster, origin, dirs):
    scene, lab, inst = caster
    rays = np.concatenate([np.broadcast_to(origin, dirs.shape), dirs], axis=1).astype(np.float32)
    ans = scene.cast_rays(o3d.core.Tensor(rays))
    t = ans["t_hit"].numpy()
    hit = np.isfinite(t)
    prim = np.where(hit, ans["primitive_ids"].numpy().astype(np.int64), 0)
    return np.where(hit, t, 0), np.where(hit, lab[prim], 0), np.where(hit, inst[prim], 0)


def _inner(label, instance, px=2):
    key = label.astype(np.int64) * 65536 + instance
    return ndimage.minimum_filter(key, 2 * px + 1, mode="nearest") == ndimage.maximum_filter(key, 2 * px + 1,
                                                                                              mode="nearest")


@pytest.mark.blender
def test_build_skips_the_unlabelled_room_and_reports_it(built):
    _, out, output = built
    assert f"skipping {HOUSE_B}/SecondBedroom-9047: unlabelled furniture 'Hoverboard Dock'" in output
    assert "1 of 3 room(s) left out" in output
    skipped = json.loads((out / "skipped_rooms.json").read_text())
    assert skipped["rooms"] == {f"{HOUSE_B}/SecondBedroom-9047": {"Hoverboard Dock": 1}}
    assert sorted(Dataset(out).rooms) == sorted([BEDROOM, LIVING])


@pytest.mark.blender
def test_real_frames_match_ray_casts_of_the_loaded_meshes(built, houses):
    _, out, _ = built
    house = houses[HOUSE_A]
    caster = _raycaster(house)
    for uid in (BEDROOM, LIVING):
        fr = read_frames(out / "work" / f"{uid.replace('/', '__')}.zarr")
        views = [(fr.K, fr.cam_to_world[i], fr.depth[i], fr.label[i], fr.instance[i], fr.rgb[i], f"view {i}")
                 for i in range(fr.num_frames)]
        views += [(fr.skybox_K, skybox_cam_to_world(face, fr.pano_camera), s["depth"], s["label"], s["instance"],
                   s["rgb"], f"skybox {face}") for face, s in ((f, fr.skybox[f]) for f in SKYBOX_FACES)]
        assert len(views) == 9
        for K, c2w, depth, label, instance, rgb, what in views:
            h, w = depth.shape
            d = pixel_rays(K, w, h).reshape(-1, 3) @ c2w[:3, :3].T
            d0, l0, i0 = (a.reshape(h, w) for a in _cast(caster, c2w[:3, 3], d))
            hit = d0 > 0
            assert ((depth > 0) == hit).mean() > 0.99, (uid, what)
            assert (np.abs(depth - d0) <= 1e-3)[hit].mean() >= 0.99, (uid, what)
            inner = _inner(l0, i0)
            assert (label == l0)[inner].mean() >= 0.99 and (instance == i0)[inner].mean() >= 0.99, (uid, what)
            assert 25 < rgb.mean() < 235, f"{uid} {what}: lit in plain colours (textures are not shipped)"
    assert house.missing_textures, "the samples ship no textures: the loader lists them"


@pytest.mark.blender
def test_real_rooms_fused_and_panoramas_made(built, houses):
    _, out, _ = built
    house = houses[HOUSE_A]
    caster = _raycaster(house)
    ds = Dataset(out)
    for uid in (BEDROOM, LIVING):
        room = house.room(uid.split("/")[1])
        vol = ds.load_volume(uid)
        top = vol.origin[2] + vol.tsdf.shape[2] * vol.voxel_size
        assert top <= room.bounds()[1][2] + 0.25, "the lamp above the ceiling does not stretch the grid"
        # labels of observed surface voxels against the nearest triangle of the loaded meshes
        sel = (vol.weight > 0) & (np.abs(vol.tsdf) < 0.34) & (vol.label > 0)
        centres = vol.origin + (np.argwhere(sel) + 0.5) * vol.voxel_size
        closest = caster[0].compute_closest_points(o3d.core.Tensor(centres.astype(np.float32)))
        want = caster[1][closest["primitive_ids"].numpy().astype(np.int64)]
        agree = (vol.label[sel] == want).mean()
        assert sel.sum() > 2000 and agree > 0.85, (uid, int(sel.sum()), agree)
        # the panorama against ray casts from its camera along the convention's directions
        pano = ds.load_panorama(uid)
        hh, ww = pano.depth.shape
        v, u = np.mgrid[0:hh, 0:ww]
        lon = ((u + 0.5) / ww - 0.5) * 2 * np.pi
        lat = (0.5 - (v + 0.5) / hh) * np.pi
        dirs = np.stack([np.cos(lat) * np.cos(lon), -np.cos(lat) * np.sin(lon), np.sin(lat)], -1).reshape(-1, 3)
        d0, l0, i0 = (a.reshape(hh, ww) for a in _cast(caster, pano.camera, dirs))
        inner = _inner(l0, i0, 1) & (d0 > 0)
        assert inner.mean() > 0.3
        assert (np.abs(pano.depth - d0) < 0.05 + 0.05 * d0)[inner].mean() > 0.95, uid
        assert (pano.label == l0)[inner].mean() > 0.95, uid


@pytest.mark.blender
def test_fuse_then_panorama_leaves_a_manifest_with_panoramas(built):
    root, out, _ = built
    data2 = out.parent / "data2"
    res = CliRunner().invoke(cli, ["fuse", "--work", str(out / "work"), "--out", str(data2), "--front", str(root),
                                   "--workers", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "packed 2 rooms" in res.output
    manifest = json.loads((data2 / "manifest.json").read_text())
    assert [r["has_panorama"] for r in manifest["rooms"]] == [False, False]
    res = CliRunner().invoke(cli, ["panorama", "--work", str(out / "work"), "--out", str(data2),
                                   "--height", "32", "--width", "64"])
    assert res.exit_code == 0, res.output
    assert "packed 2 rooms" in res.output
    manifest = json.loads((data2 / "manifest.json").read_text())
    assert [r["has_panorama"] for r in manifest["rooms"]] == [True, True]


@pytest.mark.blender
def test_labelled_export_holds_each_furniture_items_class(built, tmp_path):
    root, _, _ = built
    data = _json(HOUSE_A)
    for uid in (BEDROOM, LIVING):
        ply = tmp_path / f"{uid.split('/')[1]}.ply"
        res = CliRunner().invoke(cli, ["export", "--front", str(root), "--room", uid, "--out", str(ply)])
        assert res.exit_code == 0, res.output
        _, faces, label, instance = read_ply_faces(ply)
        want = _expected_furniture(data, uid.split("/")[1])
        assert want and OTHERS not in set(label.tolist())
        for raw, count in want.items():
            assert len(set(instance[label == raw].tolist())) == count, (uid, raw)
