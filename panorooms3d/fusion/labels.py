"""Per-voxel label and instance voting (never averaging) from the rendered label frames.

A label is a category, not a quantity: averaging ids is meaningless, so each voxel collects
votes and keeps the most voted raw id. The votes are cast projectively, like the TSDF itself:
for each frame, every candidate voxel (the observed near-surface band of the fused TSDF) is
projected into the image; when the pixel it falls on has a depth ``d`` with ``|d - z| <= band``
(``z`` the voxel's planar depth in that camera, the same signed distance Open3D integrates), the
voxel takes a vote for that pixel's raw label and one for its instance, weighing
``(1 - |d - z| / band) ** power`` (nearer surfaces count more). This is the transpose of walking
each pixel's ray through the band: the same voxel-pixel pairs, at most one vote per voxel and
frame, and its cost grows with the band's voxels instead of the pixels (a 640 x 480 frame votes in
a few milliseconds).

Ties are broken by the smallest raw id (deterministic). Band voxels without any vote are filled
from the nearest voted voxel; voxels outside the band (free or unobserved) are void (0).
"""

from __future__ import annotations

import numpy as np


class _VoteTable:
    """Votes of N voxels over a growing set of ids (compact columns, raw ids in ``ids``)."""

    def __init__(self, n: int, id_space: int, count_dtype=np.float32) -> None:
        self.n = n
        self.lut = np.full(id_space, -1, np.int32)
        self.ids: list[int] = []
        self.counts = np.zeros((n, 0), count_dtype)

    def add(self, voxel: np.ndarray, raw: np.ndarray, weight: np.ndarray) -> None:
        """A vote of ``weight`` for each (voxel, raw id) pair; each voxel appears at most once per call."""
        col = self.lut[raw]
        new = col < 0
        if new.any():
            for r in np.unique(raw[new]):
                self.lut[r] = len(self.ids)
                self.ids.append(int(r))
            if len(self.ids) > self.counts.shape[1]:  # grow the columns geometrically
                grown = np.zeros((self.n, max(4, 2 * len(self.ids))), self.counts.dtype)
                grown[:, : self.counts.shape[1]] = self.counts
                self.counts = grown
            col = self.lut[raw]
        # Unique voxels per call, so fancy-indexed increment is exact (no np.add.at needed).
        self.counts[voxel, col] += weight

    def winners(self, dtype) -> tuple[np.ndarray, np.ndarray]:
        """(winner raw id (N,), total vote weight (N,)); ties -> smallest raw id; no votes -> 0."""
        if not self.ids:
            return np.zeros(self.n, dtype), np.zeros(self.n, np.float64)
        order = np.argsort(np.asarray(self.ids))
        counts = self.counts[:, : len(self.ids)][:, order]
        ids = np.asarray(self.ids, np.int64)[order]
        best = counts.argmax(axis=1)  # first maximum = smallest raw id among the tied
        total = counts.sum(axis=1, dtype=np.float64)
        out = ids[best].astype(dtype)
        out[total == 0] = 0
        return out, total


class LabelVoter:
    """Collects label and instance votes for a fixed set of voxels, frame by frame.

    Args:
        centres: (N, 3) float world positions (metres) of the candidate voxels' centres.
        band: a voxel votes in a frame when ``|depth - z| <= band`` (metres, planar along the
            camera's +z, as the TSDF's projective signed distance).
        power: votes weigh ``(1 - |depth - z| / band) ** power`` (0: every vote weighs 1), so
            the surface nearest to the voxel outvotes a farther one seen through it.
        chunk: edge (metres) of the cubes voxels are grouped in for frustum culling.
    """

    def __init__(self, centres: np.ndarray, band: float, power: float = 2.0, chunk: float = 0.32) -> None:
        centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
        self.band = float(band)
        self.power = float(power)
        n = centres.shape[0]
        # Group voxels into chunks (cubes of ``chunk`` metres) so a frame only projects the chunks
        # that meet its view frustum. Voxels are kept sorted by chunk; ``order`` maps back.
        key = np.floor(centres / chunk).astype(np.int64)
        key0 = key.min(axis=0) if n else np.zeros(3, np.int64)
        dims = (key.max(axis=0) - key0 + 1) if n else np.ones(3, np.int64)
        flat = np.ravel_multi_index((key - key0).T, tuple(int(d) for d in dims))
        self.order = np.argsort(flat, kind="stable")
        uniq, counts = np.unique(flat[self.order], return_counts=True)
        self.centres = np.ascontiguousarray(centres[self.order], dtype=np.float32)
        self.chunk_centres = (np.stack(np.unravel_index(uniq, tuple(int(d) for d in dims)), axis=1) + key0 + 0.5) * chunk
        self.chunk_counts = counts
        self.chunk_radius = 0.5 * np.sqrt(3.0) * chunk
        self.labels = _VoteTable(n, 256)
        self.instances = _VoteTable(n, 65536)
        self.frames = 0

    def _visible(self, K: np.ndarray, c2w: np.ndarray, w: int, h: int) -> np.ndarray:
        """Indices (sorted order) of the voxels in chunks that meet the camera's view frustum."""
        p = (self.chunk_centres - c2w[:3, 3]) @ c2w[:3, :3]  # camera frame
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        r = self.chunk_radius
        ok = z > -r
        for lim, coord, f in (((-0.5 - K[0, 2]) / K[0, 0], x, -1.0), ((w - 0.5 - K[0, 2]) / K[0, 0], x, 1.0),
                              ((-0.5 - K[1, 2]) / K[1, 1], y, -1.0), ((h - 0.5 - K[1, 2]) / K[1, 1], y, 1.0)):
            # side plane through the camera centre: inside when f * (coord - lim * z) <= 0
            ok &= f * (coord - lim * z) <= r * np.sqrt(1.0 + lim * lim)
        return np.flatnonzero(np.repeat(ok, self.chunk_counts))

    def add_frame(
        self, depth: np.ndarray, label: np.ndarray, instance: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray
    ) -> int:
        """Cast one frame's votes; returns how many voxels voted.

        Args:
            depth: (H, W) float32 planar depth, metres, 0 = no hit (invalid values already 0).
            label: (H, W) uint8 raw 3D-FRONT ids.
            instance: (H, W) uint16 instance ids.
            K: (3, 3) intrinsics, pixel (u, v) centre at (u, v).
            cam_to_world: (4, 4) OpenCV camera-to-world pose.
        """
        self.frames += 1
        if self.centres.shape[0] == 0:
            return 0
        h, w = depth.shape
        c2w = np.asarray(cam_to_world, np.float64)
        k = np.asarray(K, np.float64)
        idx = self._visible(k, c2w, w, h)
        if idx.size == 0:
            return 0
        # p_cam = R^T (p - t); fold K in: (u z, v z, z) = K R^T p - K R^T t
        m = k @ c2w[:3, :3].T
        b = m @ c2w[:3, 3]
        p = self.centres[idx] @ m.T.astype(np.float32)
        p -= b.astype(np.float32)
        z = p[:, 2]
        front = z > 1e-6
        idx, p, z = idx[front], p[front], z[front]
        u = np.rint(p[:, 0] / z).astype(np.int64)
        v = np.rint(p[:, 1] / z).astype(np.int64)
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        idx, u, v, z = idx[inside], u[inside], v[inside], z[inside]
        pix = v * w + u
        d = depth.reshape(-1)[pix]
        sdf = np.abs(d - z)
        ok = (d > 0) & (sdf <= self.band)
        idx, pix, sdf = idx[ok], pix[ok], sdf[ok]
        if idx.size == 0:
            return 0
        if self.power > 0:
            wt = (np.maximum(1.0 - sdf / self.band, 0.0) ** self.power + 1e-3).astype(np.float32)
        else:
            wt = np.float32(1.0)
        self.labels.add(idx, label.reshape(-1)[pix], wt)
        self.instances.add(idx, instance.reshape(-1)[pix], wt)
        return int(idx.size)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Winners: label (N,) uint8 raw id, instance (N,) uint16, votes (N,) float64 total vote weight."""
        label, votes = self.labels.winners(np.uint8)
        instance, _ = self.instances.winners(np.uint16)
        out_l, out_i, out_v = np.empty_like(label), np.empty_like(instance), np.empty_like(votes)
        out_l[self.order], out_i[self.order], out_v[self.order] = label, instance, votes
        return out_l, out_i, out_v


def fill_from_nearest(values: np.ndarray, have: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, int]:
    """Copy to ``want & ~have`` voxels the value of the nearest ``have`` voxel (Euclidean, in voxels).

    Args:
        values: (X, Y, Z) array (any dtype) holding valid values where ``have``.
        have: (X, Y, Z) bool, voxels with a value.
        want: (X, Y, Z) bool, voxels that need one.

    Returns the filled copy of ``values`` and the number of voxels filled. When nothing ``have``s a
    value, the array is returned unchanged.
    """
    from scipy.ndimage import distance_transform_edt

    missing = want & ~have
    n = int(missing.sum())
    if n == 0 or not have.any():
        return values, 0
    # Crop to the box around the missing voxels, grown until it holds a voxel with a value.
    out = values.copy()
    idx = np.argwhere(missing)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    grow = 4
    while True:
        a = np.maximum(lo - grow, 0)
        b = np.minimum(hi + grow, values.shape)
        box = tuple(slice(int(i), int(j)) for i, j in zip(a, b, strict=True))
        if have[box].any() or (a == 0).all() and (b == np.asarray(values.shape)).all():
            break
        grow *= 2
    _, near = distance_transform_edt(~have[box], return_indices=True)
    sub = out[box]
    m = missing[box]
    sub[m] = values[box][tuple(near[:, m])]
    return out, n
