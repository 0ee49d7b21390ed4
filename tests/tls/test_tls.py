"""host.wrap_tls: TLS over usernet sockets on the in-memory network, both ends usernet."""

from __future__ import annotations

import http.client
import os
import queue
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import usernet
from usernet.api.tls import TlsSocket
from usernet.links import Switch

A, B = "10.7.0.1", "10.7.0.2"


@pytest.fixture
def hosts() -> Iterator[tuple[usernet.Host, usernet.Host]]:
    switch = Switch()
    with usernet.Host(switch.port(), addr=f"{A}/24", seed=1) as a, usernet.Host(switch.port(), addr=f"{B}/24",
                                                                                 seed=2) as b:
        yield a, b


def server_context(pki: Any) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert, pki.key)
    return context


def client_context(pki: Any) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verification and hostname checks on
    context.load_verify_locations(pki.ca)
    return context


def tls_server(host: usernet.Host, port: int, context: ssl.SSLContext,
               handle: Callable[[TlsSocket], None]) -> queue.Queue[Any]:
    """Accept in a thread; each connection's handshake and *handle* run in turn. The queue gets
    "ok" or the exception of every connection."""
    listener = host.create_server(("", port))
    results: queue.Queue[Any] = queue.Queue()

    def serve() -> None:
        with listener:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                conn.settimeout(10)
                try:
                    with host.wrap_tls(conn, context, server_side=True) as tls:
                        handle(tls)
                    results.put("ok")
                except Exception as err:  # noqa: BLE001 - reported to the test
                    results.put(err)

    threading.Thread(target=serve, daemon=True).start()
    return results


def echo(tls: TlsSocket) -> None:
    while data := tls.recv(65536):
        tls.sendall(data)


def test_echo_200kb_both_ways(hosts, pki) -> None:
    a, b = hosts
    results = tls_server(b, 443, server_context(pki), echo)
    payload = os.urandom(200_000)
    with a.wrap_tls(a.create_connection((B, 443), timeout=10), client_context(pki),
                    server_hostname="server.test") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3") and tls.cipher() is not None
        assert tls.server_hostname == "server.test" and tls.getpeername() == (B, 443)
        assert tls.getsockname()[0] == A and tls.gettimeout() == 10
        received = bytearray()

        def reader() -> None:
            while len(received) < len(payload):
                data = tls.recv(65536)
                if not data:
                    break
                received.extend(data)

        # Send and receive at once: the echo may fill windows before the whole payload is out.
        thread = threading.Thread(target=reader)
        thread.start()
        tls.sendall(payload)
        thread.join(20)
        assert bytes(received) == payload
        tls.shutdown(socket.SHUT_WR)  # close_notify: the server's recv returns b""
        assert tls.recv(100) == b""  # and its close_notify comes back
    assert results.get(timeout=10) == "ok"


def test_getpeercert_and_select(hosts, pki) -> None:
    a, b = hosts
    tls_server(b, 443, server_context(pki), echo)
    with a.wrap_tls(a.create_connection((B, 443), timeout=10), client_context(pki),
                    server_hostname="server.test") as tls:
        cert = tls.getpeercert()
        subject = dict(item for rdn in cert["subject"] for item in rdn)
        assert subject == {"organizationName": "usernet", "commonName": "server.test"}
        assert ("DNS", "server.test") in cert["subjectAltName"]
        assert tls.getpeercert(binary_form=True)[:1] == b"\x30"  # DER
        tls.sendall(b"ping")
        assert select.select([tls], [], [], 5)[0] == [tls]
        assert tls.recv(2) == b"pi"
        assert tls.pending() == 2  # decrypted already: no descriptor shows it
        assert tls.recv(100) == b"ng"


def test_wrong_hostname_fails_verification(hosts, pki) -> None:
    a, b = hosts
    results = tls_server(b, 443, server_context(pki), echo)
    sock = a.create_connection((B, 443), timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch|IP address mismatch"):
        a.wrap_tls(sock, client_context(pki), server_hostname="other.test")
    assert isinstance(results.get(timeout=10), ssl.SSLError)  # the server saw the alert
    # The server goes on: a correct client gets through.
    with a.wrap_tls(a.create_connection((B, 443), timeout=10), client_context(pki),
                    server_hostname="server.test") as tls:
        tls.sendall(b"x")
        assert tls.recv(1) == b"x"


def test_an_ip_address_as_hostname_matches_the_ip_san(hosts, pki) -> None:
    a, b = hosts
    tls_server(b, 443, server_context(pki), echo)
    with a.wrap_tls(a.create_connection((B, 443), timeout=10), client_context(pki), server_hostname=B) as tls:
        tls.sendall(b"ip")
        assert tls.recv(2) == b"ip"


def test_an_unknown_ca_fails(hosts, pki) -> None:
    a, b = hosts
    tls_server(b, 443, server_context(pki), echo)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA loaded
    with pytest.raises(ssl.SSLCertVerificationError):
        a.wrap_tls(a.create_connection((B, 443), timeout=10), context, server_hostname="server.test")


def test_plain_client_makes_the_server_handshake_fail(hosts, pki) -> None:
    a, b = hosts
    results = tls_server(b, 443, server_context(pki), echo)
    with a.create_connection((B, 443), timeout=10) as plain:
        plain.sendall(b"GET / HTTP/1.0\r\nHost: server.test\r\n\r\n")
        error = results.get(timeout=10)
        assert isinstance(error, ssl.SSLError), error
        plain.recv(4096)  # an alert or nothing, then EOF: no hang either way
    with a.create_connection((B, 443), timeout=10) as plain:
        plain.shutdown(socket.SHUT_WR)  # EOF in the middle of the handshake
        error = results.get(timeout=10)
        assert isinstance(error, (ssl.SSLEOFError, ConnectionResetError)), error
    with a.wrap_tls(a.create_connection((B, 443), timeout=10), client_context(pki),
                    server_hostname="server.test") as tls:  # and the next client is served
        tls.sendall(b"next")
        assert tls.recv(4) == b"next"


def test_client_handshake_against_a_closing_server_raises(hosts, pki) -> None:
    a, b = hosts
    listener = b.create_server(("", 443))

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    with pytest.raises((ssl.SSLEOFError, ConnectionResetError)):
        a.wrap_tls(a.create_connection((B, 443), timeout=10), client_context(pki), server_hostname="server.test")
    listener.close()


def test_recv_times_out_as_ssl_does(hosts, pki) -> None:
    a, b = hosts
    tls_server(b, 443, server_context(pki), echo)
    with a.wrap_tls(a.create_connection((B, 443), timeout=10), client_context(pki),
                    server_hostname="server.test") as tls:
        tls.settimeout(0.2)
        with pytest.raises(TimeoutError):
            tls.recv(10)
        tls.setblocking(False)
        with pytest.raises(ssl.SSLWantReadError):
            tls.recv(10)
        tls.settimeout(10)
        tls.sendall(b"after")
        assert tls.recv(5) == b"after"


def test_tcp_eof_without_close_notify_reads_as_eof(hosts, pki) -> None:
    a, b = hosts

    def drop(tls: TlsSocket) -> None:
        tls.sendall(b"bye")
        tls._sock.shutdown(socket.SHUT_WR)  # a TCP FIN, no close_notify (a ragged EOF)
        tls.recv(10)

    tls_server(b, 443, server_context(pki), drop)
    with a.wrap_tls(a.create_connection((B, 443), timeout=10), client_context(pki),
                    server_hostname="server.test") as tls:
        assert tls.recv(10) == b"bye"
        assert tls.recv(10) == b""


def test_unwrap_gives_back_the_plain_socket(hosts, pki) -> None:
    a, b = hosts

    def unwrap_then_plain(tls: TlsSocket) -> None:
        assert tls.recv(10) == b"tls"
        plain = tls.unwrap()
        plain.sendall(b"plain")
        plain.close()

    results = tls_server(b, 443, server_context(pki), unwrap_then_plain)
    tls = a.wrap_tls(a.create_connection((B, 443), timeout=10), client_context(pki), server_hostname="server.test")
    tls.sendall(b"tls")
    plain = tls.unwrap()
    got = b""
    while data := plain.recv(100):
        got += data
    assert got == b"plain"
    plain.close()
    assert results.get(timeout=10) == "ok"


def test_http_client_https_connection(hosts, pki) -> None:
    a, b = hosts
    body = os.urandom(50_000)

    def respond(tls: TlsSocket) -> None:
        reader = tls.makefile("rb")
        request = reader.readline()
        headers = []
        while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
            headers.append(line)
        reader.close()
        assert request == b"GET /hello HTTP/1.1\r\n", request
        assert b"Host: server.test\r\n" in headers
        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)

    results = tls_server(b, 443, server_context(pki), respond)
    context = client_context(pki)

    class Connection(http.client.HTTPSConnection):
        def connect(self) -> None:
            self.sock = a.wrap_tls(a.create_connection((B, self.port), timeout=self.timeout), self._context,
                                   server_hostname=self.host)

    conn = Connection("server.test", 443, context=context, timeout=10)
    try:
        conn.request("GET", "/hello")
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == "application/octet-stream"
        assert response.read() == body
    finally:
        conn.close()
    assert results.get(timeout=10) == "ok"


def test_constructor_checks(hosts, pki) -> None:
    a, _ = hosts
    sock = a.socket()
    with pytest.raises(ValueError, match="server_hostname"):
        a.wrap_tls(sock, client_context(pki))
    with pytest.raises(ValueError, match="client mode"):
        a.wrap_tls(sock, server_context(pki), server_side=True, server_hostname="x")
    sock.close()
