"""Coverage-driven views (render/coverage.py) against analytic truth on box rooms.

The room: a closed 4 x 3 x 2.8 m box with a 0.6 x 1.2 x 1.0 m cabinet standing in the corner at the
origin. What no point inside the room can see is known exactly: the floor under the cabinet,
the walls behind it, and the cabinet's bottom and its two faces against the walls.
"""

from __future__ import annotations

import numpy as np
import pytest
from raycast_frames import box_room, raycast_frames

from panorooms3d.fusion.fuse_room import fuse_room
from panorooms3d.geometry import intrinsics
from panorooms3d.render.cameras import house_index, sample_cameras
from panorooms3d.render.coverage import (
    free_space_probes,
    greedy_cover,
    interior_visible_surface,
    observed_share,
    select_views,
    view_visibility,
)
from panorooms3d.render.settings import RenderSettings
from panorooms3d.scene.model import House

SIZE = (4.0, 3.0, 2.8)
CABINET = ((0.0, 0.0, 0.0), (0.6, 1.2, 1.0))


def _house(furnished: bool = True) -> House:
    room = box_room(size=SIZE, lo=(0.0, 0.0, 0.0), furniture=[(*CABINET, 17)] if furnished else [],
                    uid="boxhouse/Box-1")
    return House(uid="boxhouse", rooms=[room])


def _hidden(points: np.ndarray) -> np.ndarray:
    """Analytic: which points of the furnished box room no interior point sees."""
    x, y, z = points.T
    (cx, cy, cz) = CABINET[1]
    e = 1e-6
    return ((z < e) & (x < cx) & (y < cy)) | ((x < e) & (y < cy) & (z < cz)) | ((y < e) & (x < cx) & (z < cz))


def _analytic_share() -> float:
    w, d, h = SIZE
    cx, cy, cz = CABINET[1]
    total = 2 * (w * d + w * h + d * h) + 2 * (cx * cy + cx * cz + cy * cz)
    hidden = 2 * cx * cy + 2 * cy * cz + 2 * cx * cz  # floor + bottom, wall x=0 + back, wall y=0 + side
    return 1.0 - hidden / total


@pytest.fixture(scope="module")
def furnished():
    house = _house()
    index = house_index(house)
    return house, index, interior_visible_surface(house, "Box-1", index, seed=0)


def test_interior_visible_surface_matches_the_analytic_truth(furnished):
    house, index, s = furnished
    truth = ~_hidden(s.points)
    assert np.mean(s.visible == truth) >= 0.995  # per point (a strip ~1 cm wide along the cabinet's edges may differ)
    assert s.visible_share == pytest.approx(_analytic_share(), abs=0.01)
    assert s.area_m2 == pytest.approx(2 * (12 + 11.2 + 8.4) + 2 * (0.72 + 0.6 + 1.2), rel=1e-9)


def test_an_empty_box_is_all_interior_visible():
    house = _house(furnished=False)
    s = interior_visible_surface(house, "Box-1", samples_per_m2=20, seed=3)
    assert s.visible.all()


def test_probes_stay_in_the_rooms_open_air(furnished):
    house, index, s = furnished
    p = s.probes
    lo, hi = CABINET
    inside_cabinet = np.all((p > np.asarray(lo)) & (p < np.asarray(hi)), axis=1)
    assert len(p) > 500 and not inside_cabinet.any()
    assert (p.min(axis=0) >= -1e-9).all() and (p.max(axis=0) <= np.asarray(SIZE)).all()
    # jittered 25 cm grid: cells of the open air are all present (the room minus the cabinet and the 10 cm rim)
    assert len(free_space_probes(house, "Box-1", index, spacing=0.5)) < len(p)


def test_greedy_cover_takes_the_largest_gain_and_stops_at_the_goal():
    vis = np.zeros((4, 10), bool)
    vis[0, :6] = True  # 6 new
    vis[1, 5:9] = True  # 3 new after row 0
    vis[2, :3] = True  # nothing new after row 0
    vis[3, 9] = True
    picked, curve, goal = greedy_cover(vis, np.ones(10, bool), target=0.9, max_views=10)
    assert picked == [0, 1] and curve == pytest.approx([0.6, 0.9]) and goal == 0.9
    # the cap
    picked, _, _ = greedy_cover(vis, np.ones(10, bool), target=1.0, max_views=1)
    assert picked == [0]
    # unreachable columns: the goal becomes target x reachable share
    vis[3, 9] = False
    picked, curve, goal = greedy_cover(vis, np.ones(10, bool), target=1.0, max_views=10)
    assert goal == pytest.approx(0.9) and picked == [0, 1] and curve[-1] == pytest.approx(0.9)


def test_coverage_views_reach_the_target_with_few_frames_and_the_fused_volume_agrees(furnished):
    house, index, s = furnished
    st = RenderSettings(view_selection="coverage", width=96, height=72, seed=0)
    poses, info = select_views(house, "Box-1", st, np.random.default_rng(5), index=index, samples=s)
    assert info["coverage"] >= 0.99 and len(poses) <= 40  # the goal on a plain room
    assert info["reachable"] >= 0.99 and not info["capped"]
    # the hand-held rules, checked against the box's own geometry
    eye = poses[:, :3, 3]
    assert ((eye[:, 2] >= 1.4 - 1e-9) & (eye[:, 2] <= 1.8 + 1e-9)).all()
    d_walls = np.minimum(eye, np.asarray(SIZE) - eye).min(axis=1)
    d_cab = np.linalg.norm(np.maximum(np.maximum(np.asarray(CABINET[0]) - eye, eye - np.asarray(CABINET[1])), 0), axis=1)
    assert (np.minimum(d_walls, d_cab) >= 0.3 - 1e-6).all()
    fwd = poses[:, :3, 2]
    pitch_down = np.degrees(np.arcsin(-fwd[:, 2]))
    assert ((pitch_down >= -40 - 1e-6) & (pitch_down <= 30 + 1e-6)).all()
    assert np.abs(poses[:, 2, 0]).max() < 1e-9  # camera x axis horizontal: no roll
    # independent check: exact frames of these views, fused; surface samples drawn with another seed
    ev = interior_visible_surface(house, "Box-1", index, seed=11)
    frames = raycast_frames(house.rooms[0], poses, 160, 120, hfov_deg=st.hfov_deg)
    vol = fuse_room(frames, bounds=house.rooms[0])
    assert observed_share(vol, ev) >= 0.98
    # the same number of random hand-held views sees much less
    rand, _ = sample_cameras(house, "Box-1", RenderSettings(views=len(poses)), np.random.default_rng(5), index)
    K = intrinsics(96, 72, st.hfov_deg)
    seen = view_visibility(index, ev.points[ev.visible], K, 96, 72, rand).any(axis=0).mean()
    assert seen < info["coverage"] - 0.1


def test_random_views_are_a_prefix_of_more_random_views(furnished):
    house, index, _ = furnished
    a, _ = sample_cameras(house, "Box-1", RenderSettings(views=3), np.random.default_rng(1), index)
    b, _ = sample_cameras(house, "Box-1", RenderSettings(views=9), np.random.default_rng(1), index)
    np.testing.assert_array_equal(a, b[:3])


def test_render_settings_check_the_coverage_options():
    s = RenderSettings(view_selection="Coverage", coverage_target=0.95, max_views=12)
    assert s.view_selection == "coverage"
    assert RenderSettings.from_dict(s.to_dict()) == s
    for bad in ({"view_selection": "best"}, {"coverage_target": 0.0}, {"coverage_target": 1.5}, {"max_views": 0},
                {"candidates": 0}, {"candidate_pitch_range_deg": (30.0, -40.0)}):
        with pytest.raises(ValueError):
            RenderSettings(**bad)
