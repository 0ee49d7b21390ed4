"""echo, discard and chargen on one event loop per host: no thread per connection, bounded buffers."""

from __future__ import annotations

import threading
import time

import usernet
from usernet.apps.services import CHARGEN_BLOCK, MAX_PENDING, serve_simple
from usernet.links.memory import Switch


def test_two_hundred_echo_clients_share_one_thread() -> None:
    switch = Switch()
    with usernet.Host(switch.port(), addr="10.40.0.1/24") as server, \
            usernet.Host(switch.port(), addr="10.40.0.2/24") as client:
        serve_simple(server, "echo", 7)
        before = threading.active_count()
        conns = [client.create_connection(("10.40.0.1", 7), timeout=5) for _ in range(200)]
        for i, conn in enumerate(conns):
            conn.sendall(b"hello %d" % i)
        for i, conn in enumerate(conns):
            expected = b"hello %d" % i
            got = b""
            while len(got) < len(expected):
                got += conn.recv(100)
            assert got == expected
        # No thread: the runtime thread serves them (a pass hook); and no readiness socketpair.
        assert threading.active_count() == before
        served = [sock for sock in server.sockets() if sock._conn is not None]
        assert len(served) == 200 and all(sock._readiness is None for sock in served)
        for conn in conns:
            conn.shutdown(1)
            assert conn.recv(10) == b""  # the half-close is echoed
            conn.close()


def test_echo_to_a_client_that_never_reads_is_bounded() -> None:
    switch = Switch()
    with usernet.Host(switch.port(), addr="10.40.1.1/24") as server, \
            usernet.Host(switch.port(), addr="10.40.1.2/24") as client:
        serve_simple(server, "echo", 7)
        conn = client.create_connection(("10.40.1.1", 7), timeout=5)
        conn.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                sent += conn.send(b"z" * 65536)
            except BlockingIOError:
                time.sleep(0.05)
                try:
                    sent += conn.send(b"z" * 65536)
                except BlockingIOError:
                    break
        # The server stopped reading once MAX_PENDING waited for us: what it took is bounded by
        # that and the four socket buffers on the way (each side's send and receive buffer).
        config = server.stack.tcp.config
        assert sent <= MAX_PENDING + 65536 + 2 * (config.sndbuf + config.rcvbuf)
        handler_bytes = [len(k.data.pending) for k in server_loop_keys(server)]
        assert max(handler_bytes) <= MAX_PENDING + 65536
        conn.close()


def server_loop_keys(host: usernet.Host):  # type: ignore[no-untyped-def]
    from usernet.apps.services import service_loop

    loop = service_loop(host)
    return [key for key in loop.selector.get_map().values() if hasattr(key.data, "pending")]


def test_chargen_pattern_is_continuous_and_discard_swallows() -> None:
    switch = Switch()
    with usernet.Host(switch.port(), addr="10.40.2.1/24") as server, \
            usernet.Host(switch.port(), addr="10.40.2.2/24") as client:
        serve_simple(server, "chargen", 19)
        serve_simple(server, "discard", 9)
        with client.create_connection(("10.40.2.1", 19), timeout=5) as conn:
            received = bytearray()
            while len(received) < 500_000:
                received += conn.recv(65536)
        stream = CHARGEN_BLOCK * (len(received) // len(CHARGEN_BLOCK) + 2)
        assert bytes(received) == stream[:len(received)]
        with client.create_connection(("10.40.2.1", 9), timeout=5) as conn:
            conn.sendall(b"d" * 1_000_000)
            conn.shutdown(1)
            assert conn.recv(10) == b""  # discard closes after the peer's EOF, sending nothing


def test_a_short_echo_connection_costs_the_server_three_segments() -> None:
    # SYN-ACK, the echo (carrying the quick ACK of the request), and one FIN+ACK (the ACK of the
    # client's FIN waits for the end of the runtime pass, TcpConnection.ack_soon, by which time
    # the service has closed in reply).
    switch = Switch()
    with usernet.Host(switch.port(), addr="10.40.3.1/24") as server, \
            usernet.Host(switch.port(), addr="10.40.3.2/24") as client:
        serve_simple(server, "echo", 7)
        sent: list[bytes] = []

        def tap(iface: str, direction: str, frame: bytes, layer: int) -> None:
            # Ethernet, IPv4 without options, TCP: from port 7 to the measured connection's port.
            if direction == ">" and frame[23:24] == b"\x06" and frame[34:36] == b"\x00\x07":
                sent.append(bytes(frame[34:38]))

        with client.create_connection(("10.40.3.1", 7), timeout=5) as warm:  # ARP both ways first
            warm.sendall(b"x")
            assert warm.recv(1) == b"x"
        conn = client.create_connection(("10.40.3.1", 7), timeout=5)
        port = conn.getsockname()[1]
        server.add_tap(tap)
        try:
            conn.sendall(b"y" * 100)
            got = b""
            while len(got) < 100:
                got += conn.recv(100)
            conn.shutdown(1)
            assert conn.recv(10) == b""  # the service's FIN
            conn.close()
            time.sleep(0.2)
        finally:
            server.remove_tap(tap)
        ours = [ports for ports in sent if int.from_bytes(ports[2:4], "big") == port]
        # The SYN-ACK went before the tap: the echo and the FIN+ACK are all that follow.
        assert len(ours) == 2
