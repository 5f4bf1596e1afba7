"""Synthetic houses written in exactly the 3D-FRONT / 3D-FUTURE layout (docs/front-format.md).

``synthesize(out, houses, seed)`` writes a FRONT_ROOT-style folder::

    out/3D-FRONT/<house uid>.json
    out/3D-FUTURE-model/<jid>/{raw_model.obj, raw_model.mtl, texture.png, model_info.json}
    out/3D-FRONT-texture/<jid>/texture.png
    out/synth_report.json

so every later stage (loader, render, fusion...) runs without the licensed dataset.

Planning happens in the **world frame** (metres, Z up, docs/formats.md); everything written to the
house JSON is in the 3D-FRONT frame (Y up): a world point (x, y, z) is written as (x, z, -y), the
inverse of ``geometry.FRONT_TO_WORLD``. A furniture item facing the world plan direction
(cos phi, sin phi) has the 3D-FRONT yaw theta = atan2(cos phi, -sin phi) about +Y.

Houses are 2-3 rooms in a row along world +x; neighbours share a wall (thickness 0.1-0.2 m) with
a door opening (a hole in both ``WallInner`` meshes, a ``Door`` mesh lining it: reveals, casing,
threshold and an open door leaf). Rooms are rectangles or L-shapes. Furniture is placed against
walls, relative to other items or freely (any yaw), with no overlap of oriented footprints whose
height ranges overlap, inside the room polygon, and out of the door clearance zones.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from panorooms3d.run.atomic import atomic_path
from panorooms3d.scene import furniture as fm
from panorooms3d.scene import textures as tx

REPORT_NAME = "synth_report.json"
MODEL_VARIANTS = 3  # model variants per furniture kind in one run (shared by houses: jids are re-used)
TEXTURE_VARIANTS = 3  # texture variants per architecture texture kind
WALL_GAP = 0.025  # metres between a floor item and the wall it stands against (baseboards are 0.015 deep)
ITEM_GAP = 0.03  # metres between two items whose height ranges overlap
BASEBOARD_H, BASEBOARD_D = 0.08, 0.015
CASING_W, CASING_D = 0.06, 0.015
DOOR_ZONE_DEPTH, DOOR_ZONE_SIDE = 1.0, 0.25

FAULT_KINDS = (
    "missing_model",
    "truncated_obj",
    "unknown_category",
    "invalid",
    "duplicate_instanceid",
    "degenerate_scale",
)
UNKNOWN_CATEGORY = "hoverboard dock"  # deliberately not a 3D-FRONT category


# ----------------------------------------------------------------------------------------------
# small 2D geometry (world plan, metres)


@dataclass(frozen=True)
class ORect:
    """An oriented rectangle in the world plan: centre, unit axis ``u`` (the other is u rotated +90 deg),
    half extents along u and along the other axis (metres)."""

    cx: float
    cy: float
    ux: float
    uy: float
    hu: float
    hv: float

    def corners(self) -> np.ndarray:
        """(4, 2) corners, counter-clockwise."""
        u = np.array([self.ux, self.uy])
        v = np.array([-self.uy, self.ux])
        c = np.array([self.cx, self.cy])
        return np.array(
            [
                c - u * self.hu - v * self.hv,
                c + u * self.hu - v * self.hv,
                c + u * self.hu + v * self.hv,
                c - u * self.hu + v * self.hv,
            ]
        )

    def grown(self, m: float) -> ORect:
        return ORect(self.cx, self.cy, self.ux, self.uy, self.hu + m, self.hv + m)


def aabb(x0: float, y0: float, x1: float, y1: float) -> ORect:
    """Axis-aligned rectangle [x0, x1] x [y0, y1] as an :class:`ORect`."""
    return ORect((x0 + x1) / 2, (y0 + y1) / 2, 1.0, 0.0, (x1 - x0) / 2, (y1 - y0) / 2)


def rects_overlap(a: ORect, b: ORect) -> bool:
    """Separating-axis test of two oriented rectangles (touching counts as not overlapping)."""
    d = np.array([b.cx - a.cx, b.cy - a.cy])
    for r in (a, b):
        for k in (np.array([r.ux, r.uy]), np.array([-r.uy, r.ux])):
            ra = a.hu * abs(a.ux * k[0] + a.uy * k[1]) + a.hv * abs(-a.uy * k[0] + a.ux * k[1])
            rb = b.hu * abs(b.ux * k[0] + b.uy * k[1]) + b.hv * abs(-b.uy * k[0] + b.ux * k[1])
            if abs(float(d @ k)) >= ra + rb - 1e-9:
                return False
    return True


def triangulate_polygon(poly: np.ndarray) -> np.ndarray:
    """Ear-clipping triangulation of a simple counter-clockwise polygon (N, 2); returns (N-2, 3) indices,
    each triangle counter-clockwise."""
    idx = list(range(len(poly)))
    tris = []

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    guard = 0
    while len(idx) > 3 and guard < 1000:
        guard += 1
        for k in range(len(idx)):
            i0, i1, i2 = idx[k - 1], idx[k], idx[(k + 1) % len(idx)]
            a, b, c = poly[i0], poly[i1], poly[i2]
            if cross(a, b, c) <= 1e-12:
                continue
            if any(
                cross(a, b, poly[j]) >= 0 and cross(b, c, poly[j]) >= 0 and cross(c, a, poly[j]) >= 0
                for j in idx
                if j not in (i0, i1, i2)
            ):
                continue
            tris.append((i0, i1, i2))
            idx.pop(k)
            break
    tris.append(tuple(idx))
    return np.array(tris, np.int64)


# ----------------------------------------------------------------------------------------------
# house plan


@dataclass
class Door:
    """A door between room ``left`` (x < xa) and room ``right`` (x > xa + t), world plan.

    ``y0..y1`` is the opening along y, ``height`` its top (metres); the open leaf stands in room
    ``leaf_room`` (0 = left, 1 = right) at the ``hinge`` end (0 = y0, 1 = y1)."""

    left: int
    right: int
    xa: float
    t: float
    y0: float
    y1: float
    height: float
    leaf_room: int
    hinge: int


@dataclass
class RoomPlan:
    """One room: type, instanceid, bounding rectangle, optional notch (L-shape), polygon, height."""

    type: str
    instanceid: str
    x0: float
    y0: float
    x1: float
    y1: float
    height: float
    notch: tuple[float, float, float, float] | None = None
    polygon: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    floor_tex: str = ""
    wall_tex: str = ""
    ceiling_tex: str = ""
    trim_tex: str = ""

    def make_polygon(self) -> None:
        """Counter-clockwise polygon (world plan) from the rectangle and the notch."""
        x0, y0, x1, y1 = self.x0, self.y0, self.x1, self.y1
        pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        if self.notch is not None:
            nx0, ny0, nx1, ny1 = self.notch
            out = []
            for px, py in pts:
                if nx0 - 1e-9 <= px <= nx1 + 1e-9 and ny0 - 1e-9 <= py <= ny1 + 1e-9:
                    ix = nx0 if abs(px - nx1) < 1e-9 else nx1  # inner x of the notch
                    iy = ny0 if abs(py - ny1) < 1e-9 else ny1
                    # walk CCW: the corner is replaced by 3 points, in an order that keeps CCW
                    cand = [(px, iy), (ix, iy), (ix, py)]
                    prev = np.array(out[-1] if out else pts[-1])
                    if abs(cand[0][0] - prev[0]) > 1e-9 and abs(cand[0][1] - prev[1]) > 1e-9:
                        cand = cand[::-1]
                    out += cand
                else:
                    out.append((px, py))
            pts = out
        self.polygon = np.array(pts, np.float64)

    @property
    def area(self) -> float:
        """Floor area, square metres."""
        p = self.polygon
        return float(0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1))))

    def edges(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
        """Wall edges: (start, unit direction, inward unit normal, length), CCW order."""
        out = []
        p = self.polygon
        for i in range(len(p)):
            a, b = p[i], p[(i + 1) % len(p)]
            length = float(np.linalg.norm(b - a))
            d = (b - a) / length
            out.append((a, d, np.array([-d[1], d[0]]), length))
        return out


def _plan_house(rng: np.random.Generator, n_rooms: int, house_no: int) -> tuple[list[RoomPlan], list[Door], float]:
    """Room rectangles in a row along +x with L-notches and doors on the shared walls."""
    height = float(rng.uniform(2.6, 3.0))
    living = str(rng.choice(["LivingRoom", "LivingDiningRoom"]))
    beds = [str(rng.choice(["MasterBedroom", "Bedroom"])), str(rng.choice(["SecondBedroom", "Bedroom"]))]
    types = [living] + beds[: n_rooms - 1]
    order = rng.permutation(len(types))
    types = [types[i] for i in order]
    rooms: list[RoomPlan] = []
    doors: list[Door] = []
    x = 0.0
    prev_y0 = 0.0
    prev_d = 0.0
    used_ids: set[str] = set()
    for i, rtype in enumerate(types):
        if rtype == "LivingDiningRoom":
            w, d = rng.uniform(4.5, 6.0), rng.uniform(5.5, 8.0)
        elif rtype == "LivingRoom":
            w, d = rng.uniform(4.0, 6.0), rng.uniform(4.0, 6.5)
        else:
            w, d = rng.uniform(3.0, 4.8), rng.uniform(3.0, 4.8)
        w, d = round(float(w), 2), round(float(d), 2)
        t = round(float(rng.uniform(0.1, 0.2)), 3)
        need = 1.9
        if i == 0:
            y0 = 0.0
        else:
            y0 = round(float(rng.uniform(prev_y0 - d + need, prev_y0 + prev_d - need)), 2)
            x += t
        while True:
            iid = f"{rtype}-{int(rng.integers(1000, 99999))}"
            if iid not in used_ids:
                used_ids.add(iid)
                break
        room = RoomPlan(rtype, iid, x, y0, x + w, y0 + d, height)
        if w >= 3.4 and d >= 3.4 and rng.random() < 0.45:
            nw, nd = rng.uniform(0.3, 0.45) * w, rng.uniform(0.3, 0.45) * d
            nx0, nx1 = (room.x0, room.x0 + nw) if rng.random() < 0.5 else (room.x1 - nw, room.x1)
            ny0, ny1 = (room.y0, room.y0 + nd) if rng.random() < 0.5 else (room.y1 - nd, room.y1)
            room.notch = (round(float(nx0), 3), round(float(ny0), 3), round(float(nx1), 3), round(float(ny1), 3))
        room.make_polygon()
        rooms.append(room)
        if i > 0:
            left = rooms[i - 1]
            lo, hi = _shared_span(left, room)
            if hi - lo < need - 0.05 and room.notch is not None:
                room.notch = None
                room.make_polygon()
                lo, hi = _shared_span(left, room)
            if hi - lo < need - 0.05 and left.notch is not None:
                left.notch = None
                left.make_polygon()
                lo, hi = _shared_span(left, room)
            dw = float(rng.uniform(0.8, 0.95))
            dy0 = float(rng.uniform(lo + 0.35, max(hi - 0.35 - dw, lo + 0.35)))
            doors.append(
                Door(
                    i - 1,
                    i,
                    left.x1,
                    t,
                    round(dy0, 3),
                    round(dy0 + dw, 3),
                    round(float(rng.uniform(2.0, 2.1)), 3),
                    int(rng.integers(2)),
                    int(rng.integers(2)),
                )
            )
        x += w
        prev_y0, prev_d = y0, d
    return rooms, doors, height


def _side_span(room: RoomPlan, x: float) -> tuple[float, float]:
    """y-extent of the room's wall edge lying on the vertical line ``x`` (empty -> (0, 0))."""
    for a, d, _, length in room.edges():
        if abs(d[0]) < 1e-9 and abs(a[0] - x) < 1e-9:
            b = a + d * length
            return float(min(a[1], b[1])), float(max(a[1], b[1]))
    return 0.0, 0.0


def _shared_span(left: RoomPlan, right: RoomPlan) -> tuple[float, float]:
    """y-interval where the right wall of ``left`` faces the left wall of ``right``."""
    a0, a1 = _side_span(left, left.x1)
    b0, b1 = _side_span(right, right.x0)
    return max(a0, b0), min(a1, b1)


# ----------------------------------------------------------------------------------------------
# architecture meshes (built in the world frame, written in the 3D-FRONT frame)


class ArchMesh:
    """Triangles of one architecture mesh in the world frame with normals and UVs (texture repeats)."""

    def __init__(self) -> None:
        self.v: list[tuple[float, float, float]] = []
        self.n: list[tuple[float, float, float]] = []
        self.uv: list[tuple[float, float]] = []
        self.f: list[tuple[int, int, int]] = []

    def quad(self, corners, normal, uvs) -> None:
        """A planar quad (4 world corners around it), front side along ``normal``, with 4 UVs."""
        c = np.asarray(corners, np.float64)
        nrm = np.asarray(normal, np.float64)
        k = len(self.v)
        faces = [(0, 1, 2), (0, 2, 3)]
        if np.dot(np.cross(c[1] - c[0], c[2] - c[0]), nrm) < 0:
            faces = [(0, 2, 1), (0, 3, 2)]
        self.v += [tuple(p) for p in c]
        self.n += [tuple(nrm)] * 4
        self.uv += [tuple(u) for u in uvs]
        self.f += [(k + a, k + b, k + cc) for a, b, cc in faces]

    def box(self, lo, hi, tile: float) -> None:
        """An axis-aligned world box from ``lo`` to ``hi`` (metres), UVs = metres / ``tile``."""
        (x0, y0, z0), (x1, y1, z1) = lo, hi
        s = 1.0 / tile
        self.quad(
            [(x1, y0, z0), (x1, y1, z0), (x1, y1, z1), (x1, y0, z1)],
            (1, 0, 0),
            [(y0 * s, z0 * s), (y1 * s, z0 * s), (y1 * s, z1 * s), (y0 * s, z1 * s)],
        )
        self.quad(
            [(x0, y0, z0), (x0, y1, z0), (x0, y1, z1), (x0, y0, z1)],
            (-1, 0, 0),
            [(y0 * s, z0 * s), (y1 * s, z0 * s), (y1 * s, z1 * s), (y0 * s, z1 * s)],
        )
        self.quad(
            [(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)],
            (0, 1, 0),
            [(x0 * s, z0 * s), (x1 * s, z0 * s), (x1 * s, z1 * s), (x0 * s, z1 * s)],
        )
        self.quad(
            [(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)],
            (0, -1, 0),
            [(x0 * s, z0 * s), (x1 * s, z0 * s), (x1 * s, z1 * s), (x0 * s, z1 * s)],
        )
        self.quad(
            [(x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)],
            (0, 0, 1),
            [(x0 * s, y0 * s), (x1 * s, y0 * s), (x1 * s, y1 * s), (x0 * s, y1 * s)],
        )
        self.quad(
            [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)],
            (0, 0, -1),
            [(x0 * s, y0 * s), (x1 * s, y0 * s), (x1 * s, y1 * s), (x0 * s, y1 * s)],
        )

    def front_arrays(self) -> tuple[list[float], list[float], list[float], list[int]]:
        """Flat xyz, normal, uv, faces lists in the 3D-FRONT frame ((x, y, z) -> (x, z, -y))."""
        v = np.asarray(self.v, np.float64).reshape(-1, 3)
        n = np.asarray(self.n, np.float64).reshape(-1, 3)
        vf = np.stack([v[:, 0], v[:, 2], -v[:, 1]], 1)
        nf = np.stack([n[:, 0], n[:, 2], -n[:, 1]], 1)
        return (_flat(vf), _flat(nf), _flat(np.asarray(self.uv, np.float64)), [int(i) for i in np.ravel(self.f)])


def _r(x: float, nd: int = 5) -> float:
    v = round(float(x), nd)
    return 0.0 if v == 0 else v


def _flat(a: np.ndarray, nd: int = 5) -> list[float]:
    return [_r(x, nd) for x in np.ravel(a)]


def _openings_on_edge(
    room_idx: int, room: RoomPlan, a: np.ndarray, d: np.ndarray, length: float, doors: list[Door]
) -> list[tuple[float, float, float]]:
    """Door openings on one wall edge as (s0, s1, top) along the edge from ``a`` (metres)."""
    out = []
    for door in doors:
        if abs(d[0]) > 1e-9:
            continue
        x_face = door.xa if door.left == room_idx else door.xa + door.t if door.right == room_idx else None
        if x_face is None or abs(a[0] - x_face) > 1e-9:
            continue
        s0 = (door.y0 - a[1]) * d[1]
        s1 = (door.y1 - a[1]) * d[1]
        s0, s1 = min(s0, s1), max(s0, s1)
        if s0 >= -1e-9 and s1 <= length + 1e-9:
            out.append((s0, s1, door.height))
    return sorted(out)


def _room_arch(room_idx: int, room: RoomPlan, doors: list[Door]) -> dict[str, ArchMesh]:
    """Floor, Ceiling, WallInner, Baseboard and Door meshes of one room (world frame)."""
    poly = room.polygon
    h = room.height
    ftile, wtile = tx.TILE_METRES[room.floor_tex], tx.TILE_METRES[room.wall_tex]
    ctile, ttile = tx.TILE_METRES[room.ceiling_tex], tx.TILE_METRES[room.trim_tex]
    meshes: dict[str, ArchMesh] = {}
    tris = triangulate_polygon(poly)
    floor, ceil = ArchMesh(), ArchMesh()
    for tri in tris:
        p = poly[list(tri)]
        k = len(floor.v)
        floor.v += [(x, y, 0.0) for x, y in p]
        floor.n += [(0.0, 0.0, 1.0)] * 3
        floor.uv += [(x / ftile, y / ftile) for x, y in p]
        floor.f.append((k, k + 1, k + 2))
        ceil.v += [(x, y, h) for x, y in p]
        ceil.n += [(0.0, 0.0, -1.0)] * 3
        ceil.uv += [(x / ctile, y / ctile) for x, y in p]
        ceil.f.append((k, k + 2, k + 1))
    meshes["Floor"], meshes["Ceiling"] = floor, ceil
    walls, base = ArchMesh(), ArchMesh()
    edges = room.edges()
    for i, (a, d, n, length) in enumerate(edges):
        openings = _openings_on_edge(room_idx, room, a, d, length, doors)

        def pt(s, z, off=0.0, a=a, d=d, n=n):
            q = a + d * s + n * off
            return (float(q[0]), float(q[1]), float(z))

        nrm3 = (float(n[0]), float(n[1]), 0.0)
        cuts = [0.0]
        for s0, s1, _ in openings:
            cuts += [s0, s1]
        cuts.append(length)
        for k in range(0, len(cuts), 2):  # full-height pieces between openings
            s0, s1 = cuts[k], cuts[k + 1]
            if s1 - s0 > 1e-6:
                walls.quad(
                    [pt(s0, 0), pt(s1, 0), pt(s1, h), pt(s0, h)],
                    nrm3,
                    [(s0 / wtile, 0), (s1 / wtile, 0), (s1 / wtile, h / wtile), (s0 / wtile, h / wtile)],
                )
        for s0, s1, top in openings:  # lintels
            walls.quad(
                [pt(s0, top), pt(s1, top), pt(s1, h), pt(s0, h)],
                nrm3,
                [
                    (s0 / wtile, top / wtile),
                    (s1 / wtile, top / wtile),
                    (s1 / wtile, h / wtile),
                    (s0 / wtile, h / wtile),
                ],
            )
        # baseboards: skip the openings (and their casings); extend at reflex corners
        prev_d = edges[i - 1][1]
        next_d = edges[(i + 1) % len(edges)][1]
        start = -BASEBOARD_D if (prev_d[0] * d[1] - prev_d[1] * d[0]) < 0 else 0.0
        end = length + (BASEBOARD_D if (d[0] * next_d[1] - d[1] * next_d[0]) < 0 else 0.0)
        spans, s = [], start
        for s0, s1, _ in openings:
            spans.append((s, s0 - CASING_W))
            s = s1 + CASING_W
        spans.append((s, end))
        for s0, s1 in spans:
            if s1 - s0 < 1e-3:
                continue
            bd, bh = BASEBOARD_D, BASEBOARD_H
            base.quad(
                [pt(s0, 0, bd), pt(s1, 0, bd), pt(s1, bh, bd), pt(s0, bh, bd)],
                nrm3,
                [(s0 / ttile, 0), (s1 / ttile, 0), (s1 / ttile, bh / ttile), (s0 / ttile, bh / ttile)],
            )
            base.quad(
                [pt(s0, bh, 0), pt(s1, bh, 0), pt(s1, bh, bd), pt(s0, bh, bd)],
                (0.0, 0.0, 1.0),
                [(s0 / ttile, 0), (s1 / ttile, 0), (s1 / ttile, bd / ttile), (s0 / ttile, bd / ttile)],
            )
            for se, sign in ((s0, -1.0), (s1, 1.0)):
                if any(abs(se - (o[0] - CASING_W)) < 1e-9 or abs(se - (o[1] + CASING_W)) < 1e-9 for o in openings):
                    base.quad(
                        [pt(se, 0, 0), pt(se, 0, bd), pt(se, bh, bd), pt(se, bh, 0)],
                        (float(d[0] * sign), float(d[1] * sign), 0.0),
                        [(0, 0), (bd / ttile, 0), (bd / ttile, bh / ttile), (0, bh / ttile)],
                    )
    meshes["WallInner"], meshes["Baseboard"] = walls, base
    door_mesh = ArchMesh()
    for door in doors:
        if room_idx not in (door.left, door.right):
            continue
        side = 0 if room_idx == door.left else 1
        xa, t, y0, y1, top = door.xa, door.t, door.y0, door.y1, door.height
        xr0, xr1 = (xa, xa + t / 2) if side == 0 else (xa + t / 2, xa + t)
        s = 1.0 / ttile
        door_mesh.quad(
            [(xr0, y0, 0), (xr1, y0, 0), (xr1, y0, top), (xr0, y0, top)],
            (0, 1, 0),
            [(xr0 * s, 0), (xr1 * s, 0), (xr1 * s, top * s), (xr0 * s, top * s)],
        )
        door_mesh.quad(
            [(xr0, y1, 0), (xr1, y1, 0), (xr1, y1, top), (xr0, y1, top)],
            (0, -1, 0),
            [(xr0 * s, 0), (xr1 * s, 0), (xr1 * s, top * s), (xr0 * s, top * s)],
        )
        door_mesh.quad(
            [(xr0, y0, top), (xr1, y0, top), (xr1, y1, top), (xr0, y1, top)],
            (0, 0, -1),
            [(xr0 * s, y0 * s), (xr1 * s, y0 * s), (xr1 * s, y1 * s), (xr0 * s, y1 * s)],
        )
        door_mesh.quad(
            [(xr0, y0, 0), (xr1, y0, 0), (xr1, y1, 0), (xr0, y1, 0)],
            (0, 0, 1),
            [(xr0 * s, y0 * s), (xr1 * s, y0 * s), (xr1 * s, y1 * s), (xr0 * s, y1 * s)],
        )
        xf = xa if side == 0 else xa + t  # this room's wall face
        cx0, cx1 = (xf - CASING_D, xf) if side == 0 else (xf, xf + CASING_D)
        door_mesh.box((cx0, y0 - CASING_W, 0), (cx1, y0, top + CASING_W), ttile)
        door_mesh.box((cx0, y1, 0), (cx1, y1 + CASING_W, top + CASING_W), ttile)
        door_mesh.box((cx0, y0, top), (cx1, y1, top + CASING_W), ttile)
        if door.leaf_room == side:  # the leaf, open 90 degrees, against the hinge jamb
            dw = y1 - y0
            ly0, ly1 = (y0, y0 + 0.04) if door.hinge == 0 else (y1 - 0.04, y1)
            lx0, lx1 = (xf - dw, xf - CASING_D) if side == 0 else (xf + CASING_D, xf + dw)
            door_mesh.box((lx0, ly0, 0.01), (lx1, ly1, top - 0.01), ttile)
    if door_mesh.f:
        meshes["Door"] = door_mesh
    return meshes


def _door_zones(room_idx: int, doors: list[Door]) -> list[ORect]:
    """Clearance rectangles in front of this room's door openings (world plan)."""
    zones = []
    for door in doors:
        y0, y1 = door.y0 - DOOR_ZONE_SIDE, door.y1 + DOOR_ZONE_SIDE
        if door.left == room_idx:
            zones.append(aabb(door.xa - DOOR_ZONE_DEPTH, y0, door.xa, y1))
        elif door.right == room_idx:
            zones.append(aabb(door.xa + door.t, y0, door.xa + door.t + DOOR_ZONE_DEPTH, y1))
    return zones


# ----------------------------------------------------------------------------------------------
# model library and placement


class ModelLibrary:
    """Furniture models of one run: ``MODEL_VARIANTS`` variants per kind, built on first use."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.cache: dict[tuple[str, int], fm.FurnitureModel] = {}

    def get(self, kind: str, rng: np.random.Generator) -> fm.FurnitureModel:
        """A variant of ``kind`` chosen with ``rng`` (the same variant object is shared by houses)."""
        key = (kind, int(rng.integers(MODEL_VARIANTS)))
        if key not in self.cache:
            self.cache[key] = fm.build_model(kind, self.seed, key[1])
        return self.cache[key]


@dataclass
class Placed:
    """A placed item: model, world plan centre (cx, cy), base height z0, facing angle phi (world plan,
    radians; the model's +Z front looks along (cos phi, sin phi)), scale (sx, sy, sz) in the model frame."""

    model: fm.FurnitureModel
    cx: float
    cy: float
    z0: float
    phi: float
    scale: tuple[float, float, float]
    rects: list[ORect]
    zlo: float
    zhi: float
    fault: str = ""

    def front_pose(self) -> tuple[list[float], list[float]]:
        """(pos, rot) in the 3D-FRONT frame: pos = (cx, z0, -cy), rot = yaw quaternion [x, y, z, w]."""
        theta = math.atan2(math.cos(self.phi), -math.sin(self.phi))
        return [_r(self.cx), _r(self.z0), _r(-self.cy)], [_r(c, 7) for c in fm.yaw_quaternion(theta)]

    def local_to_world(self, lx: float, lz: float) -> tuple[float, float]:
        """World plan point of the model-frame point (lx, ·, lz) (scaled)."""
        f = (math.cos(self.phi), math.sin(self.phi))
        a = (-f[1], f[0])
        x, z = lx * self.scale[0], lz * self.scale[2]
        return self.cx + a[0] * x + f[0] * z, self.cy + a[1] * x + f[1] * z


def _item_rects(model: fm.FurnitureModel, cx: float, cy: float, phi: float, scale) -> list[ORect]:
    f = (math.cos(phi), math.sin(phi))
    a = (-f[1], f[0])
    out = []
    for x0, z0, x1, z1 in model.footprint_rects():
        lx, lz = (x0 + x1) / 2 * scale[0], (z0 + z1) / 2 * scale[2]
        out.append(
            ORect(
                cx + a[0] * lx + f[0] * lz,
                cy + a[1] * lx + f[1] * lz,
                a[0],
                a[1],
                (x1 - x0) / 2 * scale[0],
                (z1 - z0) / 2 * scale[2],
            )
        )
    return out


class Planner:
    """Places items in one room without overlaps (oriented footprints + height ranges), inside the
    room polygon (its rectangle minus the notch, ``WALL_GAP`` from walls) and out of door zones."""

    def __init__(self, room: RoomPlan, zones: list[ORect], rng: np.random.Generator) -> None:
        self.room = room
        self.rng = rng
        self.placed: list[Placed] = []
        self.blocked: list[tuple[ORect, float, float]] = [(z, -1.0, 99.0) for z in zones]
        if room.notch is not None:
            self.blocked.append((aabb(*room.notch).grown(WALL_GAP), -1.0, 99.0))
        self.edges = room.edges()

    def fits(self, rects: list[ORect], zlo: float, zhi: float, wall_gap: float = WALL_GAP) -> bool:
        r = self.room
        for rect in rects:
            c = rect.corners()
            if (
                c[:, 0].min() < r.x0 + wall_gap - 1e-9
                or c[:, 0].max() > r.x1 - wall_gap + 1e-9
                or c[:, 1].min() < r.y0 + wall_gap - 1e-9
                or c[:, 1].max() > r.y1 - wall_gap + 1e-9
            ):
                return False
            for other, lo, hi in self.blocked:
                if rects_overlap(rect.grown(ITEM_GAP) if hi < 99 else rect, other) and zlo < hi and lo < zhi:
                    return False
        return zlo >= 0 and zhi <= r.height

    def try_place(
        self,
        model: fm.FurnitureModel,
        cx: float,
        cy: float,
        phi: float,
        z0: float = 0.0,
        scale=(1.0, 1.0, 1.0),
        wall_gap: float = WALL_GAP,
        fault: str = "",
    ) -> Placed | None:
        """Place ``model`` at world plan (cx, cy), facing phi, base height z0 if it fits; else None."""
        scale = tuple(float(s) for s in scale)
        rects = _item_rects(model, cx, cy, phi, scale)
        zhi = z0 + model.size[1] * max(scale[1], 1e-3)
        if not self.fits(rects, z0, zhi, wall_gap):
            return None
        p = Placed(model, cx, cy, z0, phi, scale, rects, z0, zhi, fault)  # type: ignore[arg-type]
        self.placed.append(p)
        self.blocked += [(rc, z0, zhi) for rc in rects]
        return p

    def _scale(self) -> tuple[float, float, float]:
        if self.rng.random() < 0.3:
            s = float(self.rng.uniform(0.92, 1.08))
            return (round(s, 3), round(float(self.rng.uniform(0.95, 1.05)), 3), round(s, 3))
        return (1.0, 1.0, 1.0)

    def wall_poses(
        self,
        model: fm.FurnitureModel,
        scale,
        gap: float,
        tries: int = 40,
        edge_filter: Callable[[np.ndarray], bool] | None = None,
        s_hint: Callable[[int], float | None] | None = None,
    ) -> Iterator[tuple[float, float, float]]:
        """Candidate (cx, cy, phi) with the model's back against a wall, facing into the room."""
        hw = model.size[0] * scale[0] / 2
        hd = model.size[2] * scale[2] / 2
        ok = [i for i, e in enumerate(self.edges) if e[3] > 2 * hw + 0.1 and (edge_filter is None or edge_filter(e[2]))]
        if not ok:
            return
        weights = np.array([self.edges[i][3] for i in ok])
        for _ in range(tries):
            i = ok[int(self.rng.choice(len(ok), p=weights / weights.sum()))]
            a, d, n, length = self.edges[i]
            s = s_hint(i) if s_hint is not None else None
            if s is None:
                s = float(self.rng.uniform(hw + 0.05, length - hw - 0.05))
            q = a + d * s + n * (hd + gap)
            yield float(q[0]), float(q[1]), math.atan2(n[1], n[0])

    def place_wall(self, model, z0: float = 0.0, gap: float = WALL_GAP, tries: int = 40, **kw) -> Placed | None:
        """Place ``model`` against some wall (back to the wall), or None."""
        scale = self._scale() if model.mount == "floor" else (1.0, 1.0, 1.0)
        for cx, cy, phi in self.wall_poses(model, scale, gap, tries, **kw):
            p = self.try_place(model, cx, cy, phi, z0, scale, wall_gap=min(gap, WALL_GAP) - 1e-6)
            if p is not None:
                return p
        return None

    def place_free(self, model, tries: int = 60, z0: float | None = None, yaw: float | None = None) -> Placed | None:
        """Place ``model`` anywhere in the room with a random yaw (ceiling items hang under the ceiling)."""
        r = self.room
        scale = self._scale() if model.mount == "floor" else (1.0, 1.0, 1.0)
        if z0 is None:
            z0 = r.height - model.size[1] - 0.001 if model.mount == "ceiling" else 0.0
        for _ in range(tries):
            cx = float(self.rng.uniform(r.x0 + 0.3, r.x1 - 0.3))
            cy = float(self.rng.uniform(r.y0 + 0.3, r.y1 - 0.3))
            phi = float(self.rng.uniform(-math.pi, math.pi)) if yaw is None else yaw
            p = self.try_place(model, cx, cy, phi, z0, scale)
            if p is not None:
                return p
        return None

    def place_at(
        self, model, points: list[tuple[float, float, float]], z0: float = 0.0, wall_gap: float = WALL_GAP
    ) -> Placed | None:
        """Place ``model`` at the first fitting candidate (cx, cy, phi)."""
        scale = self._scale() if model.mount == "floor" else (1.0, 1.0, 1.0)
        for cx, cy, phi in points:
            p = self.try_place(model, cx, cy, phi, z0, scale, wall_gap=wall_gap)
            if p is not None:
                return p
        return None

    def corner_points(self, model, n: int = 12) -> list[tuple[float, float, float]]:
        """Candidates near convex room corners, random yaw."""
        p = self.room.polygon
        r = max(model.size[0], model.size[2]) * 0.75 + WALL_GAP + 0.05
        out = []
        for i in range(len(p)):
            d0 = p[i] - p[i - 1]
            d1 = p[(i + 1) % len(p)] - p[i]
            if d0[0] * d1[1] - d0[1] * d1[0] <= 0:
                continue
            inward = -d0 / np.linalg.norm(d0) + d1 / np.linalg.norm(d1)
            q = p[i] + inward * (r + float(self.rng.uniform(0, 0.15)))
            out.append((float(q[0]), float(q[1]), float(self.rng.uniform(-math.pi, math.pi))))
        order = self.rng.permutation(len(out))
        return [out[k] for k in order][:n]


def _facing(p: Placed) -> tuple[np.ndarray, np.ndarray]:
    f = np.array([math.cos(p.phi), math.sin(p.phi)])
    return f, np.array([-f[1], f[0]])


def _art_height(rng, model, lo: float = 1.4, hi: float = 1.8, floor: float = 0.0) -> float:
    return max(float(rng.uniform(lo, hi)) - model.size[1] / 2, floor)


def _furnish_bedroom(pl: Planner, lib: ModelLibrary, rng: np.random.Generator) -> None:
    room = pl.room
    single = room.type == "SecondBedroom" and rng.random() < 0.6
    bed_m = lib.get("single_bed" if single else "double_bed", rng)
    bed = pl.place_wall(bed_m, tries=80, s_hint=lambda i: pl.edges[i][3] / 2 if rng.random() < 0.6 else None)
    if bed is not None:
        f, a = _facing(bed)
        hw, hd = bed_m.size[0] * bed.scale[0] / 2, bed_m.size[2] * bed.scale[2] / 2
        back = np.array([bed.cx, bed.cy]) - f * hd
        ns = lib.get("nightstand", rng)
        for side in (-1, 1):
            if rng.random() < 0.85:
                c = back + f * (ns.size[2] / 2 + 0.01) + a * side * (hw + 0.06 + ns.size[0] / 2)
                pl.place_at(ns, [(float(c[0]), float(c[1]), bed.phi)])
        if rng.random() < 0.7:  # art above the headboard on the same wall
            art = lib.get("art", rng)
            c = back - f * (WALL_GAP - 0.005 - art.size[2] / 2)
            z0 = _art_height(rng, art, floor=bed.zhi + 0.1)
            if z0 + art.size[1] < room.height - 0.1:
                pl.place_at(art, [(float(c[0]), float(c[1]), bed.phi)], z0=z0, wall_gap=0.004)
        if rng.random() < 0.4:  # bed end stool
            st = lib.get("stool", rng)
            c = np.array([bed.cx, bed.cy]) + f * (hd + 0.08 + st.size[2] / 2)
            pl.place_at(st, [(float(c[0]), float(c[1]), bed.phi + float(rng.uniform(-0.3, 0.3)))])
    pl.place_wall(lib.get("wardrobe", rng), tries=60)
    _place_lamp(pl, lib, rng, "ceiling_lamp" if rng.random() < 0.6 else "pendant_lamp")
    mir = lib.get("mirror", rng)
    pl.place_wall(mir, z0=_art_height(rng, mir, 1.3, 1.6, 0.5), gap=0.005)
    if rng.random() < 0.5:
        desk = pl.place_wall(lib.get("desk", rng))
        if desk is not None:
            f, _ = _facing(desk)
            ch = lib.get("dining_chair", rng)
            c = np.array([desk.cx, desk.cy]) + f * (desk.model.size[2] * desk.scale[2] / 2 + 0.06 + ch.size[2] / 2)
            pl.place_at(ch, [(float(c[0]), float(c[1]), desk.phi + math.pi + float(rng.uniform(-0.35, 0.35)))])
    optional = [
        ("bookcase", 0.3),
        ("cabinet", 0.3),
        ("dressing_table", 0.25 if room.type != "SecondBedroom" else 0),
        ("children_cabinet", 0.6 if room.type == "SecondBedroom" else 0.1),
    ]
    for kind, prob in optional:
        if rng.random() < prob:
            pl.place_wall(lib.get(kind, rng))
    if rng.random() < 0.5:
        pl.place_at(lib.get("plant", rng), pl.corner_points(lib.get("plant", rng)))
    if rng.random() < 0.35:
        m = lib.get("armchair", rng)
        pl.place_at(m, pl.corner_points(m)) or pl.place_free(m)
    if rng.random() < 0.3:
        pl.place_free(lib.get("stool", rng))
    if rng.random() < 0.5:
        art = lib.get("art", rng)
        pl.place_wall(art, z0=_art_height(rng, art), gap=0.005)


def _place_lamp(pl: Planner, lib: ModelLibrary, rng, kind: str, over: Placed | None = None) -> Placed | None:
    m = lib.get(kind, rng)
    z0 = pl.room.height - m.size[1] - 0.001
    if over is not None:
        return pl.place_at(m, [(over.cx, over.cy, float(rng.uniform(-math.pi, math.pi)))], z0=z0)
    r = pl.room
    cands = []
    for _ in range(20):  # near the centre of the main part of the room
        cx = (r.x0 + r.x1) / 2 + float(rng.normal(0, 0.4))
        cy = (r.y0 + r.y1) / 2 + float(rng.normal(0, 0.4))
        cands.append((cx, cy, float(rng.uniform(-math.pi, math.pi))))
    return pl.place_at(m, cands, z0=z0) or pl.place_free(m, z0=z0)


def _furnish_living(pl: Planner, lib: ModelLibrary, rng: np.random.Generator) -> None:
    room = pl.room
    sofa_m = lib.get("l_sofa" if rng.random() < 0.45 else "sofa", rng)
    sofa = pl.place_wall(sofa_m, tries=80)
    table = None
    if sofa is not None:
        f, a = _facing(sofa)
        tt = lib.get("tea_table", rng)
        rects = sofa_m.footprint_rects()
        x0, z0, x1, z1 = rects[0]  # the seat row (the whole sofa for a straight one)
        lx, lz = (x0 + x1) / 2, z1 + 0.4 + tt.size[2] / 2
        cx, cy = sofa.local_to_world(lx, lz)
        table = pl.place_at(tt, [(cx, cy, sofa.phi), (cx + f[0] * 0.1, cy + f[1] * 0.1, sofa.phi)])
        centre = np.array([table.cx, table.cy]) if table else np.array(sofa.local_to_world(lx, lz))
        for side in (-1, 1):
            if rng.random() < 0.65:
                ac = lib.get("armchair", rng)
                cands = []
                for _ in range(8):
                    ang = float(rng.uniform(0.35, 0.9)) * side
                    dirv = a * math.cos(ang) * side + f * math.sin(abs(ang))
                    c = centre + dirv * (0.45 + tt.size[0] / 2 + ac.size[2] / 2 + float(rng.uniform(0, 0.3)))
                    to_table = centre - c
                    cands.append((float(c[0]), float(c[1]), math.atan2(to_table[1], to_table[0])))
                pl.place_at(ac, cands)
        ends = [
            sofa.local_to_world(sign * (sofa_m.size[0] / 2 + 0.3), sofa_m.footprint_rects()[0][1] + 0.3)
            for sign in (-1, 1)
        ]
        if rng.random() < 0.6:
            lamp = lib.get("floor_lamp", rng)
            pl.place_at(lamp, [(x, y, float(rng.uniform(-math.pi, math.pi))) for x, y in ends])
        if rng.random() < 0.5:
            st = lib.get("side_table", rng)
            pl.place_at(st, [(x, y, sofa.phi) for x, y in ends])
        # TV stand + TV on the opposite wall
        tv_kind = "media_unit" if rng.random() < 0.3 else "tv_stand"
        stand_m = lib.get(tv_kind, rng)

        def s_hint(i: int) -> float | None:
            a0, d0, _, _ = pl.edges[i]
            return float(np.dot(np.array([sofa.cx, sofa.cy]) - a0, d0)) + float(rng.normal(0, 0.2))

        stand = pl.place_wall(stand_m, edge_filter=lambda n: float(n @ f) < -0.7, s_hint=s_hint, tries=10)
        stand = stand or pl.place_wall(stand_m)
        if stand is not None and tv_kind == "tv_stand":
            tv = lib.get("tv", rng)
            sf, _ = _facing(stand)
            back = np.array([stand.cx, stand.cy]) - sf * (stand_m.size[2] * stand.scale[2] / 2 + WALL_GAP)
            c = back + sf * (0.005 + tv.size[2] / 2)
            pl.place_at(
                tv,
                [(float(c[0]), float(c[1]), stand.phi)],
                z0=stand.zhi + float(rng.uniform(0.15, 0.35)),
                wall_gap=0.004,
            )
        else:
            tv = lib.get("tv", rng)
            pl.place_wall(tv, z0=float(rng.uniform(0.9, 1.1)), gap=0.005)
    _place_lamp(pl, lib, rng, "pendant_lamp", over=table) or _place_lamp(pl, lib, rng, "ceiling_lamp")
    if room.type == "LivingDiningRoom":
        _dining(pl, lib, rng)
    for _ in range(int(rng.integers(1, 3))):
        m = lib.get("plant", rng)
        pl.place_at(m, pl.corner_points(m))
    for kind, prob in (("bookcase", 0.5), ("cabinet", 0.5), ("stool", 0.5)):
        if rng.random() < prob:
            if kind == "stool":
                pl.place_free(lib.get(kind, rng))
            else:
                pl.place_wall(lib.get(kind, rng))
    for _ in range(int(rng.integers(1, 3))):
        art = lib.get("art", rng)
        pl.place_wall(art, z0=_art_height(rng, art), gap=0.005)
    mir = lib.get("mirror", rng)
    pl.place_wall(mir, z0=_art_height(rng, mir, 1.3, 1.6, 0.5), gap=0.005)
    if rng.random() < 0.4:
        _place_lamp(pl, lib, rng, "ceiling_lamp")


def _dining(pl: Planner, lib: ModelLibrary, rng: np.random.Generator) -> None:
    tm = lib.get("dining_table", rng)
    chair = lib.get("dining_chair", rng)
    need = tm.size[2] / 2 + 0.05 + chair.size[2]
    for _ in range(40):
        r = pl.room
        cx = float(rng.uniform(r.x0 + need + 0.2, r.x1 - need - 0.2))
        cy = float(rng.uniform(r.y0 + need + 0.2, r.y1 - need - 0.2))
        phi = float(rng.choice([0, math.pi / 2])) + float(rng.uniform(-0.4, 0.4))
        table = pl.try_place(tm, cx, cy, phi, 0.0)
        if table is None:
            continue
        f, a = _facing(table)
        n_side = max(1, int(tm.size[0] // 0.62))
        for side in (-1, 1):
            for k in range(n_side):
                lx = (k - (n_side - 1) / 2) * tm.size[0] / n_side
                c = np.array([cx, cy]) + a * lx + f * side * (tm.size[2] / 2 + 0.05 + chair.size[2] / 2)
                pl.place_at(chair, [(float(c[0]), float(c[1]), table.phi + (math.pi if side > 0 else 0.0))])
        _place_lamp(pl, lib, rng, "pendant_lamp", over=table)
        return


# ----------------------------------------------------------------------------------------------
# writing


def _dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n"


def _texture_jid(seed: int, kind: str, variant: int) -> str:
    return fm.jid_for(seed, f"texture/{kind}", variant)


@dataclass
class HouseResult:
    """What one house contributed: its uid and file, rooms and furniture by type, faults."""

    uid: str
    path: Path
    rooms: Counter
    furniture: Counter
    faults: list[dict]
    files_written: int
    faults_dropped: list[dict] = field(default_factory=list)


class _Writer:
    """Writes model and texture folders once per run (atomically, before the house JSON)."""

    def __init__(self, out: Path, seed: int) -> None:
        self.out = out
        self.seed = seed
        self.files = 0

    def model(self, model: fm.FurnitureModel, truncate: bool = False) -> Path:
        folder = self.out / "3D-FUTURE-model" / model.jid
        if folder.exists():
            return folder
        with atomic_path(folder) as tmp:
            fm.write_model(model, tmp)
            if truncate:
                obj = tmp / "raw_model.obj"
                text = obj.read_text()
                start = text.index("\nf ", int(len(text) * 0.6)) + 1  # a face line in the last 40 %
                end = text.index("\n", start)
                obj.write_text(text[:(start + end) // 2], newline="\n")  # cut in the middle of that line
        self.files += 4
        return folder

    def texture(self, kind: str, variant: int) -> str:
        jid = _texture_jid(self.seed, kind, variant)
        folder = self.out / "3D-FRONT-texture" / jid
        if not folder.exists():
            with atomic_path(folder) as tmp:
                tmp.mkdir(parents=True)
                tx.write_png(
                    tx.make_texture(kind, tx.rng_for(self.seed, "texture", kind, variant)), tmp / "texture.png"
                )
            self.files += 1
        return jid


def _house(
    out: Path,
    seed: int,
    index: int,
    lib: ModelLibrary,
    writer: _Writer,
    rooms_per_house: tuple[int, int],
    faults: tuple[str, ...],
) -> HouseResult:
    rng = tx.rng_for(seed, "house", index)
    uid = f"synth-{seed}-{index:04d}"
    n_rooms = int(rng.integers(rooms_per_house[0], rooms_per_house[1] + 1))
    plans, doors, _ = _plan_house(rng, n_rooms, index)
    # textures: chosen per room from the run's pool
    for room in plans:
        room.floor_tex = str(rng.choice(tx.FLOOR_KINDS[:3] if room.type.startswith("Living") else tx.FLOOR_KINDS))
        room.wall_tex = str(rng.choice(tx.WALL_KINDS))
        room.ceiling_tex = str(rng.choice(tx.CEILING_KINDS))
        room.trim_tex = str(rng.choice(tx.TRIM_KINDS))
    planners = []
    for i, room in enumerate(plans):
        pl = Planner(room, _door_zones(i, doors), rng)
        (_furnish_living if room.type.startswith("Living") else _furnish_bedroom)(pl, lib, rng)
        planners.append(pl)

    fault_records: list[dict] = []
    extra: list[tuple[int, Placed, dict]] = []  # (room index, placement, overrides)
    dropped: list[dict] = []
    frng = tx.rng_for(seed, "faults", index)  # faults never change the clean part of a house
    for k, kind in enumerate(faults):
        base_kind = ("armchair", "cabinet", "plant", "stool", "side_table", "nightstand")[k % 6]
        model = lib.get(base_kind, frng)
        if kind in ("missing_model", "truncated_obj"):
            model = fm.build_model(
                base_kind, seed, 1000 + index * 10 + k, jid=fm.jid_for(seed, f"fault/{kind}/{index}", k)
            )
        first = int(frng.integers(len(plans)))
        for j in range(len(plans)):  # a free spot in some room: the item is broken, not misplaced
            ri = (first + j) % len(plans)
            pl = planners[ri]
            pl.rng = frng
            p = pl.place_free(model, tries=100) or pl.place_wall(model, tries=60)
            if p is not None:
                pl.placed.remove(p)
                extra.append((ri, p, {"fault": kind}))
                break
        else:
            dropped.append({"kind": kind, "house": uid, "reason": "no free spot in any room"})

    materials: list[dict] = []
    meshes: list[dict] = []
    furniture: list[dict] = []
    rooms_json: list[dict] = []
    fur_uid: dict[str, str] = {}
    counter = {"mesh": 0, "fur": 0, "inst": 0}
    furniture_counts: Counter = Counter()

    def furniture_entry(model: fm.FurnitureModel, category: str | None = None, valid: bool = True) -> str:
        key = model.jid if category is None and valid else f"{model.jid}/{category}/{valid}/{counter['fur']}"
        if key in fur_uid:
            return fur_uid[key]
        counter["fur"] += 1
        uid_f = f"{1000 + counter['fur']}/model"
        cat = category or model.category
        furniture.append(
            {
                "uid": uid_f,
                "jid": model.jid,
                "title": cat,
                "category": cat,
                "size": [_r(s) for s in model.size],
                "valid": bool(valid),
            }
        )
        fur_uid[key] = uid_f
        return uid_f

    def child(ref: str, pos, rot, scale) -> dict:
        counter["inst"] += 1
        return {
            "ref": ref,
            "instanceid": f"furniture/{counter['inst']}" if "/model" in ref else f"mesh/{counter['inst']}",
            "pos": pos,
            "rot": rot,
            "scale": [_r(s) for s in scale],
        }

    tex_variant = {}
    for ri, room in enumerate(plans):
        children = []
        for surf, kind in (
            ("Floor", room.floor_tex),
            ("WallInner", room.wall_tex),
            ("Ceiling", room.ceiling_tex),
            ("Baseboard", room.trim_tex),
            ("Door", room.trim_tex),
        ):
            if (surf, ri) not in tex_variant:
                tex_variant[(surf, ri)] = (kind, int(rng.integers(TEXTURE_VARIANTS)))
        for surf, mesh in _room_arch(ri, room, doors).items():
            kind, var = tex_variant[(surf, ri)]
            mat_uid = f"material/{ri}/{surf}"
            materials.append(
                {"uid": mat_uid, "jid": writer.texture(kind, var), "texture": "", "color": [255, 255, 255, 255]}
            )
            counter["mesh"] += 1
            m_uid = f"{5000 + counter['mesh']}/{counter['mesh']}"
            xyz, nrm, uv, faces = mesh.front_arrays()
            meshes.append(
                {
                    "uid": m_uid,
                    "jid": "",
                    "type": surf,
                    "xyz": xyz,
                    "normal": nrm,
                    "uv": uv,
                    "faces": faces,
                    "material": mat_uid,
                }
            )
            children.append(child(m_uid, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], (1.0, 1.0, 1.0)))
        for p in planners[ri].placed:
            writer.model(p.model)
            pos, rot = p.front_pose()
            children.append(child(furniture_entry(p.model), pos, rot, p.scale))
            furniture_counts[p.model.category] += 1
        for rj, p, over in extra:
            if rj != ri:
                continue
            kind = over["fault"]
            pos, rot = p.front_pose()
            rec = {"kind": kind, "house": uid, "room": room.instanceid, "jid": p.model.jid}
            scale = p.scale
            if kind == "missing_model":
                rec["path"] = f"3D-FUTURE-model/{p.model.jid}"
                ref = furniture_entry(p.model)
            elif kind == "truncated_obj":
                writer.model(p.model, truncate=True)
                rec["path"] = f"3D-FUTURE-model/{p.model.jid}/raw_model.obj"
                ref = furniture_entry(p.model)
            else:
                writer.model(p.model)
                if kind == "unknown_category":
                    ref = furniture_entry(p.model, category=UNKNOWN_CATEGORY)
                    rec["category"] = UNKNOWN_CATEGORY
                elif kind == "invalid":
                    ref = furniture_entry(p.model, category=p.model.category, valid=False)
                else:
                    ref = furniture_entry(p.model)
                if kind == "degenerate_scale":
                    scale = (p.scale[0], 0.0, p.scale[2])
            c = child(ref, pos, rot, scale)
            if kind == "duplicate_instanceid":
                dup = next((ch for ch in children if ch["ref"].endswith("/model")), children[0])
                c["instanceid"] = dup["instanceid"]
                rec["instanceid"] = dup["instanceid"]
            else:
                rec["instanceid"] = c["instanceid"]
            rec["furniture_uid"] = ref
            children.append(c)
            furniture_counts[UNKNOWN_CATEGORY if kind == "unknown_category" else p.model.category] += 1
            fault_records.append(rec)
        rooms_json.append(
            {
                "type": room.type,
                "instanceid": room.instanceid,
                "size": _r(room.area, 3),
                "pos": [0.0, 0.0, 0.0],
                "rot": [0.0, 0.0, 0.0, 1.0],
                "scale": [1.0, 1.0, 1.0],
                "children": children,
            }
        )
    house = {"uid": uid, "furniture": furniture, "mesh": meshes, "material": materials, "scene": {"room": rooms_json}}
    path = out / "3D-FRONT" / f"{uid}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(_dumps(house), encoding="utf-8", newline="\n")
    return HouseResult(uid, path, Counter(r.type for r in plans), furniture_counts, fault_records, 0, dropped)


def _fault_plan(houses: int) -> list[tuple[str, ...]]:
    """Which fault kinds go into which house: every other house (0, 2, ...) gets some, all kinds used."""
    faulty = list(range(0, houses, 2)) or [0]
    per: list[list[str]] = [[] for _ in range(houses)]
    for k, kind in enumerate(FAULT_KINDS):
        per[faulty[k % len(faulty)]].append(kind)
    return [tuple(p) for p in per]


def synthesize(
    out: Path,
    houses: int,
    seed: int,
    *,
    with_faults: bool = False,
    rooms_per_house: tuple[int, int] = (2, 3),
    progress: Callable[[HouseResult], None] | None = None,
) -> list[Path]:
    """Write ``houses`` synthetic houses for ``seed`` into the FRONT_ROOT-style folder ``out``.

    Args:
        out: output root; gets ``3D-FRONT/``, ``3D-FUTURE-model/``, ``3D-FRONT-texture/`` and
            ``synth_report.json``.
        houses: number of houses (house uids ``synth-<seed>-0000``...).
        seed: everything (layout, furniture, textures, ids) is a function of the seed: the same
            seed writes the same bytes; house ``i`` does not depend on ``houses``.
        with_faults: add deliberately broken items (see :data:`FAULT_KINDS`) to houses 0, 2, 4...,
            each kind at least once, listed in ``synth_report.json``.
        rooms_per_house: inclusive range of rooms per house (each house has one living room and
            bedrooms; at least 1 room).
        progress: called with each house's :class:`HouseResult` when it is written.

    Returns:
        The paths of the house JSON files, in house order. Geometry in the files is in the
        3D-FRONT frame (Y up, metres); model folders are written before the JSON that refers to
        them and the JSON is renamed into place atomically.
    """
    out = Path(out)
    if houses < 0:
        raise ValueError("houses must be >= 0")
    lo, hi = int(rooms_per_house[0]), int(rooms_per_house[1])
    if not 1 <= lo <= hi <= 3:
        raise ValueError(f"rooms_per_house must satisfy 1 <= lo <= hi <= 3, got {rooms_per_house}")
    for sub in ("3D-FRONT", "3D-FUTURE-model", "3D-FRONT-texture"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    lib = ModelLibrary(seed)
    writer = _Writer(out, seed)
    plan = _fault_plan(houses) if with_faults and houses > 0 else [()] * houses
    results = []
    for i in range(houses):
        files_before = writer.files
        res = _house(out, seed, i, lib, writer, (lo, hi), plan[i])
        res.files_written = writer.files - files_before + 1
        results.append(res)
        if progress is not None:
            progress(res)
    rooms = sum((r.rooms for r in results), Counter())
    fur = sum((r.furniture for r in results), Counter())
    report = {
        "seed": seed,
        "houses": [r.uid for r in results],
        "with_faults": bool(with_faults),
        "rooms_by_type": dict(sorted(rooms.items())),
        "furniture_by_category": dict(sorted(fur.items())),
        "files_written": sum(r.files_written for r in results) + 1,
        "faults": [f for r in results for f in r.faults],
        "faults_dropped": [f for r in results for f in r.faults_dropped],
    }
    with atomic_path(out / REPORT_NAME) as tmp:
        tmp.write_text(json.dumps(report, sort_keys=True, indent=1) + "\n", encoding="utf-8", newline="\n")
    return [r.path for r in results]
