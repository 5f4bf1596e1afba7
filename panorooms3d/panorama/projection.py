"""Differentiable panoramic projection of a 3D prediction (the torch side of 2D-to-3D distillation).

A per-voxel prediction ``values`` [K, X, Y, Z] (logits or probabilities of the 3D student) is
rendered into the room's 360 degree panorama so that it can be compared with a 2D teacher's
prediction of the same panorama; gradients flow back into ``values``.

Conventions (docs/formats.md, :mod:`panorooms3d.geometry`):

- World frame: metres, Z up. Volumes are indexed [x, y, z]; voxel (i, j, k) has its centre at
  ``origin + (ijk + 0.5) * voxel_size``; trilinear interpolation is between voxel centres, so the
  volume is defined on the box of centres ``[origin + 0.5 vs, origin + (N - 0.5) vs]``.
- ``tsdf`` is signed distance / truncation in [-1, 1], positive in front of surfaces, 1 where free
  or unobserved. A surface is a positive-to-negative zero crossing along a ray.
- Equirect pixel (v, u) looks along :func:`panorooms3d.geometry.equirect_directions` (the centre
  column along +x, a quarter to the right along -y, the top row up). Depth is range (distance
  along the ray) in metres, 0 where nothing was hit.

Three variants:

- :func:`render_equirect` (and the generic :func:`render_rays`): one ray per equirect pixel, the
  first zero crossing of the trilinearly interpolated tsdf, refined linearly between the two
  bracketing samples; ``values`` is interpolated trilinearly there (with grad).
- :func:`render_equirect_faces`: the paper's way: six 90 degree square faces rendered with the same
  march (:func:`render_skybox`), stitched to equirect (:func:`stitch_equirect`).
- :func:`render_equirect_emission`: emission-absorption compositing with density ``(1 - tsdf) / 2``
  at 100 samples of *range* over 0.1-7 m, one ray per equirect pixel (a simplification of the
  official code's renderer);
- :func:`render_equirect_official`: the official code's ``render()`` exactly: six pytorch3d faces,
  100 samples of *planar depth* 0.1-7 m, emission-absorption, the official ``cube2equi`` stitch.

The march skips empty space exactly: a grid of 2^3-voxel blocks stores the chessboard distance to
the nearest block holding a voxel within one voxel of a ``tsdf <= 0`` voxel; from a block at
distance D >= 2 a ray jumps D - 1 blocks (every trilinear sample there is provably > 0), and only
near surfaces is it sampled at the fine step, so the result equals a plain fine march at the same
step. See docs/projection.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from panorooms3d.geometry import SKYBOX_FACES, SKYBOX_ROTATIONS, equirect_directions, intrinsics, pixel_rays

__all__ = [
    "ProjectionResult",
    "render_rays",
    "render_equirect",
    "render_skybox",
    "stitch_equirect",
    "render_equirect_faces",
    "render_equirect_emission",
    "render_equirect_official",
    "official_equirect_grid",
    "official_cube2equi",
    "trilinear_sample",
]

#: Default number of rays marched together (bounds the march's working memory).
DEFAULT_CHUNK_RAYS = 65536
#: Edge of the empty-space-skipping blocks, in voxels (also the length of a finely sampled segment).
_BLOCK = 2
#: Largest block distance stored (a skip is at most ``_MAX_DIST - 1`` blocks).
_MAX_DIST = 32
#: Fine segments sampled per ray and iteration once a ray is near a surface.
_SEGS = 2


@dataclass
class ProjectionResult:
    """A rendered panorama (or any set of rays).

    Attributes:
        values: [K, *S] tensor in ``values``' dtype: the projected per-class values (0 where no hit);
            differentiable with respect to the rendered ``values``. ``S`` is (H, W) for panoramas.
            Usually a non-contiguous view of channels-last storage ([*S, K]); use ``reshape`` or
            ``contiguous()`` rather than ``view``.
        hit: [*S] bool: the ray found a surface (a positive-to-negative tsdf crossing).
        depth: [*S] float32 range along the ray in metres (0 where no hit).
    """

    values: torch.Tensor
    hit: torch.Tensor
    depth: torch.Tensor


# ----------------------------------------------------------------------------------------------
# trilinear interpolation (differentiable in the volume)


class _GatherTrilinear(torch.autograd.Function):
    """rows[r] = sum_{e in bag r} w[e] * values[:, uidx[inv[e]]]: a bagged gather, sort-based backward.

    ``inv`` [E] int32 (position of each entry's voxel in ``uidx``), ``w`` [E], ``offsets`` [R] int32
    (start of each bag; entries sorted by bag; empty bags give zero rows).
    """

    @staticmethod
    def forward(ctx, values, uidx, inv, w, offsets):  # noqa: D102
        k = values.shape[0]
        table = values.reshape(k, -1).index_select(1, uidx).t().contiguous()  # [U, K]
        ctx.save_for_backward(uidx, inv, w, offsets)
        ctx.vshape = values.shape
        return F.embedding_bag(inv, table, offsets, per_sample_weights=w, mode="sum")  # [R, K]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: D102
        uidx, inv, w, offsets = ctx.saved_tensors
        k = ctx.vshape[0]
        # the transpose of the sparse [R, U] weight matrix: group the entries by voxel
        sizes = torch.diff(offsets.long(), append=offsets.new_tensor([inv.numel()]).long())
        bag = torch.repeat_interleave(torch.arange(offsets.numel(), device=inv.device, dtype=torch.int32), sizes)
        srt, order = torch.sort(inv)
        counts = torch.bincount(srt, minlength=uidx.numel())
        voff = (torch.cumsum(counts, 0) - counts).to(torch.int32)
        gt = F.embedding_bag(bag[order], grad.contiguous(), voff, per_sample_weights=w[order], mode="sum")  # [U, K]
        gv = grad.new_zeros((k, int(np.prod(ctx.vshape[1:]))))
        gv.index_copy_(1, uidx, gt.t())
        return gv.reshape(ctx.vshape), None, None, None, None


def _trilinear_rows(
    values: torch.Tensor,
    points: torch.Tensor,
    bags: torch.Tensor | None = None,
    point_weights: torch.Tensor | None = None,
    n_rows: int | None = None,
) -> torch.Tensor:
    """Trilinear interpolation of values [K, X, Y, Z] at voxel indices [P, 3] -> rows [P, K].

    With ``bags`` [P] (the output row of each point, ascending), ``point_weights`` [P] and ``n_rows``,
    returns [n_rows, K] rows ``sum_{p in row} point_weights[p] * values(points[p])`` (rows without
    points are 0) without materialising per-point rows.
    """
    k, nx, ny, nz = values.shape
    dev = values.device
    n = points.shape[0]
    if n == 0:  # nothing to sample: zeros, still on the graph (zero gradient)
        return values.new_zeros((n if bags is None else n_rows, k)) + 0 * values.reshape(k, -1)[:, 0]
    hi = torch.tensor([nx - 1, ny - 1, nz - 1], dtype=points.dtype, device=dev)
    p = torch.minimum(points.clamp(min=0), hi)
    i0f = torch.minimum(p.floor(), (hi - 1).clamp(min=0))
    f = (p - i0f).to(values.dtype)
    i0 = i0f.long()
    i1 = torch.minimum(i0 + 1, hi.long())
    ix = torch.stack([i0[:, 0], i1[:, 0]], 1) * (ny * nz)  # [P, 2]
    iy = torch.stack([i0[:, 1], i1[:, 1]], 1) * nz
    iz = torch.stack([i0[:, 2], i1[:, 2]], 1)
    idx = (ix[:, :, None, None] + iy[:, None, :, None] + iz[:, None, None, :]).reshape(-1)  # [8P]
    fx, fy, fz = f.unbind(1)
    wx = torch.stack([1 - fx, fx], 1)
    wy = torch.stack([1 - fy, fy], 1)
    wz = torch.stack([1 - fz, fz], 1)
    w = wx[:, :, None, None] * wy[:, None, :, None] * wz[:, None, None, :]  # [P, 2, 2, 2]
    if point_weights is not None:
        w = w * point_weights.to(values.dtype)[:, None, None, None]
    w = w.reshape(-1)
    if bags is None:
        offsets = torch.arange(0, 8 * n, 8, device=dev, dtype=torch.int32)
    else:
        counts = torch.bincount(bags, minlength=n_rows) * 8
        offsets = (torch.cumsum(counts, 0) - counts).to(torch.int32)
    # compact the touched voxels: uidx (sorted voxel ids) and inv (their position in uidx)
    nvox = nx * ny * nz
    mark = torch.zeros(nvox, dtype=torch.bool, device=dev)
    mark[idx] = True
    uidx = mark.nonzero().squeeze(1)
    lut = torch.empty(nvox, dtype=torch.int32, device=dev)
    lut[uidx] = torch.arange(uidx.numel(), device=dev, dtype=torch.int32)
    return _GatherTrilinear.apply(values, uidx, lut[idx], w, offsets)


def trilinear_sample(values: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation of a volume at continuous voxel indices, differentiable in ``values``.

    Args:
        values: [K, X, Y, Z] float tensor (any float dtype; may require grad).
        points: [N, 3] float tensor of continuous voxel indices (index i is the centre of voxel i,
            i.e. ``(world - origin) / voxel_size - 0.5``), same device. Points are clamped to the box
            of voxel centres [0, X-1] x [0, Y-1] x [0, Z-1] (border replication).

    Returns:
        [K, N] tensor in ``values``' dtype (a transposed view of an [N, K] buffer). Equal to
        ``F.grid_sample(..., align_corners=True)``; the gradient with respect to ``values`` is
        non-zero only on the 8 voxels around each point. Only the voxels touched are gathered (then
        an ``embedding_bag`` with the trilinear weights; the backward groups the weights by voxel
        with one sort), which is much faster on CPU than ``grid_sample`` for many channels.
    """
    return _trilinear_rows(values, points).t()


# ----------------------------------------------------------------------------------------------
# the march (no grad)


def _dilate(x: torch.Tensor) -> torch.Tensor:
    """3x3x3 binary dilation of a bool [X, Y, Z] tensor (separable, shifted ORs; outside = False)."""
    for dim in range(3):
        y = x.clone()
        n = x.shape[dim]
        y.narrow(dim, 1, n - 1).logical_or_(x.narrow(dim, 0, n - 1))
        y.narrow(dim, 0, n - 1).logical_or_(x.narrow(dim, 1, n - 1))
        x = y
    return x


class _Grid:
    """The tsdf prepared for marching: float32 [1, 1, X, Y, Z] plus a block distance field.

    ``dist[b]`` is the chessboard distance, in blocks of ``_BLOCK`` voxels, from block ``b`` to the
    nearest block holding a voxel within one voxel of a ``tsdf <= 0`` voxel (capped at
    ``_MAX_DIST``). A trilinear sample at p reads only voxels within one voxel of the voxel that
    holds p, so a sample <= 0 lies in a block at distance 0, and from a point in a block at
    distance D >= 2 a ray can skip ``(D - 1)`` blocks (less a hair) seeing only samples > 0.
    """

    def __init__(self, tsdf: torch.Tensor, origin, voxel_size: float, step: float | None) -> None:
        if tsdf.dim() != 3 or min(tsdf.shape) < 2:
            raise ValueError(f"tsdf must be [X, Y, Z] with every size >= 2, got {tuple(tsdf.shape)}")
        self.device = tsdf.device
        self.tsdf = tsdf.detach().to(torch.float32).contiguous()[None, None]
        self.shape = tuple(int(s) for s in tsdf.shape)
        self.vs = float(voxel_size)
        if not self.vs > 0:
            raise ValueError(f"voxel_size must be > 0, got {voxel_size}")
        self.origin = torch.as_tensor(np.asarray(origin, dtype=np.float64).reshape(3), device=self.device)
        self.seg = _BLOCK * self.vs  # fine segment length (metres) = block edge
        step = 0.5 * self.vs if step is None else float(step)
        if not step > 0:
            raise ValueError(f"step must be > 0, got {step}")
        self.n_fine = max(1, math.ceil(self.seg / step - 1e-9))
        self.step = self.seg / self.n_fine
        with torch.no_grad():
            neg = _dilate(self.tsdf[0, 0] <= 0)  # a trilinear sample at p reads voxels within 1 of floor(p)
            cur = F.max_pool3d(neg[None, None].to(torch.float32), _BLOCK, _BLOCK, ceil_mode=True)[0, 0] > 0
            dist = torch.full(cur.shape, _MAX_DIST, dtype=torch.int32, device=self.device)
            dist[cur] = 0
            for i in range(1, _MAX_DIST):
                if bool(cur.all()):
                    break
                cur = _dilate(cur)
                dist[cur & (dist == _MAX_DIST)] = i
        self.dist = dist.reshape(-1).contiguous()
        self.nblocks = tuple(int(s) for s in dist.shape)

    def frame(self, camera: torch.Tensor, dirs: torch.Tensor):
        """Per-ray affine maps t -> voxel index a + t b, and t -> grid_sample coords A + t B (z, y, x)."""
        a = ((camera.to(torch.float64) - self.origin) / self.vs - 0.5).to(torch.float32)  # (3,)
        b = dirs / self.vs  # [N, 3]
        scale = torch.tensor([2.0 / (s - 1) for s in self.shape], device=self.device)
        a_n = (a * scale - 1).flip(0)
        b_n = (b * scale).flip(1)
        return a, b, a_n, b_n

    def entry_exit(self, camera: torch.Tensor, dirs: torch.Tensor, max_distance: float | None):
        """Ray parameters [N] where each ray enters and leaves the box of voxel centres."""
        lo = (self.origin + 0.5 * self.vs).to(torch.float32)
        hi = (self.origin + (torch.tensor(self.shape, device=self.device) - 0.5) * self.vs).to(torch.float32)
        c = camera.to(torch.float32)
        d = torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
        ta = (lo - c) / d
        tb = (hi - c) / d
        t0 = torch.minimum(ta, tb).amax(1).clamp(min=0)
        t1 = torch.maximum(ta, tb).amin(1)
        if max_distance is not None:
            t1 = t1.clamp(max=float(max_distance))
        return t0, t1

    def sample(self, grid_coords: torch.Tensor) -> torch.Tensor:
        """Trilinear tsdf at grid_sample coordinates [P, M, 3] (z, y, x in [-1, 1]) -> [P, M]."""
        p, m = grid_coords.shape[:2]
        out = F.grid_sample(
            self.tsdf, grid_coords.reshape(1, 1, p, m, 3), mode="bilinear", padding_mode="border", align_corners=True
        )
        return out.reshape(p, m)

    def _block_index(self, vox: torch.Tensor) -> torch.Tensor:
        """Linear block index (long [N]) of voxel indices [N, 3] (clamped to the box of centres)."""
        hi = torch.tensor([s - 1 for s in self.shape], dtype=vox.dtype, device=self.device)
        v = torch.minimum(vox.clamp(min=0), hi).add_(0.5).div_(_BLOCK).long()  # voxel i covers [i, i+1)
        nb = self.nblocks
        return (v[:, 0] * nb[1] + v[:, 1]) * nb[2] + v[:, 2]

    def block_dist(self, vox: torch.Tensor) -> torch.Tensor:
        """Block distance (int32 [N]) at voxel indices [N, 3] (clamped to the box of centres)."""
        return self.dist[self._block_index(vox)]

    def not_free(self, vox: torch.Tensor) -> torch.Tensor:
        """bool [N]: False where the trilinear tsdf at voxel indices [N, 3] is certainly exactly 1."""
        if not hasattr(self, "_not_free"):
            with torch.no_grad():
                soft = _dilate(self.tsdf[0, 0] < 1)
                blocks = F.max_pool3d(soft[None, None].to(torch.float32), _BLOCK, _BLOCK, ceil_mode=True)[0, 0]
                self._not_free = (blocks > 0).reshape(-1)
        return self._not_free[self._block_index(vox)]


@torch.no_grad()
def _march(grid: _Grid, camera: torch.Tensor, dirs: torch.Tensor, max_distance: float | None):
    """First positive-to-negative tsdf crossing along unit rays ``dirs`` [N, 3] -> (hit [N], t [N])."""
    n = dirs.shape[0]
    dev = grid.device
    t_hit = torch.full((n,), math.inf, dtype=torch.float32, device=dev)
    t, t1 = grid.entry_exit(camera, dirs, max_distance)
    a, b, a_n, b_n = grid.frame(camera, dirs)
    fine = torch.arange(_SEGS * grid.n_fine + 1, device=dev, dtype=torch.float32) * grid.step
    skip_unit = grid.seg * (1 - 1e-3)
    rays = torch.nonzero(t1 > t).squeeze(1)
    while rays.numel() > 0:
        tr = t[rays]
        dist = grid.block_dist(a + tr[:, None] * b[rays])
        far = dist >= 2
        # far from every surface: skip (dist - 1) blocks; every sample skipped is > 0
        t[rays[far]] = tr[far] + (dist[far] - 1).to(torch.float32) * skip_unit
        near = rays[~far]
        if near.numel() > 0:
            ts = t[near, None] + fine  # [R, M]
            s = grid.sample(a_n + ts[..., None] * b_n[near, None, :])
            cross = (s[:, :-1] > 0) & (s[:, 1:] <= 0) & (ts[:, 1:] <= t1[near, None])
            anyc = cross.any(1)
            if bool(anyc.any()):
                s, ts, cross = s[anyc], ts[anyc], cross[anyc]
                first = cross.to(torch.uint8).argmax(1, keepdim=True)
                sa = s.gather(1, first).squeeze(1)
                sb = s.gather(1, first + 1).squeeze(1)
                t_hit[near[anyc]] = ts.gather(1, first).squeeze(1) + grid.step * sa / (sa - sb)
            t[near] = t[near] + _SEGS * grid.seg
        rays = rays[torch.isinf(t_hit[rays]) & (t[rays] < t1[rays])]
    hit = torch.isfinite(t_hit)
    return hit, torch.where(hit, t_hit, torch.zeros_like(t_hit))


def _as_tensor3(x, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(3), device=device)


def _check(tsdf, values) -> torch.Tensor:
    tsdf = torch.as_tensor(tsdf)
    if values.dim() != 4 or tuple(values.shape[1:]) != tuple(tsdf.shape):
        raise ValueError(f"values must be [K, X, Y, Z] matching tsdf {tuple(tsdf.shape)}, got {tuple(values.shape)}")
    return tsdf.to(values.device)


# ----------------------------------------------------------------------------------------------
# public: surface (zero-crossing) rendering


def render_rays(
    tsdf: torch.Tensor,
    values: torch.Tensor,
    *,
    origin,
    voxel_size: float,
    camera,
    directions,
    max_distance: float | None = None,
    step: float | None = None,
    chunk_rays: int = DEFAULT_CHUNK_RAYS,
) -> ProjectionResult:
    """Render ``values`` along arbitrary rays from ``camera`` at the first tsdf zero crossing.

    Each ray is sampled every ``step`` metres (default half a voxel; the actual step is
    ``2 voxel / ceil(2 voxel / step)`` <= ``step``) with trilinear interpolation of ``tsdf`` between
    voxel centres, inside the box of voxel centres and up to ``max_distance``. The first pair of
    consecutive samples with ``s_a > 0 >= s_b`` is the surface; the crossing is refined linearly,
    ``t = t_a + step * s_a / (s_a - s_b)``, and ``values`` is interpolated trilinearly at
    ``camera + t * d``. The hit location carries no gradient; the gradient reaches ``values``
    through the trilinear weights (the 8 voxels around each hit point). Rays that leave the grid
    without a crossing, or that start behind a surface and never cross into one, report
    ``hit=False``, value 0 and depth 0.

    Args:
        tsdf: [X, Y, Z] tensor (or array), normalised tsdf (positive in front of surfaces, 1 = free
            or unobserved); never differentiated. Every size must be >= 2.
        values: [K, X, Y, Z] float tensor (logits or probabilities; may require grad).
        origin: (3,) world position (metres) of the grid corner.
        voxel_size: voxel edge in metres.
        camera: (3,) world position (metres) of the ray origin.
        directions: [*S, 3] world-frame ray directions (normalised here), array or tensor.
        max_distance: optional largest range in metres.
        step: sampling step in metres (default ``voxel_size / 2``).
        chunk_rays: rays marched together (bounds the march's working memory).

    Returns:
        :class:`ProjectionResult` with values [K, *S], hit [*S] and depth [*S] (range, metres).
    """
    tsdf = _check(tsdf, values)
    dev = values.device
    d = directions if torch.is_tensor(directions) else torch.as_tensor(np.asarray(directions, dtype=np.float64))
    shape = tuple(d.shape[:-1])
    d = d.reshape(-1, 3).to(device=dev, dtype=torch.float64)
    d = (d / d.norm(dim=1, keepdim=True)).to(torch.float32)
    grid = _Grid(tsdf, origin, voxel_size, step)
    cam = _as_tensor3(camera, dev)
    hits, ts = [], []
    for s in range(0, d.shape[0], max(1, int(chunk_rays))):
        h, t = _march(grid, cam, d[s : s + chunk_rays], max_distance)
        hits.append(h)
        ts.append(t)
    hit = torch.cat(hits)
    depth = torch.cat(ts)
    idx = hit.nonzero().squeeze(1)
    a = ((cam - grid.origin) / grid.vs - 0.5).to(torch.float32)
    pts = a + depth[idx, None] * d[idx] / grid.vs
    ones = torch.ones(idx.numel(), dtype=values.dtype, device=dev)
    out = _trilinear_rows(values, pts, idx, ones, d.shape[0]).t()  # [K, N] view of [N, K]; 0 where no hit
    return ProjectionResult(out.reshape(values.shape[0], *shape), hit.reshape(shape), depth.reshape(shape))


def render_equirect(
    tsdf: torch.Tensor,
    values: torch.Tensor,
    *,
    origin,
    voxel_size: float,
    camera,
    height: int = 512,
    width: int = 1024,
    max_distance: float | None = None,
    step: float | None = None,
    chunk_rays: int = DEFAULT_CHUNK_RAYS,
) -> ProjectionResult:
    """Differentiable equirect panorama of ``values`` seen from ``camera`` (one ray per pixel).

    Pixel (v, u) looks along ``geometry.equirect_directions(height, width)[v, u]`` (the data-side
    convention: centre column along +x, a quarter to the right along -y, top row up). The surface
    is the first positive-to-negative zero crossing of the trilinear tsdf; see :func:`render_rays`
    for the march, the refinement and the gradient.

    Args:
        tsdf: [X, Y, Z] normalised tsdf (positive in front of surfaces, 1 = free/unobserved).
        values: [K, X, Y, Z] float logits or probabilities (may require grad).
        origin: (3,) world corner of the grid (metres); voxel (i, j, k) has its centre at
            ``origin + (ijk + 0.5) * voxel_size``.
        voxel_size: metres.
        camera: (3,) world position of the panorama centre (metres).
        height, width: panorama size in pixels.
        max_distance: optional largest range (metres).
        step: march step in metres (default ``voxel_size / 2``).
        chunk_rays: rays marched together.

    Returns:
        :class:`ProjectionResult`: values [K, H, W] (0 where no hit), hit [H, W] bool, depth [H, W]
        float32 range in metres (0 where no hit).
    """
    dirs = torch.as_tensor(equirect_directions(height, width), dtype=torch.float32)
    return render_rays(
        tsdf,
        values,
        origin=origin,
        voxel_size=voxel_size,
        camera=camera,
        directions=dirs,
        max_distance=max_distance,
        step=step,
        chunk_rays=chunk_rays,
    )


# ----------------------------------------------------------------------------------------------
# public: skybox faces and stitching


def _face_directions(face_size: int) -> np.ndarray:
    """World unit rays [6, F, F, 3] of the skybox faces in ``SKYBOX_FACES`` order."""
    k = intrinsics(face_size, face_size, 90.0)
    cam = pixel_rays(k, face_size, face_size)  # [F, F, 3], OpenCV camera frame
    out = np.stack([cam @ SKYBOX_ROTATIONS[f].T for f in SKYBOX_FACES])
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def render_skybox(
    tsdf: torch.Tensor,
    values: torch.Tensor,
    *,
    origin,
    voxel_size: float,
    camera,
    face_size: int = 256,
    max_distance: float | None = None,
    step: float | None = None,
    chunk_rays: int = DEFAULT_CHUNK_RAYS,
) -> dict[str, ProjectionResult]:
    """Render the six 90 degree square skybox faces with the zero-crossing march.

    Face ``f`` is a pinhole camera ``intrinsics(F, F, 90)`` with the OpenCV ``cam_to_world`` rotation
    ``geometry.SKYBOX_ROTATIONS[f]`` at ``camera``; pixel (row v, column u) of the face looks along
    ``R @ ((u - cx)/fx, (v - cy)/fy, 1)``. Depth is range along that ray (not planar z).

    Returns:
        {face name: :class:`ProjectionResult` with values [K, F, F], hit [F, F], depth [F, F]} for the
        faces ``+x, -x, +y, -y, +z, -z``.
    """
    dirs = torch.as_tensor(_face_directions(face_size), dtype=torch.float32)
    res = render_rays(
        tsdf,
        values,
        origin=origin,
        voxel_size=voxel_size,
        camera=camera,
        directions=dirs,
        max_distance=max_distance,
        step=step,
        chunk_rays=chunk_rays,
    )
    return {f: ProjectionResult(res.values[:, i], res.hit[i], res.depth[i]) for i, f in enumerate(SKYBOX_FACES)}


def stitch_equirect(
    faces: dict[str, ProjectionResult], height: int = 512, width: int = 1024, mode: str = "nearest"
) -> ProjectionResult:
    """Resample six skybox faces (:func:`render_skybox`) into an equirect panorama.

    Each equirect direction ``d`` (``geometry.equirect_directions``) is looked up in the face of
    its dominant axis at pixel ``K @ R^T d`` (the face's pinhole projection). ``mode="nearest"``
    takes the nearest face pixel for values, hit and depth. ``mode="bilinear"`` (for
    probabilities) interpolates values bilinearly between the (up to four) neighbouring face pixels
    that hit a surface, with weights renormalised over those; hit and depth stay nearest.
    Neighbours past a face border are clamped to the border. Differentiable in the face values.

    Returns:
        :class:`ProjectionResult` with values [K, H, W], hit [H, W], depth [H, W] (range, metres).
    """
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    kc, fs, _ = faces[SKYBOX_FACES[0]].values.shape
    # rows [6 F F, K] (channels last: gathers and their backward move whole rows)
    rows = torch.cat([faces[f].values.reshape(kc, -1).t() for f in SKYBOX_FACES], 0)
    dev = rows.device
    hit = torch.stack([faces[f].hit for f in SKYBOX_FACES]).reshape(-1)
    depth = torch.stack([faces[f].depth for f in SKYBOX_FACES]).reshape(-1)
    d = equirect_directions(height, width).reshape(-1, 3)
    axis = np.abs(d).argmax(1)
    sign = np.sign(d[np.arange(d.shape[0]), axis])
    face_of = {f: i for i, f in enumerate(SKYBOX_FACES)}
    fidx = np.empty(d.shape[0], dtype=np.int64)
    u = np.empty(d.shape[0])
    v = np.empty(d.shape[0])
    kmat = intrinsics(fs, fs, 90.0)
    for ax, axname in enumerate("xyz"):
        for sg, sgname in ((1, "+"), (-1, "-")):
            sel = (axis == ax) & (sign == sg)
            name = sgname + axname
            c = d[sel] @ SKYBOX_ROTATIONS[name]  # R^T d, row-wise
            u[sel] = kmat[0, 0] * c[:, 0] / c[:, 2] + kmat[0, 2]
            v[sel] = kmat[1, 1] * c[:, 1] / c[:, 2] + kmat[1, 2]
            fidx[sel] = face_of[name]
    fidx_t = torch.as_tensor(fidx, device=dev)
    u_t = torch.as_tensor(u, device=dev)
    v_t = torch.as_tensor(v, device=dev)
    un = u_t.round().clamp(0, fs - 1).long()
    vn = v_t.round().clamp(0, fs - 1).long()
    near = (fidx_t * fs + vn) * fs + un
    hit_out = hit[near]
    depth_out = torch.where(hit_out, depth[near], torch.zeros_like(depth[near]))
    if mode == "nearest":
        out = rows.index_select(0, near)  # [H W, K]
    else:
        u0 = u_t.floor().clamp(0, fs - 1)
        v0 = v_t.floor().clamp(0, fs - 1)
        fu = (u_t - u0).clamp(0, 1).to(rows.dtype)
        fv = (v_t - v0).clamp(0, 1).to(rows.dtype)
        u0l, v0l = u0.long(), v0.long()
        u1l, v1l = (u0l + 1).clamp(max=fs - 1), (v0l + 1).clamp(max=fs - 1)
        acc = 0
        wsum = 0
        for vv, wv in ((v0l, 1 - fv), (v1l, fv)):
            for uu, wu in ((u0l, 1 - fu), (u1l, fu)):
                lin = (fidx_t * fs + vv) * fs + uu
                w = wv * wu * hit[lin].to(rows.dtype)
                acc = acc + rows.index_select(0, lin) * w[:, None]
                wsum = wsum + w
        out = torch.where(hit_out[:, None], acc / wsum.clamp(min=1e-12)[:, None], torch.zeros_like(acc))
    return ProjectionResult(
        out.t().reshape(kc, height, width), hit_out.reshape(height, width), depth_out.reshape(height, width)
    )


def render_equirect_faces(
    tsdf: torch.Tensor,
    values: torch.Tensor,
    *,
    origin,
    voxel_size: float,
    camera,
    height: int = 512,
    width: int = 1024,
    face_size: int | None = None,
    mode: str = "nearest",
    max_distance: float | None = None,
    step: float | None = None,
    chunk_rays: int = DEFAULT_CHUNK_RAYS,
) -> ProjectionResult:
    """The paper's projection: six 90 degree faces (zero-crossing march) stitched to equirect.

    ``face_size`` defaults to ``height // 2`` (256 for 512 x 1024, the official 256^2 faces).
    Faces come from :func:`render_skybox`, the stitch from :func:`stitch_equirect` (``mode``
    ``"nearest"`` for logits/labels, ``"bilinear"`` for probabilities). Arguments and result as in
    :func:`render_equirect`; depth is the range of the face pixel's ray (nearest).
    """
    faces = render_skybox(
        tsdf,
        values,
        origin=origin,
        voxel_size=voxel_size,
        camera=camera,
        face_size=face_size or max(1, height // 2),
        max_distance=max_distance,
        step=step,
        chunk_rays=chunk_rays,
    )
    return stitch_equirect(faces, height, width, mode)


# ----------------------------------------------------------------------------------------------
# public: emission-absorption (the official code's variant)


def _emission_rays(
    tsdf, values, origin, voxel_size, camera, dirs, n_samples, near, far, chunk_rays, min_weight, hit_threshold
) -> ProjectionResult:
    tsdf = _check(tsdf, values)
    dev = values.device
    grid = _Grid(tsdf, origin, voxel_size, None)
    cam = _as_tensor3(camera, dev)
    shape = tuple(dirs.shape[:-1])
    d = dirs.reshape(-1, 3).to(device=dev, dtype=torch.float64)
    d = (d / d.norm(dim=1, keepdim=True)).to(torch.float32)
    n = d.shape[0]
    ts = torch.linspace(float(near), float(far), int(n_samples), device=dev, dtype=torch.float32)
    a, b, a_n, b_n = grid.frame(cam, d)
    hi = torch.tensor([s - 1 for s in grid.shape], dtype=torch.float32, device=dev)
    opacity = torch.zeros(n, device=dev)
    wdepth = torch.zeros(n, device=dev)
    keep_ray, keep_pts, keep_w = [], [], []
    with torch.no_grad():
        for s in range(0, n, max(1, int(chunk_rays))):
            sl = slice(s, s + chunk_rays)
            vox = a + ts[None, :, None] * b[sl, None, :]  # [R, S, 3]
            inside = ((vox >= 0) & (vox <= hi)).all(-1)
            # the trilinear tsdf only where it may be < 1 (blocks with a voxel < 1 nearby); 1 elsewhere
            sel = (inside & grid.not_free(vox.reshape(-1, 3)).reshape(inside.shape)).nonzero(as_tuple=True)
            sdf = torch.ones(inside.shape, dtype=torch.float32, device=dev)  # outside the grid: free
            if sel[0].numel() > 0:
                coords = a_n + ts[sel[1], None] * b_n[s + sel[0]]
                sdf[sel] = grid.sample(coords[:, None, :])[:, 0]
            sigma = ((1 - sdf) / 2).clamp(0, 1)
            trans = torch.cumprod(torch.cat([torch.ones_like(sigma[:, :1]), 1 - sigma[:, :-1]], 1), 1)
            w = sigma * trans  # [R, S]
            opacity[sl] = w.sum(1)
            wdepth[sl] = (w * ts).sum(1)
            r, j = (w > min_weight).nonzero(as_tuple=True)
            keep_ray.append(r + s)
            keep_pts.append(vox[r, j])
            keep_w.append(w[r, j])
    ray = torch.cat(keep_ray)
    out = _trilinear_rows(values, torch.cat(keep_pts), ray, torch.cat(keep_w), n).t()  # [K, N] view of [N, K]
    hit = opacity >= hit_threshold
    depth = torch.where(hit, wdepth / opacity.clamp(min=1e-12), torch.zeros_like(wdepth))
    return ProjectionResult(out.reshape(values.shape[0], *shape), hit.reshape(shape), depth.reshape(shape))


def render_equirect_emission(
    tsdf: torch.Tensor,
    values: torch.Tensor,
    *,
    origin,
    voxel_size: float,
    camera,
    height: int = 512,
    width: int = 1024,
    n_samples: int = 100,
    near: float = 0.1,
    far: float = 7.0,
    face_size: int | None = None,
    mode: str = "nearest",
    min_weight: float = 1e-6,
    hit_threshold: float = 0.5,
    chunk_rays: int = 16384,
) -> ProjectionResult:
    """The official code's variant: emission-absorption volume rendering of ``values``.

    Along each ray, ``n_samples`` points at ``t_i = linspace(near, far, n_samples)`` metres read the
    trilinear tsdf (1 outside the grid); the density ``sigma_i = (1 - tsdf_i) / 2`` in [0, 1] is used
    directly as the opacity of sample i (as pytorch3d's ``EmissionAbsorptionRaymarcher`` does, no
    step-length scaling), ``w_i = sigma_i * prod_{j<i} (1 - sigma_j)``, and the output is
    ``sum_i w_i * values(p_i)`` (trilinear, differentiable in ``values``; samples with
    ``w_i <= min_weight`` are skipped, an error below ``n_samples * min_weight * max|values|``).
    The weights carry no gradient (the tsdf is fixed).

    Differences from the zero-crossing variants: the output is a blend along the ray (not the
    value at the surface); it is not normalised (a ray through free space gives ~0, a surface
    gives about ``opacity`` times its value); the depth is the expected range
    ``sum w_i t_i / sum w_i``; ``hit`` is ``opacity = sum w_i >= hit_threshold``; nothing beyond
    ``far`` or nearer than ``near`` is seen; there is no sub-sample refinement (samples are
    ``(far - near) / (n_samples - 1)`` = 7 cm apart by default, coarser than a 4 cm voxel).
    The official code places the camera at the centre of the padded volume and renders 256^2
    faces; here the camera is the one given and, by default, every equirect pixel gets its own
    ray; pass ``face_size`` to render six faces and stitch them (``mode`` as in
    :func:`stitch_equirect`).

    Returns:
        :class:`ProjectionResult`: values [K, H, W], hit [H, W], depth [H, W] (expected range, metres).
    """
    if face_size is None:
        dirs = torch.as_tensor(equirect_directions(height, width), dtype=torch.float32)
        return _emission_rays(
            tsdf, values, origin, voxel_size, camera, dirs, n_samples, near, far, chunk_rays, min_weight, hit_threshold
        )
    dirs = torch.as_tensor(_face_directions(face_size), dtype=torch.float32)
    res = _emission_rays(
        tsdf, values, origin, voxel_size, camera, dirs, n_samples, near, far, chunk_rays, min_weight, hit_threshold
    )
    faces = {f: ProjectionResult(res.values[:, i], res.hit[i], res.depth[i]) for i, f in enumerate(SKYBOX_FACES)}
    return stitch_equirect(faces, height, width, mode)


# ----------------------------------------------------------------------------------------------
# public: the official code's render() exactly (six pytorch3d faces + cube2equi)

#: The official render()'s six cameras, in its face order F, R, B, L, U, D, as the axes of the
#: volume's *array indices* (a0, a1, a2) = [x, y, z]: (forward, camera +X, camera +Y). pytorch3d's
#: ``look_at_rotation(campos=0, at, up=(1, 1e-8, 0))`` (with its branch for ``at`` parallel to
#: ``up``) gives these in pytorch3d world coordinates (x, y, z), and ``Volumes`` maps world
#: (x, y, z) to array axes (a2, a1, a0); camera +X is the image's left, +Y its top. docs/formats.md.
OFFICIAL_FACE_AXES = (
    ((1, 0, 0), (0, -1, 0), (0, 0, 1)),   # F: at world (0, 0, 1)  = +a0
    ((0, 1, 0), (1, 0, 0), (0, 0, 1)),    # R: at world (0, 1, 0)  = +a1
    ((-1, 0, 0), (0, 1, 0), (0, 0, 1)),   # B: at world (0, 0, -1) = -a0
    ((0, -1, 0), (-1, 0, 0), (0, 0, 1)),  # L: at world (0, -1, 0) = -a1
    ((0, 0, 1), (-1, 0, 0), (0, 1, 0)),   # U: at world (1, 0, 0)  = +a2 (the look_at branch)
    ((0, 0, -1), (1, 0, 0), (0, 1, 0)),   # D: at world (-1, 0, 0) = -a2 (the look_at branch)
)
#: grid_sample padding modes accepted for the official stitch (the official: reflection).
STITCH_PADDINGS = ("reflection", "border", "zeros")
#: Output orientations of :func:`render_equirect_official`.
ORIENTATIONS = ("project", "official")


def official_equirect_grid(height: int, width: int, face_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``cube2equi`` sampling grid: (face id [H, W] long, pixel coords [H, W, 2] float32).

    Column u has longitude ``theta_u = linspace(-pi, pi, W)[u]`` and row v latitude
    ``phi_v = linspace(pi, -pi, H)[v] / 2`` (endpoints included, not pixel centres). The face of
    each pixel is py360convert's ``equirect_facetype`` (0 F, 1 R, 2 B, 3 L, 4 U, 5 D); within the
    face, ``x = 0.5 tan(theta - i pi/2)``, ``y = -0.5 tan(phi) / cos(theta - i pi/2)`` (i < 4),
    ``x = c sin theta``, ``y = +-c cos theta`` with ``c = 0.5 tan(pi/2 - |phi|)`` (U, D), mapped to the
    pixel coordinate ``clamp(clamp(x + 0.5, 0, 1) * F, 0, F - 1)`` (the official half-pixel
    convention) and offset by ``F * face`` in the horizontal strip F R B L U D. Coordinates are in
    ``grid_sample(align_corners=True)`` pixel units (x along the strip, y down the face).
    """
    h, w, fs = int(height), int(width), int(face_size)
    theta = torch.linspace(-math.pi, math.pi, w, dtype=torch.float32)
    phi = torch.linspace(math.pi, -math.pi, h, dtype=torch.float32) / 2
    phi, theta = torch.meshgrid(phi, theta, indexing="ij")
    # face of each pixel: four side faces in quarters (F centred), rolled by 3/8 of the width
    side = torch.arange(4).repeat_interleave(w // 4)
    if side.numel() < w:  # widths not divisible by 4: pad as the official .view would fail to
        raise ValueError(f"width must be a multiple of 4 (the official facetype), got {w}")
    face = torch.roll(side[None, :].expand(h, w), shifts=3 * w // 8, dims=1).clone()
    lon = torch.linspace(-math.pi, math.pi, w // 4, dtype=torch.float32) / 4
    rows = (h // 2 - torch.round(torch.atan(torch.cos(lon)) * h / math.pi)).long()
    top = torch.arange(h)[:, None] < rows[None, :]  # [H, W/4]
    top = torch.roll(torch.cat([top] * 4, 1), 3 * w // 8, 1)
    face[top] = 4
    face[torch.flip(top, dims=(0,))] = 5
    x = torch.zeros((h, w), dtype=torch.float32)
    y = torch.zeros((h, w), dtype=torch.float32)
    for i in range(6):
        m = face == i
        if i < 4:
            t = theta[m] - math.pi * i / 2
            x[m] = 0.5 * torch.tan(t)
            y[m] = -0.5 * torch.tan(phi[m]) / torch.cos(t)
        else:
            c = 0.5 * torch.tan(math.pi / 2 - (phi[m] if i == 4 else torch.abs(phi[m])))
            x[m] = c * torch.sin(theta[m])
            y[m] = (c if i == 4 else -c) * torch.cos(theta[m])
    x = torch.clamp(torch.clamp(x + 0.5, 0, 1) * fs, 0, fs - 1) + fs * face.to(torch.float32)
    y = torch.clamp(torch.clamp(y + 0.5, 0, 1) * fs, 0, fs - 1)
    return face, torch.stack([x, y], -1)


def official_cube2equi(strip: torch.Tensor, height: int, width: int, padding: str = "reflection") -> torch.Tensor:
    """The official ``cube2equi``: a face strip [C, F, 6F] (F R B L U D) -> equirect [C, H, W].

    Bilinear ``grid_sample`` with ``align_corners=True`` and ``padding`` (the official: reflection)
    at :func:`official_equirect_grid`; differentiable in ``strip``.
    """
    if padding not in STITCH_PADDINGS:
        raise ValueError(f"unknown stitch padding {padding!r}; use one of {STITCH_PADDINGS}")
    c, fs, sw = strip.shape
    _, pix = official_equirect_grid(height, width, fs)
    norm = torch.empty_like(pix)
    norm[..., 0] = torch.clamp(2 * pix[..., 0] / (sw - 1) - 1, -1, 1)
    norm[..., 1] = torch.clamp(2 * pix[..., 1] / (fs - 1) - 1, -1, 1)
    out = F.grid_sample(strip[None], norm[None].to(device=strip.device, dtype=strip.dtype), mode="bilinear",
                        align_corners=True, padding_mode=padding)
    return out[0]


def _official_face(density, values_pad, cam_index, axes, voxel_size, face_size, depths, chunk_rays, min_weight):
    """One official face: rows [F*F, K] (EA features) and opacity [F*F] (no grad)."""
    dev = values_pad.device
    fs = face_size
    ndc = torch.linspace(1.0 - 1.0 / fs, -1.0 + 1.0 / fs, fs, dtype=torch.float32, device=dev)
    fwd, cx, cy = (torch.tensor(a, dtype=torch.float32, device=dev) for a in axes)
    # pixel (row i, column j): NDC x = ndc[j] (+X = left), y = ndc[i] (+Y = up); direction with unit planar depth
    dirs = (ndc[None, :, None] * cx + ndc[:, None, None] * cy + fwd).reshape(-1, 3) / float(voxel_size)
    n = dirs.shape[0]
    k = values_pad.shape[0]
    shape = torch.tensor(density.shape[2:], dtype=torch.float32, device=dev)
    # grid_sample coordinates (z, y, x order of the [1, 1, X, Y, Z] density) with align_corners=True
    scale = 2.0 / (shape - 1).clamp(min=1)
    opacity = torch.zeros(n, device=dev)
    keep_ray, keep_pts, keep_w = [], [], []
    with torch.no_grad():
        for s in range(0, n, max(1, int(chunk_rays))):
            d = dirs[s : s + chunk_rays]
            idx = cam_index[None, None, :] + depths[None, :, None] * d[:, None, :]  # [R, S, 3] array indices
            coords = (idx * scale - 1).flip(-1)
            sigma = F.grid_sample(density, coords[None, None], mode="bilinear", padding_mode="zeros",
                                  align_corners=True)[0, 0, 0]  # [R, S]
            trans = torch.cumprod(torch.cat([torch.ones_like(sigma[:, :1]), (1.0 + 1e-10) - sigma[:, :-1]], 1), 1)
            w = sigma * trans
            opacity[s : s + chunk_rays] = 1.0 - torch.prod(1.0 - sigma, 1)
            r, j = (w.abs() > min_weight).nonzero(as_tuple=True)
            keep_ray.append(r + s)
            keep_pts.append(idx[r, j] + 1.0)  # +1: values_pad has one zero voxel on each side
            keep_w.append(w[r, j])
    ray = torch.cat(keep_ray)
    rows = _trilinear_rows(values_pad, torch.cat(keep_pts), ray, torch.cat(keep_w), n)  # [N, K]
    return rows.reshape(fs, fs, k), opacity.reshape(fs, fs)


def render_equirect_official(
    tsdf: torch.Tensor,
    values: torch.Tensor,
    *,
    origin,
    voxel_size: float,
    camera,
    height: int = 512,
    width: int = 1024,
    face_size: int = 256,
    n_samples: int = 100,
    near: float = 0.1,
    far: float = 7.0,
    padding: str = "reflection",
    orientation: str = "project",
    min_weight: float = 0.0,
    chunk_rays: int = 4096,
) -> ProjectionResult:
    """The official distillation's ``render()`` (distill.py) of ``values``, in this project's orientation.

    Exactly what the official code computes with pytorch3d, re-implemented on the volume's array
    indices (docs/projection.md derives each step):

    1. density ``sigma = (-3 tsdf + 3) / 6`` (= (1 - tsdf) / 2, *not* clamped: an official sdf
       below -1 gives sigma > 1), features = ``values``; both sampled trilinearly with **zero
       padding** outside the box of voxel centres (pytorch3d ``VolumeSampler``: ``grid_sample``,
       ``align_corners=True``, padding zeros);
    2. six 90 degree faces of ``face_size``^2 pixels (:data:`OFFICIAL_FACE_AXES`) from ``camera``;
       pixel (i, j) has NDC ``x = linspace(1 - 1/F, -1 + 1/F, F)[j]`` (left), ``y`` likewise for
       row i (up); ``n_samples`` points at **planar depths** ``linspace(near, far, n_samples)``
       along the face's axis (corner rays reach sqrt(3) x ``far``);
    3. emission-absorption (pytorch3d ``EmissionAbsorptionRaymarcher``):
       ``w_i = sigma_i prod_{j<i} (1 + 1e-10 - sigma_j)``, feature ``sum_i w_i values_i``;
    4. the U face transposed and flipped, the D face turned (``rot90(k=3)``), the faces laid out
       F R B L U D and stitched by :func:`official_cube2equi` (bilinear, ``padding``).

    The official panorama has its centre column along +a0 (array axis 0 = world +x here), a
    quarter to the right along **+a1** and its top along +a2. This project's convention has a
    quarter to the right along **-y**: ``orientation="project"`` (default) returns the official
    panorama with its columns reversed (column u -> W-1-u), which is this project's convention on
    the same ``linspace`` longitudes, and is what ``import-official`` stores
    (:mod:`panorooms3d.store.official`); ``"official"`` returns it as the official code has it.

    Args:
        tsdf: [X, Y, Z] tsdf (official: sdf128 as stored, unclipped).
        values: [K, X, Y, Z] float (the student's logits; may require grad).
        origin, voxel_size: the grid (voxel (i, j, k) centred at origin + (ijk + 0.5) voxel_size).
        camera: (3,) world position (the official: the centre of the volume, origin + shape * vs / 2).
        height, width: panorama size (width a multiple of 4).
        face_size, n_samples, near, far: the official 256, 100, 0.1, 7.0.
        padding: grid_sample padding of the stitch (the official: reflection).
        orientation: ``"project"`` or ``"official"`` (above).
        min_weight: samples with ``|w_i| <= min_weight`` are skipped in the feature sum (0 = only
            exact zeros, which changes nothing).
        chunk_rays: rays sampled together.

    Returns:
        :class:`ProjectionResult`: values [K, H, W]; hit [H, W] = stitched opacity
        ``1 - prod(1 - sigma)`` >= 0.5; depth [H, W] zeros (the official render has no depth).
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {orientation!r}; use one of {ORIENTATIONS}")
    tsdf = _check(tsdf, values)
    dev = values.device
    vs = float(voxel_size)
    density = (((-3.0) * tsdf.detach().to(torch.float32)) + 3.0) / 6.0
    density = density.to(dev)[None, None]  # [1, 1, X, Y, Z]
    values_pad = F.pad(values, (1, 1, 1, 1, 1, 1))  # zero padding: reads outside the grid give 0
    cam = _as_tensor3(camera, dev).to(torch.float64)
    origin_t = torch.as_tensor(np.asarray(origin, np.float64).reshape(3), device=dev)
    cam_index = ((cam - origin_t) / vs - 0.5).to(torch.float32)
    depths = torch.linspace(float(near), float(far), int(n_samples), dtype=torch.float32, device=dev)
    faces, opac = [], []
    for axes in OFFICIAL_FACE_AXES:
        rows, o = _official_face(density, values_pad, cam_index, axes, vs, int(face_size), depths, chunk_rays,
                                 float(min_weight))
        faces.append(rows)
        opac.append(o)
    # official: face U = transpose(0, 1).flip(1); face D = rot90(k=3); both are out[i, j] = in[F-1-j, i]
    for i in (4, 5):
        faces[i] = torch.rot90(faces[i], k=3, dims=(0, 1))
        opac[i] = torch.rot90(opac[i], k=3, dims=(0, 1))
    strip = torch.cat(faces, 1).permute(2, 0, 1)  # [K, F, 6F]
    strip_o = torch.cat(opac, 1)[None]
    out = official_cube2equi(strip, height, width, padding)
    opacity = official_cube2equi(strip_o, height, width, padding)[0]
    if orientation == "project":
        out, opacity = out.flip(-1), opacity.flip(-1)
    hit = opacity >= 0.5
    return ProjectionResult(out, hit, torch.zeros((height, width), dtype=torch.float32, device=dev))
