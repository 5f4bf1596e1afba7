"""Coverage-driven view selection: as few hand-held views as it takes to see a room (numpy + Open3D).

Definitions (docs/rendering.md, "Coverage-driven views"; every ray cast goes through the house's
:class:`~panorooms3d.render.cameras.HouseIndex`, so any mesh of the house occludes):

- **surface samples**: points drawn uniformly by area on the room's own triangles
  (``Room.triangles()``); shares of area are shares of these samples.
- **free-space probes**: a jittered grid (``probe_spacing``, default 25 cm) over the room's floor
  rectangle, from ``probe_clearance`` (10 cm) above the floor to 10 cm under the ceiling, keeping the
  points that stand over this room's floor (a ray straight down first hits this room's floor, so
  points inside walls, furniture or another room are dropped) with no surface within
  ``probe_clearance``.
- a point of the room's surface is **seen from** a point ``o`` when the straight segment from
  ``o`` reaches it: a ray cast from ``o`` towards it first hits a triangle no nearer than
  ``tol`` (1 cm) before it.
- the room's **interior-visible surface** is the part seen from at least one free-space probe:
  what any camera inside the room could ever observe. Floor under furniture, the bottoms of
  furniture, backs against walls and the outer faces of walls are not interior-visible.
- a **view sees** a surface sample when the sample projects inside its image (in front of the
  camera, beyond ``NEAR`` metres) and is seen from the camera centre. The **coverage** of a set of
  views is the share of the interior-visible samples seen by at least one of them.

Selection (:func:`select_views`): ``settings.candidates`` candidate poses are drawn under the
hand-held rules (:func:`~panorooms3d.render.cameras.candidate_poses`) with the pitch range
widened to ``settings.candidate_pitch_range_deg`` (default 40 deg up to 30 deg down: views only
pitched down never see the middle of a ceiling); each candidate's
visibility of the samples is one batch of ray casts (one ray per sample in its frustum: a
resolution-independent "low-resolution render" of the room). Then greedily: take the candidate
that adds the most not-yet-seen interior-visible samples, until the coverage reaches
``settings.coverage_target`` (default 0.99), ``settings.max_views`` views are taken, or no
candidate adds anything. When all candidates together see less than the target (furnished rooms:
the floor under beds and tables and the undersides of table tops are interior-visible from low
probes but not from 1.4-1.8 m), the goal becomes target x that reachable share, i.e. 99% of what
hand-held views can see; the info reports ``reachable`` and ``goal``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from panorooms3d.render.cameras import HouseIndex, _room_floor, candidate_poses, house_index, inside_room
from panorooms3d.scene.model import House

#: Points nearer to a camera than this (metres, along its axis) are not seen.
NEAR = 0.05
#: Rays per Open3D call (memory bound).
RAY_CHUNK = 1 << 20


@dataclass
class SurfaceSamples:
    """Area-uniform samples of a room's surface and which are interior-visible.

    Attributes:
        points: (N, 3) float64 world metres on the room's triangles.
        triangle: (N,) int64 index of each point's triangle in ``Room.triangles()``.
        area_m2: total area of the room's triangles, m^2.
        visible: (N,) bool: interior-visible (seen from at least one free-space probe).
        probes: (M, 3) float64 the free-space probes used.
    """

    points: np.ndarray
    triangle: np.ndarray
    area_m2: float
    visible: np.ndarray
    probes: np.ndarray

    @property
    def visible_share(self) -> float:
        """Share (0-1) of the room's surface area that is interior-visible."""
        return float(self.visible.mean()) if len(self.visible) else 0.0

    @property
    def visible_area_m2(self) -> float:
        """Interior-visible area, m^2 (area x visible share)."""
        return self.area_m2 * self.visible_share


def sample_room_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0
                        ) -> tuple[np.ndarray, np.ndarray, float]:
    """``n`` points uniform by area on triangles (V, 3) / (F, 3).

    Returns points (n, 3) float64, their triangle (n,) int64 and the total area in m^2.
    """
    tri = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    total = float(area.sum())
    if total <= 0 or n <= 0:
        return np.zeros((0, 3)), np.zeros(0, np.int64), total
    rng = np.random.default_rng(seed)
    f = rng.choice(len(tri), size=n, p=area / total)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    pts = (1 - s)[:, None] * tri[f, 0] + (s * (1 - r2))[:, None] * tri[f, 1] + (s * r2)[:, None] * tri[f, 2]
    return pts, f.astype(np.int64), total


def seen_from(index: HouseIndex, origin: np.ndarray, points: np.ndarray, tol: float = 0.01) -> np.ndarray:
    """(N,) bool: is each world point (N, 3) seen from ``origin`` (3,) (first hit within ``tol`` of it)?"""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if len(points) == 0:
        return np.zeros(0, bool)
    d = points - np.asarray(origin, np.float64)
    dist = np.linalg.norm(d, axis=1)
    ok = dist > 1e-6
    out = np.zeros(len(points), bool)
    if ok.any():
        t, _ = index.cast(np.broadcast_to(origin, d[ok].shape), d[ok] / dist[ok, None])
        out[ok] = t >= dist[ok] - tol
    return out


def seen_from_any(index: HouseIndex, origins: np.ndarray, points: np.ndarray, tol: float = 0.01,
                  chunk: int = 16) -> np.ndarray:
    """(N,) bool: is each point (N, 3) seen from at least one of ``origins`` (M, 3)?

    Origins are tried ``chunk`` at a time and only for points not yet seen, so the cost is
    about N x (origins until a point is seen) rays; hidden points cost M rays each.
    """
    points = np.asarray(points, np.float64).reshape(-1, 3)
    origins = np.asarray(origins, np.float64).reshape(-1, 3)
    seen = np.zeros(len(points), bool)
    for s in range(0, len(origins), chunk):
        todo = np.flatnonzero(~seen)
        if len(todo) == 0:
            break
        o = origins[s:s + chunk]
        p = points[todo]
        orig = np.repeat(o[None], len(p), axis=0).reshape(-1, 3)  # (P * C, 3), point-major
        d = np.repeat(p, len(o), axis=0) - orig
        dist = np.linalg.norm(d, axis=1)
        ok = np.zeros(len(d), bool)
        good = dist > 1e-6
        for c0 in range(0, len(d), RAY_CHUNK):
            sl = slice(c0, c0 + RAY_CHUNK)
            g = good[sl]
            if not g.any():
                continue
            t, _ = index.cast(orig[sl][g], d[sl][g] / dist[sl][g, None])
            part = np.zeros(len(g), bool)
            part[g] = t >= dist[sl][g] - tol
            ok[sl] = part
        seen[todo] = ok.reshape(len(p), len(o)).any(axis=1)
    return seen


def segment_clear(index: HouseIndex, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) bool: does the straight segment from each a (N, 3) to b (N, 3) cross no triangle?"""
    a = np.asarray(a, np.float64).reshape(-1, 3)
    d = np.asarray(b, np.float64).reshape(-1, 3) - a
    dist = np.linalg.norm(d, axis=1)
    out = dist <= 1e-9
    ok = ~out
    if ok.any():
        t, _ = index.cast(a[ok], d[ok] / dist[ok, None])
        out[ok] = t >= dist[ok]
    return out


def free_space_probes(house: House, room_id: str, index: HouseIndex | None = None, spacing: float = 0.25,
                      clearance: float = 0.1, seed: int = 0) -> np.ndarray:
    """Free-space probe points (M, 3) of a room (the rule in the module docstring).

    A jittered grid: one point uniformly inside each ``spacing``-sized cell of the box spanned by
    the floor rectangle and [floor + clearance, ceiling - clearance]. A point is a candidate when
    a ray straight down first hits this room's floor and the nearest surface is at least
    ``clearance`` away. Candidates inside closed furniture or wall slabs pass that test too (a ray
    down from inside a cabinet standing on the floor can report the coincident floor), so the
    probes are the candidates **connected** to the room's open air: the candidate farthest from
    every surface is the seed, and a candidate joins when the segment to a joined candidate of a
    neighbouring grid cell (6-neighbourhood) crosses no triangle.
    """
    index = index or house_index(house)
    lo, hi, floor_z, ceiling_z = _room_floor(house, room_id)
    z0, z1 = floor_z + clearance, ceiling_z - clearance
    if z1 <= z0:
        return np.zeros((0, 3))
    axes = [np.arange(lo[0], hi[0], spacing), np.arange(lo[1], hi[1], spacing), np.arange(z0, z1, spacing)]
    shape = tuple(len(a) for a in axes)
    cells = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    rng = np.random.default_rng(seed)
    top = np.array([hi[0], hi[1], z1])
    pts = np.minimum(cells + rng.random(cells.shape) * spacing, top)
    ok = inside_room(index, room_id, pts, floor_only=True)
    clear = np.zeros(len(pts))
    clear[ok] = index.distance(pts[ok])
    ok &= clear >= clearance
    if not ok.any():
        return np.zeros((0, 3))
    # edges between candidate neighbours whose segment is clear
    ids = np.arange(len(pts)).reshape(shape)
    edges = []
    for ax in range(3):
        a = np.take(ids, np.arange(shape[ax] - 1), axis=ax).ravel()
        b = np.take(ids, np.arange(1, shape[ax]), axis=ax).ravel()
        both = ok[a] & ok[b]
        a, b = a[both], b[both]
        keep = segment_clear(index, pts[a], pts[b])
        edges.append(np.stack([a[keep], b[keep]], axis=1))
    e = np.concatenate(edges)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(len(pts), len(pts)))
    _, comp = connected_components(graph, directed=False)
    seed_id = int(np.argmax(np.where(ok, clear, -1.0)))
    return pts[ok & (comp == comp[seed_id])]


def interior_visible_surface(house: House, room_id: str, index: HouseIndex | None = None, *,
                             samples_per_m2: float = 100.0, max_samples: int = 8000, min_samples: int = 500,
                             probe_spacing: float = 0.25, probe_clearance: float = 0.1, tol: float = 0.01,
                             seed: int = 0) -> SurfaceSamples:
    """Area-uniform samples of the room's surface and which of them are interior-visible.

    Args:
        house, room_id: the room (every mesh of the house occludes).
        index: a prebuilt house index (built when None).
        samples_per_m2: sample density, capped to [min_samples, max_samples] points in all.
        probe_spacing, probe_clearance: the free-space probe grid (:func:`free_space_probes`).
        tol: metres; a first hit this close before a point still sees it.
        seed: seeds the samples and the probe jitter.

    Raises ValueError naming the room when it has no triangles or no free-space probe.
    """
    index = index or house_index(house)
    room = house.room(room_id)
    v, f, _, _ = room.triangles()
    if len(f) == 0:
        raise ValueError(f"room {room.uid}: no triangles to sample")
    tri = v[f]
    area = float((0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)).sum())
    n = int(np.clip(area * samples_per_m2, min_samples, max_samples))
    pts, tri_idx, area = sample_room_surface(v, f, n, seed)
    probes = free_space_probes(house, room_id, index, probe_spacing, probe_clearance, seed)
    if len(probes) == 0:
        raise ValueError(f"room {room.uid}: no free-space point {probe_clearance} m from every surface")
    order = np.random.default_rng(seed + 1).permutation(len(probes))  # early exit finds a probe sooner
    visible = seen_from_any(index, probes[order], pts, tol)
    return SurfaceSamples(pts, tri_idx, area, visible, probes)


def view_visibility(index: HouseIndex, points: np.ndarray, K: np.ndarray, width: int, height: int,
                    cam_to_world: np.ndarray, tol: float = 0.01) -> np.ndarray:
    """(C, N) bool: which points (N, 3) each OpenCV camera (C, 4, 4) sees (module docstring rule)."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    cams = np.asarray(cam_to_world, np.float64).reshape(-1, 4, 4)
    out = np.zeros((len(cams), len(points)), bool)
    for c, c2w in enumerate(cams):
        pc = (points - c2w[:3, 3]) @ c2w[:3, :3]
        z = pc[:, 2]
        front = z > NEAR
        u = np.full(len(points), -1e9)
        w = np.full(len(points), -1e9)
        u[front] = K[0, 0] * pc[front, 0] / z[front] + K[0, 2]
        w[front] = K[1, 1] * pc[front, 1] / z[front] + K[1, 2]
        cand = front & (u >= -0.5) & (u <= width - 0.5) & (w >= -0.5) & (w <= height - 0.5)
        idx = np.flatnonzero(cand)
        if len(idx):
            out[c, idx] = seen_from(index, c2w[:3, 3], points[idx], tol)
    return out


def greedy_cover(vis: np.ndarray, target_mask: np.ndarray, target: float, max_views: int
                 ) -> tuple[list[int], list[float], float]:
    """Greedy set cover: pick rows of ``vis`` (C, N) bool that add the most uncovered ``target_mask`` columns.

    The goal is ``target`` (a share of the ``target_mask`` columns); when all rows together
    cover less than ``target`` (the rest is out of reach), the goal becomes ``target`` x that
    reachable share. Stops at the goal, after ``max_views`` picks, or when no row adds a column.
    Returns the picked rows in order, the covered share after each pick, and the goal.
    """
    want = np.asarray(target_mask, bool)
    if int(want.sum()) == 0:
        return [], [], float(target)
    useful = vis[:, want]
    reach = float(useful.any(axis=0).mean())
    goal = float(target) if reach >= target else float(target) * reach
    covered = np.zeros(useful.shape[1], bool)
    picked: list[int] = []
    curve: list[float] = []
    while len(picked) < max_views and covered.mean() < goal - 1e-12:
        gain = (useful & ~covered).sum(axis=1)
        best = int(np.argmax(gain))
        if gain[best] == 0:
            break
        picked.append(best)
        covered |= useful[best]
        curve.append(float(covered.mean()))
    return picked, curve, goal


def select_views(house: House, room_id: str, settings, rng: np.random.Generator, index: HouseIndex | None = None,
                 samples: SurfaceSamples | None = None) -> tuple[np.ndarray, dict]:
    """Coverage-driven hand-held views of a room (the method in the module docstring).

    Args:
        house, room_id: the room.
        settings: a RenderSettings (``coverage_target``, ``max_views``, ``candidates``, the
            hand-held rules, ``hfov_deg``, ``width``, ``height``).
        rng: draws the candidate poses (seeded by the caller).
        index: a prebuilt house index.
        samples: precomputed :func:`interior_visible_surface` (computed with ``settings.seed`` when None).

    Returns:
        cam_to_world (N, 4, 4) in greedy order, and info: ``coverage`` (predicted share of the
        interior-visible surface seen, 0-1), ``coverage_curve`` (after each view),
        ``reachable`` (share seen by all candidates together), ``target``, ``goal`` (the target,
        or target x reachable when the candidates cannot reach the target), ``capped`` (stopped
        by ``max_views`` before the goal), ``candidates``, ``interior_visible_share`` (of the
        room's area), ``interior_visible_m2``, ``surface_samples``, ``probes``, ``camera_sampling``.

    Raises RuntimeError naming the room when no valid candidate pose exists.
    """
    from panorooms3d.geometry import intrinsics

    index = index or house_index(house)
    samples = samples or interior_visible_surface(house, room_id, index, seed=int(settings.seed))
    rules = replace(settings, pitch_range_deg=tuple(settings.candidate_pitch_range_deg))
    poses, stats = candidate_poses(house, room_id, rules, rng, int(settings.candidates), index=index)
    if len(poses) == 0:
        raise RuntimeError(
            f"room {house.uid}/{room_id}: no valid hand-held camera pose in {stats['candidates']} candidates "
            f"({stats}); the room may be too small or cluttered for a {settings.clearance} m clearance")
    K = intrinsics(settings.width, settings.height, settings.hfov_deg)
    vis = view_visibility(index, samples.points, K, settings.width, settings.height, poses)
    picked, curve, goal = greedy_cover(vis, samples.visible, float(settings.coverage_target),
                                       int(settings.max_views))
    if not picked:  # nothing interior-visible is seen by any candidate: keep one view so the room renders
        picked, curve = [0], [0.0]
    reach = vis[:, samples.visible].any(axis=0).mean() if samples.visible.any() else 0.0
    info = {
        "coverage": round(curve[-1], 4),
        "coverage_curve": [round(c, 4) for c in curve],
        "reachable": round(float(reach), 4),
        "target": float(settings.coverage_target),
        "goal": round(goal, 4),
        "capped": bool(curve[-1] < goal - 1e-12 and len(picked) >= settings.max_views),
        "candidates": int(len(poses)),
        "interior_visible_share": round(samples.visible_share, 4),
        "interior_visible_m2": round(samples.visible_area_m2, 3),
        "surface_samples": int(len(samples.points)),
        "probes": int(len(samples.probes)),
        "camera_sampling": stats,
    }
    return poses[picked], info


def observed_share(volume, samples: SurfaceSamples) -> float:
    """Share (0-1) of the interior-visible samples that a fused :class:`~panorooms3d.volume.RoomVolume` observes.

    A sample is observed when an observed near-surface voxel (``weight > 0``, ``|tsdf| < 1``) has
    its centre within one voxel edge of it (the rule of ``fusion.fidelity``'s observed share).
    """
    from panorooms3d.fusion.fidelity import _within_one_voxel

    pts = samples.points[samples.visible]
    if len(pts) == 0:
        return 0.0
    near = (volume.weight > 0) & (np.abs(volume.tsdf) < 1.0)
    return float(np.mean(_within_one_voxel(pts, near, volume.origin, volume.voxel_size)))
