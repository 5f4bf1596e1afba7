"""End to end: synthetic house -> build (real Blender, Open3D, zarr) -> verified dataset.

An interrupted build (SIGKILL after the first room is staged) resumes and produces the same
dataset as an uninterrupted one, shard checksums included; the Ray executor builds the same rooms
on an existing local cluster started with `ray start --head`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from panorooms3d.cli import cli
from panorooms3d.store.dataset import Dataset
from panorooms3d.store.frames import read_frames

TINY = ["--views", "3", "--width", "96", "--height", "72", "--samples", "1", "--skybox-size", "64",
        "--pano-height", "64", "--splits", "0.5,0,0.5", "--seed", "2"]

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def front(tmp_path_factory) -> Path:
    from panorooms3d.scene.synth import synthesize

    root = tmp_path_factory.mktemp("front")
    synthesize(root, 1, seed=0, rooms_per_house=(2, 2))
    return root


@pytest.fixture(scope="module")
def built(front, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built") / "data"
    result = CliRunner().invoke(cli, ["build", "--front", str(front), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert "2 done, 0 skipped" in result.output and "0 failed" in result.output
    return out


def _shards(dataset: Path) -> dict:
    manifest = json.loads((dataset / "manifest.json").read_text())
    return {
        "shards": {s["file"]: s["sha256"] for s in manifest["shards"]},
        "rooms": {r["uid"]: (r["shard"], r["sha256"], r["split"]) for r in manifest["rooms"]},
    }


def test_build_makes_a_verified_dataset(front: Path, built: Path, tmp_path: Path) -> None:
    ds = Dataset(built)
    assert len(ds.rooms) == 2
    result = CliRunner().invoke(cli, ["info", str(built), "--verify"])
    assert result.exit_code == 0, result.output
    for uid in ds.rooms:
        vol = ds.load_volume(uid)
        labels = set(np.unique(vol.label).tolist())
        assert {40, 51} & labels, f"{uid}: walls or floor were fused ({sorted(labels)})"
        assert np.allclose(vol.origin / vol.voxel_size, np.round(vol.origin / vol.voxel_size))
        assert vol.tsdf.min() >= -1 and vol.tsdf.max() <= 1 and (vol.weight > 0).any()
        pano = ds.load_panorama(uid)
        assert pano.rgb.shape == (64, 128, 3) and pano.depth.max() > 0
        frames = read_frames(built / "work" / f"{uid.replace('/', '__')}.zarr", skybox=False)
        assert np.allclose(pano.camera, frames.pano_camera), "the panorama stores its camera"
        # the panorama camera is inside the fused room's grid
        lo, hi = vol.origin, vol.origin + np.array(vol.shape) * vol.voxel_size
        assert np.all(pano.camera > lo) and np.all(pano.camera < hi)
    png = tmp_path / "slices.png"
    result = CliRunner().invoke(cli, ["view", str(built), ds.rooms[0], "--out", str(png)])
    assert result.exit_code == 0 and png.stat().st_size > 0, result.output
    before = _shards(built)
    again = CliRunner().invoke(cli, ["build", "--front", str(front), "--out", str(built), *TINY])
    assert again.exit_code == 0 and "0 done, 2 skipped" in again.output, again.output
    assert _shards(built) == before, "a finished build run again changes nothing"


def _staged_panoramas(out: Path) -> list[Path]:
    return [p for p in (out / "staging").glob("*/pano.zarr")] if (out / "staging").exists() else []


def test_interrupted_build_resumes_to_the_same_dataset(front: Path, built: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    code = "import sys; from panorooms3d.cli import cli; cli.main(sys.argv[1:], 'panorooms3d')"
    proc = subprocess.Popen([sys.executable, "-c", code, "build", "--front", str(front), "--out", str(out), *TINY],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not _staged_panoramas(out) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert _staged_panoramas(out), "the first room was never staged"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(_staged_panoramas(out)) == 1, "killed after the first room, before the second"
    assert not (out / "manifest.json").exists(), "no manifest lists a half-built dataset"

    result = CliRunner().invoke(cli, ["build", "--front", str(front), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert "1 done, 1 skipped" in result.output
    assert _shards(out) == _shards(built), "the resumed build is byte-identical to the uninterrupted one"


@pytest.mark.ray
def test_build_on_an_existing_ray_cluster(front: Path, built: Path, tmp_path: Path) -> None:
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        pytest.skip("ray is not installed (pip install 'panorooms3d[ray]')")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    temp = Path("/tmp") / f"ray-e2e-{os.getpid()}"  # short: Ray's socket paths must stay under 108 bytes
    start = subprocess.run([str(ray_bin), "start", "--head", "--num-cpus", "2", "--include-dashboard", "false",
                            "--temp-dir", str(temp), "--disable-usage-stats"], env=env, capture_output=True, text=True,
                           timeout=120)
    try:  # a start that fails (e.g. a timed-out node on a loaded machine) may leave half a cluster running
        assert start.returncode == 0, start.stdout + start.stderr
        out = tmp_path / "data"
        result = CliRunner(env={"RAY_ADDRESS": "auto"}).invoke(
            cli, ["build", "--front", str(front), "--out", str(out), "--executor", "ray", *TINY])
        assert result.exit_code == 0, result.output
        assert "executor ray" in result.output and "2 done" in result.output
        local, remote = Dataset(built), Dataset(out)
        assert remote.rooms == local.rooms
        for uid in local.rooms:
            a, b = local.load_volume(uid), remote.load_volume(uid)
            assert np.array_equal(a.label, b.label) and np.array_equal(a.tsdf, b.tsdf)
    finally:
        import ray

        ray.shutdown()  # disconnect this process (the CLI ran in it) before the cluster goes
        subprocess.run([str(ray_bin), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
