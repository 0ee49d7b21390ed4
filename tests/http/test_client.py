"""usernet.http.get / Client and `usernet get` on the in-memory network: a usernet server host, a usernet
client host, WSGI apps and raw sockets as servers, HTTPS with a CA made in the test (tests/tls)."""

from __future__ import annotations

import hashlib
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import usernet
import usernet.cli
import usernet.http
from usernet.apps.http import server_context
from usernet.links import Switch
from usernet.proto.dns_client import parse_hosts

from ..tls.conftest import pki  # noqa: F401 - the session fixture: a test CA and server.test's certificate

pytestmark = pytest.mark.timeout(120)

A, B = "10.7.0.1", "10.7.0.2"  # B's certificate names server.test and 10.7.0.2
BIG = bytes(range(256)) * 1200  # 300 kB


def app(environ: dict[str, Any], start_response: Any) -> Any:
    path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
    body = environ["wsgi.input"].read()
    query = environ.get("QUERY_STRING", "")
    if path.startswith("/redirect/"):
        code = int(path.split("/")[2])
        start_response(f"{code} Moved", [("Location", "/echo?from=" + str(code)), ("Content-Length", "5")])
        return [b"moved"]
    if path == "/loop":
        start_response("302 Found", [("Location", "/loop")])
        return [b""]
    if path == "/chunked":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return iter([BIG[i:i + 10000] for i in range(0, len(BIG), 10000)])  # no length: chunked
    if path == "/missing":
        start_response("404 Not Found", [("Content-Length", "4")])
        return [b"nope"]
    text = f"{method} {path} {query} {environ.get('HTTP_X_TEST', '-')} {len(body)} ".encode() + body
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


@pytest.fixture(scope="module")
def switch() -> Switch:
    return Switch()


@pytest.fixture(scope="module")
def net(switch: Switch) -> Iterator[tuple[usernet.Host, usernet.Host, Any]]:
    hosts = parse_hosts(f"{B} server.test www.server.test\n")
    with usernet.Host(switch.port(), addr=f"{A}/24", seed=1, hosts=hosts) as a, \
            usernet.Host(switch.port(), addr=f"{B}/24", seed=2) as b:
        server = usernet.http.serve(b, app, 80)
        yield a, b, server
        server.close()


def test_get_head_post(net: Any) -> None:
    a, _, _ = net
    r = usernet.http.get(a, "http://server.test/echo?x=1", headers={"X-Test": "yes"})
    assert (r.status, r.reason, r.version) == (200, "OK", "HTTP/1.1")
    assert r.body == b"GET /echo x=1 yes 0 " and r.headers["content-type"] == "text/plain"
    assert r.headers.get("CONTENT-LENGTH") == str(len(r.body)) and "Content-Type" in r.headers
    assert r.url == "http://server.test/echo?x=1" and r.ok
    head = usernet.http.get(a, "http://server.test/echo", method="HEAD")
    assert head.status == 200 and head.body == b"" and int(head.headers["Content-Length"]) > 0
    posted = usernet.http.post(a, f"http://{B}/echo", b"payload")
    assert posted.body == b"POST /echo  - 7 payload"
    missing = usernet.http.get(a, "http://server.test/missing")
    assert missing.status == 404 and missing.body == b"nope" and not missing.ok


def test_keep_alive_one_connection_for_several_requests(net: Any) -> None:
    a, _, server = net
    before = server.counters["http.connections"]
    with usernet.http.Client(a) as client:
        bodies = [client.get(f"http://server.test/echo?n={i}").body for i in range(4)]
        assert client.post("http://server.test/echo", "x").body.endswith(b" 1 x")
        assert client.connections == 1
    assert bodies[3] == b"GET /echo n=3 - 0 "
    assert server.counters["http.connections"] - before == 1


def test_chunked_body_and_streaming(net: Any) -> None:
    a, _, _ = net
    r = usernet.http.get(a, "http://server.test/chunked")
    assert r.headers["transfer-encoding"] == "chunked" and r.body == BIG
    with usernet.http.get(a, "http://server.test/chunked", stream=True) as s:
        pieces = list(s.iter_content(4096))
    assert max(map(len, pieces)) <= 4096 and b"".join(pieces) == BIG
    s = usernet.http.get(a, "http://server.test/chunked", stream=True)
    assert s.read(10) == BIG[:10] and hashlib.sha256(s.read()).digest() == hashlib.sha256(BIG[10:]).digest()
    assert s.read() == b""


@pytest.mark.parametrize(("code", "method", "after"), [
    (301, "GET", "GET"), (302, "GET", "GET"), (303, "GET", "GET"), (307, "GET", "GET"), (308, "GET", "GET"),
    (301, "POST", "GET"), (302, "POST", "GET"), (303, "POST", "GET"), (307, "POST", "POST"),
    (308, "POST", "POST"), (303, "PUT", "GET"), (302, "PUT", "PUT"),
])
def test_redirects(net: Any, code: int, method: str, after: str) -> None:
    a, _, server = net
    before = server.counters["http.connections"]
    r = usernet.http.get(a, f"http://server.test/redirect/{code}", method=method, data=b"body")
    dropped = code == 303 or after != method  # a method rewritten to GET loses the body
    assert r.status == 200 and r.body == f"{after} /echo from={code} - ".encode() + (b"0 " if dropped else b"4 body")
    assert r.url == f"http://server.test/echo?from={code}" and [h.status for h in r.history] == [code]
    assert server.counters["http.connections"] - before == 1  # the redirect reused the connection


def test_redirect_to_another_origin_and_bounds(net: Any) -> None:
    a, b, _ = net

    def other(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("301 Moved", [("Location", "http://www.server.test/echo?cross")])
        return []

    with usernet.http.serve(b, other, 8081):
        r = usernet.http.get(a, f"http://{B}:8081/")
        assert r.url == "http://www.server.test/echo?cross" and r.body == b"GET /echo cross - 0 "
    with pytest.raises(usernet.http.TooManyRedirects) as info:
        usernet.http.get(a, "http://server.test/loop", max_redirects=3)
    assert info.value.errno is not None and "more than 3 redirects" in str(info.value)
    unfollowed = usernet.http.get(a, "http://server.test/redirect/302", max_redirects=0)
    assert unfollowed.status == 302 and unfollowed.headers["location"].startswith("/echo")


def _raw_server(host: usernet.Host, port: int, answer: bytes | None) -> threading.Thread:
    """Accept one connection, read the request head, send ``answer`` (None: nothing) and close."""
    listener = host.create_server(("", port))

    def run() -> None:
        sock, _ = listener.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        if answer is None:
            sock.settimeout(10)
            try:
                sock.recv(10)  # until the client gives up
            except OSError:
                pass
        else:
            sock.sendall(answer)
        sock.close()
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_truncated_body_is_an_error(net: Any) -> None:
    a, b, _ = net
    thread = _raw_server(b, 9001, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    with pytest.raises(usernet.http.IncompleteBody, match="after 10 of 100 body bytes"):
        usernet.http.get(a, f"http://{B}:9001/")
    thread.join(10)
    thread = _raw_server(b, 9002, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx")
    with pytest.raises(usernet.http.HttpProtocolError, match="differing Content-Length"):
        usernet.http.get(a, f"http://{B}:9002/")
    thread.join(10)


def test_timeout(net: Any) -> None:
    a, b, _ = net
    thread = _raw_server(b, 9003, None)
    with pytest.raises(TimeoutError):
        usernet.http.get(a, f"http://{B}:9003/", timeout=0.3)
    thread.join(15)


def test_unknown_name_and_bad_urls(net: Any) -> None:
    a, _, _ = net
    import socket

    with pytest.raises(socket.gaierror):
        usernet.http.get(a, "http://nowhere.invalid/")
    for url in ("ftp://server.test/", "http:///x", "http://user@server.test/"):
        with pytest.raises(ValueError):
            usernet.http.get(a, url)


# ==================================================================== HTTPS

@pytest.fixture(scope="module")
def https(net: Any, pki: Any) -> Iterator[int]:  # noqa: F811
    _, b, _ = net
    with usernet.http.serve(b, app, 8443, tls=server_context(str(pki.cert), str(pki.key))):
        yield 8443


def test_https_with_a_test_ca(net: Any, https: int, pki: Any) -> None:  # noqa: F811
    a, _, _ = net
    r = usernet.http.get(a, f"https://server.test:{https}/echo?tls", cafile=str(pki.ca))
    assert r.status == 200 and r.body == b"GET /echo tls - 0 "
    context = ssl.create_default_context(cafile=str(pki.ca))
    with usernet.http.Client(a, context=context) as client:
        for _ in range(3):
            assert client.get(f"https://{B}:{https}/redirect/307").status == 200  # IP in the SAN
        assert client.connections == 1


def test_https_untrusted_and_insecure(net: Any, https: int) -> None:
    a, _, _ = net
    with pytest.raises(ssl.SSLCertVerificationError):
        usernet.http.get(a, f"https://server.test:{https}/")  # the system store does not know the test CA
    assert usernet.http.get(a, f"https://server.test:{https}/echo", insecure=True).status == 200


def test_https_wrong_name(net: Any, https: int, pki: Any) -> None:  # noqa: F811
    a, _, _ = net
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch|match"):
        usernet.http.get(a, f"https://www.server.test:{https}/", cafile=str(pki.ca))


# ==================================================================== the CLI

@pytest.fixture
def cli(net: Any, switch: Switch, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """`usernet get` on a third host on the test's switch (its link is a switch port, not a device)."""
    monkeypatch.setattr(usernet.cli, "_open_link", lambda args: switch.port())
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{B} server.test\n")
    return hosts


_cli_addresses = iter(range(10, 250))


def _get(hosts: Path, *args: str) -> int:
    # A new address each run: the server's ARP cache still maps the last one to the last run's port.
    addr = f"10.7.0.{next(_cli_addresses)}/24"
    return usernet.cli.main(["get", "--addr", addr, "--hosts", str(hosts), "--timeout", "5", *args])


def test_cli_get(cli: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    out = tmp_path / "out"
    assert _get(cli, "-o", str(out), "http://server.test/chunked") == 0
    assert out.read_bytes() == BIG
    data = tmp_path / "data"
    data.write_bytes(b"from a file")
    assert _get(cli, "--data", f"@{data}", "-H", "X-Test: cli", "http://server.test/redirect/308") == 0
    assert capsysbinary.readouterr().out == b"POST /echo from=308 cli 11 from a file"
    assert _get(cli, "http://server.test/missing") == 22
    captured = capsysbinary.readouterr()
    assert captured.out == b"nope" and captured.err == b"usernet get: http://server.test/missing: HTTP 404 Not Found\n"
    assert _get(cli, "--max-redirects", "2", "http://server.test/loop") == 1
    assert b"more than 2 redirects" in capsysbinary.readouterr().err


def test_cli_https(cli: Path, https: int, pki: Any, capsysbinary: pytest.CaptureFixture[bytes]) -> None:  # noqa: F811
    assert _get(cli, "--cacert", str(pki.ca), f"https://server.test:{https}/echo") == 0
    assert capsysbinary.readouterr().out == b"GET /echo  - 0 "
    assert _get(cli, f"https://server.test:{https}/echo") == 60
    err = capsysbinary.readouterr().err.decode()
    assert err.startswith(f"usernet get: https://server.test:{https}/echo: certificate not trusted") and \
        err.count("\n") == 1
    assert _get(cli, "--insecure", f"https://server.test:{https}/echo") == 0


def test_cli_usage_errors(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _get(cli, "ftp://server.test/") == 2
    assert _get(cli, "-H", "no colon", "http://server.test/") == 2
    assert _get(cli, "--cacert", "/nonexistent.pem", "https://server.test/") == 2
    assert usernet.cli.main(["get", "--addr", "10.7.0.9/24", "http://name.test/"]) == 2
    assert "needs a resolver" in capsys.readouterr().err
