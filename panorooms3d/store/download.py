"""Download a published dataset (see publish.py): checksummed, resumable, parallel, subset-aware.

What happens (docs/download.md has the user's view)::

    GET URL/index.json              manifest + every shard file's size and sha256
    choose shards                   those holding the wanted rooms (all by default)
    skip complete shards            already in OUT (listed by OUT's manifest with the same sha256,
                                    or present and hashing to it)
    GET each file (threads)         into OUT/shards/.<shard>.<sha256[:16]>.partial/, each file as a
                                    hidden ``.<name>.part`` until its size and sha256 (checked as
                                    it streams) match, then renamed to its name; a ``.part`` left by
                                    an earlier run or a dropped connection is resumed with a Range
                                    request (a 200 answer restarts it)
    finish a shard                  hash_shard(partial folder) == the manifest's sha256 and size,
                                    then rename onto OUT/shards/<shard>
    write splits, then manifest     atomically, last, listing only the shards present in OUT

URLs are ``http://``, ``https://``, ``file://`` or a plain local path (made a ``file://`` URL):
one code path, urllib.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from panorooms3d.run.atomic import atomic_path, clean_stale_temporaries
from panorooms3d.store.dataset import MANIFEST, SPLITS, DatasetError, hash_shard, read_manifest
from panorooms3d.store.publish import INDEX, SITE_FORMAT, SITE_FORMAT_VERSION

_BLOCK = 1 << 20  # bytes per read from the network and per write
_PARTIAL = ".partial"
_PART = ".part"
_MAX_PROGRESS_ROUNDS = 1000  # attempts that made progress (dropped connections) per file, at most
_SAFE_PART = re.compile(r"^[A-Za-z0-9._\-]+$")


class DownloadError(DatasetError):
    """A download failed; the message names the URL, shard and file. ``report`` holds what was done."""

    def __init__(self, message: str, report: DownloadReport | None = None):
        super().__init__(message)
        self.report = report


class _NotFound(Exception):
    pass


class _Transient(Exception):
    pass


class _Fatal(Exception):
    pass


@dataclass
class DownloadReport:
    """What a download did. Sizes in bytes, times in seconds."""

    url: str
    out_dir: Path
    shards_downloaded: list[str] = field(default_factory=list)
    shards_skipped: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # shard -> message naming the file
    shards_listed: list[str] = field(default_factory=list)  # shards the written manifest lists
    rooms_listed: int = 0
    bytes_downloaded: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every wanted shard is in place."""
        return not self.failures

    @property
    def mb_per_s(self) -> float:
        """Mean download rate in MB/s (1 MB = 1e6 bytes) over the whole run."""
        return self.bytes_downloaded / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: shards downloaded/skipped/failed, bytes, rate, rooms listed."""
        return (f"{len(self.shards_downloaded)} shards downloaded, {len(self.shards_skipped)} skipped (complete), "
                f"{len(self.failures)} failed; {self.bytes_downloaded / 1e6:.1f} MB in {self.seconds:.1f} s "
                f"({self.mb_per_s:.1f} MB/s); {self.out_dir / MANIFEST} lists {len(self.shards_listed)} shards, "
                f"{self.rooms_listed} rooms")


# ----------------------------------------------------------------------------------------------
# URLs and requests


def site_url(url: str) -> str:
    """The site's base URL (no trailing ``/``): ``file://`` for plain paths; ``.../index.json`` is cut."""
    if "://" not in url:
        url = Path(url).expanduser().resolve().as_uri()
    url = url.rstrip("/")
    if url.endswith("/" + INDEX):
        url = url[: -len(INDEX) - 1]
    return url


def _join(base: str, *parts: str) -> str:
    return base + "/" + "/".join(urllib.parse.quote(p) for p in parts)


def _classify(exc: BaseException, url: str) -> Exception:
    """Map an exception of urllib/http.client/socket to _NotFound, _Transient or _Fatal."""
    if isinstance(exc, urllib.error.HTTPError):
        code = exc.code
        if code in (404, 410):
            return _NotFound(f"HTTP {code} {exc.reason} at {url}")
        if code >= 500 or code in (408, 425, 429):
            return _Transient(f"HTTP {code} {exc.reason} at {url}")
        return _Fatal(f"HTTP {code} {exc.reason} at {url}")
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, FileNotFoundError) or getattr(reason, "errno", None) == errno.ENOENT:
            return _NotFound(f"not found: {url}")
        return _Transient(f"cannot reach {url}: {reason}")
    if isinstance(exc, (OSError, http.client.HTTPException)):
        return _Transient(f"connection to {url} failed: {exc!r}")
    return _Fatal(f"{url}: {exc!r}")


def _open(url: str, timeout: float, start: int = 0):
    headers = {"User-Agent": "panorooms3d-download"}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except Exception as exc:
        raise _classify(exc, url) from exc


def _backoff(attempt: int, base: float) -> None:
    time.sleep(min(base * 2**attempt, 10.0))


def _get_bytes(url: str, *, timeout: float, retries: int, backoff: float) -> bytes:
    """GET a small file whole, retrying transient failures ``retries`` times."""
    for attempt in range(retries + 1):
        try:
            with _open(url, timeout) as resp:
                return resp.read()
        except _Transient:
            if attempt == retries:
                raise
            _backoff(attempt, backoff)
        except (OSError, http.client.HTTPException) as exc:
            if attempt == retries:
                raise _classify(exc, url) from exc
            _backoff(attempt, backoff)
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------------------
# one file


class _Progress:
    """Thread-safe byte counter feeding an optional tqdm bar."""

    def __init__(self, bar):
        self.bar = bar
        self.lock = threading.Lock()
        self.fetched = 0  # bytes received over the network

    def add(self, n: int, fetched: bool = True) -> None:
        with self.lock:
            if fetched:
                self.fetched += n
            if self.bar is not None:
                self.bar.update(n)


def _part_path(final: Path) -> Path:
    return final.with_name(f".{final.name}{_PART}")


def _fetch_file(url: str, final: Path, size: int, sha256: str, *, timeout: float, retries: int, backoff: float,
                progress: _Progress) -> None:
    """Download ``url`` to ``final`` through a hidden ``.part`` file, resuming it with Range requests.

    The size (bytes) is checked as the bytes stream and the sha256 when the last byte arrives; only
    then is the part renamed to ``final``. A file already at ``final`` with the right sha256 is kept.
    Raises _NotFound, _Fatal (sha256/size mismatch, other 4xx) or _Transient (retries exhausted).
    """
    if final.is_file():
        h = hashlib.sha256()
        with open(final, "rb") as f:
            while block := f.read(_BLOCK):
                h.update(block)
        if final.stat().st_size == size and h.hexdigest() == sha256:
            progress.add(size, fetched=False)
            return
        final.unlink()
    final.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(final)
    failures = 0  # attempts in a row that failed without receiving a byte
    rounds = 0
    restarted_after_mismatch = False
    while True:
        rounds += 1
        # what is already there (an earlier run or a dropped connection): hash it to continue
        have = part.stat().st_size if part.is_file() else 0
        if have > size:
            part.unlink()
            have = 0
        h = hashlib.sha256()
        if have:
            with open(part, "rb") as f:
                while block := f.read(_BLOCK):
                    h.update(block)
        progress.add(have, fetched=False)
        got = 0
        try:
            if have == size:
                pass  # complete but never renamed: just check it
            else:
                with _open(url, timeout, start=have) as resp:
                    status = getattr(resp, "status", None)
                    mode = "ab"
                    if have and status != 206:  # the server ignored the Range: start again
                        progress.add(-have, fetched=False)
                        have = 0
                        h = hashlib.sha256()
                        mode = "wb"
                    elif have:
                        m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
                        if m and int(m.group(1)) != have:
                            raise _Fatal(f"the server answered a Range from byte {have} with "
                                         f"{resp.headers.get('Content-Range')} at {url}")
                    with open(part, mode) as out:
                        while block := resp.read(_BLOCK):
                            if have + got + len(block) > size:
                                raise _Fatal(f"size mismatch: more than the index's {size} bytes at {url}")
                            out.write(block)
                            h.update(block)
                            got += len(block)
                            progress.add(len(block))
                if have + got < size:
                    raise _Transient(f"connection dropped after {have + got} of {size} bytes at {url}")
        except (_Transient, OSError, http.client.HTTPException) as exc:
            err = exc if isinstance(exc, _Transient) else _classify(exc, url)
            progress.add(-(have + got), fetched=False)
            if not isinstance(err, _Transient):
                raise err from exc
            if got > 0 and rounds < _MAX_PROGRESS_ROUNDS:
                failures = 0  # progress was made: resume at once with a Range request
                continue
            failures += 1
            if failures > retries:
                raise err from exc
            _backoff(failures - 1, backoff)
            continue
        except BaseException:
            progress.add(-(have + got), fetched=False)
            raise
        if h.hexdigest() != sha256:
            progress.add(-size, fetched=False)
            part.unlink(missing_ok=True)
            if have and not restarted_after_mismatch:  # the kept prefix may be stale: fetch it whole once
                restarted_after_mismatch = True
                continue
            raise _Fatal(f"sha256 mismatch: got {h.hexdigest()}, the index says {sha256} ({url})")
        os.replace(part, final)
        return


# ----------------------------------------------------------------------------------------------
# the dataset


def _check_rel(rel: str, what: str) -> str:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") or not _SAFE_PART.match(p) for p in parts):
        raise DownloadError(f"the index lists an unsafe {what} path {rel!r}; refusing to download it")
    return rel


def fetch_index(url: str, *, timeout: float = 30, retries: int = 3, backoff: float = 0.5) -> dict:
    """GET and check ``<url>/index.json`` of a published site. Raises DownloadError naming the URL."""
    base = site_url(url)
    where = _join(base, INDEX)
    try:
        data = _get_bytes(where, timeout=timeout, retries=retries, backoff=backoff)
    except _NotFound:
        raise DownloadError(f"no {INDEX} at {where}: is {base} a site made by `panorooms3d publish`?") from None
    except (_Transient, _Fatal) as exc:
        raise DownloadError(f"cannot fetch {where}: {exc}; check the URL and that the server is up, "
                            "then re-run") from None
    try:
        index = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DownloadError(f"{where} is not JSON ({exc}); is {base} a site made by `panorooms3d publish`?") from None
    if not isinstance(index, dict) or index.get("format") != SITE_FORMAT or "shards" not in index:
        raise DownloadError(f"{where} is not a {SITE_FORMAT} index")
    if index.get("format_version", 0) > SITE_FORMAT_VERSION:
        raise DownloadError(f"{where} has format_version {index['format_version']}; this tool reads "
                            f"<= {SITE_FORMAT_VERSION}: upgrade panorooms3d")
    for shard in index["shards"]:
        if not _check_rel(shard["file"], "shard").startswith("shards/") or shard["file"].count("/") != 1:
            raise DownloadError(f"{where}: shard {shard['file']!r} is not under shards/")
        for f in shard["files"]:
            _check_rel(f["path"], "file")
    return index


def select_shards(index: dict, splits=None, rooms=None) -> list[dict]:
    """The index's shards holding the wanted rooms, in index order.

    Args:
        index: a site index (:func:`fetch_index`).
        splits: split names (``train``, ``val``, ``test``) whose rooms are wanted, or None.
        rooms: room uids (``HOUSE/ROOM``) wanted, or None. With both, the union is wanted; with
            neither, every shard.

    Raises DownloadError naming an unknown split or room.
    """
    if splits is None and rooms is None:
        return list(index["shards"])
    entries = index["manifest"]["rooms"]
    wanted: set[str] = set()
    for name in splits or ():
        if name not in SPLITS:
            raise DownloadError(f"unknown split {name!r}; splits are {', '.join(SPLITS)}")
        wanted.update(r["uid"] for r in entries if r["split"] == name)
    known = {r["uid"] for r in entries}
    unknown = [u for u in rooms or () if u not in known]
    if unknown:
        raise DownloadError(f"rooms not in the published dataset: {', '.join(unknown[:10])} "
                            f"({len(known)} rooms are, e.g. {', '.join(sorted(known)[:3])})")
    wanted.update(rooms or ())
    return [s for s in index["shards"] if wanted.intersection(s["rooms"])]


def _partial_dir(out_dir: Path, shard: dict) -> Path:
    name = Path(shard["file"]).name
    return out_dir / "shards" / f".{name}.{shard['sha256'][:16]}{_PARTIAL}"


def _previous_manifest(out_dir: Path) -> dict | None:
    try:
        return read_manifest(out_dir)
    except DatasetError:
        return None


def _is_complete(out_dir: Path, shard: dict, previous: dict | None) -> bool:
    """Whether OUT already holds this shard: listed with the same sha256, or hashing to it."""
    path = out_dir / shard["file"]
    if not path.is_dir():
        return False
    for s in (previous or {}).get("shards", []):
        if s["file"] == shard["file"] and s["sha256"] == shard["sha256"] and s["size_bytes"] == shard["size_bytes"]:
            return True
    sha, size, _ = hash_shard(path)
    return sha == shard["sha256"] and size == shard["size_bytes"]


def _finish_shard(out_dir: Path, shard: dict) -> None:
    """Check the partial folder against the manifest's shard sha256 and rename it into place."""
    partial = _partial_dir(out_dir, shard)
    partial.mkdir(parents=True, exist_ok=True)
    expected = {f["path"] for f in shard["files"]}
    for rel, p in _iter_all(partial):
        if rel not in expected:  # left by something else: not part of the shard
            p.unlink()
    sha, size, _ = hash_shard(partial)
    if sha != shard["sha256"] or size != shard["size_bytes"]:
        shutil.rmtree(partial, ignore_errors=True)
        raise _Fatal(f"shard sha256 mismatch after download: got {sha} ({size} bytes), the manifest says "
                     f"{shard['sha256']} ({shard['size_bytes']} bytes); the site's index and manifest disagree")
    final = out_dir / shard["file"]
    with atomic_path(final) as tmp:
        os.replace(partial, tmp)


def _iter_all(folder: Path) -> list[tuple[str, Path]]:
    out = []
    for dirpath, _, names in os.walk(folder):
        for n in names:
            p = Path(dirpath) / n
            out.append((p.relative_to(folder).as_posix(), p))
    return out


def _write_listing(out_dir: Path, index: dict, url: str, listed: list[dict]) -> tuple[list[str], int]:
    """Write splits/*.txt then manifest.json (atomically) for the shards in ``listed``."""
    manifest = dict(index["manifest"])
    files = {s["file"] for s in listed}
    all_rooms = manifest["rooms"]
    rooms = [r for r in all_rooms if r["shard"] in files]
    manifest["shards"] = [s for s in manifest["shards"] if s["file"] in files]
    manifest["rooms"] = rooms
    manifest["download"] = {"source": url, "shards": len(manifest["shards"]), "shards_published": len(index["shards"]),
                            "rooms": len(rooms), "rooms_published": len(all_rooms)}
    for name in SPLITS:
        text = "".join(f"{r['uid']}\n" for r in rooms if r["split"] == name)
        with atomic_path(out_dir / "splits" / f"{name}.txt") as tmp:
            tmp.write_text(text)
    with atomic_path(out_dir / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    return [s["file"] for s in manifest["shards"]], len(rooms)


def download_dataset(url: str, out_dir: Path, *, splits=None, rooms=None, workers: int = 4, retries: int = 3,
                     timeout: float = 30, progress: bool = True, backoff: float = 0.5) -> DownloadReport:
    """Download a published dataset (or the shards holding some rooms) into ``out_dir``.

    Args:
        url: the site (``http(s)://host/path``, ``file://...`` or a local folder), as written by
            :func:`panorooms3d.store.publish.publish_dataset`; ``.../index.json`` works too.
        out_dir: the dataset folder to fill (created). Complete shards already there are skipped.
        splits: split names whose rooms are wanted (``["train", ...]``), or None.
        rooms: room uids (``HOUSE/ROOM``) wanted, or None. The union of ``splits`` and ``rooms`` is
            wanted; with neither, everything. Whole shards are downloaded.
        workers: parallel HTTP GETs (threads), >= 1.
        retries: retries of a request that failed transiently (connection error, timeout, 5xx)
            before the file fails; a dropped connection that delivered bytes resumes at once with a
            Range request and does not use up a retry.
        timeout: seconds without an answer or a byte before a request fails (transiently).
        progress: show a tqdm bar in bytes.
        backoff: seconds before the first retry; doubled each time (at most 10 s).

    Returns a DownloadReport. ``manifest.json`` and ``splits/*.txt`` are written last and list only
    the shards present in ``out_dir`` (rooms of shards not downloaded are not listed), so
    ``Dataset(out_dir)`` works on the subset.

    Raises DownloadError naming the URL (no index, unknown split/room), or, after writing the
    manifest of what is complete, naming each failed shard and file (404, sha256 mismatch, retries
    exhausted); ``exc.report`` then holds the report.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    start_time = time.monotonic()
    base = site_url(url)
    out_dir = Path(out_dir)
    index = fetch_index(base, timeout=timeout, retries=retries, backoff=backoff)
    wanted = select_shards(index, splits, rooms)
    if not wanted:
        raise DownloadError(f"no published room is in split(s) {', '.join(splits or ())} at {base}: nothing to download")
    report = DownloadReport(url=base, out_dir=out_dir)
    (out_dir / "shards").mkdir(parents=True, exist_ok=True)
    for folder in (out_dir, out_dir / "shards", out_dir / "splits"):
        clean_stale_temporaries(folder)  # of killed atomic writes; partial downloads are kept
    previous = _previous_manifest(out_dir)
    todo = []
    for shard in wanted:
        if _is_complete(out_dir, shard, previous):
            report.shards_skipped.append(shard["file"])
        else:
            todo.append(shard)
    keep = {_partial_dir(out_dir, s).name for s in todo}
    for p in (out_dir / "shards").iterdir():  # partial downloads of other versions of these shards
        if p.name.endswith(_PARTIAL) and p.name not in keep and any(
                p.name.startswith(f".{Path(s['file']).name}.") for s in todo):
            shutil.rmtree(p, ignore_errors=True)

    total = sum(f["size"] for s in todo for f in s["files"])
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="download", dynamic_ncols=True)
    counter = _Progress(bar)
    failed: dict[str, str] = {}
    lock = threading.Lock()

    def fetch(shard: dict, f: dict) -> None:
        with lock:
            if shard["file"] in failed:
                return
        file_url = _join(base, *shard["file"].split("/"), *f["path"].split("/"))
        final = _partial_dir(out_dir, shard).joinpath(*f["path"].split("/"))
        _fetch_file(file_url, final, f["size"], f["sha256"], timeout=timeout, retries=retries, backoff=backoff,
                    progress=counter)

    pending = {s["file"]: len(s["files"]) for s in todo}
    by_file = {s["file"]: s for s in todo}
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="download")
    try:
        futures = {pool.submit(fetch, s, f): (s["file"], f["path"]) for s in todo for f in s["files"]}
        for shard in [s for s in todo if not s["files"]]:
            futures[pool.submit(lambda: None)] = (shard["file"], None)
            pending[shard["file"]] = 1
        for fut in as_completed(futures):
            rel, path = futures[fut]
            try:
                fut.result()
            except (_NotFound, _Fatal, _Transient) as exc:
                with lock:
                    failed.setdefault(rel, f"shard {rel}: file {path}: {exc}")
            except OSError as exc:
                with lock:
                    failed.setdefault(rel, f"shard {rel}: file {path}: cannot write: {exc}")
            pending[rel] -= 1
            if pending[rel] == 0 and rel not in failed:
                try:
                    _finish_shard(out_dir, by_file[rel])
                    report.shards_downloaded.append(rel)
                except (_Fatal, OSError, DatasetError) as exc:
                    failed[rel] = f"shard {rel}: {exc}"
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        if bar is not None:
            bar.close()
    report.failures = {rel: failed[rel] for rel in (s["file"] for s in todo) if rel in failed}
    report.bytes_downloaded = counter.fetched

    # the listing: every published shard that is now complete in OUT (this run or an earlier one)
    done = set(report.shards_downloaded) | set(report.shards_skipped)
    listed = []
    for shard in index["shards"]:
        if shard["file"] in done:
            listed.append(shard)
        elif shard["file"] not in report.failures and (out_dir / shard["file"]).is_dir() and any(
                s["file"] == shard["file"] and s["sha256"] == shard["sha256"] for s in (previous or {}).get("shards", [])):
            listed.append(shard)
    if listed or previous is not None:
        report.shards_listed, report.rooms_listed = _write_listing(out_dir, index, base, listed)
    report.seconds = time.monotonic() - start_time
    if report.failures:
        lines = "\n  ".join(report.failures.values())
        raise DownloadError(f"download from {base} failed for {len(report.failures)} shard(s):\n  {lines}\n"
                            "complete files are kept: re-run the same command to resume", report)
    return report
