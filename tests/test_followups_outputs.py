"""Output checks of `panoramas`, `build` and `doctor`; resumed builds and view modes; GPUs asked of a cluster.

- `panoramas --out` is checked as `build --out` is (a file, a foreign non-empty folder without --force, a
  folder in use), `build` refuses a panorama-only dataset and `panoramas` a dataset with volumes (with or
  without --force), before any work and leaving every file as it was;
- `doctor --out` is checked as a file output before any check runs;
- a resumed build or render compares only the settings the stored room's view mode (or the asked one) reads;
- `--device gpu` on a Ray cluster without GPUs is an `Error:` that says what to do, and leaves nothing;
- a second `build` on the folder of a running Ray build is refused (the driver holds the lock).

Real components only: the real CLI, real zarr stores (ray-cast box rooms), a real local Ray cluster, and a
real Blender render (in its subprocess) where a build has to run for a while.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from lock_holder import start_lock_holder
from raycast_frames import box_room, raycast_frames, room_cameras
from script_module import load_script

from panorooms3d.cli import cli
from panorooms3d.geometry import SKYBOX_FACES, skybox_cam_to_world
from panorooms3d.render.commands import mismatched_rooms, settings_differences
from panorooms3d.render.settings import RenderSettings
from panorooms3d.run.commands import PANORAMA_ONLY_SOURCE, dataset_content
from panorooms3d.run.lock import LOCK_NAME
from panorooms3d.store.dataset import pack_dataset, write_room_panorama, write_room_volume
from panorooms3d.store.frames import write_frames

tf = load_script("tests/fixtures/tiny_front.py")

ROOM = "house1/Bedroom-1"  # the one room of tiny_front's base house: floor x 0..4, y -3..0 (Z up), 2.8 m high
ROOM_KEY = "house1__Bedroom-1"


def run(*args, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


def assert_clean_error(r, *words) -> None:
    """Exit 1 with ``Error:`` naming every one of ``words``, no traceback."""
    assert r.exit_code == 1, r.output
    assert isinstance(r.exception, SystemExit), f"uncaught {r.exception!r}\n{r.output}"
    assert "Traceback" not in r.output and "Error:" in r.output, r.output
    for w in words:
        assert str(w) in r.output, f"{w!r} not in:\n{r.output}"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes): to show that a refusal changed nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def box() -> object:
    """tiny_front's room as a ray-castable box room (same place and size)."""
    return box_room(size=(4.0, 3.0, 2.8), lo=(0.0, -3.0, 0.0), uid=ROOM)


def tiny_store(path: Path, settings: dict) -> Path:
    """A real frames store of the box room: 2 ray-cast frames of 32 x 24 plus a 16 px skybox, and ``settings``."""
    room = box()
    frames = raycast_frames(room, room_cameras(room, 2), 32, 24)
    centre = np.array([2.0, -1.5, 1.5])
    sky = raycast_frames(room, np.stack([skybox_cam_to_world(f, centre) for f in SKYBOX_FACES]), 16, 16, hfov_deg=90.0)
    frames.skybox = {f: {"rgb": sky.rgb[i], "depth": sky.depth[i], "label": sky.label[i],
                         "instance": sky.instance[i]} for i, f in enumerate(SKYBOX_FACES)}
    frames.skybox_K, frames.pano_camera = sky.K, centre
    frames.attrs["settings"] = settings
    return write_frames(path, frames)


def pano_and_volume():
    """A real panorama and volume of the box room, made by the stages' own functions."""
    from panorooms3d.fusion.fuse_room import fuse_room
    from panorooms3d.panorama.equirect import make_panorama
    from panorooms3d.store.frames import read_frames

    with tempfile.TemporaryDirectory() as tmp:
        frames = read_frames(tiny_store(Path(tmp) / "s.zarr", RenderSettings().to_dict()))
        pano = make_panorama(frames, 16, 32)
        volume = fuse_room(frames, voxel_size=0.2, truncation=3.0, room_uid=ROOM)
    return pano, volume


@pytest.fixture(scope="module")
def made():
    return pano_and_volume()


@pytest.fixture
def place(tmp_path: Path) -> dict:
    front = tf.write_front(tmp_path / "front", {"house1": tf.base_house()})
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("keep")
    (tmp_path / "afile").write_text("a file, not a folder")
    return {"tmp": tmp_path, "front": front, "notes": notes, "afile": tmp_path / "afile"}


# -- 1. panoramas --out is checked as build --out is ---------------------------------------------------------------

def test_panoramas_refuses_a_file_a_foreign_folder_and_a_work_folder_before_any_work(place: dict) -> None:
    front = place["front"]
    r = run("panoramas", "--front", front, "--out", place["afile"])
    assert r.exit_code != 0 and "afile" in r.output and "Traceback" not in r.output, r.output
    assert place["afile"].read_text() == "a file, not a folder"

    notes = snapshot(place["notes"])
    r = run("panoramas", "--front", front, "--out", place["notes"])
    assert_clean_error(r, place["notes"], "notes.txt", "not a dataset folder", "--force")
    assert snapshot(place["notes"]) == notes and not (place["notes"] / LOCK_NAME).exists()

    work = place["tmp"] / "work"  # a work folder of `render`: another kind of panorooms3d folder
    tiny_store(work / f"{ROOM_KEY}.zarr", RenderSettings().to_dict())
    before = snapshot(work)
    r = run("panoramas", "--front", front, "--out", work)
    assert_clean_error(r, work, f"{ROOM_KEY}.zarr", "not a dataset folder")
    assert snapshot(work) == before

    # --work is checked too: a foreign folder as --work needs --force
    r = run("panoramas", "--front", front, "--out", place["tmp"] / "new", "--work", place["notes"])
    assert_clean_error(r, "--work", place["notes"], "not a work folder")
    assert not (place["tmp"] / "new").exists(), "a refused command leaves nothing"

    # --force passes the folder check (the next mistake, an unknown room, is then the error) and leaves no lock
    r = run("panoramas", "--front", front, "--out", place["notes"], "--force", "--rooms", "nohouse/x")
    assert_clean_error(r, "nohouse")
    assert "not a dataset folder" not in r.output
    assert snapshot(place["notes"]) == notes and not (place["notes"] / LOCK_NAME).exists()


def test_panoramas_refuses_a_folder_in_use_naming_its_writer(place: dict) -> None:
    for option in ("--out", "--work"):
        folder = place["tmp"] / f"busy{option}"
        folder.mkdir()
        holder = start_lock_holder(folder, "build --out busy")
        try:
            out = folder if option == "--out" else place["tmp"] / "panos"
            extra = [] if option == "--out" else ["--work", folder]
            r = run("panoramas", "--front", place["front"], "--out", out, *extra)
            assert_clean_error(r, folder, f"pid {holder.pid}", "build --out busy", "in use")
            assert not (place["tmp"] / "panos").exists(), "refused before any work: nothing left behind"
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()


# -- 1b. the two kinds of dataset are never mixed -------------------------------------------------------------------

def panorama_only_dataset(root: Path, pano, packed: bool) -> Path:
    """What `panoramas` leaves: a staged panorama marked as its own (packed, or interrupted before packing)."""
    write_room_panorama(root, ROOM, pano, {"source": PANORAMA_ONLY_SOURCE})
    if packed:
        pack_dataset(root, rooms_per_shard=1, splits=(1.0, 0.0, 0.0), panoramas_only=True)
    return root


def test_dataset_content_tells_the_two_kinds_apart_packed_or_not(tmp_path: Path, made) -> None:
    pano, volume = made
    assert dataset_content(tmp_path / "new") is None
    assert dataset_content(panorama_only_dataset(tmp_path / "p", pano, packed=True)) == "panoramas"
    assert dataset_content(panorama_only_dataset(tmp_path / "q", pano, packed=False)) == "panoramas"
    write_room_volume(tmp_path / "v", volume)  # a build interrupted after its first room was fused
    assert dataset_content(tmp_path / "v") == "volumes"
    write_room_panorama(tmp_path / "s", ROOM, pano)  # `panorama` run before `fuse`: a volumes dataset to be
    assert dataset_content(tmp_path / "s") == "volumes"
    write_room_volume(tmp_path / "s", volume)
    pack_dataset(tmp_path / "s", rooms_per_shard=1, splits=(1.0, 0.0, 0.0))
    assert dataset_content(tmp_path / "s") == "volumes"
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "panoramas_report.json").write_text("{}")  # every room failed: only the report is there
    assert dataset_content(tmp_path / "r") == "panoramas"


@pytest.mark.parametrize("packed", [True, False])
def test_build_refuses_a_panorama_only_dataset_even_with_force(place: dict, made, packed: bool) -> None:
    out = panorama_only_dataset(place["tmp"] / "panos", made[0], packed)
    before = snapshot(out)
    for force in ([], ["--force"]):
        r = run("build", "--front", place["front"], "--out", out, "--views", "2", *force)
        assert_clean_error(r, out, "panorama-only dataset", "panorooms3d panoramas", "choose another --out")
        assert snapshot(out) == before, "nothing written, nothing removed"


@pytest.mark.parametrize("packed", [True, False])
def test_panoramas_refuses_a_dataset_with_volumes_even_with_force(place: dict, made, packed: bool) -> None:
    out = place["tmp"] / "data"
    write_room_volume(out, made[1])
    if packed:
        write_room_panorama(out, ROOM, made[0])
        pack_dataset(out, rooms_per_shard=1, splits=(1.0, 0.0, 0.0))
    before = snapshot(out)
    for force in ([], ["--force"]):
        r = run("panoramas", "--front", place["front"], "--out", out, *force)
        assert_clean_error(r, out, "dataset with volumes", "choose another --out")
        assert snapshot(out) == before


# -- 1c. doctor --out is a file output, checked first ---------------------------------------------------------------

def test_doctor_out_is_checked_before_any_check_runs(place: dict) -> None:
    t0 = time.perf_counter()
    for out, words in [(place["notes"], ["is a folder"]), (place["tmp"] / "report.txt", ["unsupported file type"]),
                       (place["afile"] / "report.json", ["afile", "is a file, not a folder"])]:
        r = run("doctor", "--out", out)
        assert_clean_error(r, "--out", *words)
    assert time.perf_counter() - t0 < 30, "refused at once, not after the checks (Blender, torch...)"
    assert snapshot(place["notes"]) == {"notes.txt": b"keep"} and place["afile"].read_text() == "a file, not a folder"


# -- 2. a resumed build compares only the settings of the stored room's view mode -------------------------------------

def test_settings_of_another_view_mode_are_not_differences() -> None:
    rand = RenderSettings(view_selection="random", views=8).to_dict()
    cov = RenderSettings(view_selection="coverage", views=8).to_dict()
    other_cov = {"coverage_target": 0.5, "max_views": 7, "candidates": 50, "candidate_pitch_range_deg": [-10.0, 10.0]}
    assert settings_differences(rand, {**rand, **other_cov}) == {}, "random views read none of them"
    assert settings_differences({**rand, **other_cov}, rand) == {}
    assert settings_differences(cov, {**cov, "views": 48, "pitch_range_deg": [5.0, 20.0]}) == {}, \
        "coverage-driven views read neither views nor pitch_range_deg"
    diff = settings_differences(cov, {**cov, "max_views": 7})
    assert diff == {"max_views": [64, 7]}, "but they read their own settings"
    assert settings_differences(rand, {**rand, "views": 9}) == {"views": [8, 9]}
    diff = settings_differences(rand, {**cov, "max_views": 7})  # another mode: everything either mode reads
    assert diff == {"view_selection": ["random", "coverage"], "max_views": [64, 7]}
    old = {k: v for k, v in rand.items() if k not in other_cov and k != "view_selection"}  # an older store
    assert settings_differences(old, {**rand, **other_cov}) == {}


def test_resumed_build_keeps_a_random_view_room_whatever_the_coverage_settings(place: dict) -> None:
    """build --views 2 over a stored random-view room rendered with other coverage settings: no mismatch, and
    the room is not rendered again (the stored frames are fused; nothing here starts Blender)."""
    out = place["tmp"] / "data"
    asked = ["--views", "2", "--width", "32", "--height", "24", "--samples", "1", "--skybox-size", "16",
             "--coverage-target", "0.5", "--max-views", "7", "--voxel-size", "0.2", "--pano-height", "16"]
    stored = RenderSettings(view_selection="random", views=2, width=32, height=24, samples=1, skybox_size=16,
                            coverage_target=0.9, max_views=30, candidates=10).to_dict()
    store = tiny_store(out / "work" / f"{ROOM_KEY}.zarr", stored)
    assert mismatched_rooms({ROOM: store}, RenderSettings(view_selection="random", views=2, width=32, height=24,
                                                          samples=1, skybox_size=16, coverage_target=0.5,
                                                          max_views=7).to_dict()) == {}
    stamp = store.stat().st_mtime_ns
    # OUT holds only OUT/work/<room>.zarr (a build stopped before its first room was staged): a dataset to resume
    r = run("build", "--front", place["front"], "--out", out, "--splits", "1,0,0", *asked)
    assert r.exit_code == 0, r.output
    assert "other settings" not in r.output and "1 done" in r.output, r.output
    assert store.stat().st_mtime_ns == stamp, "kept, not re-rendered"
    room = json.loads((out / "build_report.json").read_text())["rooms"][0]
    assert "settings_differ" not in room["info"] and "render_seconds" in room["info"]
    # a setting the room's mode reads is still a difference, and said so
    r = run("render", "--front", place["front"], "--out", out / "work", "--views", "3", "--width", "32",
            "--height", "24", "--samples", "1", "--skybox-size", "16")
    assert r.exit_code == 0, r.output
    assert "1 room(s) already rendered with other settings" in r.output and "views 2 (asked 3)" in r.output
    assert "max_views" not in r.output and "coverage_target" not in r.output and "candidates" not in r.output


# -- 3. --device gpu on a cluster without GPUs -------------------------------------------------------------------------

@pytest.mark.ray
def test_device_gpu_without_gpus_is_an_error_that_says_what_to_do(place: dict) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try:
        work = place["tmp"] / "work"
        r = run("render", "--front", place["front"], "--out", work, "--executor", "ray", "--device", "gpu",
                "--views", "2", "--width", "32", "--height", "24", "--samples", "1", "--skybox-size", "16")
        assert_clean_error(r, "--device gpu", "asks Ray for 1 GPU", "has 0 GPU", "start GPU workers", "--device cpu")
        assert not work.exists(), "refused before any room: the new folder is gone again, no report in it"
        out = place["tmp"] / "data"
        r = run("build", "--front", place["front"], "--out", out, "--executor", "ray", "--device", "gpu",
                "--views", "2", "--width", "32", "--height", "24", "--samples", "1", "--skybox-size", "16")
        assert_clean_error(r, "--device gpu", "has 0 GPU", "--device cpu")
        assert not out.exists()
        # a resumed folder keeps its files (no empty report replaces the old one)
        data = place["tmp"] / "old"
        tiny_store(data / "work" / f"{ROOM_KEY}.zarr", RenderSettings(device="GPU").to_dict())
        (data / "build_report.json").write_text('{"old": true}')
        r = run("build", "--front", place["front"], "--out", data, "--executor", "ray", "--device", "gpu",
                "--overwrite")
        assert_clean_error(r, "has 0 GPU")
        assert json.loads((data / "build_report.json").read_text()) == {"old": True}
    finally:
        ray.shutdown()


# -- 4. the Ray executor honours the output lock -----------------------------------------------------------------------

@pytest.mark.ray
@pytest.mark.blender
def test_second_build_is_refused_while_a_ray_build_runs(tmp_path: Path) -> None:
    from panorooms3d.scene.synth import synthesize

    front = tmp_path / "front"
    synthesize(front, 1, seed=5, rooms_per_house=(1, 1))
    out = tmp_path / "data"
    args = ["build", "--front", str(front), "--out", str(out), "--executor", "ray", "--ray-address", "local",
            "--views", "2", "--width", "48", "--height", "36", "--samples", "1", "--skybox-size", "32",
            "--voxel-size", "0.1", "--pano-height", "16", "--splits", "1,0,0"]
    code = "import sys; from panorooms3d.cli import cli; cli.main(sys.argv[1:], 'panorooms3d')"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    first = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env)
    try:
        deadline = time.time() + 120
        while not (out / LOCK_NAME).exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert (out / LOCK_NAME).exists(), "the first build never took its lock"
        second = run(*args)  # Ray is starting or the room is rendering: the driver holds the lock
        assert_clean_error(second, out, f"pid {first.pid}", "`build`", "in use")
        output, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.terminate()
            first.wait(timeout=60)
    assert first.returncode == 0, output
    assert "executor ray" in output and "1 done" in output, output
    assert not (out / LOCK_NAME).exists(), "the lock is released when the build ends"
    assert json.loads((out / "manifest.json").read_text())["rooms"], "the first build was not disturbed"
