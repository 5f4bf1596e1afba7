"""The conventions of docs/formats.md, checked against hand-computed values."""

from __future__ import annotations

import numpy as np

from panorooms3d import geometry as g


def test_front_to_world_is_a_rotation_not_a_swap() -> None:
    c = g.FRONT_TO_WORLD
    assert np.allclose(c @ c.T, np.eye(3)) and np.isclose(np.linalg.det(c), 1.0)
    # (x, y, z) -> (x, -z, y): 3D-FRONT's up (+y) becomes world +z.
    assert np.allclose(g.front_to_world([[1, 2, 3]]), [[1, -3, 2]])


def test_quaternion_xyzw() -> None:
    s = np.sqrt(0.5)
    # 90 degrees about +y: x -> -z.
    r = g.quat_xyzw_to_matrix([0, s, 0, s])
    assert np.allclose(r @ [1, 0, 0], [0, 0, -1])
    assert np.allclose(g.matrix_to_quat_xyzw(r), [0, s, 0, s])
    for q in ([0.1, 0.2, 0.3, 0.9], [0.9, -0.1, 0.2, 0.1], [0.0, 0.0, 1.0, 0.0]):
        q = np.array(q) / np.linalg.norm(q)
        q = q if q[3] >= 0 else -q
        assert np.allclose(g.matrix_to_quat_xyzw(g.quat_xyzw_to_matrix(q)), q)


def test_front_item_to_world_by_hand() -> None:
    s = np.sqrt(0.5)
    # local (1, 0, 0) scaled by 2 -> (2, 0, 0); rotated 90 deg about y -> (0, 0, -2);
    # + pos (1, 0.5, 3) -> (1, 0.5, 1); to Z-up -> (1, -1, 0.5).
    w = g.front_item_to_world([[1, 0, 0]], pos=[1, 0.5, 3], rot_xyzw=[0, s, 0, s], scale=[2, 1, 1])
    assert np.allclose(w, [[1, -1, 0.5]])


def test_intrinsics_pixel_centres() -> None:
    k = g.intrinsics(640, 480, 90.0)
    assert np.isclose(k[0, 2], 319.5) and np.isclose(k[1, 2], 239.5) and np.isclose(k[0, 0], 320.0)
    rays = g.pixel_rays(k, 640, 480)
    # The right edge of the image (u = 639.5) is at 45 degrees for a 90 degree field of view.
    assert np.isclose((639.5 - k[0, 2]) / k[0, 0], 1.0) and rays.shape == (480, 640, 3)
    depth = np.full((480, 640), 2.0, np.float32)
    rng = g.planar_to_range(depth, k)
    assert np.isclose(rng[240, 320], 2.0 * np.linalg.norm(rays[240, 320]))


def test_look_at_is_opencv() -> None:
    m = g.look_at([0, 0, 1.5], [1, 0, 1.5])
    assert np.allclose(m[:3, 2], [1, 0, 0]), "z forward"
    assert np.allclose(m[:3, 1], [0, 0, -1]), "y down"
    assert np.allclose(m[:3, 0], [0, -1, 0]), "x right (looking along +x, right is -y)"


def test_equirect_landmarks() -> None:
    d = g.equirect_directions(64, 128)
    assert np.allclose(np.linalg.norm(d, axis=-1), 1.0)
    centre = d[31:33, 64].mean(axis=0)  # the two middle rows, the column just right of the centre
    assert centre[0] > 0.99, "the centre column looks along +x"
    quarter = d[31:33, 96].mean(axis=0)
    assert quarter[1] < -0.99, "a quarter to the right looks along -y"
    assert d[0, 0][2] > 0.99 and d[-1, 0][2] < -0.99, "top row up, bottom row down"


def test_skybox_faces_look_along_their_axes() -> None:
    for face, r in g.SKYBOX_ROTATIONS.items():
        axis = {"x": 0, "y": 1, "z": 2}[face[1]]
        sign = 1.0 if face[0] == "+" else -1.0
        expected = np.zeros(3)
        expected[axis] = sign
        assert np.allclose(r[:, 2], expected), face
        assert np.isclose(np.linalg.det(r), 1.0), face
    assert np.allclose(g.skybox_cam_to_world("+x", [1, 2, 3])[:3, 3], [1, 2, 3])


def test_voxel_grid_convention() -> None:
    origin, shape = g.grid_for_bounds([0.01, -0.05, 0.0], [1.0, 0.3, 0.5], 0.04, margin=0.08)
    assert np.allclose(origin / 0.04, np.round(origin / 0.04)), "origin is a multiple of the voxel size"
    assert np.all(origin <= np.array([0.01, -0.05, 0.0]) - 0.08 + 1e-9)
    assert np.all(origin + np.array(shape) * 0.04 >= np.array([1.0, 0.3, 0.5]) + 0.08 - 1e-9)
    c = g.voxel_centres(origin, 0.04, shape)
    assert c.shape == (*shape, 3)
    assert np.allclose(c[0, 0, 0], origin + 0.02) and np.allclose(c[1, 2, 3], origin + np.array([1.5, 2.5, 3.5]) * 0.04)
