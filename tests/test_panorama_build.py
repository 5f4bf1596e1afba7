"""The panorama-only build (`panorooms3d panoramas`): real Blender skybox renders, real zarr, resumable.

Its panoramas are the ones a full `build` makes for the same room and settings (bit for bit: the cameras
of the full render are sampled, not rendered, so the seeded texture choice is the same); an interrupted
run resumes to the same dataset; its manifest says it holds panoramas and no volumes.
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

from panorooms3d.cli import cli
from panorooms3d.store.dataset import Dataset, DatasetError

pytestmark = pytest.mark.blender

#: Tiny: 64 px skybox faces, 32 x 64 panoramas. --views/--width/--height only seed the texture choice.
TINY = ["--views", "2", "--width", "48", "--height", "36", "--samples", "1", "--skybox-size", "64",
        "--seed", "3"]
PANO = ["--pano-height", "32"]


@pytest.fixture(scope="module")
def front(tmp_path_factory) -> Path:
    from panorooms3d.scene.synth import synthesize

    root = tmp_path_factory.mktemp("front")
    synthesize(root, 1, seed=5, rooms_per_house=(2, 2))
    return root


@pytest.fixture(scope="module")
def panos(front, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("panos") / "panos"
    result = CliRunner().invoke(cli, ["panoramas", "--front", str(front), "--out", str(out), *TINY, *PANO,
                                      "--splits", "0.5,0,0.5"])
    assert result.exit_code == 0, result.output
    assert "2 done, 0 skipped" in result.output and "0 failed" in result.output, result.output
    return out


def _shards(dataset: Path) -> dict:
    manifest = json.loads((dataset / "manifest.json").read_text())
    return {"shards": {s["file"]: s["sha256"] for s in manifest["shards"]},
            "rooms": {r["uid"]: (r["shard"], r["sha256"], r["split"]) for r in manifest["rooms"]}}


def test_panorama_only_dataset(panos: Path) -> None:
    ds = Dataset(panos)
    assert ds.panoramas_only and ds.manifest["content"] == "panoramas"
    assert len(ds.rooms) == 2 and len(ds.split("train")) == 1 and len(ds.split("test")) == 1
    assert not (panos / "work").exists(), "the skybox stores are deleted once the panoramas are staged"
    for uid in ds.rooms:
        info = ds.room_info(uid)
        assert info.has_panorama and info.shape is None and info.entry["has_volume"] is False
        pano = ds.load_panorama(uid)
        assert pano.rgb.shape == (32, 64, 3) and pano.label.shape == (32, 64)
        assert {51, 40} & set(np.unique(pano.label).tolist()), "floor or walls are seen"
        # range depth: inside a furnished room of a few metres; every ray hits (closed room)
        assert (pano.depth > 0).mean() > 0.99 and 0.1 < np.median(pano.depth) < 8
        with pytest.raises(DatasetError, match="panorama but no volume"):
            ds.load_volume(uid)
    result = CliRunner().invoke(cli, ["info", str(panos), "--verify"])
    assert result.exit_code == 0, result.output
    assert "panorama-only dataset" in result.output and "verify: OK" in result.output
    assert "panorama pixels" in result.output


def test_panorama_equals_the_full_build(front: Path, panos: Path, tmp_path: Path) -> None:
    """The same room and settings through `build` (frames + fusion + panorama) give the same panorama."""
    ds = Dataset(panos)
    uid = ds.rooms[0]
    full = tmp_path / "full"
    result = CliRunner().invoke(cli, ["build", "--front", str(front), "--out", str(full), "--rooms", uid, *TINY,
                                      *PANO, "--splits", "1,0,0"])
    assert result.exit_code == 0, result.output
    a, b = ds.load_panorama(uid), Dataset(full).load_panorama(uid)
    for name in ("rgb", "label", "instance", "depth", "camera"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), f"panorama {name} differs from the full build's"


def _staged(out: Path) -> list[Path]:
    return list((out / "staging").glob("*/pano.zarr")) if (out / "staging").exists() else []


def test_interrupted_run_resumes_to_the_same_dataset(front: Path, panos: Path, tmp_path: Path) -> None:
    out = tmp_path / "panos"
    args = ["panoramas", "--front", str(front), "--out", str(out), *TINY, *PANO, "--splits", "0.5,0,0.5"]
    code = "import sys; from panorooms3d.cli import cli; cli.main(sys.argv[1:], 'panorooms3d')"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not _staged(out) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert _staged(out), "the first room was never staged"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(_staged(out)) == 1, "killed after the first room, before the second"
    assert not (out / "manifest.json").exists(), "no manifest lists a half-built dataset"
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "1 done, 1 skipped" in result.output, result.output
    assert _shards(out) == _shards(panos), "the resumed build is byte-identical to the uninterrupted one"
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "0 done, 2 skipped" in again.output, again.output
    assert _shards(out) == _shards(panos), "a finished build run again changes nothing"


def test_refuses_a_dataset_with_volumes(front: Path, tmp_path: Path) -> None:
    from bench_rooms import make_dataset

    data = make_dataset(tmp_path / "data", n_rooms=2, splits={"train": ["box0/Room-0"], "val": [],
                                                              "test": ["box1/Room-1"]})
    before = (data / "manifest.json").read_bytes()
    result = CliRunner().invoke(cli, ["panoramas", "--front", str(front), "--out", str(data), *TINY, *PANO])
    assert result.exit_code != 0 and "Error:" in result.output and "volumes" in result.output, result.output
    assert (data / "manifest.json").read_bytes() == before
