"""Skybox faces -> equirectangular panorama (the data side), following docs/formats.md exactly.

Convention (``geometry.equirect_directions``): pixel (row v, column u) of an H x W panorama looks
along lon = ((u + 0.5)/W - 0.5) * 2 pi, lat = (0.5 - (v + 0.5)/H) * pi,
d = (cos lat cos lon, -cos lat sin lon, sin lat) in the world frame (Z up): the centre column
looks along +x, a quarter to the right along -y, the top row up.

How it is resampled. The skybox faces are the renderer's 90 degree views with the OpenCV
``cam_to_world`` rotations ``geometry.SKYBOX_ROTATIONS`` and intrinsics ``frames.skybox_K``. These
orientations are the ones of py360convert's dict layout (F=+x, R=-y, B=-x, L=+y, U=+z, D=-z;
checked pixel for pixel in tests/test_panorama.py against ``py360convert.c2e``). We do not call
``c2e`` for the data itself, because c2e samples the sphere on ``linspace(-pi, pi, W)`` (no half
pixel) and places face pixel centres half a pixel off the pinhole convention of ``K``; on a box
room that leaves 8 % of the pixels more than 2 cm off the true range. Instead, for each
(face size, K, H, W) we compute once, and cache, where every panorama ray meets its face (the face
whose optical axis is closest to the ray, projected with that face's K) and sample with
``cv2.remap`` / ``numpy.take`` (cv2.remap is the resampler c2e uses too); see
benchmark/perf/bench_dataset.py for timings.

- RGB: bilinear (clamped to the face's own pixels at face borders).
- Labels and instances: nearest.
- Depth: the faces' planar depth is converted to range first (``geometry.planar_to_range``), then
  resampled *edge-aware*: bilinear where the 2 x 2 source footprint is all hits on one label and
  its ranges agree within 5 % (one smooth surface), nearest elsewhere, so no value is ever mixed
  across an object boundary. (Pure nearest is off by up to ~5 cm on walls seen at grazing angles
  from 128 px faces; edge-aware bilinear stays within 1 cm.)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

from panorooms3d.geometry import SKYBOX_FACES, SKYBOX_ROTATIONS, equirect_directions, pixel_rays
from panorooms3d.store.frames import Frames
from panorooms3d.taxonomy import colourise
from panorooms3d.volume import Panorama

#: py360convert dict keys -> our face names (the layout the convention is defined by).
PY360_FACES = {"F": "+x", "R": "-y", "B": "-x", "L": "+y", "U": "+z", "D": "-z"}

#: Depth is interpolated only between source pixels whose ranges agree within this fraction.
SMOOTH_RANGE_RATIO = 0.05


class PanoramaError(ValueError):
    """A room's skybox cannot be turned into a panorama (missing faces, bad shapes or K)."""


@dataclass(frozen=True)
class _Maps:
    """Cached resampling tables of one (face size, K, H, W); every array is read-only.

    map_x, map_y: (H, W) float32 continuous pixel-centre coordinates into the (6 S, S) stack of faces
    (face i in ``SKYBOX_FACES`` order occupies rows [i S, (i + 1) S)), clamped to the face's own
    pixels; fixed1/fixed2: the same in cv2's fixed-point form (bilinear); nearest: (H, W) int64 flat
    index of the nearest source pixel; corner: (H, W) int64 flat index of the top-left pixel of the
    2 x 2 bilinear footprint; ray_norm: (6 S, S) float32 |K^-1 (u, v, 1)| (planar -> range factor).
    """

    map_x: np.ndarray
    map_y: np.ndarray
    fixed1: np.ndarray
    fixed2: np.ndarray
    nearest: np.ndarray
    corner: np.ndarray
    ray_norm: np.ndarray


@lru_cache(maxsize=8)
def _build_maps(face_size: int, k_key: tuple, height: int, width: int) -> _Maps:
    K = np.asarray(k_key, dtype=np.float64).reshape(3, 3)
    d = equirect_directions(height, width)
    best = np.full((height, width), -np.inf)
    face_index = np.zeros((height, width), np.int64)
    cam = np.zeros((height, width, 3))
    for i, face in enumerate(SKYBOX_FACES):
        dc = d @ SKYBOX_ROTATIONS[face]  # world -> camera: R^T d, row-vector form
        closer = dc[..., 2] > best
        best[closer] = dc[..., 2][closer]
        face_index[closer] = i
        cam[closer] = dc[closer]
    x = np.clip(K[0, 0] * cam[..., 0] / cam[..., 2] + K[0, 2], 0, face_size - 1)
    y = np.clip(K[1, 1] * cam[..., 1] / cam[..., 2] + K[1, 2], 0, face_size - 1)
    nearest = (face_index * face_size + np.rint(y).astype(np.int64)) * face_size + np.rint(x).astype(np.int64)
    x0 = np.minimum(np.floor(x).astype(np.int64), face_size - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), face_size - 2)
    corner = (face_index * face_size + y0) * face_size + x0
    mx = x.astype(np.float32)
    my = (y + face_index * face_size).astype(np.float32)
    fixed1, fixed2 = cv2.convertMaps(mx, my, cv2.CV_16SC2, nninterpolation=False)
    norm = np.linalg.norm(pixel_rays(K, face_size, face_size), axis=-1).astype(np.float32)  # as planar_to_range
    maps = _Maps(mx, my, fixed1, fixed2, nearest, corner, np.tile(norm, (len(SKYBOX_FACES), 1)))
    for a in (maps.map_x, maps.map_y, maps.fixed1, maps.fixed2, maps.nearest, maps.corner, maps.ray_norm):
        a.setflags(write=False)
    return maps


def _maps(face_size: int, K: np.ndarray, height: int, width: int) -> _Maps:
    key = tuple(np.round(np.asarray(K, np.float64).ravel(), 9))
    return _build_maps(int(face_size), key, int(height), int(width))


def sampling_maps(face_size: int, K: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each equirect pixel samples the skybox (cached per face size, K, H, W).

    Args:
        face_size: S, the faces' edge in pixels.
        K: (3, 3) face intrinsics (pixel (u, v) centre at (u, v)).
        height, width: panorama size.

    Returns:
        (map_x, map_y): (H, W) float32 pixel-centre coordinates into the (6 S, S) stack of faces in
        ``geometry.SKYBOX_FACES`` order, ready for ``cv2.remap``. Read-only (shared by the cache).
    """
    m = _maps(face_size, K, height, width)
    return m.map_x, m.map_y


def _check_skybox(frames: Frames, room: str) -> tuple[int, np.ndarray]:
    missing = [f for f in SKYBOX_FACES if f not in frames.skybox]
    if missing:
        raise PanoramaError(f"room {room}: skybox faces {missing} are missing (has {sorted(frames.skybox)})")
    if frames.skybox_K is None:
        raise PanoramaError(f"room {room}: the frames store has no skybox_K attribute")
    K = np.asarray(frames.skybox_K, np.float64)
    size = None
    for face in SKYBOX_FACES:
        arrays = frames.skybox[face]
        for name in ("rgb", "depth", "label", "instance"):
            if name not in arrays:
                raise PanoramaError(f"room {room}: skybox face {face} has no {name}")
        h, w = arrays["depth"].shape[:2]
        if h != w or (size is not None and h != size):
            raise PanoramaError(f"room {room}: skybox face {face} is {h}x{w}; faces must be square and equal")
        size = h
    assert size is not None
    if K.shape != (3, 3) or abs(K[0, 0] - size / 2) > 0.01 * size or abs(K[1, 1] - size / 2) > 0.01 * size:
        raise PanoramaError(f"room {room}: skybox_K {K.tolist()} is not a 90 degree view of {size} px faces")
    return size, K


def make_panorama(frames: Frames, height: int = 512, width: int = 1024) -> Panorama:
    """Equirectangular panorama of a room from its rendered skybox (convention: module docstring).

    Args:
        frames: the renderer's output with ``skybox`` = {face: {rgb (S,S,3) uint8, depth (S,S)
            float32 PLANAR metres (0 = no hit), label (S,S) uint8 raw ids, instance (S,S) uint16}}
            for all six faces, ``skybox_K`` (3, 3) and ``pano_camera`` (3,) world metres.
        height, width: panorama size in pixels (H, W); keep the faces at least H/2 pixels.

    Returns:
        ``Panorama`` with rgb (H,W,3) uint8, label (H,W) uint8, instance (H,W) uint16, depth (H,W)
        float32 RANGE in metres along each ray (0 = no hit), camera (3,) the world position.

    Raises:
        PanoramaError naming the room when faces are missing, not square or K is not 90 degrees.
    """
    room = frames.attrs.get("room_uid", "?")
    if height <= 0 or width <= 0:
        raise PanoramaError(f"room {room}: panorama size must be positive, got {height}x{width}")
    size, K = _check_skybox(frames, room)
    camera = frames.pano_camera if frames.pano_camera is not None else frames.attrs.get("pano_camera")
    if camera is None:
        raise PanoramaError(f"room {room}: the frames store has no pano_camera attribute")
    maps = _maps(size, K, height, width)

    def stack(name: str, dtype) -> np.ndarray:
        return np.concatenate([np.asarray(frames.skybox[f][name], dtype) for f in SKYBOX_FACES])

    rgb = cv2.remap(stack("rgb", np.uint8), maps.fixed1, maps.fixed2, cv2.INTER_LINEAR)
    label_stack = stack("label", np.uint8)
    label = np.take(label_stack, maps.nearest)
    instance = np.take(stack("instance", np.uint16), maps.nearest)
    # planar -> range on the faces (geometry.planar_to_range, with its per-pixel factor cached)
    range_stack = stack("depth", np.float32) * maps.ray_norm
    depth = _edge_aware_depth(range_stack, label_stack, maps)
    return Panorama(rgb=rgb, label=label, instance=instance, depth=depth, camera=np.asarray(camera, np.float64))


def _edge_aware_depth(range_stack: np.ndarray, label_stack: np.ndarray, maps: _Maps) -> np.ndarray:
    """Bilinear range where the 2 x 2 footprint is one smooth hit surface, nearest elsewhere (H, W) float32."""
    r, lab = range_stack, label_stack
    a, b, c, d = r[:-1, :-1], r[:-1, 1:], r[1:, :-1], r[1:, 1:]
    lo = np.minimum(np.minimum(a, b), np.minimum(c, d))
    hi = np.maximum(np.maximum(a, b), np.maximum(c, d))
    la = lab[:-1, :-1]
    smooth = (lo > 0) & (hi - lo <= SMOOTH_RANGE_RATIO * lo)
    smooth &= (la == lab[:-1, 1:]) & (la == lab[1:, :-1]) & (la == lab[1:, 1:])
    quad = np.zeros(r.shape, bool)
    quad[:-1, :-1] = smooth
    size = r.shape[1]
    quad[size - 1 :: size] = False  # a face's last row: its 2 x 2 footprint would reach the next face
    nearest = np.take(r, maps.nearest)
    linear = cv2.remap(r, maps.fixed1, maps.fixed2, cv2.INTER_LINEAR)
    return np.where(np.take(quad, maps.corner), linear, nearest).astype(np.float32)


def label_edges(label: np.ndarray) -> np.ndarray:
    """Boolean (H, W) mask of pixels whose label differs from a 4-neighbour (panorama wraps in u)."""
    label = np.asarray(label)
    edge = np.zeros(label.shape, bool)
    edge[:-1] |= label[:-1] != label[1:]
    edge[1:] |= label[1:] != label[:-1]
    right = np.roll(label, -1, axis=1)
    edge |= label != right
    edge |= label != np.roll(label, 1, axis=1)
    return edge


def panorama_picture(pano: Panorama, class_set: str = "paper30", alpha: float = 0.5) -> np.ndarray:
    """A picture of a panorama: RGB with its labels overlaid, label edges drawn in white.

    Args:
        pano: the panorama.
        class_set: class set whose colours paint the labels (``taxonomy.colourise``).
        alpha: weight of the label colour (0 = RGB only, 1 = labels only).

    Returns:
        (H, W, 3) uint8 RGB.
    """
    colours = colourise(pano.label, class_set).astype(np.float32)
    out = (1 - alpha) * pano.rgb.astype(np.float32) + alpha * colours
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    out[label_edges(pano.label)] = 255
    return out


def save_panorama_picture(pano: Panorama, path, class_set: str = "paper30") -> None:
    """Write :func:`panorama_picture` of ``pano`` as a PNG at ``path``."""
    Image.fromarray(panorama_picture(pano, class_set)).save(path, format="PNG")
