"""The command line never loses a user's files, never shows a traceback for a user mistake, and never
runs code from a checkpoint (issue 13).

Every case runs the real ``panorooms3d`` group (click's CliRunner, so the one place that turns
expected errors into ``Error: ...`` is exercised) on tiny inputs; nothing here renders.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from lock_holder import start_lock_holder
from raycast_frames import box_room, raycast_frames, room_cameras
from script_module import load_script

from panorooms3d.cli import cli, user_error_message
from panorooms3d.render.settings import RenderSettings
from panorooms3d.run.atomic import OutputPathError, atomic_path, write_json
from panorooms3d.run.checkpoint import CheckpointError, load_checkpoint, named_checkpoint
from panorooms3d.run.lock import LOCK_NAME, FolderLock, LockError, output_folder
from panorooms3d.store.frames import write_frames

tf = load_script("tests/fixtures/tiny_front.py")

ROOM = "house1/Bedroom-1"  # the one room of tiny_front's base house


def run(*args, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


def assert_clean_error(r, *words, code: int | None = 1) -> None:
    """Non-zero exit (``code`` when given), ``Error:`` naming ``words``, no traceback."""
    assert r.exit_code != 0, r.output
    if code is not None:
        assert r.exit_code == code, r.output
    assert isinstance(r.exception, SystemExit), f"uncaught {r.exception!r}\n{r.output}"
    assert "Traceback" not in r.output and "Error:" in r.output, r.output
    for w in words:
        assert str(w) in r.output, f"{w!r} not in:\n{r.output}"


def tiny_store(path: Path, uid: str = ROOM, settings: dict | None = None) -> Path:
    """A real frames store (ray-cast box room, 2 frames of 32 x 24) at ``path``."""
    room = box_room(uid=uid)
    frames = raycast_frames(room, room_cameras(room, 2), 32, 24)
    if settings is not None:
        frames.attrs["settings"] = settings
    return write_frames(path, frames)


@pytest.fixture
def place(tmp_path: Path) -> dict:
    front = tf.write_front(tmp_path / "front", {"house1": tf.base_house()})
    (tmp_path / "afile").write_text("a file, not a folder")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("keep")
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text("{}")  # enough for the checks that come before any reading
    work = tmp_path / "work"
    tiny_store(work / "house1__Bedroom-1.zarr")
    return {"tmp": tmp_path, "front": front, "afile": tmp_path / "afile", "notes": notes, "data": data, "work": work}


# 1. never replace what the command did not create ------------------------------------------------------

def test_atomic_writer_never_replaces_a_folder_or_a_link(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "k.txt").write_text("keep")
    with pytest.raises(OutputPathError, match="is a folder"), atomic_path(full) as tmp:
        tmp.write_bytes(b"png")
    assert (full / "k.txt").read_text() == "keep"
    with pytest.raises(OutputPathError, match="is a folder"), atomic_path(full, kind="file"):
        raise AssertionError("refused before any work")
    target = tmp_path / "t.txt"
    target.write_text("t")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OutputPathError, match="link"), atomic_path(link) as tmp:
        tmp.write_text("x")
    assert link.is_symlink() and target.read_text() == "t"
    with pytest.raises(OutputPathError, match="is a file"), atomic_path(target) as tmp:
        tmp.mkdir()
    assert target.read_text() == "t"
    store = tmp_path / "s.zarr"  # a store written earlier by the same kind of writer is replaced
    store.mkdir()
    with atomic_path(store) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("n")
    assert [p.name for p in store.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "link", "s.zarr", "t.txt"]  # no temporaries


def test_write_json_makes_its_folder_and_never_replaces_a_folder(tmp_path: Path) -> None:
    out = tmp_path / "new" / "record.json"
    write_json(out, {"mIoU": 35.9, "rooms": [1, 2]})
    assert json.loads(out.read_text()) == {"mIoU": 35.9, "rooms": [1, 2]} and out.read_text().endswith("\n")
    assert [p.name for p in out.parent.iterdir()] == ["record.json"]  # no temporaries
    (tmp_path / "full").mkdir()
    with pytest.raises(OutputPathError, match="is a folder"):
        write_json(tmp_path / "full", {})


def test_preview_keeps_a_folder_and_writes_the_format_of_its_suffix(place: dict) -> None:
    store, tmp = place["work"] / "house1__Bedroom-1.zarr", place["tmp"]
    full = tmp / "full"
    full.mkdir()
    (full / "k.txt").write_text("keep")
    assert_clean_error(run("preview", store, "--out", full), "full", "is a folder")
    assert (full / "k.txt").read_text() == "keep"
    assert_clean_error(run("preview", store, "--out", place["afile"] / "s.png"), "is a file")
    assert_clean_error(run("preview", store, "--out", tmp / "s.gif"), ".gif", ".png")
    r = run("preview", store, "--out", tmp / "s.jpg", "--frames", "1")
    assert r.exit_code == 0, r.output
    assert (tmp / "s.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG, not PNG bytes
    r = run("preview", store, "--out", tmp / "s.png", "--frames", "1")
    assert r.exit_code == 0 and (tmp / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# 2. never run code from a checkpoint -------------------------------------------------------------------

class _Evil:
    """Unpickling this creates the file named in ``marker`` (through os.system)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_runs_nothing(place: dict) -> None:
    import torch

    tmp = place["tmp"]
    marker = tmp / "pwned"
    evil = tmp / "evil.pt"
    torch.save({"model": {}, "config": {"model": "3dseg-t"}, "x": _Evil(marker)}, evil)
    legacy = tmp / "legacy.pt"  # an old-style (non-zip) pickle
    legacy.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="legacy.pt"):
        load_checkpoint(legacy)
    r = run("benchmark", "eval", "--data", place["data"], "--checkpoint", evil, "--device", "cpu")
    assert_clean_error(r, evil, "refused", "could run code")
    assert not marker.exists(), "unpickling ran code"
    r = run("benchmark", "eval", "--data", place["data"], "--checkpoint", place["afile"], "--device", "cpu")
    assert_clean_error(r, place["afile"], "not a PyTorch checkpoint")


def test_what_training_saves_loads_safely(tmp_path: Path) -> None:
    import torch

    from panorooms3d.bench.train import save_checkpoint

    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    payload = {"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
               "iteration": 7, "config": {"model": "3dseg-t", "lr": 1e-3, "init": None, "overrides": {"skip": False},
                                         "sizes": [1, 2], "betas": (0.9, 0.99)},
               "val_mIoU": np.float64(41.5), "path": Path("runs/x")}
    save_checkpoint(tmp_path / "c.pt", payload)
    back = load_checkpoint(tmp_path / "c.pt")
    assert back["iteration"] == 7 and back["config"] == payload["config"] and back["val_mIoU"] == 41.5
    assert torch.equal(back["model"]["weight"], net.state_dict()["weight"])
    opt2 = torch.optim.Adam(net.parameters(), 1e-3)
    opt2.load_state_dict(back["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == 1


def test_named_checkpoint_options_name_the_option_and_the_value(tmp_path: Path) -> None:
    import argparse

    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"")
    parse = named_checkpoint("--student")
    assert parse(f"dist={ckpt}") == ("dist", ckpt)
    odd = tmp_path / "lr=1e-3.pt"  # the name ends at the first "=": a path may hold more
    odd.write_bytes(b"")
    assert parse(f"a={odd}") == ("a", odd)
    for text, words in [("no-equals-sign", ["--student takes NAME=CHECKPOINT", "'no-equals-sign'"]),
                        (f"={ckpt}", ["--student takes NAME=CHECKPOINT"]), ("dist=", ["--student takes NAME=CHECKPOINT"]),
                        (f"dist={tmp_path}/gone.pt", ["--student dist: no such checkpoint", "gone.pt"]),
                        (f"dist={tmp_path}", ["--student dist: no such checkpoint"])]:
        with pytest.raises(argparse.ArgumentTypeError) as info:
            parse(text)
        assert all(w in str(info.value) for w in words), (text, str(info.value))


# 3 and 5. user mistakes: Error: + exit code, nothing left behind ---------------------------------------

MISTAKES = [
    # (argv with {placeholders}, words the message holds, exit code, paths that must not exist afterwards)
    (["synth", "--out", "{afile}/x"], ["afile", "is a file"], 1, []),
    (["synth", "--out", "{notes}", "--houses", "0"], ["notes", "not empty", "--force"], 1, []),
    (["render", "--front", "{front}", "--out", "{afile}"], ["afile", "not a folder"], 1, []),
    (["render", "--front", "{front}", "--out", "{notes}"], ["notes.txt", "--force"], 1, []),
    (["render", "--front", "{front}", "--out", "{tmp}/w", "--views", "0"], ["--views"], 2, ["{tmp}/w"]),
    (["render", "--front", "{afile}", "--out", "{tmp}/w"], ["afile", "not a folder"], 1, ["{tmp}/w"]),
    (["build", "--front", "{front}", "--out", "{tmp}/d", "--views", "0"], ["--views"], 2, ["{tmp}/d"]),
    (["build", "--front", "{front}", "--out", "{afile}/d"], ["is a file"], 1, []),
    (["build", "--front", "{front}", "--out", "{notes}"], ["notes.txt", "--force"], 1, []),
    (["build", "--front", "{front}", "--out", "{tmp}/d", "--rooms", "house1/nope"], ["nope"], 1, ["{tmp}/d"]),
    (["fuse", "--work", "{afile}", "--out", "{tmp}/d"], ["afile", "is a file"], 1, ["{tmp}/d"]),
    (["fuse", "--work", "{work}", "--out", "{afile}"], ["afile", "not a folder"], 1, []),
    (["fuse", "--work", "{work}", "--out", "{notes}"], ["--force"], 1, []),
    (["fuse", "--work", "{work}", "--out", "{tmp}/d", "--device", "GPU:0"], ["GPU:0", "CPU:0"], 2, ["{tmp}/d"]),
    (["panorama", "--work", "{tmp}/nowork", "--out", "{tmp}/d"], ["nowork"], 1, ["{tmp}/d"]),
    (["pack", "{tmp}/nope"], ["nope", "no such folder"], 1, ["{tmp}/nope"]),
    (["pack", "{notes}"], ["no staged room"], 1, ["{notes}/shards"]),
    (["view", "{data}", ROOM, "--out", "{notes}"], ["notes", "is a directory"], 2, []),
    (["scenes", "--front", "{front}", "--house", "nope"], ["nope", "house1"], 1, []),
    (["benchmark", "run", "nosuch", "--data", "{data}", "--out", "{tmp}/r"], ["nosuch", "table1"], 1, ["{tmp}/r"]),
    (["benchmark", "run", "table1", "--data", "{data}", "--out", "{afile}"], ["afile", "is a file"], 2, []),
    (["benchmark", "run", "table1", "--data", "{data}", "--out", "{notes}"], ["--force"], 1, []),
    (["benchmark", "eval", "--data", "{data}", "--checkpoint", "{afile}", "--split", "nope"], ["--split"], 2, []),
    (["benchmark", "eval", "--data", "{data}", "--checkpoint", "{tmp}", "--device", "cpu"], ["folder"], 1, []),
    (["benchmark", "eval", "--data", "{data}", "--checkpoint", "{afile}", "--out", "{notes}"], ["is a directory"], 2,
     []),
    (["benchmark", "train", "--data", "{data}", "--out", "{afile}"], ["afile", "not a folder"], 1, []),
    (["benchmark", "train", "--data", "{data}", "--out", "{tmp}/t", "--batch-size", "0"], ["--batch-size"], 2,
     ["{tmp}/t"]),
    (["benchmark", "train", "--data", "{tmp}/nodata", "--out", "{tmp}/t"], ["no manifest.json"], 1, ["{tmp}/t"]),
]


@pytest.mark.parametrize("argv, words, code, absent", MISTAKES, ids=[" ".join(m[0][:2]) for m in MISTAKES])
def test_user_mistakes_are_clean_errors_that_leave_nothing(place: dict, argv, words, code, absent) -> None:
    before = sorted(str(p.relative_to(place["tmp"])) for p in place["tmp"].rglob("*"))
    r = run(*[a.format(**place) for a in argv])
    assert_clean_error(r, *words, code=code)
    for p in absent:
        assert not Path(p.format(**place)).exists(), f"{p} left behind"
    after = sorted(str(p.relative_to(place["tmp"])) for p in place["tmp"].rglob("*"))
    assert after == before, f"the failed command changed the folder: {set(after) ^ set(before)}"
    assert (place["notes"] / "notes.txt").read_text() == "keep"


def test_cuda_on_a_torch_without_it_is_refused_before_any_folder(place: dict) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    out = place["tmp"] / "r"
    r = run("benchmark", "run", "table1", "--data", place["data"], "--out", out, "--device", "cuda")
    assert_clean_error(r, "cuda", "--device cpu", code=2)
    assert not out.exists()
    r = run("benchmark", "train", "--data", place["data"], "--out", out, "--device", "cuda:0")
    assert_clean_error(r, "cuda", code=2)
    assert not out.exists()


def test_suites_are_found_by_name_from_any_folder(place: dict, monkeypatch) -> None:
    monkeypatch.chdir(place["tmp"])
    for suite in ("table1", "benchmark/table1.toml"):
        r = run("benchmark", "run", suite, "--data", "nodata", "--out", "r")
        assert_clean_error(r, "nodata", "no manifest.json")  # the suite was found; the data was not
    assert not (place["tmp"] / "r").exists()


def test_read_only_output_folder_is_a_clean_error(place: dict) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = place["tmp"] / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert_clean_error(run("synth", "--out", ro, "--houses", "0"), "ro", "not writable")
        assert_clean_error(run("synth", "--out", ro / "x", "--houses", "0"), "not writable")
        assert_clean_error(run("fuse", "--work", place["work"], "--out", ro), "not writable")
    finally:
        ro.chmod(0o755)


def test_expected_errors_become_messages_and_bugs_keep_tracebacks() -> None:
    msg = user_error_message(PermissionError(13, "Permission denied", "/data/out"))
    assert msg is not None and "/data/out" in msg and "permissions" in msg
    assert "disk is full" in user_error_message(OSError(28, "No space left on device", "/d"))
    assert "--device cpu" in user_error_message(AssertionError("Torch not compiled with CUDA enabled"))
    assert user_error_message(ValueError("a bug")) is None
    assert user_error_message(KeyError("a bug")) is None


# 4. a failed room's line carries its reason ------------------------------------------------------------

def _open3d_like_failure(task) -> dict:
    raise RuntimeError('\x1b[1;31m[Open3D Error] (ParseDeviceTypeToken) Invalid device type "GPU".\n\x1b[0;m')


def test_failed_room_line_carries_type_and_message(tmp_path: Path) -> None:
    from panorooms3d.run.runner import RoomTask, run_rooms

    report = run_rooms(_open3d_like_failure, [RoomTask("h/r", tmp_path / "out")], workers=1, retries=0,
                       progress=False)
    line = [ln for ln in report.summary().splitlines() if "FAILED" in ln][0]
    assert line.endswith('RuntimeError: [Open3D Error] (ParseDeviceTypeToken) Invalid device type "GPU".'), line


# 6. one writer per folder --------------------------------------------------------------------------------

def test_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(place: dict) -> None:
    out = place["tmp"] / "d"
    out.mkdir()
    holder = start_lock_holder(out, "build --out d")
    try:
        r = run("fuse", "--work", place["work"], "--out", out, "--workers", "1", "--no-progress")
        assert_clean_error(r, out, f"pid {holder.pid}", "build --out d")
        with pytest.raises(LockError, match="in use"):
            FolderLock(out, "test").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / LOCK_NAME).exists()  # killed: its lock stays, stale
    r = run("fuse", "--work", place["work"], "--out", out, "--workers", "1", "--no-progress", "--no-pack")
    assert r.exit_code == 0, r.output
    assert "taking over a stale lock" in r.output and f"pid {holder.pid}" in r.output
    assert "1 done" in r.output and not (out / LOCK_NAME).exists()


def test_output_folder_removes_what_it_created_when_the_command_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), output_folder(tmp_path / "a" / "b", "dataset", command="t"):
        assert (tmp_path / "a" / "b" / LOCK_NAME).exists()
        raise RuntimeError("failed before any work")
    assert list(tmp_path.iterdir()) == []


# 7. foreign folders and rooms rendered with other settings -----------------------------------------------

def test_render_reports_rooms_rendered_with_other_settings_and_keeps_them(place: dict) -> None:
    work = place["tmp"] / "w2"
    old = RenderSettings(views=8, width=160, height=120).to_dict()
    store = tiny_store(work / "house1__Bedroom-1.zarr", settings=old)
    stamp = store.stat().st_mtime_ns
    r = run("render", "--front", place["front"], "--out", work, "--views", "48", "--timeout", "5")
    assert r.exit_code == 0, r.output
    assert "1 room(s) already rendered with other settings" in r.output and "--overwrite" in r.output
    assert "views 8 (asked 48)" in r.output and "width 160 (asked 640)" in r.output
    assert "timeout" not in r.output.split("other settings")[1].split("\n")[1]  # where it runs is no difference
    assert "0 done, 1 skipped" in r.output and store.stat().st_mtime_ns == stamp
    room = json.loads((work / "render_report.json").read_text())["rooms"][0]
    assert room["status"] == "skipped" and room["info"]["settings_differ"]["views"] == [8, 48]
    assert room["info"]["rerendered"] is False
    same = {**old, "timeout": 5.0}
    tiny_store(work / "house1__Bedroom-1.zarr", settings=same)
    r = run("render", "--front", place["front"], "--out", work, "--views", "8", "--width", "160", "--height", "120")
    assert r.exit_code == 0 and "other settings" not in r.output and "1 skipped" in r.output


# 8. smaller things ---------------------------------------------------------------------------------------

def test_group_verbose_shows_the_loaders_problem_lines(tmp_path: Path, caplog) -> None:
    h = tf.base_house()
    h["scene"]["room"][0]["children"].append({"ref": "ghost", "instanceid": "x"})
    root = tf.write_front(tmp_path, {"house1": h})

    def problems(*args) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="panorooms3d.scene"):
            assert run(*args).exit_code == 0
        return [r.getMessage() for r in caplog.records if r.name == "panorooms3d.scene"]

    assert problems("scenes", "--front", root) == []
    assert any("unknown_ref" in m for m in problems("-v", "scenes", "--front", root))
    assert any("unknown_ref" in m for m in problems("scenes", "--front", root, "-v"))


def test_progress_bars_stay_out_of_a_log(tmp_path: Path) -> None:
    r = run("synth", "--out", tmp_path / "f", "--houses", "1")
    assert r.exit_code == 0, r.output
    assert "\r" not in r.stderr and "\x1b[" not in r.stderr


def test_help_shows_ranges_choices_and_no_raw_markup() -> None:
    build = run("build", "--help").output
    assert "x>=1" in build and "[default: 48" in build and "[default: the renderer" not in build
    scenes = run("scenes", "--help").output
    assert "``" not in scenes
    ev = run("benchmark", "eval", "--help").output
    assert "train|val|test" in ev and "[default: auto]" in ev


def test_cpu_track_pipeline_refuses_a_folder_of_its_earlier_version(tmp_path: Path) -> None:
    """pipelines/cpu-track.sh resumes in its folder; one made by the first track (16 houses, random
    views) would be mixed with the new settings, so the script stops before writing anything."""
    import subprocess

    root = Path(__file__).parents[1]
    houses = tmp_path / "front" / "3D-FRONT"
    houses.mkdir(parents=True)
    for i in range(16):
        (houses / f"house-{i}.json").write_text("{}")
    (tmp_path / "front" / "synth_report.json").write_text(json.dumps({"seed": 1, "houses": [f"house-{i}" for i in range(16)]}))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    if not (root / ".venv" / "bin" / "panorooms3d").exists():  # `make test` creates it; without it the script runs `make setup`
        pytest.skip("no .venv/bin/panorooms3d in this checkout")
    r = subprocess.run(["bash", str(root / "pipelines" / "cpu-track.sh")], env={**os.environ, "TRACK_OUT": str(tmp_path)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "holds 16 houses, not this track's 20" in r.stderr and "TRACK_OUT=" in r.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
