"""TSDF + colour integration with Open3D's ``VoxelBlockGrid``, read back on our voxel convention.

Open3D (``open3d.t.geometry.VoxelBlockGrid``) is a sparse grid of 8^3-voxel blocks. Two of its
conventions differ from ours (docs/formats.md) and are converted here, at the boundary:

- **Voxel positions.** Open3D puts its voxel ``k`` (integer, per axis) at ``k * voxel_size`` in
  the frame its extrinsic maps from. We want voxel centres at ``origin + (i + 0.5) * voxel_size``
  with ``origin`` a multiple of the voxel size. We hand Open3D the extrinsic
  ``world_to_cam @ T(+voxel_size / 2)``: Open3D's voxel ``k`` then sits at world
  ``(k + 0.5) * voxel_size``, which is the centre of our voxel ``i = k - origin / voxel_size``.
- **Pixel lookup.** Open3D truncates the projected pixel coordinate (``int(u)``), so it reads the
  pixel whose *corner* is at ``u``. Our pixel ``(u, v)`` has its *centre* at ``(u, v)``: we add 0.5
  to the principal point, so ``int(u + 0.5)`` is the pixel nearest to the projection. The depth
  image gets one extra row and column of zeros (no measurement) so the last half pixel is kept
  by Open3D's in-image test (``u <= W - 1``) and nothing beyond the image is read.

Open3D's signed distance is projective: ``sdf = depth - z`` (planar depth of the pixel minus the
voxel's camera z), skipped below ``-truncation``, clipped at ``+truncation`` and stored divided by
the truncation distance (``trunc_voxel_multiplier * voxel_size``), which is exactly our
normalisation (positive in front of surfaces, in [-1, 1]). Colour is a running mean.
"""

from __future__ import annotations

import numpy as np

#: Voxels per block edge in Open3D's sparse grid (8 wastes fewer voxels around a 3-voxel band than 16).
BLOCK_RESOLUTION = 8


class FusionError(RuntimeError):
    """A room cannot be fused (no valid depth, malformed frames, a grid too large...)."""


def open3d_intrinsics(K: np.ndarray) -> np.ndarray:
    """K (3, 3) float64 for Open3D: principal point shifted by +0.5 px (pixel-centre -> corner lookup).

    Our ``K`` puts the centre of pixel (u, v) at (u, v); Open3D truncates projected coordinates, so
    the shifted ``K`` makes it read the pixel whose centre is nearest to the projection.
    """
    k = np.array(K, dtype=np.float64).reshape(3, 3)
    k[0, 2] += 0.5
    k[1, 2] += 0.5
    return k


def open3d_extrinsic(cam_to_world: np.ndarray, voxel_size: float) -> np.ndarray:
    """World-to-camera (4, 4) float64 for Open3D, with the grid shifted by half a voxel.

    Open3D places its voxel ``k`` at ``k * voxel_size`` in the frame this extrinsic maps from; the
    half-voxel shift puts it at world ``(k + 0.5) * voxel_size`` -- our voxel-centre convention.

    Args:
        cam_to_world: (4, 4) OpenCV camera-to-world pose (metres, Z-up world).
        voxel_size: voxel edge in metres.
    """
    shift = np.eye(4)
    shift[:3, 3] = 0.5 * voxel_size
    return np.linalg.inv(np.asarray(cam_to_world, dtype=np.float64).reshape(4, 4)) @ shift


def clean_depth(depth: np.ndarray) -> tuple[np.ndarray, int]:
    """Planar depth (H, W) float32 metres with NaN, +-inf and negative values set to 0 (no hit).

    Returns the cleaned copy and the number of pixels that were invalid (zero depth is "no hit",
    not invalid, and is not counted).
    """
    d = np.asarray(depth, dtype=np.float32)
    bad = ~np.isfinite(d) | (d < 0)
    n_bad = int(bad.sum())
    if n_bad:
        d = np.where(bad, np.float32(0), d)
    return d, n_bad


class TsdfIntegrator:
    """Accumulates frames into an Open3D ``VoxelBlockGrid`` (attributes tsdf, weight, color).

    Args:
        voxel_size: voxel edge, metres.
        truncation: truncation distance in voxels (the sdf is clipped at truncation * voxel_size).
        depth_max: depths beyond this (metres) are ignored. Open3D's default (3 m) is too short for
            rooms; set it from the data.
        device: Open3D device string, ``"CPU:0"`` or ``"CUDA:0"``.
        block_count: initial capacity of the block hash map (BLOCK_RESOLUTION^3 voxels each; it grows when needed).
    """

    def __init__(
        self,
        voxel_size: float = 0.04,
        truncation: float = 3.0,
        depth_max: float = 10.0,
        device: str = "CPU:0",
        block_count: int = 8000,
    ) -> None:
        import open3d as o3d
        import open3d.core as o3c

        if voxel_size <= 0 or truncation <= 0:
            raise ValueError(f"voxel_size ({voxel_size}) and truncation ({truncation}) must be positive")
        self._o3d, self._o3c = o3d, o3c
        self.voxel_size = float(voxel_size)
        self.truncation = float(truncation)
        self.depth_max = float(depth_max)
        self.device = o3c.Device(device)
        self.vbg = o3d.t.geometry.VoxelBlockGrid(
            attr_names=("tsdf", "weight", "color"),
            attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
            attr_channels=((1), (1), (3)),
            voxel_size=self.voxel_size,
            block_resolution=BLOCK_RESOLUTION,
            block_count=int(block_count),
            device=self.device,
        )
        self.frames = 0

    def integrate(self, depth: np.ndarray, rgb: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray) -> None:
        """Integrate one frame.

        Args:
            depth: (H, W) float32 planar depth in metres, 0 = no hit (clean it first: see
                :func:`clean_depth`).
            rgb: (H, W, 3) uint8 colour.
            K: (3, 3) intrinsics, pixel (u, v) centre at (u, v).
            cam_to_world: (4, 4) OpenCV camera-to-world pose.
        """
        o3d, o3c = self._o3d, self._o3c
        h, w = depth.shape
        d = np.zeros((h + 1, w + 1), np.float32)  # one extra row/column of "no hit" (see module doc)
        d[:h, :w] = depth
        c = np.zeros((h + 1, w + 1, 3), np.float32)
        c[:h, :w] = rgb
        c *= np.float32(1.0 / 255.0)  # Open3D stores float colour input times 255
        dimg = o3d.t.geometry.Image(o3c.Tensor(d, device=self.device))
        cimg = o3d.t.geometry.Image(o3c.Tensor(c, device=self.device))
        intr = o3c.Tensor(open3d_intrinsics(K), o3c.float64)
        extr = o3c.Tensor(open3d_extrinsic(cam_to_world, self.voxel_size), o3c.float64)
        blocks = self.vbg.compute_unique_block_coordinates(dimg, intr, extr, 1.0, self.depth_max, self.truncation)
        if blocks.shape[0] == 0:
            return
        self.vbg.integrate(blocks, dimg, cimg, intr, extr, 1.0, self.depth_max, self.truncation)
        self.frames += 1

    def extract_sparse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every observed voxel (weight > 0) of the sparse grid, on our convention.

        Returns:
            index (M, 3) int64 voxel index ``i`` with centre at ``(i + 0.5) * voxel_size`` (world
            metres; a grid with origin ``o`` holds it at ``i - o / voxel_size``); tsdf (M,) float32
            in [-1, 1]; weight (M,) float32 frame count (> 0); colour (M, 3) float32 in [0, 255].
        """
        hm = self.vbg.hashmap()
        buf = hm.active_buf_indices()
        if buf.shape[0] == 0:
            return np.zeros((0, 3), np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros((0, 3), np.float32)
        buf = buf.cpu().numpy().astype(np.int64)
        keys = self.vbg.hashmap().key_tensor().cpu().numpy()[buf].astype(np.int64)  # (B, 3) block coordinates
        r = BLOCK_RESOLUTION
        # Open3D's per-block layout is [z, y, x]; .numpy() of a CPU tensor is a view (no copy).
        w_all = self.vbg.attribute("weight").cpu().numpy().reshape(-1, r, r, r)
        t_all = self.vbg.attribute("tsdf").cpu().numpy().reshape(-1, r, r, r)
        c_all = self.vbg.attribute("color").cpu().numpy().reshape(-1, r, r, r, 3)
        b, zv, yv, xv = np.nonzero(w_all[buf] > 0)
        index = keys[b] * r + np.stack([xv, yv, zv], axis=1)
        sel = (buf[b], zv, yv, xv)
        weight, tsdf, colour = w_all[sel], t_all[sel], c_all[sel]
        return index, np.clip(tsdf, -1.0, 1.0), weight, colour

    @staticmethod
    def dense(
        index: np.ndarray, tsdf: np.ndarray, weight: np.ndarray, colour: np.ndarray, origin_index: np.ndarray, shape
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scatter :meth:`extract_sparse`'s voxels into a dense grid of ``shape`` (X, Y, Z).

        ``origin_index`` (3,) int is ``origin / voxel_size``; voxels outside the grid are dropped.
        Returns tsdf (X, Y, Z) float32 (1 where unobserved), weight (X, Y, Z) float32 (0 where
        unobserved) and colour (X, Y, Z, 3) float32 in [0, 255] (0 where unobserved).
        """
        shape = tuple(int(s) for s in shape)
        ijk = index - np.asarray(origin_index, np.int64)
        ok = ((ijk >= 0) & (ijk < np.asarray(shape))).all(axis=1)
        ijk = ijk[ok]
        flat = np.ravel_multi_index(ijk.T, shape)
        t = np.ones(shape, np.float32)
        w = np.zeros(shape, np.float32)
        c = np.zeros((*shape, 3), np.float32)
        t.reshape(-1)[flat] = tsdf[ok]
        w.reshape(-1)[flat] = weight[ok]
        c.reshape(-1, 3)[flat] = colour[ok]
        return t, w, c
