"""The load-bearing conventions of docs/formats.md, in code: frames, cameras, voxels, equirect.

Every stage imports these instead of re-deriving them:

- World: metres, right-handed, Z up. 3D-FRONT is Y up: ``FRONT_TO_WORLD`` = R_x(+90 deg),
  (x, y, z) -> (x, -z, y). Quaternions are [x, y, z, w].
- Cameras: OpenCV (x right, y down, z forward); ``cam_to_world`` 4x4; ``K`` with the centre of
  pixel (u, v) at (u, v).
- Depth: planar z along the camera's +z, metres, 0 = no hit. Panorama depth is range.
- Volumes: indexed [x, y, z]; voxel (i, j, k) has its centre at origin + (ijk + 0.5) * voxel_size.
- Equirect: pixel (v, u) looks along lon = ((u + 0.5)/W - 0.5) * 2 pi,
  lat = (0.5 - (v + 0.5)/H) * pi, d = (cos lat cos lon, -cos lat sin lon, sin lat).
"""

from __future__ import annotations

import numpy as np

#: 3D-FRONT (Y up) to world (Z up): a rotation about +x by +90 degrees, never an axis swap.
FRONT_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

#: OpenCV camera axes (x right, y down, z forward) -> Blender/OpenGL camera axes
#: (x right, y up, looking along -z): flip y and z.
OPENCV_TO_BLENDER_CAM = np.diag([1.0, -1.0, -1.0, 1.0])


def quat_xyzw_to_matrix(q) -> np.ndarray:
    """3x3 rotation matrix of a quaternion given as [x, y, z, w] (normalised here).

    Raises ValueError for a zero or non-finite quaternion.
    """
    x, y, z, w = (float(c) for c in q)
    n = np.sqrt(x * x + y * y + z * z + w * w)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"degenerate quaternion {list(q)}")
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat_xyzw(r: np.ndarray) -> np.ndarray:
    """Quaternion [x, y, z, w] (w >= 0) of a 3x3 rotation matrix."""
    r = np.asarray(r, dtype=np.float64)
    t = np.trace(r)
    if t > 0:
        s = np.sqrt(t + 1.0) * 2
        w, x, y, z = 0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        w, x, y, z = (r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s
    elif r[1, 1] > r[2, 2]:
        s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        w, x, y, z = (r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s
    else:
        s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        w, x, y, z = (r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s
    q = np.array([x, y, z, w])
    return q if w >= 0 else -q


def front_item_to_world(vertices: np.ndarray, pos, rot_xyzw, scale) -> np.ndarray:
    """World coordinates (Z up) of a 3D-FRONT item's local vertices.

    world = C @ (R(q) @ (scale * v) + pos), with C = ``FRONT_TO_WORLD``.

    Args:
        vertices: (N, 3) model-space vertices (3D-FRONT / 3D-FUTURE frame, Y up, metres).
        pos: (3,) translation in the 3D-FRONT frame.
        rot_xyzw: quaternion [x, y, z, w].
        scale: (3,) per-axis scale.
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3) * np.asarray(scale, dtype=np.float64)
    v = v @ quat_xyzw_to_matrix(rot_xyzw).T + np.asarray(pos, dtype=np.float64)
    return v @ FRONT_TO_WORLD.T


def front_to_world(points: np.ndarray) -> np.ndarray:
    """Convert (N, 3) points from the 3D-FRONT frame (Y up) to the world frame (Z up)."""
    return np.asarray(points, dtype=np.float64).reshape(-1, 3) @ FRONT_TO_WORLD.T


def intrinsics(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Pinhole K (3x3) of a centred camera with horizontal field of view ``hfov_deg``.

    Pixel centres are at integer coordinates, so cx = (W - 1) / 2, cy = (H - 1) / 2, and
    square pixels: fx = fy = (W / 2) / tan(hfov / 2).
    """
    f = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def pixel_rays(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """Camera-frame ray directions (H, W, 3) with z = 1 for every pixel centre (OpenCV frame)."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def planar_to_range(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Convert planar depth (H, W) (z along +z, metres, 0 = no hit) to range along each ray."""
    h, w = depth.shape
    scale = np.linalg.norm(pixel_rays(K, w, h), axis=-1)
    return (depth * scale).astype(depth.dtype)


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV ``cam_to_world`` (4x4) of a camera at ``eye`` looking at ``target`` (world frame)."""
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-9:  # looking straight up/down
        x = np.cross(z, np.array([0.0, 1.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, eye
    return m


def equirect_directions(height: int, width: int) -> np.ndarray:
    """World-frame unit ray directions (H, W, 3) of an equirect panorama (docs/formats.md).

    Column ``u`` has lon = ((u + 0.5)/W - 0.5) * 2 pi, row ``v`` has lat = (0.5 - (v + 0.5)/H) * pi,
    and d = (cos lat cos lon, -cos lat sin lon, sin lat): the centre column looks along +x, a
    quarter to the right along -y, the top row up (+z).
    """
    lon = ((np.arange(width) + 0.5) / width - 0.5) * 2 * np.pi
    lat = (0.5 - (np.arange(height) + 0.5) / height) * np.pi
    lon, lat = np.meshgrid(lon, lat)
    return np.stack([np.cos(lat) * np.cos(lon), -np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


#: Skybox faces: name -> OpenCV camera-to-world rotation (3x3) of a 90 deg view along that axis.
#: Columns are the camera's x (right), y (down), z (forward) axes in the world frame. The
#: horizontal faces are upright (image down = world -z) and their right-hand side follows the
#: equirect convention (looking along +x, right is -y). The top face (+z) has image-down = +x
#: and the bottom face (-z) image-up = +x (both adjoin the F face in a cube dice) with image-right
#: = -y, matching py360convert's dict layout with F=+x, R=-y, B=-x, L=+y, U=+z, D=-z.
SKYBOX_ROTATIONS: dict[str, np.ndarray] = {
    "+x": np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], dtype=np.float64),
    "-y": np.array([[-1, 0, 0], [0, 0, -1], [0, -1, 0]], dtype=np.float64),
    "-x": np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], dtype=np.float64),
    "+y": np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64),
    "+z": np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], dtype=np.float64),
    "-z": np.array([[0, -1, 0], [-1, 0, 0], [0, 0, -1]], dtype=np.float64),
}
SKYBOX_FACES = ("+x", "-x", "+y", "-y", "+z", "-z")


def skybox_cam_to_world(face: str, position) -> np.ndarray:
    """OpenCV ``cam_to_world`` (4x4) of skybox face ``face`` at world ``position``."""
    m = np.eye(4)
    m[:3, :3] = SKYBOX_ROTATIONS[face]
    m[:3, 3] = np.asarray(position, dtype=np.float64)
    return m


def voxel_centres(origin, voxel_size: float, shape) -> np.ndarray:
    """World centres (X, Y, Z, 3) of a grid: origin + (ijk + 0.5) * voxel_size."""
    axes = [np.asarray(origin[a], dtype=np.float64) + (np.arange(shape[a]) + 0.5) * voxel_size for a in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def grid_for_bounds(lo, hi, voxel_size: float, margin: float = 0.0) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Tight grid around the box [lo, hi] plus ``margin`` metres.

    Returns ``origin`` (3,) float64, a multiple of ``voxel_size``, and ``shape`` (X, Y, Z) such that
    the grid covers [lo - margin, hi + margin].
    """
    lo = np.asarray(lo, dtype=np.float64) - margin
    hi = np.asarray(hi, dtype=np.float64) + margin
    i0 = np.floor(lo / voxel_size + 1e-9)
    i1 = np.ceil(hi / voxel_size - 1e-9)
    origin = i0 * voxel_size
    shape = tuple(int(n) for n in np.maximum(i1 - i0, 1))
    return origin, shape  # type: ignore[return-value]
