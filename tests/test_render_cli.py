"""The render and preview commands end to end on a synthetic 3D-FRONT house (real Blender).

Kill-and-resume: a run killed after its first store resumes without redoing finished rooms and
leaves no partial store; a hanging room is killed, recorded with its reason, and the run goes on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from panorooms3d.render.commands import preview, render
from panorooms3d.store.frames import read_frames

TINY = ["--views", "2", "--width", "64", "--height", "48", "--samples", "1", "--skybox-size", "32", "--seed", "1"]


@pytest.fixture(scope="module")
def front(tmp_path_factory) -> Path:
    from panorooms3d.scene.synth import synthesize

    root = tmp_path_factory.mktemp("front")
    synthesize(root, 1, seed=0, rooms_per_house=(3, 3))
    return root


def stores(work: Path) -> list[Path]:
    return sorted(p for p in work.glob("*.zarr") if not p.name.startswith("."))


@pytest.mark.blender
def test_kill_and_resume(front, tmp_path):
    work = tmp_path / "work"
    code = "import sys; from panorooms3d.render.commands import render; render.main(sys.argv[1:], 'render')"
    proc = subprocess.Popen([sys.executable, "-c", code, "--front", str(front), "--out", str(work), *TINY],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not stores(work) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert stores(work), "the first store never appeared"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = stores(work)
    assert 1 <= len(first) < 3, "killed after the first store, before the last"
    before = {p.name: (p / "zarr.json").stat().st_mtime_ns for p in first}
    stale = work / ".ghost.zarr.tmp-1-deadbeef"  # what a writer killed mid-write leaves
    stale.mkdir()

    res = CliRunner().invoke(render, ["--front", str(front), "--out", str(work), *TINY])
    assert res.exit_code == 0, res.output
    done = stores(work)
    assert len(done) == 3
    assert {p.name: (p / "zarr.json").stat().st_mtime_ns for p in done if p.name in before} == before
    assert not [p for p in work.iterdir() if p.name.startswith(".")], "temporaries left behind"
    report = json.loads((work / "render_report.json").read_text())
    assert report["counts"] == {"done": 3 - len(first), "skipped": len(first), "failed": 0}
    assert "coverage" in res.output and "s per frame" in res.output
    for p in done:
        fr = read_frames(p)
        assert fr.rgb.shape == (2, 48, 64, 3) and set(fr.skybox) == {"+x", "-x", "+y", "-y", "+z", "-z"}
        assert fr.attrs["room_uid"].replace("/", "__") + ".zarr" == p.name
        assert (fr.label > 0).mean() > 0.95 and (fr.depth > 0).mean() > 0.95
        assert 0 < fr.attrs["coverage"] <= 1 and fr.attrs["versions"]["blender"]

    # preview: a contact sheet of the store
    png = tmp_path / "sheet.png"
    res = CliRunner().invoke(preview, [str(done[0]), "--out", str(png), "--frames", "2"])
    assert res.exit_code == 0, res.output
    img = np.asarray(Image.open(png))
    # two frames (64 x 48: rgb | depth | labels) above two rows of six faces spanning the width
    face = 3 * 64 // 6
    assert img.shape == (2 * 48 + 2 * face, 3 * 64, 3) and img.std() > 5


@pytest.mark.blender
def test_hanging_room_is_killed_and_recorded(front, tmp_path):
    work = tmp_path / "work"
    house = sorted((front / "3D-FRONT").glob("*.json"))[0].stem
    from panorooms3d.scene.front import load_house

    rooms = [f"{house}/{r.room_id}" for r in load_house(front / "3D-FRONT" / f"{house}.json", front,
                                                        load_geometry=False).rooms][:2]
    t0 = time.time()
    res = CliRunner().invoke(render, ["--front", str(front), "--out", str(work), "--rooms", ",".join(rooms),
                                      "--timeout", "1", "--retries", "0", *TINY,
                                      "--samples", "4096", "--width", "320", "--height", "240"])  # cannot finish in 1 s
    assert res.exit_code == 1
    assert time.time() - t0 < 60
    report = json.loads((work / "render_report.json").read_text())
    assert report["counts"]["failed"] == 2
    assert all("did not finish within 1 s" in r["error"] for r in report["rooms"])
    assert "FAILED" in res.output
    assert not stores(work) and not [p for p in work.iterdir() if p.name.startswith(".")]


def test_user_mistakes_are_clear(front, tmp_path):
    r = CliRunner().invoke(render, ["--front", str(tmp_path / "nope"), "--out", str(tmp_path / "w")])
    assert r.exit_code != 0 and "nope" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(render, ["--front", str(front), "--out", str(tmp_path / "w"), "--rooms", "nohouse/x"])
    assert r.exit_code != 0 and "nohouse" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(preview, [str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "x.png")])
    assert r.exit_code != 0 and "missing.zarr" in r.output
    (tmp_path / "empty.zarr").mkdir()
    r = CliRunner().invoke(preview, [str(tmp_path / "empty.zarr"), "--out", str(tmp_path / "x.png")])
    assert r.exit_code != 0 and "not a frames store" in r.output


@pytest.mark.ray
@pytest.mark.blender
def test_ray_executor(front, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        work = tmp_path / "work"
        from panorooms3d.scene.front import load_house

        house = sorted((front / "3D-FRONT").glob("*.json"))[0]
        rooms = [f"{house.stem}/{r.room_id}" for r in load_house(house, front, load_geometry=False).rooms][:2]
        res = CliRunner().invoke(render, ["--front", str(front), "--out", str(work), "--executor", "ray",
                                          "--rooms", ",".join(rooms), *TINY])
        assert res.exit_code == 0, res.output
        assert len(stores(work)) == 2
        report = json.loads((work / "render_report.json").read_text())
        assert report["executor"] == "ray" and report["counts"]["done"] == 2
    finally:
        ray.shutdown()
