"""How faithful a fused room is to the scene's own mesh (docs/fusion.md, "Fidelity").

Three numbers, all measured against the room's triangles (``Room.triangles()``):

- ``label_agreement``: share of observed near-surface voxels (``|tsdf| < 1`` and ``weight > 0``)
  whose voted label equals the label of the nearest mesh triangle (target >= 0.99);
- ``surface_distance_mean_m``: mean distance from the fused zero level set (marching cubes at 0
  on the tsdf, vertices mapped to world coordinates with the voxel-centre convention, kept only
  where both grid points of their edge are observed) to the mesh (target <= 0.01 m at 4 cm voxels);
- ``observed_surface_share``: share of the mesh area lying within one voxel of an observed
  near-surface voxel (area-weighted uniform samples of the mesh).
"""

from __future__ import annotations

import numpy as np

from panorooms3d.volume import RoomVolume


def _scene(vertices: np.ndarray, faces: np.ndarray):
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)), o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32))
    )
    return scene


def zero_level_set(volume: RoomVolume) -> np.ndarray:
    """World vertices (M, 3) float64 of the tsdf's zero level set (marching cubes at 0).

    Vertices are mapped with the voxel-centre convention (grid point ``i`` is at
    origin + (i + 0.5) * voxel_size). Vertices on an edge with an unobserved end (weight 0, where
    the tsdf is a placeholder 1) are dropped: they are not surface.
    """
    from skimage.measure import marching_cubes

    t = volume.tsdf
    if min(t.shape) < 2 or not ((t < 0).any() and (t > 0).any()):
        return np.zeros((0, 3))
    verts, _, _, _ = marching_cubes(t, level=0.0)
    lo = np.floor(verts).astype(np.int64)
    hi = np.minimum(np.ceil(verts).astype(np.int64), np.asarray(t.shape) - 1)
    w = volume.weight
    keep = (w[lo[:, 0], lo[:, 1], lo[:, 2]] > 0) & (w[hi[:, 0], hi[:, 1], hi[:, 2]] > 0)
    return volume.origin + (verts[keep].astype(np.float64) + 0.5) * volume.voxel_size


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """``n`` area-weighted uniform points (n, 3) on the triangles, and the total area (m^2)."""
    tri = np.asarray(vertices, np.float64)[np.asarray(faces)]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    total = float(area.sum())
    if total <= 0 or n <= 0:
        return np.zeros((0, 3)), total
    rng = np.random.default_rng(seed)
    f = rng.choice(len(tri), size=n, p=area / total)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    a, b, c = 1 - s, s * (1 - r2), s * r2
    pts = a[:, None] * tri[f, 0] + b[:, None] * tri[f, 1] + c[:, None] * tri[f, 2]
    return pts, total


def _within_one_voxel(points: np.ndarray, mask: np.ndarray, origin: np.ndarray, voxel_size: float) -> np.ndarray:
    """(N,) bool: is a voxel of ``mask`` (X, Y, Z) centred within one voxel edge of each world point (N, 3)?

    A centre within distance 1 (in voxels) of the continuous index q has every coordinate in
    [q - 1, q + 1], i.e. among the 3 x 3 x 3 voxels around round(q): those are checked.
    """
    q = ((np.asarray(points, np.float64) - origin) / voxel_size - 0.5).T  # (3, N)
    r = np.rint(q).astype(np.int64)
    hit = np.zeros(q.shape[1], bool)
    for off in np.ndindex(3, 3, 3):
        ok = np.ones(q.shape[1], bool)
        d2 = np.zeros(q.shape[1])
        cs = []
        for a in range(3):
            c = r[a] + (off[a] - 1)
            ok &= (c >= 0) & (c < mask.shape[a])
            d2 += (c - q[a]) ** 2
            cs.append(c)
        ok &= d2 <= 1.0 + 1e-9
        ok[ok] = mask[cs[0][ok], cs[1][ok], cs[2][ok]]
        hit |= ok
    return hit


def measure_fidelity(
    volume: RoomVolume,
    vertices: np.ndarray,
    faces: np.ndarray,
    face_label: np.ndarray,
    face_instance: np.ndarray | None = None,
    *,
    samples_per_m2: float | None = None,
    max_samples: int = 1_000_000,
    seed: int = 0,
) -> dict:
    """Fidelity of ``volume`` to the mesh it was rendered from.

    Args:
        volume: the fused room.
        vertices: (V, 3) float64 world metres (Z up); faces: (F, 3) int vertex indices;
            face_label: (F,) uint8 raw ids; face_instance: optional (F,) uint16 (as returned by
            ``Room.triangles()``).
        samples_per_m2: surface samples per square metre for the observed share (default: four
            per voxel face, i.e. 4 / voxel_size^2), capped at ``max_samples``.
        seed: sampling seed (deterministic).

    Returns:
        A JSON-able dict: ``label_agreement`` (0-1), ``instance_agreement`` (0-1, when instances
        are given), ``near_surface_voxels``, ``surface_distance_mean_m``,
        ``surface_distance_median_m``, ``surface_distance_p95_m``, ``surface_vertices``,
        ``observed_surface_share`` (0-1), ``mesh_area_m2``. A number that cannot be measured (no
        near-surface voxel, no level set) is ``None``.
    """
    import open3d as o3d

    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    face_label = np.asarray(face_label)
    if len(faces) == 0:
        raise ValueError(f"room {volume.room_uid}: the mesh has no triangles to measure fidelity against")
    scene = _scene(vertices, faces)
    vs = volume.voxel_size
    out: dict = {}

    # label agreement on observed near-surface voxels
    near = (volume.weight > 0) & (np.abs(volume.tsdf) < 1.0)
    ijk = np.argwhere(near)
    out["near_surface_voxels"] = int(len(ijk))
    if len(ijk):
        centres = volume.origin + (ijk + 0.5) * vs
        ans = scene.compute_closest_points(o3d.core.Tensor(centres.astype(np.float32)))
        prim = ans["primitive_ids"].numpy().astype(np.int64)
        lab = volume.label[near]
        out["label_agreement"] = float(np.mean(lab == face_label[prim]))
        if face_instance is not None:
            out["instance_agreement"] = float(np.mean(volume.instance[near] == np.asarray(face_instance)[prim]))
    else:
        out["label_agreement"] = None
        if face_instance is not None:
            out["instance_agreement"] = None

    # distance of the fused zero level set to the mesh
    zls = zero_level_set(volume)
    out["surface_vertices"] = int(len(zls))
    if len(zls):
        dist = scene.compute_distance(o3d.core.Tensor(zls.astype(np.float32))).numpy().astype(np.float64)
        out["surface_distance_mean_m"] = float(dist.mean())
        out["surface_distance_median_m"] = float(np.median(dist))
        out["surface_distance_p95_m"] = float(np.percentile(dist, 95))
    else:
        out["surface_distance_mean_m"] = out["surface_distance_median_m"] = out["surface_distance_p95_m"] = None

    # share of the mesh area within one voxel of an observed near-surface voxel
    tri = vertices[faces]
    area = float((0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)).sum())
    density = samples_per_m2 if samples_per_m2 is not None else 4.0 / (vs * vs)
    n = int(min(max_samples, max(1000, area * density)))
    pts, _ = sample_surface(vertices, faces, n, seed)
    out["mesh_area_m2"] = area
    if len(ijk) and len(pts):
        out["observed_surface_share"] = float(np.mean(_within_one_voxel(pts, near, volume.origin, vs)))
    else:
        out["observed_surface_share"] = 0.0 if len(pts) else None
    return out
