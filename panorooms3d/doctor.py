"""``panorooms3d doctor``: is this machine ready, and (``--gpu``) does every GPU path work, how fast.

``doctor`` checks, each with what to do when it fails:

- Python 3.11 (bpy 4.5 pins it) and the required packages (bpy, open3d, zarr >= 3, numpy, torch, ...)
  with their versions; optional ones (ray, tensorboard, spconv, huggingface_hub) as notes;
- devices: torch (CUDA build, GPUs, bf16, NCCL), Open3D (CUDA), Blender Cycles (the GPU backends it
  was built with and the devices it finds, probed in a subprocess so a driver crash cannot take
  the doctor down);
- the shared libraries that bpy and Open3D load (``ldd`` of their extension modules; the Debian
  package that provides each missing one);
- free disk where the data goes (``--path``), memory, cores, ``torchrun``.

Exit code 1 when something required is missing.

``doctor --gpu`` runs :func:`gpu_check`, one part per GPU path, in at most a few minutes on a CUDA
machine (the sizes below are chosen for that), and prints one JSON document with each part's result
and the throughput numbers (docs/performance.md, "How to measure on a GPU"):

- ``render``: a tiny box room rendered by Cycles on the CPU and on the GPU (OptiX/CUDA/HIP, the
  backend the renderer picks): labels and instances identical and depth within 1 mm on every pixel
  away from label edges, and on >= 99.9% of all pixels; frames per second on each device;
- ``models``: every registered model (default: all on CUDA; the 3D models and teacher-tiny on a
  CPU): the float32 loss against the bf16-autocast loss of the same weights and input (within 2%),
  then bf16 training steps (Adam), their time and voxels (pixels) per second; for sparseconv with
  spconv installed, the spconv path against the masked dense path (float32, within 0.1%);
- ``projection``: the differentiable panorama projection of an analytic box room on the CPU and on
  CUDA: hits, depth (1 mm), values and gradients equal within tolerance; the CPU depth is also
  checked against the analytic distance to the walls; rays per second;
- ``ddp``: a 2-rank DDP training step launched with ``torchrun`` (NCCL on two GPUs; gloo on the CPU
  otherwise): ranks end with identical weights;
- parts that need a GPU are ``skipped`` on a CPU-only machine, with the reason, and listed in
  ``skipped``; a ``fail`` makes the exit code 1.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

# -- environment checks --------------------------------------------------------------------------------------------

REQUIRED_PACKAGES = {  # import name -> (distribution, minimum version or "")
    "bpy": ("bpy", "4.5"),
    "open3d": ("open3d", "0.18"),
    "zarr": ("zarr", "3.0"),
    "numpy": ("numpy", "1.26"),
    "torch": ("torch", "2.2"),
    "PIL": ("pillow", "10"),
    "py360convert": ("py360convert", "1.0"),
    "cv2": ("opencv-python-headless", "4.8"),
    "trimesh": ("trimesh", "4.0"),
    "scipy": ("scipy", "1.11"),
    "skimage": ("scikit-image", "0.22"),
    "click": ("click", "8.1"),
    "tqdm": ("tqdm", "4.66"),
}
OPTIONAL_PACKAGES = {  # import name -> (distribution, what it is for)
    "ray": ("ray", "the ray executor (multi-node builds): pip install 'panorooms3d[ray]'"),
    "tensorboard": ("tensorboard", "TensorBoard logs of training runs: pip install tensorboard"),
    "huggingface_hub": ("huggingface_hub", "downloads from the Hugging Face Hub: pip install huggingface_hub"),
    "spconv": ("spconv", "the sparse-convolution path of SparseConvUNet on CUDA: pip install spconv-cu12x "
                         "(match your CUDA)"),
    "psutil": ("psutil", "memory numbers in doctor (falls back to /proc/meminfo)"),
}
#: Shared library -> Debian/Ubuntu package that provides it (what bpy and Open3D link against).
SYSTEM_LIBRARY_PACKAGES = {
    "libX11.so.6": "libx11-6", "libXrender.so.1": "libxrender1", "libXfixes.so.3": "libxfixes3",
    "libXi.so.6": "libxi6", "libxkbcommon.so.0": "libxkbcommon0", "libSM.so.6": "libsm6", "libICE.so.6": "libice6",
    "libGL.so.1": "libgl1", "libEGL.so.1": "libegl1", "libGLX.so.0": "libglx0", "libGLdispatch.so.0": "libglvnd0",
    "libOpenGL.so.0": "libopengl0", "libXext.so.6": "libxext6", "libxcb.so.1": "libxcb1", "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6", "libXxf86vm.so.1": "libxxf86vm1", "libXt.so.6": "libxt6",
    "libgomp.so.1": "libgomp1", "libusb-1.0.so.0": "libusb-1.0-0", "libudev.so.1": "libudev1",
    "libbsd.so.0": "libbsd0", "libmd.so.0": "libmd0", "libuuid.so.1": "libuuid1",
}
MIN_FREE_DISK_GB = 2.0  # below this nothing useful fits (a demo dataset with frames is ~1 GB)
WARN_FREE_DISK_GB = 50.0  # a few thousand rooms with frames kept
WARN_AVAILABLE_MEMORY_GB = 4.0  # one fusion worker of a large room plus Blender


@dataclass
class Check:
    """One line of the doctor's report.

    Attributes:
        name: what was checked.
        status: ``ok``, ``missing`` (required and absent: exit code 1), ``warn`` (works, but see
            ``fix``), ``note`` (optional, absent) or ``info``.
        detail: versions, devices, numbers.
        fix: what to do, when status is not ok.
        data: machine-readable details (the JSON report).
    """

    name: str
    status: str
    detail: str
    fix: str = ""
    data: dict = field(default_factory=dict)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _at_least(version: str, minimum: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        out = []
        for p in v.split("+")[0].split("."):
            digits = "".join(ch for ch in p if ch.isdigit())
            if not digits:
                break
            out.append(int(digits))
        return tuple(out)

    return parts(version) >= parts(minimum)


def check_python() -> Check:
    v = sys.version_info
    text = platform.python_version()
    if (v.major, v.minor) == (3, 11):
        return Check("python", "ok", f"{text} ({sys.executable})")
    return Check("python", "missing", f"{text}: bpy 4.5 needs Python 3.11",
                 "create the environment with python3.11 (make setup does: PYTHON=python3.11)")


def check_packages() -> list[Check]:
    checks = []
    for module, (dist, minimum) in REQUIRED_PACKAGES.items():
        version = _version(dist)
        if version is None and importlib.util.find_spec(module) is not None:
            version = "unknown version"
        if version is None:
            checks.append(Check(dist, "missing", "not installed", f"pip install '{dist}>={minimum}' "
                                "(or make setup)"))
        elif minimum and version != "unknown version" and not _at_least(version, minimum):
            checks.append(Check(dist, "missing", f"{version} < {minimum}", f"pip install -U '{dist}>={minimum}'"))
        else:
            checks.append(Check(dist, "ok", version, data={"version": version}))
    for module, (dist, purpose) in OPTIONAL_PACKAGES.items():
        version = _version(dist)
        if version is None and module == "spconv":  # spconv ships as spconv-cu118, spconv-cu120, ...
            version = next((d.version for d in importlib.metadata.distributions()
                            if (d.metadata["Name"] or "").lower().startswith("spconv")), None)
        if version is None:
            checks.append(Check(dist, "note", "not installed (optional)", purpose))
        else:
            checks.append(Check(dist, "ok", version, data={"version": version}))
    return checks


def torch_devices() -> dict:
    """torch's build and devices: CUDA version, GPUs (name, memory, capability), bf16, NCCL, gloo."""
    import torch
    import torch.distributed as dist

    info: dict = {"version": torch.__version__, "cuda_build": torch.version.cuda, "cuda_available": False,
                  "gpus": [], "nccl": bool(dist.is_available() and dist.is_nccl_available()),
                  "gloo": bool(dist.is_available() and dist.is_gloo_available())}
    if torch.cuda.is_available():
        info["cuda_available"] = True
        info["bf16"] = bool(torch.cuda.is_bf16_supported())
        info["cudnn"] = torch.backends.cudnn.version()
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["gpus"].append({"index": i, "name": p.name, "memory_gb": round(p.total_memory / 2**30, 1),
                                 "capability": f"{p.major}.{p.minor}"})
    return info


def check_torch() -> tuple[Check, dict]:
    try:
        info = torch_devices()
    except Exception as exc:  # a broken torch install
        return Check("torch devices", "missing", f"torch does not import: {exc}",
                     "reinstall torch (make setup installs the CPU build where there is no CUDA)"), {}
    if info["cuda_available"]:
        gpus = ", ".join(f"{g['name']} ({g['memory_gb']} GiB)" for g in info["gpus"])
        detail = (f"CUDA {info['cuda_build']}: {len(info['gpus'])} GPU(s): {gpus}; bf16 "
                  f"{'yes' if info.get('bf16') else 'no'}; NCCL {'yes' if info['nccl'] else 'no'}")
        return Check("torch devices", "ok", detail, data=info), info
    if info["cuda_build"]:
        return Check("torch devices", "warn", f"CUDA {info['cuda_build']} build, but no GPU is visible",
                     "check nvidia-smi, the driver and CUDA_VISIBLE_DEVICES", data=info), info
    return Check("torch devices", "info", "CPU build (no CUDA): training runs on the CPU, gloo for DDP",
                 "on a GPU machine install a CUDA build of torch (https://pytorch.org/get-started)", data=info), info


def check_open3d() -> Check:
    try:
        import open3d as o3d
    except Exception as exc:
        return Check("open3d devices", "missing", f"open3d does not import: {exc}",
                     "install the system libraries listed below, then pip install open3d")
    cuda = bool(getattr(o3d.core, "cuda", None) and o3d.core.cuda.is_available())
    n = o3d.core.cuda.device_count() if cuda else 0
    detail = f"{o3d.__version__}: CPU" + (f" + {n} CUDA device(s) (fuse --device CUDA:0)" if cuda else
                                          " only (fusion runs on the CPU; the pip wheel is CPU-only on Linux)")
    return Check("open3d devices", "ok", detail, data={"version": o3d.__version__, "cuda_devices": n})


_CYCLES_PROBE = r"""
import json, sys
out = {}
try:
    import bpy, _cycles
    out["blender"] = bpy.app.version_string
    cuda, optix, hip, metal, oneapi = _cycles.get_device_types()[:5]
    out["built_with"] = [n for n, f in (("CUDA", cuda), ("OPTIX", optix), ("HIP", hip), ("METAL", metal),
                                        ("ONEAPI", oneapi)) if f]
    prefs = bpy.context.preferences.addons["cycles"].preferences
    prefs.refresh_devices()
    out["devices"] = {}
    for backend in ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL"):
        if backend not in out["built_with"]:
            continue
        found = prefs.get_devices_for_type(backend)
        out["devices"][backend] = [d.name for d in found if d.type == backend]
    out["cpu"] = [d.name for d in prefs.devices if d.type == "CPU"]
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
print("CYCLES_PROBE " + json.dumps(out))
"""


def cycles_devices(timeout: float = 120.0) -> dict:
    """Blender's version, the Cycles GPU backends it was built with and the devices each finds.

    Runs in a subprocess (a GPU driver problem can crash Blender). Returns ``{"blender",
    "built_with": [...], "devices": {backend: [names]}, "cpu": [names], "gpu_backend": the backend
    the renderer would use or None}``, or ``{"error": ...}``.
    """
    try:
        proc = subprocess.run([sys.executable, "-c", _CYCLES_PROBE], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"the Cycles device probe did not finish in {timeout:.0f} s (GPU driver hang?)"}
    line = next((x for x in proc.stdout.splitlines() if x.startswith("CYCLES_PROBE ")), None)
    if line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"Blender exited with {proc.returncode}: {' | '.join(tail)}"}
    info = json.loads(line[len("CYCLES_PROBE "):])
    # The renderer (render/blender_scene.py) takes the first backend, in this order, that has a device.
    info["gpu_backend"] = next((b for b in ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
                                if info.get("devices", {}).get(b)), None)
    return info


def check_cycles() -> tuple[Check, dict]:
    info = cycles_devices()
    if "error" in info:
        return Check("blender cycles", "missing", info["error"],
                     "install the system libraries listed below; reinstall bpy==4.5.* (make setup)", data=info), info
    if info["gpu_backend"]:
        names = ", ".join(info["devices"][info["gpu_backend"]])
        detail = f"Blender {info['blender']}: GPU via {info['gpu_backend']}: {names} (render --device gpu)"
        return Check("blender cycles", "ok", detail, data=info), info
    built = "/".join(info.get("built_with", [])) or "no GPU backend"
    return Check("blender cycles", "info", f"Blender {info.get('blender')}: CPU rendering ({built} built in, no GPU "
                 "device found)", "for GPU rendering: an NVIDIA driver (OptiX/CUDA) or AMD ROCm (HIP) visible here",
                 data=info), info


def _ldd_missing(path: Path) -> list[str]:
    proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=60)
    return sorted({line.split("=>")[0].strip() for line in proc.stdout.splitlines() if "not found" in line})


def check_system_libraries() -> Check:
    """The shared libraries bpy's and Open3D's extension modules link against (``ldd``)."""
    if shutil.which("ldd") is None:
        return Check("system libraries", "info", "ldd not found: cannot list the shared libraries (not Linux?)")
    files: list[Path] = []
    for module in ("bpy", "open3d"):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.origin:
            continue
        root = Path(spec.origin).parent
        files += sorted(root.glob("__init__*.so")) + sorted(root.glob("pybind*.so")) + sorted(root.glob("libOpen3D*.so*"))
    if not files:
        return Check("system libraries", "info", "bpy and open3d are not installed: nothing to check")
    missing: dict[str, list[str]] = {}
    for f in files:
        for lib in _ldd_missing(f):
            missing.setdefault(lib, []).append(f.parent.name)
    if not missing:
        return Check("system libraries", "ok", f"every library of {len(files)} bpy/Open3D modules resolves",
                     data={"checked": [str(f) for f in files]})
    pkgs = sorted({SYSTEM_LIBRARY_PACKAGES.get(lib, "?") for lib in missing} - {"?"})
    unknown = sorted(lib for lib in missing if lib not in SYSTEM_LIBRARY_PACKAGES)
    detail = "missing: " + ", ".join(f"{lib} ({'/'.join(sorted(set(mods)))})" for lib, mods in sorted(missing.items()))
    fix = (f"sudo apt-get install -y {' '.join(pkgs)}" if pkgs else "") + (
        f"; find the package providing {', '.join(unknown)} (apt-file search)" if unknown else "")
    return Check("system libraries", "missing", detail, fix.strip("; "), data={"missing": sorted(missing)})


def memory_gb() -> tuple[float, float]:
    """(total, available) memory in GiB (psutil, else /proc/meminfo)."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return vm.total / 2**30, vm.available / 2**30
    except ImportError:
        fields = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = float(value.split()[0]) / 2**20  # kB -> GiB
        return fields.get("MemTotal", 0.0), fields.get("MemAvailable", fields.get("MemFree", 0.0))


def check_resources(path: Path) -> list[Check]:
    checks = []
    target = Path(path).resolve()
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    du = shutil.disk_usage(probe)
    free = du.free / 2**30
    data = {"path": str(target), "free_gb": round(free, 1), "total_gb": round(du.total / 2**30, 1)}
    if free < MIN_FREE_DISK_GB:
        checks.append(Check("disk", "missing", f"{free:.1f} GiB free at {probe}",
                            f"free space or choose another --path (at least {MIN_FREE_DISK_GB:.0f} GiB)", data))
    elif free < WARN_FREE_DISK_GB:
        checks.append(Check("disk", "warn", f"{free:.1f} GiB free at {probe}",
                            "enough for demos; a paper-scale build needs hundreds of GiB (build --delete-frames "
                            "saves most of it)", data))
    else:
        checks.append(Check("disk", "ok", f"{free:.0f} GiB free at {probe}", data=data))
    total, avail = memory_gb()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    data = {"total_gb": round(total, 1), "available_gb": round(avail, 1), "cores": cores}
    if avail < WARN_AVAILABLE_MEMORY_GB:
        checks.append(Check("memory", "warn", f"{avail:.1f} of {total:.1f} GiB available, {cores} cores",
                            "use --workers 1 for fusion and smaller --block for training", data))
    else:
        checks.append(Check("memory", "ok", f"{avail:.1f} of {total:.1f} GiB available, {cores} cores", data=data))
    torchrun = Path(sys.executable).with_name("torchrun")
    if torchrun.exists() or shutil.which("torchrun"):
        checks.append(Check("torchrun", "ok", str(torchrun if torchrun.exists() else shutil.which("torchrun"))))
    else:
        checks.append(Check("torchrun", "warn", "not on PATH (DDP training launches with it)",
                            f"use {sys.executable} -m torch.distributed.run instead"))
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            proc = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=30)
            lines = [x.strip() for x in proc.stdout.splitlines() if x.strip()]
            checks.append(Check("nvidia driver", "info", "; ".join(lines) or proc.stderr.strip()[:200]))
        except subprocess.TimeoutExpired:
            checks.append(Check("nvidia driver", "warn", "nvidia-smi hangs", "check the NVIDIA driver"))
    return checks


def environment_report(path: Path = Path(".")) -> list[Check]:
    """Every environment check, in the order printed."""
    checks = [check_python(), *check_packages()]
    checks.append(check_torch()[0])
    checks.append(check_open3d())
    checks.append(check_cycles()[0])
    checks.append(check_system_libraries())
    checks += check_resources(path)
    return checks


MARKS = {"ok": "ok     ", "missing": "MISSING", "warn": "warn   ", "note": "-      ", "info": "info   "}


def format_checks(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"  {MARKS.get(c.status, c.status):8} {c.name:<{width}}  {c.detail}")
        if c.fix and c.status in ("missing", "warn", "note"):
            lines.append(f"  {'':8} {'':<{width}}  -> {c.fix}")
    return "\n".join(lines)


# -- the GPU check ------------------------------------------------------------------------------------------------


def _log(msg: str) -> None:
    click.echo(msg, err=True)


def tiny_room_house():
    """A 3 x 2.5 x 2.6 m box room with one box-shaped cabinet (distinct raw labels and instances)."""
    import numpy as np

    from panorooms3d.scene.model import House, Material, Mesh, Room
    from panorooms3d.taxonomy import CEILING, FLOOR

    X, Y, Z = 3.0, 2.5, 2.6
    c = [(0.0, 0.0), (X, 0.0), (X, Y), (0.0, Y)]
    tri = np.array([[0, 1, 2], [0, 2, 3]])
    meshes = [Mesh("Floor", np.array([(x, y, 0.0) for x, y in c]), tri, FLOOR, 1,
                   material=Material(colour=(0.7, 0.6, 0.5)), room_id="Room-1"),
              Mesh("Ceiling", np.array([(x, y, Z) for x, y in c[::-1]]), tri, CEILING, 2,
                   material=Material(colour=(0.9, 0.9, 0.9)), room_id="Room-1")]
    for i, label in enumerate((40, 93, 95, 85)):
        (xa, ya), (xb, yb) = c[i], c[(i + 1) % 4]
        v = np.array([(xa, ya, 0.0), (xb, yb, 0.0), (xb, yb, Z), (xa, ya, Z)])
        meshes.append(Mesh(f"Wall{i}", v, tri, label, 3 + i, material=Material(colour=(0.8, 0.8, 0.75)),
                           room_id="Room-1"))
    (x0, y0, z0), (x1, y1, z1) = (0.3, 0.3, 0.0), (0.9, 0.8, 0.8)
    v = np.array([[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0],
                  [x0, y0, z1], [x1, y0, z1], [x1, y1, z1], [x0, y1, z1]], float)
    f = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                  [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]])
    meshes.append(Mesh("Cabinet", v, f, 48, 7, material=Material(colour=(0.3, 0.4, 0.6)), room_id="Room-1"))
    return House(uid="doctor", rooms=[Room("doctor", "Room-1", "Bedroom", meshes)])


def compare_renders(a: dict, b: dict, depth_tol: float = 1e-3) -> dict:
    """Compare two renders of the same cameras (``label``, ``instance``, ``depth`` arrays, [N, H, W]).

    Pixels whose 3x3 neighbourhood in ``a`` has one label and one instance are "interior": there the
    labels and instances must be identical and the depth within ``depth_tol`` metres. Over all
    pixels, at least 99.9% must agree (edges may differ where the two devices' ray-triangle tests
    round differently). Returns the shares and ``ok``.
    """
    import numpy as np
    from scipy import ndimage

    key = a["label"].astype(np.int64) * 65536 + a["instance"].astype(np.int64)
    size = (1, 3, 3) if key.ndim == 3 else (3, 3)
    interior = ndimage.minimum_filter(key, size=size, mode="nearest") == ndimage.maximum_filter(
        key, size=size, mode="nearest")
    same_label = (a["label"] == b["label"]) & (a["instance"] == b["instance"])
    depth_ok = np.abs(a["depth"].astype(np.float64) - b["depth"].astype(np.float64)) <= depth_tol
    both = same_label & depth_ok
    res = {
        "pixels": int(key.size),
        "interior_share": float(interior.mean()),
        "labels_identical_interior": bool(same_label[interior].all()),
        "depth_within_1mm_interior": bool(depth_ok[interior].all()),
        "labels_identical_share": float(same_label.mean()),
        "depth_within_1mm_share": float(depth_ok.mean()),
        "max_depth_difference_interior_m": float(np.abs(a["depth"] - b["depth"])[interior].max()) if interior.any()
        else 0.0,
    }
    res["ok"] = bool(res["labels_identical_interior"] and res["depth_within_1mm_interior"] and both.mean() >= 0.999)
    return res


def _render_arrays(store: Path) -> dict:
    """``{"views": {label, instance, depth} [N, H, W], "skybox": the same [6, S, S], "device": ...}``."""
    import numpy as np

    from panorooms3d.geometry import SKYBOX_FACES
    from panorooms3d.store.frames import read_frames

    fr = read_frames(store)
    sky = {name: np.stack([fr.skybox[f][name] for f in SKYBOX_FACES]) for name in ("label", "instance", "depth")}
    return {"views": {"label": fr.label, "instance": fr.instance, "depth": fr.depth}, "skybox": sky,
            "device": fr.attrs.get("device", "CPU")}


def check_render(work: Path, cycles: dict, size: tuple[int, int] = (320, 240), views: int = 4,
                 skybox: int = 128) -> dict:
    """Render the tiny room with Cycles on the CPU and (when Cycles finds one) on the GPU; compare."""
    from panorooms3d.render.render_room import render_room
    from panorooms3d.render.settings import RenderSettings

    house = tiny_room_house()
    part: dict = {"size": list(size), "views": views, "skybox_size": skybox}
    results = {}
    devices = ["CPU"] + (["GPU"] if cycles.get("gpu_backend") else [])
    for device in devices:
        settings = RenderSettings(width=size[0], height=size[1], views=views, samples=4, skybox_size=skybox, seed=1,
                                  device=device, timeout=600)
        t0 = time.perf_counter()
        info = render_room(house, "Room-1", work / f"render-{device.lower()}.zarr", settings)
        arrays = _render_arrays(work / f"render-{device.lower()}.zarr")
        results[device] = arrays
        spf = float(info.get("seconds_per_frame") or 0.0)
        part[device.lower()] = {"device_used": arrays["device"], "seconds": round(time.perf_counter() - t0, 2),
                                "seconds_per_frame": round(spf, 4),
                                "frames_per_second": round(1.0 / spf, 2) if spf > 0 else None}
        _log(f"  render {device}: {info['frames']} frames + 6 skybox faces, {spf:.3f} s per frame "
             f"(device used: {arrays['device']})")
    if "GPU" not in results:
        reason = cycles.get("error") or "Cycles finds no GPU device (no OptiX/CUDA/HIP/oneAPI/Metal device)"
        part.update(status="skipped", gpu_skipped=reason)
        part["status_cpu"] = "ok"
        return part
    if results["GPU"]["device"] == "CPU":
        part.update(status="fail", error="the GPU render fell back to the CPU: Cycles could not use the GPU")
        return part
    cmp = {group: compare_renders(results["CPU"][group], results["GPU"][group]) for group in ("views", "skybox")}
    part["compare"] = cmp
    part["status"] = "ok" if all(c["ok"] for c in cmp.values()) else "fail"
    _log("  render GPU vs CPU: " + "; ".join(
        f"{g}: labels identical on {100 * c['labels_identical_share']:.3f}% of pixels (all interior ones: "
        f"{c['labels_identical_interior']}), depth within 1 mm on {100 * c['depth_within_1mm_share']:.3f}%"
        for g, c in cmp.items()) + f" -> {part['status']}")
    return part


def default_check_models(cuda: bool) -> list[str]:
    """Every registered model on CUDA; on a CPU the 3D models and teacher-tiny (the large ViTs take GBs)."""
    from panorooms3d.nn.registry import list_models

    specs = list_models()
    if cuda:
        return [s.name for s in specs]
    return [s.name for s in specs if s.is_3d or s.name == "teacher-tiny"]


def _model_input(spec, device, cuda: bool, generator):
    """A seeded input and target: (B, 4, D, D, D) volumes with half the voxels free, or (B, 3, H, W) images."""
    import torch

    if spec.is_3d:
        b, d = (2, 64) if cuda else (1, 32)
        x = torch.randn(b, 4, d, d, d, generator=generator)
        free = torch.rand(b, 1, d, d, d, generator=generator) < 0.5
        x = torch.where(free, torch.tensor([-3.0, -1.0, -1.0, -1.0]).view(1, 4, 1, 1, 1), x)
        y = torch.randint(0, 30, (b, d, d, d), generator=generator)
    else:
        b, (h, w) = (2, (512, 1024)) if cuda else (1, (64, 128))
        x = torch.randn(b, 3, h, w, generator=generator)
        y = torch.randint(0, 30, (b, h, w), generator=generator)
    return x.to(device), y.to(device)


def check_model(name: str, device: str, steps: int = 2) -> dict:
    """float32 vs bf16-autocast loss (CUDA) and timed training steps of one registered model."""
    import torch
    import torch.nn.functional as F

    from panorooms3d.nn.registry import build_model, count_parameters, get_spec

    cuda = device.startswith("cuda")
    spec = get_spec(name)
    torch.manual_seed(0)
    model = build_model(name, num_classes=30).to(device)
    g = torch.Generator().manual_seed(0)
    x, y = _model_input(spec, device, cuda, g)
    res: dict = {"params_m": round(count_parameters(model) / 1e6, 3), "input": list(x.shape)}

    def loss_of(out: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.float(), y)

    model.eval()
    with torch.no_grad():
        loss32 = float(loss_of(model(x)))
        res["loss_float32"] = round(loss32, 5)
        if cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss16 = float(loss_of(model(x)))
            res["loss_bf16"] = round(loss16, 5)
            res["bf16_relative_difference"] = abs(loss16 - loss32) / max(abs(loss32), 1e-6)
        if cuda and spec.family == "sparseconv":
            from panorooms3d.nn.sparseconv import spconv_available

            if spconv_available():
                model.use_spconv = False
                dense = float(loss_of(model(x)))
                model.use_spconv = None
                res["spconv_vs_dense_relative_difference"] = abs(dense - loss32) / max(abs(dense), 1e-6)
            else:
                res["spconv"] = "skipped: spconv is not installed (pip install spconv-cu12x)"
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            out = model(x)
        loss = loss_of(out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        if not torch.isfinite(loss):
            res.update(status="fail", error=f"training step loss is {float(loss)}")
            return res
    finite = all(torch.isfinite(p).all() for p in model.parameters())
    step = times[-1]  # the first step includes cuDNN autotuning and allocator warm-up
    res["step_dtype"] = "bf16-autocast" if cuda else "float32"
    res["step_seconds"] = round(step, 4)
    res["first_step_seconds"] = round(times[0], 4)
    elements = x.shape[0] * int(torch.tensor(x.shape[2:]).prod())
    res["voxels_per_second" if spec.is_3d else "pixels_per_second"] = round(elements / step)
    ok = finite
    if cuda:
        ok = ok and res["bf16_relative_difference"] <= 0.02
        if "spconv_vs_dense_relative_difference" in res:
            ok = ok and res["spconv_vs_dense_relative_difference"] <= 1e-3
    if cuda:
        res["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.reset_peak_memory_stats()
    res["status"] = "ok" if ok else "fail"
    if not finite:
        res["error"] = "weights became non-finite after a step"
    return res


def check_models(names: list[str], cuda: bool) -> dict:
    import torch

    part: dict = {"models": {}}
    for name in names:
        try:
            r = check_model(name, "cuda" if cuda else "cpu")
        except Exception as exc:  # one broken model must not hide the others
            r = {"status": "fail", "error": f"{type(exc).__name__}: {exc}"}
        part["models"][name] = r
        if cuda:
            torch.cuda.empty_cache()
        speed = r.get("voxels_per_second") or r.get("pixels_per_second")
        extra = (f", bf16 vs float32 loss {100 * r['bf16_relative_difference']:.2f}%"
                 if "bf16_relative_difference" in r else "")
        _log(f"  model {name}: {r['status']}" + (f", step {r['step_seconds']:.3f} s ({speed:,} per s){extra}"
                                                 if "step_seconds" in r else f": {r.get('error', '')}"))
    failed = [n for n, r in part["models"].items() if r["status"] != "ok"]
    part["status"] = "fail" if failed else "ok"
    if failed:
        part["failed"] = failed
    if not cuda:
        part["gpu_skipped"] = "bf16 autocast on CUDA and spconv (no CUDA device): float32 steps on the CPU only"
    return part


def box_room_tsdf(size_m=(2.0, 1.6, 1.2), voxel_size: float = 0.05, trunc_vox: float = 3.0):
    """(tsdf [X, Y, Z], origin, size): an empty box room spanning [0, size], analytic signed distance."""
    import numpy as np

    size = np.asarray(size_m, np.float64)
    origin = np.full(3, -2 * voxel_size)
    shape = tuple(int(round(s / voxel_size)) + 4 for s in size)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    c = origin + (idx + 0.5) * voxel_size
    sd = np.minimum(c, size - c).min(-1)
    tsdf = np.clip(sd / (trunc_vox * voxel_size), -1, 1).astype(np.float32)
    return tsdf, origin, size


def check_projection(cuda: bool, height: int = 128, width: int = 256) -> dict:
    """The differentiable projection of a box room on the CPU (against the analytic range) and CUDA."""
    import numpy as np
    import torch

    from panorooms3d.geometry import equirect_directions
    from panorooms3d.panorama.projection import render_equirect

    voxel = 0.05
    tsdf, origin, size = box_room_tsdf(voxel_size=voxel)
    camera = size / 2 + np.array([0.13, -0.07, 0.05])
    g = torch.Generator().manual_seed(0)
    values = torch.randn(8, *tsdf.shape, generator=g)
    weights = torch.randn(8, height, width, generator=g)
    out: dict = {"size": [height, width]}

    def run(device: str):
        v = values.to(device).requires_grad_(True)
        t = torch.as_tensor(tsdf, device=device)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        r = render_equirect(t, v, origin=origin, voxel_size=voxel, camera=camera, height=height, width=width)
        (r.values * weights.to(device)).sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        return (r.values.detach().cpu().contiguous(), r.hit.cpu(), r.depth.detach().cpu(), v.grad.cpu(), seconds)

    vc, hc, dc, gc, sc = run("cpu")
    dirs = equirect_directions(height, width).astype(np.float64)
    with np.errstate(divide="ignore"):
        t_wall = np.where(dirs > 0, (size - camera) / dirs, np.where(dirs < 0, -camera / dirs, np.inf)).min(-1)
    err = np.abs(dc.numpy() - t_wall)
    # Where the ray meets a wall at least a voxel from the room's edges the trilinear tsdf is exactly
    # planar, so the range must be exact; at the edges (the kink of min(distance to each wall)) within
    # half a voxel.
    hit_point = camera + dirs * t_wall[..., None]
    from_edge = np.sort(np.concatenate([hit_point, size - hit_point], -1), -1)[..., 1]
    flat = from_edge >= voxel
    out["cpu"] = {"seconds": round(sc, 4), "rays_per_second": round(height * width / sc),
                  "hit_share": float(hc.float().mean()),
                  "max_depth_error_vs_analytic_m": float(err[flat].max()),
                  "max_depth_error_vs_analytic_at_edges_m": float(err.max())}
    ok = bool(hc.all()) and float(err[flat].max()) <= 1e-3 and float(err.max()) <= voxel / 2
    _log(f"  projection CPU: {height}x{width} in {sc:.3f} s; range vs the analytic box within "
         f"{1000 * err[flat].max():.3f} mm (within {1000 * err.max():.1f} mm at the room's edges)"
         + ("" if ok else " -> fail"))
    if not cuda:
        out.update(status="ok" if ok else "fail", gpu_skipped="projection on CUDA (no CUDA device)")
        return out
    run("cuda")  # warm-up (kernel loading)
    vg, hg, dg, gg, sg = run("cuda")
    both = hc & hg
    cmp = {
        "hit_equal_share": float((hc == hg).float().mean()),
        "max_depth_difference_m": float((dc - dg).abs()[both].max()),
        "max_value_difference": float((vc - vg).abs()[:, both].max()),
        "max_gradient_difference": float((gc - gg).abs().max()),
        "gradient_scale": float(gc.abs().max()),
    }
    out["cuda"] = {"seconds": round(sg, 4), "rays_per_second": round(height * width / sg)}
    out["compare"] = cmp
    ok = ok and cmp["hit_equal_share"] >= 0.999 and cmp["max_depth_difference_m"] <= 1e-3 and (
        cmp["max_value_difference"] <= 1e-3) and cmp["max_gradient_difference"] <= 1e-3 * max(cmp["gradient_scale"], 1)
    out["status"] = "ok" if ok else "fail"
    _log(f"  projection CUDA: {sg:.4f} s; vs CPU: hits equal {100 * cmp['hit_equal_share']:.3f}%, depth within "
         f"{1000 * cmp['max_depth_difference_m']:.3f} mm, values {cmp['max_value_difference']:.2e} -> {out['status']}")
    return out


def _ddp_worker() -> None:
    """One rank of the DDP check (run by torchrun): 3 steps of 3dseg-t, then compare weights across ranks."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from panorooms3d.nn.registry import build_model

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = torch.cuda.is_available() and os.environ.get("PANOROOMS3D_DDP_DEVICE", "cuda") == "cuda"
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    torch.manual_seed(rank + 1)  # different initial weights per rank: DDP must broadcast rank 0's
    model = build_model("3dseg-t", num_classes=30, drop_path_rate=0.0).to(device)
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    d = 64 if cuda else 16
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    times = []
    for _ in range(3):
        x = torch.randn(2, 4, d, d, d, generator=g).to(device)
        y = torch.randint(0, 30, (2, d, d, d), generator=g).to(device)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            out = net(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    flat = torch.cat([p.detach().double().reshape(-1) for p in model.parameters()])
    summary = torch.stack([flat.sum(), (flat * flat).sum(), flat.abs().max()])
    gathered = [torch.zeros_like(summary) for _ in range(world)]
    dist.all_gather(gathered, summary)
    if rank == 0:
        same = all(torch.equal(gathered[0], s) for s in gathered[1:])
        print("DDP_RESULT " + json.dumps({"backend": dist.get_backend(), "world": world, "weights_identical": same,
                                          "step_seconds": round(times[-1], 4), "block": d, "batch_per_rank": 2}),
              flush=True)
    dist.barrier()
    dist.destroy_process_group()


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it (Linux /proc; children first are collected, then killed)."""
    import signal

    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def check_ddp(cuda_devices: int, nccl: bool, timeout: float = 600.0) -> dict:
    """2-rank DDP through torchrun: NCCL on two GPUs, else gloo on the CPU (and NCCL is reported skipped)."""
    use_nccl = cuda_devices >= 2 and nccl
    part: dict = {}
    if not use_nccl:
        part["gpu_skipped"] = ("2-rank NCCL DDP: " + ("needs two GPUs, found " + str(cuda_devices) if cuda_devices < 2
                                                      else "torch was built without NCCL"))
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PANOROOMS3D_DDP_DEVICE="cuda" if use_nccl else "cpu")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [*launcher, "--standalone", "--nproc_per_node", "2", "-m", "panorooms3d.doctor", "ddp-worker"]
    t0 = time.perf_counter()
    # gloo on a 2-core CPU machine now and then aborts a rank (SIGABRT: seen here in 2 of 5 runs of the
    # doctor's test, never in 6 direct torchrun runs): a try that a signal ended is retried once, and
    # the first try's error is kept in the report (first_try)
    for attempt in (1, 2):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)  # torchrun starts each worker in its own session: kill them too
            proc.communicate()
            part.update(status="fail", error=f"torchrun did not finish in {timeout:.0f} s")
            return part
        line = next((x for x in stdout.splitlines() if x.startswith("DDP_RESULT ")), None)
        if proc.returncode == 0 and line is not None:
            break
        tail = " | ".join((stderr or stdout).strip().splitlines()[-4:])
        error = f"torchrun exited with {proc.returncode}: {tail}"
        if attempt == 1 and "Signal" in tail:
            part["first_try"] = error
            _log(f"  ddp: a rank was killed by a signal, trying once more ({tail[:120]})")
            continue
        part.update(status="fail", error=error)
        return part
    res = json.loads(line[len("DDP_RESULT "):])
    part.update(res, seconds=round(time.perf_counter() - t0, 2))
    part["status"] = "ok" if res["weights_identical"] else "fail"
    _log(f"  ddp: 2 ranks over {res['backend']}, weights identical: {res['weights_identical']}, step "
         f"{res['step_seconds']:.3f} s -> {part['status']}")
    return part


def gpu_check(models: list[str] | None = None, work: Path | None = None, skip: tuple[str, ...] = ()) -> dict:
    """Run every part of the GPU check (see the module docstring); returns the JSON-able report.

    Args:
        models: registered model names (default: :func:`default_check_models`).
        work: scratch folder for the renders (default: a temporary folder, removed afterwards).
        skip: parts not to run (``render``, ``models``, ``projection``, ``ddp``): reported as skipped.
    """

    t0 = time.perf_counter()
    tinfo = torch_devices()
    cuda = tinfo["cuda_available"]
    report: dict = {"panorooms3d": _version("panorooms3d"), "torch": tinfo, "host": platform.node(),
                    "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                    "cuda": cuda, "parts": {}}
    _log(f"GPU check on {platform.node()}: " + (", ".join(g["name"] for g in tinfo["gpus"]) if cuda
                                                else "no CUDA device: running the CPU parts only"))
    cycles = cycles_devices()
    report["cycles"] = cycles
    tmp = None
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="panorooms3d-gpu-check-")
        work = Path(tmp.name)
    Path(work).mkdir(parents=True, exist_ok=True)
    parts = {
        "render": lambda: check_render(Path(work), cycles),
        "models": lambda: check_models(models or default_check_models(cuda), cuda),
        "projection": lambda: check_projection(cuda),
        "ddp": lambda: check_ddp(len(tinfo["gpus"]), tinfo["nccl"]),
    }
    try:
        for name, fn in parts.items():
            if name in skip:
                report["parts"][name] = {"status": "skipped", "reason": "--skip"}
                continue
            _log(f"[{name}]")
            t1 = time.perf_counter()
            try:
                report["parts"][name] = fn()
            except Exception as exc:
                report["parts"][name] = {"status": "fail", "error": f"{type(exc).__name__}: {exc}"}
                _log(f"  {name}: FAILED: {type(exc).__name__}: {exc}")
            report["parts"][name]["seconds_total"] = round(time.perf_counter() - t1, 2)
    finally:
        if tmp is not None:
            tmp.cleanup()
    report["skipped"] = [f"{name}: {p['gpu_skipped']}" for name, p in report["parts"].items() if "gpu_skipped" in p]
    report["skipped"] += [f"{name}: --skip" for name, p in report["parts"].items() if p.get("reason") == "--skip"]
    report["failed"] = [name for name, p in report["parts"].items() if p.get("status") == "fail"]
    report["throughput"] = throughput_summary(report)
    report["ok"] = not report["failed"]
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def throughput_summary(report: dict) -> dict:
    """The speed numbers of a GPU-check report in one flat dict (what docs/performance.md tabulates)."""
    parts = report["parts"]
    out: dict = {}
    r = parts.get("render", {})
    for dev in ("cpu", "gpu"):
        if dev in r:
            out[f"render_{dev}_frames_per_second"] = r[dev]["frames_per_second"]
    for name, m in parts.get("models", {}).get("models", {}).items():
        speed = m.get("voxels_per_second") or m.get("pixels_per_second")
        if speed:
            out[f"train_step_{name}_{m['step_dtype']}_seconds"] = m["step_seconds"]
            out[f"train_step_{name}_per_second"] = speed
    p = parts.get("projection", {})
    for dev in ("cpu", "cuda"):
        if dev in p:
            out[f"projection_{dev}_rays_per_second"] = p[dev]["rays_per_second"]
    d = parts.get("ddp", {})
    if "step_seconds" in d:
        out[f"ddp_{d['backend']}_step_seconds"] = d["step_seconds"]
    return out


# -- the command -------------------------------------------------------------------------------------------------


@click.command("doctor")
@click.option("--gpu", is_flag=True, help="Also run the GPU check: Cycles GPU vs CPU render, a bf16 training step of "
              "every model vs float32, the projection on CUDA vs CPU, 2-rank NCCL DDP; prints JSON. On a "
              "CPU-only machine it runs the CPU parts and lists the GPU parts it skipped.")
@click.option("--path", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="Where the data will go (free disk is measured there).")
@click.option("--json", "as_json", is_flag=True, help="Print the environment report as JSON.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Also write the JSON report (environment, and the GPU check with --gpu) to this .json file "
                   "(written whole or not at all; its folder is created).")
@click.option("--models", default=None, metavar="NAME,NAME",
              help="--gpu: only these models [default: all on CUDA; the 3D models and teacher-tiny on a CPU].")
@click.option("--skip", multiple=True, type=click.Choice(["render", "models", "projection", "ddp"]),
              help="--gpu: leave out a part (repeatable).")
def doctor(gpu: bool, path: Path, as_json: bool, out: Path | None, models: str | None, skip: tuple[str, ...]) -> None:
    """Check this machine: versions, devices, system libraries, disk and memory (exit 1 if something required is
    missing); with --gpu, check every GPU path and measure its speed (JSON on stdout).

    \b
    Examples:
      panorooms3d doctor
      panorooms3d doctor --gpu --out gpu-check.json      # JSON on stdout, progress on stderr
    """
    if out is not None:  # checked before any check runs (the GPU check takes minutes), as every file output is
        from panorooms3d.run.lock import check_output_file

        check_output_file(Path(out), "--out", suffixes=(".json",))
    names = None
    if models:
        from panorooms3d.nn.registry import list_models

        known = {s.name for s in list_models()}
        names = [m.strip() for m in models.split(",") if m.strip()]
        unknown = [m for m in names if m not in known]
        if unknown:
            raise click.ClickException(f"--models: unknown model(s) {', '.join(unknown)}; known: "
                                       f"{', '.join(sorted(known))} (see `panorooms3d models`)")
    checks = environment_report(path)
    missing = [c for c in checks if c.status == "missing"]
    env = {"checks": [asdict(c) for c in checks], "missing": [c.name for c in missing]}
    if gpu or not as_json:
        text = format_checks(checks)
        summary = (f"{len(missing)} required item(s) missing: {', '.join(c.name for c in missing)}" if missing
                   else "everything required is here")
        click.echo(f"panorooms3d doctor\n{text}\n{summary}", err=gpu)
    result: dict = {"environment": env}
    if gpu:
        report = gpu_check(names, skip=skip)
        result["gpu_check"] = report
        click.echo(json.dumps(report, indent=2, default=str))
        lines = [f"GPU check: {'ok' if report['ok'] else 'FAILED: ' + ', '.join(report['failed'])} in "
                 f"{report['seconds']:.0f} s"]
        lines += [f"  skipped {s}" for s in report["skipped"]]
        click.echo("\n".join(lines), err=True)
    elif as_json:
        click.echo(json.dumps(env, indent=2, default=str))
    if out is not None:
        from panorooms3d.run.atomic import atomic_path

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(Path(out)) as tmp:
            tmp.write_text(json.dumps(result if gpu else env, indent=2, default=str))
        click.echo(f"report: {out}", err=True)
    if missing or (gpu and not result["gpu_check"]["ok"]):
        raise SystemExit(1)


if __name__ == "__main__":  # ``python -m panorooms3d.doctor ddp-worker`` is the DDP check's torchrun entry
    if sys.argv[1:2] == ["ddp-worker"]:
        _ddp_worker()
    else:
        doctor()
