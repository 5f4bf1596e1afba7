"""``panorooms3d fuse`` on tiny work folders of ray-cast frames stores (real Open3D, real zarr, real pool)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from raycast_frames import box_room, box_sdf, raycast_frames, room_cameras

from panorooms3d.fusion.commands import fuse
from panorooms3d.geometry import look_at
from panorooms3d.store.frames import write_frames

dataset_mod = pytest.importorskip("panorooms3d.store.dataset", reason="the dataset store (store/dataset.py) is missing")

ROOMS = ("boxhouse/Box-1", "boxhouse/Box-2")


def _work(tmp_path, bad_room: str | None = None):
    work = tmp_path / "work"
    rooms = {}
    for n, uid in enumerate(ROOMS):
        room = box_room(size=(2.0 + 0.4 * n, 1.8, 2.4), lo=(0.013, -0.571, 0.0), uid=uid)
        frames = raycast_frames(room, room_cameras(room, 10, seed=n, inset=0.5), 96, 72, hfov_deg=90)
        write_frames(work / f"{room.key}.zarr", frames)
        rooms[uid] = room
    if bad_room:
        room = box_room(uid=bad_room)
        frames = raycast_frames(room, room_cameras(room, 3), 32, 24)
        frames.depth[:] = np.nan
        write_frames(work / f"{room.key}.zarr", frames)
    return work, rooms


def test_fuse_command_stages_packs_and_resumes(tmp_path):
    work, rooms = _work(tmp_path)
    out = tmp_path / "data"
    runner = CliRunner()
    res = runner.invoke(fuse, ["--work", str(work), "--out", str(out), "--workers", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "2 done" in res.output and "frames/s" in res.output and "packed 2 rooms" in res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(r["uid"] for r in manifest["rooms"]) == sorted(ROOMS)
    for uid, room in rooms.items():
        vol = dataset_mod.read_room_volume(out, uid)
        assert vol.room_uid == uid and vol.voxel_size == pytest.approx(0.04)
        assert vol.attrs["fusion"]["frames"] == 10
        # the staged volume is the box: observed near-surface voxels have the analytic sign
        lo, hi = room.bounds()
        ijk = np.argwhere((vol.weight > 0) & (np.abs(vol.tsdf) < 1))
        sdf = box_sdf(vol.origin + (ijk + 0.5) * vol.voxel_size, lo, hi)
        t = vol.tsdf[tuple(ijk.T)]
        clear = np.abs(sdf) > 0.01
        assert np.mean(np.sign(t[clear]) == np.sign(sdf[clear])) > 0.99
    # resume: everything is skipped
    res = runner.invoke(fuse, ["--work", str(work), "--out", str(out), "--workers", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "0 done, 2 skipped" in res.output


def test_fuse_command_reports_a_failing_room_and_goes_on(tmp_path):
    work, _ = _work(tmp_path, bad_room="badhouse/Empty-1")
    out = tmp_path / "data"
    res = CliRunner().invoke(fuse, ["--work", str(work), "--out", str(out), "--workers", "1", "--retries", "0",
                                    "--no-progress"])
    assert res.exit_code != 0
    assert "2 done" in res.output and "1 failed" in res.output
    assert "badhouse/Empty-1" in res.output and "no valid depth" in res.output
    assert "Traceback" not in res.output
    report = json.loads((out / "fuse_report.json").read_text())
    assert report["counts"] == {"done": 2, "skipped": 0, "failed": 1}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--work", "{tmp}/nowhere", "--out", "{tmp}/d"], "no such folder"),
        (["--work", "{tmp}", "--out", "{tmp}/d"], "no frames stores"),
        (["--work", "{work}", "--out", "{tmp}/d", "--report"], "--report needs --front"),
        (["--work", "{work}", "--out", "{tmp}/d", "--voxel-size", "0"], "must be positive"),
    ],
)
def test_fuse_command_user_mistakes(tmp_path, args, message):
    work = tmp_path / "w"
    (work / "x.zarr").mkdir(parents=True)
    args = [a.format(tmp=tmp_path, work=work) for a in args]
    res = CliRunner().invoke(fuse, args)
    assert res.exit_code != 0
    assert message in res.output and "Traceback" not in res.output


def test_fuse_command_report_against_the_scene_mesh(tmp_path):
    from panorooms3d.scene.front import find_houses, load_house
    from panorooms3d.scene.synth import synthesize

    front = tmp_path / "front"
    synthesize(front, 1, 0, rooms_per_house=(1, 1))
    room = load_house(find_houses(front)[0]).rooms[0]
    flo, fhi = room.floor_bounds()
    centre = (flo + fhi) / 2
    cams = [look_at(centre + [0.3 * np.cos(a), 0.3 * np.sin(a), 1.6],
                    centre + [3 * np.cos(a), 3 * np.sin(a), 1.6 - 1.5 * (i % 3) + 0.8])
            for i, a in enumerate(np.linspace(0, 2 * np.pi, 16, endpoint=False))]
    frames = raycast_frames(room, np.stack(cams), 128, 96, hfov_deg=90)
    work = tmp_path / "work"
    write_frames(work / f"{room.key}.zarr", frames)
    out = tmp_path / "data"
    res = CliRunner().invoke(fuse, ["--work", str(work), "--out", str(out), "--front", str(front), "--report",
                                    "--workers", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "fidelity (mean over 1 fused rooms): label agreement" in res.output
    vol = dataset_mod.read_room_volume(out, room.uid)
    fid = vol.attrs["fidelity"]
    assert fid["surface_distance_mean_m"] < 0.01
    assert fid["label_agreement"] > 0.9
    assert 0.2 < fid["observed_surface_share"] <= 1.0
    assert vol.attrs["fusion"]["bounds"] == "given"  # the room's mesh bounds the grid
    lo, _ = room.bounds()
    assert np.all(vol.origin <= lo - 2 * vol.voxel_size + 1e-9)
