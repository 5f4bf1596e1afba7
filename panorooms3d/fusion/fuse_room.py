"""One room's fusion: Frames -> RoomVolume (TSDF + colour by Open3D, labels and instances by voting).

Steps (docs/fusion.md):
1. clean depth (NaN, inf and negative -> 0, counted), pick ``depth_max`` from the data;
2. integrate every frame into Open3D's sparse ``VoxelBlockGrid`` (tsdf, weight, colour);
3. read a dense grid back on our convention (origin a multiple of the voxel size, voxel centres at
   origin + (ijk + 0.5) * voxel_size), tight around the observed surfaces -- the back-projected
   depth, to within a voxel -- (or given bounds) plus a margin;
4. vote labels and instances for the observed near-surface band; fill band voxels left without a
   vote from the nearest voted voxel; everything else is void.
"""

from __future__ import annotations

import time

import numpy as np

from panorooms3d.geometry import grid_for_bounds
from panorooms3d.store.frames import Frames
from panorooms3d.volume import RoomVolume

from .labels import LabelVoter, fill_from_nearest
from .tsdf import FusionError, TsdfIntegrator, clean_depth

#: Refuse dense grids larger than this many voxels (a sign of wrong bounds or depth outliers).
MAX_VOXELS = 400_000_000

__all__ = ["FusionError", "fuse_room", "MAX_VOXELS"]


def _check_frames(frames: Frames, room: str) -> tuple[int, int, int]:
    depth = np.asarray(frames.depth)
    if depth.ndim != 3:
        raise FusionError(f"room {room}: depth must be (N, H, W), got shape {depth.shape}")
    n, h, w = depth.shape
    for name, shape in (("rgb", (n, h, w, 3)), ("label", (n, h, w)), ("instance", (n, h, w))):
        got = tuple(np.shape(getattr(frames, name)))
        if got != shape:
            raise FusionError(f"room {room}: {name} has shape {got}, expected {shape} (from depth)")
    if np.shape(frames.K) != (3, 3) or not np.isfinite(frames.K).all():
        raise FusionError(f"room {room}: K must be a finite 3x3 matrix, got {np.asarray(frames.K).tolist()}")
    if np.shape(frames.cam_to_world) != (n, 4, 4):
        raise FusionError(f"room {room}: cam_to_world has shape {np.shape(frames.cam_to_world)}, expected {(n, 4, 4)}")
    bad = [i for i in range(n) if not np.isfinite(frames.cam_to_world[i]).all()]
    if bad:
        raise FusionError(f"room {room}: cam_to_world of frame(s) {bad[:10]} is not finite")
    return n, h, w


def fuse_room(
    frames: Frames,
    *,
    voxel_size: float = 0.04,
    truncation: float = 3.0,
    bounds=None,
    margin: int = 2,
    depth_max: float | None = None,
    band: float | None = None,
    device: str = "CPU:0",
    room_uid: str | None = None,
    vote_power: float = 2.0,
    timings: dict | None = None,
) -> RoomVolume:
    """Fuse a room's RGB-D-label frames into a :class:`RoomVolume` (docs/fusion.md).

    Args:
        frames: the room's frames (depth (N, H, W) float32 planar metres, 0 = no hit; rgb
            (N, H, W, 3) uint8; label (N, H, W) uint8 raw ids; instance (N, H, W) uint16; K (3, 3);
            cam_to_world (N, 4, 4) OpenCV, Z-up world).
        voxel_size: voxel edge, metres.
        truncation: truncation distance in voxels; tsdf = signed distance / (truncation * voxel_size).
        bounds: the box to store: ``(lo (3,), hi (3,))`` world metres, or an object with a
            ``bounds()`` method returning them (a :class:`~panorooms3d.scene.model.Room`). Default:
            the extent of the observed surfaces (the back-projected depth, to within a voxel).
        margin: voxels added on every side of the bounds.
        depth_max: depths beyond this (metres) are ignored; default: the largest valid depth.
        band: half-width (metres) of the label-voting band around surfaces; default the
            truncation distance (truncation * voxel_size).
        device: Open3D device (``"CPU:0"``, ``"CUDA:0"``).
        room_uid: name used in errors and stored in the volume; default ``frames.attrs["room_uid"]``.
        vote_power: a label vote weighs ``(1 - |depth - z| / band) ** vote_power`` (0: all votes
            weigh 1), so the surface nearest to a voxel outvotes one farther along the ray.
        timings: optional dict filled with the seconds spent (integrate, extract, vote, total);
            timings are not stored in the volume, so the same frames give byte-identical volumes.

    Returns:
        A RoomVolume whose tsdf is in [-1, 1] (1 where free or unobserved), weight the number of
        frames that integrated each voxel (0 = unobserved), rgb uint8 (0 outside the observed
        near-surface band), label uint8 raw ids and instance uint16 voted (0 outside the band),
        origin a multiple of ``voxel_size``; ``attrs`` hold the settings and counts (invalid depth
        pixels, filled voxels, timings).

    Raises:
        FusionError naming the room when the frames are malformed, hold no valid depth, or the
        grid would be unreasonably large.
    """
    t_start = time.perf_counter()
    room = room_uid or str(frames.attrs.get("room_uid", "") or "<unnamed room>")
    n, h, w = _check_frames(frames, room)
    if n == 0:
        raise FusionError(f"room {room}: the frames store holds no frames")
    K = np.asarray(frames.K, np.float64)
    c2w = np.asarray(frames.cam_to_world, np.float64)

    # 1. clean depth, pick depth_max
    invalid_pixels, invalid_frames, dmax_seen = 0, 0, 0.0
    for i in range(n):
        d, bad = clean_depth(frames.depth[i])
        invalid_pixels += bad
        invalid_frames += bad > 0
        if d.size:
            dmax_seen = max(dmax_seen, float(d.max()))
    if dmax_seen <= 0:
        raise FusionError(
            f"room {room}: no valid depth in any of its {n} frames (all pixels are 0, NaN or negative: "
            "did the camera see the room?)"
        )
    dmax = float(depth_max) if depth_max is not None else dmax_seen * 1.001 + 1e-3

    # 2. integrate
    integrator = TsdfIntegrator(voxel_size, truncation, dmax, device)

    def depth_of(i: int) -> np.ndarray:
        d = clean_depth(frames.depth[i])[0]
        return np.where(d <= dmax, d, np.float32(0)) if depth_max is not None else d

    t0 = time.perf_counter()
    empty_frames = 0
    for i in range(n):
        d = depth_of(i)
        if not (d > 0).any():
            empty_frames += 1
            continue
        integrator.integrate(d, frames.rgb[i], K, c2w[i])
    t_integrate = time.perf_counter() - t0

    # 3. dense grid on our convention, tight around the surfaces (or the given bounds) plus a margin
    t0 = time.perf_counter()
    index, s_tsdf, s_weight, s_colour = integrator.extract_sparse()
    surface = np.abs(s_tsdf) * truncation <= 0.5  # within half a voxel of a surface
    if not surface.any():
        raise FusionError(f"room {room}: no surface was observed within depth_max={dmax:.2f} m in any of its {n} frames")
    if bounds is not None:
        if hasattr(bounds, "bounds"):
            bounds = bounds.bounds()
        lo, hi = (np.asarray(b, np.float64).reshape(3) for b in bounds)
    else:  # the extent of the surfaces: the centres of the voxels they pass through, +- half a voxel
        lo = index[surface].min(axis=0) * voxel_size
        hi = (index[surface].max(axis=0) + 1) * voxel_size
    origin, shape = grid_for_bounds(lo, hi, voxel_size, margin * voxel_size)
    nvox = int(np.prod(shape))
    if nvox > MAX_VOXELS:
        raise FusionError(
            f"room {room}: the grid {shape} ({nvox / 1e6:.0f} M voxels) from bounds {np.round(lo, 2).tolist()} .. "
            f"{np.round(hi, 2).tolist()} is too large; pass bounds (the room's mesh) or a smaller depth_max"
        )
    origin_index = np.rint(origin / voxel_size).astype(np.int64)
    origin = origin_index * voxel_size
    tsdf, weight, colour = integrator.dense(index, s_tsdf, s_weight, s_colour, origin_index, shape)
    del index, s_tsdf, s_weight, s_colour
    t_extract = time.perf_counter() - t0

    # 4. labels by voting on the observed near-surface band
    t0 = time.perf_counter()
    in_band = (weight > 0) & (tsdf < 1.0)
    band_idx = np.flatnonzero(in_band)
    ijk = np.stack(np.unravel_index(band_idx, shape), axis=1)
    centres = origin + (ijk + 0.5) * voxel_size
    band_m = float(band) if band is not None else truncation * voxel_size
    voter = LabelVoter(centres, band_m, power=vote_power)
    for i in range(n):
        voter.add_frame(depth_of(i), frames.label[i], frames.instance[i], K, c2w[i])
    lab, inst, votes = voter.result()
    label = np.zeros(shape, np.uint8)
    instance = np.zeros(shape, np.uint16)
    voted = np.zeros(shape, bool)
    label.reshape(-1)[band_idx] = lab
    instance.reshape(-1)[band_idx] = inst
    voted.reshape(-1)[band_idx] = votes > 0
    label, filled = fill_from_nearest(label, voted, in_band)
    instance, _ = fill_from_nearest(instance, voted, in_band)
    t_vote = time.perf_counter() - t0

    rgb = np.zeros((*shape, 3), np.uint8)
    rgb[in_band] = np.clip(np.rint(colour[in_band]), 0, 255).astype(np.uint8)

    import open3d

    attrs = {
        "fusion": {
            "method": "open3d VoxelBlockGrid TSDF (projective sdf) + projective label voting",
            "open3d_version": open3d.__version__,
            "voxel_size": float(voxel_size),
            "truncation_voxels": float(truncation),
            "depth_max_m": round(dmax, 4),
            "label_band_m": band_m,
            "margin_voxels": int(margin),
            "bounds": "given" if bounds is not None else "observed surfaces",
            "frames": int(n),
            "frames_without_depth": int(empty_frames),
            "invalid_depth_pixels": int(invalid_pixels),
            "frames_with_invalid_depth": int(invalid_frames),
            "observed_voxels": int((weight > 0).sum()),
            "near_surface_voxels": int(band_idx.size),
            "voxels_filled_from_neighbour": int(filled),
        }
    }
    if timings is not None:  # reported to the caller, never stored: stored attrs stay deterministic
        timings.update(integrate=t_integrate, extract=t_extract, vote=t_vote, total=time.perf_counter() - t_start)
    return RoomVolume(
        tsdf=tsdf,
        weight=weight,
        rgb=rgb,
        label=label,
        instance=instance,
        origin=origin,
        voxel_size=float(voxel_size),
        truncation=float(truncation),
        room_uid=room if room != "<unnamed room>" else "",
        attrs=attrs,
    )
