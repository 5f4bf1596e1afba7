"""``panorooms3d doctor`` and ``doctor --gpu`` in its CPU-only mode, on this machine, for real.

Independent truths: the numbers the doctor prints against os.statvfs and /proc/meminfo, a
requirement that really is not installed, the projection's range against the analytic box room,
2 real torchrun ranks, a real Cycles render compared with itself and with perturbed copies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from panorooms3d import doctor as doc
from panorooms3d.cli import cli


def _env_report(args=()) -> tuple[int, dict]:
    res = CliRunner().invoke(cli, ["doctor", "--json", *args])
    return res.exit_code, json.loads(res.output[res.output.index("{"):])


def test_doctor_reports_versions_devices_libraries_disk_and_memory(tmp_path: Path) -> None:
    code, env = _env_report(["--path", str(tmp_path)])
    checks = {c["name"]: c for c in env["checks"]}
    assert code == 0 and env["missing"] == [], env["missing"]
    for name in ("python", "bpy", "open3d", "zarr", "torch", "numpy", "torch devices", "open3d devices",
                 "blender cycles", "system libraries", "disk", "memory", "ray", "torchrun"):
        assert name in checks, name
    import zarr

    assert checks["zarr"]["detail"] == zarr.__version__
    assert checks["blender cycles"]["data"]["blender"].startswith("4.5")
    assert checks["blender cycles"]["data"]["cpu"], "Cycles always has a CPU device"
    st = os.statvfs(tmp_path)
    assert abs(checks["disk"]["data"]["free_gb"] - st.f_bavail * st.f_frsize / 2**30) < 1.0
    meminfo = {k: float(v.split()[0]) for k, v in (line.split(":") for line in Path("/proc/meminfo").read_text()
                                                   .splitlines())}
    assert abs(checks["memory"]["data"]["total_gb"] - meminfo["MemTotal"] / 2**20) < 0.2
    assert checks["system libraries"]["status"] == "ok" and len(checks["system libraries"]["data"]["checked"]) >= 2


def test_a_missing_requirement_says_what_to_do_and_exits_1(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(doc.REQUIRED_PACKAGES, "no_such_module_p3d", ("no-such-dist-p3d", "1.0"))
    monkeypatch.setitem(doc.REQUIRED_PACKAGES, "zarr", ("zarr", "99.0"))
    res = CliRunner().invoke(cli, ["doctor", "--path", str(tmp_path)])
    assert res.exit_code == 1
    assert "MISSING  no-such-dist-p3d" in res.output and "pip install 'no-such-dist-p3d>=1.0'" in res.output
    assert "< 99.0" in res.output and "pip install -U 'zarr>=99.0'" in res.output
    assert "2 required item(s) missing: zarr, no-such-dist-p3d" in res.output
    monkeypatch.setattr(doc, "MIN_FREE_DISK_GB", 1e9)
    code, env = _env_report(["--path", str(tmp_path)])
    assert code == 1 and "disk" in env["missing"]


def test_bad_arguments_are_errors_not_tracebacks(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["doctor", "--gpu", "--models", "3dseg-t,nope"])
    assert res.exit_code != 0 and "unknown model(s) nope" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["doctor", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "is a folder" in res.output


def test_gpu_check_on_a_cpu_runs_the_cpu_parts_and_names_what_it_skipped(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    res = CliRunner().invoke(cli, ["doctor", "--gpu", "--models", "3dseg-t", "--skip", "render", "--out", str(out)])
    assert res.exit_code == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert json.loads(out.read_text())["gpu_check"] == report
    assert report["cuda"] is False and report["ok"] is True and report["failed"] == []
    parts = report["parts"]
    model = parts["models"]["models"]["3dseg-t"]
    assert model["status"] == "ok" and model["step_dtype"] == "float32" and np.isfinite(model["loss_float32"])
    assert 2.5 < model["loss_float32"] < 4.5, "random-init logits over 30 classes: cross-entropy near ln 30 = 3.4"
    assert parts["projection"]["cpu"]["max_depth_error_vs_analytic_m"] < 1e-3
    assert parts["ddp"]["backend"] == "gloo" and parts["ddp"]["weights_identical"] is True
    skipped = " | ".join(report["skipped"])
    for words in ("bf16 autocast on CUDA", "projection on CUDA", "NCCL", "render: --skip"):
        assert words in skipped, words
    assert "skipped projection: projection on CUDA" in res.stderr
    assert {"projection_cpu_rays_per_second", "train_step_3dseg-t_per_second", "ddp_gloo_step_seconds"} <= set(
        report["throughput"])


@pytest.mark.blender
def test_render_part_renders_on_the_cpu_and_compares_exactly(tmp_path: Path) -> None:
    cycles = doc.cycles_devices()
    part = doc.check_render(tmp_path, cycles, size=(64, 48), views=2, skybox=32)
    assert part["status"] == "skipped" and "no GPU device" in part["gpu_skipped"]
    assert part["cpu"]["device_used"] == "CPU" and part["cpu"]["frames_per_second"] > 0
    a = doc._render_arrays(tmp_path / "render-cpu.zarr")["views"]
    assert doc.compare_renders(a, a)["ok"]
    key = a["label"].astype(np.int64) * 65536 + a["instance"]
    n, h, w = key.shape
    inner = [(i, y, x) for i in range(n) for y in range(1, h - 1) for x in range(1, w - 1)
             if (key[i, y - 1:y + 2, x - 1:x + 2] == key[i, y, x]).all() and a["depth"][i, y, x] > 0]
    edge = [(i, y, x) for i in range(n) for y in range(1, h - 1) for x in range(1, w - 1)
            if not (key[i, y - 1:y + 2, x - 1:x + 2] == key[i, y, x]).all()]
    assert inner and edge
    b = {k: v.copy() for k, v in a.items()}
    b["label"][edge[0]] = 0  # one pixel on a label edge differs: allowed
    assert doc.compare_renders(a, b)["ok"]
    b = {k: v.copy() for k, v in a.items()}
    b["label"][inner[0]] = 0  # one interior pixel differs: not
    assert not doc.compare_renders(a, b)["ok"]
    b = {k: v.copy() for k, v in a.items()}
    b["depth"][inner[0]] += 0.002  # 2 mm off inside a surface
    assert not doc.compare_renders(a, b)["ok"]
    b["depth"][inner[0]] -= 0.0015  # 0.5 mm
    assert doc.compare_renders(a, b)["ok"]
