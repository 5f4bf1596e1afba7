"""PLY export of a room's labelled triangles (for MeshLab, CloudCompare, Open3D, and tests).

The file is binary little-endian PLY::

    element vertex V: float x, y, z (world frame, metres, Z up); uchar red, green, blue
    element face F:   list uchar int vertex_indices (always 3); uchar label (raw 3D-FRONT id);
                      ushort instance (0 = none)

Vertex colours are the class colours of the face labels (``taxonomy.colourise``, ``paper30`` by
default), so the file looks like a semantic map when opened. Files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from panorooms3d.run.atomic import atomic_path
from panorooms3d.scene.model import Room, merge_meshes
from panorooms3d.taxonomy import colourise


class PlyError(ValueError):
    """A PLY file that :func:`read_ply_faces` cannot read (the message names the file and the problem)."""


_FACE_DTYPE = np.dtype([("n", "u1"), ("v", "<i4", (3,)), ("label", "u1"), ("instance", "<u2")])
_VERTEX_DTYPE = np.dtype([("xyz", "<f4", (3,)), ("rgb", "u1", (3,))])


def write_ply(
    path: Path,
    vertices: np.ndarray,
    faces: np.ndarray,
    label: np.ndarray,
    instance: np.ndarray,
    class_set: str = "paper30",
) -> Path:
    """Write labelled triangles as binary little-endian PLY (atomic).

    Args:
        path: output file.
        vertices: (V, 3) float, world frame, metres (stored as float32).
        faces: (F, 3) int vertex indices.
        label: (F,) raw 3D-FRONT ids (uint8).
        instance: (F,) instance ids (uint16).
        class_set: class set whose colours colour the vertices (by the label of a face using them).

    Returns:
        ``path``.
    """
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    label = np.asarray(label).astype(np.uint8).reshape(-1)
    instance = np.asarray(instance).astype(np.uint16).reshape(-1)
    if len(label) != len(faces) or len(instance) != len(faces):
        raise ValueError(f"{len(faces)} faces but {len(label)} labels and {len(instance)} instances")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError("face indices out of range")
    vertex_label = np.zeros(len(vertices), np.uint8)
    vertex_label[faces.reshape(-1)] = np.repeat(label, 3)
    vert = np.empty(len(vertices), _VERTEX_DTYPE)
    vert["xyz"] = vertices
    vert["rgb"] = colourise(vertex_label, class_set)
    face = np.empty(len(faces), _FACE_DTYPE)
    face["n"] = 3
    face["v"] = faces
    face["label"] = label
    face["instance"] = instance
    header = (
        "ply\n"
        "format binary_little_endian 1.0\n"
        "comment panorooms3d room: world frame, metres, Z up; label = raw 3D-FRONT id\n"
        f"element vertex {len(vertices)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {len(faces)}\n"
        "property list uchar int vertex_indices\n"
        "property uchar label\n"
        "property ushort instance\n"
        "end_header\n"
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(header.encode("ascii"))
            fh.write(vert.tobytes())
            fh.write(face.tobytes())
    return path


def export_room_ply(room: Room, path: Path, class_set: str = "paper30") -> Path:
    """Write a room's triangles (all its meshes) as a labelled binary PLY (atomic).

    Args:
        room: the room (world frame, metres, Z up).
        path: output ``.ply`` file (parent folders are created).
        class_set: class set for the vertex colours (``paper30`` or ``raw99``).

    Returns:
        ``path``.
    """
    vertices, faces, label, instance = merge_meshes(room.meshes)
    return write_ply(path, vertices, faces, label, instance, class_set)


_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


def read_ply_faces(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read the triangles of a binary little-endian PLY (as written by :func:`export_room_ply`).

    Vertex properties may be any scalars (``x``, ``y``, ``z`` are required); the face element must
    have a list property ``vertex_indices`` (or ``vertex_index``) of triangles, and may have scalar
    ``label`` and ``instance`` properties.

    Returns:
        vertices (V, 3) float64, faces (F, 3) int64, label (F,) uint8 (zeros when absent),
        instance (F,) uint16 (zeros when absent).

    Raises:
        PlyError: not a PLY, not binary little-endian, unsupported layout, non-triangle faces,
            or a truncated file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply") or end < 0:
        raise PlyError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    body = data[end + len(b"end_header\n") :]
    elements: list[tuple[str, int, list[tuple]]] = []
    for line in lines[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format":
            if parts[1:2] != ["binary_little_endian"]:
                raise PlyError(f"{path}: format {' '.join(parts[1:])} not supported (binary_little_endian only)")
        elif parts[0] == "element":
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property" and elements:
            try:
                if parts[1] == "list":
                    elements[-1][2].append(("list", parts[4], _PLY_TYPES[parts[2]], _PLY_TYPES[parts[3]]))
                else:
                    elements[-1][2].append(("scalar", parts[2], _PLY_TYPES[parts[1]]))
            except (KeyError, IndexError):
                raise PlyError(f"{path}: bad property line {line!r}") from None
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for name, count, props in elements:
        fields = []
        for p in props:
            if p[0] == "scalar":
                fields.append((p[1], "<" + p[2]))
            else:  # a list: only fixed-size triangle lists are supported
                fields.append((p[1] + "__n", "<" + p[2]))
                fields.append((p[1], "<" + p[3], (3,)))
        dt = np.dtype(fields)
        size = dt.itemsize * count
        if offset + size > len(body):
            raise PlyError(f"{path}: truncated ({name} data ends after {len(body)} of {offset + size} bytes)")
        arr = np.frombuffer(body, dtype=dt, count=count, offset=offset)
        for p in props:
            if p[0] == "list" and count and (arr[p[1] + "__n"] != 3).any():
                raise PlyError(f"{path}: {name}.{p[1]} has lists that are not triangles")
        arrays[name] = arr
        offset += size
    if "vertex" not in arrays or "face" not in arrays:
        raise PlyError(f"{path}: needs a vertex and a face element")
    vert, face = arrays["vertex"], arrays["face"]
    try:
        vertices = np.stack([vert["x"], vert["y"], vert["z"]], axis=1).astype(np.float64)
    except ValueError:
        raise PlyError(f"{path}: vertex element without x, y, z") from None
    key = next((k for k in ("vertex_indices", "vertex_index") if k in face.dtype.names), None)
    if key is None:
        raise PlyError(f"{path}: face element without a vertex_indices list")
    faces = face[key].astype(np.int64).reshape(-1, 3)
    names = face.dtype.names or ()
    label = face["label"].astype(np.uint8) if "label" in names else np.zeros(len(faces), np.uint8)
    instance = face["instance"].astype(np.uint16) if "instance" in names else np.zeros(len(faces), np.uint16)
    return vertices, faces, label, instance
