"""The render subprocess: ``python -m panorooms3d.render.worker SPEC.pkl``.

Reads the pickled spec written by :func:`panorooms3d.render.render_room.render_room`, builds the
Blender scene of the house ONCE, renders every camera group of the spec (the perspective views,
then the six skybox faces) and writes ``spec["result"]`` (an ``.npz``: ``<group>/rgb``,
``<group>/depth``, ``<group>/code``, ``<group>/seconds``) plus ``spec["info"]`` (JSON: Blender
version, device, build and render seconds, problems). Exit status 0 on success; any error
prints a traceback and exits non-zero. This is the only process that imports ``bpy``.
"""

from __future__ import annotations

import json
import pickle
import sys
import time
import traceback
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    """Run one spec (see the module docstring). Returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m panorooms3d.render.worker SPEC.pkl", file=sys.stderr)
        return 2
    spec_path = Path(argv[0])
    with open(spec_path, "rb") as fh:
        spec = pickle.load(fh)
    import bpy

    from panorooms3d.render.blender_scene import build_scene, render_group

    def log(msg: str) -> None:
        print(f"[panorooms3d.worker] {msg}", flush=True)

    t0 = time.perf_counter()
    info = build_scene(spec)
    log(f"scene built in {info['seconds']:.2f} s ({info['objects']} objects, device {info['device']})")
    tmp = Path(spec["tmp_dir"])
    arrays: dict[str, np.ndarray] = {}
    group_seconds = {}
    for group in spec["groups"]:
        g0 = time.perf_counter()
        res = render_group(group["K"], group["width"], group["height"], group["cam_to_world"], tmp, log)
        for key, value in res.items():
            arrays[f"{group['name']}/{key}"] = value
        group_seconds[group["name"]] = time.perf_counter() - g0
    np.savez(spec["result"], **arrays)
    info.update({
        "blender": bpy.app.version_string,
        "build_seconds": info.pop("seconds"),
        "group_seconds": group_seconds,
        "total_seconds": time.perf_counter() - t0,
    })
    Path(spec["info"]).write_text(json.dumps(info))
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except Exception:
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        code = 1
    sys.stdout.flush()
    # bpy can hang or crash in its exit handlers: leave at once.
    import os

    os._exit(code)
