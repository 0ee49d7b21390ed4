"""The static-file cache: bounded, never stale across a change of the file, the same bytes as the
uncached path, one send per small response. Driven in-process through the server's connection loop."""

from __future__ import annotations

import collections
import os
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import usernet.apps.http as http_app
from tests.http.fakes import FeedSocket
from usernet.apps.http import _TARGET_CACHED_LEN, _TARGETS_MAX, CACHE_FILE_MAX, StaticFiles, _Connection
from usernet.proto.http import Limits


def serve(files: StaticFiles, *requests: bytes) -> FeedSocket:
    server = SimpleNamespace(limits=Limits(), idle_timeout=5.0, header_timeout=5.0, stopping=False,
                             counters=collections.Counter(), handler=files, tls=None)
    sock = FeedSocket(list(requests))
    _Connection(server, sock, ("10.0.0.9", 1)).run()  # type: ignore[arg-type]
    return sock


def get(path: str, *extra: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = "".join(f"{h}\r\n" for h in extra)
    return f"{method} {path} HTTP/{version}\r\nHost: h\r\n{lines}\r\n".encode()


def fetch(files: StaticFiles, path: str, *extra: str) -> tuple[int, bytes]:
    out = b"".join(serve(files, get(path, *extra)).sent)
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture(autouse=True)
def _no_settling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bodies are cached at once here; test_a_file_just_written_is_not_cached_yet puts the delay back."""
    monkeypatch.setattr(http_app, "_SETTLE_NS", 0)


def settle(path: Path, age: float = 60.0, mtime: float | None = None) -> None:
    """Set the file's modification time (the change time moves to now regardless)."""
    when = time.time() - age if mtime is None else mtime
    os.utime(path, (when, when))


def write_settled(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    settle(path)


def test_cache_is_bounded_by_entries(tmp_path: Path) -> None:
    for i in range(10):
        write_settled(tmp_path / f"f{i}.txt", b"%d" % i * 100)
    files = StaticFiles(str(tmp_path), cache_entries=3)
    for i in range(10):
        assert fetch(files, f"/f{i}.txt") == (200, b"%d" % i * 100)
        assert files.cached_files <= 3
    assert files.cached_files == 3
    # The least recently used goes first: f7, used again, outlives f8 when g arrives.
    assert fetch(files, "/f7.txt")[0] == 200
    write_settled(tmp_path / "g.txt", b"g")
    assert fetch(files, "/g.txt") == (200, b"g")
    assert set(files._cache) == {str(tmp_path / n) for n in ("f9.txt", "f7.txt", "g.txt")}
    for i in range(10):  # evicted files are read again, correctly
        assert fetch(files, f"/f{i}.txt") == (200, b"%d" % i * 100)


def test_cache_is_bounded_by_bytes(tmp_path: Path) -> None:
    for i in range(6):
        write_settled(tmp_path / f"f{i}.bin", bytes([i]) * 1000)
    files = StaticFiles(str(tmp_path), cache_bytes=2500)
    for _ in range(2):
        for i in range(6):
            assert fetch(files, f"/f{i}.bin") == (200, bytes([i]) * 1000)
            assert files.cached_bytes <= 2500
            assert files.cached_bytes == sum(len(e.body or b"") for e in files._cache.values())
    assert files.cached_bytes == 2000


def test_large_files_are_streamed_not_cached(tmp_path: Path) -> None:
    data = os.urandom(CACHE_FILE_MAX * 3 + 17)
    write_settled(tmp_path / "big.bin", data)
    files = StaticFiles(str(tmp_path))
    for _ in range(2):
        assert fetch(files, "/big.bin") == (200, data)
        assert fetch(files, "/big.bin", "Range: bytes=70000-70099") == (206, data[70000:70100])
    assert files.cached_bytes == 0  # its metadata only


def test_a_changed_file_is_served_fresh(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    write_settled(target, b"one")
    files = StaticFiles(str(tmp_path))
    assert fetch(files, "/a.txt") == (200, b"one")
    assert files.cached_bytes == 3
    # Same size, the modification time put back as it was: the change time still moves.
    before = target.stat().st_mtime
    write_settled(target, b"two")
    settle(target, mtime=before)
    assert fetch(files, "/a.txt") == (200, b"two")
    # Replaced by another file (another inode) of another size.
    (tmp_path / "new").write_bytes(b"three!")
    settle(tmp_path / "new")
    os.replace(tmp_path / "new", target)
    assert fetch(files, "/a.txt") == (200, b"three!")
    target.unlink()
    assert fetch(files, "/a.txt")[0] == 404


def test_a_file_just_written_is_not_cached_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A coarse file system clock could hide a second write within the same tick: a file changed (its
    ctime) within the settling time is read per request."""
    monkeypatch.setattr(http_app, "_SETTLE_NS", 3600 * 10**9)
    write_settled(tmp_path / "hot.txt", b"hot")  # an old mtime does not count: utime moved the ctime
    files = StaticFiles(str(tmp_path))
    for _ in range(2):
        assert fetch(files, "/hot.txt") == (200, b"hot")
        assert files.cached_bytes == 0 and files.cached_files == 1  # its metadata only
    (tmp_path / "hot.txt").write_bytes(b"HOT")
    assert fetch(files, "/hot.txt") == (200, b"HOT")
    monkeypatch.setattr(http_app, "_SETTLE_NS", 0)  # as if the hour had passed
    assert fetch(files, "/hot.txt") == (200, b"HOT")
    assert files.cached_bytes == 3


def test_a_cached_file_swapped_for_a_symlink_out_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    write_settled(outside / "secret.txt", b"secret")
    write_settled(root / "a.txt", b"public")
    (root / "sub").mkdir()
    write_settled(root / "sub" / "b.txt", b"bee")
    files = StaticFiles(str(root))
    assert fetch(files, "/a.txt") == (200, b"public")
    assert fetch(files, "/sub/b.txt") == (200, b"bee")
    (root / "a.txt").unlink()
    (root / "a.txt").symlink_to(outside / "secret.txt")
    status, body = fetch(files, "/a.txt")
    assert status == 404 and b"secret" not in body
    # A directory on the way swapped for a symlink out.
    os.rename(root / "sub", tmp_path / "old-sub")
    (root / "sub").symlink_to(outside)
    write_settled(outside / "b.txt", b"outside bee")
    status, body = fetch(files, "/sub/b.txt")
    assert status == 404 and b"outside" not in body


def test_symlinks_inside_the_root_are_followed(tmp_path: Path) -> None:
    write_settled(tmp_path / "real.txt", b"real")
    (tmp_path / "dir").mkdir()
    write_settled(tmp_path / "dir" / "index.html", b"<p>dir</p>")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    (tmp_path / "linkdir").symlink_to(tmp_path / "dir")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "index.html").symlink_to(tmp_path / "real.txt")
    files = StaticFiles(str(tmp_path))
    for _ in range(2):
        assert fetch(files, "/link.txt") == (200, b"real")
        assert fetch(files, "/linkdir/index.html") == (200, b"<p>dir</p>")
        assert fetch(files, "/linkdir/") == (200, b"<p>dir</p>")
        assert fetch(files, "/linkdir")[0] == 301
        assert fetch(files, "/other/") == (200, b"real")


def test_conditional_and_range_requests_on_a_cached_file(tmp_path: Path) -> None:
    write_settled(tmp_path / "a.txt", b"0123456789")
    files = StaticFiles(str(tmp_path))
    out = b"".join(serve(files, get("/a.txt")).sent)
    etag = re.search(rb"ETag: (.*)\r\n", out)[1].decode()  # type: ignore[index]
    modified = re.search(rb"Last-Modified: (.*)\r\n", out)[1].decode()  # type: ignore[index]
    assert files.cached_bytes == 10
    assert fetch(files, "/a.txt", f"If-None-Match: {etag}") == (304, b"")
    assert fetch(files, "/a.txt", f"If-Modified-Since: {modified}") == (304, b"")
    assert fetch(files, "/a.txt", "Range: bytes=2-4") == (206, b"234")
    assert fetch(files, "/a.txt", "Range: bytes=-3") == (206, b"789")
    assert fetch(files, "/a.txt", "Range: bytes=20-")[0] == 416
    assert fetch(files, "/a.txt", "Range: bytes=2-4", 'If-Range: "stale"') == (200, b"0123456789")
    assert fetch(files, "/a.txt", "Range: bytes=2-4", f"If-Range: {etag}") == (206, b"234")


def _without_date(data: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]*\r\n", b"", data)


@pytest.mark.parametrize("request_bytes", [
    get("/a.txt"), get("/a.txt", method="HEAD"), get("/a.txt", "Connection: close"),
    get("/a.txt", "Connection: keep-alive", version="1.0"), get("/a.txt", version="1.0"),
    get("/sub/"), get("/a.txt?x=1"),
], ids=["get", "head", "close", "1.0-keep-alive", "1.0", "index", "query"])
def test_cached_responses_are_the_uncached_bytes(tmp_path: Path, request_bytes: bytes) -> None:
    """The prepared head carries the same fields in the same order as send_head would write."""
    write_settled(tmp_path / "a.txt", b"hello")
    (tmp_path / "sub").mkdir()
    write_settled(tmp_path / "sub" / "index.html", b"<p>index</p>")
    cached = StaticFiles(str(tmp_path))
    uncached = StaticFiles(str(tmp_path), cache_entries=0)
    serve(cached, request_bytes)  # fill the cache
    assert cached.cached_files == 1 and uncached.cached_files == 0
    hit = serve(cached, request_bytes).sent
    miss = serve(uncached, request_bytes).sent
    assert len(hit) == len(miss) == 1  # head and body in one send
    assert _without_date(hit[0]) == _without_date(miss[0])
    assert b"\r\nDate: " in hit[0] and b"\r\nServer: usernet\r\n" in hit[0]


def test_one_send_per_small_response_on_keep_alive(tmp_path: Path) -> None:
    write_settled(tmp_path / "one_k.bin", os.urandom(1024))
    files = StaticFiles(str(tmp_path))
    sock = serve(files, *[get("/one_k.bin")] * 50)
    assert len(sock.sent) == 50
    assert all(s.startswith(b"HTTP/1.1 200 OK\r\n") and len(s) > 1024 for s in sock.sent)


def test_target_parse_cache_is_bounded(tmp_path: Path) -> None:
    files = StaticFiles(str(tmp_path))
    for i in range(_TARGETS_MAX * 3):
        assert fetch(files, f"/nope{i}")[0] == 404
        assert len(files._targets) <= _TARGETS_MAX
    assert fetch(files, "/" + "x" * (_TARGET_CACHED_LEN + 1))[0] == 404
    assert all(len(t) <= _TARGET_CACHED_LEN for t in files._targets)
