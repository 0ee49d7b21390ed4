"""Socket look-alike gaps of issue 9 (items 2 and 3), each checked against a kernel socket where
the kernel can show what the socket module does on Linux."""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import usernet
from usernet.api.socket import _TCP_INFO_FIELDS, _TCP_INFO_STRUCT
from usernet.links import Switch

A, B = "10.4.0.1", "10.4.0.2"


@pytest.fixture
def hosts() -> Iterator[tuple[usernet.Host, usernet.Host]]:
    switch = Switch()
    with usernet.Host(switch.port(), addr=f"{A}/24", seed=1) as a, usernet.Host(switch.port(), addr=f"{B}/24",
                                                                                 seed=2) as b:
        yield a, b


@pytest.fixture
def captured() -> Iterator[tuple[usernet.Host, usernet.Host, list[bytes]]]:
    """Two hosts and every frame the switch carries."""
    switch = Switch()
    frames: list[bytes] = []
    switch.on_frame = lambda port, frame: frames.append(bytes(frame))
    with usernet.Host(switch.port(), addr=f"{A}/24", seed=1) as a, usernet.Host(switch.port(), addr=f"{B}/24",
                                                                                 seed=2) as b:
        yield a, b, frames


def serve(host: usernet.Host, port: int, handle: Callable[[usernet.Socket], None]) -> usernet.Socket:
    server = host.create_server(("", port))

    def loop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return

            def run(conn: usernet.Socket = conn) -> None:
                with conn:
                    try:
                        handle(conn)
                    except OSError:
                        pass

            threading.Thread(target=run, daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return server


def echo(conn: usernet.Socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def recv_exactly(conn, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = conn.recv(n - len(got))
        assert chunk
        got += chunk
    return bytes(got)


def kernel_pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    return listener, client, server


def outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except OSError as err:
        return type(err), err.errno


# ---------------------------------------------------------------- 2. a host that was never started


def test_blocking_calls_on_a_host_never_started_fail_at_once() -> None:
    host = usernet.Host(Switch().port(), addr=f"{A}/24")  # no `with`, no start()
    try:
        for call in (lambda: host.socket().connect((B, 80)),
                     lambda: host.create_connection((B, 80), timeout=3),
                     lambda: host.create_server(("", 81)).accept(),
                     lambda: host.socket(type=socket.SOCK_DGRAM).recvfrom(10)):
            start = time.monotonic()
            with pytest.raises(OSError) as info:
                call()
            assert time.monotonic() - start < 0.5
            assert info.value.errno == errno.ENETDOWN
            assert "host.start()" in str(info.value) and "with host:" in str(info.value)
        # Non-blocking calls need no runtime and keep their usual answers.
        sock = host.socket()
        sock.setblocking(False)
        assert sock.connect_ex((B, 80)) == errno.EINPROGRESS
        sock.close()
    finally:
        host.close()


# ---------------------------------------------------------------- sendmsg / recvmsg / recvmsg_into


def test_udp_sendmsg_recvmsg_match_the_kernel(hosts) -> None:
    a, b = hosts

    def exchange(make_server, make_client, dst_host: str, bind_host: str) -> list[object]:
        with make_server() as server, make_client() as client:
            server.bind((bind_host, 0))
            server.settimeout(5)
            port = server.getsockname()[1]
            results: list[object] = [client.sendmsg([b"hello ", memoryview(b"world")], [], 0, (dst_host, port))]
            data, ancdata, flags, address = server.recvmsg(5)
            results.append((data, ancdata, flags, address[1] == client.getsockname()[1]))
            client.sendmsg([b"abc"], (), 0, (dst_host, port))
            results.append(server.recvmsg(100)[:3])
            client.sendto(b"scatter me", (dst_host, port))
            first, second = bytearray(4), bytearray(3)
            nbytes, ancdata, flags, _ = server.recvmsg_into([first, memoryview(second)])
            results.append((nbytes, ancdata, flags, bytes(first), bytes(second)))
            for bad in ((-1,), (1, -1)):
                try:
                    server.recvmsg(*bad)
                except ValueError as err:
                    results.append(str(err))
            return results

    ours = exchange(lambda: b.socket(type=socket.SOCK_DGRAM), lambda: a.socket(type=socket.SOCK_DGRAM), B, "")
    kernel = lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # noqa: E731
    theirs = exchange(kernel, kernel, "127.0.0.1", "127.0.0.1")
    assert ours == theirs
    assert ours[:4] == [11, (b"hello", [], socket.MSG_TRUNC, True), (b"abc", [], 0),
                        (7, [], socket.MSG_TRUNC, b"scat", b"ter")]


def test_tcp_recvmsg_and_sendmsg_match_the_kernel(hosts) -> None:
    a, b = hosts
    serve(b, 7, echo)

    def exchange(client) -> list[object]:
        client.settimeout(5)
        sent = client.sendmsg([b"one ", b"two"])
        first = client.recvmsg(4)
        rest = b""
        while len(rest) < 3:
            rest += client.recvmsg(100)[0]
        client.sendall(b"peek")
        time.sleep(0.1)
        peeked = client.recvmsg(4, 0, socket.MSG_PEEK)
        buf = bytearray(4)
        into = client.recvmsg_into([buf])
        return [sent, first, rest, peeked, into, bytes(buf)]

    ours = exchange(a.create_connection((B, 7), timeout=5))
    listener, client, server = kernel_pair()
    threading.Thread(target=echo, args=(server,), daemon=True).start()
    theirs = exchange(client)
    for s in (listener, client, server):
        s.close()
    assert ours == theirs == [7, (b"one ", [], 0, None), b"two", (b"peek", [], 0, None), (4, [], 0, None), b"peek"]


def test_sendmsg_with_ancillary_data_is_refused_clearly(hosts) -> None:
    a, _ = hosts
    with a.socket(type=socket.SOCK_DGRAM) as sock:
        with pytest.raises(OSError) as info:
            sock.sendmsg([b"x"], [(socket.IPPROTO_IP, socket.IP_TTL, struct.pack("i", 5))], 0, (B, 9))
        assert info.value.errno == errno.EOPNOTSUPP


# ---------------------------------------------------------------- sendfile


def test_sendfile_sends_the_range_and_moves_the_file_position(hosts, tmp_path) -> None:
    a, b = hosts
    serve(b, 7, echo)
    payload = bytes(range(256)) * 1000
    path = tmp_path / "payload.bin"
    path.write_bytes(payload)
    with a.create_connection((B, 7), timeout=10) as conn, open(path, "rb") as file:
        assert conn.sendfile(file, 1000, 150_000) == 150_000
        assert file.tell() == 151_000
        assert recv_exactly(conn, 150_000) == payload[1000:151_000]
        file.seek(0)
        assert conn.sendfile(file) == len(payload)
        assert recv_exactly(conn, len(payload)) == payload
        assert conn.sendfile(file) == 0  # at EOF already
        with open(path) as text, pytest.raises(ValueError, match="binary mode"):
            conn.sendfile(text)
        with pytest.raises(ValueError, match="positive integer"):
            conn.sendfile(file, 0, 0)
        conn.setblocking(False)
        with pytest.raises(ValueError, match="non-blocking"):
            conn.sendfile(file)
    with a.socket(type=socket.SOCK_DGRAM) as udp, open(path, "rb") as file:
        with pytest.raises(ValueError, match="SOCK_STREAM"):
            udp.sendfile(file)


# ---------------------------------------------------------------- dup


def test_dup_shares_the_connection_until_the_last_close(hosts) -> None:
    a, b = hosts
    received: list[bytes] = []
    done = threading.Event()

    def collect(conn: usernet.Socket) -> None:
        conn.settimeout(10)
        while data := conn.recv(65536):
            received.append(data)
        done.set()

    serve(b, 9, collect)
    conn = a.create_connection((B, 9), timeout=5)
    twin = conn.dup()
    assert twin is not conn and twin.gettimeout() == 5
    assert twin.getsockname() == conn.getsockname() and twin.getpeername() == conn.getpeername()
    assert twin.fileno() != conn.fileno()
    conn.sendall(b"from the original ")
    conn.close()
    assert conn.fileno() == -1
    with pytest.raises(OSError) as info:
        conn.send(b"x")
    assert info.value.errno == errno.EBADF
    twin.sendall(b"and from the dup")
    assert not done.wait(0.3)  # no EOF while the dup is open, as with a dup'd fd
    twin.close()
    assert done.wait(5)
    assert b"".join(received) == b"from the original and from the dup"


def test_dup_of_a_listener_and_a_udp_socket(hosts) -> None:
    a, b = hosts
    server = b.create_server(("", 8000))
    twin = server.dup()
    server.close()
    client = a.create_connection((B, 8000), timeout=5)
    twin.settimeout(5)
    conn, _ = twin.accept()
    conn.close()
    client.close()
    twin.close()
    with pytest.raises(ConnectionRefusedError):
        a.create_connection((B, 8000), timeout=5)
    udp = b.socket(type=socket.SOCK_DGRAM)
    udp.bind(("", 5000))
    other = udp.dup()
    udp.close()
    other.settimeout(5)
    with a.socket(type=socket.SOCK_DGRAM) as sender:
        sender.sendto(b"hi", (B, 5000))
        assert other.recvfrom(10)[0] == b"hi"
    other.close()


# ---------------------------------------------------------------- SO_REUSEPORT


def test_reuseport_option_and_binding_rules_match_the_kernel(hosts) -> None:
    a, _ = hosts

    def rules(make, host: str) -> list[object]:
        out: list[object] = []
        with make() as first, make() as second, make() as third:
            out.append(first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))
            first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            out.append(first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))
            first.bind((host, 0))
            port = first.getsockname()[1]
            first.listen()
            second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            out.append(outcome(lambda: second.bind((host, port))))
            out.append(outcome(lambda: second.listen()))
            out.append(outcome(lambda: third.bind((host, port))))  # third did not ask: refused
        with make(socket.SOCK_DGRAM) as u1, make(socket.SOCK_DGRAM) as u2:
            for u in (u1, u2):
                u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            u1.bind((host, 0))
            out.append(outcome(lambda: u2.bind((host, u1.getsockname()[1]))))
        return out

    ours = rules(lambda kind=socket.SOCK_STREAM: a.socket(type=kind), A)
    theirs = rules(lambda kind=socket.SOCK_STREAM: socket.socket(socket.AF_INET, kind), "127.0.0.1")
    assert ours == theirs == [0, 1, None, None, (OSError, errno.EADDRINUSE), None]


def test_reuseport_listeners_all_accept_and_outlive_each_other(hosts) -> None:
    a, b = hosts
    first = b.create_server(("", 8080), reuse_port=True)
    second = b.create_server(("", 8080), reuse_port=True)
    for server in (first, second):
        server.settimeout(5)
    clients = [a.create_connection((B, 8080), timeout=5) for _ in range(4)]
    accepted = [first.accept()[0], second.accept()[0], first.accept()[0], second.accept()[0]]
    first.close()  # the port stays open while the other listener does
    late = a.create_connection((B, 8080), timeout=5)
    accepted.append(second.accept()[0])
    for sock in clients + accepted + [late, second]:
        sock.close()
    with pytest.raises(ConnectionRefusedError):
        a.create_connection((B, 8080), timeout=5)


# ---------------------------------------------------------------- IP_TTL / IP_TOS


def ip_headers(frames: list[bytes], proto: int, src: str) -> list[tuple[int, int]]:
    """(tos, ttl) of every IPv4 packet of *proto* from *src* in the captured Ethernet frames."""
    out = []
    for frame in frames:
        if frame[12:14] == b"\x08\x00" and frame[23] == proto and socket.inet_ntoa(frame[26:30]) == src:
            out.append((frame[15], frame[22]))
    return out


def test_ip_ttl_and_tos_values_match_the_kernel(hosts) -> None:
    a, _ = hosts

    def values(make) -> list[object]:
        out: list[object] = []
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with make(kind) as s:
                out.append((s.getsockopt(socket.IPPROTO_IP, socket.IP_TTL),
                            s.getsockopt(socket.IPPROTO_IP, socket.IP_TOS)))
                for ttl in (0, 256, 255, -1, 7):
                    out.append(outcome(lambda ttl=ttl: s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)))
                    out.append(s.getsockopt(socket.IPPROTO_IP, socket.IP_TTL))
                for tos in (0x1FF, 0x13, 0xFF, 0x28):
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
                    out.append(s.getsockopt(socket.IPPROTO_IP, socket.IP_TOS))
                out.append(s.getsockopt(socket.IPPROTO_IP, socket.IP_TTL, 4))
        return out

    ours = values(lambda kind: a.socket(type=kind))
    theirs = values(lambda kind: socket.socket(socket.AF_INET, kind))
    assert ours == theirs


def test_udp_datagrams_carry_the_sockets_ttl_and_tos(captured) -> None:
    a, b, frames = captured
    with b.socket(type=socket.SOCK_DGRAM) as server, a.socket(type=socket.SOCK_DGRAM) as marked, \
            a.socket(type=socket.SOCK_DGRAM) as plain:
        server.bind(("", 5353))
        server.settimeout(5)
        marked.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 3)
        marked.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xB8)
        marked.sendto(b"x" * 3000, (B, 5353))  # fragmented: every fragment carries them
        plain.sendto(b"y", (B, 5353))
        assert len(server.recvfrom(4000)[0]) == 3000 and server.recvfrom(10)[0] == b"y"
    headers = ip_headers(frames, 17, A)
    assert headers[:-1] == [(0xB8, 3)] * 3 and headers[-1] == (0, 64)


def test_tcp_segments_carry_the_sockets_ttl_and_tos_both_ways(captured) -> None:
    a, b, frames = captured
    server = b.socket()
    server.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 9)  # inherited by accepted sockets
    server.bind(("", 80))
    server.listen()
    client = a.socket()
    client.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 5)
    client.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
    client.settimeout(5)
    client.connect((B, 80))
    server.settimeout(5)
    conn, _ = server.accept()
    assert conn.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 9
    client.sendall(b"data" * 1000)
    recv_exactly(conn, 4000)
    conn.sendall(b"back")
    assert recv_exactly(client, 4) == b"back"
    client.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 200)  # applies to what follows at once
    client.sendall(b"later")
    recv_exactly(conn, 5)
    for sock in (client, conn, server):
        sock.close()
    ours = ip_headers(frames, 6, A)
    theirs = ip_headers(frames, 6, B)
    assert (0x10, 5) in ours and (0x10, 200) in ours and set(ours) == {(0x10, 5), (0x10, 200)}
    assert theirs and set(theirs) == {(0, 9)}  # the SYN-ACK included


# ---------------------------------------------------------------- TCP_INFO


def unpack_info(raw: bytes) -> dict[str, int]:
    return dict(zip((name for name, _ in _TCP_INFO_FIELDS), _TCP_INFO_STRUCT.unpack(raw), strict=True))


def test_tcp_info_has_linuxs_layout_and_values(hosts) -> None:
    a, b = hosts
    serve(b, 7, echo)

    def snapshot(client) -> dict[str, object]:
        client.sendall(b"z" * 10_000)
        recv_exactly(client, 10_000)
        time.sleep(0.05)
        raw = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_STRUCT.size)
        info = unpack_info(raw)
        return {"len": len(raw), "state": info["tcpi_state"], "options": info["tcpi_options"],
                "acked": info["tcpi_bytes_acked"], "received": info["tcpi_bytes_received"],
                "sent": info["tcpi_bytes_sent"], "mss_matches": info["tcpi_snd_mss"] == client.getsockopt(
                    socket.IPPROTO_TCP, socket.TCP_MAXSEG), "rto_set": info["tcpi_rto"] >= 200_000,
                "rtt_set": info["tcpi_rtt"] > 0, "cwnd_set": info["tcpi_snd_cwnd"] >= 2,
                "windows": info["tcpi_snd_wnd"] > 0 and info["tcpi_rcv_wnd"] > 0, "unacked": info["tcpi_unacked"],
                "short": len(client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)),
                "as_int": client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO) & 0xFF}

    with a.create_connection((B, 7), timeout=5) as conn:
        ours = snapshot(conn)
        wscale = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[6]
        with conn._host._lock:
            assert wscale == conn._conn.snd_wscale | conn._conn.rcv_wscale << 4
    listener, client, server = kernel_pair()
    threading.Thread(target=echo, args=(server,), daemon=True).start()
    theirs = snapshot(client)
    for s in (listener, client, server):
        s.close()
    assert ours == theirs == {"len": 248, "state": 1, "options": 7, "acked": 10_001, "received": 10_000,
                              "sent": 10_000, "mss_matches": True, "rto_set": True, "rtt_set": True,
                              "cwnd_set": True, "windows": True, "unacked": 0, "short": 8, "as_int": 1}


def test_tcp_info_on_unconnected_listening_and_udp_sockets_matches_the_kernel(hosts) -> None:
    a, _ = hosts

    def states(make) -> list[object]:
        with make() as fresh, make() as listening, make(socket.SOCK_DGRAM) as udp:
            listening.bind(("", 0))
            listening.listen()
            return [fresh.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0],
                    listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0],
                    outcome(lambda: udp.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)),
                    outcome(lambda: fresh.setsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))]

    ours = states(lambda kind=socket.SOCK_STREAM: a.socket(type=kind))
    theirs = states(lambda kind=socket.SOCK_STREAM: socket.socket(socket.AF_INET, kind))
    assert ours == theirs == [7, 10, (OSError, errno.EOPNOTSUPP), (OSError, errno.ENOPROTOOPT)]


# ---------------------------------------------------------------- MSG_WAITALL, MSG_PEEK, MSG_DONTWAIT


def test_msg_waitall_blocks_until_all_or_eof(hosts) -> None:
    a, b = hosts

    def trickle(conn: usernet.Socket) -> None:
        for _ in range(3):
            time.sleep(0.05)
            conn.sendall(b"x" * 3000)
        conn.sendall(b"y" * 2_500_000)  # more than the receive buffer: must drain as it comes
        conn.sendall(b"tail")
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)

    serve(b, 9, trickle)
    with a.create_connection((B, 9), timeout=10) as conn:
        assert conn.recv(9000, socket.MSG_WAITALL) == b"x" * 9000
        buf = bytearray(2_500_000)
        assert conn.recv_into(buf, 0, socket.MSG_WAITALL) == len(buf) and buf == b"y" * 2_500_000
        assert conn.recv(1000, socket.MSG_WAITALL) == b"tail"  # EOF ends the wait early
        assert conn.recv(10, socket.MSG_WAITALL) == b""


def test_msg_waitall_with_a_receive_timeout_returns_what_came_like_the_kernel(hosts) -> None:
    a, b = hosts

    def once(conn: usernet.Socket) -> None:
        conn.sendall(b"abc")
        conn.recv(1)

    serve(b, 9, once)

    def run(client) -> list[object]:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200_000))
        start = time.monotonic()
        data = client.recv(10, socket.MSG_WAITALL)
        waited = 0.15 < time.monotonic() - start < 1.0
        return [data, waited, outcome(lambda: client.recv(10, socket.MSG_WAITALL))]

    conn = a.create_connection((B, 9))
    ours = run(conn)
    conn.close()
    listener, client, server = kernel_pair()
    server.sendall(b"abc")
    theirs = run(client)
    for s in (listener, client, server):
        s.close()
    assert ours == theirs == [b"abc", True, (BlockingIOError, errno.EAGAIN)]


def test_msg_peek_and_msg_dontwait_match_the_kernel(hosts) -> None:
    a, b = hosts
    serve(b, 7, echo)

    def run(client) -> list[object]:
        out = [outcome(lambda: client.recv(10, socket.MSG_DONTWAIT))]
        client.sendall(b"peekaboo")
        time.sleep(0.1)
        out += [client.recv(4, socket.MSG_PEEK), client.recv(100, socket.MSG_DONTWAIT)]
        return out

    ours = run(a.create_connection((B, 7), timeout=None))
    listener, client, server = kernel_pair()
    threading.Thread(target=echo, args=(server,), daemon=True).start()
    theirs = run(client)
    for s in (listener, client, server):
        s.close()
    assert ours == theirs == [(BlockingIOError, errno.EAGAIN), b"peek", b"peekaboo"]


# ---------------------------------------------------------------- SO_RCVTIMEO / SO_SNDTIMEO


def test_timeval_options_encode_and_validate_like_the_kernel(hosts) -> None:
    a, _ = hosts

    def run(make) -> list[object]:
        with make() as s:
            out: list[object] = [s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)]
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 3, 500_000))
            # multiples of every HZ's jiffy, which the kernel rounds up to
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 200_000))
            out += [struct.unpack("ll", s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)),
                    struct.unpack("ll", s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16)),
                    s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO),
                    s.gettimeout(),  # independent of settimeout
                    outcome(lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 1)),
                    outcome(lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, b"short")),
                    outcome(lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                                 struct.pack("ll", 0, 1_000_000)))]
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", -5, 0))
            out.append(struct.unpack("ll", s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)))
            return out

    ours = run(a.socket)
    theirs = run(socket.socket)
    assert ours == theirs
    assert ours[1:4] == [(3, 500_000), (0, 200_000), 3]


def test_receive_and_send_timeouts_expire_like_the_kernel(hosts) -> None:
    a, b = hosts

    def sink(conn: usernet.Socket) -> None:
        conn.recv(1)  # reads one byte, then nothing: the sender's buffer fills up
        time.sleep(5)

    serve(b, 9, sink)
    rcv = struct.pack("ll", 0, 200_000)

    def run(client, listener) -> list[object]:
        out: list[object] = []
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, rcv)
        start = time.monotonic()
        out.append(outcome(lambda: client.recv(10)))
        out.append(0.15 < time.monotonic() - start < 1.0)
        client.settimeout(0.4)  # a Python timeout wins: CPython polls, the kernel timer never runs
        start = time.monotonic()
        out.append(outcome(lambda: client.recv(10)))
        out.append(0.35 < time.monotonic() - start < 1.2)
        client.settimeout(None)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, rcv)
        out.append(outcome(listener.accept))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 200_000))
        client.send(b"!")
        start = time.monotonic()

        def flood() -> None:
            while True:
                client.send(b"x" * 65536)

        out.append(outcome(flood))
        out.append(0.15 < time.monotonic() - start < 5.0)
        return out

    ours_listener = a.create_server(("", 7777))
    ours_client = a.create_connection((B, 9))
    ours = run(ours_client, ours_listener)
    with pytest.raises(BlockingIOError):  # sendall too (the kernel's buffer sometimes has room left)
        ours_client.sendall(b"x" * 65536)
    ours_client.close()
    ours_listener.close()
    listener, client, server = kernel_pair()
    threading.Thread(target=sink, args=(server,), daemon=True).start()
    other = socket.create_server(("127.0.0.1", 0))
    theirs = run(client, other)
    for s in (listener, client, server, other):
        s.close()
    expired = (BlockingIOError, errno.EAGAIN)
    assert ours == theirs == [expired, True, (TimeoutError, None), True, expired, expired, True]


# ---------------------------------------------------------------- service names


def test_getaddrinfo_and_create_connection_take_service_names(hosts) -> None:
    a, b = hosts

    def shape(results) -> list[tuple[object, ...]]:
        return [(family, kind, proto, port) for family, kind, proto, _, (_, port) in results]

    for service, kind in (("http", 0), ("domain", 0), ("domain", socket.SOCK_DGRAM), ("80", socket.SOCK_STREAM),
                          (b"ssh", 0)):
        ours = shape(a.getaddrinfo(B, service, type=kind))
        theirs = shape(socket.getaddrinfo("127.0.0.1", service, socket.AF_INET, kind))
        assert ours == [t for t in theirs if t[1] != socket.SOCK_RAW]
    assert shape(a.getaddrinfo(B, "http")) == [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, 80)]
    for call in (lambda: a.getaddrinfo(B, "no-such-service"),
                 lambda: socket.getaddrinfo("127.0.0.1", "no-such-service")):
        with pytest.raises(socket.gaierror) as info:
            call()
        assert info.value.errno == socket.EAI_SERVICE
    serve(b, 7, echo)  # "echo" is 7/tcp
    with a.create_connection((B, "echo"), timeout=5) as conn:
        assert conn.getpeername() == (B, 7)
        conn.sendall(b"by name")
        assert recv_exactly(conn, 7) == b"by name"
    with a.create_connection((B, "7"), timeout=5) as conn:
        assert conn.getpeername() == (B, 7)
    before = len(a._sockets)
    with pytest.raises(socket.gaierror) as info:
        a.create_connection((B, "no-such-service"))
    assert info.value.errno == socket.EAI_SERVICE and len(a._sockets) == before
