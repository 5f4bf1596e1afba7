"""Fusion against analytic truth: a box room (and a tilted plane) ray cast with Open3D, fused for real.

Truth is the box itself: its analytic signed distance, its faces' labels and colours, its walls'
coordinates (deliberately off the 4 cm grid). Nothing is compared with fusion's own output.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from raycast_frames import FACE_COLOURS, FACE_LABELS, box_room, box_sdf, raycast_frames, room_cameras

from panorooms3d.fusion.fidelity import measure_fidelity, zero_level_set
from panorooms3d.fusion.fuse_room import fuse_room
from panorooms3d.fusion.labels import LabelVoter, fill_from_nearest
from panorooms3d.fusion.tsdf import FusionError
from panorooms3d.geometry import look_at, voxel_centres
from panorooms3d.scene.model import Mesh, Room

VS = 0.04
TRUNC = 3.0
FACES = ("-x", "+x", "-y", "+y", "floor", "ceiling")


@pytest.fixture(scope="module")
def box():
    room = box_room(size=(3.0, 2.6, 2.5), lo=(0.013, -0.571, 0.0))
    frames = raycast_frames(room, room_cameras(room, 20, seed=1), 160, 120, hfov_deg=90)
    vol = fuse_room(frames, voxel_size=VS, truncation=TRUNC)
    lo, hi = room.bounds()
    return room, frames, vol, lo, hi


def _nearest_face(p, lo, hi):
    """Index into FACES of the box face nearest to each point, and the distance to the nearest edge."""
    d = np.stack([p[:, 0] - lo[0], hi[0] - p[:, 0], p[:, 1] - lo[1], hi[1] - p[:, 1], p[:, 2] - lo[2], hi[2] - p[:, 2]],
                 axis=1)
    a = np.abs(d)
    face = a.argmin(axis=1)
    # distance to an edge ~ the distance to the second-nearest face of another axis
    srt = np.sort(np.minimum(a[:, 0::2], a[:, 1::2]), axis=1)
    return face, srt[:, 1]


def _near_surface(vol):
    m = (vol.weight > 0) & (np.abs(vol.tsdf) < 1)
    ijk = np.argwhere(m)
    return m, vol.origin + (ijk + 0.5) * vol.voxel_size


def test_grid_convention(box):
    room, _, vol, lo, hi = box
    k = vol.origin / VS
    assert np.allclose(k, np.round(k), atol=1e-9), "origin is a multiple of the voxel size"
    assert vol.tsdf.dtype == np.float32 and vol.weight.dtype == np.float32
    assert vol.rgb.dtype == np.uint8 and vol.label.dtype == np.uint8 and vol.instance.dtype == np.uint16
    # tight box: the walls plus a margin of 2 voxels (and at most one more voxel of rounding / surface band)
    top = vol.origin + np.asarray(vol.shape) * VS
    assert (vol.origin <= lo - 2 * VS + 1e-9).all() and (vol.origin >= lo - 4 * VS - 1e-9).all()
    assert (top >= hi + 2 * VS - 1e-9).all() and (top <= hi + 4 * VS + 1e-9).all()
    assert vol.tsdf.min() >= -1 and vol.tsdf.max() <= 1 and np.isfinite(vol.tsdf).all()


def test_zero_crossing_at_the_walls(box):
    """The tsdf crosses zero at the wall coordinates: proves the voxel-centre convention (2 cm off if wrong)."""
    _, _, vol, lo, hi = box
    c = voxel_centres(vol.origin, VS, vol.shape)
    errs = {0: [], 1: []}
    ys = np.flatnonzero((c[0, :, 0, 1] > lo[1] + 0.4) & (c[0, :, 0, 1] < hi[1] - 0.4))
    zs = np.flatnonzero((c[0, 0, :, 2] > lo[2] + 0.4) & (c[0, 0, :, 2] < hi[2] - 0.4))
    xs = c[:, 0, 0, 0]
    for j in ys:
        for k in zs:
            t, w = vol.tsdf[:, j, k], vol.weight[:, j, k]
            for i in range(len(xs) - 1):
                if w[i] > 0 and w[i + 1] > 0 and np.sign(t[i]) != np.sign(t[i + 1]) and t[i] != t[i + 1]:
                    x0 = xs[i] + (xs[i + 1] - xs[i]) * t[i] / (t[i] - t[i + 1])
                    side = 0 if abs(x0 - lo[0]) < abs(x0 - hi[0]) else 1
                    errs[side].append(x0 - (lo[0] if side == 0 else hi[0]))
    assert len(errs[0]) > 100 and len(errs[1]) > 100
    for side in (0, 1):
        assert abs(np.median(errs[side])) < 0.003, (side, np.median(errs[side]))


def test_tsdf_against_analytic_box(box):
    _, _, vol, lo, hi = box
    c = voxel_centres(vol.origin, VS, vol.shape).reshape(-1, 3)
    sdf = box_sdf(c, lo, hi).reshape(vol.shape)
    obs = vol.weight > 0
    # sign: positive in front of the walls (inside the room), negative behind them
    clear = obs & (np.abs(sdf) > 0.25 * VS)
    assert np.mean(np.sign(vol.tsdf[clear]) == np.sign(sdf[clear])) > 0.999
    # free space further than the truncation from every wall is +1. Open3D's sdf is projective and
    # planar (depth - z): off the optical axis it is shorter than the Euclidean distance, by up to
    # cos(51 deg) = 0.62 in the corners of a 90 x 74 deg view, so the band reaches 0.12 / 0.62 m.
    free = obs & (sdf > TRUNC * VS / 0.62)
    assert free.sum() > 1000 and (vol.tsdf[free] == 1).all()
    # the fused zero level set lies on the analytic walls
    z = zero_level_set(vol)
    assert len(z) > 1000
    d = np.abs(box_sdf(z, lo, hi))
    assert np.median(d) < 0.01 and np.median(d) < 0.003, np.median(d)
    # where the projective sdf equals the Euclidean one (seen head-on is not guaranteed, so bound it)
    near = obs & (np.abs(sdf) < TRUNC * VS)
    assert np.median(np.abs(vol.tsdf[near] * TRUNC * VS) - np.abs(sdf[near])) > -0.01


def test_unobserved_voxels(box):
    _, frames, _, lo, hi = box
    vol = fuse_room(frames, margin=8)
    c = voxel_centres(vol.origin, VS, vol.shape).reshape(-1, 3)
    sdf = box_sdf(c, lo, hi).reshape(vol.shape)
    behind = sdf < -TRUNC * VS / 0.62  # behind the walls beyond the (projective) band: never integrated
    assert behind.sum() > 1000
    assert (vol.weight[behind] == 0).all() and (vol.tsdf[behind] == 1).all()
    unobs = vol.weight == 0
    assert (vol.tsdf[unobs] == 1).all() and (vol.label[unobs] == 0).all() and (vol.rgb[unobs] == 0).all()
    assert (vol.instance[unobs] == 0).all()
    free = (vol.weight > 0) & (vol.tsdf >= 1)
    assert (vol.label[free] == 0).all() and (vol.rgb[free] == 0).all()


def test_labels_instances_and_colours_match_the_faces(box):
    room, _, vol, lo, hi = box
    m, centres = _near_surface(vol)
    face, edge = _nearest_face(centres, lo, hi)
    away = edge > 0.2
    assert away.sum() > 10000
    want_label = np.array([FACE_LABELS[f] for f in FACES], np.uint8)[face]
    inst_of = {mesh.label: mesh.instance for mesh in room.meshes}
    want_inst = np.array([inst_of[FACE_LABELS[f]] for f in FACES], np.uint16)[face]
    got_label, got_inst, got_rgb = vol.label[m], vol.instance[m], vol.rgb[m].astype(int)
    assert np.mean(got_label[away] == want_label[away]) >= 0.99
    assert np.mean(got_inst[away] == want_inst[away]) >= 0.99
    want_rgb = np.round(np.array([FACE_COLOURS[f] for f in FACES]) * 255).astype(int)[face]
    assert np.mean(np.abs(got_rgb[away] - want_rgb[away]).max(axis=1) <= 1) >= 0.99
    # every near-surface voxel got a label (voted or filled), none is void
    assert (got_label > 0).all()


def test_fidelity_on_the_box(box):
    room, _, vol, _, _ = box
    v, f, fl, fi = room.triangles()
    fid = measure_fidelity(vol, v, f, fl, fi)
    assert fid["surface_distance_mean_m"] <= 0.01
    assert fid["surface_distance_median_m"] <= 0.003
    # edges of a small box are ambiguous within the band; away from them the agreement is >= 99 % (above)
    assert fid["label_agreement"] >= 0.95 and fid["instance_agreement"] >= 0.95
    assert fid["mesh_area_m2"] == pytest.approx(2 * (3.0 * 2.6 + 3.0 * 2.5 + 2.6 * 2.5))
    assert 0.7 < fid["observed_surface_share"] <= 1.0
    # one frame sees much less of the room: the share must drop accordingly
    one = fuse_room(dataclasses.replace(box[1], **{k: getattr(box[1], k)[:1] for k in
                                                 ("rgb", "depth", "label", "instance", "cam_to_world")}))
    fid1 = measure_fidelity(one, v, f, fl, fi)
    assert fid1["observed_surface_share"] < 0.5 * fid["observed_surface_share"]


def test_pixel_centre_convention_on_a_tilted_plane():
    """A plane seen at 60 deg with huge pixels: the zero level set is unbiased only if Open3D reads the
    pixel whose *centre* is nearest (reading the truncated corner pixel biases it by ~4 cm here)."""
    nrm = np.array([-np.cos(np.radians(60)), -np.sin(np.radians(60)), 0.0])  # towards the camera
    p0 = np.array([2.0, 0.0, 1.0])
    a = np.cross(nrm, [0, 0, 1])
    a /= np.linalg.norm(a)
    b = np.cross(nrm, a)
    quad = np.array([p0 + 3 * (-a - b), p0 + 3 * (a - b), p0 + 3 * (a + b), p0 + 3 * (-a + b)])
    room = Room("h", "plane", "x", [Mesh("plane", quad, np.array([[0, 1, 2], [0, 2, 3]]), 51, 1)])
    for eye, target in [((0, 0, 1.0), (2, 0, 1.0)), ((0.1, 0.3, 1.1), (2, 0.4, 0.9))]:
        frames = raycast_frames(room, look_at(eye, target)[None], 32, 24, hfov_deg=90)
        vol = fuse_room(frames, voxel_size=0.02)
        z = zero_level_set(vol)
        assert len(z) > 100
        bias = np.mean((z - p0) @ nrm)
        assert abs(bias) < 0.008, bias


def test_invalid_depth_is_ignored_and_counted(box):
    room, frames, ref, lo, hi = box
    depth = frames.depth.copy()
    rng = np.random.default_rng(0)
    nan_mask = rng.random(depth.shape) < 0.05
    neg_mask = (rng.random(depth.shape) < 0.05) & ~nan_mask
    depth[nan_mask] = np.nan
    depth[neg_mask] = -1.0
    depth[3, :5, :5] = np.inf
    n_bad = int(nan_mask.sum() + neg_mask.sum() + (~(nan_mask | neg_mask))[3, :5, :5].sum())
    vol = fuse_room(dataclasses.replace(frames, depth=depth))
    assert vol.attrs["fusion"]["invalid_depth_pixels"] == n_bad
    assert vol.attrs["fusion"]["frames_with_invalid_depth"] == len(depth)
    assert np.isfinite(vol.tsdf).all() and np.isfinite(vol.weight).all()
    z = zero_level_set(vol)
    assert np.median(np.abs(box_sdf(z, lo, hi))) < 0.003


def test_empty_room_is_a_clear_error(box):
    _, frames, _, _, _ = box
    for bad in (np.zeros_like(frames.depth), np.full_like(frames.depth, np.nan), -np.ones_like(frames.depth)):
        with pytest.raises(FusionError, match="boxhouse/Box-1.*no valid depth"):
            fuse_room(dataclasses.replace(frames, depth=bad))


def test_malformed_frames_name_the_room(box):
    _, frames, _, _, _ = box
    with pytest.raises(FusionError, match="boxhouse/Box-1: label has shape"):
        fuse_room(dataclasses.replace(frames, label=frames.label[:, :10]))
    c2w = frames.cam_to_world.copy()
    c2w[2, 0, 0] = np.nan
    with pytest.raises(FusionError, match=r"boxhouse/Box-1: cam_to_world of frame\(s\) \[2\]"):
        fuse_room(dataclasses.replace(frames, cam_to_world=c2w))


def test_given_bounds(box):
    room, frames, _, lo, hi = box
    vol = fuse_room(frames, bounds=room, margin=1)
    assert np.allclose(vol.origin, np.floor((lo - VS) / VS + 1e-9) * VS)
    assert vol.attrs["fusion"]["bounds"] == "given"
    top = vol.origin + np.asarray(vol.shape) * VS
    assert (top >= hi + VS - 1e-9).all() and (top < hi + 2 * VS).all()


def test_voting_ties_and_fill():
    # two voxels on a camera's axis; the pixel they fall on votes label 7 then label 5 with equal weight
    centres = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 2.04]])
    K = np.array([[10.0, 0, 1.0], [0, 10.0, 1.0], [0, 0, 1]])
    voter = LabelVoter(centres, band=0.1, power=0)
    depth = np.full((3, 3), 2.02, np.float32)
    for lab in (7, 5):
        voter.add_frame(depth, np.full((3, 3), lab, np.uint8), np.full((3, 3), lab * 10, np.uint16), K, np.eye(4))
    label, inst, votes = voter.result()
    assert label.tolist() == [5, 5] and inst.tolist() == [50, 50] and votes.tolist() == [2, 2]
    voter.add_frame(depth, np.full((3, 3), 7, np.uint8), np.full((3, 3), 70, np.uint16), K, np.eye(4))
    assert voter.result()[0].tolist() == [7, 7]
    # a voxel behind the band gets no vote
    far = LabelVoter(np.array([[0.0, 0.0, 3.0]]), band=0.1)
    assert far.add_frame(depth, np.ones((3, 3), np.uint8), np.ones((3, 3), np.uint16), K, np.eye(4)) == 0
    # fill from the nearest voted voxel, only where wanted
    vals = np.zeros((5, 1, 1), np.uint8)
    vals[0], vals[4] = 3, 9
    have = vals > 0
    want = np.ones_like(have)
    want[2] = False
    out, n = fill_from_nearest(vals, have, want)
    assert n == 2 and out[:, 0, 0].tolist() == [3, 3, 0, 9, 9]


def test_observed_share_counts_points_within_one_voxel():
    from panorooms3d.fusion.fidelity import _within_one_voxel

    mask = np.zeros((5, 5, 5), bool)
    mask[2, 2, 2] = True
    origin = np.array([1.0, 2.0, 3.0])
    centre = origin + 2.5 * VS
    d = np.array([[0.99, 0, 0], [1.01, 0, 0], [0, -0.7, 0.7], [0, -0.72, 0.72], [0.5, 0.5, 0.5]]) * VS
    assert _within_one_voxel(centre + d, mask, origin, VS).tolist() == [True, False, True, False, True]
