"""3D predictions scored on the panorama pixels (the 2D teacher's unit), against an analytic box room.

The panorama labels are derived here from ray-box intersections (the camera at the room's centre, the
first face or object a ray meets), independently of the projection code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from bench_rooms import BED, CEILING, FLOOR, WALL, box_room

from panorooms3d.geometry import equirect_directions
from panorooms3d.volume import Panorama

SIZE = np.array([1.2, 1.0, 0.8])


def _first_hit_labels(camera: np.ndarray, lo: np.ndarray, hi: np.ndarray, h: int, w: int) -> np.ndarray:
    """Class of the first surface each equirect ray meets: the room's walls/floor/ceiling or the object box."""
    d = equirect_directions(h, w).reshape(-1, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        # room: the exit distance along each axis (camera inside [0, SIZE])
        t_axis = np.where(d > 0, (SIZE - camera) / d, np.where(d < 0, -camera / d, np.inf))
        t_room = t_axis.min(1)
        axis = t_axis.argmin(1)
        face = np.where(axis == 2, np.where(d[:, 2] < 0, FLOOR, CEILING), WALL)
        # object: slab method
        t1, t2 = (lo - camera) / d, (hi - camera) / d
        t_near = np.nanmax(np.minimum(t1, t2), 1)
        t_far = np.nanmin(np.maximum(t1, t2), 1)
    hit_obj = (t_near <= t_far) & (t_near > 0) & (t_near < t_room)
    return np.where(hit_obj, BED, face).reshape(h, w).astype(np.uint8)


@pytest.fixture(scope="module")
def room_data(tmp_path_factory):
    from panorooms3d.store.dataset import pack_dataset, write_room_panorama, write_room_volume

    root = tmp_path_factory.mktemp("pano_pixels") / "data"
    uids = ["box0/Room-0", "box1/Room-1"]
    for i, uid in enumerate(uids):
        vol, _ = box_room(uid, size_m=tuple(SIZE), seed=i)
        rng = np.random.default_rng(i)  # box_room's object: the same draws
        lo = np.array([0.3, 0.3, 0.0]) + rng.uniform(0, 0.2, 3) * [1, 1, 0]
        hi = lo + np.array([0.4, 0.3, 0.3])
        camera = SIZE / 2
        label = _first_hit_labels(camera, lo, hi, 64, 128)
        pano = Panorama(rgb=np.zeros((64, 128, 3), np.uint8), label=label, instance=np.zeros((64, 128), np.uint16),
                        depth=np.ones((64, 128), np.float32), camera=camera)
        write_room_volume(root, vol)
        write_room_panorama(root, uid, pano)
    pack_dataset(root, rooms_per_shard=2, splits={"train": [], "val": [], "test": uids})
    return root


def test_ground_truth_volume_seen_from_the_camera_matches_the_analytic_panorama(room_data):
    from panorooms3d.bench.data import load_room
    from panorooms3d.bench.evaluate import evaluate_on_panoramas
    from panorooms3d.store.dataset import Dataset
    from panorooms3d.taxonomy import get_class_set

    ds = Dataset(room_data)
    cs = get_class_set("paper30")
    truth = {u: load_room(ds, u).y for u in ds.split("test")}
    res = evaluate_on_panoramas(truth, room_data)
    assert res["unit"] == "panorama pixels" and [r["uid"] for r in res["rooms"]] == list(truth)
    # 4 cm voxels against exact rays: only pixels at the edges of faces may differ
    assert res["pooled"]["aAcc"] >= 97.0
    for raw in (WALL, FLOOR, CEILING, BED):
        assert res["per_class_iou"][cs.class_names[int(cs.map([raw])[0])]] >= 85.0
    # a volume that is wall everywhere: right exactly where the panorama shows wall
    wall = int(cs.map([WALL])[0])
    walls = {u: np.full_like(y, wall) for u, y in truth.items()}
    res_wall = evaluate_on_panoramas(walls, room_data)
    share = np.mean([(cs.map(ds.load_panorama(u).label) == wall).mean() for u in truth])
    assert res_wall["pooled"]["aAcc"] == pytest.approx(100 * share, abs=0.5)
    assert res_wall["per_class_iou"][cs.class_names[int(cs.map([BED])[0])]] == 0.0


def test_panorama_table_shows_whether_the_teacher_knows_more(room_data):
    """The table's "teacher − model" column: a perfect teacher against a wall-only model and the ceiling."""
    from panorooms3d.bench.data import load_room
    from panorooms3d.bench.evaluate import evaluate_on_panoramas
    from panorooms3d.bench.report import panorama_markdown
    from panorooms3d.store.dataset import Dataset
    from panorooms3d.taxonomy import get_class_set

    ds = Dataset(room_data)
    cs = get_class_set("paper30")
    truth = {u: load_room(ds, u).y for u in ds.split("test")}
    oracle = evaluate_on_panoramas(truth, room_data)
    wall = int(cs.map([WALL])[0])
    walls = evaluate_on_panoramas({u: np.full_like(y, wall) for u, y in truth.items()}, room_data)
    # the teacher's file layout (evaluate_teacher): a perfect teacher scores 100 on every panorama
    teacher = json.loads(json.dumps(oracle))
    for r in teacher["rooms"]:
        for k in ("aAcc", "mIoU", "mAcc"):
            r[k] = 100.0
    teacher["metrics"] = {**teacher["metrics"], "aAcc": 100.0, "mIoU": 100.0, "mAcc": 100.0}
    md = panorama_markdown([("walls only", [walls], ["single"]), ("no results", [], [])], teacher, oracle, n_boot=200)
    lines = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in md.splitlines() if line.startswith("| ")}
    assert "no results" not in lines, "runs without files are left out"
    assert lines["2D teacher (its own prediction)"][4] == "–"
    diff_walls = float(lines["walls only"][4].split()[0])
    assert diff_walls == pytest.approx(100 - walls["metrics"]["mIoU"], abs=0.05)
    assert diff_walls > 0
    assert panorama_markdown([("x", [], [])], teacher, oracle) == ""
