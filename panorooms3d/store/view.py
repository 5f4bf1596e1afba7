"""Looking at a room volume: a marching-cubes mesh (PLY) and a picture of slices (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from panorooms3d.taxonomy import colourise
from panorooms3d.volume import RoomVolume


def volume_mesh(volume: RoomVolume, color: str = "rgb", class_set: str = "paper30"):
    """Surface of a room's tsdf as a coloured triangle mesh in world metres.

    Marching cubes (``skimage.measure.marching_cubes``) at level 0, restricted to observed voxels
    (weight > 0). Vertex index coordinates p map to the world with the voxel-centre convention:
    origin + (p + 0.5) * voxel_size. Each vertex takes the colour (``rgb``: the fused colour;
    ``class``: the class colour of the label) of its nearest voxel.

    Returns a ``trimesh.Trimesh`` (vertices (V, 3) float64 metres, faces (F, 3), vertex colours).
    Raises ValueError naming the room when the tsdf has no zero crossing in observed space.
    """
    import trimesh
    from skimage.measure import marching_cubes

    if color not in ("rgb", "class"):
        raise ValueError(f"color must be 'rgb' or 'class', got {color!r}")
    tsdf = np.asarray(volume.tsdf, np.float32)
    observed = np.asarray(volume.weight) > 0
    if not observed.any() or tsdf[observed].min() > 0 or tsdf[observed].max() < 0:
        raise ValueError(f"room {volume.room_uid or '?'}: no surface (the tsdf has no zero crossing where observed)")
    try:
        verts, faces, _, _ = marching_cubes(tsdf, level=0.0, mask=observed)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"room {volume.room_uid or '?'}: marching cubes found no surface: {exc}") from None
    idx = np.clip(np.round(verts).astype(np.int64), 0, np.asarray(volume.shape) - 1)
    if color == "rgb":
        colours = volume.rgb[idx[:, 0], idx[:, 1], idx[:, 2]]
    else:
        colours = colourise(volume.label[idx[:, 0], idx[:, 1], idx[:, 2]], class_set)
    world = volume.origin + (verts.astype(np.float64) + 0.5) * volume.voxel_size
    rgba = np.concatenate([colours, np.full((len(colours), 1), 255, np.uint8)], axis=1)
    return trimesh.Trimesh(vertices=world, faces=faces, vertex_colors=rgba, process=False)


def volume_slices_picture(volume: RoomVolume, axis: str = "z", index: int | None = None,
                          class_set: str = "paper30", scale: int = 4) -> np.ndarray:
    """One picture of a slice through a room: tsdf | rgb | labels, side by side.

    Args:
        volume: the room.
        axis: ``x``, ``y`` or ``z``: the slice is perpendicular to this axis.
        index: voxel index along ``axis`` (default: the middle).
        class_set: class colours of the label panel.
        scale: each voxel becomes ``scale`` x ``scale`` pixels.

    Returns (H, W, 3) uint8. In each panel the first remaining axis runs right and the second up
    (for ``z``: x right, y up, as seen from above). The tsdf panel maps -1 (blue) .. 1 (red);
    unobserved voxels are grey.
    """
    import matplotlib

    a = "xyz".index(axis) if axis in ("x", "y", "z") else None
    if a is None:
        raise ValueError(f"axis must be x, y or z, got {axis!r}")
    n = volume.shape[a]
    index = n // 2 if index is None else int(index)
    if not 0 <= index < n:
        raise ValueError(f"slice index {index} is outside 0..{n - 1} along {axis}")

    def take(arr: np.ndarray) -> np.ndarray:
        s = np.take(arr, index, axis=a)
        return np.flip(np.swapaxes(s, 0, 1), axis=0)  # rows: 2nd axis (up), cols: 1st axis (right)

    tsdf = take(volume.tsdf)
    observed = take(np.asarray(volume.weight) > 0)
    cmap = matplotlib.colormaps["RdBu_r"]
    tsdf_rgb = (cmap((np.clip(tsdf, -1, 1) + 1) / 2)[..., :3] * 255).astype(np.uint8)
    tsdf_rgb[~observed] = 128
    panels = [tsdf_rgb, take(volume.rgb), colourise(take(volume.label), class_set)]
    gap = np.full((tsdf.shape[0], 2, 3), 255, np.uint8)
    picture = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    return np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)


def write_view(volume: RoomVolume, out: Path, color: str = "rgb", axis: str = "z", index: int | None = None) -> Path:
    """Write ``out``: a ``.ply`` mesh (:func:`volume_mesh`) or a ``.png`` slice picture."""
    from PIL import Image

    from panorooms3d.run.atomic import atomic_path

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".ply":
        mesh = volume_mesh(volume, color)
        with atomic_path(out) as tmp:
            tmp.write_bytes(mesh.export(file_type="ply"))
    elif suffix == ".png":
        picture = volume_slices_picture(volume, axis, index)
        with atomic_path(out) as tmp:
            Image.fromarray(picture).save(tmp, format="PNG")
    else:
        raise ValueError(f"cannot write {out}: the output must end in .ply or .png")
    return out
