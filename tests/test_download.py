"""publish / download: a real HTTP server on 127.0.0.1 serving a published tiny dataset."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from bench_rooms import make_dataset
from click.testing import CliRunner

from panorooms3d.store.dataset import Dataset, DatasetError
from panorooms3d.store.download import DownloadError, download_dataset
from panorooms3d.store.publish import publish_dataset
from panorooms3d.store.transfer_commands import download_command, publish_command

FAST = {"progress": False, "backoff": 0.01, "timeout": 10}


class _State:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.drop: dict[str, int] = {}  # path -> drop the connection after this many bytes (once)
        self.fail: dict[str, int] = {}  # path -> answer 503 this many times


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=N-`` support, scripted drops and 503s (http.server has no Range)."""

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        state: _State = self.server.state
        path = self.path.split("?", 1)[0]
        rng = self.headers.get("Range")
        with state.lock:
            state.requests.append((path, rng))
            fail = state.fail.get(path, 0)
            if fail:
                state.fail[path] = fail - 1
            drop = state.drop.pop(path, None)
        if fail:
            self.send_error(503, "try again")
            return
        local = Path(self.translate_path(path))
        if not local.is_file():
            self.send_error(404, "no such file")
            return
        data = local.read_bytes()
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and int(m.group(1)) < len(data):
            start = int(m.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if drop is not None:
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@contextlib.contextmanager
def serve(folder: Path):
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) serving ``folder``; yields (base URL, state)."""
    handler = lambda *a, **k: RangeHandler(*a, directory=str(folder), **k)  # noqa: E731
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.state = _State()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/site", server.state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """(dataset dir, web root holding ``site/``): 4 box rooms, 2 per shard, test split = box3."""
    root = tmp_path_factory.mktemp("pub")
    dataset = make_dataset(root / "dataset", n_rooms=4)
    publish_dataset(dataset, root / "web" / "site")
    return dataset, root / "web"


def _copy_web(web: Path, dst: Path) -> Path:
    shutil.copytree(web, dst, copy_function=shutil.copy2)  # real copies: edits do not reach the dataset
    return dst


def _shard_file(web: Path, shard_index: int = 0, largest: bool = True) -> tuple[str, str, int]:
    index = json.loads((web / "site" / "index.json").read_text())
    shard = index["shards"][shard_index]
    f = max(shard["files"], key=lambda f: f["size"]) if largest else shard["files"][0]
    return shard["file"], f["path"], f["size"]


def _same_rooms(a: Dataset, b: Dataset, uids) -> None:
    for uid in uids:
        va, vb = a.load_volume(uid), b.load_volume(uid)
        for name in ("tsdf", "weight", "rgb", "label", "instance"):
            np.testing.assert_array_equal(getattr(va, name), getattr(vb, name))
        np.testing.assert_array_equal(a.load_panorama(uid).depth, b.load_panorama(uid).depth)


def test_publish_site_is_complete_and_idempotent(published, tmp_path):
    dataset, web = published
    site = web / "site"
    index = json.loads((site / "index.json").read_text())
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert index["manifest"] == manifest
    assert [s["sha256"] for s in index["shards"]] == [s["sha256"] for s in manifest["shards"]]
    assert all(f["size"] > 0 and len(f["sha256"]) == 64 for s in index["shards"] for f in s["files"])
    assert Dataset(site).verify() == []  # the site is itself a dataset
    assert (site / "splits" / "test.txt").read_text() == "box3/Room-3\n"
    mtime = (site / "index.json").stat().st_mtime_ns
    again = publish_dataset(dataset, site)
    assert again.get("unchanged") and (site / "index.json").stat().st_mtime_ns == mtime

    # a corrupt dataset is refused, naming the shard and room
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    shard, rel, _ = _shard_file(web, 1)
    p = bad / shard / rel
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"(?s)refusing to publish.*shard-00001.*box\d/Room-\d"):
        publish_dataset(bad, tmp_path / "site")
    assert not (tmp_path / "site").exists()
    # a non-empty folder that is no site is not replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    result = CliRunner().invoke(publish_command, [str(dataset), "--out", str(tmp_path / "mine")])
    assert result.exit_code == 1 and "not an earlier site" in result.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_download_all_then_rerun_skips(published, tmp_path):
    dataset, web = published
    out = tmp_path / "out"
    with serve(web) as (url, state):
        report = download_dataset(url, out, workers=4, **FAST)
        n_requests = len(state.requests)
        again = download_dataset(url, out, **FAST)
        assert state.requests[n_requests:] == [("/site/index.json", None)]  # only the index
    assert report.ok and len(report.shards_downloaded) == 2 and report.bytes_downloaded > 0
    assert again.shards_skipped == report.shards_downloaded and again.bytes_downloaded == 0
    ds = Dataset(out)
    assert ds.verify() == []
    src = Dataset(dataset)
    assert ds.rooms == src.rooms and ds.split("test") == src.split("test")
    _same_rooms(src, ds, ds.rooms)
    assert not [p for p in (out / "shards").iterdir() if p.name.startswith(".")]  # no partials left


def test_download_split_then_room_accumulates(published, tmp_path):
    _, web = published
    out = tmp_path / "out"
    with serve(web) as (url, _):
        report = download_dataset(url, out, splits=["test"], **FAST)
        assert report.shards_downloaded == ["shards/shard-00001.zarr"]
        assert sorted(p.name for p in (out / "shards").iterdir()) == ["shard-00001.zarr"]
        ds = Dataset(out)
        assert ds.verify() == [] and ds.rooms == ["box2/Room-2", "box3/Room-3"]  # whole shard
        assert ds.split("test") == ["box3/Room-3"] and ds.split("train") == ["box2/Room-2"]
        assert (out / "splits" / "train.txt").read_text() == "box2/Room-2\n"
        assert ds.manifest["download"]["shards_published"] == 2
        # one more room: its shard is added, the earlier one stays listed
        download_dataset(url, out, rooms=["box0/Room-0"], **FAST)
        assert Dataset(out).rooms == [f"box{i}/Room-{i}" for i in range(4)] and Dataset(out).verify() == []
        with pytest.raises(DownloadError, match="rooms not in the published dataset: nope/Room"):
            download_dataset(url, out, rooms=["nope/Room"], **FAST)


def test_corrupt_file_fails_clearly_and_lists_nothing_half_written(published, tmp_path):
    _, web = published
    web = _copy_web(web, tmp_path / "web")
    shard, rel, _ = _shard_file(web, 0)
    p = web / "site" / shard / rel
    data = bytearray(p.read_bytes())
    data[3] ^= 0x01
    p.write_bytes(bytes(data))
    out = tmp_path / "out"
    with serve(web) as (url, _):
        result = CliRunner().invoke(download_command, [url, "--out", str(out), "--no-progress", "--retries", "0"])
    assert result.exit_code == 1, result.output
    assert f"shard {shard}: file {rel}: sha256 mismatch" in result.output
    assert "1 shards downloaded" in result.output and "1 failed" in result.output
    ds = Dataset(out)
    assert [s["file"] for s in ds.manifest["shards"]] == ["shards/shard-00001.zarr"]
    assert ds.rooms == ["box2/Room-2", "box3/Room-3"] and ds.verify() == []
    assert not (out / shard).exists()


def test_interrupted_file_resumes_with_range(published, tmp_path):
    dataset, web = published
    shard, rel, size = _shard_file(web, 0)
    target = f"/site/{shard}/{rel}"
    other_shard, other, _ = _shard_file(web, 1, largest=False)
    out = tmp_path / "out"
    with serve(web) as (url, state):
        state.drop[target] = size // 2  # the first GET of this file stops half way
        state.fail[f"/site/{other_shard}/{other}"] = 2  # two 503s, then fine
        report = download_dataset(url, out, workers=2, **FAST)
    assert report.ok
    asked = [r for p, r in state.requests if p == target]
    assert asked == [None, f"bytes={size // 2}-"]
    assert report.bytes_downloaded == sum(f["size"] for s in json.loads((web / "site/index.json").read_text())["shards"]
                                          for f in s["files"])
    ds = Dataset(out)
    assert ds.verify() == []
    _same_rooms(Dataset(dataset), ds, ["box0/Room-0"])


def test_404_fails_clearly_then_resumes_only_missing(published, tmp_path):
    _, web = published
    web = _copy_web(web, tmp_path / "web")
    shard, rel, _ = _shard_file(web, 1)
    missing = web / "site" / shard / rel
    keep = missing.read_bytes()
    missing.unlink()
    out = tmp_path / "out"
    with serve(web) as (url, state):
        with pytest.raises(DownloadError, match=rf"shard {shard}: file {rel}: HTTP 404") as info:
            download_dataset(url, out, splits=["test"], **FAST)
        assert not info.value.report.ok and info.value.report.shards_listed == []
        assert not (out / "manifest.json").exists() and not (out / shard).exists()
        # the site is repaired: the next run fetches only the missing file (the rest is kept)
        missing.write_bytes(keep)
        n = len(state.requests)
        first = {p for p, _ in state.requests[1:n]} - {f"/site/{shard}/{rel}"}  # fetched whole the first time
        report = download_dataset(url, out, splits=["test"], **FAST)
        second = [p for p, _ in state.requests[n:]]
        assert second[0] == "/site/index.json" and f"/site/{shard}/{rel}" in second
        assert first and not first.intersection(second)
    assert report.shards_downloaded == [shard] and Dataset(out).verify() == []
    with pytest.raises(DownloadError, match="no index.json at .*publish"):
        download_dataset(str(tmp_path / "nowhere"), tmp_path / "o2", **FAST)


def test_file_url_and_local_path(published, tmp_path):
    dataset, web = published
    site = web / "site"
    report = download_dataset(site.as_uri(), tmp_path / "a", **FAST)
    assert report.ok and Dataset(tmp_path / "a").verify() == []
    # a plain path (and .../index.json) is the same; a leftover partial file restarts (file:// has no Range)
    shard, rel, size = _shard_file(web, 0)
    out = tmp_path / "b"
    index = json.loads((site / "index.json").read_text())
    sha = index["shards"][0]["sha256"]
    part_dir = out / "shards" / f".{Path(shard).name}.{sha[:16]}.partial"
    part = part_dir.joinpath(*rel.split("/"))
    part.parent.mkdir(parents=True)
    (part.parent / f".{part.name}.part").write_bytes(b"garbage")
    cwd = os.getcwd()
    try:
        os.chdir(web)
        report = download_dataset(os.path.join("site", "index.json"), out, **FAST)
    finally:
        os.chdir(cwd)
    assert report.ok and Dataset(out).verify() == []
    _same_rooms(Dataset(dataset), Dataset(out), ["box1/Room-1"])
