"""The frames store: one zarr v3 store per room holding everything the renderer produced.

Layout (docs/formats.md):

    <work>/<room key>.zarr/
        rgb           (N, H, W, 3) uint8
        depth         (N, H, W)    float32  planar z along the camera's +z, metres, 0 = no hit
        label         (N, H, W)    uint8    raw 3D-FRONT id, 0 = void
        instance      (N, H, W)    uint16   0 = none
        K             (3, 3)       float64  pixel (u, v) centre at (u, v)
        cam_to_world  (N, 4, 4)    float64  OpenCV camera (x right, y down, z forward), Z-up world
        skybox/<face>/{rgb, depth, label, instance}   face in +x -x +y -y +z -z (square, 90 deg)
        attrs: room_uid, pano_camera (3,), skybox_K (3x3), render settings, scene source, versions

The store is written to a temporary path and renamed when complete: a store that exists is
complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from panorooms3d.geometry import SKYBOX_FACES
from panorooms3d.run.atomic import atomic_path

FRAME_ARRAYS = {"rgb": np.uint8, "depth": np.float32, "label": np.uint8, "instance": np.uint16}


@dataclass
class Frames:
    """A room's rendered frames (see the module docstring for shapes and units).

    Attributes:
        rgb, depth, label, instance: stacked perspective frames.
        K: (3, 3) intrinsics shared by all perspective frames.
        cam_to_world: (N, 4, 4) OpenCV camera-to-world poses.
        skybox: face name -> {"rgb", "depth", "label", "instance"} square images at ``pano_camera``.
        skybox_K: (3, 3) intrinsics of the skybox faces (90 deg field of view).
        pano_camera: (3,) world position of the panorama camera.
        attrs: JSON-able metadata (room_uid, settings, versions, coverage...).
    """

    rgb: np.ndarray
    depth: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    K: np.ndarray
    cam_to_world: np.ndarray
    skybox: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    skybox_K: np.ndarray | None = None
    pano_camera: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.rgb.shape[0])


def write_frames(path: Path, frames: Frames) -> Path:
    """Write ``frames`` as a zarr v3 store at ``path`` atomically (temp + rename). Returns path."""
    path = Path(path)
    n = frames.num_frames
    with atomic_path(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        for name, dtype in FRAME_ARRAYS.items():
            data = np.ascontiguousarray(getattr(frames, name), dtype=dtype)
            if data.shape[0] != n:
                raise ValueError(f"{name} holds {data.shape[0]} frames, rgb holds {n}")
            root.create_array(name, data=data, chunks=(1, *data.shape[1:]))
        root.create_array("K", data=np.asarray(frames.K, np.float64))
        root.create_array("cam_to_world", data=np.asarray(frames.cam_to_world, np.float64).reshape(n, 4, 4))
        for face, arrays in frames.skybox.items():
            if face not in SKYBOX_FACES:
                raise ValueError(f"unknown skybox face {face!r}; faces are {SKYBOX_FACES}")
            g = root.require_group(f"skybox/{face}")
            for name, dtype in FRAME_ARRAYS.items():
                g.create_array(name, data=np.ascontiguousarray(arrays[name], dtype=dtype))
        attrs = dict(frames.attrs)
        if frames.pano_camera is not None:
            attrs["pano_camera"] = [float(c) for c in np.asarray(frames.pano_camera).reshape(3)]
        if frames.skybox_K is not None:
            attrs["skybox_K"] = np.asarray(frames.skybox_K, np.float64).tolist()
        attrs.setdefault("format", "panorooms3d-frames")
        attrs.setdefault("format_version", 1)
        root.attrs.update(attrs)
    return path


def read_frames(path: Path, *, skybox: bool = True, frames: slice | None = None) -> Frames:
    """Read a frames store written by :func:`write_frames`.

    Args:
        path: the ``.zarr`` folder.
        skybox: also read the skybox faces.
        frames: optional slice of frames to read (default all).

    Raises FileNotFoundError naming the path when it does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no frames store at {path}")
    root = zarr.open_group(str(path), mode="r")
    sl = frames if frames is not None else slice(None)
    arrays = {name: np.asarray(root[name][sl]) for name in FRAME_ARRAYS}
    attrs = dict(root.attrs)
    faces: dict[str, dict[str, np.ndarray]] = {}
    if skybox and "skybox" in root:
        for face in SKYBOX_FACES:
            key = f"skybox/{face}"
            if key in root:
                faces[face] = {name: np.asarray(root[f"{key}/{name}"][...]) for name in FRAME_ARRAYS}
    return Frames(
        K=np.asarray(root["K"][...]),
        cam_to_world=np.asarray(root["cam_to_world"][sl]),
        skybox=faces,
        skybox_K=np.asarray(attrs["skybox_K"]) if "skybox_K" in attrs else None,
        pano_camera=np.asarray(attrs["pano_camera"]) if "pano_camera" in attrs else None,
        attrs=attrs,
        **arrays,
    )
