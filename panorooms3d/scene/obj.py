"""A small, tolerant Wavefront OBJ reader for 3D-FUTURE models (``raw_model.obj``).

Only what the loader needs is read: ``v`` (positions), ``vt`` (texture coordinates) and ``f``
(faces, any of the ``v``, ``v/vt``, ``v//vn``, ``v/vt/vn`` corner forms, 1-based or negative
indices, polygons fan-triangulated). Everything else (``vn``, ``o``, ``g``, ``usemtl``, ``s``,
``l``, comments) is ignored. Vertices are kept exactly as written: nothing is merged, welded,
re-wound or "repaired" (unlike trimesh), and a corrupt or truncated file raises
:class:`ObjError` naming the file and the line, so the loader can skip that model with a
precise reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ObjError(ValueError):
    """An OBJ file that cannot be read: the message names the file, the line and the problem."""


@dataclass
class ObjMesh:
    """Triangles of an OBJ file, in the file's own (model) frame and units.

    Attributes:
        vertices: (V, 3) float64 positions as written.
        faces: (F, 3) int64 0-based vertex indices (polygons fan-triangulated, winding kept).
        uv: (F, 3, 2) float32 per-corner texture coordinates, or ``None`` when any face corner
            has no ``vt`` index.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None


def _resolve(tok: str, count: int) -> int:
    """0-based index of a 1-based (or negative, relative) OBJ index string; -1 when invalid."""
    i = int(tok)
    if i > 0:
        return i - 1
    if i < 0:
        return count + i if count + i >= 0 else -2
    return -2  # 0 is not an OBJ index


def read_obj(path: Path) -> ObjMesh:
    """Read the triangles of an OBJ file.

    Args:
        path: the ``.obj`` file.

    Returns:
        :class:`ObjMesh` with vertices (V, 3) float64, faces (F, 3) int64 and per-corner uv
        (F, 3, 2) float32 or ``None``.

    Raises:
        ObjError: unreadable file, a bad number, a face with fewer than 3 corners, an index out
            of range, non-finite coordinates, or no faces at all; the message names the file and
            (where there is one) the line.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ObjError(f"{path}: cannot read: {exc.strerror or exc}") from None
    text = data.decode("utf-8", errors="replace")

    verts: list[tuple[float, float, float]] = []
    texs: list[tuple[float, float]] = []
    tri_v: list[int] = []
    tri_t: list[int] = []
    tri_line: list[int] = []  # line number of each triangle (for error messages)
    all_uv = True

    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line or line[0] not in "vf":
            continue
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        try:
            if key == "v":
                if len(parts) < 4:
                    raise ObjError(f"{path}: line {lineno}: vertex with fewer than 3 coordinates: {line.strip()!r}")
                x, y, z = float(parts[1]), float(parts[2]), float(parts[3])
                verts.append((x, y, z))
            elif key == "vt":
                if len(parts) < 2:
                    raise ObjError(f"{path}: line {lineno}: texture coordinate without values: {line.strip()!r}")
                u = float(parts[1])
                v = float(parts[2]) if len(parts) > 2 else 0.0
                texs.append((u, v))
            elif key == "f":
                corners = parts[1:]
                if len(corners) < 3:
                    raise ObjError(f"{path}: line {lineno}: face with fewer than 3 corners: {line.strip()!r}")
                nv, nt = len(verts), len(texs)
                vi: list[int] = []
                ti: list[int] = []
                for c in corners:
                    sub = c.split("/")
                    vi.append(_resolve(sub[0], nv))
                    if len(sub) > 1 and sub[1]:
                        ti.append(_resolve(sub[1], nt))
                    else:
                        all_uv = False
                        ti.append(-1)
                for k in range(1, len(vi) - 1):
                    tri_v.extend((vi[0], vi[k], vi[k + 1]))
                    tri_t.extend((ti[0], ti[k], ti[k + 1]))
                    tri_line.append(lineno)
        except ValueError as exc:
            if isinstance(exc, ObjError):
                raise
            raise ObjError(f"{path}: line {lineno}: bad number in {line.strip()!r}") from None

    if not tri_v:
        raise ObjError(f"{path}: no faces (empty or truncated file)")
    vertices = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    if not np.isfinite(vertices).all():
        bad = int(np.flatnonzero(~np.isfinite(vertices).all(axis=1))[0])
        raise ObjError(f"{path}: vertex {bad + 1} has a non-finite coordinate")
    faces = np.asarray(tri_v, dtype=np.int64).reshape(-1, 3)
    bad_face = (faces < 0) | (faces >= len(vertices))
    if bad_face.any():
        f = int(np.flatnonzero(bad_face.any(axis=1))[0])
        raise ObjError(f"{path}: line {tri_line[f]}: vertex index out of range (the file has {len(vertices)} vertices)")
    uv = None
    if all_uv:
        tidx = np.asarray(tri_t, dtype=np.int64).reshape(-1, 3)
        bad_t = (tidx < 0) | (tidx >= len(texs))
        if bad_t.any():
            f = int(np.flatnonzero(bad_t.any(axis=1))[0])
            raise ObjError(
                f"{path}: line {tri_line[f]}: texture index out of range (the file has {len(texs)} texture coordinates)"
            )
        uv = np.asarray(texs, dtype=np.float32).reshape(-1, 2)[tidx]
    return ObjMesh(vertices=vertices, faces=faces, uv=uv)
