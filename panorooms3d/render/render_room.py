"""Render one room: cameras, one Blender subprocess (with a timeout), assembly, the frames store.

``render_room(house, room_id, out_path, settings)`` is the unit of work of the ``render`` stage:

1. sample the hand-held cameras and the panorama camera (:mod:`panorooms3d.render.cameras`);
2. re-sample the room's floor and wall textures from the house's pool (seeded, see
   :func:`resample_textures`);
3. give every (raw label, instance) pair an object code (:func:`object_codes`) that Blender
   writes into its exact object-index pass;
4. run ``python -m panorooms3d.render.worker SPEC.pkl`` in a temporary folder with a timeout
   (killed with its process group on a hang);
5. map codes back to labels and instances, assemble :class:`~panorooms3d.store.frames.Frames`
   and write the store atomically with ``write_frames``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

import panorooms3d
from panorooms3d.geometry import SKYBOX_FACES, intrinsics, skybox_cam_to_world
from panorooms3d.render.blender_scene import room_lights
from panorooms3d.render.cameras import coverage, house_index, panorama_camera, sample_cameras
from panorooms3d.render.settings import RenderSettings
from panorooms3d.run.atomic import temp_sibling
from panorooms3d.scene.model import House
from panorooms3d.store.frames import Frames, write_frames
from panorooms3d.taxonomy import FLOOR, get_class_set

#: Raw ids whose meshes take part in the per-room wall texture re-sampling (the paper30 "wall" class).
WALL_IDS = frozenset(int(i) for i in np.flatnonzero(get_class_set("paper30").raw_to_class == 17))
#: Raw ids of the floor meshes that take part in the floor texture re-sampling.
FLOOR_IDS = frozenset({FLOOR})
MAX_CODE = 32767  # Blender's Object.pass_index is a short


def room_seed(seed: int, room_uid: str) -> int:
    """A per-room seed: stable across runs and machines (crc32 of the uid mixed with ``seed``)."""
    return (zlib.crc32(room_uid.encode()) ^ (int(seed) * 0x9E3779B1)) & 0xFFFFFFFF


def object_codes(house: House) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Object codes for Blender's object-index pass.

    Returns:
        codes: one code (int in 1..32767) per mesh of ``house.all_meshes()``; meshes with the same
            (raw label, instance) share a code.
        code_label: (C + 1,) uint8 raw label of each code (code 0 = nothing = void 0).
        code_instance: (C + 1,) uint16 instance of each code (code 0 = 0).

    Raises ValueError when the house has more than 32767 distinct (label, instance) pairs.
    """
    table: dict[tuple[int, int], int] = {}
    codes = []
    for m in house.all_meshes():
        key = (int(m.label), int(m.instance))
        if key not in table:
            table[key] = len(table) + 1
        codes.append(table[key])
    if len(table) > MAX_CODE:
        raise ValueError(f"house {house.uid} has {len(table)} (label, instance) pairs; at most {MAX_CODE} fit")
    code_label = np.zeros(len(table) + 1, np.uint8)
    code_instance = np.zeros(len(table) + 1, np.uint16)
    for (label, inst), c in table.items():
        code_label[c] = label
        code_instance[c] = inst
    return codes, code_label, code_instance


def resample_textures(house: House, room_id: str, rng: np.random.Generator) -> dict[str, tuple[str, float]]:
    """Per-room texture diversity (the paper re-samples floor and wall textures per room).

    The house's pool of floor textures (textures of every floor mesh of the house) and of wall
    textures (every wall-class mesh) is collected; the rendered room's floor meshes all get one
    texture drawn from the floor pool, its wall meshes one from the wall pool, preferring a
    texture different from the room's current one. Textures that do not exist on disk are left out
    of the pools. Rooms of a house with an empty pool keep their materials.

    Returns:
        mesh name -> (texture path, uv_scale) overrides for the rendered room's meshes.
    """
    room = house.room(room_id)
    out: dict[str, tuple[str, float]] = {}
    for ids in (FLOOR_IDS, WALL_IDS):
        pool: dict[str, float] = {}
        for m in house.all_meshes():
            tex = m.material.texture
            if m.label in ids and tex is not None and Path(tex).is_file():
                pool.setdefault(str(tex), float(m.material.uv_scale))
        targets = [m for m in room.meshes if m.label in ids]
        if not pool or not targets:
            continue
        current = {str(m.material.texture) for m in targets if m.material.texture is not None}
        choices = sorted(t for t in pool if t not in current) or sorted(pool)
        pick = choices[int(rng.integers(len(choices)))]
        for m in targets:
            out[m.name] = (pick, pool[pick])
    return out


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel SIGKILL Blender when the process that started it dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def run_worker(spec: dict, tmp_dir: Path, timeout: float) -> tuple[dict[str, np.ndarray], dict]:
    """Run the Blender subprocess on ``spec`` in ``tmp_dir`` with a ``timeout`` in seconds.

    Returns the result arrays (``<group>/rgb``...) and the worker's info dict. Raises
    TimeoutError (the process group is killed) or RuntimeError with the end of Blender's log.
    """
    tmp_dir = Path(tmp_dir)
    spec = dict(spec, tmp_dir=str(tmp_dir), result=str(tmp_dir / "result.npz"), info=str(tmp_dir / "info.json"))
    spec_path = tmp_dir / "spec.pkl"
    with open(spec_path, "wb") as fh:
        pickle.dump(spec, fh, protocol=pickle.HIGHEST_PROTOCOL)
    log_path = tmp_dir / "blender.log"
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(k, None)  # Cycles and OIDN use their own threads (settings.threads)
    src = str(Path(panorooms3d.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else src
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "panorooms3d.render.worker", str(spec_path)], stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise TimeoutError(f"Blender did not finish within {timeout:.0f} s (killed); "
                               f"log: {_tail(log_path)}") from None
        except BaseException:
            _kill(proc)
            raise
    if rc != 0 or not Path(spec["result"]).exists():
        raise RuntimeError(f"Blender exited with status {rc}; log: {_tail(log_path)}")
    with np.load(spec["result"]) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(Path(spec["info"]).read_text())


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:])


def render_room(house: House, room_id: str, out_path: Path, settings: RenderSettings | None = None, *,
                skybox_only: bool = False) -> dict:
    """Render a room of ``house`` into a frames store at ``out_path`` (zarr v3, written atomically).

    Args:
        house: the whole house (every mesh is loaded into Blender; labels are raw ids).
        room_id: the room to capture (``Room.room_id``).
        out_path: the ``.zarr`` store to write (the layout of :mod:`panorooms3d.store.frames`).
        settings: RenderSettings (defaults when None).
        skybox_only: render only the six skybox faces (the panorama-only build): the store holds 0
            perspective frames. The cameras are still sampled (not rendered), so the seeded texture
            re-sampling, and hence the skybox, is the same as in a full render of the room.

    Returns:
        info: ``room_uid``, ``frames`` (perspective views), ``skybox_faces``, ``coverage`` (share of
        the room's surface seen, 0-1), ``view_selection``, ``interior_coverage`` (coverage-driven
        views: predicted share of the interior-visible surface seen, else None), ``seconds``
        (total), ``seconds_per_frame`` (perspective render only), ``build_seconds``, ``skybox_seconds``, ``pano_camera`` (3,) metres, ``moved``
        (panorama camera moved off the centre), ``device``, ``problems``.

    Raises RuntimeError/TimeoutError when Blender fails or hangs (the store is then not written),
    RuntimeError when the room has no valid camera poses, KeyError for an unknown room.
    """
    t0 = time.perf_counter()
    settings = settings or RenderSettings()
    room = house.room(room_id)
    rng = np.random.default_rng(room_seed(settings.seed, room.uid))
    index = house_index(house)
    K = intrinsics(settings.width, settings.height, settings.hfov_deg)
    selection: dict = {}
    if settings.view_selection == "coverage":  # as few views as reach the coverage target
        from panorooms3d.render.coverage import select_views

        c2w, selection = select_views(house, room_id, settings, rng, index=index)
        cam_stats = selection["camera_sampling"]
    else:
        c2w, cam_stats = sample_cameras(house, room_id, settings, rng, index=index)
    pano, pano_info = panorama_camera(house, room_id, settings.clearance, index=index)
    S = settings.skybox_size
    K_sky = intrinsics(S, S, 90.0)
    sky_c2w = np.stack([skybox_cam_to_world(face, pano) for face in SKYBOX_FACES])
    textures = resample_textures(house, room_id, rng) if settings.resample_textures else {}
    codes, code_label, code_instance = object_codes(house)
    spec = {
        "house": house,
        "room_id": room_id,
        "codes": codes,
        "textures": textures,
        "lights": room_lights(house),
        "settings": settings.to_dict(),
        "groups": [
            {"name": "views", "K": K, "width": settings.width, "height": settings.height, "cam_to_world": c2w},
            {"name": "skybox", "K": K_sky, "width": S, "height": S, "cam_to_world": sky_c2w},
        ],
    }
    if skybox_only:
        spec["groups"] = spec["groups"][1:]
        c2w = c2w[:0]
    # The worker's scratch folder is a hidden temporary next to the store: a killed run leaves it
    # where the runner's clean-up of stale temporaries finds it.
    tmp = temp_sibling(Path(out_path).with_name(Path(out_path).name + ".render"))
    tmp.mkdir(parents=True)
    try:
        arrays, winfo = run_worker(spec, tmp, settings.timeout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if skybox_only:
        cov = 0.0
        arrays.update({"views/rgb": np.zeros((0, settings.height, settings.width, 3), np.uint8),
                       "views/depth": np.zeros((0, settings.height, settings.width), np.float32),
                       "views/code": np.zeros((0, settings.height, settings.width), np.int64),
                       "views/seconds": np.zeros(0)})
    else:
        cov = coverage(house, room_id, K, settings.width, settings.height, c2w, index=index, seed=settings.seed)

    def lab(group: str) -> tuple[np.ndarray, np.ndarray]:
        code = arrays[f"{group}/code"].astype(np.int64)
        return code_label[code], code_instance[code]

    label, instance = lab("views")
    sky_label, sky_instance = lab("skybox")
    skybox = {
        face: {"rgb": arrays["skybox/rgb"][i], "depth": arrays["skybox/depth"][i], "label": sky_label[i],
               "instance": sky_instance[i]}
        for i, face in enumerate(SKYBOX_FACES)
    }
    view_seconds = arrays["views/seconds"]
    attrs = {
        "room_uid": room.uid,
        "room_type": room.type,
        "settings": settings.to_dict(),
        "coverage": round(cov, 4),
        "camera_sampling": cam_stats,
        "view_selection": {"method": settings.view_selection, **selection},
        "pano_camera_info": pano_info,
        "texture_overrides": {k: v[0] for k, v in textures.items()},
        "versions": {"blender": winfo.get("blender", ""), "panorooms3d": getattr(panorooms3d, "__version__", "")},
        "source": str(house.source) if house.source else "",
        "device": winfo.get("device", "CPU"),
        "render_problems": winfo.get("problems", []),
        "depth": "planar z along the camera's +z, metres, 0 = no hit",
        "camera_convention": "OpenCV (x right, y down, z forward), Z-up world",
        "skybox_only": bool(skybox_only),
    }
    frames = Frames(rgb=arrays["views/rgb"], depth=arrays["views/depth"], label=label, instance=instance, K=K,
                    cam_to_world=c2w, skybox=skybox, skybox_K=K_sky, pano_camera=pano, attrs=attrs)
    write_frames(Path(out_path), frames)
    return {
        "room_uid": room.uid,
        "frames": int(len(c2w)),
        "skybox_faces": len(SKYBOX_FACES),
        "coverage": round(cov, 4),
        "view_selection": settings.view_selection,
        "interior_coverage": selection.get("coverage"),
        "seconds": time.perf_counter() - t0,
        "seconds_per_frame": float(view_seconds.mean()) if len(view_seconds) else 0.0,
        "build_seconds": float(winfo.get("build_seconds", 0.0)),
        "skybox_seconds": float(winfo.get("group_seconds", {}).get("skybox", 0.0)),
        "pano_camera": [float(x) for x in pano],
        "moved": bool(pano_info["moved"]),
        "device": winfo.get("device", "CPU"),
        "problems": winfo.get("problems", []),
    }
