"""``panorooms3d plan``: counts x figures, checked by hand on the tiny 4 x 3 x 2.8 m house."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from script_module import load_script

from panorooms3d.cli import cli
from panorooms3d.run.plan import CostFigures, render_seconds_per_frame, voxels

tf = load_script("tests/fixtures/tiny_front.py")


@pytest.fixture(scope="module")
def front(tmp_path_factory) -> Path:
    return tf.write_front(tmp_path_factory.mktemp("front"), {"house1": tf.base_house()})


def test_render_seconds_scale_with_pixels_and_samples():
    f = CostFigures()
    assert render_seconds_per_frame(f, 640, 480, 4, True) == pytest.approx(1.106)
    assert render_seconds_per_frame(f, 320, 240, 4, True) == pytest.approx(1.106 / 4)
    assert render_seconds_per_frame(f, 640, 480, 8, False) == pytest.approx((1.106 - 0.33) * 2)
    assert voxels((4.0, 3.0, 2.8), 0.04) == 104 * 79 * 74


def test_plan_random_views_counts_every_cost_by_hand(front, tmp_path):
    out = tmp_path / "plan.json"
    args = ["plan", "--front", str(front), "--views", "10", "--width", "320", "--height", "240", "--samples", "2",
            "--no-denoise", "--skybox-size", "64", "--pano-height", "64", "--seconds-per-frame", "0.5", "--cores", "4",
            "--gpu-seconds-per-frame", "2", "--json", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    plan = json.loads(out.read_text())
    assert plan["rooms"] == 1 and plan["frames"]["method"] == "random" and plan["frames"]["total"] == 10
    assert plan["cpu_core_hours"]["render frames"] == pytest.approx(10 * 0.5 * 4 / 3600, abs=1e-4)
    assert plan["cpu_core_hours"]["skyboxes"] == pytest.approx(5.315 * (64 / 512) ** 2 * 4 / 3600, abs=1e-4)
    assert plan["gpu_hours"] == pytest.approx((10 + 6 * 64 * 64 / (320 * 240)) * 2 / 3600, abs=1e-4)
    d = plan["disk_bytes"]
    assert d["frames_uncompressed"] == 10 * 320 * 240 * 10 + 6 * 64 * 64 * 10
    assert plan["voxels"] == 104 * 79 * 74  # the 4 x 3 x 2.8 m room at 4 cm, plus 2 margin voxels a side
    assert d["dataset_uncompressed"] == 104 * 79 * 74 * 14 + 64 * 128 * 10
    assert plan["paper"]["frames"] == 424
    for word in ("frames: 10", "core-hours", "GPU-hours", "figures used", "render_s_per_frame", "disk:"):
        assert word in res.output


def test_plan_coverage_views_are_measured_on_sampled_rooms(front):
    res = CliRunner().invoke(cli, ["plan", "--front", str(front), "--sample-rooms", "1", "--width", "64",
                                   "--height", "48", "--max-views", "20"])
    assert res.exit_code == 0, res.output
    assert "coverage-driven" in res.output and "measured on 1 sampled room" in res.output
    line = next(x for x in res.output.splitlines() if x.startswith("frames: "))
    n = int(line.split()[1].replace(",", ""))
    assert 1 <= n <= 20


def test_plan_errors_name_the_path(front, tmp_path):
    res = CliRunner().invoke(cli, ["plan", "--front", str(tmp_path / "nope")])
    assert res.exit_code != 0 and "Error:" in res.output and "nope" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["plan", "--front", str(front), "--views", "4", "--json", str(tmp_path)])
    assert res.exit_code != 0 and "Error:" in res.output and str(tmp_path) in res.output
    res = CliRunner().invoke(cli, ["plan", "--front", str(front), "--rooms", "house1/Nope-9"])
    assert res.exit_code != 0 and "Error:" in res.output and "Nope-9" in res.output
