"""The socket-compatible API and asyncio streams, on the in-memory network (no root needed)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import http.client
import http.server
import os
import select
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

import usernet
import usernet.wire.ipv4
from usernet.links import Switch

A, B = "10.3.0.1", "10.3.0.2"


@pytest.fixture
def hosts() -> Iterator[tuple[usernet.Host, usernet.Host]]:
    switch = Switch()
    with usernet.Host(switch.port(), addr=f"{A}/24", seed=1) as a, usernet.Host(switch.port(), addr=f"{B}/24",
                                                                                 seed=2) as b:
        yield a, b


def echo_server(host: usernet.Host, port: int) -> threading.Thread:
    server = host.create_server(("", port))

    def serve() -> None:
        with server:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

    def handle(conn) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                return  # the host closed under us at the end of a test

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_stream_echo_and_makefile(hosts) -> None:
    a, b = hosts
    echo_server(b, 7)
    with a.create_connection((B, 7), timeout=5) as conn:
        assert conn.getpeername() == (B, 7) and conn.getsockname()[0] == A
        conn.sendall(b"line one\nline two\n")
        reader = conn.makefile("rb")
        assert reader.readline() == b"line one\n" and reader.readline() == b"line two\n"
        reader.close()
        payload = os.urandom(300_000)
        conn.sendall(payload)
        got = bytearray()
        while len(got) < len(payload):
            got += conn.recv(65536)
        assert bytes(got) == payload


def test_select_reports_readiness(hosts) -> None:
    a, b = hosts
    echo_server(b, 7)
    with a.create_connection((B, 7), timeout=5) as conn:
        r, w, _ = select.select([conn], [conn], [], 0)
        assert r == [] and w == [conn]
        conn.sendall(b"ping")
        r, _, _ = select.select([conn], [], [], 5)
        assert r == [conn]
        assert conn.recv(10) == b"ping"
        assert select.select([conn], [], [], 0)[0] == []


def test_selectors_drive_50_nonblocking_sockets(hosts) -> None:
    a, b = hosts
    echo_server(b, 7)
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(50):
        s = a.socket()
        s.setblocking(False)
        assert s.connect_ex((B, 7)) == errno.EINPROGRESS
        sel.register(s, selectors.EVENT_WRITE, data=i)
        socks.append(s)
    pending = {}
    done = {}
    deadline = time.monotonic() + 20
    while len(done) < 50 and time.monotonic() < deadline:
        for key, events in sel.select(1):
            s, i = key.fileobj, key.data
            if events & selectors.EVENT_WRITE and i not in pending:
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                s.send(b"msg-%d" % i)
                pending[i] = b""
                sel.modify(s, selectors.EVENT_READ, data=i)
            elif events & selectors.EVENT_READ:
                try:
                    pending[i] += s.recv(100)
                except BlockingIOError:
                    continue
                if pending[i] == b"msg-%d" % i:
                    done[i] = True
                    sel.unregister(s)
    assert len(done) == 50
    for s in socks:
        s.close()
    sel.close()


def test_timeouts_and_nonblocking(hosts) -> None:
    a, b = hosts
    echo_server(b, 7)
    with a.create_connection((B, 7), timeout=5) as conn:
        conn.settimeout(0.2)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            conn.recv(10)
        assert 0.18 < time.monotonic() - start < 1.0
        conn.setblocking(False)
        with pytest.raises(BlockingIOError):
            conn.recv(10)
    with b.create_server(("", 9000)) as server:
        server.settimeout(0.1)
        with pytest.raises(TimeoutError):
            server.accept()
    udp = a.socket(type=usernet.SOCK_DGRAM)
    udp.bind(("", 5000))
    udp.settimeout(0.1)
    with pytest.raises(TimeoutError):
        udp.recvfrom(100)
    udp.close()


def test_connect_refused_and_closing_from_another_thread_wakes_waiters(hosts) -> None:
    a, b = hosts
    with pytest.raises(ConnectionRefusedError):
        a.create_connection((B, 4444), timeout=5)
    echo_server(b, 7)
    conn = a.create_connection((B, 7), timeout=None)
    server = a.create_server(("", 8000))
    errors = []

    def blocked(call) -> None:
        try:
            call()
        except OSError as err:
            errors.append(err.errno)

    threads = [threading.Thread(target=blocked, args=(lambda: conn.recv(10),)),
               threading.Thread(target=blocked, args=(server.accept,))]
    for t in threads:
        t.start()
    time.sleep(0.2)
    conn.close()
    server.close()
    for t in threads:
        t.join(timeout=3)
        assert not t.is_alive()
    assert errors == [errno.EBADF, errno.EBADF]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_leaving_the_host_closes_everything_without_leaking_fds() -> None:
    before = open_fds()
    switch = Switch()
    with usernet.Host(switch.port(), addr=f"{A}/24") as a, usernet.Host(switch.port(), addr=f"{B}/24") as b:
        echo_server(b, 7)
        conns = [a.create_connection((B, 7), timeout=5) for _ in range(5)]
        for c in conns:
            c.fileno()  # readiness fds too
        threads_during = threading.active_count()
    assert all(c._closed for c in conns)
    time.sleep(0.2)
    assert threading.active_count() < threads_during
    assert open_fds() == before


def kernel_and_usernet_errors(action) -> tuple[tuple[type, int | None], tuple[type, int | None]]:
    def run(make) -> tuple[type, int | None]:
        try:
            action(make)
        except OSError as err:
            return type(err), err.errno
        return type(None), None

    switch = Switch()
    with usernet.Host(switch.port(), addr=f"{A}/24") as host:
        ours = run(lambda kind=socket.SOCK_STREAM: host.socket(usernet.AF_INET, kind))
    theirs = run(lambda kind=socket.SOCK_STREAM: socket.socket(socket.AF_INET, kind))
    return ours, theirs


@pytest.mark.parametrize("misuse", ["send_unconnected", "recv_unconnected", "bind_twice", "listen_udp",
                                    "port_in_use", "getpeername_unconnected", "sendto_stream"])
def test_api_misuse_matches_the_socket_module(misuse: str) -> None:
    port = 23000 + hash(misuse) % 1000

    def action(make) -> None:
        if misuse == "send_unconnected":
            with make() as s:
                s.send(b"x")
        elif misuse == "recv_unconnected":
            with make() as s:
                s.recv(1)
        elif misuse == "bind_twice":
            with make() as s:
                s.bind(("", 0))
                s.bind(("", 0))
        elif misuse == "listen_udp":
            with make(socket.SOCK_DGRAM) as s:
                s.listen(1)
        elif misuse == "port_in_use":
            with make() as s1, make() as s2:
                s1.bind(("", port))
                s1.listen(1)
                s2.bind(("", port))
        elif misuse == "getpeername_unconnected":
            with make() as s:
                s.getpeername()
        elif misuse == "sendto_stream":
            with make() as s:
                s.sendto(b"x", ("10.3.0.9", 9))

    ours, theirs = kernel_and_usernet_errors(action)
    assert ours == theirs


def test_http_client_and_socketserver_unmodified(hosts, tmp_path) -> None:
    a, b = hosts
    (tmp_path / "hello.txt").write_bytes(b"hello from usernet\n" * 100)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args) -> None:
            pass

    class UsernetHTTPServer(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = UsernetHTTPServer((B, 8080), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = b.socket()  # the one change: the socket comes from usernet
    server.server_bind()
    server.server_activate()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        class UsernetHTTPConnection(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = a.create_connection((self.host, self.port), timeout=self.timeout)

        client = UsernetHTTPConnection(B, 8080, timeout=5)
        for _ in range(2):  # two requests on one persistent connection
            client.request("GET", "/hello.txt")
            response = client.getresponse()
            assert response.status == 200 and response.read() == b"hello from usernet\n" * 100
        client.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_asyncio_streams(hosts) -> None:
    a, b = hosts

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await b.start_server(handle, "", 7000)
        payload = os.urandom(300_000)

        async def client(data: bytes) -> bytes:
            reader, writer = await a.open_connection(B, 7000)
            writer.write(data)
            await writer.drain()
            writer.write_eof()
            echoed = await reader.read()
            writer.close()
            await writer.wait_closed()
            return echoed

        assert hashlib.sha256(await client(payload)).digest() == hashlib.sha256(payload).digest()
        results = await asyncio.gather(*(client(b"conn %d" % i * 100) for i in range(20)))
        assert results == [b"conn %d" % i * 100 for i in range(20)]
        server.close()
        await server.wait_closed()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_connect_timeout_to_a_silent_host() -> None:
    switch = Switch()
    silent = switch.port()  # plugged in, never answers: SYNs vanish
    with usernet.Host(switch.port(), addr=f"{A}/24") as a:
        # Teach ARP a MAC for the silent address so the SYN really leaves.
        with a._lock:
            a.stack.neighbours.update(usernet.wire.ipv4.addr(B), bytes.fromhex("02aabbccddee"), time.monotonic(),
                                      create=True)
        sock = a.socket()
        sock.settimeout(0.3)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            sock.connect((B, 80))
        assert 0.28 < time.monotonic() - start < 1.5
        sock.close()
    silent.close()


def test_udp_sockets_exchange_and_refuse(hosts) -> None:
    a, b = hosts
    with b.socket(type=usernet.SOCK_DGRAM) as server, a.socket(type=usernet.SOCK_DGRAM) as client:
        server.bind(("", 5353))
        client.settimeout(2)
        server.settimeout(2)
        client.sendto(b"question", (B, 5353))
        data, peer = server.recvfrom(100)
        assert data == b"question" and peer[0] == A
        server.sendto(b"answer", peer)
        buf = bytearray(100)
        n, src = client.recvfrom_into(buf)
        assert bytes(buf[:n]) == b"answer" and src == (B, 5353)
        client.connect((B, 5354))
        client.send(b"nobody")
        with pytest.raises(ConnectionRefusedError):
            client.recv(10)


def test_a_failing_link_does_not_stop_the_host() -> None:
    switch = Switch()
    port = switch.port()
    calls = {"n": 0}
    original = port.recv_batch

    def flaky(max_frames: int = 64):
        calls["n"] += 1
        if calls["n"] in (3, 4):
            raise OSError(errno.ENETDOWN, "Network is down")
        return original(max_frames)

    port.recv_batch = flaky  # type: ignore[method-assign]
    with usernet.Host(port, addr=f"{A}/24") as a, usernet.Host(switch.port(), addr=f"{B}/24") as b:
        for _ in range(3):
            b.ping(A, count=1, timeout=0.3)
        assert a.counters["link.rx_error"] == 2 and a.running
        assert all(rtt is not None for rtt in b.ping(A, count=2, interval=0.05, timeout=1))


def test_one_thread_reads_while_another_writes(hosts) -> None:
    a, b = hosts
    echo_server(b, 7)
    payload = os.urandom(2_000_000)
    with a.create_connection((B, 7), timeout=10) as conn:
        received = bytearray()

        def reader() -> None:
            while len(received) < len(payload):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                received.extend(chunk)

        thread = threading.Thread(target=reader)
        thread.start()
        conn.sendall(payload)  # concurrently with the reader, on the same socket
        thread.join(timeout=30)
        assert not thread.is_alive() and bytes(received) == payload
