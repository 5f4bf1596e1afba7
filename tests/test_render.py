"""The Blender renderer against the truth: Open3D ray casts of the scene's own mesh.

Real Blender (Cycles, in a subprocess) renders a tiny box room with a box inside; every check
compares with an independent ray cast through the same pixel centres.
"""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest
from PIL import Image
from scipy import ndimage

from panorooms3d.geometry import SKYBOX_FACES, pixel_rays, skybox_cam_to_world
from panorooms3d.render.blender_scene import box_uv, read_exr, room_lights
from panorooms3d.render.cameras import house_index, inside_room, panorama_camera, sample_cameras
from panorooms3d.render.render_room import object_codes, render_room, resample_textures
from panorooms3d.render.settings import RenderSettings
from panorooms3d.scene.model import House, Material, Mesh, Room, merge_meshes
from panorooms3d.store.frames import read_frames
from panorooms3d.taxonomy import CEILING, FLOOR

# Room 3 x 2.5 x 2.6 m; distinct raw labels: floor, ceiling and four wall-class ids.
ROOM = (3.0, 2.5, 2.6)
WALL_LABELS = (40, 93, 95, 85)
CABINET = 48


def quad(p0, p1, p2, p3) -> tuple[np.ndarray, np.ndarray]:
    return np.array([p0, p1, p2, p3], float), np.array([[0, 1, 2], [0, 2, 3]])


def box(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """A closed axis-aligned box (12 triangles)."""
    x0, y0, z0 = lo
    x1, y1, z1 = hi
    v = np.array([[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0],
                  [x0, y0, z1], [x1, y0, z1], [x1, y1, z1], [x0, y1, z1]], float)
    f = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                  [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]])
    return v, f


def box_room(uid="boxhouse", room_id="Room-1", origin=(0.0, 0.0), objects=(((0.3, 0.3, 0.0), (0.9, 0.8, 0.8)),),
             texture=None, open_walls=(), first_instance=1) -> House:
    """A House with one box room (floor, ceiling, 4 walls; wall i runs from corner i to i+1 and is
    left out when i is in ``open_walls``) and box objects inside."""
    ox, oy = origin
    X, Y, Z = ROOM
    c = [(ox, oy), (ox + X, oy), (ox + X, oy + Y), (ox, oy + Y)]
    meshes = []
    v, f = quad(*[(x, y, 0.0) for x, y in c])
    i0 = first_instance - 1
    meshes.append(Mesh("Floor" + room_id, v, f, FLOOR, i0 + 1, material=Material(texture=texture, colour=(0.7, 0.6, 0.5)),
                       room_id=room_id))
    v, f = quad(*[(x, y, Z) for x, y in c[::-1]])
    meshes.append(Mesh("Ceiling" + room_id, v, f, CEILING, i0 + 2, material=Material(colour=(0.9, 0.9, 0.9)), room_id=room_id))
    for i in range(4):
        if i in open_walls:
            continue
        (xa, ya), (xb, yb) = c[i], c[(i + 1) % 4]
        v, f = quad((xa, ya, 0.0), (xb, yb, 0.0), (xb, yb, Z), (xa, ya, Z))
        meshes.append(Mesh(f"Wall{i}" + room_id, v, f, WALL_LABELS[i], i0 + 3 + i,
                           material=Material(texture=texture, colour=(0.8, 0.8, 0.75)), room_id=room_id))
    for j, (lo, hi) in enumerate(objects):
        v, f = box(np.add(lo, (ox, oy, 0)), np.add(hi, (ox, oy, 0)))
        meshes.append(Mesh(f"Cabinet{j}" + room_id, v, f, CABINET, i0 + 7 + j, material=Material(colour=(0.3, 0.4, 0.6)),
                           room_id=room_id))
    return House(uid=uid, rooms=[Room(uid, room_id, "Bedroom", meshes)])


def oracle(house: House, K: np.ndarray, width: int, height: int, c2w: np.ndarray):
    """Independent truth: Open3D ray cast through pixel centres -> planar depth, label, instance."""
    v, f, lab, inst = merge_meshes(house.all_meshes())
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
    d = pixel_rays(K, width, height).reshape(-1, 3) @ c2w[:3, :3].T
    rays = np.concatenate([np.broadcast_to(c2w[:3, 3], d.shape), d], axis=1).astype(np.float32)
    ans = scene.cast_rays(o3d.core.Tensor(rays))
    t = ans["t_hit"].numpy()
    prim = ans["primitive_ids"].numpy().astype(np.int64)
    hit = np.isfinite(t)
    prim = np.where(hit, prim, 0)
    depth = np.where(hit, t, 0).reshape(height, width)
    return (depth, np.where(hit, lab[prim], 0).reshape(height, width),
            np.where(hit, inst[prim], 0).reshape(height, width))


def away_from_edges(label: np.ndarray, px: int = 2) -> np.ndarray:
    """Pixels whose (2px+1)^2 neighbourhood has one label (the oracle's)."""
    lo = ndimage.minimum_filter(label, size=2 * px + 1, mode="nearest")
    hi = ndimage.maximum_filter(label, size=2 * px + 1, mode="nearest")
    return lo == hi


def check_against_oracle(house, K, w, h, c2w, rgb, depth, label, instance, what: str) -> None:
    d0, l0, i0 = oracle(house, K, w, h, c2w)
    hit = d0 > 0
    assert hit.mean() > 0.99, f"{what}: the oracle misses pixels inside a closed room"
    ok = np.abs(depth - d0) <= 1e-3
    assert ok[hit].mean() >= 0.99, f"{what}: depth within 1 mm on {ok[hit].mean():.4f} of hit pixels"
    inner = away_from_edges(l0.astype(np.int64) * 1000 + i0)
    assert (label == l0)[inner].mean() >= 0.99, f"{what}: labels equal on {(label == l0)[inner].mean():.4f}"
    assert (instance == i0)[inner].mean() >= 0.99, f"{what}: instances equal {(instance == i0)[inner].mean():.4f}"
    assert set(np.unique(label)) <= set(np.unique(l0)) | {0}
    # Exact, unfiltered passes: even at label edges the label is one of the pixel centre's.
    assert (label == l0).mean() >= 0.98 and (instance == i0).mean() >= 0.98, what
    # Lighting: not black, not blown out.
    mean = rgb.mean()
    assert 25 < mean < 235, f"{what}: mean brightness {mean:.1f}"
    assert (rgb.max(axis=-1) >= 254).mean() < 0.2, f"{what}: blown-out pixels"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("render")
    tex = tmp / "checker.png"
    checker = (np.indices((64, 64)).sum(axis=0) // 8 % 2).astype(np.uint8) * 120 + 100
    Image.fromarray(np.stack([checker] * 3, axis=-1)).save(tex)
    house = box_room(texture=tex)
    house.rooms[0].meshes[-1].material = Material(texture=tmp / "missing.png", colour=(0.3, 0.4, 0.6))
    settings = RenderSettings(width=80, height=60, views=3, samples=2, skybox_size=64, seed=3, timeout=300)
    out = tmp / "boxhouse__Room-1.zarr"
    info = render_room(house, "Room-1", out, settings)
    return house, settings, out, info


@pytest.mark.blender
def test_perspective_frames_match_ray_casts(rendered):
    house, settings, out, info = rendered
    fr = read_frames(out)
    assert fr.rgb.shape == (3, 60, 80, 3) and fr.rgb.dtype == np.uint8
    assert fr.depth.dtype == np.float32 and fr.label.dtype == np.uint8 and fr.instance.dtype == np.uint16
    assert np.allclose(fr.K[0, 2], 39.5) and np.allclose(fr.K[1, 2], 29.5)
    for i in range(fr.num_frames):
        check_against_oracle(house, fr.K, 80, 60, fr.cam_to_world[i], fr.rgb[i], fr.depth[i], fr.label[i],
                             fr.instance[i], f"view {i}")
    assert info["frames"] == 3 and 0 < info["coverage"] <= 1


@pytest.mark.blender
def test_skybox_faces_match_ray_casts(rendered):
    house, settings, out, info = rendered
    fr = read_frames(out)
    assert set(fr.skybox) == set(SKYBOX_FACES)
    assert np.allclose(fr.skybox_K[0, 0], 32.0) and np.allclose(fr.skybox_K[0, 2], 31.5)
    for face in SKYBOX_FACES:
        f = fr.skybox[face]
        assert f["rgb"].shape == (64, 64, 3)
        c2w = skybox_cam_to_world(face, fr.pano_camera)
        check_against_oracle(house, fr.skybox_K, 64, 64, c2w, f["rgb"], f["depth"], f["label"], f["instance"],
                             f"skybox {face}")
    assert fr.skybox["+z"]["label"][20:44, 20:44].min() == CEILING
    assert fr.skybox["-z"]["label"][20:44, 20:44].max() == FLOOR or CABINET in fr.skybox["-z"]["label"]


@pytest.mark.blender
def test_store_attrs(rendered):
    house, settings, out, info = rendered
    fr = read_frames(out, skybox=False)
    a = fr.attrs
    assert a["room_uid"] == "boxhouse/Room-1"
    assert a["settings"]["width"] == 80 and a["settings"]["samples"] == 2
    assert a["versions"]["blender"].startswith("4.5")
    assert 0 < a["coverage"] <= 1
    assert len(a["pano_camera"]) == 3 and np.asarray(a["skybox_K"]).shape == (3, 3)
    # The rendered room's walls got the house's wall texture (the pool holds one texture).
    assert a["texture_overrides"]
    # A missing texture is rendered with the colour and reported, never a crash.
    assert any("missing.png" in p for p in a["render_problems"])


@pytest.mark.blender
def test_whole_house_is_loaded(tmp_path):
    """Two rooms open to each other: rendering room 1 shows room 2 through the opening."""
    house = box_room(open_walls=(1,), objects=())
    other = box_room(room_id="Room-2", origin=(3.0, 0.0), open_walls=(3,), first_instance=101,
                     objects=(((1.0, 0.8, 0.0), (1.8, 1.6, 1.0)),))
    house.rooms += other.rooms
    settings = RenderSettings(width=48, height=36, views=1, samples=1, skybox_size=48, seed=0, timeout=300)
    render_room(house, "Room-1", tmp_path / "r.zarr", settings)
    fr = read_frames(tmp_path / "r.zarr")
    face = fr.skybox["+x"]
    check_against_oracle(house, fr.skybox_K, 48, 48, skybox_cam_to_world("+x", fr.pano_camera), face["rgb"],
                         face["depth"], face["label"], face["instance"], "skybox +x through the opening")
    assert (face["instance"] == 107).mean() > 0.02, "room 2's cabinet is seen"
    assert face["depth"].max() > 4.0, "room 2's far wall is 4.5 m away"


def test_camera_sampling_rules():
    house = box_room()
    s = RenderSettings(views=20, seed=1, width=64, height=48)
    c2w, stats = sample_cameras(house, "Room-1", s, np.random.default_rng(0))
    assert c2w.shape == (20, 4, 4)
    pos = c2w[:, :3, 3]
    assert np.all((pos[:, 2] >= 1.4 - 1e-9) & (pos[:, 2] <= 1.8 + 1e-9)), "height above the floor (z = 0)"
    assert np.all((pos[:, 0] > 0) & (pos[:, 0] < 3) & (pos[:, 1] > 0) & (pos[:, 1] < 2.5)), "inside the room"
    # Clearance from the analytic room: walls, ceiling and the cabinet box.
    v, f, _, _ = merge_meshes(house.all_meshes())
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
    dist = scene.compute_distance(o3d.core.Tensor(pos.astype(np.float32))).numpy()
    assert dist.min() >= 0.3 - 1e-6
    wall_dist = np.minimum.reduce([pos[:, 0], 3 - pos[:, 0], pos[:, 1], 2.5 - pos[:, 1], 2.6 - pos[:, 2]])
    assert wall_dist.min() >= 0.3 - 1e-6
    fwd = c2w[:, :3, 2]
    pitch = np.degrees(np.arcsin(-fwd[:, 2]))
    assert np.all((pitch >= -1e-6) & (pitch <= 30 + 1e-6)), "pitched 0-30 deg down"
    assert np.allclose(c2w[:, 2, 0], 0, atol=1e-9), "no roll: camera x stays horizontal"
    assert np.allclose(np.einsum("nij,nik->njk", c2w[:, :3, :3], c2w[:, :3, :3]), np.eye(3), atol=1e-9)
    yaw = np.arctan2(fwd[:, 1], fwd[:, 0])
    assert np.ptp(yaw) > np.pi, "yaw all around"


def test_camera_sampling_is_seeded_and_fails_clearly():
    house = box_room()
    s = RenderSettings(views=5)
    a, _ = sample_cameras(house, "Room-1", s, np.random.default_rng(7))
    b, _ = sample_cameras(house, "Room-1", s, np.random.default_rng(7))
    assert np.array_equal(a, b)
    with pytest.raises(RuntimeError, match="boxhouse/Room-1"):
        sample_cameras(house, "Room-1", RenderSettings(views=5, clearance=1.3), np.random.default_rng(0),
                       max_candidates=512)


def test_panorama_camera_centre_and_moved():
    free = box_room(objects=())
    p, info = panorama_camera(free, "Room-1", 0.3)
    assert np.allclose(p, [1.5, 1.25, 1.3]) and not info["moved"]
    # A cabinet occupying the centre up to 1.5 m: the camera moves to the nearest free point.
    blocked = box_room(objects=(((1.0, 0.8, 0.0), (2.0, 1.7, 1.5)),))
    p, info = panorama_camera(blocked, "Room-1", 0.3)
    assert info["moved"]
    v, f, _, _ = merge_meshes(blocked.all_meshes())
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
    assert scene.compute_distance(o3d.core.Tensor(p[None].astype(np.float32))).numpy()[0] >= 0.3 - 1e-6
    # Nearest free point: straight up over the cabinet to z = 1.8 (1.5 m + 0.3 m), 0.5 m away.
    assert np.allclose(p[:2], [1.5, 1.25], atol=0.051) and abs(p[2] - 1.8) <= 0.051
    assert info["moved_by"] <= 0.55


def test_inside_room_uses_this_rooms_floor():
    house = box_room()
    other = box_room(uid="boxhouse", room_id="Room-2", origin=(3.0, 0.0), objects=())
    house.rooms += other.rooms
    idx = house_index(house)
    pts = np.array([[1.5, 1.2, 1.5], [4.5, 1.2, 1.5], [0.6, 0.5, 1.5]])
    assert inside_room(idx, "Room-1", pts).tolist() == [True, False, False]  # the last one is over the cabinet
    assert inside_room(idx, "Room-2", pts).tolist() == [False, True, False]


def test_object_codes_and_texture_resampling(tmp_path):
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / name)
    house = box_room(texture=tmp_path / "a.png")
    house.rooms[0].meshes[2].material = Material(texture=tmp_path / "b.png")  # a second wall texture in the pool
    codes, lab, inst = object_codes(house)
    meshes = house.all_meshes()
    assert [lab[c] for c in codes] == [m.label for m in meshes]
    assert [inst[c] for c in codes] == [m.instance for m in meshes]
    assert lab[0] == 0 and inst[0] == 0
    over = resample_textures(house, "Room-1", np.random.default_rng(0))
    walls = {m.name for m in meshes if m.name.startswith("Wall")}
    assert walls <= set(over) and len({over[w][0] for w in walls}) == 1
    assert "FloorRoom-1" in over and "Cabinet0Room-1" not in over


def test_room_lights_and_box_uv():
    house = box_room()
    lights = room_lights(house)
    assert {li["type"] for li in lights} == {"AREA", "POINT"}
    for li in lights:
        assert 0 < li["location"][2] < 2.6 and li["power"] > 0
    v, f = box((0, 0, 0), (2, 1, 1))
    uv = box_uv(v, f, uv_scale=0.5)
    assert uv.shape == (12, 3, 2) and uv.max() == pytest.approx(4.0)


def test_read_exr_rejects_other_files(tmp_path):
    p = tmp_path / "x.exr"
    p.write_bytes(b"not an exr")
    with pytest.raises(ValueError, match="x.exr"):
        read_exr(p)
