"""In-memory forms of what the dataset stores per room: the fused volume and the panorama.

These dataclasses are the contract between fusion (which makes a ``RoomVolume``), panorama
making (which makes a ``Panorama``), the dataset store (which writes and reads both) and the
benchmark (which trains on them). Conventions: docs/formats.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RoomVolume:
    """A fused room on a regular grid, arrays indexed [x, y, z] (z vertical).

    Attributes:
        tsdf: (X, Y, Z) float32, signed distance / truncation in [-1, 1]; positive in front of
            surfaces; 1 where free or unobserved.
        weight: (X, Y, Z) float32 observation count (0 = unobserved).
        rgb: (X, Y, Z, 3) uint8 colour (0 where unobserved).
        label: (X, Y, Z) uint8 raw 3D-FRONT id (0 = void).
        instance: (X, Y, Z) uint16 instance id (0 = none).
        origin: (3,) float64 world position (metres) of the grid's corner; voxel (i, j, k) has its
            centre at origin + (i + 0.5, j + 0.5, k + 0.5) * voxel_size. A multiple of voxel_size.
        voxel_size: edge length in metres (default 0.04).
        truncation: truncation distance in voxels (default 3).
        room_uid: ``HOUSE_UID/ROOM_INSTANCEID``.
        attrs: free-form JSON-able metadata (fusion settings, fidelity numbers, versions).
    """

    tsdf: np.ndarray
    weight: np.ndarray
    rgb: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    origin: np.ndarray
    voxel_size: float = 0.04
    truncation: float = 3.0
    room_uid: str = ""
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.origin = np.asarray(self.origin, dtype=np.float64).reshape(3)
        shape = self.tsdf.shape
        for name in ("weight", "label", "instance"):
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, tsdf has {shape}")
        if self.rgb.shape != (*shape, 3):
            raise ValueError(f"rgb has shape {self.rgb.shape}, expected {(*shape, 3)}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.tsdf.shape)  # type: ignore[return-value]

    def centre(self, i, j, k) -> np.ndarray:
        """World position (metres) of the centre of voxel (i, j, k)."""
        return self.origin + (np.asarray([i, j, k], dtype=np.float64) + 0.5) * self.voxel_size

    def world_to_index(self, points: np.ndarray) -> np.ndarray:
        """Continuous voxel index (N, 3) of world points: index i is the centre of voxel i."""
        return (np.asarray(points, dtype=np.float64) - self.origin) / self.voxel_size - 0.5


@dataclass
class Panorama:
    """An equirectangular panorama taken inside a room (convention: docs/formats.md).

    Attributes:
        rgb: (H, W, 3) uint8.
        label: (H, W) uint8 raw ids.
        instance: (H, W) uint16.
        depth: (H, W) float32 range (distance along the ray) in metres; 0 = no hit.
        camera: (3,) float64 world position of the panorama centre.
    """

    rgb: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    depth: np.ndarray
    camera: np.ndarray

    def __post_init__(self) -> None:
        self.camera = np.asarray(self.camera, dtype=np.float64).reshape(3)
