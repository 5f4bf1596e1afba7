"""The differentiable panoramic projection against analytic box rooms and dense references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.spatial import cKDTree

from panorooms3d.geometry import equirect_directions, grid_for_bounds, voxel_centres
from panorooms3d.panorama.projection import (
    render_equirect,
    render_equirect_emission,
    render_equirect_faces,
    render_rays,
    trilinear_sample,
)

VS = 0.05
SIZE = (3.2, 2.8, 2.4)
H, W = 64, 128
EDGE = 3 * VS  # pixels whose analytic hit point is closer than this to another face are "edge" pixels
#: face order of the labels: x = 0 wall, x = X wall, y = 0 wall, y = Y wall, floor, ceiling
MINUS_X, PLUS_X, MINUS_Y, PLUS_Y, FLOOR, CEILING = range(6)


def box_room(size=SIZE, vs=VS, margin=0.2, trunc_vox=3):
    """Analytic box room [0, size]: tsdf (positive inside, unobserved = 1 beyond the truncation
    behind the walls), a one-hot [6, X, Y, Z] label volume on the near-surface voxels (label = the
    nearest face plane), origin, box corners."""
    lo, hi = np.zeros(3), np.asarray(size, dtype=np.float64)
    origin, shape = grid_for_bounds(lo, hi, vs, margin)
    c = voxel_centres(origin, vs, shape)
    dpl = np.concatenate([np.stack([c[..., a] - lo[a], hi[a] - c[..., a]], -1) for a in range(3)], -1)
    inside = (dpl > 0).all(-1)
    outside_dist = np.linalg.norm(np.maximum(np.maximum(lo - c, c - hi), 0), axis=-1)
    sd = np.where(inside, dpl.min(-1), -outside_dist)
    tr = trunc_vox * vs
    tsdf = np.clip(sd / tr, -1, 1)
    tsdf[sd < -tr] = 1.0
    onehot = np.eye(6)[np.abs(dpl).argmin(-1)] * (np.abs(sd) <= tr)[..., None]
    return (
        torch.tensor(tsdf, dtype=torch.float32),
        torch.tensor(np.moveaxis(onehot, -1, 0), dtype=torch.float32),
        origin,
        lo,
        hi,
    )


def analytic_box_hits(camera, dirs, lo, hi):
    """Ray-box exit of rays from inside the box: face label, range (metres) and the hit point's
    distance to the nearest other face (metres), each [*S]."""
    d = dirs.reshape(-1, 3)
    cam = np.asarray(camera, dtype=np.float64)
    t = np.full((d.shape[0], 6), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for a in range(3):
            t[:, 2 * a] = np.where(d[:, a] < 0, (lo[a] - cam[a]) / d[:, a], np.inf)
            t[:, 2 * a + 1] = np.where(d[:, a] > 0, (hi[a] - cam[a]) / d[:, a], np.inf)
    face, dist = t.argmin(1), t.min(1)
    p = cam + dist[:, None] * d
    dpl = np.concatenate([np.stack([p[:, a] - lo[a], hi[a] - p[:, a]], -1) for a in range(3)], -1)
    dpl[np.arange(d.shape[0]), face] = np.inf
    s = dirs.shape[:-1]
    return face.reshape(s), dist.reshape(s), dpl.min(1).reshape(s)


@pytest.fixture(scope="module")
def room():
    return box_room()


def _check_against_analytic(res, camera, lo, hi, min_agree=0.98):
    face, dist, edge = analytic_box_hits(camera, equirect_directions(H, W), lo, hi)
    away = edge > EDGE
    assert away.mean() > 0.7
    assert res.hit.all()
    label = res.values.detach().argmax(0).numpy()
    assert (label[away] == face[away]).mean() >= min_agree
    depth = res.depth.numpy()
    assert np.abs(depth[away] - dist[away]).max() < 0.02
    return face, dist, away


def test_trilinear_sample_matches_grid_sample_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    vals = torch.randn(3, 5, 4, 6, dtype=torch.float64, generator=g)
    pts = torch.rand(50, 3, dtype=torch.float64, generator=g) * torch.tensor([5.0, 4.0, 6.0]) - 0.5  # some outside
    got = trilinear_sample(vals, pts)
    # grid_sample with align_corners=True: -1/+1 are the first/last voxel centres; (z, y, x) order
    grid = (pts / torch.tensor([4.0, 3.0, 5.0]) * 2 - 1).flip(1).reshape(1, 1, 1, 50, 3)
    ref = F.grid_sample(vals[None], grid, align_corners=True, padding_mode="border").reshape(3, 50)
    assert torch.allclose(got, ref, atol=1e-12)
    # exact at voxel centres
    assert torch.allclose(
        trilinear_sample(vals, torch.tensor([[2.0, 1.0, 3.0]], dtype=torch.float64))[:, 0], vals[:, 2, 1, 3]
    )
    v = vals.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: trilinear_sample(x, pts[:7]), (v,))


def test_box_room_labels_and_depth_centred_camera(room):
    tsdf, onehot, origin, lo, hi = room
    cam = (lo + hi) / 2
    res = render_equirect(tsdf, onehot, origin=origin, voxel_size=VS, camera=cam, height=H, width=W)
    assert res.values.shape == (6, H, W) and res.hit.shape == (H, W) and res.depth.shape == (H, W)
    assert res.hit.dtype == torch.bool and res.depth.dtype == torch.float32
    _check_against_analytic(res, cam, lo, hi)
    # interpolated one-hot values sum to 1 at every hit (all 8 corners are near-surface voxels)
    assert torch.allclose(res.values.sum(0), torch.ones(H, W), atol=1e-5)


def test_equirect_convention_through_the_projection(room):
    tsdf, onehot, origin, lo, hi = room
    cam = (lo + hi) / 2
    res = render_equirect(tsdf, onehot, origin=origin, voxel_size=VS, camera=cam, height=H, width=W)
    label = res.values.argmax(0)
    assert label[H // 2, W // 2] == PLUS_X  # centre column looks along +x
    assert label[H // 2, W // 2 + W // 4] == MINUS_Y  # a quarter to the right: -y
    assert label[H // 2, W // 2 - W // 4] == PLUS_Y  # a quarter to the left: +y
    assert label[H // 2, 0] == MINUS_X and label[H // 2, W - 1] == MINUS_X  # the seam looks along -x
    assert (label[0] == CEILING).all() and (label[-1] == FLOOR).all()  # top row up, bottom row down
    # range along the centre pixel's ray to the x = 3.2 wall
    d = equirect_directions(H, W)[H // 2, W // 2]
    assert res.depth[H // 2, W // 2].item() == pytest.approx((hi[0] - cam[0]) / d[0], abs=1e-3)


def test_off_centre_camera(room):
    tsdf, onehot, origin, lo, hi = room
    cam = np.array([0.7, 2.15, 1.55])
    res = render_equirect(tsdf, onehot, origin=origin, voxel_size=VS, camera=cam, height=H, width=W)
    _check_against_analytic(res, cam, lo, hi)
    # chunking does not change the result
    small = render_equirect(tsdf, onehot, origin=origin, voxel_size=VS, camera=cam, height=H, width=W, chunk_rays=777)
    assert torch.equal(small.hit, res.hit) and torch.equal(small.depth, res.depth)
    assert torch.equal(small.values, res.values)


def test_rays_that_leave_the_grid_or_never_cross_miss(room):
    tsdf, onehot, origin, lo, hi = room
    cam = (lo + hi) / 2
    open_top = tsdf.clone()
    c = voxel_centres(origin, VS, tsdf.shape)
    open_top[torch.as_tensor(c[..., 2] > hi[2] - 0.5)] = 1.0  # no ceiling, no upper walls: free
    res = render_equirect(open_top, onehot, origin=origin, voxel_size=VS, camera=cam, height=H, width=W)
    face, dist, _ = analytic_box_hits(cam, equirect_directions(H, W), lo, hi)
    pt_z = cam[2] + dist * equirect_directions(H, W)[..., 2]
    gone = pt_z > hi[2] - 0.5 + 2 * VS  # analytic hit on the removed part
    kept = pt_z < hi[2] - 0.5 - 2 * VS
    assert gone.sum() > 100 and kept.sum() > 100
    assert not res.hit.numpy()[gone].any()
    assert torch.count_nonzero(res.values[:, torch.as_tensor(gone)]).item() == 0
    assert (res.depth.numpy()[gone] == 0).all()
    assert res.hit.numpy()[kept].all()
    # max_distance cuts rays short (a crossing within one step of the limit may go either way)
    near = render_equirect(tsdf, onehot, origin=origin, voxel_size=VS, camera=cam, height=H, width=W, max_distance=1.3)
    clear = np.abs(dist - 1.3) > VS / 2
    assert clear.mean() > 0.9 and 0.1 < (dist < 1.3).mean() < 0.9
    assert np.array_equal(near.hit.numpy()[clear], (dist < 1.3)[clear])
    assert near.depth.max() <= 1.3


def _dense_march(tsdf, origin, vs, cam, dirs, step, t_max=3.5):
    """Reference: first crossing of a plain dense march (scipy trilinear), samples every ``step``."""
    ts = np.arange(0, t_max, step)
    pts = (cam + ts[None, :, None] * dirs[:, None, :] - origin) / vs - 0.5  # [R, T, 3] voxel index
    inside = ((pts >= 0) & (pts <= np.array(tsdf.shape) - 1)).all(-1)
    s = ndimage.map_coordinates(tsdf.astype(np.float64), pts.reshape(-1, 3).T, order=1).reshape(pts.shape[:2])
    cross = (s[:, :-1] > 0) & (s[:, 1:] <= 0) & inside[:, :-1] & inside[:, 1:]
    hit = cross.any(1)
    r = np.arange(dirs.shape[0])
    first = cross.argmax(1)
    sa, sb = s[r, first], s[r, first + 1]
    t = ts[first] + step * np.where(hit, sa / np.where(hit, sa - sb, 1.0), 0.0)
    return hit, t


def test_march_matches_a_dense_reference_march():
    # a smooth random tsdf with blobs: the empty-space skipping must find the same first crossing
    # as a plain dense march at the same step (half a voxel), and nearly that of a 10x finer one
    rng = np.random.default_rng(0)
    shape = (40, 36, 30)
    field = ndimage.gaussian_filter(rng.normal(size=shape), 2.5)
    tsdf = np.clip(field / field.std() * 0.8 + 0.9, -1, 1).astype(np.float32)
    tsdf[16:24, 14:22, 11:19] = 1.0  # a free pocket around the camera
    origin = np.array([-1.0, 0.4, 0.2])
    vs = 0.05
    cam = origin + (np.array([20.0, 18.0, 15.0]) + 0.5) * vs
    dirs = rng.normal(size=(600, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    vals = torch.zeros(1, *shape)
    res = render_rays(torch.tensor(tsdf), vals, origin=origin, voxel_size=vs, camera=cam, directions=dirs)
    hit, depth = res.hit.numpy(), res.depth.numpy()
    ref_hit, ref_t = _dense_march(tsdf, origin, vs, cam, dirs, vs / 2)
    assert 0.3 < ref_hit.mean() < 1.0
    assert (hit == ref_hit).mean() >= 0.99
    both = hit & ref_hit
    assert np.quantile(np.abs(depth[both] - ref_t[both]), 0.98) < 0.01 * vs
    # a 10x finer march also sees crossings thinner than half a voxel; the median still agrees
    fine_hit, fine_t = _dense_march(tsdf, origin, vs, cam, dirs, vs / 20)
    assert (hit == fine_hit).mean() >= 0.97
    both = hit & fine_hit
    assert np.median(np.abs(depth[both] - fine_t[both])) < 0.02 * vs


def test_gradient_only_near_hit_points(room):
    tsdf, onehot, origin, lo, hi = room
    cam = np.array([1.9, 1.2, 1.1])
    vals = onehot.clone().requires_grad_()
    res = render_equirect(tsdf, vals, origin=origin, voxel_size=VS, camera=cam, height=32, width=64)
    res.values.sum().backward()
    grad = vals.grad
    n_hit = int(res.hit.sum())
    # trilinear weights sum to one: each channel receives exactly one unit per hit pixel
    assert torch.allclose(grad.sum(dim=(1, 2, 3)), torch.full((6,), float(n_hit)), rtol=1e-5)
    assert torch.equal(grad[0], grad[3])  # the same weights for every channel
    d = equirect_directions(32, 64)[res.hit.numpy()]
    hits = cam + res.depth.numpy()[res.hit.numpy()][:, None] * d
    centres = voxel_centres(origin, VS, tsdf.shape)
    nz = (grad[0] != 0).numpy()
    dist, _ = cKDTree(hits).query(centres[nz])
    assert dist.max() <= np.sqrt(3) * VS + 1e-4  # only the 8 voxels around some hit point
    # and every hit point's own voxel neighbourhood does receive gradient
    _, idx = cKDTree(centres.reshape(-1, 3)).query(hits)
    assert nz.reshape(-1)[idx].mean() > 0.95
    assert nz.sum() < 0.2 * nz.size  # far from everything else: zero


def test_faces_variant_agrees_with_direct(room):
    tsdf, onehot, origin, lo, hi = room
    cam = np.array([1.5, 1.3, 1.25])
    direct = render_equirect(tsdf, onehot, origin=origin, voxel_size=VS, camera=cam, height=H, width=W)
    faces = render_equirect_faces(tsdf, onehot, origin=origin, voxel_size=VS, camera=cam, height=H, width=W)
    assert faces.values.shape == (6, H, W)
    face, dist, away = analytic_box_hits(cam, equirect_directions(H, W), lo, hi)
    away = away > EDGE
    a = direct.values.argmax(0).numpy()
    b = faces.values.argmax(0).numpy()
    assert (a[away] == b[away]).mean() >= 0.98
    assert (b[away] == face[away]).mean() >= 0.98
    assert faces.hit.all()
    # depth of the nearest face pixel: within a face pixel's footprint (90 deg / 32 px at <= 3 m)
    assert np.abs(faces.depth.numpy()[away] - dist[away]).max() < 0.15
    # bilinear stitch of probabilities, differentiable
    probs = onehot.clone().requires_grad_()
    bil = render_equirect_faces(
        tsdf, probs, origin=origin, voxel_size=VS, camera=cam, height=H, width=W, mode="bilinear"
    )
    assert (bil.values.argmax(0).numpy()[away] == face[away]).mean() >= 0.98
    assert torch.allclose(bil.values.sum(0), torch.ones(H, W), atol=1e-4)
    bil.values.sum().backward()
    assert probs.grad.abs().sum() > 0


def test_emission_variant_runs_and_is_close(room):
    tsdf, onehot, origin, lo, hi = room
    cam = (lo + hi) / 2 + np.array([0.2, -0.1, 0.05])
    vals = onehot.clone().requires_grad_()
    res = render_equirect_emission(tsdf, vals, origin=origin, voxel_size=VS, camera=cam, height=H, width=W)
    face, dist, away = analytic_box_hits(cam, equirect_directions(H, W), lo, hi)
    away = away > EDGE
    assert res.hit.float().mean() > 0.98
    assert (res.values.detach().argmax(0).numpy()[away] == face[away]).mean() >= 0.95
    # expected range: within a sample spacing (7 cm) and the truncation band of the surface
    assert np.abs(res.depth.numpy()[away] - dist[away]).max() < 0.15
    # composited one-hot values sum to the opacity, <= 1
    assert res.values.detach().sum(0).max() <= 1 + 1e-5
    res.values.sum().backward()
    assert vals.grad.abs().sum() > 0
    # faces + stitch option runs too
    fr = render_equirect_emission(
        tsdf, onehot, origin=origin, voxel_size=VS, camera=cam, height=H, width=W, face_size=32
    )
    assert (fr.values.argmax(0).numpy()[away] == face[away]).mean() >= 0.95


def test_lazy_reexport():
    import panorooms3d.panorama as pano

    assert pano.render_equirect is render_equirect
    with pytest.raises(AttributeError):
        _ = pano.no_such_name


def test_emission_matches_the_documented_formula():
    # an independent numpy/scipy implementation of the documented compositing:
    # sigma = (1 - tsdf)/2, w_i = sigma_i prod_{j<i} (1 - sigma_j), out = sum w_i v(p_i)
    rng = np.random.default_rng(5)
    shape = (30, 26, 22)
    field = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    tsdf = np.clip(field / field.std() * 1.5 + 1.2, -1, 1).astype(np.float32)  # many voxels exactly 1
    assert 0.2 < (tsdf == 1).mean() < 0.9
    vals = rng.normal(size=(2, *shape)).astype(np.float32)
    origin, vs = np.array([0.3, -0.2, 0.1]), 0.1
    cam = origin + np.array([14.6, 12.2, 10.9]) * vs
    h, w = 8, 16
    res = render_equirect_emission(
        torch.tensor(tsdf),
        torch.tensor(vals),
        origin=origin,
        voxel_size=vs,
        camera=cam,
        height=h,
        width=w,
        n_samples=60,
        near=0.1,
        far=3.0,
        min_weight=0.0,
    )
    d = equirect_directions(h, w).reshape(-1, 3)
    ts = np.linspace(0.1, 3.0, 60)
    pts = (cam + ts[None, :, None] * d[:, None, :] - origin) / vs - 0.5
    inside = ((pts >= 0) & (pts <= np.array(shape) - 1)).all(-1)
    q = pts.reshape(-1, 3).T
    sdf = np.where(inside, ndimage.map_coordinates(tsdf.astype(np.float64), q, order=1).reshape(inside.shape), 1.0)
    sigma = np.clip((1 - sdf) / 2, 0, 1)
    trans = np.cumprod(np.concatenate([np.ones((len(d), 1)), 1 - sigma[:, :-1]], 1), 1)
    wt = sigma * trans
    v = np.stack([ndimage.map_coordinates(vals[c].astype(np.float64), q, order=1, mode="nearest") for c in range(2)])
    want = (wt[None] * v.reshape(2, *wt.shape)).sum(-1).reshape(2, h, w)
    opacity = wt.sum(1).reshape(h, w)
    assert 0.05 < (opacity > 0.5).mean() < 1.0
    assert np.allclose(res.values.numpy(), want, atol=1e-4)
    clear = np.abs(opacity - 0.5) > 1e-4  # float32 vs float64 may round a tie either way
    assert np.array_equal(res.hit.numpy()[clear], (opacity >= 0.5)[clear])
    hit = opacity >= 0.5
    want_depth = ((wt * ts).sum(1).reshape(h, w) / np.maximum(opacity, 1e-12))[hit]
    assert np.allclose(res.depth.numpy()[hit], want_depth, atol=1e-4)


def test_stitch_maps_each_direction_to_its_face_pixel():
    # faces whose values are their own pixel-ray directions: the stitched panorama must give back
    # the equirect directions (nearest: within half a face pixel; bilinear: closer still)
    from panorooms3d.geometry import SKYBOX_FACES, SKYBOX_ROTATIONS, intrinsics, pixel_rays
    from panorooms3d.panorama.projection import ProjectionResult, stitch_equirect

    fs = 24
    cam_rays = pixel_rays(intrinsics(fs, fs, 90.0), fs, fs)
    faces = {}
    for f in SKYBOX_FACES:
        d = cam_rays @ SKYBOX_ROTATIONS[f].T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        faces[f] = ProjectionResult(
            torch.tensor(np.moveaxis(d, -1, 0)), torch.ones(fs, fs, dtype=torch.bool), torch.ones(fs, fs)
        )
    want = equirect_directions(32, 64)
    half_pixel = np.radians(90.0 / fs) * 0.75  # half a pixel diagonal, at the face centre's scale
    err = {}
    for mode in ("nearest", "bilinear"):
        got = np.moveaxis(stitch_equirect(faces, 32, 64, mode).values.numpy(), 0, -1)
        got /= np.linalg.norm(got, axis=-1, keepdims=True)
        err[mode] = np.arccos(np.clip((got * want).sum(-1), -1, 1))
        assert err[mode].max() < half_pixel, (mode, err[mode].max())
    # away from face borders (clamped there) bilinear is far closer than nearest
    assert np.median(err["bilinear"]) < 0.2 * np.median(err["nearest"])


def test_distillation_through_the_projection_moves_the_volume_towards_the_teacher(room):
    from panorooms3d.nn.losses import distillation_loss

    tsdf, onehot, origin, lo, hi = room
    cam = (lo + hi) / 2
    h, w = 16, 32
    face, _, _ = analytic_box_hits(cam, equirect_directions(h, w), lo, hi)
    teacher = torch.tensor(np.moveaxis(np.eye(6)[face], -1, 0) * 40.0, dtype=torch.float32)  # sharp teacher
    logits = torch.zeros(6, *tsdf.shape, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=3000.0)  # the loss is a mean over pixels: small per-voxel gradients
    losses = []
    for _ in range(5):
        proj = render_equirect(tsdf, logits, origin=origin, voxel_size=VS, camera=cam, height=h, width=w)
        loss = distillation_loss(proj.values, teacher, proj.hit, tau=20.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # the rendered student now agrees with the teacher's labels
    proj = render_equirect(tsdf, logits.detach(), origin=origin, voxel_size=VS, camera=cam, height=h, width=w)
    assert (proj.values.argmax(0).numpy() == face).mean() > 0.9
