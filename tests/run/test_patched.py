"""usernet.patched(host): unmodified standard-library networking on a usernet host.

Two hosts on the in-memory switch: `a` (10.7.0.1, the patched one, where the program under test runs)
and `b` (10.7.0.2, driven through usernet's own API in threads: the far end).
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import selectors
import socket
import socketserver
import ssl
import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import usernet
from usernet.api.socket import Socket
from usernet.api.tls import TlsSocket
from usernet.links.memory import Switch

KERNEL_SOCKET = socket.socket
ORIGINALS = {name: getattr(socket, name) for name in (
    "socket", "create_connection", "create_server", "getaddrinfo", "gethostbyname", "gethostbyname_ex",
    "gethostbyaddr", "getfqdn")}
ORIGINAL_WRAP = ssl.SSLContext.wrap_socket
BODY = b"hello from usernet b\n"


@pytest.fixture
def hosts() -> Iterator[tuple[usernet.Host, usernet.Host]]:
    switch = Switch()
    a = usernet.Host(switch.port(), addr="10.7.0.1/24", hosts={"peer.test": "10.7.0.2"}, seed=1)
    b = usernet.Host(switch.port(), addr="10.7.0.2/24", seed=2)
    with a, b:
        yield a, b
    usernet.unpatch()  # a failed test must not leave the module patched for the next
    assert socket.socket is KERNEL_SOCKET


def _thread(target: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _http_responder(b: usernet.Host, requests: list[bytes], count: int = 1) -> int:
    """An HTTP/1.0-style responder on b (usernet API): answers BODY, closes; returns its port."""
    server = b.create_server(("10.7.0.2", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        with server:
            for _ in range(count):
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(10)
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    requests.append(data)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                                 + str(len(BODY)).encode() + b"\r\nConnection: close\r\n\r\n" + BODY)

    _thread(serve)
    return port


def _echo_client(b: usernet.Host, port: int, payload: bytes, out: list[bytes]) -> None:
    with b.create_connection(("10.7.0.1", port), timeout=10) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
        out.append(data)


def _echo_server(b: usernet.Host) -> tuple[int, threading.Thread]:
    server = b.create_server(("10.7.0.2", 0))

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                while chunk := conn.recv(4096):
                    conn.sendall(chunk)

    port = int(server.getsockname()[1])
    return port, _thread(serve)


# ------------------------------------------------------------------ patch and undo

def test_patched_replaces_and_restores(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    a, _ = hosts
    with usernet.patched(a) as host:
        assert host is a
        assert socket.socket is not KERNEL_SOCKET
        sock = socket.socket()
        assert isinstance(sock, Socket) and isinstance(sock, socket.socket)
        sock.close()
    assert {name: getattr(socket, name) for name in ORIGINALS} == ORIGINALS
    assert ssl.SSLContext.wrap_socket is ORIGINAL_WRAP


def test_restored_after_an_exception(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    a, _ = hosts
    with pytest.raises(ZeroDivisionError), usernet.patched(a):
        raise ZeroDivisionError("inside the block")
    assert {name: getattr(socket, name) for name in ORIGINALS} == ORIGINALS
    assert ssl.SSLContext.wrap_socket is ORIGINAL_WRAP


def test_nesting_is_refused(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    a, b = hosts
    with usernet.patched(a):
        with pytest.raises(RuntimeError, match="already patched"), usernet.patched(b):
            pass
        with pytest.raises(RuntimeError):
            usernet.patch(a)
        assert socket.getaddrinfo("peer.test", 80, type=socket.SOCK_STREAM)  # still a's
    assert socket.socket is KERNEL_SOCKET
    usernet.unpatch()  # unpatching twice is harmless
    usernet.patch(a)
    usernet.unpatch()
    assert socket.socket is KERNEL_SOCKET


def test_kernel_sockets_stay_the_kernels(hosts: tuple[usernet.Host, usernet.Host], tmp_path: Any) -> None:
    a, _ = hosts
    with usernet.patched(a):
        left, right = socket.socketpair()
        with left, right:
            assert type(left) is KERNEL_SOCKET and isinstance(left, socket.socket)
            left.sendall(b"ping")
            assert right.recv(4) == b"ping"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            assert type(listener) is KERNEL_SOCKET
            listener.bind(str(tmp_path / "s"))
            listener.listen()
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(tmp_path / "s"))
                conn, _ = listener.accept()  # the socket module's accept calls socket(..., fileno=)
                with conn:
                    assert type(conn) is KERNEL_SOCKET
                    client.sendall(b"unix")
                    assert conn.recv(4) == b"unix"
        if socket.has_ipv6:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as six:
                assert type(six) is KERNEL_SOCKET
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            assert isinstance(udp, Socket) and udp.type == socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK) as nb:
            assert isinstance(nb, Socket) and nb.gettimeout() == 0.0


def test_name_functions(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    a, _ = hosts
    with usernet.patched(a):
        assert socket.gethostbyname("peer.test") == "10.7.0.2"
        assert socket.gethostbyname("10.7.0.9") == "10.7.0.9"
        assert socket.gethostbyname_ex("peer.test")[2] == ["10.7.0.2"]
        info = socket.getaddrinfo("peer.test", "http", type=socket.SOCK_STREAM)
        assert info == [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("10.7.0.2", 80))]
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("::1", 80, socket.AF_INET6)
        assert socket.gethostbyaddr("10.7.0.2")[0] == "peer.test"
        assert socket.gethostbyaddr("127.0.0.1")[0] == "localhost"
        with pytest.raises(socket.herror):
            socket.gethostbyaddr("10.7.0.99")
        assert socket.getfqdn("10.7.0.99") == "10.7.0.99"
        assert socket.getfqdn("peer.test") == "peer.test"
        assert socket.getfqdn() == socket.gethostname()


# ------------------------------------------------------------------ clients

def test_http_client(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    a, b = hosts
    requests: list[bytes] = []
    port = _http_responder(b, requests)
    with usernet.patched(a):
        conn = http.client.HTTPConnection("10.7.0.2", port, timeout=10)
        conn.request("GET", "/hello")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == BODY
        assert isinstance(conn.sock, Socket) or conn.sock is None
        conn.close()
    assert requests[0].startswith(b"GET /hello HTTP/1.1\r\n")


def test_urlopen_by_name(hosts: tuple[usernet.Host, usernet.Host], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    a, b = hosts
    requests: list[bytes] = []
    port = _http_responder(b, requests)
    with usernet.patched(a), urllib.request.urlopen(f"http://peer.test:{port}/file", timeout=10) as response:
        assert response.read() == BODY
    assert b"Host: peer.test:" in requests[0]


def test_udp_program(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    a, b = hosts
    echo = b.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("10.7.0.2", 5353))

    def reply() -> None:
        data, peer = echo.recvfrom(2048)
        echo.sendto(data.upper(), peer)

    thread = _thread(reply)
    with usernet.patched(a), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.sendto(b"datagram", ("peer.test", 5353))
        data, peer = sock.recvfrom(2048)
    thread.join(10)
    echo.close()
    assert (data, peer) == (b"DATAGRAM", ("10.7.0.2", 5353))


# ------------------------------------------------------------------ servers

def test_socketserver_tcp(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    a, b = hosts

    class Upper(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(self.rfile.readline().upper())

    with usernet.patched(a):
        with socketserver.TCPServer(("0.0.0.0", 0), Upper) as server:
            assert isinstance(server.socket, Socket)
            port = server.server_address[1]
            thread = _thread(server.serve_forever, 0.05)
            out: list[bytes] = []
            _echo_client(b, port, b"hello socketserver\n", out)
            server.shutdown()
            thread.join(10)
    assert out == [b"HELLO SOCKETSERVER\n"]


def test_selectors_echo_server(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    a, b = hosts
    out: list[bytes] = []
    with usernet.patched(a):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("10.7.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        clients = [_thread(_echo_client, b, port, f"client {n}\n".encode() * 500, out) for n in range(2)]
        closed = 0
        while closed < 2:
            for key, _ in selector.select(10):
                sock = key.fileobj
                if sock is listener:
                    conn, _ = listener.accept()
                    conn.setblocking(False)
                    selector.register(conn, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                if data:
                    sock.setblocking(True)  # type: ignore[union-attr]
                    sock.sendall(data)  # type: ignore[union-attr]
                    sock.setblocking(False)  # type: ignore[union-attr]
                else:
                    selector.unregister(sock)
                    sock.close()  # type: ignore[union-attr]
                    closed += 1
        selector.close()
        listener.close()
    for thread in clients:
        thread.join(10)
    assert sorted(out) == [b"client 0\n" * 500, b"client 1\n" * 500]


def test_asyncio_client(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    a, b = hosts
    port, server = _echo_server(b)

    async def main() -> bytes:
        reader, writer = await asyncio.open_connection("peer.test", port)  # getaddrinfo in the executor
        writer.write(b"asyncio says hi\n")
        await writer.drain()
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line

    with usernet.patched(a):
        assert asyncio.run(asyncio.wait_for(main(), 20)) == b"asyncio says hi\n"
    server.join(10)
    assert not server.is_alive()


def test_asyncio_sock_connect(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    a, b = hosts
    port, server = _echo_server(b)

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("10.7.0.2", port))
        await loop.sock_sendall(sock, b"raw loop\n")
        data = await loop.sock_recv(sock, 100)
        sock.close()
        return data

    with usernet.patched(a):
        assert asyncio.run(asyncio.wait_for(main(), 20)) == b"raw loop\n"
    server.join(10)
    assert not server.is_alive()


def test_asyncio_server(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    a, b = hosts
    out: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        writer.write(data[::-1])
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, None, 0)
        port = server.sockets[0].getsockname()[1]
        await asyncio.get_running_loop().run_in_executor(None, _echo_client, b, port, b"abc\n", out)
        server.close()
        await server.wait_closed()

    with usernet.patched(a):
        asyncio.run(asyncio.wait_for(main(), 20))
    assert out == [b"\ncba"]


# ------------------------------------------------------------------ TLS: ssl.SSLContext.wrap_socket while patched

def _tls_server(b: usernet.Host, pki: Any, count: int = 1, cert: Any = None, key: Any = None) -> int:
    """An HTTPS responder on b (host.wrap_tls): for each of *count* connections, answers every
    request on it with BODY (keep-alive) until the client closes; returns its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert or pki.cert, key or pki.key)
    server = b.create_server(("10.7.0.2", 0))

    def one(conn: Any) -> None:
        try:
            with b.wrap_tls(conn, context, server_side=True) as tls:
                answer(tls)
        except OSError:  # a failed handshake (ssl.SSLError is one), the host closed at teardown
            return

    def answer(tls: Any) -> None:
        tls.settimeout(10)
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(data) < length:
                data += tls.recv(4096)
            body, data = (head.split(b" ")[0] + b" " + data[:length] if length else BODY), data[length:]
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    def serve() -> None:
        with server:
            for _ in range(count):
                conn, _ = server.accept()
                _thread(one, conn)

    _thread(serve)
    return int(server.getsockname()[1])


def _client_context(pki: Any) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca))


def test_wrap_socket_gives_the_tls_wrapper_while_patched(hosts: tuple[usernet.Host, usernet.Host], run_pki) -> None:
    a, b = hosts
    port = _tls_server(b, run_pki)
    with usernet.patched(a):
        raw = socket.create_connection(("peer.test", port), timeout=10)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = _client_context(run_pki).wrap_socket(raw, server_hostname="peer.test")
        assert isinstance(tls, TlsSocket) and not isinstance(tls, ssl.SSLSocket)
        assert isinstance(tls, socket.socket)  # as an SSLSocket is one
        assert tls.version() in ("TLSv1.2", "TLSv1.3") and tls.cipher() is not None
        assert tls.server_hostname == "peer.test" and tls.context.verify_mode == ssl.CERT_REQUIRED
        assert tls.getpeercert()["subjectAltName"][0] == ("DNS", "peer.test")
        der = tls.getpeercert(binary_form=True)
        assert isinstance(der, bytes) and ssl.DER_cert_to_PEM_cert(der).startswith("-----BEGIN CERTIFICATE")
        assert tls.selected_alpn_protocol() is None and tls.pending() == 0
        assert (tls.family, tls.type, tls.proto) == (socket.AF_INET, socket.SOCK_STREAM, 0)
        assert tls.gettimeout() == 10 and tls.fileno() >= 0
        assert tls.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        tls.sendall(b"GET / HTTP/1.1\r\nHost: peer.test\r\n\r\n")
        with tls.makefile("rb") as reader:
            assert reader.readline() == b"HTTP/1.1 200 OK\r\n"
        tls.close()
    # a kernel socket still gets a real SSLSocket while patched
    listener = KERNEL_SOCKET()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    with usernet.patched(a), listener, KERNEL_SOCKET() as plain:
        plain.connect(listener.getsockname())
        insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        wrapped = insecure.wrap_socket(plain, do_handshake_on_connect=False)
        assert isinstance(wrapped, ssl.SSLSocket)
        wrapped.close()
    assert ssl.SSLContext.wrap_socket is ORIGINAL_WRAP  # restored


def test_https_connection_and_urlopen(hosts: tuple[usernet.Host, usernet.Host], run_pki,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    a, b = hosts
    port = _tls_server(b, run_pki, count=2)
    with usernet.patched(a):
        conn = http.client.HTTPSConnection("peer.test", port, timeout=10, context=_client_context(run_pki))
        for _ in range(2):  # keep-alive: both on one connection
            conn.request("POST", "/echo", body=b"posted")
            assert conn.getresponse().read() == b"POST posted"
        assert isinstance(conn.sock, TlsSocket)
        conn.close()
        with urllib.request.urlopen(f"https://peer.test:{port}/", timeout=10,
                                    context=_client_context(run_pki)) as response:
            assert response.read() == BODY


def test_untrusted_certificate_fails_verification(hosts: tuple[usernet.Host, usernet.Host], run_pki) -> None:
    a, b = hosts
    port = _tls_server(b, run_pki, cert=run_pki.rogue_cert, key=run_pki.rogue_key)
    with usernet.patched(a):
        conn = http.client.HTTPSConnection("peer.test", port, timeout=10, context=_client_context(run_pki))
        with pytest.raises(ssl.SSLCertVerificationError):
            conn.request("GET", "/")


def test_wrap_before_connect_and_a_wrapped_listener(hosts: tuple[usernet.Host, usernet.Host], run_pki) -> None:
    """Both SSLSocket idioms: wrap an unconnected socket and connect() it; wrap a listening socket
    (http.server's HTTPS recipe) and accept() TLS connections from it."""
    a, _ = hosts
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(run_pki.cert, run_pki.key)
    with usernet.patched(a):
        listener = server_context.wrap_socket(socket.create_server(("10.7.0.1", 0)), server_side=True)
        port = listener.getsockname()[1]
        got: list[bytes] = []

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                got.append(conn.recv(100))
                conn.sendall(b"over loopback")

        thread = _thread(serve)
        client = _client_context(run_pki).wrap_socket(socket.socket(), server_hostname="10.7.0.1")
        with pytest.raises(OSError):
            client.version() or client.getpeername()  # not connected yet
        client.settimeout(10)
        client.connect(("10.7.0.1", port))
        assert client.version() is not None
        client.sendall(b"hello listener")
        assert client.recv(100) == b"over loopback"
        client.close()
        thread.join(10)
        listener.close()
    assert got == [b"hello listener"]


def test_socket_options_libraries_set(hosts: tuple[usernet.Host, usernet.Host]) -> None:
    a, b = hosts
    port, server = _echo_server(b)
    with usernet.patched(a):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        for level, option, value in ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
                                     (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
                                     (socket.IPPROTO_IP, socket.IP_TOS, 0x10),
                                     (socket.SOL_SOCKET, socket.SO_REUSEADDR, 1),
                                     (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30),
                                     (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5),
                                     (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)):
            sock.setsockopt(level, option, value)
            assert sock.getsockopt(level, option) == value
        assert isinstance(sock, socket.socket) and sock.gettimeout() is None
        assert (sock.family, sock.type, sock.proto) == (socket.AF_INET, socket.SOCK_STREAM, 0)
        sock.settimeout(10)
        sock.connect(("10.7.0.2", port))
        assert sock.fileno() >= 0
        sock.sendall(b"opts")
        assert sock.recv(4) == b"opts"
        with pytest.raises(OSError) as info:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 1)
        assert info.value.errno == errno.ENOPROTOOPT
        sock.close()
    server.join(10)


def _asyncio_tls_echo(a: usernet.Host, b_host: str, server_context: ssl.SSLContext,
                      client_context: ssl.SSLContext) -> list[bytes]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main() -> list[bytes]:
        server = await asyncio.start_server(handle, "0.0.0.0", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        out = []
        reader, writer = await asyncio.open_connection(b_host, port, ssl=client_context)
        assert writer.get_extra_info("ssl_object").version() is not None
        writer.write(b"streams over tls\n")
        out.append(await reader.readline())
        writer.close()
        await writer.wait_closed()
        loop = asyncio.get_running_loop()
        got: asyncio.Future[bytes] = loop.create_future()

        class Proto(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                transport.write(b"protocol over tls\n")

            def data_received(self, data: bytes) -> None:
                if not got.done():
                    got.set_result(data)

        transport, _ = await loop.create_connection(Proto, b_host, port, ssl=client_context)
        out.append(await got)
        transport.close()
        server.close()
        await server.wait_closed()
        return out

    with usernet.patched(a):
        return asyncio.run(asyncio.wait_for(main(), 20))


def test_asyncio_tls_client_and_server(hosts: tuple[usernet.Host, usernet.Host], run_pki) -> None:
    """asyncio's own SSLProtocol (MemoryBIO) over usernet sockets in the selector loop, both ends
    on the patched host (a connects to itself by name: usernet.test is a's own address)."""
    a, _ = hosts
    a.hosts_table["usernet.test"] = ["10.7.0.1"]
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(run_pki.cert, run_pki.key)
    out = _asyncio_tls_echo(a, "usernet.test", server_context, _client_context(run_pki))
    assert out == [b"STREAMS OVER TLS\n", b"PROTOCOL OVER TLS\n"]
