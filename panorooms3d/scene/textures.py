"""Procedural, seeded, tileable textures (numpy only) for the synthetic 3D-FRONT generator.

Every generator takes a ``numpy.random.Generator`` and a size in pixels and returns an sRGB
image as ``uint8`` of shape (size, size, 3). The images tile seamlessly (the noise is periodic),
so architecture UVs given in texture repeats (metres / tile size) show no seams.

Architecture textures (floors, walls, ceilings, trim) have a physical tile size in metres
(:data:`TILE_METRES`): a UV of 1.0 spans one tile. Furniture textures are 2x2 atlases
(:func:`furniture_atlas`): each quadrant holds one material of the model.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

TEXTURE_SIZE = 256  # architecture textures (pixels)
MODEL_TEXTURE_SIZE = 128  # furniture atlases (pixels; 64 per material slot)


def stable_key(*parts: object) -> int:
    """A process-independent 32-bit integer of ``parts`` (crc32 of their text), for seeding."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


def rng_for(seed: int, *parts: object) -> np.random.Generator:
    """A generator determined only by ``seed`` and ``parts`` (never by Python's ``hash``)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, stable_key(*parts)])


def tileable_noise(rng: np.random.Generator, size: int, scale: float, aspect: float = 1.0) -> np.ndarray:
    """Periodic smooth noise (size, size) float64 normalised to [0, 1].

    Args:
        scale: feature size in pixels (the Gaussian low-pass width along x).
        aspect: feature size along y divided by along x (<1 gives streaks along x).
    """
    white = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    sx = scale
    sy = max(scale * aspect, 0.5)
    filt = np.exp(-2 * (np.pi**2) * ((fx * sx) ** 2 + (fy * sy) ** 2))
    n = np.real(np.fft.ifft2(np.fft.fft2(white) * filt))
    n -= n.min()
    return n / max(n.max(), 1e-12)


def _jitter(rng: np.random.Generator, rgb, amount: float = 0.06) -> np.ndarray:
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    return np.clip(c * (1 + rng.uniform(-amount, amount)) + rng.uniform(-amount, amount, 3) * 0.5, 0, 1)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


WOOD_TONES = ((150, 105, 65), (190, 150, 105), (110, 75, 45), (205, 175, 135), (120, 95, 80), (170, 120, 80))
PLASTER_TONES = ((236, 233, 226), (226, 221, 210), (214, 222, 226), (238, 228, 214), (220, 226, 214))
TILE_TONES = ((225, 225, 220), (190, 190, 185), (120, 125, 130), (210, 200, 180), (90, 90, 95))
FABRIC_TONES = ((70, 90, 130), (150, 60, 60), (120, 130, 110), (200, 190, 170), (90, 90, 95), (60, 110, 110),
                (170, 140, 90), (230, 225, 215))
LEATHER_TONES = ((90, 55, 35), (40, 35, 32), (150, 100, 60), (200, 185, 160))
BRIGHT_TONES = ((230, 90, 80), (80, 160, 220), (250, 200, 60), (110, 190, 110), (240, 150, 190))


def wood_planks(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Floor planks along x: 8 rows with staggered end joints, grain, dark gaps (uint8 RGB)."""
    base = _jitter(rng, WOOD_TONES[rng.integers(len(WOOD_TONES))])
    rows = 8
    ph = size // rows
    y, x = np.mgrid[0:size, 0:size]
    row = y // ph
    joints = rng.integers(size, size=rows)
    shade_a = rng.uniform(-0.12, 0.12, rows)
    shade_b = shade_a + rng.uniform(-0.1, 0.1, rows)
    tone = np.where(x < joints[row], shade_a[row], shade_b[row])
    gap = (y % ph == 0) | (np.abs(x - joints[row]) < 1.5)
    grain = tileable_noise(rng, size, 2.0, aspect=0.08)
    lum = 1.0 + tone + 0.06 * np.sin(grain * 40.0) + 0.08 * (tileable_noise(rng, size, 6.0) - 0.5)
    lum[gap] *= 0.55
    return _to_u8(base[None, None, :] * lum[..., None])


def tiles(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Square ceramic tiles (4 x 4 per texture) with grout lines and per-tile tone (uint8 RGB)."""
    base = _jitter(rng, TILE_TONES[rng.integers(len(TILE_TONES))], 0.04)
    grout = np.array([0.55, 0.55, 0.53]) if base.mean() > 0.5 else np.array([0.8, 0.8, 0.78])
    n = 4
    t = size // n
    y, x = np.mgrid[0:size, 0:size]
    shade = rng.uniform(-0.05, 0.05, (n, n))[y // t, x // t]
    lum = 1.0 + shade + 0.05 * (tileable_noise(rng, size, 3.0) - 0.5)
    img = base[None, None, :] * lum[..., None]
    line = ((x % t) < 2) | ((y % t) < 2)
    img[line] = grout
    return _to_u8(img)


def plaster(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Painted plaster: a pale colour with faint low-frequency mottling (uint8 RGB)."""
    base = _jitter(rng, PLASTER_TONES[rng.integers(len(PLASTER_TONES))], 0.03)
    lum = 1.0 + 0.05 * (tileable_noise(rng, size, 10.0) - 0.5) + 0.03 * (tileable_noise(rng, size, 1.5) - 0.5)
    return _to_u8(base[None, None, :] * lum[..., None])


def wallpaper_stripes(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Vertical wallpaper stripes of two tones with a fine texture (uint8 RGB)."""
    a = _jitter(rng, PLASTER_TONES[rng.integers(len(PLASTER_TONES))], 0.04)
    b = np.clip(a * rng.uniform(0.75, 0.9) + rng.uniform(-0.08, 0.08, 3), 0, 1)
    period = int(rng.choice([16, 32, 64]))
    duty = rng.uniform(0.3, 0.6)
    x = np.arange(size)[None, :]
    stripe = ((x % period) < duty * period).astype(np.float64)
    img = np.where(stripe[..., None] > 0, a, b) * np.ones((size, 1, 1))
    lum = 1.0 + 0.04 * (tileable_noise(rng, size, 1.2) - 0.5)
    return _to_u8(img * lum[..., None])


def carpet(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Carpet: a saturated-ish colour with strong fine noise (uint8 RGB)."""
    base = _jitter(rng, FABRIC_TONES[rng.integers(len(FABRIC_TONES))], 0.05)
    lum = 1.0 + 0.25 * (tileable_noise(rng, size, 0.8) - 0.5) + 0.1 * (tileable_noise(rng, size, 12.0) - 0.5)
    return _to_u8(base[None, None, :] * lum[..., None])


def fabric(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Woven upholstery fabric: a colour with a fine weave pattern (uint8 RGB)."""
    base = _jitter(rng, FABRIC_TONES[rng.integers(len(FABRIC_TONES))], 0.05)
    y, x = np.mgrid[0:size, 0:size]
    weave = 0.5 + 0.5 * np.sin(x * np.pi / 2) * np.sin(y * np.pi / 2)
    lum = 1.0 + 0.08 * (weave - 0.5) + 0.08 * (tileable_noise(rng, size, 4.0) - 0.5)
    return _to_u8(base[None, None, :] * lum[..., None])


def leather(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Leather: a dark or tan tone with pebbled grain (uint8 RGB)."""
    base = _jitter(rng, LEATHER_TONES[rng.integers(len(LEATHER_TONES))], 0.05)
    lum = 1.0 + 0.15 * (tileable_noise(rng, size, 1.0) - 0.5) + 0.1 * (tileable_noise(rng, size, 8.0) - 0.5)
    return _to_u8(base[None, None, :] * lum[..., None])


def wood(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Furniture wood: grain streaks along x (uint8 RGB)."""
    base = _jitter(rng, WOOD_TONES[rng.integers(len(WOOD_TONES))])
    grain = tileable_noise(rng, size, 3.0, aspect=0.06)
    lum = 1.0 + 0.15 * np.sin(grain * 30.0) * 0.5 + 0.08 * (tileable_noise(rng, size, 8.0) - 0.5)
    return _to_u8(base[None, None, :] * lum[..., None])


def painted(rng: np.random.Generator, size: int = TEXTURE_SIZE, bright: bool = False) -> np.ndarray:
    """Smooth painted surface (lacquer): white/grey, or a bright colour if ``bright`` (uint8 RGB)."""
    pool = BRIGHT_TONES if bright else ((245, 245, 242), (60, 62, 66), (200, 200, 195), (150, 160, 170))
    base = _jitter(rng, pool[rng.integers(len(pool))], 0.03)
    lum = 1.0 + 0.03 * (tileable_noise(rng, size, 6.0) - 0.5)
    return _to_u8(base[None, None, :] * lum[..., None])


def metal(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Brushed metal: grey/brass with streaks along x (uint8 RGB)."""
    pool = ((180, 180, 185), (60, 60, 62), (190, 160, 90))
    base = _jitter(rng, pool[rng.integers(len(pool))], 0.03)
    lum = 1.0 + 0.12 * (tileable_noise(rng, size, 1.0, aspect=0.05) - 0.5)
    return _to_u8(base[None, None, :] * lum[..., None])


def foliage(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Leaves: green blotches of varying tone (uint8 RGB)."""
    a = _jitter(rng, (60, 120, 50), 0.1)
    b = _jitter(rng, (30, 70, 30), 0.1)
    t = tileable_noise(rng, size, 2.5)
    img = a[None, None, :] * t[..., None] + b[None, None, :] * (1 - t[..., None])
    return _to_u8(img)


def ceramic(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Plant pot ceramic: terracotta, white or anthracite (uint8 RGB)."""
    pool = ((180, 95, 60), (235, 232, 225), (70, 72, 75))
    base = _jitter(rng, pool[rng.integers(len(pool))], 0.04)
    lum = 1.0 + 0.06 * (tileable_noise(rng, size, 3.0) - 0.5)
    return _to_u8(base[None, None, :] * lum[..., None])


def painting(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """An abstract picture for art: a few soft colour fields (uint8 RGB)."""
    cols = rng.uniform(0.1, 0.95, (4, 3))
    fields = np.stack([tileable_noise(rng, size, rng.uniform(6, 20)) for _ in range(4)])
    w = np.exp(6 * fields)
    w /= w.sum(axis=0, keepdims=True)
    img = np.einsum("khw,kc->hwc", w, cols)
    return _to_u8(img)


def mirror_glass(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Mirror/screen glass: a cool light grey with faint diagonal sheen (uint8 RGB)."""
    y, x = np.mgrid[0:size, 0:size]
    sheen = 0.5 + 0.5 * np.sin((x + y) * 2 * np.pi / size)
    img = np.array([0.78, 0.82, 0.85])[None, None, :] * (0.92 + 0.08 * sheen[..., None])
    return _to_u8(img)


def screen(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """A switched-off TV screen: near black with a faint sheen (uint8 RGB)."""
    y, x = np.mgrid[0:size, 0:size]
    sheen = 0.5 + 0.5 * np.sin((x + y) * 2 * np.pi / size)
    img = np.array([0.05, 0.055, 0.06])[None, None, :] * (0.8 + 0.4 * sheen[..., None])
    return _to_u8(img)


#: Texture kinds by name -> generator(rng, size).
GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "wood_planks": wood_planks,
    "tiles": tiles,
    "plaster": plaster,
    "wallpaper_stripes": wallpaper_stripes,
    "carpet": carpet,
    "fabric": fabric,
    "leather": leather,
    "wood": wood,
    "painted": painted,
    "painted_bright": lambda rng, size=TEXTURE_SIZE: painted(rng, size, bright=True),
    "metal": metal,
    "foliage": foliage,
    "ceramic": ceramic,
    "painting": painting,
    "mirror_glass": mirror_glass,
    "screen": screen,
}

#: Architecture texture kinds: metres covered by one texture repeat (UV = metres / tile size).
TILE_METRES: dict[str, float] = {
    "wood_planks": 1.2,
    "tiles": 1.2,
    "carpet": 1.0,
    "plaster": 2.0,
    "wallpaper_stripes": 0.8,
    "painted": 1.0,
    "wood": 0.5,
}
FLOOR_KINDS = ("wood_planks", "wood_planks", "tiles", "carpet")
WALL_KINDS = ("plaster", "plaster", "wallpaper_stripes")
CEILING_KINDS = ("plaster",)
TRIM_KINDS = ("painted", "wood")


def make_texture(kind: str, rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """The texture ``kind`` (a key of :data:`GENERATORS`) as uint8 (size, size, 3) sRGB."""
    try:
        gen = GENERATORS[kind]
    except KeyError:
        raise KeyError(f"unknown texture kind {kind!r}; known: {', '.join(GENERATORS)}") from None
    return gen(rng, size)


def furniture_atlas(rng: np.random.Generator, kinds: tuple[str, str, str, str], size: int = TEXTURE_SIZE) -> np.ndarray:
    """A 2x2 texture atlas (uint8 (size, size, 3)) for one furniture model.

    Quadrant (slot) 0 is the top-left of the image, 1 top-right, 2 bottom-left, 3 bottom-right.
    OBJ ``vt`` coordinates have v = 0 at the bottom of the image, so slot ``k`` covers
    u in [0.5 * (k % 2), 0.5 * (k % 2) + 0.5] and v in [0.5 * (1 - k // 2), 0.5 * (1 - k // 2) + 0.5].
    """
    half = size // 2
    img = np.zeros((size, size, 3), np.uint8)
    for k, kind in enumerate(kinds):
        r, c = divmod(k, 2)
        img[r * half:(r + 1) * half, c * half:(c + 1) * half] = make_texture(kind, rng, half)
    return img


def write_png(image: np.ndarray, path: Path) -> None:
    """Write a uint8 RGB image as PNG, byte-for-byte deterministic (no time or text chunks)."""
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="RGB").save(
        path, format="PNG", optimize=False, compress_level=1)
