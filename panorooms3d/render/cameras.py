"""Camera placement: hand-held perspective views and the panorama camera (numpy + Open3D, no bpy).

Everything is in the world frame (metres, Z up) with OpenCV cameras (x right, y down, z
forward), as in docs/formats.md. Geometry queries (ray casts, distances to the nearest surface)
use Open3D's ``RaycastingScene`` over the WHOLE house, so a camera near a door keeps its
clearance to the next room's furniture too.

Rules (``RenderSettings`` holds the numbers):

- a perspective camera stands ``height_range`` (1.4-1.8 m) above THIS room's floor, inside this
  room (a ray straight down first hits this room's floor), at least ``clearance`` (0.3 m) from
  any surface, looks in a uniformly random direction (yaw) pitched ``pitch_range_deg`` (0-30 deg)
  down, with no roll; a view is rejected when its median depth is below ``min_median_depth``
  (0.8 m) or one instance covers more than ``max_instance_share`` (80%) of it (a probe ray cast
  at 48 x 36 decides);
- the panorama camera is at the room centre (floor bounding-box centre, half-way between floor
  and ceiling); when that point is occupied (closer than ``clearance`` to a surface, inside a
  piece of furniture, or not inside the room) it moves to the nearest free point inside the room on a 5 cm grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from panorooms3d.geometry import intrinsics, look_at, pixel_rays
from panorooms3d.scene.model import House, merge_meshes
from panorooms3d.taxonomy import FLOOR

PROBE_SIZE = (48, 36)
INVALID = np.uint32(0xFFFFFFFF)


@dataclass
class HouseIndex:
    """A ray-casting index of a whole house.

    Attributes:
        scene: Open3D ``RaycastingScene`` holding every triangle of the house (one geometry).
        vertices: (V, 3) float64 metres; faces: (F, 3) int64.
        face_label: (F,) uint8 raw ids; face_instance: (F,) uint16; face_room: (F,) int32 index
            into ``room_ids`` (-1 for loose meshes).
        room_ids: the house's room ids in order.
    """

    scene: o3d.t.geometry.RaycastingScene
    vertices: np.ndarray
    faces: np.ndarray
    face_label: np.ndarray
    face_instance: np.ndarray
    face_room: np.ndarray
    room_ids: list[str]

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cast rays (N, 3) + (N, 3) (world, directions need not be unit).

        Returns ``t`` (N,) float64 in units of the direction's length (inf = miss) and the hit
        triangle ``tri`` (N,) int64 (-1 = miss).
        """
        rays = np.concatenate([origins, directions], axis=-1).reshape(-1, 6).astype(np.float32)
        ans = self.scene.cast_rays(o3d.core.Tensor(rays))
        t = ans["t_hit"].numpy().astype(np.float64)
        prim = ans["primitive_ids"].numpy()
        tri = np.where(prim == INVALID, -1, prim.astype(np.int64))
        return np.where(tri >= 0, t, np.inf), tri

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Unsigned distance (N,) float64 metres from world points (N, 3) to the nearest surface."""
        q = o3d.core.Tensor(np.asarray(points, np.float32).reshape(-1, 3))
        return self.scene.compute_distance(q).numpy().astype(np.float64)

    def room_index(self, room_id: str) -> int:
        """Index of ``room_id`` in ``room_ids`` (the value ``face_room`` holds for its triangles)."""
        return self.room_ids.index(room_id)


def house_index(house: House) -> HouseIndex:
    """Build the :class:`HouseIndex` of every mesh of ``house`` (rooms and loose meshes)."""
    meshes = house.all_meshes()
    vertices, faces, label, instance = merge_meshes(meshes)
    room_ids = [r.room_id for r in house.rooms]
    rid = {r: i for i, r in enumerate(room_ids)}
    face_room = np.concatenate([np.full(m.num_faces, rid.get(m.room_id, -1), np.int32) for m in meshes]) \
        if meshes else np.zeros(0, np.int32)
    scene = o3d.t.geometry.RaycastingScene()
    if len(faces):
        scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    return HouseIndex(scene, vertices, faces, label, instance, face_room, room_ids)


def cast_frame(index: HouseIndex, K: np.ndarray, width: int, height: int, cam_to_world: np.ndarray):
    """Ray-cast one OpenCV camera through every pixel centre.

    Returns planar ``depth`` (H, W) float64 metres (0 = miss), ``label`` (H, W) uint8,
    ``instance`` (H, W) uint16 and ``tri`` (H, W) int64 (-1 = miss).
    """
    rays = pixel_rays(K, width, height).reshape(-1, 3)  # z = 1: t is the planar depth
    dirs = rays @ cam_to_world[:3, :3].T
    origins = np.broadcast_to(cam_to_world[:3, 3], dirs.shape)
    t, tri = index.cast(origins, dirs)
    hit = tri >= 0
    depth = np.where(hit, t, 0.0).reshape(height, width)
    label = np.where(hit, index.face_label[np.maximum(tri, 0)], 0).astype(np.uint8).reshape(height, width)
    inst = np.where(hit, index.face_instance[np.maximum(tri, 0)], 0).astype(np.uint16).reshape(height, width)
    return depth, label, inst, tri.reshape(height, width)


def inside_room(index: HouseIndex, room_id: str, points: np.ndarray, floor_only: bool = True) -> np.ndarray:
    """Which world points (N, 3) are inside room ``room_id``: a ray straight down first hits this
    room's floor (``floor_only``) or any mesh of this room. Returns (N,) bool."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    down = np.broadcast_to(np.array([0.0, 0.0, -1.0]), points.shape)
    _, tri = index.cast(points, down)
    ok = tri >= 0
    ri = index.room_index(room_id)
    ok &= index.face_room[np.maximum(tri, 0)] == ri
    if floor_only:
        ok &= index.face_label[np.maximum(tri, 0)] == FLOOR
    return ok


def enclosed(index: HouseIndex, points: np.ndarray) -> np.ndarray:
    """Which world points (N, 3) are inside a piece of furniture: at least five of the six
    axis-aligned rays from the point first hit one furniture instance (five, not six: an object's
    bottom coincides with the floor it stands on). Returns (N,) bool."""
    from panorooms3d.taxonomy import ARCHITECTURE_IDS

    points = np.asarray(points, np.float64).reshape(-1, 3)
    if len(points) == 0:
        return np.zeros(0, bool)
    dirs = np.concatenate([np.eye(3), -np.eye(3)])
    _, tri = index.cast(np.repeat(points, 6, axis=0), np.tile(dirs, (len(points), 1)))
    tri = tri.reshape(-1, 6)
    furniture = ~np.isin(index.face_label[np.maximum(tri, 0)], list(ARCHITECTURE_IDS)) & (tri >= 0)
    inst = np.where(furniture, index.face_instance[np.maximum(tri, 0)].astype(np.int64), -1)
    same = (inst[:, :, None] == inst[:, None, :]) & (inst[:, :, None] >= 0)
    return same.sum(axis=2).max(axis=1) >= 5


def _room_floor(house: House, room_id: str) -> tuple[np.ndarray, np.ndarray, float, float]:
    from panorooms3d.render.blender_scene import room_extent

    room = house.room(room_id)
    if not room.meshes:
        raise ValueError(f"room {room.uid} has no meshes")
    return room_extent(room)


def candidate_poses(house: House, room_id: str, settings, rng: np.random.Generator, n: int,
                    index: HouseIndex | None = None, max_candidates: int = 20000) -> tuple[np.ndarray, dict]:
    """Up to ``n`` hand-held camera poses in a room (rules in the module docstring), never raising.

    The same sampler as :func:`sample_cameras` (same random stream: the first ``k`` poses for a
    seed do not depend on ``n``); :mod:`panorooms3d.render.coverage` draws its candidate views here.

    Returns:
        cam_to_world (M, 4, 4) float64 OpenCV poses with M <= n (fewer when ``max_candidates``
        positions did not give ``n`` valid views), and stats ``{"candidates", "rejected_outside",
        "rejected_clearance", "rejected_view"}``.
    """
    index = index or house_index(house)
    lo, hi, floor_z, _ = _room_floor(house, room_id)
    n = int(n)
    pw, ph = PROBE_SIZE
    probe_hfov = settings.hfov_deg
    Kp = intrinsics(pw, ph, probe_hfov)
    rays = pixel_rays(Kp, pw, ph).reshape(-1, 3)
    out: list[np.ndarray] = []
    stats = {"candidates": 0, "rejected_outside": 0, "rejected_clearance": 0, "rejected_view": 0}
    h0, h1 = settings.height_range
    p0, p1 = np.radians(settings.pitch_range_deg)
    batch = 64
    while len(out) < n and stats["candidates"] < max_candidates:
        m = batch
        stats["candidates"] += m
        xy = lo + rng.random((m, 2)) * (hi - lo)
        z = floor_z + h0 + rng.random(m) * (h1 - h0)
        pos = np.column_stack([xy, z])
        yaw = rng.random(m) * 2 * np.pi
        pitch = p0 + rng.random(m) * (p1 - p0)
        inside = inside_room(index, room_id, pos, floor_only=True)
        stats["rejected_outside"] += int((~inside).sum())
        clear = np.zeros(m, bool)
        clear[inside] = index.distance(pos[inside]) >= settings.clearance
        stats["rejected_clearance"] += int((inside & ~clear).sum())
        for i in np.flatnonzero(clear):
            d = np.array([np.cos(pitch[i]) * np.cos(yaw[i]), np.cos(pitch[i]) * np.sin(yaw[i]), -np.sin(pitch[i])])
            c2w = look_at(pos[i], pos[i] + d)
            t, tri = index.cast(np.broadcast_to(pos[i], rays.shape), rays @ c2w[:3, :3].T)
            hit = tri >= 0
            inst = index.face_instance[np.maximum(tri, 0)][hit]
            ok = hit.mean() > 0.5 and np.median(np.where(hit, t, np.inf)) >= settings.min_median_depth
            if ok and inst.size:
                ok = np.bincount(inst).max() <= settings.max_instance_share * tri.size
            if not ok:
                stats["rejected_view"] += 1
                continue
            out.append(c2w)
            if len(out) == n:
                break
    return (np.stack(out) if out else np.zeros((0, 4, 4))), stats


def sample_cameras(house: House, room_id: str, settings, rng: np.random.Generator,
                   index: HouseIndex | None = None, max_candidates: int = 20000) -> tuple[np.ndarray, dict]:
    """Sample ``settings.views`` hand-held camera poses in a room (rules in the module docstring).

    Args:
        house: the house (all meshes count as obstacles).
        room_id: the room's id in the house.
        settings: a RenderSettings (views, hfov_deg, width, height, height_range, pitch_range_deg,
            clearance, min_median_depth, max_instance_share).
        rng: numpy random generator (seeded by the caller).
        index: a prebuilt :class:`HouseIndex` (built when None).
        max_candidates: give up after this many candidate positions.

    Returns:
        cam_to_world (N, 4, 4) float64 OpenCV poses with N = settings.views, and stats
        ``{"candidates", "rejected_outside", "rejected_clearance", "rejected_view"}``.

    Raises RuntimeError naming the room when fewer than ``settings.views`` valid poses exist
    among ``max_candidates`` candidates.
    """
    n = int(settings.views)
    poses, stats = candidate_poses(house, room_id, settings, rng, n, index=index, max_candidates=max_candidates)
    if len(poses) < n:
        h0, h1 = settings.height_range
        raise RuntimeError(
            f"room {house.uid}/{room_id}: found only {len(poses)} of {n} valid camera poses in {stats['candidates']} "
            f"candidates ({stats}); the room may be too small or cluttered for a {settings.clearance} m clearance "
            f"at {h0}-{h1} m height"
        )
    return poses, stats


def panorama_camera(house: House, room_id: str, clearance: float = 0.3, index: HouseIndex | None = None,
                    step: float = 0.05) -> tuple[np.ndarray, dict]:
    """World position (3,) of the panorama camera of a room (rule in the module docstring).

    Returns the position (metres) and ``{"centre": (3,), "moved": bool, "moved_by": metres,
    "clearance": metres to the nearest surface}``. Raises RuntimeError naming the room when no
    free point exists inside it.
    """
    index = index or house_index(house)
    lo, hi, floor_z, ceiling_z = _room_floor(house, room_id)
    centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (floor_z + ceiling_z) / 2])

    def free(p: np.ndarray) -> np.ndarray:
        ok = inside_room(index, room_id, p, floor_only=False)
        ok[ok] &= index.distance(p[ok]) >= clearance
        ok[ok] &= ~enclosed(index, p[ok])
        return ok

    if free(centre[None])[0]:
        return centre, {"centre": centre.tolist(), "moved": False, "moved_by": 0.0,
                        "clearance": float(index.distance(centre[None])[0])}
    axes = [np.arange(lo[0], hi[0] + 1e-9, step), np.arange(lo[1], hi[1] + 1e-9, step),
            np.arange(floor_z + clearance, ceiling_z - clearance + 1e-9, step)]
    if any(len(a) == 0 for a in axes):
        raise RuntimeError(f"room {house.uid}/{room_id}: too small for a panorama camera {clearance} m from surfaces")
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    order = np.argsort(np.linalg.norm(grid - centre, axis=1), kind="stable")
    grid = grid[order]
    for s in range(0, len(grid), 4096):  # search outward in shells of 4096 points
        chunk = grid[s:s + 4096]
        ok = free(chunk)
        if ok.any():
            p = chunk[np.argmax(ok)]
            return p, {"centre": centre.tolist(), "moved": True, "moved_by": float(np.linalg.norm(p - centre)),
                       "clearance": float(index.distance(p[None])[0])}
    raise RuntimeError(f"room {house.uid}/{room_id}: no point inside the room is {clearance} m from every surface")


def coverage(house: House, room_id: str, K: np.ndarray, width: int, height: int, cam_to_world: np.ndarray,
             index: HouseIndex | None = None, points: int = 20000, seed: int = 0, tol: float = 0.02) -> float:
    """Share of the room's surface area seen by at least one camera (0-1).

    ``points`` points are sampled uniformly by area on the room's own meshes; a point is seen
    when it projects inside a camera's image in front of it and a ray from the camera centre
    reaches it (the first hit is within ``tol`` metres of it).
    """
    index = index or house_index(house)
    v, f, _, _ = merge_meshes(house.room(room_id).meshes)
    if len(f) == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if area.sum() <= 0:
        return 0.0
    pick = rng.choice(len(f), size=points, p=area / area.sum())
    a, b = rng.random(points), rng.random(points)
    flip = a + b > 1
    a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
    t = tri[pick]
    pts = t[:, 0] + a[:, None] * (t[:, 1] - t[:, 0]) + b[:, None] * (t[:, 2] - t[:, 0])
    seen = np.zeros(points, bool)
    for c2w in np.asarray(cam_to_world):
        pc = (pts - c2w[:3, 3]) @ c2w[:3, :3]  # camera frame
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = K[0, 0] * pc[:, 0] / z + K[0, 2]
            w = K[1, 1] * pc[:, 1] / z + K[1, 2]
        cand = (~seen) & (z > 0.05) & (u >= -0.5) & (u <= width - 0.5) & (w >= -0.5) & (w <= height - 0.5)
        if not cand.any():
            continue
        d = pts[cand] - c2w[:3, 3]
        dist = np.linalg.norm(d, axis=1)
        th, _ = index.cast(np.broadcast_to(c2w[:3, 3], d.shape), d / dist[:, None])
        idx = np.flatnonzero(cand)
        seen[idx[th >= dist - tol]] = True
    return float(seen.mean())
