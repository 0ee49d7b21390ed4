"""usernet.http.serve_async with ssl=: HTTPS from an asyncio handler over usernet (in memory)."""

from __future__ import annotations

import asyncio
import ssl

import pytest

import usernet
import usernet.http
from tests.tls.conftest import Pki
from usernet.http import AsyncRequest, AsyncResponse
from usernet.links import Switch

pytestmark = pytest.mark.timeout(60)


async def handler(request: AsyncRequest) -> AsyncResponse:
    return AsyncResponse(body=f"{request.method} {request.path} tls".encode())


def test_https_from_an_async_handler(pki: Pki) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki.cert, pki.key)
    client_ctx = ssl.create_default_context(cafile=str(pki.ca))
    switch = Switch()
    with usernet.Host(switch.port(), addr="10.7.0.2/24", seed=1) as server_host, \
            usernet.Host(switch.port(), addr="10.7.0.3/24", seed=2) as client_host:
        async def main() -> tuple[bytes, bytes, int]:
            server = await usernet.http.serve_async(server_host, handler, 443, ssl=server_ctx)
            try:
                # Two requests on one TLS connection (keep-alive), then a plain-text client: dropped.
                loop = asyncio.get_running_loop()
                raw = client_host.create_connection(("10.7.0.2", 443))
                raw.setblocking(False)
                tls_reader, tls_writer = await asyncio.open_connection(sock=raw, ssl=client_ctx,
                                                                       server_hostname="server.test")
                tls_writer.write(b"GET /a HTTP/1.1\r\nHost: server.test\r\n\r\n"
                                 b"GET /b HTTP/1.1\r\nHost: server.test\r\nConnection: close\r\n\r\n")
                both = await asyncio.wait_for(tls_reader.read(), 10)
                tls_writer.close()
                plain = client_host.create_connection(("10.7.0.2", 443))
                plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                plain.settimeout(10)
                garbage_answer = await loop.run_in_executor(None, plain.recv, 100)
                plain.close()
                return both, garbage_answer, server.counters["http.requests"]
            finally:
                server.close()
                await server.wait_closed()

        both, garbage_answer, requests = asyncio.run(asyncio.wait_for(main(), 30))
    assert both.count(b"HTTP/1.1 200") == 2
    assert b"GET /a tls" in both and b"GET /b tls" in both
    assert not garbage_answer.startswith(b"HTTP/")  # no HTTP over a TLS port: the handshake fails, closed
    assert requests == 2
