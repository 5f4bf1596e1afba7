"""The Blender side of rendering: runs INSIDE the render subprocess (``panorooms3d.render.worker``).

``bpy`` is imported only inside the functions that need it, so this module can be imported (for
:func:`read_exr`, :func:`room_lights`, :func:`linear_to_srgb8`) by a process that never loads
Blender. The parent process never imports ``bpy``: it is large and leaks memory across scenes.

What happens in one subprocess (one room):

1. :func:`build_scene` loads the WHOLE house (every room and the loose meshes, so doors show the
   next room, not the void) once: one Blender object per :class:`~panorooms3d.scene.model.Mesh`
   with ``pass_index`` = the object code of its (raw label, instance) pair, materials from
   ``Mesh.material`` (image texture on per-corner UVs, tinted by the colour; else the colour),
   per-room lights (an area light under the ceiling plus a point light) and a dim world.
2. :func:`render_group` renders a list of OpenCV cameras with Cycles, one render per view
   holding every pass (Combined, Z, IndexOB), written as an uncompressed multilayer OpenEXR in a
   temp folder and read back with :func:`read_exr` (exact float32 values, no colour management).

Exactness of the passes: Cycles writes the Z and object-index passes from the first sample of a
pixel only (they are never averaged), and with ``filter_width`` = 0.01 px every camera ray goes
through the pixel centre. So labels are never blended at edges, and depth is the planar z of the
surface hit by the ray through the pixel centre, exactly what a ray cast through (u, v) = pixel
centre gives. The price: the RGB is not anti-aliased (4 samples and the denoiser keep it clean).
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np

from panorooms3d.geometry import OPENCV_TO_BLENDER_CAM
from panorooms3d.taxonomy import CEILING, FLOOR

#: Values of Blender's Z pass at or above this (metres) mean "no surface" (Cycles writes 1e10).
NO_HIT_DEPTH = 1.0e5

#: Light power per square metre of floor (Blender watts), tuned so that a bright room's walls
#: render at mid-grey with the Standard view transform (no blown-out or black frames).
AREA_LIGHT_W_PER_M2 = 2.5
POINT_LIGHT_W_PER_M2 = 1.2


# ----------------------------------------------------------------------------- pure numpy helpers

def read_exr(path: Path) -> dict[str, np.ndarray]:
    """Read an uncompressed scanline OpenEXR file (as Blender writes with ``exr_codec='NONE'``).

    Only what the renderer writes is supported: one part, scanlines, no compression, FLOAT or
    HALF channels. Multilayer channel names (``ViewLayer.Depth.Z``) are returned as they are.

    Returns:
        channel name -> (H, W) array (float32 for FLOAT, float16 for HALF, uint32 for UINT),
        row 0 = the top of the image.

    Raises ValueError naming the file when it is not such an EXR.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"\x76\x2f\x31\x01":
        raise ValueError(f"{path}: not an OpenEXR file")
    flags = struct.unpack_from("<I", data, 4)[0]
    if flags & 0x200 or flags & 0x1000:  # tiled or multi-part
        raise ValueError(f"{path}: tiled or multi-part EXR is not supported")
    pos = 8
    channels: list[tuple[str, int]] = []
    compression = None
    window = None
    while data[pos] != 0:
        end = data.index(b"\x00", pos)
        name = data[pos:end].decode()
        pos = end + 1
        end = data.index(b"\x00", pos)
        pos = end + 1
        (size,) = struct.unpack_from("<i", data, pos)
        pos += 4
        value = data[pos:pos + size]
        pos += size
        if name == "channels":
            p = 0
            while value[p] != 0:
                e = value.index(b"\x00", p)
                cname = value[p:e].decode()
                ptype = struct.unpack_from("<i", value, e + 1)[0]
                channels.append((cname, ptype))
                p = e + 1 + 16
        elif name == "compression":
            compression = value[0]
        elif name == "dataWindow":
            window = struct.unpack_from("<4i", value, 0)
    pos += 1
    if compression != 0:
        raise ValueError(f"{path}: compressed EXR (compression {compression}) is not supported; render with NONE")
    if window is None or not channels:
        raise ValueError(f"{path}: EXR without a data window or channels")
    x0, y0, x1, y1 = window
    w, h = x1 - x0 + 1, y1 - y0 + 1
    bytes_of = {0: 4, 1: 2, 2: 4}
    dtype_of = {0: np.uint32, 1: np.float16, 2: np.float32}
    line = sum(bytes_of[t] * w for _, t in channels)
    offsets = np.frombuffer(data, dtype="<u8", count=h, offset=pos)
    start = int(offsets.min())
    block = np.frombuffer(data, dtype=np.uint8, count=h * (8 + line), offset=start).reshape(h, 8 + line)
    ys = block[:, :4].copy().view("<i4").ravel() - y0
    if not np.array_equal(np.sort(ys), np.arange(h)):
        raise ValueError(f"{path}: unexpected scanline layout")
    rows = np.empty((h, line), np.uint8)
    rows[ys] = block[:, 8:]
    out: dict[str, np.ndarray] = {}
    col = 0
    for cname, t in channels:
        nb = bytes_of[t] * w
        out[cname] = rows[:, col:col + nb].copy().view(np.dtype(dtype_of[t]).newbyteorder("<")).reshape(h, w)
        col += nb
    return out


def linear_to_srgb8(rgb: np.ndarray) -> np.ndarray:
    """Scene-linear RGB (..., 3) float -> sRGB (IEC 61966-2-1 transfer, Blender's 'Standard') uint8."""
    x = np.clip(np.nan_to_num(rgb.astype(np.float32)), 0.0, 1.0)
    s = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)
    return np.round(s * 255.0).astype(np.uint8)


def room_extent(room) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Floor rectangle and heights of a room.

    Returns:
        lo (2,), hi (2,): x/y corners of the floor's bounding box, metres (world frame);
        floor_z: top of the floor meshes, metres; ceiling_z: bottom of the ceiling meshes (the
        room's top when it has no ceiling), metres.
    """
    flo, fhi = room.floor_bounds()
    ceilings = [m for m in room.meshes if m.label == CEILING]
    floor_z = float(fhi[2]) if any(m.label == FLOOR for m in room.meshes) else float(flo[2])
    ceiling_z = float(min(m.bounds()[0][2] for m in ceilings)) if ceilings else float(room.bounds()[1][2])
    if ceiling_z <= floor_z + 0.5:
        ceiling_z = float(room.bounds()[1][2])
    return np.asarray(flo[:2], float), np.asarray(fhi[:2], float), floor_z, ceiling_z


def room_lights(house) -> list[dict]:
    """The lights of a house: per room an area light under the ceiling and a point light.

    Returns a list of ``{"type": "AREA"|"POINT", "location": (3,) metres, "size": (2,) metres,
    "power": watts}`` in the world frame. The area light (70% of the floor rectangle, facing
    down, 5 cm under the ceiling) lights the floor and furniture evenly; the point light (at 60%
    of the room height over the floor centre) lights the walls and the ceiling. Powers scale with
    the floor area so every room is equally bright.
    """
    lights = []
    for room in house.rooms:
        if not room.meshes:
            continue
        lo, hi, floor_z, ceiling_z = room_extent(room)
        size = np.maximum(hi - lo, 0.5)
        area = float(size[0] * size[1])
        c = (lo + hi) / 2
        lights.append({"type": "AREA", "location": [float(c[0]), float(c[1]), ceiling_z - 0.05],
                       "size": [float(s) for s in 0.7 * size], "power": AREA_LIGHT_W_PER_M2 * area})
        lights.append({"type": "POINT", "location": [float(c[0]), float(c[1]), floor_z + 0.6 * (ceiling_z - floor_z)],
                       "size": [0.3, 0.3], "power": POINT_LIGHT_W_PER_M2 * area})
    return lights


def box_uv(vertices: np.ndarray, faces: np.ndarray, uv_scale: float = 1.0) -> np.ndarray:
    """Per-corner UVs (F, 3, 2) float32 by box projection in metres / ``uv_scale``.

    Used for a textured mesh that has no UVs: each triangle is projected onto the plane of its
    dominant normal axis, so a texture repeats every ``uv_scale`` metres on walls and floors.
    """
    t = vertices[faces]
    n = np.abs(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]))
    axis = np.argmax(n, axis=1)
    keep = np.array([[1, 2], [0, 2], [0, 1]])[axis]  # (F, 2) coordinates kept per triangle
    uv = np.take_along_axis(t, keep[:, None, :].repeat(3, axis=1), axis=2)
    return (uv / max(uv_scale, 1e-6)).astype(np.float32)


# ----------------------------------------------------------------------------- inside Blender

def _reset_and_configure(settings: dict):
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    cy = scene.cycles
    device_used = "CPU"
    if str(settings.get("device", "CPU")).upper() == "GPU":
        device_used = _enable_gpu()
    cy.device = "GPU" if device_used != "CPU" else "CPU"
    cy.samples = int(settings.get("samples", 4))
    cy.use_adaptive_sampling = False
    cy.use_denoising = bool(settings.get("denoise", True))
    if cy.use_denoising:
        cy.denoiser = "OPENIMAGEDENOISE"
        cy.denoising_input_passes = "RGB_ALBEDO_NORMAL"
        cy.denoising_prefilter = "FAST"
        if hasattr(cy, "denoising_quality"):
            cy.denoising_quality = "FAST"  # ~8% faster per frame than HIGH, no visible difference at 4 samples
    # Direct light plus Cycles' fast GI approximation (background-tinted ambient occlusion
    # within 1 m) instead of a full diffuse bounce, and no light tree (a handful of lights per
    # house): 2.9 -> 1.0 s per 640x480 frame at 4 samples + denoising on 2 cores, with
    # near-identical images (measured: docs/rendering.md).
    cy.max_bounces = 3
    cy.diffuse_bounces = 0
    cy.use_fast_gi = True
    cy.use_light_tree = False
    cy.glossy_bounces = 1
    cy.transmission_bounces = 1
    cy.transparent_max_bounces = 2
    cy.volume_bounces = 0
    cy.caustics_reflective = False
    cy.caustics_refractive = False
    cy.blur_glossy = 1.0
    cy.sample_clamp_indirect = 10.0
    cy.filter_width = 0.01  # every sample through the pixel centre: exact index and depth passes
    cy.seed = int(settings.get("seed", 0))
    if hasattr(cy, "use_auto_tile"):
        cy.use_auto_tile = False
    scene.render.use_persistent_data = True
    threads = int(settings.get("threads", 0) or 0)
    if threads > 0:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = threads
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    layer = scene.view_layers[0]
    layer.use_pass_combined = True
    layer.use_pass_z = True
    layer.use_pass_object_index = True
    img = scene.render.image_settings
    img.file_format = "OPEN_EXR_MULTILAYER"
    img.color_depth = "32"
    img.exr_codec = "NONE"
    scene.render.use_compositing = False
    scene.render.use_sequencer = False
    return scene, device_used


def _enable_gpu() -> str:
    """Switch Cycles to the first GPU backend with a device (OPTIX, CUDA, HIP, ONEAPI, METAL)."""
    import bpy

    try:
        prefs = bpy.context.preferences.addons["cycles"].preferences
    except KeyError:
        return "CPU"
    for backend in ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL"):
        try:
            prefs.compute_device_type = backend
        except TypeError:
            continue
        prefs.get_devices()
        devices = [d for d in prefs.devices if d.type == backend]
        if devices:
            for d in prefs.devices:
                d.use = d.type == backend
            return backend
    return "CPU"


def _material(key, cache: dict, problems: list[str]):
    import bpy

    if key in cache:
        return cache[key]
    texture, colour, roughness = key
    mat = bpy.data.materials.new(f"mat{len(cache)}")
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    # A Diffuse BSDF: ~20% cheaper per sample than the Principled BSDF and indistinguishable on
    # 3D-FRONT's mostly matte materials at 4 samples (mirrors and glass are not modelled).
    nodes.remove(nodes["Principled BSDF"])
    bsdf = nodes.new("ShaderNodeBsdfDiffuse")
    links.new(bsdf.outputs["BSDF"], nodes["Material Output"].inputs["Surface"])
    bsdf.inputs["Roughness"].default_value = float(roughness)
    rgba = (*[float(c) for c in colour], 1.0)
    image = None
    if texture:
        try:
            image = bpy.data.images.load(str(texture), check_existing=True)
        except RuntimeError as exc:
            problems.append(f"texture {texture} could not be read ({exc}); used the colour")
    if image is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = image
        tex.interpolation = "Linear"
        mix = nodes.new("ShaderNodeMix")
        mix.data_type = "RGBA"
        mix.blend_type = "MULTIPLY"
        mix.inputs["Factor"].default_value = 1.0
        mix.inputs[7].default_value = rgba  # B (colour) of the RGBA mix
        links.new(tex.outputs["Color"], mix.inputs[6])  # A (texture)
        links.new(mix.outputs[2], bsdf.inputs["Color"])
    else:
        bsdf.inputs["Color"].default_value = rgba
    cache[key] = mat
    return mat


def _add_mesh(scene, mesh, pass_index: int, texture_override, materials: dict, problems: list[str]):
    import bpy

    from panorooms3d.taxonomy import ARCHITECTURE_IDS

    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.faces, np.int64)
    me = bpy.data.meshes.new(mesh.name)
    me.vertices.add(len(v))
    me.vertices.foreach_set("co", v.astype(np.float32).ravel())
    me.loops.add(3 * len(f))
    me.loops.foreach_set("vertex_index", f.astype(np.int32).ravel())
    me.polygons.add(len(f))
    me.polygons.foreach_set("loop_start", np.arange(0, 3 * len(f), 3, dtype=np.int32))
    mat = mesh.material
    texture, uv_scale = mat.texture, mat.uv_scale
    if texture_override is not None:
        texture, uv_scale = texture_override
    if texture:
        uv = mesh.uv
        if uv is None:
            uv = box_uv(v, f, uv_scale)
        elif uv_scale not in (None, 1.0):
            uv = uv / float(uv_scale)
        layer = me.uv_layers.new(name="UVMap")
        layer.data.foreach_set("uv", np.asarray(uv, np.float32).ravel())
    me.update()
    if mesh.label not in ARCHITECTURE_IDS and hasattr(me, "set_sharp_from_angle"):
        me.shade_smooth()
        me.set_sharp_from_angle(angle=0.6)
    key = (str(texture) if texture else None, tuple(round(float(c), 4) for c in mat.colour), float(mat.roughness))
    me.materials.append(_material(key, materials, problems))
    ob = bpy.data.objects.new(mesh.name, me)
    ob.pass_index = int(pass_index)
    scene.collection.objects.link(ob)
    return ob


def build_scene(spec: dict) -> dict:
    """Build the Blender scene of a house once (see the module docstring).

    Args:
        spec: the render spec written by ``render_room`` — ``house`` (House), ``codes`` (one
            object code per ``house.all_meshes()`` entry, ints in [1, 32767]), ``textures``
            (mesh name -> (texture path, uv_scale) overrides), ``lights`` (see
            :func:`room_lights`), ``settings`` (RenderSettings as a dict).

    Returns:
        info: ``{"device": ..., "objects": n, "materials": n, "problems": [...], "seconds": s}``.
    """
    import bpy

    t0 = time.perf_counter()
    scene, device = _reset_and_configure(spec["settings"])
    problems: list[str] = []
    materials: dict = {}
    meshes = spec["house"].all_meshes()
    overrides = spec.get("textures", {})
    for mesh, code in zip(meshes, spec["codes"]):
        if len(mesh.faces) == 0:
            continue
        _add_mesh(scene, mesh, code, overrides.get(mesh.name), materials, problems)
    for i, light in enumerate(spec.get("lights", [])):
        data = bpy.data.lights.new(f"light{i}", type=light["type"])
        data.energy = float(light["power"])
        if light["type"] == "AREA":
            data.shape = "RECTANGLE"
            data.size, data.size_y = (float(s) for s in light["size"])
        else:
            data.shadow_soft_size = float(light["size"][0])
        ob = bpy.data.objects.new(f"light{i}", data)
        ob.location = light["location"]  # lights look along their local -z: straight down
        ob.visible_camera = False
        ob.visible_glossy = False
        scene.collection.objects.link(ob)
    world = bpy.data.worlds.new("world")
    world.light_settings.ao_factor = 1.0  # fast GI: ambient occlusion over 1 m replaces indirect light
    world.light_settings.distance = 1.0
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = (0.8, 0.8, 0.8, 1.0)
    bg.inputs["Strength"].default_value = float(spec["settings"].get("world_strength", 0.3))
    scene.world = world
    cam_data = bpy.data.cameras.new("camera")
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.sensor_width = 36.0
    cam_data.clip_start = 0.02
    cam_data.clip_end = 1000.0
    cam = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    return {"device": device, "objects": len(meshes), "materials": len(materials), "problems": problems,
            "seconds": time.perf_counter() - t0}


def render_group(K: np.ndarray, width: int, height: int, cam_to_world: np.ndarray, tmp_dir: Path,
                 log=None) -> dict[str, np.ndarray]:
    """Render cameras sharing one intrinsics ``K`` with the scene built by :func:`build_scene`.

    Args:
        K: (3, 3) OpenCV intrinsics with fx = fy, cx = (W-1)/2, cy = (H-1)/2 (no shift).
        width, height: image size in pixels.
        cam_to_world: (N, 4, 4) OpenCV camera-to-world poses (x right, y down, z forward; Z-up world).
        tmp_dir: folder for the per-view EXR (deleted after reading).
        log: optional callable(str) for progress lines.

    Returns:
        ``rgb`` (N, H, W, 3) uint8 sRGB, ``depth`` (N, H, W) float32 planar z in metres (0 = no
        hit), ``code`` (N, H, W) uint16 object codes (0 = nothing), ``seconds`` (N,) float64.
    """
    import bpy
    from mathutils import Matrix

    K = np.asarray(K, np.float64)
    if abs(K[0, 0] - K[1, 1]) > 1e-6 * K[0, 0] or abs(K[0, 2] - (width - 1) / 2) > 1e-6 \
            or abs(K[1, 2] - (height - 1) / 2) > 1e-6:
        raise ValueError(f"K must be centred with square pixels (cx=(W-1)/2, cy=(H-1)/2, fx=fy); got {K.tolist()}")
    scene = bpy.context.scene
    scene.render.resolution_x = int(width)
    scene.render.resolution_y = int(height)
    cam = scene.camera
    cam.data.lens = float(K[0, 0]) * cam.data.sensor_width / width
    n = len(cam_to_world)
    out = {
        "rgb": np.zeros((n, height, width, 3), np.uint8),
        "depth": np.zeros((n, height, width), np.float32),
        "code": np.zeros((n, height, width), np.uint16),
        "seconds": np.zeros(n, np.float64),
    }
    exr = Path(tmp_dir) / "view.exr"
    scene.render.filepath = str(exr)
    for i, c2w in enumerate(np.asarray(cam_to_world, np.float64)):
        t0 = time.perf_counter()
        m = c2w @ OPENCV_TO_BLENDER_CAM
        cam.matrix_world = Matrix([list(row) for row in m])
        bpy.ops.render.render(write_still=True)
        ch = read_exr(exr)
        names = {k.split(".", 1)[-1]: k for k in ch}  # drop the view-layer prefix
        rgb = np.stack([ch[names["Combined.R"]], ch[names["Combined.G"]], ch[names["Combined.B"]]], axis=-1)
        depth = ch[names["Depth.Z"]].astype(np.float32)
        code = np.rint(ch[names["IndexOB.X"]]).astype(np.int64)
        hit = (depth < NO_HIT_DEPTH) & (depth > 0) & (code > 0)
        out["rgb"][i] = linear_to_srgb8(rgb)
        out["depth"][i] = np.where(hit, depth, 0.0)
        out["code"][i] = np.where(hit, code, 0).astype(np.uint16)
        os.remove(exr)
        out["seconds"][i] = time.perf_counter() - t0
        if log is not None:
            log(f"view {i + 1}/{n} {width}x{height} {out['seconds'][i]:.3f} s")
    return out
