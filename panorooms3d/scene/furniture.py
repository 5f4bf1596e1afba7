"""Procedural low-poly furniture models in the 3D-FUTURE model frame.

Model frame (as 3D-FUTURE ``raw_model.obj``): metres, **Y up**, origin at the bottom centre of
the bounding box (min y = 0, x and z centred), the front of the object facing **+Z** (a bed's
headboard and a sofa's back are at -Z). Each model is a composition of boxes, cylinders, cones
and spheres (a few hundred triangles) with per-vertex normals and UVs into a 2x2 texture atlas
(:func:`panorooms3d.scene.textures.furniture_atlas`): slot 0 = main material, 1 = upholstery or
secondary, 2 = accents (legs, handles), 3 = special (picture, glass, leaves, screen).

Every category string used here is a raw 3D-FRONT category (``panorooms3d.taxonomy.raw_id``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from panorooms3d.scene import textures

STYLES = ("Modern", "Nordic", "Industrial", "Minimalist", "Light Luxury", "Japanese", "Chinoiserie")


class MeshBuilder:
    """Accumulates triangles with per-vertex normals and atlas UVs (model frame, metres)."""

    def __init__(self) -> None:
        self.v: list[np.ndarray] = []
        self.n: list[np.ndarray] = []
        self.uv: list[np.ndarray] = []
        self.f: list[np.ndarray] = []
        self.count = 0

    @staticmethod
    def _slot_uv(slot: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Map face coordinates a, b in [0, 1] into atlas slot ``slot`` (OBJ v up, small inset)."""
        u0 = 0.5 * (slot % 2)
        v0 = 0.5 * (1 - slot // 2)
        return np.stack([u0 + 0.02 + 0.46 * np.clip(a, 0, 1), v0 + 0.02 + 0.46 * np.clip(b, 0, 1)], axis=-1)

    def add(self, verts, normals, uvs, faces) -> None:
        """Append raw arrays: verts (V,3), normals (V,3), uvs (V,2), faces (F,3) local indices."""
        verts = np.asarray(verts, np.float64).reshape(-1, 3)
        self.v.append(verts)
        self.n.append(np.asarray(normals, np.float64).reshape(-1, 3))
        self.uv.append(np.asarray(uvs, np.float64).reshape(-1, 2))
        self.f.append(np.asarray(faces, np.int64).reshape(-1, 3) + self.count)
        self.count += len(verts)

    def quad(self, corners, normal, slot: int) -> None:
        """A planar quad (4 corners in order around it), wound counter-clockwise seen along -normal."""
        c = np.asarray(corners, np.float64)
        nrm = np.asarray(normal, np.float64)
        faces = np.array([[0, 1, 2], [0, 2, 3]])
        if np.dot(np.cross(c[1] - c[0], c[2] - c[0]), nrm) < 0:
            faces = faces[:, ::-1]
        uv = self._slot_uv(slot, np.array([0, 1, 1, 0.0]), np.array([0, 0, 1, 1.0]))
        self.add(c, np.repeat(nrm[None], 4, 0), uv, faces)

    def box(self, lo, hi, slot: int = 0) -> None:
        """An axis-aligned box from corner ``lo`` to ``hi`` (12 triangles, flat normals)."""
        (x0, y0, z0), (x1, y1, z1) = lo, hi
        self.quad([(x1, y0, z0), (x1, y1, z0), (x1, y1, z1), (x1, y0, z1)], (1, 0, 0), slot)
        self.quad([(x0, y0, z0), (x0, y0, z1), (x0, y1, z1), (x0, y1, z0)], (-1, 0, 0), slot)
        self.quad([(x0, y1, z0), (x0, y1, z1), (x1, y1, z1), (x1, y1, z0)], (0, 1, 0), slot)
        self.quad([(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)], (0, -1, 0), slot)
        self.quad([(x0, y0, z1), (x1, y0, z1), (x1, y1, z1), (x0, y1, z1)], (0, 0, 1), slot)
        self.quad([(x0, y0, z0), (x0, y1, z0), (x1, y1, z0), (x1, y0, z0)], (0, 0, -1), slot)

    def frustum(
        self, centre, r0: float, r1: float, height: float, slot: int = 0, segments: int = 10, caps: bool = True
    ) -> None:
        """A vertical cone frustum (cylinder if r0 == r1) standing on ``centre`` (x, y, z), radius r0 at the
        bottom and r1 at the top, metres."""
        cx, cy, cz = centre
        ang = np.linspace(0, 2 * np.pi, segments + 1)
        cos, sin = np.cos(ang), np.sin(ang)
        slope = (r0 - r1) / max(height, 1e-9)
        nrm = np.stack([cos, np.full_like(cos, slope), sin], -1)
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
        bot = np.stack([cx + r0 * cos, np.full_like(cos, cy), cz + r0 * sin], -1)
        top = np.stack([cx + r1 * cos, np.full_like(cos, cy + height), cz + r1 * sin], -1)
        verts = np.concatenate([bot, top])
        normals = np.concatenate([nrm, nrm])
        a = ang / (2 * np.pi)
        uv = np.concatenate([self._slot_uv(slot, a, np.zeros_like(a)), self._slot_uv(slot, a, np.ones_like(a))])
        m = segments + 1
        faces = []
        for i in range(segments):
            # outward: (bot_i, top_i, top_i+1) seen from outside is counter-clockwise.
            faces += [[i, m + i, m + i + 1], [i, m + i + 1, i + 1]]
        self.add(verts, normals, uv, faces)
        if caps:
            for y, r, up in ((cy, r0, -1.0), (cy + height, r1, 1.0)):
                if r <= 1e-6:
                    continue
                ring = np.stack([cx + r * cos[:-1], np.full(segments, y), cz + r * sin[:-1]], -1)
                cverts = np.concatenate([[[cx, y, cz]], ring])
                cuv = self._slot_uv(
                    slot, 0.5 + 0.5 * np.concatenate([[0], cos[:-1]]), 0.5 + 0.5 * np.concatenate([[0], sin[:-1]])
                )
                cf = [
                    [0, 1 + (i + 1) % segments, 1 + i] if up > 0 else [0, 1 + i, 1 + (i + 1) % segments]
                    for i in range(segments)
                ]
                self.add(cverts, np.repeat([[0.0, up, 0.0]], segments + 1, 0), cuv, cf)

    def sphere(
        self, centre, radius: float, slot: int = 3, rings: int = 5, segments: int = 8, squash: float = 1.0
    ) -> None:
        """A low-poly UV sphere (vertical radius ``radius * squash``) centred at ``centre``, metres."""
        cx, cy, cz = centre
        th = np.linspace(0, np.pi, rings + 1)
        ph = np.linspace(0, 2 * np.pi, segments + 1)
        th_g, ph_g = np.meshgrid(th, ph, indexing="ij")
        nrm = np.stack([np.sin(th_g) * np.cos(ph_g), np.cos(th_g), np.sin(th_g) * np.sin(ph_g)], -1).reshape(-1, 3)
        verts = nrm * np.array([radius, radius * squash, radius]) + np.array([cx, cy, cz])
        uv = self._slot_uv(slot, (ph_g / (2 * np.pi)).ravel(), (1 - th_g / np.pi).ravel())
        m = segments + 1
        faces = []
        for i in range(rings):
            for j in range(segments):
                a, b, c, d = i * m + j, i * m + j + 1, (i + 1) * m + j + 1, (i + 1) * m + j
                faces += [[a, b, c], [a, c, d]]
        faces = np.array(faces)
        # make every triangle face outwards
        tri = verts[faces]
        cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        outward = np.einsum("ij,ij->i", cross, tri.mean(axis=1) - np.array([cx, cy, cz]))
        faces[outward < 0] = faces[outward < 0][:, ::-1]
        keep = np.linalg.norm(cross, axis=1) > 1e-12
        self.add(verts, nrm, uv, faces[keep])

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(vertices (V,3), normals (V,3), uvs (V,2), faces (F,3)), recentred to the bottom centre."""
        v = np.concatenate(self.v)
        lo, hi = v.min(axis=0), v.max(axis=0)
        shift = np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2])
        return v - shift, np.concatenate(self.n), np.concatenate(self.uv), np.concatenate(self.f)


@dataclass
class FurnitureModel:
    """A procedural 3D-FUTURE-style model.

    Attributes:
        jid: the model id (folder name under ``3D-FUTURE-model``).
        kind: the generator name (a key of :data:`MODEL_KINDS`).
        category: raw 3D-FRONT category string.
        super_category: 3D-FUTURE super-category (``Bed``, ``Sofa``...).
        style: a 3D-FUTURE style string.
        mount: ``"floor"``, ``"wall"`` (back against a wall, hung) or ``"ceiling"``.
        vertices: (V, 3) model frame (Y up, metres, bottom centre origin, front +Z).
        normals: (V, 3) unit normals; uvs: (V, 2) atlas coordinates (v up); faces: (F, 3).
        texture: (S, S, 3) uint8 atlas.
    """

    jid: str
    kind: str
    category: str
    super_category: str
    style: str
    mount: str
    vertices: np.ndarray
    normals: np.ndarray
    uvs: np.ndarray
    faces: np.ndarray
    texture: np.ndarray

    @property
    def size(self) -> tuple[float, float, float]:
        """Bounding-box size (width x, height y, depth z) in metres, model frame."""
        ext = self.vertices.max(axis=0) - self.vertices.min(axis=0)
        return float(ext[0]), float(ext[1]), float(ext[2])

    def footprint_rects(self) -> list[tuple[float, float, float, float]]:
        """Floor-plan footprint as axis-aligned rectangles (xmin, zmin, xmax, zmax), model frame, metres.

        One rectangle (the bounding box) for most models; two for the L-shaped sofa (the seat row
        along the back and the chaise on the +X side), so a table can stand in the L's inner corner.
        """
        lo, hi = self.vertices.min(axis=0), self.vertices.max(axis=0)
        if self.kind != "l_sofa":
            return [(float(lo[0]), float(lo[2]), float(hi[0]), float(hi[2]))]
        v = self.vertices
        z_mid = lo[2] + 0.5 * (hi[2] - lo[2]) + 0.25
        x_c0 = float(v[v[:, 2] > z_mid, 0].min())  # the chaise is the only part reaching far forward
        z_row = float(v[v[:, 0] < x_c0 - 1e-4, 2].max())
        return [(float(lo[0]), float(lo[2]), x_c0, z_row), (x_c0, float(lo[2]), float(hi[0]), float(hi[2]))]

    def obj_text(self) -> str:
        """The model as Wavefront OBJ text (``v``/``vt``/``vn``/``f v/vt/vn``, 1-based, 5 decimals)."""
        lines = ["# panorooms3d synthetic 3D-FUTURE model", "mtllib raw_model.mtl", "o model"]
        lines += [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in self.vertices]
        lines += [f"vt {u:.5f} {v:.5f}" for u, v in self.uvs]
        lines += [f"vn {x:.5f} {y:.5f} {z:.5f}" for x, y, z in self.normals]
        lines.append("usemtl material_0")
        lines += [
            f"f {a + 1}/{a + 1}/{a + 1} {b + 1}/{b + 1}/{b + 1} {c + 1}/{c + 1}/{c + 1}" for a, b, c in self.faces
        ]
        return "\n".join(lines) + "\n"

    def info(self) -> dict:
        """The model's ``model_info.json`` content."""
        return {
            "model_id": self.jid,
            "category": self.category,
            "super-category": self.super_category,
            "style": self.style,
        }


MTL_TEXT = "newmtl material_0\nKa 1.0 1.0 1.0\nKd 1.0 1.0 1.0\nKs 0.0 0.0 0.0\nd 1.0\nillum 1\nmap_Kd texture.png\n"


def write_model(model: FurnitureModel, folder: Path) -> list[Path]:
    """Write ``raw_model.obj``, ``raw_model.mtl``, ``texture.png`` and ``model_info.json`` into ``folder``.

    Returns the paths written. The bytes depend only on the model (deterministic).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "raw_model.obj").write_text(model.obj_text(), encoding="utf-8", newline="\n")
    (folder / "raw_model.mtl").write_text(MTL_TEXT, encoding="utf-8", newline="\n")
    textures.write_png(model.texture, folder / "texture.png")
    (folder / "model_info.json").write_text(
        json.dumps(model.info(), sort_keys=True, indent=1) + "\n", encoding="utf-8", newline="\n"
    )
    return [folder / n for n in ("raw_model.obj", "raw_model.mtl", "texture.png", "model_info.json")]


# ----------------------------------------------------------------------------------------------
# builders: each takes a Generator and returns (MeshBuilder, atlas slot kinds)

Slots = tuple[str, str, str, str]


def _legs(
    mb: MeshBuilder, w: float, d: float, h: float, t: float, inset: float, slot: int = 2, round_legs: bool = False
) -> None:
    for sx in (-1, 1):
        for sz in (-1, 1):
            cx, cz = sx * (w / 2 - inset - t / 2), sz * (d / 2 - inset - t / 2)
            if round_legs:
                mb.frustum((cx, 0, cz), t / 2, t / 2, h, slot, segments=6, caps=False)
            else:
                mb.box((cx - t / 2, 0, cz - t / 2), (cx + t / 2, h, cz + t / 2), slot)


def _bed(rng: np.random.Generator, single: bool) -> tuple[MeshBuilder, Slots]:
    w = rng.uniform(0.9, 1.2) if single else rng.uniform(1.5, 1.9)
    d = rng.uniform(2.0, 2.2)
    fh = rng.uniform(0.25, 0.38)
    mh = rng.uniform(0.18, 0.25)
    hb = rng.uniform(0.85, 1.2)
    leg = rng.uniform(0.05, 0.12)
    mb = MeshBuilder()
    _legs(mb, w, d - 0.08, leg, 0.06, 0.04)
    mb.box((-w / 2, leg, -d / 2 + 0.08), (w / 2, fh, d / 2), 0)  # frame
    mb.box((-w / 2 + 0.03, fh, -d / 2 + 0.1), (w / 2 - 0.03, fh + mh, d / 2 - 0.03), 1)  # mattress
    mb.box((-w / 2, 0, -d / 2), (w / 2, hb, -d / 2 + 0.08), 0)  # headboard
    if rng.random() < 0.6:  # pillows
        n = 1 if single else 2
        pw = (w - 0.2) / n
        for i in range(n):
            x0 = -w / 2 + 0.1 + i * pw
            mb.box((x0 + 0.03, fh + mh, -d / 2 + 0.15), (x0 + pw - 0.03, fh + mh + 0.1, -d / 2 + 0.5), 3)
    if rng.random() < 0.5:  # blanket
        mb.box((-w / 2 + 0.02, fh + mh, 0.0), (w / 2 - 0.02, fh + mh + 0.04, d / 2 - 0.01), 3)
    return mb, ("wood", str(rng.choice(["fabric", "leather"])), "metal", "fabric")


def _nightstand(rng):
    w, h, d = rng.uniform(0.4, 0.55), rng.uniform(0.45, 0.6), rng.uniform(0.35, 0.45)
    leg = rng.uniform(0.0, 0.12)
    mb = MeshBuilder()
    if leg > 0.03:
        _legs(mb, w, d, leg, 0.03, 0.02)
    mb.box((-w / 2, max(leg, 0), -d / 2), (w / 2, h, d / 2 - 0.02), 0)
    n = int(rng.integers(1, 3))
    dh = (h - max(leg, 0) - 0.04) / n
    for i in range(n):
        y0 = max(leg, 0) + 0.02 + i * dh
        mb.box((-w / 2 + 0.02, y0 + 0.01, d / 2 - 0.02), (w / 2 - 0.02, y0 + dh - 0.01, d / 2), 1)
        mb.box((-0.04, y0 + dh / 2 - 0.01, d / 2), (0.04, y0 + dh / 2 + 0.01, d / 2 + 0.02), 2)
    return mb, ("wood", str(rng.choice(["wood", "painted"])), "metal", "wood")


def _wardrobe(rng):
    w, h, d = rng.uniform(0.9, 2.0), rng.uniform(2.0, 2.3), rng.uniform(0.55, 0.65)
    mb = MeshBuilder()
    mb.box((-w / 2, 0, -d / 2), (w / 2, 0.08, d / 2 - 0.03), 2)  # plinth
    mb.box((-w / 2, 0.08, -d / 2), (w / 2, h, d / 2 - 0.02), 0)
    doors = max(2, int(round(w / 0.5)))
    dw = w / doors
    for i in range(doors):
        x0 = -w / 2 + i * dw
        mb.box((x0 + 0.005, 0.1, d / 2 - 0.02), (x0 + dw - 0.005, h - 0.02, d / 2), 1)
        hx = x0 + dw - 0.06 if i % 2 == 0 else x0 + 0.04
        mb.box((hx, h * 0.45, d / 2), (hx + 0.02, h * 0.45 + 0.3, d / 2 + 0.025), 2)
    return mb, ("wood", str(rng.choice(["wood", "painted"])), "metal", "wood")


def _sofa_blocks(mb, x0, x1, z0, z1, seat_h, arm_h, back_h, back_t, arms, n_cush):
    """A straight sofa section from x0..x1 (back at z0, front at z1) with optional arms (-1, +1)."""
    mb.box((x0, 0.06, z0), (x1, seat_h - 0.12, z1), 0)  # base
    ax0 = x0 + (0.16 if -1 in arms else 0)
    ax1 = x1 - (0.16 if 1 in arms else 0)
    cw = (ax1 - ax0) / n_cush
    for i in range(n_cush):
        mb.box((ax0 + i * cw + 0.01, seat_h - 0.12, z0 + back_t), (ax0 + (i + 1) * cw - 0.01, seat_h, z1 - 0.01), 1)
    mb.box((x0, seat_h - 0.12, z0), (x1, back_h, z0 + back_t), 1)  # back
    for side in arms:
        xa = x0 if side < 0 else x1 - 0.16
        mb.box((xa, 0.06, z0), (xa + 0.16, arm_h, z1), 0)


def _sofa(rng):
    w, d = rng.uniform(1.9, 2.4), rng.uniform(0.8, 0.95)
    seat_h, arm_h, back_h = rng.uniform(0.4, 0.46), rng.uniform(0.55, 0.65), rng.uniform(0.75, 0.9)
    mb = MeshBuilder()
    _legs(mb, w, d, 0.06, 0.05, 0.05)
    _sofa_blocks(mb, -w / 2, w / 2, -d / 2, d / 2, seat_h, arm_h, back_h, 0.2, (-1, 1), 3)
    return mb, ("fabric", "fabric", "wood", "fabric")


def _l_sofa(rng):
    """An L-shaped sofa: a seat row along the back and a chaise reaching forward on the +X side."""
    w, d = rng.uniform(2.4, 3.0), rng.uniform(0.85, 0.95)
    chaise_w, chaise_d = rng.uniform(0.75, 0.95), rng.uniform(1.5, 1.8)
    seat_h, arm_h, back_h = rng.uniform(0.4, 0.46), rng.uniform(0.55, 0.62), rng.uniform(0.75, 0.88)
    mb = MeshBuilder()
    z0 = -chaise_d / 2
    for lx in (-w / 2 + 0.05, w / 2 - chaise_w - 0.1):  # legs under the main row
        for lz in (z0 + 0.05, z0 + d - 0.1):
            mb.box((lx, 0.0, lz), (lx + 0.05, 0.06, lz + 0.05), 2)
    _sofa_blocks(mb, -w / 2, w / 2 - chaise_w, z0, z0 + d, seat_h, arm_h, back_h, 0.2, (-1,), 2)
    # chaise: base + long cushion + back on its part of the back row, open at the end
    x0, x1 = w / 2 - chaise_w, w / 2
    mb.box((x0, 0.0, z0), (x1, seat_h - 0.12, z0 + chaise_d), 0)
    mb.box((x0 + 0.01, seat_h - 0.12, z0 + 0.2), (x1 - 0.01, seat_h, z0 + chaise_d - 0.01), 1)
    mb.box((x0, seat_h - 0.12, z0), (x1, back_h, z0 + 0.2), 1)
    return mb, (str(rng.choice(["fabric", "leather"])), "fabric", "wood", "fabric")


def _armchair(rng):
    w, d = rng.uniform(0.72, 0.9), rng.uniform(0.72, 0.9)
    seat_h, arm_h, back_h = rng.uniform(0.38, 0.45), rng.uniform(0.55, 0.65), rng.uniform(0.75, 0.95)
    mb = MeshBuilder()
    _legs(mb, w, d, 0.12, 0.04, 0.04, round_legs=bool(rng.random() < 0.5))
    mb.box((-w / 2, 0.12, -d / 2), (w / 2, seat_h - 0.1, d / 2), 0)
    mb.box((-w / 2 + 0.12, seat_h - 0.1, -d / 2 + 0.15), (w / 2 - 0.12, seat_h, d / 2 - 0.01), 1)
    mb.box((-w / 2, seat_h - 0.1, -d / 2), (w / 2, back_h, -d / 2 + 0.15), 1)
    for s in (-1, 1):
        xa = -w / 2 if s < 0 else w / 2 - 0.12
        mb.box((xa, seat_h - 0.1, -d / 2), (xa + 0.12, arm_h, d / 2), 0)
    return mb, (str(rng.choice(["fabric", "leather"])), "fabric", "wood", "fabric")


def _dining_chair(rng):
    w, d, h = rng.uniform(0.42, 0.5), rng.uniform(0.45, 0.55), rng.uniform(0.85, 1.0)
    seat = rng.uniform(0.44, 0.48)
    mb = MeshBuilder()
    _legs(mb, w, d, seat - 0.04, 0.035, 0.01, round_legs=bool(rng.random() < 0.4))
    mb.box((-w / 2, seat - 0.04, -d / 2), (w / 2, seat, d / 2), 1)
    mb.box((-w / 2, seat, -d / 2), (-w / 2 + 0.035, h, -d / 2 + 0.035), 0)
    mb.box((w / 2 - 0.035, seat, -d / 2), (w / 2, h, -d / 2 + 0.035), 0)
    mb.box((-w / 2 + 0.035, h - 0.25, -d / 2 + 0.005), (w / 2 - 0.035, h - 0.02, -d / 2 + 0.03), 0)
    return mb, ("wood", str(rng.choice(["fabric", "leather"])), "wood", "fabric")


def _tea_table(rng):
    h = rng.uniform(0.35, 0.45)
    mb = MeshBuilder()
    if rng.random() < 0.35:
        r = rng.uniform(0.35, 0.5)
        mb.frustum((0, 0, 0), r * 0.5, r * 0.5, h - 0.04, 2, segments=10)
        mb.frustum((0, h - 0.04, 0), r, r, 0.04, 0, segments=16)
    else:
        w, d = rng.uniform(0.9, 1.3), rng.uniform(0.5, 0.7)
        _legs(mb, w, d, h - 0.04, 0.04, 0.03)
        mb.box((-w / 2, h - 0.04, -d / 2), (w / 2, h, d / 2), 0)
        mb.box((-w / 2 + 0.05, 0.1, -d / 2 + 0.05), (w / 2 - 0.05, 0.13, d / 2 - 0.05), 0)  # shelf
    return mb, (str(rng.choice(["wood", "painted"])), "wood", "metal", "wood")


def _dining_table(rng):
    w, d, h = rng.uniform(1.2, 1.8), rng.uniform(0.8, 0.95), rng.uniform(0.74, 0.78)
    mb = MeshBuilder()
    _legs(mb, w, d, h - 0.04, 0.06, 0.06)
    mb.box((-w / 2, h - 0.04, -d / 2), (w / 2, h, d / 2), 0)
    mb.box((-w / 2 + 0.06, h - 0.12, -d / 2 + 0.06), (w / 2 - 0.06, h - 0.04, d / 2 - 0.06), 0)  # apron
    return mb, ("wood", "wood", str(rng.choice(["metal", "wood"])), "wood")


def _desk(rng):
    w, d, h = rng.uniform(1.0, 1.4), rng.uniform(0.55, 0.7), rng.uniform(0.72, 0.76)
    mb = MeshBuilder()
    mb.box((-w / 2, h - 0.03, -d / 2), (w / 2, h, d / 2), 0)
    mb.box((-w / 2, 0, -d / 2), (-w / 2 + 0.03, h - 0.03, d / 2), 0)
    cw = rng.uniform(0.35, 0.45)
    mb.box((w / 2 - cw, 0, -d / 2), (w / 2, h - 0.03, d / 2 - 0.02), 0)  # drawer pedestal
    for i in range(3):
        y0 = 0.03 + i * (h - 0.09) / 3
        mb.box((w / 2 - cw + 0.02, y0 + 0.01, d / 2 - 0.02), (w / 2 - 0.02, y0 + (h - 0.09) / 3 - 0.01, d / 2), 1)
    mb.box((-w / 2 + 0.03, h - 0.4, -d / 2), (w / 2 - cw, h - 0.03, -d / 2 + 0.02), 0)  # modesty panel
    return mb, ("wood", "painted", "metal", "wood")


def _tv_stand(rng):
    w, h, d = rng.uniform(1.4, 2.0), rng.uniform(0.4, 0.55), rng.uniform(0.35, 0.45)
    mb = MeshBuilder()
    _legs(mb, w, d, 0.1, 0.03, 0.03)
    mb.box((-w / 2, 0.1, -d / 2), (w / 2, h, d / 2 - 0.02), 0)
    n = int(rng.integers(2, 4))
    for i in range(n):
        x0 = -w / 2 + i * w / n
        mb.box((x0 + 0.01, 0.12, d / 2 - 0.02), (x0 + w / n - 0.01, h - 0.02, d / 2), 1)
    return mb, ("wood", str(rng.choice(["painted", "wood"])), "metal", "wood")


def _bookcase(rng):
    w, h, d = rng.uniform(0.8, 1.2), rng.uniform(1.8, 2.1), rng.uniform(0.3, 0.38)
    t = 0.025
    mb = MeshBuilder()
    mb.box((-w / 2, 0, -d / 2), (-w / 2 + t, h, d / 2), 0)
    mb.box((w / 2 - t, 0, -d / 2), (w / 2, h, d / 2), 0)
    mb.box((-w / 2 + t, 0, -d / 2), (w / 2 - t, h, -d / 2 + 0.01), 0)  # back
    n = int(rng.integers(4, 6))
    for i in range(n + 1):
        y = i * (h - t) / n
        mb.box((-w / 2 + t, y, -d / 2 + 0.01), (w / 2 - t, y + t, d / 2), 0)
        if i < n and rng.random() < 0.7:  # a row of "books"
            bw = rng.uniform(0.3, w - 0.1)
            bh = min(rng.uniform(0.18, 0.28), (h - t) / n - t - 0.02)
            x0 = -w / 2 + t + rng.uniform(0, w - 2 * t - bw)
            mb.box((x0, y + t, -d / 2 + 0.03), (x0 + bw, y + t + bh, d / 2 - 0.04), 3)
    return mb, ("wood", "wood", "metal", "painted_bright")


def _cabinet(rng, bright: bool = False):
    w, h, d = rng.uniform(0.6, 1.2), rng.uniform(0.8, 1.2), rng.uniform(0.4, 0.5)
    if bright:
        w, h, d = rng.uniform(0.6, 0.9), rng.uniform(0.6, 1.0), rng.uniform(0.35, 0.45)
    mb = MeshBuilder()
    _legs(mb, w, d, 0.08, 0.03, 0.03)
    mb.box((-w / 2, 0.08, -d / 2), (w / 2, h, d / 2 - 0.02), 0)
    n = 2 if w > 0.7 else 1
    for i in range(n):
        x0 = -w / 2 + i * w / n
        mb.box((x0 + 0.01, 0.1, d / 2 - 0.02), (x0 + w / n - 0.01, h - 0.02, d / 2), 1)
        hx = x0 + w / n - 0.05 if i == 0 else x0 + 0.03
        mb.box((hx, h * 0.5, d / 2), (hx + 0.02, h * 0.5 + 0.12, d / 2 + 0.02), 2)
    if bright:
        return mb, ("painted_bright", "painted_bright", "painted_bright", "painted")
    return mb, (str(rng.choice(["wood", "painted"])), "wood", "metal", "wood")


def _media_unit(rng):
    w, h, d = rng.uniform(1.8, 2.4), rng.uniform(1.6, 2.0), rng.uniform(0.38, 0.45)
    tw = rng.uniform(0.35, 0.45)
    mb = MeshBuilder()
    mb.box((-w / 2, 0, -d / 2), (w / 2, 0.45, d / 2), 0)  # low cabinet
    mb.box((-w / 2, 0.45, -d / 2), (-w / 2 + tw, h, d / 2 - 0.05), 0)  # towers
    mb.box((w / 2 - tw, 0.45, -d / 2), (w / 2, h, d / 2 - 0.05), 0)
    mb.box((-w / 2 + tw, h - 0.04, -d / 2), (w / 2 - tw, h, d / 2 - 0.1), 0)  # bridge shelf
    for s in (-1, 1):
        x0 = -w / 2 + 0.02 if s < 0 else w / 2 - tw + 0.02
        mb.box((x0, 0.5, d / 2 - 0.05), (x0 + tw - 0.04, h - 0.05, d / 2 - 0.03), 1)
    return mb, ("wood", "painted", "metal", "wood")


def _pendant_lamp(rng):
    cord = rng.uniform(0.3, 0.8)
    r, sh = rng.uniform(0.15, 0.3), rng.uniform(0.15, 0.3)
    mb = MeshBuilder()
    if rng.random() < 0.5:
        mb.frustum((0, 0, 0), r, r * rng.uniform(0.2, 0.5), sh, 0, segments=12)
    else:
        mb.sphere((0, r, 0), r, slot=0, rings=5, segments=10)
        sh = 2 * r
    mb.frustum((0, sh, 0), 0.006, 0.006, cord, 2, segments=4, caps=False)
    mb.frustum((0, sh + cord - 0.03, 0), 0.06, 0.06, 0.03, 2, segments=8)  # canopy
    return mb, (str(rng.choice(["painted", "metal", "fabric"])), "painted", "metal", "painted")


def _ceiling_lamp(rng):
    r, h = rng.uniform(0.2, 0.4), rng.uniform(0.08, 0.15)
    mb = MeshBuilder()
    mb.frustum((0, 0, 0), r * 0.85, r, h, 0, segments=16)
    return mb, ("painted", "painted", "metal", "painted")


def _floor_lamp(rng):
    h = rng.uniform(1.4, 1.7)
    rs = rng.uniform(0.15, 0.25)
    mb = MeshBuilder()
    mb.frustum((0, 0, 0), 0.15, 0.14, 0.03, 2, segments=10)
    mb.frustum((0, 0.03, 0), 0.012, 0.012, h - 0.3, 2, segments=6, caps=False)
    mb.frustum((0, h - 0.3, 0), rs, rs * 0.7, 0.3, 0, segments=12)
    return mb, (str(rng.choice(["fabric", "painted"])), "painted", "metal", "painted")


def _stool(rng):
    h = rng.uniform(0.38, 0.46)
    mb = MeshBuilder()
    if rng.random() < 0.5:
        r = rng.uniform(0.2, 0.3)
        mb.frustum((0, 0, 0), r * 0.9, r, h, 1, segments=12)
    else:
        w, d = rng.uniform(0.4, 0.9), rng.uniform(0.35, 0.5)
        _legs(mb, w, d, 0.1, 0.03, 0.03)
        mb.box((-w / 2, 0.1, -d / 2), (w / 2, h, d / 2), 1)
    return mb, ("wood", str(rng.choice(["fabric", "leather"])), "wood", "fabric")


def _plant(rng):
    pr, ph = rng.uniform(0.12, 0.2), rng.uniform(0.25, 0.4)
    mb = MeshBuilder()
    mb.frustum((0, 0, 0), pr * 0.75, pr, ph, 0, segments=10)
    total = rng.uniform(0.7, 1.6)
    if rng.random() < 0.5:
        fr = rng.uniform(0.25, 0.4)
        mb.frustum((0, ph, 0), fr, 0.0, total - ph, 3, segments=8)
    else:
        fr = rng.uniform(0.25, 0.4)
        mb.frustum((0, ph, 0), 0.02, 0.02, max(total - ph - fr * 1.6, 0.05), 1, segments=5, caps=False)
        mb.sphere((0, total - fr * 0.8, 0), fr, slot=3, squash=0.8)
    return mb, ("ceramic", "wood", "ceramic", "foliage")


def _art(rng):
    w, h = rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.9)
    t, fw = 0.03, rng.uniform(0.02, 0.05)
    mb = MeshBuilder()
    mb.box((-w / 2, 0, -t / 2), (w / 2, fw, t / 2), 0)
    mb.box((-w / 2, h - fw, -t / 2), (w / 2, h, t / 2), 0)
    mb.box((-w / 2, fw, -t / 2), (-w / 2 + fw, h - fw, t / 2), 0)
    mb.box((w / 2 - fw, fw, -t / 2), (w / 2, h - fw, t / 2), 0)
    mb.box((-w / 2 + fw, fw, -t / 2), (w / 2 - fw, h - fw, t / 2 - 0.01), 3)  # canvas
    return mb, (str(rng.choice(["wood", "metal", "painted"])), "wood", "metal", "painting")


def _mirror(rng):
    w, h = rng.uniform(0.45, 0.8), rng.uniform(0.7, 1.1)
    t, fw = 0.03, 0.03
    mb = MeshBuilder()
    mb.box((-w / 2, 0, -t / 2), (w / 2, h, t / 2 - 0.008), 0)  # frame / backing
    mb.box((-w / 2 + fw, fw, t / 2 - 0.008), (w / 2 - fw, h - fw, t / 2), 3)  # glass
    return mb, (str(rng.choice(["wood", "metal"])), "wood", "metal", "mirror_glass")


def _tv(rng):
    w = rng.uniform(1.0, 1.5)
    h = w * 9 / 16 + 0.03
    mb = MeshBuilder()
    mb.box((-w / 2, 0, -0.03), (w / 2, h, 0.02), 0)
    mb.box((-w / 2 + 0.015, 0.015, 0.02), (w / 2 - 0.015, h - 0.015, 0.03), 3)
    return mb, ("painted", "painted", "metal", "screen")


def _side_table(rng):
    h = rng.uniform(0.45, 0.6)
    mb = MeshBuilder()
    if rng.random() < 0.5:
        r = rng.uniform(0.2, 0.28)
        mb.frustum((0, 0, 0), 0.14, 0.14, 0.02, 2, segments=8)
        mb.frustum((0, 0.02, 0), 0.02, 0.02, h - 0.05, 2, segments=6, caps=False)
        mb.frustum((0, h - 0.03, 0), r, r, 0.03, 0, segments=14)
    else:
        s = rng.uniform(0.4, 0.5)
        _legs(mb, s, s, h - 0.03, 0.03, 0.01)
        mb.box((-s / 2, h - 0.03, -s / 2), (s / 2, h, s / 2), 0)
    return mb, ("wood", "wood", "metal", "wood")


def _dressing_table(rng):
    w, d, h = rng.uniform(0.9, 1.2), rng.uniform(0.4, 0.5), rng.uniform(0.72, 0.76)
    mb = MeshBuilder()
    _legs(mb, w, d, h - 0.15, 0.035, 0.02)
    mb.box((-w / 2, h - 0.15, -d / 2), (w / 2, h, d / 2), 0)
    mb.box((-w / 2 + 0.02, h - 0.14, d / 2), (w / 2 - 0.02, h - 0.02, d / 2 + 0.01), 1)
    return mb, ("painted", "wood", "metal", "wood")


@dataclass(frozen=True)
class ModelKind:
    """A generator of one furniture type: raw category, 3D-FUTURE super-category, mount, builder."""

    category: str
    super_category: str
    mount: str
    builder: Callable[[np.random.Generator], tuple[MeshBuilder, Slots]]


MODEL_KINDS: dict[str, ModelKind] = {
    "double_bed": ModelKind("double bed", "Bed", "floor", lambda r: _bed(r, single=False)),
    "single_bed": ModelKind("single bed", "Bed", "floor", lambda r: _bed(r, single=True)),
    "nightstand": ModelKind("nightstand", "Cabinet/Shelf/Desk", "floor", _nightstand),
    "wardrobe": ModelKind("wardrobe", "Cabinet/Shelf/Desk", "floor", _wardrobe),
    "sofa": ModelKind("three-seat / multi-person sofa", "Sofa", "floor", _sofa),
    "l_sofa": ModelKind("l-shaped sofa", "Sofa", "floor", _l_sofa),
    "armchair": ModelKind("armchair", "Chair", "floor", _armchair),
    "dining_chair": ModelKind("dining chair", "Chair", "floor", _dining_chair),
    "tea_table": ModelKind("tea table", "Table", "floor", _tea_table),
    "dining_table": ModelKind("dining table", "Table", "floor", _dining_table),
    "desk": ModelKind("desk", "Table", "floor", _desk),
    "side_table": ModelKind("corner/side table", "Table", "floor", _side_table),
    "dressing_table": ModelKind("dressing table", "Table", "floor", _dressing_table),
    "tv_stand": ModelKind("tv stand", "Cabinet/Shelf/Desk", "floor", _tv_stand),
    "bookcase": ModelKind("bookcase / jewelry armoire", "Cabinet/Shelf/Desk", "floor", _bookcase),
    "cabinet": ModelKind("cabinet", "Cabinet/Shelf/Desk", "floor", _cabinet),
    "children_cabinet": ModelKind("children cabinet", "Cabinet/Shelf/Desk", "floor", lambda r: _cabinet(r, True)),
    "media_unit": ModelKind("media unit", "Cabinet/Shelf/Desk", "floor", _media_unit),
    "pendant_lamp": ModelKind("pendant lamp", "Lighting", "ceiling", _pendant_lamp),
    "ceiling_lamp": ModelKind("ceiling lamp", "Lighting", "ceiling", _ceiling_lamp),
    "floor_lamp": ModelKind("lighting", "Lighting", "floor", _floor_lamp),
    "stool": ModelKind("footstool / sofastool / bed end stool / stool", "Chair", "floor", _stool),
    "plant": ModelKind("plants", "Others", "floor", _plant),
    "art": ModelKind("art", "Others", "wall", _art),
    "mirror": ModelKind("mirror", "Others", "wall", _mirror),
    "tv": ModelKind("electronics", "Others", "wall", _tv),
}


def jid_for(seed: int, kind: str, variant: int) -> str:
    """A deterministic UUID-shaped model id for (seed, kind, variant)."""
    import hashlib

    h = hashlib.sha1(f"panorooms3d-synth/{seed}/{kind}/{variant}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def build_model(kind: str, seed: int, variant: int, jid: str | None = None) -> FurnitureModel:
    """Build variant ``variant`` of furniture ``kind`` (a key of :data:`MODEL_KINDS`) for ``seed``.

    The result depends only on (seed, kind, variant). Geometry is in the 3D-FUTURE model frame
    (Y up, metres, bottom-centre origin, front +Z); the texture is a 128x128 atlas.
    """
    spec = MODEL_KINDS[kind]
    rng = textures.rng_for(seed, "model", kind, variant)
    mb, slots = spec.builder(rng)
    v, n, uv, f = mb.arrays()
    tex = textures.furniture_atlas(rng, slots, textures.MODEL_TEXTURE_SIZE)
    style = STYLES[int(rng.integers(len(STYLES)))]
    return FurnitureModel(
        jid or jid_for(seed, kind, variant),
        kind,
        spec.category,
        spec.super_category,
        style,
        spec.mount,
        v,
        n,
        uv,
        f,
        tex,
    )


def yaw_quaternion(theta: float) -> list[float]:
    """Quaternion [x, y, z, w] of a rotation by ``theta`` radians about the 3D-FRONT +Y (up) axis."""
    return [0.0, math.sin(theta / 2), 0.0, math.cos(theta / 2)]
