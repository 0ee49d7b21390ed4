"""The HTTP server on a usernet host, with http.client (and raw sockets) over the same host's loopback."""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import usernet
import usernet.http
from usernet.apps.http import load_wsgi_app, parse_spec, serve_directory
from usernet.links import Switch

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def host() -> Iterator[usernet.Host]:
    with usernet.Host(Switch().port(), addr="10.0.0.2/24", seed=7) as h:
        yield h


def client(host: usernet.Host, port: int) -> http.client.HTTPConnection:
    class C(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = host.create_connection((self.host, self.port), timeout=10)

    return C("127.0.0.1", port, timeout=10)


def fetch(host: usernet.Host, port: int, method: str, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    conn = client(host, port)
    try:
        conn.request(method, path, **kw)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def raw(host: usernet.Host, port: int, data: bytes, wait: float = 10.0) -> bytes:
    """Send ``data``, read until the server closes."""
    sock = host.create_connection(("127.0.0.1", port), timeout=wait)
    try:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out
    finally:
        sock.close()


# ==================================================================== static files

@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("secret")
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "a.txt").write_bytes(b"0123456789" * 100)
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_text("sub home")
    (root / "big.bin").write_bytes(os.urandom(300_000))
    (root / "out").symlink_to(outside / "secret.txt")
    (root / "outdir").symlink_to(outside)
    return root


@pytest.fixture(scope="module")
def static(host: usernet.Host, site: Path) -> Iterator[int]:
    with serve_directory(host, str(site), 8080):
        yield 8080


def test_get_and_head(host: usernet.Host, static: int, site: Path) -> None:
    status, headers, body = fetch(host, static, "GET", "/a.txt")
    assert status == 200 and body == (site / "a.txt").read_bytes()
    assert headers["Content-Type"].startswith("text/plain") and headers["Content-Length"] == "1000"
    assert "ETag" in headers and "Last-Modified" in headers
    status, head_headers, body = fetch(host, static, "HEAD", "/a.txt")
    assert status == 200 and body == b"" and head_headers["Content-Length"] == "1000"
    assert head_headers["ETag"] == headers["ETag"]


def test_index_and_directory_redirect(host: usernet.Host, static: int) -> None:
    assert fetch(host, static, "GET", "/")[2] == b"<h1>home</h1>"
    assert fetch(host, static, "GET", "/sub/")[2] == b"sub home"
    status, headers, _ = fetch(host, static, "GET", "/sub")
    assert status == 301 and headers["Location"] == "/sub/"


def test_big_file_and_ranges(host: usernet.Host, static: int, site: Path) -> None:
    data = (site / "big.bin").read_bytes()
    assert fetch(host, static, "GET", "/big.bin")[2] == data
    status, headers, body = fetch(host, static, "GET", "/big.bin", headers={"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200] and headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert fetch(host, static, "GET", "/big.bin", headers={"Range": "bytes=-10"})[2] == data[-10:]
    assert fetch(host, static, "GET", "/big.bin", headers={"Range": "bytes=299990-"})[2] == data[299990:]
    status, headers, _ = fetch(host, static, "GET", "/big.bin", headers={"Range": "bytes=400000-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"
    status, _, body = fetch(host, static, "GET", "/big.bin", headers={"Range": "bytes=1-2,5-6"})
    assert status == 200 and body == data  # several ranges: the whole file (multipart is optional)


def test_conditional_requests(host: usernet.Host, static: int) -> None:
    _, headers, _ = fetch(host, static, "GET", "/a.txt")
    status, _, body = fetch(host, static, "GET", "/a.txt", headers={"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""
    assert fetch(host, static, "GET", "/a.txt", headers={"If-None-Match": '"other"'})[0] == 200
    status, _, _ = fetch(host, static, "GET", "/a.txt", headers={"If-Modified-Since": headers["Last-Modified"]})
    assert status == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert fetch(host, static, "GET", "/a.txt", headers={"If-Modified-Since": old})[0] == 200


@pytest.mark.parametrize("path", [
    "/../outside/secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt",
    "/sub/%2e%2e%2f%2e%2e%2fsecret.txt", "/..%5csecret.txt", "/out", "/outdir/secret.txt", "/nope",
    "//etc/passwd", "/%00",
])
def test_no_path_escapes(host: usernet.Host, static: int, path: str) -> None:
    status, _, body = fetch(host, static, "GET", path)
    assert status == 404 and b"secret" not in body and b"root:" not in body


def test_absolute_path_is_under_the_root(host: usernet.Host, static: int, site: Path) -> None:
    status, _, _ = fetch(host, static, "GET", str(site / "a.txt"))
    assert status == 404  # /tmp/.../a.txt is looked for under the root, not on the host's filesystem


def test_methods(host: usernet.Host, static: int) -> None:
    status, headers, _ = fetch(host, static, "POST", "/a.txt", body=b"x")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert fetch(host, static, "BREW", "/a.txt")[0] == 501


def test_keep_alive_and_pipelining(host: usernet.Host, static: int, site: Path) -> None:
    conn = client(host, static)
    for _ in range(3):
        conn.request("GET", "/a.txt")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == (site / "a.txt").read_bytes()
    conn.close()
    pipelined = b"".join(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % name for name in (b"a.txt", b"nope"))
    out = raw(host, static, pipelined + b"GET /sub/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 ") == 3
    first, second, third = out.index(b"HTTP/1.1 200"), out.index(b"HTTP/1.1 404"), out.rindex(b"HTTP/1.1 200")
    assert first < second < third and out.endswith(b"sub home")


def test_smuggling_gets_400_and_close(host: usernet.Host, static: int) -> None:
    out = raw(host, static, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"0\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in out and out.count(b"HTTP/1.1") == 1


def test_limits_answer_with_their_status(host: usernet.Host, static: int) -> None:
    assert raw(host, static, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n").startswith(b"HTTP/1.1 414 ")
    big = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"b" * 40000 + b"\r\n\r\n"
    assert raw(host, static, big).startswith(b"HTTP/1.1 431 ")


# ==================================================================== timeouts and the connection limit

def test_slowloris_closed_at_header_timeout_while_others_are_served(host: usernet.Host, site: Path) -> None:
    with serve_directory(host, str(site), 8090, header_timeout=1.5, idle_timeout=5.0):
        sock = host.create_connection(("127.0.0.1", 8090), timeout=10)
        start = time.monotonic()
        answer = b""
        try:
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                sock.sendall(bytes([byte]))
                if time.monotonic() - start < 0.6:
                    assert fetch(host, 8090, "GET", "/a.txt")[0] == 200
                time.sleep(0.1)
                if time.monotonic() - start > 4:
                    break
        except OSError:
            pass
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except OSError:
            pass
        elapsed = time.monotonic() - start
        sock.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert 1.3 < elapsed < 4


def test_idle_connection_closed_quietly(host: usernet.Host, site: Path) -> None:
    with serve_directory(host, str(site), 8091, idle_timeout=0.5):
        sock = host.create_connection(("127.0.0.1", 8091), timeout=5)
        start = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - start < 3
        sock.close()


def test_connection_limit(host: usernet.Host, site: Path) -> None:
    with serve_directory(host, str(site), 8092, max_connections=2) as server:
        held = [host.create_connection(("127.0.0.1", 8092), timeout=5) for _ in range(2)]
        deadline = time.monotonic() + 5
        while server.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert raw(host, 8092, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 503 ")
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 5
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fetch(host, 8092, "GET", "/a.txt")[0] == 200
        assert server.counters["http.connections_refused"] == 1


# ==================================================================== WSGI

class Closing:
    closed = 0

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.parts)

    def close(self) -> None:
        Closing.closed += 1


def app(environ: dict[str, Any], start_response: Any) -> Any:
    path = environ["PATH_INFO"]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Closing([b"sha256=" + hashlib.sha256(body).hexdigest().encode(), b" len=%d" % len(body)])
    if path == "/environ":
        keys = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL", "CONTENT_TYPE",
                "CONTENT_LENGTH", "HTTP_X_TEST", "HTTP_HOST", "SERVER_PORT", "REMOTE_ADDR")
        text = "\n".join(f"{k}={environ.get(k)}" for k in keys)
        text += f"\nversion={environ['wsgi.version']} scheme={environ['wsgi.url_scheme']}"
        text += f" multithread={environ['wsgi.multithread']} underscore={environ.get('HTTP_X_UNDER')}"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
        return [text.encode()]
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/late-boom":
        start_response("200 OK", [])

        def gen() -> Iterator[bytes]:
            yield b"part"
            raise RuntimeError("late")
        return gen()
    if path == "/exc-info":
        try:
            raise ValueError("x")
        except ValueError:
            start_response("200 OK", [])
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"from write, ")
        return iter([b"then ", b"iterable"])
    if path == "/lines":
        lines = environ["wsgi.input"].readlines()
        start_response("200 OK", [])
        return [b"%d" % len(lines)]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no"]


@pytest.fixture(scope="module")
def wsgi(host: usernet.Host) -> Iterator[int]:
    with usernet.http.serve(host, app, 8081):
        yield 8081


def test_environ(host: usernet.Host, wsgi: int) -> None:
    status, _, body = fetch(host, wsgi, "POST", "/environ?a=1&b=%20", body=b"abc",
                            headers={"X-Test": "yes", "X_Under": "no", "Content-Type": "text/x"})
    text = body.decode()
    assert status == 200
    for line in ("REQUEST_METHOD=POST", "SCRIPT_NAME=", "PATH_INFO=/environ", "QUERY_STRING=a=1&b=%20",
                 "SERVER_PROTOCOL=HTTP/1.1", "CONTENT_TYPE=text/x", "CONTENT_LENGTH=3", "HTTP_X_TEST=yes",
                 "HTTP_HOST=127.0.0.1:8081", "SERVER_PORT=8081", "REMOTE_ADDR=127.0.0.1"):
        assert line in text.splitlines(), text
    assert "version=(1, 0) scheme=http multithread=True underscore=None" in text


def test_post_echo_100k_and_iterable_closed(host: usernet.Host, wsgi: int) -> None:
    body = os.urandom(100_000)
    before = Closing.closed
    status, headers, answer = fetch(host, wsgi, "POST", "/echo", body=body)
    assert status == 200 and headers["Transfer-Encoding"] == "chunked"
    assert answer == b"sha256=" + hashlib.sha256(body).hexdigest().encode() + b" len=100000"
    assert Closing.closed == before + 1


def test_chunked_request_body_and_100_continue(host: usernet.Host, wsgi: int) -> None:
    body = os.urandom(50_000)
    conn = client(host, wsgi)
    conn.request("POST", "/echo", body=iter([body[:20000], body[20000:]]), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    assert conn.getresponse().read() == b"sha256=" + hashlib.sha256(body).hexdigest().encode() + b" len=50000"
    conn.close()
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    sock = host.create_connection(("127.0.0.1", wsgi), timeout=10)
    sock.sendall(head)
    got = b""
    while b"\r\n\r\n" not in got:
        got += sock.recv(100)
    assert got == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"hello")
    got = b""
    while not got.endswith(b"0\r\n\r\n"):
        got += sock.recv(4096)
    assert got.startswith(b"HTTP/1.1 200 ") and hashlib.sha256(b"hello").hexdigest().encode() in got
    sock.close()
    assert fetch(host, wsgi, "POST", "/lines", body=b"a\nb\nc")[2] == b"3"


def test_app_errors_give_500_and_the_server_goes_on(host: usernet.Host, wsgi: int) -> None:
    assert fetch(host, wsgi, "GET", "/boom")[0] == 500
    status, _, body = fetch(host, wsgi, "GET", "/exc-info")
    assert status == 503 and body == b"sorry"
    out = raw(host, wsgi, b"GET /late-boom HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and not out.endswith(b"0\r\n\r\n")  # cut short: closed
    assert fetch(host, wsgi, "GET", "/environ")[0] == 200


def test_write_and_http10_close(host: usernet.Host, wsgi: int) -> None:
    assert fetch(host, wsgi, "GET", "/write")[2] == b"from write, then iterable"
    out = raw(host, wsgi, b"GET /write HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and b"Transfer-Encoding" not in out and b"Connection: close" in out
    assert out.endswith(b"\r\n\r\nfrom write, then iterable")
    status, _, body = fetch(host, wsgi, "HEAD", "/write")
    assert status == 200 and body == b""


def test_concurrent_clients(host: usernet.Host, wsgi: int) -> None:
    results: list[int] = []

    def one() -> None:
        for _ in range(5):
            results.append(fetch(host, wsgi, "GET", "/environ")[0])

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * 30


# ==================================================================== specs and loading

def test_specs_and_module_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # (target..., cert, key): no TLS without cert= and key=
    assert parse_spec(f"http:80:{tmp_path}") == ("http", 80, (str(tmp_path), "", ""))
    assert parse_spec("wsgi:8000:mod:app") == ("wsgi", 8000, ("mod", "app", "", ""))
    for bad in ("http:0:/", "http:80", f"http:80:{tmp_path}/missing", "wsgi:80:mod", "wsgi:x:mod:app"):
        with pytest.raises(ValueError):
            parse_spec(bad)
    (tmp_path / "my_wsgi_mod.py").write_text("def application(e, s):\n    s('200 OK', [])\n    return [b'hi']\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert load_wsgi_app("my_wsgi_mod", "application").__name__ == "application"
