"""Skybox -> equirect against analytic truth: a box room's exact ranges and wall labels."""

from __future__ import annotations

import numpy as np
import py360convert
import pytest
from click.testing import CliRunner
from PIL import Image
from py360convert.utils import equirect_facetype
from scipy.ndimage import binary_erosion

from panorooms3d import geometry as g
from panorooms3d.panorama.equirect import (
    PY360_FACES,
    PanoramaError,
    make_panorama,
    panorama_picture,
    sampling_maps,
)
from panorooms3d.store.frames import Frames, write_frames

LO = np.array([-2.0, -1.5, 0.0])
HI = np.array([3.0, 2.5, 2.8])
CAMERA = np.array([0.3, 0.2, 1.5])
#: A different raw label on each of the six planes, so any flip or swapped face shows up.
PLANE_LABEL = {(0, 1): 98, (0, 0): 58, (1, 1): 40, (1, 0): 38, (2, 1): 30, (2, 0): 51}


def box_hit(directions: np.ndarray, camera=CAMERA) -> tuple[np.ndarray, np.ndarray]:
    """Analytic ray-box hit from ``camera`` along ``directions`` (..., 3): (ray parameter, label)."""
    t = np.full(directions.shape[:-1], np.inf)
    label = np.zeros(directions.shape[:-1], np.uint8)
    for axis in range(3):
        for side, bound in ((1, HI[axis]), (0, LO[axis])):
            with np.errstate(divide="ignore", invalid="ignore"):
                ta = (bound - camera[axis]) / directions[..., axis]
            hit = (ta > 0) & (ta < t)
            t[hit] = ta[hit]
            label[hit] = PLANE_LABEL[(axis, side)]
    return t, label


def box_frames(face_size: int) -> Frames:
    """A frames store of the box room holding only the analytically rendered skybox."""
    K = g.intrinsics(face_size, face_size, 90.0)
    rays = g.pixel_rays(K, face_size, face_size)  # camera frame, z = 1
    faces = {}
    for face in g.SKYBOX_FACES:
        planar, label = box_hit(rays @ g.SKYBOX_ROTATIONS[face].T)  # z = 1 rays: parameter = planar depth
        colour = np.stack([label, 255 - label, (label * 7) % 256], -1).astype(np.uint8)
        faces[face] = {"rgb": colour, "depth": planar.astype(np.float32), "label": label,
                       "instance": label.astype(np.uint16) * 3}
    empty = np.zeros((0, 4, 4), np.uint8)
    return Frames(rgb=np.zeros((0, 4, 4, 3), np.uint8), depth=empty.astype(np.float32), label=empty,
                  instance=empty.astype(np.uint16), K=K, cam_to_world=np.zeros((0, 4, 4)), skybox=faces,
                  skybox_K=K, pano_camera=CAMERA, attrs={"room_uid": "box/room"})


@pytest.fixture(scope="module")
def frames() -> Frames:
    return box_frames(128)


def test_box_room_matches_analytic_ranges_and_labels(frames):
    H, W = 256, 512
    pano = make_panorama(frames, H, W)
    assert pano.rgb.shape == (H, W, 3) and pano.rgb.dtype == np.uint8
    assert pano.label.dtype == np.uint8 and pano.instance.dtype == np.uint16 and pano.depth.dtype == np.float32
    np.testing.assert_allclose(pano.camera, CAMERA)
    t, label = box_hit(g.equirect_directions(H, W))  # unit directions: parameter = range
    assert (pano.label == label).mean() >= 0.98
    inner = np.zeros((H, W), bool)
    for value in np.unique(label):
        inner |= binary_erosion(label == value, iterations=2)
    assert inner.mean() > 0.9
    err = np.abs(pano.depth - t)[inner]
    assert err.max() < 0.02, f"max range error {err.max():.4f} m"
    assert (pano.label[inner] == label[inner]).all()
    assert (pano.instance[inner] == label[inner].astype(np.uint16) * 3).all()


def test_convention_landmarks(frames):
    H, W = 256, 512
    pano = make_panorama(frames, H, W)
    mid = H // 2
    assert pano.label[mid, W // 2] == PLANE_LABEL[(0, 1)]  # centre column looks along +x
    assert pano.label[mid, 3 * W // 4] == PLANE_LABEL[(1, 0)]  # a quarter to the right: -y
    assert pano.label[mid, W // 4] == PLANE_LABEL[(1, 1)]  # a quarter to the left: +y
    assert pano.label[mid, 0] == PLANE_LABEL[(0, 0)]  # the seam looks along -x
    assert (pano.label[0] == PLANE_LABEL[(2, 1)]).all()  # top row: ceiling (+z)
    assert (pano.label[-1] == PLANE_LABEL[(2, 0)]).all()  # bottom row: floor (-z)
    # range straight ahead along +x: from the camera to the +x wall
    assert abs(pano.depth[mid, W // 2] - (HI[0] - CAMERA[0]) / np.cos(np.pi / H)) < 0.02


def test_skybox_rotations_agree_with_py360convert_dict_layout():
    """py360convert's c2e with F=+x, R=-y, B=-x, L=+y, U=+z, D=-z reproduces the convention.

    Each face pixel holds the unit world direction of its ray (through SKYBOX_ROTATIONS and K);
    c2e's equirect must show, at every pixel, ``geometry.equirect_directions`` to within about a
    pixel (c2e's own half-pixel offsets), and a flipped or rotated face must not.
    """
    S, H, W = 128, 256, 512
    K = g.intrinsics(S, S, 90.0)
    rays = g.pixel_rays(K, S, S)
    faces = {}
    for key, face in PY360_FACES.items():
        d = rays @ g.SKYBOX_ROTATIONS[face].T
        faces[key] = (d / np.linalg.norm(d, axis=-1, keepdims=True)).astype(np.float32)
    truth = g.equirect_directions(H, W)
    face_of_pixel = equirect_facetype(H, W)  # 0 F, 1 R, 2 B, 3 L, 4 U, 5 D

    def angle_deg(equirect: np.ndarray) -> np.ndarray:
        e = equirect / np.linalg.norm(equirect, axis=-1, keepdims=True)
        return np.degrees(np.arccos(np.clip((e * truth).sum(-1), -1, 1)))

    theirs = angle_deg(py360convert.c2e(faces, H, W, mode="bilinear", cube_format="dict"))
    pixel_deg = 360.0 / W
    for i, key in enumerate("FRBLUD"):
        region = face_of_pixel == i
        assert np.percentile(theirs[region], 99) < 1.5 * pixel_deg, key
        for name, change in (("flip lr", lambda a: a[:, ::-1]), ("flip ud", lambda a: a[::-1]), ("rot90", np.rot90)):
            wrong = dict(faces)
            wrong[key] = np.ascontiguousarray(change(faces[key]))
            bad = angle_deg(py360convert.c2e(wrong, H, W, mode="bilinear", cube_format="dict"))
            assert np.median(bad[region]) > 10, (key, name)


def test_skybox_rotations_are_rotations_looking_along_their_axis():
    for face, rot in g.SKYBOX_ROTATIONS.items():
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rot) == pytest.approx(1.0)
        axis = np.zeros(3)
        axis["xyz".index(face[1])] = 1.0 if face[0] == "+" else -1.0
        np.testing.assert_allclose(rot[:, 2], axis)


def test_sampling_maps_cached_and_readonly(frames):
    a = sampling_maps(128, frames.skybox_K, 64, 128)
    b = sampling_maps(128, frames.skybox_K.copy(), 64, 128)
    assert a[0] is b[0] and not a[0].flags.writeable


def test_picture_and_errors(frames):
    pano = make_panorama(frames, 64, 128)
    pic = panorama_picture(pano)
    assert pic.shape == (64, 128, 3) and pic.dtype == np.uint8
    broken = box_frames(16)
    del broken.skybox["+z"]
    with pytest.raises(PanoramaError, match=r"box/room.*\+z"):
        make_panorama(broken, 16, 32)
    wrong_k = box_frames(16)
    wrong_k.skybox_K = g.intrinsics(16, 16, 60.0)
    with pytest.raises(PanoramaError, match="90 degree"):
        make_panorama(wrong_k, 16, 32)


def test_panorama_command_stages_and_resumes(tmp_path, frames):
    from panorooms3d.panorama.commands import panorama
    from panorooms3d.store.dataset import read_room_panorama, room_panorama_path

    work = tmp_path / "work"
    small = box_frames(32)
    write_frames(work / "box__room.zarr", small)
    (work / "broken.zarr").mkdir(parents=True)
    out = tmp_path / "data"
    args = ["--work", str(work), "--out", str(out), "--height", "64", "--width", "128", "--png", str(tmp_path / "png")]
    result = CliRunner().invoke(panorama, args)
    assert result.exit_code == 1, result.output  # one room failed, clearly
    assert "broken" in result.output and "Traceback" not in result.output
    assert room_panorama_path(out, "box/room").exists()
    pano = read_room_panorama(out, "box/room")
    assert pano.label.shape == (64, 128)
    assert Image.open(tmp_path / "png" / "box__room.png").size == (128, 64)
    (work / "broken.zarr").rmdir()
    again = CliRunner().invoke(panorama, args)
    assert again.exit_code == 0, again.output
    assert "skipped 1" in again.output
