"""usernet.http.serve_async: an ``async def handler(request) -> AsyncResponse`` on an asyncio loop over usernet
sockets, on the in-memory network; and output coalescing of the threaded server."""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

import usernet
import usernet.http
from tests.http.fakes import FeedSocket
from usernet.apps.http import COALESCE_LIMIT, StaticFiles, WsgiHandler, _Connection
from usernet.http import AsyncRequest, AsyncResponse
from usernet.links import Switch
from usernet.proto.http import Limits

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def hosts() -> Iterator[tuple[usernet.Host, usernet.Host]]:
    switch = Switch()
    with usernet.Host(switch.port(), addr="10.0.0.1/24", seed=1) as server, \
            usernet.Host(switch.port(), addr="10.0.0.2/24", seed=2) as client:
        yield server, client


async def handler(request: AsyncRequest) -> AsyncResponse:
    if request.path == "/boom":
        raise RuntimeError("deliberate")
    if request.path == "/wrong":
        return "not a response"  # type: ignore[return-value]
    if request.method == "POST":
        data = json.loads(request.body)
        return AsyncResponse(200, [("Content-Type", "application/json")],
                             json.dumps({"sum": sum(data), "ua": request.header("User-Agent")}).encode())
    if request.path == "/missing":
        return AsyncResponse(404, body=b"no\n")
    await asyncio.sleep(0)
    return AsyncResponse(body=f"{request.method} {request.path} ?{request.query}".encode())


async def exchange(client: usernet.Host, data: bytes, port: int = 8000) -> bytes:
    reader, writer = await client.open_connection("10.0.0.1", port)
    writer.write(data)
    out = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return out


def run(coro_fn, *args):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro_fn(*args), 30))


def test_keepalive_pipelining_post_and_errors(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    server_host, client = hosts

    async def main() -> list[bytes]:
        server = await usernet.http.serve_async(server_host, handler, 8000)
        async with server:
            pipelined = await exchange(client, b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
                                               b"HEAD /c HTTP/1.1\r\nHost: h\r\n\r\n"
                                               b"POST /sum HTTP/1.1\r\nHost: h\r\nUser-Agent: t\r\n"
                                               b"Content-Length: 9\r\n\r\n[1, 2, 3]"
                                               b"GET /missing HTTP/1.1\r\nHost: h\r\n\r\n"
                                               b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n"
                                               b"GET /never HTTP/1.1\r\nHost: h\r\n\r\n")
            wrong = await exchange(client, b"GET /wrong HTTP/1.1\r\nHost: h\r\n\r\n")
            after = await exchange(client, b"GET /after HTTP/1.0\r\n\r\n")
            chunked = await exchange(client, b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                                             b"Connection: close\r\n\r\n3\r\n[4]\r\n0\r\n\r\n")
            assert server.counters["http.app_errors"] == 2
            return [pipelined, wrong, after, chunked]

    pipelined, wrong, after, chunked = run(main)
    responses = pipelined.split(b"HTTP/1.1 ")[1:]
    assert len(responses) == 5  # the request after the 500 is not answered: that connection closed
    assert responses[0].startswith(b"200 OK") and responses[0].endswith(b"\r\n\r\nGET /a b ?x=1")
    assert b"Content-Length: 9\r\n" in responses[1] and responses[1].endswith(b"\r\n\r\n")  # HEAD: no body
    assert responses[2].startswith(b"200") and json.loads(responses[2].split(b"\r\n\r\n")[1]) == {"sum": 6,
                                                                                                    "ua": "t"}
    assert responses[3].startswith(b"404") and responses[3].endswith(b"no\n")
    assert responses[4].startswith(b"500") and b"Connection: close" in responses[4]
    assert wrong.startswith(b"HTTP/1.1 500")
    assert after.startswith(b"HTTP/1.1 200") and b"Connection: close" in after
    assert json.loads(chunked.split(b"\r\n\r\n")[1])["sum"] == 4


def test_protocol_errors_and_limits(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    server_host, client = hosts

    async def main() -> list[bytes]:
        server = await usernet.http.serve_async(server_host, handler, 8000,
                                                limits=Limits(max_body=100, max_request_line=64))
        async with server:
            return [
                await exchange(client, b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
                                       b"Transfer-Encoding: chunked\r\n\r\n"),
                await exchange(client, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n"),
                await exchange(client, b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: h\r\n\r\n"),
                await exchange(client, b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                                       b"Content-Length: 3\r\nConnection: close\r\n\r\n[5]"),
            ]

    smuggle, big, long_line, expect = run(main)
    assert smuggle.startswith(b"HTTP/1.1 400")
    assert big.startswith(b"HTTP/1.1 413")
    assert long_line.startswith(b"HTTP/1.1 414")
    assert expect.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")


def test_header_timeout_and_idle_timeout(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    server_host, client = hosts

    async def main() -> tuple[bytes, bytes, int]:
        server = await usernet.http.serve_async(server_host, handler, 8000, header_timeout=0.5, idle_timeout=0.5)
        async with server:
            reader, writer = await client.open_connection("10.0.0.1", 8000)
            writer.write(b"GET / HTTP/1.1\r\n")  # and never the rest
            slow = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            reader, writer = await client.open_connection("10.0.0.1", 8000)
            idle = await asyncio.wait_for(reader.read(), 10)  # nothing sent: closed quietly
            writer.close()
            return slow, idle, server.counters["http.timeouts"]

    slow, idle, timeouts = run(main)
    assert slow.startswith(b"HTTP/1.1 408")
    assert idle == b""
    assert timeouts == 1


def test_connection_limit(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    server_host, client = hosts

    async def main() -> bytes:
        server = await usernet.http.serve_async(server_host, handler, 8000, max_connections=1)
        async with server:
            _, first = await client.open_connection("10.0.0.1", 8000)
            await asyncio.sleep(0.2)
            refused = await exchange(client, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            first.close()
            return refused

    assert run(main).startswith(b"HTTP/1.1 503")


@pytest.mark.parametrize(("size", "sends"), [(5000, 1), (COALESCE_LIMIT + 1, 2), (200_000, 4)])
def test_threaded_server_coalesces_head_and_body(tmp_path: Path, size: int, sends: int) -> None:
    """Head and a body up to COALESCE_LIMIT leave in one send (a head sent alone waits out Nagle and the
    client's delayed ACK); larger files go in COALESCE_LIMIT pieces, the first carrying the head."""
    (tmp_path / "f.bin").write_bytes(b"x" * size)
    server = SimpleNamespace(limits=Limits(), idle_timeout=5.0, header_timeout=5.0, stopping=False,
                             counters=collections.Counter(), handler=StaticFiles(str(tmp_path)), tls=None)
    sock = FeedSocket([b"GET /f.bin HTTP/1.1\r\nHost: h\r\n\r\n"])
    _Connection(server, sock, ("10.0.0.9", 1)).run()  # type: ignore[arg-type]
    assert len(sock.sent) == sends
    assert sock.sent[0].startswith(b"HTTP/1.1 200") and all(len(s) <= COALESCE_LIMIT for s in sock.sent)
    assert b"".join(sock.sent).endswith(b"\r\n\r\n" + b"x" * size)


def test_wsgi_chunked_pieces_leave_whole() -> None:
    """Each chunk (size line, data, CRLF) is one send; the head goes with the first."""
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"one"
        yield b"two"

    server = SimpleNamespace(limits=Limits(), idle_timeout=5.0, header_timeout=5.0, stopping=False,
                             counters=collections.Counter(), handler=WsgiHandler(app), tls=None)
    sock = FeedSocket([b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"])
    _Connection(server, sock, ("10.0.0.9", 1)).run()  # type: ignore[arg-type]
    assert sock.sent[0].startswith(b"HTTP/1.1 200") and sock.sent[0].endswith(b"\r\n\r\n3\r\none\r\n")
    assert sock.sent[1:] == [b"3\r\ntwo\r\n", b"0\r\n\r\n"]


def test_wsgi_error_after_start_response_still_gets_a_500() -> None:
    """Nothing had left yet when the app failed: the queued head is replaced by a 500."""
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [])
        yield b""
        raise RuntimeError("late")

    server = SimpleNamespace(limits=Limits(), idle_timeout=5.0, header_timeout=5.0, stopping=False,
                             counters=collections.Counter(), handler=WsgiHandler(app), tls=None)
    sock = FeedSocket([b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"])
    _Connection(server, sock, ("10.0.0.9", 1)).run()  # type: ignore[arg-type]
    assert len(sock.sent) == 1 and sock.sent[0].startswith(b"HTTP/1.1 500")
