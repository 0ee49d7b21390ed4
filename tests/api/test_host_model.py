"""The host model: loopback, several interfaces and addresses, routes, forwarding (in memory)."""

from __future__ import annotations

import errno
import hashlib
import threading

import pytest

import usernet
from usernet.links.memory import Switch
from usernet.wire import ethernet, icmp, ipv4


def _echo_server(host: usernet.Host, address: tuple[str, int]) -> threading.Thread:
    server = host.create_server(address)

    def serve() -> None:
        with server:
            try:
                peer, _ = server.accept()
                with peer:
                    while data := peer.recv(65536):
                        peer.sendall(data)
            except OSError:
                pass  # the host closed under us at the end of the test

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


# ----------------------------------------------------------------- loopback

@pytest.mark.parametrize("target", ["10.7.0.1", "127.0.0.1", "localhost", "127.1.2.3"])
def test_a_host_talks_to_itself(target: str) -> None:
    with usernet.Host(Switch().port(), addr="10.7.0.1/24") as host:
        _echo_server(host, ("0.0.0.0", 8000))
        with host.create_connection((target, 8000), timeout=5) as conn:
            conn.sendall(b"hello, me")
            assert conn.recv(100) == b"hello, me"
            local, peer = conn.getsockname(), conn.getpeername()
        expected = "127.0.0.1" if target == "localhost" else target
        assert peer == (expected, 8000)
        # The source of a local destination is the destination itself, and 127.0.0.1 for the
        # rest of 127/8 (as `ip route get 127.1.2.3` says on Linux).
        assert local[0] == ("127.0.0.1" if target.startswith("127.") else expected)
        # Nothing of it went on the link: the loopback carried it all.
        assert host.counters.get("eth.rx", 0) == 0
        lo = host.interfaces()[0]
        assert lo["name"] == "lo" and lo["addresses"] == ["127.0.0.1/8"] and lo["mtu"] == 65536
        assert lo["stats"]["rx_packets"] > 0


def test_fifty_megabytes_over_loopback_intact() -> None:
    payload = hashlib.sha256(b"seed").digest() * (50 * 1024 * 1024 // 32)
    with usernet.Host(Switch().port(), addr="10.7.0.1/24") as host:
        server = host.create_server(("127.0.0.1", 8001))
        received = hashlib.sha256()
        total = [0]

        def sink() -> None:
            peer, _ = server.accept()
            with peer:
                while data := peer.recv(1 << 20):
                    received.update(data)
                    total[0] += len(data)

        thread = threading.Thread(target=sink)
        thread.start()
        with host.create_connection(("127.0.0.1", 8001), timeout=10) as conn:
            view = memoryview(payload)
            for start in range(0, len(payload), 1 << 20):
                conn.sendall(view[start:start + (1 << 20)])
        thread.join(60)
        server.close()
    assert total[0] == len(payload)
    assert received.digest() == hashlib.sha256(payload).digest()


@pytest.mark.parametrize("target", ["10.7.0.1", "127.0.0.1"])
def test_udp_and_ping_to_itself(target: str) -> None:
    with usernet.Host(Switch().port(), addr="10.7.0.1/24") as host:
        with host.socket(usernet.AF_INET, usernet.SOCK_DGRAM) as a, \
                host.socket(usernet.AF_INET, usernet.SOCK_DGRAM) as b:
            b.bind((target, 9000))
            a.settimeout(2)
            b.settimeout(2)
            a.sendto(b"ping", (target, 9000))
            data, source = b.recvfrom(100)
            assert data == b"ping" and source[0] == target
            b.sendto(b"pong", source)
            assert a.recvfrom(100) == (b"pong", (target, 9000))
        rtts = host.ping(target, count=2, interval=0.01, timeout=1)
        assert all(rtt is not None for rtt in rtts)


def test_localhost_in_getaddrinfo() -> None:
    with usernet.Host(Switch().port(), addr="10.7.0.1/24") as host:
        infos = host.getaddrinfo("localhost", 80, type=usernet.SOCK_STREAM)
        assert [info[4] for info in infos] == [("127.0.0.1", 80)]


def test_loopback_is_never_seen_from_outside() -> None:
    """A frame from the link claiming 127.0.0.1 (or our own address) as source is a martian."""
    switch = Switch()
    with usernet.Host(switch.port(), addr="10.7.0.1/24") as a, usernet.Host(switch.port(), addr="10.7.0.2/24") as b:
        a.ping("10.7.0.2", count=1)
        echo = icmp.build_echo(True, 1, 1, b"x")
        for src in ("127.0.0.1", "10.7.0.2"):
            packet = bytearray(20 + len(echo))
            ipv4.write_header(packet, 0, src=ipv4.addr(src), dst=ipv4.addr("10.7.0.2"), proto=1,
                              payload_len=len(echo), ident=1)
            packet[20:] = echo
            frame = ethernet.build(ethernet.parse_mac(b.mac), ethernet.parse_mac(a.mac), 0x0800, packet)
            a.link.send(frame)
        import time

        time.sleep(0.2)
        assert b.counters.get("ipv4.martian_source", 0) == 2


# ----------------------------------------------------------------- interfaces, addresses, routes

def test_two_interfaces_longest_prefix_wins() -> None:
    wide, narrow = Switch(), Switch()
    router_side = usernet.Host(wide.port(), addr="10.8.0.1/16", name="multi")
    peer_wide = usernet.Host(wide.port(), addr="10.8.9.9/16")
    peer_narrow = usernet.Host(narrow.port(), addr="10.8.9.9/24")  # the same address, a narrower subnet
    with router_side as host, peer_wide, peer_narrow:
        iface = host.add_interface(narrow.port(), addr="10.8.9.1/24", name="narrow0")
        assert iface.name == "narrow0"
        routes = host.routes()
        assert [r["destination"] for r in routes[:2]] == ["10.8.9.0/24", "10.8.0.0/16"]
        assert host.ping("10.8.9.9", count=1, timeout=2)[0] is not None
        assert peer_narrow.counters.get("icmp.rx_echo_request", 0) == 1
        assert peer_wide.counters.get("icmp.rx_echo_request", 0) == 0
        # Source selection: the narrow interface's address answers for its subnet.
        for target, source in (("10.8.9.9", "10.8.9.1"), ("10.8.200.1", "10.8.0.1")):
            with host.socket(usernet.AF_INET, usernet.SOCK_DGRAM) as sock:
                sock.connect((target, 9))
                assert sock.getsockname()[0] == source
        names = [i["name"] for i in host.interfaces()]
        assert len(names) == 3 and names[0] == "lo" and names[2] == "narrow0"  # names[1]: the switch port's


def test_secondary_address_and_removal_fails_bound_sockets() -> None:
    switch = Switch()
    with usernet.Host(switch.port(), addr="10.9.5.1/24") as a, usernet.Host(switch.port(), addr="10.9.5.2/24") as b:
        b.add_address("10.9.5.3/24")
        assert b.interfaces()[1]["addresses"] == ["10.9.5.2/24", "10.9.5.3/24"]
        _echo_server(b, ("10.9.5.3", 7200))
        conn = a.create_connection(("10.9.5.3", 7200), timeout=5)
        conn.sendall(b"x")
        assert conn.recv(1) == b"x"
        udp = b.socket(usernet.AF_INET, usernet.SOCK_DGRAM)
        udp.bind(("10.9.5.3", 7201))
        udp.settimeout(2)
        b_conn_count = len(b.stack.tcp.connections)
        assert b_conn_count >= 1
        b.remove_address("10.9.5.3")
        with pytest.raises(OSError) as caught:
            udp.recv(10)
        assert caught.value.errno == errno.EADDRNOTAVAIL
        assert not [c for c in b.stack.tcp.connections.values() if c.local_addr == ipv4.addr("10.9.5.3")]
        assert b.interfaces()[1]["addresses"] == ["10.9.5.2/24"]
        # The primary still works, and the connected route stayed (10.9.5.2 is on the subnet).
        assert b.ping("10.9.5.1", count=1)[0] is not None
        conn.close()
        udp.close()


def test_static_route_with_metric_and_an_unreachable_gateway() -> None:
    with usernet.Host(Switch().port(), addr="10.9.6.1/24") as host:
        host.add_route("192.168.50.0/24", via="10.9.6.254", metric=10)
        host.add_route("192.168.50.0/24", via="10.9.6.253", metric=5)
        assert [r["via"] for r in host.routes() if r["destination"] == "192.168.50.0/24"] == \
            ["10.9.6.253", "10.9.6.254"]
        assert host.stack.next_hop(ipv4.addr("192.168.50.7")) == ipv4.addr("10.9.6.253")
        with pytest.raises(OSError) as caught:
            host.add_route("172.16.0.0/12", via="10.1.1.1")
        assert caught.value.errno == errno.ENETUNREACH
        with pytest.raises(OSError) as caught:
            host.stack.next_hop(ipv4.addr("172.16.0.1"))
        assert caught.value.errno == errno.ENETUNREACH


# ----------------------------------------------------------------- forwarding

class Capture:
    def __init__(self, switch: Switch) -> None:
        self.frames: list[bytes] = []
        switch.on_frame = lambda port, frame: self.frames.append(bytes(frame))

    def ipv4(self) -> list[ipv4.IPv4Header]:
        out = []
        for frame in self.frames:
            _, _, ethertype, offset = ethernet.parse(frame)
            if ethertype == ethernet.ETHERTYPE_IPV4:
                out.append(ipv4.parse(frame, offset, verify_checksum=True))
        return out


def _routed(forward: bool = True):  # type: ignore[no-untyped-def]
    left, right = Switch(), Switch()
    a = usernet.Host(left.port(), addr="10.20.1.2/24", gateway="10.20.1.1", name="a")
    router = usernet.Host(left.port(), addr="10.20.1.1/24", name="router", forward=forward)
    b = usernet.Host(right.port(), addr="10.20.2.2/24", gateway="10.20.2.1", name="b")
    return left, right, a, router, b


def test_forwarding_ping_tcp_and_ttl() -> None:
    left, right, a, router, b = _routed()
    capture = Capture(right)
    with a, router, b:
        router.add_interface(right.port(), addr="10.20.2.1/24")
        assert a.ping("10.20.2.2", count=2, interval=0.01)[1] is not None
        assert b.ping("10.20.1.2", count=1)[0] is not None
        _echo_server(b, ("0.0.0.0", 7300))
        payload = bytes(range(256)) * 4000
        with a.create_connection(("10.20.2.2", 7300), timeout=5) as conn:
            received = bytearray()

            def reader() -> None:
                while len(received) < len(payload) and (chunk := conn.recv(65536)):
                    received.extend(chunk)

            thread = threading.Thread(target=reader)
            thread.start()
            conn.sendall(payload)
            thread.join(20)
        assert bytes(received) == payload
        assert router.counters["ipv4.forwarded"] > 0
    from_a = [h for h in capture.ipv4() if h.src == ipv4.addr("10.20.1.2")]
    assert from_a and all(h.ttl == 63 for h in from_a)  # decremented once, checksum still valid


def test_forwarding_is_off_by_default() -> None:
    left, right, a, router, b = _routed(forward=False)
    with a, router, b:
        router.add_interface(right.port(), addr="10.20.2.1/24")
        assert a.ping("10.20.2.2", count=1, timeout=0.5)[0] is None
        assert router.counters["ipv4.not_for_us"] >= 1 and router.counters.get("ipv4.forwarded", 0) == 0


def test_ttl_one_gets_time_exceeded_from_the_router() -> None:
    left, right, a, router, b = _routed()
    with a, router, b:
        router.add_interface(right.port(), addr="10.20.2.1/24")
        with a.socket(usernet.AF_INET, usernet.SOCK_DGRAM) as probe:
            probe.setsockopt(usernet.IPPROTO_IP, usernet.IP_TTL, 1)  # traceroute's first probe
            replies: list[dict] = []
            a.ping("10.20.1.1", count=1)  # router's MAC known
            probe.sendto(b"probe", ("10.20.2.2", 33434))
            import time

            time.sleep(0.2)
        assert router.counters["ipv4.ttl_exceeded"] == 1
        assert router.counters["icmp.tx_error"] >= 1
        assert a.counters["icmp.rx_error"] >= 1 and not replies


def test_df_larger_than_next_mtu_gets_fragmentation_needed_and_tcp_adapts() -> None:
    # Both ends have 1500-byte links (so they agree on a 1460-byte MSS); the router's second
    # link carries only 1000: the first full-sized segment from a meets it.
    left, right, a, router, b = _routed()
    with a, router, b:
        router.add_interface(right.port(mtu=1000), addr="10.20.2.1/24", mtu=1000)
        _echo_server(b, ("0.0.0.0", 7400))
        payload = b"m" * 200_000
        with a.create_connection(("10.20.2.2", 7400), timeout=5) as conn:
            conn.settimeout(10)
            conn.sendall(payload)
            received = bytearray()
            while len(received) < len(payload):
                chunk = conn.recv(65536)
                assert chunk
                received += chunk
            assert bytes(received) == payload
            # a's MSS came down to what the 1000-byte link carries (RFC 1191 path MTU discovery).
            assert conn._conn.mss <= 1000 - 40
        assert router.counters["ipv4.frag_needed"] >= 1
        # Without DF (a big UDP datagram) the router fragments instead.
        with a.socket(usernet.AF_INET, usernet.SOCK_DGRAM) as tx, b.socket(usernet.AF_INET, usernet.SOCK_DGRAM) as rx:
            rx.bind(("10.20.2.2", 9100))
            rx.settimeout(2)
            tx.sendto(b"u" * 1400, ("10.20.2.2", 9100))
            assert rx.recv(2000) == b"u" * 1400
        assert router.counters["ipv4.fragments_tx"] >= 2


def test_many_short_connections_over_loopback_never_wait_for_a_retransmission() -> None:
    """The server's side of each closed connection sits in TIME-WAIT while the client may pick the
    same port again: the new SYN must be accepted there (RFC 6191 by timestamps, which are
    per-4-tuple monotonic), never answered with an ACK that costs a 1 s SYN retransmission."""
    with usernet.Host(Switch().port(), addr="10.7.0.1/24", seed=5) as host:
        server = host.create_server(("127.0.0.1", 8100))

        def serve() -> None:
            while True:
                try:
                    peer, _ = server.accept()
                except OSError:
                    return
                with peer:
                    peer.sendall(peer.recv(100))

        threading.Thread(target=serve, daemon=True).start()
        for _ in range(600):
            with host.create_connection(("127.0.0.1", 8100), timeout=5) as conn:
                conn.sendall(b"y" * 100)
                assert conn.recv(100)
        server.close()
        counters = host.counters
    assert counters.get("tcp.rto_expired", 0) == 0, counters
    assert counters["tcp.time_wait_reused"] > 0  # the case did arise


@pytest.mark.root
def test_a_host_on_the_kernels_lo_device() -> None:
    """AF_PACKET on Linux's lo: its MTU (65,536) is capped to one datagram and its name does not
    clash with usernet's own loopback."""
    from usernet.links import Packet

    with usernet.Host(Packet("lo"), addr="10.99.9.2/24") as host:
        names = [iface["name"] for iface in host.interfaces()]
        assert names == ["lo", "lo1"]
        assert host.interfaces()[1]["mtu"] == 65535
        assert host.ping("localhost", count=1)[0] is not None
