"""Test helper: exact RGB-D-label frames of box rooms by ray casting (Open3D RaycastingScene).

No Blender: depth comes from ray casting the room's own triangles, so it is exact; each pixel's
label, instance and colour are those of the triangle its ray hits. Depth is planar (the ray
direction has camera z = 1, so the hit distance *is* the planar depth). Conventions:
docs/formats.md (Z-up world, OpenCV cameras, pixel (u, v) centre at (u, v)).
"""

from __future__ import annotations

import numpy as np

from panorooms3d.geometry import intrinsics, look_at, pixel_rays
from panorooms3d.scene.model import Mesh, Room
from panorooms3d.store.frames import Frames

#: Raw ids of the box room's faces (distinct, so a label test can tell every face apart).
FACE_LABELS = {"floor": 51, "ceiling": 30, "-x": 40, "+x": 49, "-y": 24, "+y": 31}
FACE_COLOURS = {
    "floor": (0.6, 0.4, 0.2),
    "ceiling": (0.9, 0.9, 0.9),
    "-x": (0.8, 0.2, 0.2),
    "+x": (0.2, 0.8, 0.2),
    "-y": (0.2, 0.2, 0.8),
    "+y": (0.8, 0.8, 0.2),
}


def _quad(corners) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(corners, np.float64), np.array([[0, 1, 2], [0, 2, 3]], np.int64)


def box_faces(lo, hi, inward: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The 6 faces of the box [lo, hi] as quads: name -> (vertices (4, 3), faces (2, 3))."""
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    q = {
        "floor": [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)],
        "ceiling": [(x0, y0, z1), (x0, y1, z1), (x1, y1, z1), (x1, y0, z1)],
        "-x": [(x0, y0, z0), (x0, y1, z0), (x0, y1, z1), (x0, y0, z1)],
        "+x": [(x1, y0, z0), (x1, y0, z1), (x1, y1, z1), (x1, y1, z0)],
        "-y": [(x0, y0, z0), (x0, y0, z1), (x1, y0, z1), (x1, y0, z0)],
        "+y": [(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)],
    }
    out = {}
    for name, c in q.items():
        v, f = _quad(c)
        out[name] = (v, f if inward else f[:, ::-1].copy())
    return out


def box_room(
    size=(3.0, 2.6, 2.5), lo=(0.013, -0.571, 0.0), furniture: list[tuple] | None = None, uid="boxhouse/Box-1"
) -> Room:
    """A closed box room [lo, lo + size] (metres, Z up) with one mesh per face, plus furniture boxes.

    Args:
        size: (3,) extent in metres.
        lo: (3,) the minimum corner (deliberately off the 4 cm grid by default).
        furniture: optional list of (lo (3,), hi (3,), raw label) boxes inside the room.
        uid: ``HOUSE/ROOM``.
    """
    lo = np.asarray(lo, np.float64)
    hi = lo + np.asarray(size, np.float64)
    house, room_id = uid.split("/")
    meshes = []
    for k, (name, (v, f)) in enumerate(box_faces(lo, hi, inward=True).items()):
        m = Mesh(name=f"{name}/{k}", vertices=v, faces=f, label=FACE_LABELS[name], instance=k + 1, room_id=room_id)
        m.material.colour = FACE_COLOURS[name]
        meshes.append(m)
    for j, (flo, fhi, lab) in enumerate(furniture or []):
        verts, faces = [], []
        for v, f in box_faces(flo, fhi, inward=False).values():
            faces.append(f + 4 * len(verts))
            verts.append(v)
        m = Mesh(name=f"furniture/{j}", vertices=np.concatenate(verts), faces=np.concatenate(faces), label=int(lab),
                 instance=100 + j, room_id=room_id)
        m.material.colour = ((37 * j) % 100 / 100.0, 0.5, 0.3)
        meshes.append(m)
    return Room(house_uid=house, room_id=room_id, type="Bedroom", meshes=meshes)


def room_cameras(room: Room, n: int, seed: int = 0, height=(1.3, 1.8), inset: float = 0.6) -> np.ndarray:
    """(n, 4, 4) OpenCV cam_to_world poses inside the room, looking around (yaw sweep, pitch -40..+30 deg)."""
    rng = np.random.default_rng(seed)
    lo, hi = room.bounds()
    cams = []
    for i in range(n):
        eye = np.array([rng.uniform(lo[0] + inset, hi[0] - inset), rng.uniform(lo[1] + inset, hi[1] - inset),
                        lo[2] + rng.uniform(*height)])
        yaw = 2 * np.pi * i / n + rng.uniform(-0.2, 0.2)
        pitch = np.radians(rng.uniform(-40, 30))
        d = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)])
        cams.append(look_at(eye, eye + d))
    return np.stack(cams)


def raycast_frames(room: Room, cam_to_world: np.ndarray, width: int = 160, height: int = 120,
                   hfov_deg: float = 90.0) -> Frames:
    """Frames of ``room`` seen from ``cam_to_world`` (N, 4, 4): exact planar depth, labels, instances, colour."""
    import open3d as o3d

    verts, faces, face_label, face_inst = room.triangles()
    face_rgb = np.concatenate(
        [np.tile(np.round(np.asarray(m.material.colour) * 255), (m.num_faces, 1)) for m in room.meshes]
    ).astype(np.uint8)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(verts.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    K = intrinsics(width, height, hfov_deg)
    rays_cam = pixel_rays(K, width, height)  # (H, W, 3), z = 1
    n = len(cam_to_world)
    depth = np.zeros((n, height, width), np.float32)
    label = np.zeros((n, height, width), np.uint8)
    inst = np.zeros((n, height, width), np.uint16)
    rgb = np.zeros((n, height, width, 3), np.uint8)
    for i, c2w in enumerate(cam_to_world):
        d = rays_cam @ c2w[:3, :3].T
        o = np.broadcast_to(c2w[:3, 3], d.shape)
        ans = scene.cast_rays(o3d.core.Tensor(np.concatenate([o, d], -1).astype(np.float32)))
        t = ans["t_hit"].numpy()
        prim = ans["primitive_ids"].numpy().astype(np.int64)
        hit = np.isfinite(t)
        depth[i][hit] = t[hit]
        label[i][hit] = face_label[prim[hit]]
        inst[i][hit] = face_inst[prim[hit]]
        rgb[i][hit] = face_rgb[prim[hit]]
    return Frames(rgb=rgb, depth=depth, label=label, instance=inst, K=K, cam_to_world=np.asarray(cam_to_world),
                  attrs={"room_uid": room.uid})


def box_sdf(points: np.ndarray, lo, hi) -> np.ndarray:
    """Analytic signed distance (N,) of points to the walls of the closed box room [lo, hi].

    Positive inside the room (in front of the inward-facing walls), negative outside.
    """
    p = np.asarray(points, np.float64)
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    inside_d = np.minimum(p - lo, hi - p)  # (N, 3) distance to each pair of walls, negative outside
    inside = (inside_d > 0).all(axis=1)
    out = np.where(inside, inside_d.min(axis=1), 0.0)
    outside = ~inside
    if outside.any():
        q = np.maximum(np.maximum(lo - p[outside], p[outside] - hi), 0.0)
        out[outside] = -np.linalg.norm(q, axis=1)
    return out
