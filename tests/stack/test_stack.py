"""The sans-IO host: ARP, IPv4 in/out, fragmentation and reassembly, ICMP, UDP, in virtual time."""

from __future__ import annotations

import errno
import random

import pytest

from tests.stack.netsim import Segment
from usernet.stack.core import Stack
from usernet.wire import arp, ethernet, icmp, ipv4, udp

A_MAC = bytes.fromhex("020000000001")
B_MAC = bytes.fromhex("020000000002")
A_IP = ipv4.addr("10.0.0.1")
B_IP = ipv4.addr("10.0.0.2")


def pair(**kw) -> tuple[Stack, Stack, Segment]:
    a = Stack(mac=A_MAC, addr="10.0.0.1/24", rng=random.Random(1), **kw)
    b = Stack(mac=B_MAC, addr="10.0.0.2/24", rng=random.Random(2), **kw)
    net = Segment(a, b)
    net.exchange()  # gratuitous ARPs
    return a, b, net


def frames_of(net: Segment, sender: Stack) -> list[bytes]:
    return [f for _, s, f in net.captured if s is sender]


def test_gratuitous_arp_on_address_set() -> None:
    a, b, net = pair()
    first = frames_of(net, a)[0]
    dst, src, etype, off = ethernet.parse(first)
    packet = arp.parse(first, off)
    assert dst == ethernet.BROADCAST and etype == ethernet.ETHERTYPE_ARP
    assert packet.sender_ip == packet.target_ip == A_IP and packet.sender_mac == A_MAC
    # RFC 826 merge rule: a gratuitous ARP does not create entries in strangers' caches.
    assert b.neighbours.lookup(A_IP, 0.0) is None


def test_first_udp_datagram_survives_arp_resolution() -> None:
    a, b, net = pair()
    server = b.udp_open(0, 7)
    client = a.udp_open()
    a.udp_send(client, b"hello", B_IP, 7)
    net.exchange()
    assert server.pop() == (b"hello", (A_IP, client.local_port))
    assert a.neighbours.lookup(B_IP, 0.0).mac == B_MAC
    assert b.neighbours.lookup(A_IP, 0.0).mac == A_MAC  # created: the request was for b
    assert a.counters["arp.tx_request"] == 1 and b.counters["arp.tx_reply"] == 1


def test_arp_replies_only_for_own_address() -> None:
    a, b, net = pair()
    request = arp.build(arp.OP_REQUEST, A_MAC, A_IP, b"\0" * 6, ipv4.addr("10.0.0.99"))
    b.receive(ethernet.build(ethernet.BROADCAST, A_MAC, ethernet.ETHERTYPE_ARP, request), 0.0)
    assert b.poll(0.0) == []
    assert b.counters["arp.request_not_for_us"] == 1


def test_ping_with_fragmentation_both_ways() -> None:
    a, b, net = pair()
    endpoint = a.echo_open()
    data = bytes(range(256)) * 16  # 4096 bytes: three fragments each way at MTU 1500
    a.echo_send(endpoint, B_IP, 1, data)
    net.exchange()
    assert a.counters["ipv4.fragments_tx"] == 3 and b.counters["ipv4.fragments_tx"] == 3
    assert b.counters["ipv4.reassembled"] == 1 and a.counters["ipv4.reassembled"] == 1
    src, seq, body, ttl, _ = endpoint.queue.popleft()
    assert (src, seq, body, ttl) == (B_IP, 1, data, 64)


def test_udp_8000_bytes_and_broadcast() -> None:
    a, b, net = pair()
    server = b.udp_open(0, 9000)
    client = a.udp_open()
    payload = random.Random(5).randbytes(8000)
    a.udp_send(client, payload, B_IP, 9000)
    net.exchange()
    assert server.pop()[0] == payload
    with pytest.raises(PermissionError):
        a.udp_send(client, b"x", 0xFFFFFFFF, 9000)
    client.broadcast = True
    a.udp_send(client, b"to all", ipv4.addr("10.0.0.255"), 9000)
    net.exchange()
    assert server.pop()[0] == b"to all"


def test_closed_udp_port_gives_icmp_and_econnrefused() -> None:
    a, b, net = pair()
    client = a.udp_open()
    client.remote_addr, client.remote_port = B_IP, 4444
    a.udp_send(client, b"anyone?", B_IP, 4444)
    net.exchange()
    assert b.counters["udp.no_port"] == 1 and b.counters["icmp.tx_error"] == 1
    err = client.take_error()
    assert isinstance(err, ConnectionRefusedError) and err.errno == errno.ECONNREFUSED


def test_arp_failure_reports_host_unreachable_after_retries() -> None:
    a, b, net = pair()
    client = a.udp_open()
    ghost = ipv4.addr("10.0.0.77")
    client.remote_addr, client.remote_port = ghost, 53
    a.udp_send(client, b"?", ghost, 53)
    net.run(0.5)
    assert client.error is None
    net.run(5.0)
    assert a.counters["arp.tx_request"] == 3 and a.counters["arp.resolve_failed"] == 1
    assert client.take_error().errno == errno.EHOSTUNREACH
    assert not a.neighbours.pending


def test_arp_pending_queue_is_bounded() -> None:
    a, b, net = pair()
    client = a.udp_open()
    ghost = ipv4.addr("10.0.0.77")
    for i in range(40):
        a.udp_send(client, bytes([i]), ghost, 53)
    assert len(a.neighbours.pending[ghost].queue) == a.config.arp.max_queue_per_neighbour
    assert a.counters["arp.queue_full"] == 40 - a.config.arp.max_queue_per_neighbour


def test_stale_entry_is_reprobed_and_used() -> None:
    a, b, net = pair()
    server = b.udp_open(0, 7)
    client = a.udp_open()
    a.udp_send(client, b"1", B_IP, 7)
    net.exchange()
    net.run(40.0)  # past reachable_time: stale, still usable
    before = a.counters["arp.tx_request"]
    a.udp_send(client, b"2", B_IP, 7)
    net.exchange()
    assert a.counters["arp.tx_request"] == before + 1
    assert [server.pop()[0], server.pop()[0]] == [b"1", b"2"]


def build_frame(src_ip: int, dst_ip: int, ip_payload: bytes, proto: int = 17, ident: int = 1, flags_frag: int = 0,
                src_mac: bytes = A_MAC, dst_mac: bytes = B_MAC) -> bytes:
    packet = ipv4.build(src=src_ip, dst=dst_ip, proto=proto, payload=ip_payload, ident=ident, flags_frag=flags_frag)
    return ethernet.build(dst_mac, src_mac, ethernet.ETHERTYPE_IPV4, packet)


@pytest.mark.parametrize("mutate, reason", [
    (lambda f: f[:20], "ipv4.truncated"),
    (lambda f: f[:14] + bytes([0x65]) + f[15:], "ipv4.bad_version"),
    (lambda f: f[:14] + bytes([0x44]) + f[15:], "ipv4.bad_header_length"),
    (lambda f: f[:16] + b"\xff\xff" + f[18:], "ipv4.bad_total_length"),
    (lambda f: f[:24] + bytes([f[24] ^ 0xFF]) + f[25:], "ipv4.bad_checksum"),
    (lambda f: f[:-1] + bytes([f[-1] ^ 1]), "udp.bad_checksum"),
    (lambda f: f[:5], "eth.truncated"),
])
def test_malformed_frames_are_counted_and_dropped(mutate, reason) -> None:
    a, b, net = pair()
    b.udp_open(0, 7)
    good = build_frame(A_IP, B_IP, udp.build(A_IP, B_IP, 1000, 7, b"payload"))
    b.receive(mutate(good), 1.0)
    assert b.counters[reason] == 1
    assert b.counters["stack.internal_error"] == 0


def test_random_garbage_never_raises() -> None:
    a, b, net = pair()
    rng = random.Random(7)
    good = build_frame(A_IP, B_IP, udp.build(A_IP, B_IP, 1000, 7, b"payload"))
    for _ in range(3000):
        frame = bytearray(good if rng.random() < 0.5 else rng.randbytes(rng.randrange(80)))
        for _ in range(rng.randrange(1, 4)):
            if frame:
                frame[rng.randrange(len(frame))] = rng.randrange(256)
        b.receive(bytes(frame), 1.0)
        b.poll(1.0)
    assert b.counters["stack.internal_error"] == 0


def _fragments(payload: bytes, size: int, ident: int = 9) -> list[bytes]:
    frames = []
    for start in range(0, len(payload), size):
        more = start + size < len(payload)
        frames.append(build_frame(A_IP, B_IP, payload[start:start + size], ident=ident,
                                  flags_frag=(ipv4.FLAG_MF if more else 0) | (start >> 3)))
    return frames


def test_reassembly_out_of_order_and_duplicates() -> None:
    a, b, net = pair()
    server = b.udp_open(0, 7)
    dgram = udp.build(A_IP, B_IP, 1000, 7, bytes(range(200)) * 10)
    frames = _fragments(dgram, 512)
    for frame in [frames[2], frames[0], frames[0], frames[3], frames[1]]:
        b.receive(frame, 1.0)
    assert server.pop()[0] == bytes(range(200)) * 10
    assert b.counters["ipv4.frag_duplicate"] == 1


def test_overlapping_fragments_drop_the_datagram() -> None:
    a, b, net = pair()
    server = b.udp_open(0, 7)
    dgram = udp.build(A_IP, B_IP, 1000, 7, bytes(2000))
    frames = _fragments(dgram, 512)
    overlap = build_frame(A_IP, B_IP, dgram[256:256 + 512], ident=9, flags_frag=ipv4.FLAG_MF | (256 >> 3))
    for frame in [frames[0], overlap, *frames[1:]]:
        b.receive(frame, 1.0)
    assert server.pop() is None
    assert b.counters["ipv4.frag_overlap"] == 1


def test_reassembly_timeout_sends_time_exceeded() -> None:
    a, b, net = pair()
    b.udp_open(0, 7)
    a.udp_send(a.udp_open(), b"prime arp", B_IP, 7)
    net.exchange()
    dgram = udp.build(A_IP, B_IP, 1000, 7, bytes(2000))
    b.receive(_fragments(dgram, 512)[0], net.now)
    net.run(29.0)
    assert b.counters["ipv4.frag_timeout"] == 0
    net.run(2.0)
    assert b.counters["ipv4.frag_timeout"] == 1 and not b.reassembler.datagrams
    errors = [f for _, s, f in net.captured if s is b and f[23] == ipv4.PROTO_ICMP]
    message = icmp.parse(memoryview(errors[-1])[34:])
    assert (message.type, message.code) == (icmp.TIME_EXCEEDED, icmp.CODE_REASSEMBLY_TIMEOUT)


def test_reassembly_table_is_bounded() -> None:
    a, b, net = pair()
    limit = b.config.reassembly.max_datagrams
    for ident in range(limit + 5):  # from as many sources: one source may hold only a share
        src = A_IP + 100 + ident
        b.receive(build_frame(src, B_IP, bytes(512), ident=ident, flags_frag=ipv4.FLAG_MF), 1.0)
    assert len(b.reassembler.datagrams) == limit
    assert b.counters["ipv4.frag_table_full"] == 5  # the oldest five were evicted


def test_icmp_errors_are_rate_limited() -> None:
    a, b, net = pair()
    for i in range(200):
        b.receive(build_frame(A_IP, B_IP, udp.build(A_IP, B_IP, 1000, 4000 + i, b"x")), 1.0)
    assert b.counters["icmp.tx_error"] == b.config.icmp_error_burst
    assert b.counters["icmp.error_rate_limited"] == 200 - b.config.icmp_error_burst


def test_no_icmp_error_about_broadcast_or_icmp_error() -> None:
    a, b, net = pair()
    b.receive(build_frame(A_IP, ipv4.addr("10.0.0.255"), udp.build(A_IP, ipv4.addr("10.0.0.255"), 1, 2, b"x"),
                          dst_mac=ethernet.BROADCAST), 1.0)
    error = icmp.build(icmp.DEST_UNREACHABLE, 3, 0, bytes(28))
    b.receive(build_frame(A_IP, B_IP, error, proto=ipv4.PROTO_ICMP), 1.0)
    assert b.counters["icmp.tx_error"] == 0


def test_foreign_destination_and_martian_source_dropped() -> None:
    a, b, net = pair()
    b.udp_open(0, 7)
    b.receive(build_frame(A_IP, ipv4.addr("10.0.0.3"), udp.build(A_IP, ipv4.addr("10.0.0.3"), 1, 7, b"x")), 1.0)
    b.receive(build_frame(ipv4.addr("127.0.0.1"), B_IP, udp.build(ipv4.addr("127.0.0.1"), B_IP, 1, 7, b"x")), 1.0)
    assert b.counters["ipv4.not_for_us"] == 1 and b.counters["ipv4.martian_source"] == 1


def test_routing_via_gateway_and_unreachable() -> None:
    a = Stack(mac=A_MAC, addr="10.0.0.1/24", rng=random.Random(1))
    with pytest.raises(OSError) as info:
        a.next_hop(ipv4.addr("8.8.8.8"))
    assert info.value.errno == errno.ENETUNREACH
    a.set_gateway("10.0.0.254")
    assert a.next_hop(ipv4.addr("8.8.8.8")) == ipv4.addr("10.0.0.254")
    a.add_route("192.168.0.0/16", "10.0.0.253")
    assert a.next_hop(ipv4.addr("192.168.4.4")) == ipv4.addr("10.0.0.253")
    assert a.next_hop(B_IP) == B_IP


def test_udp_bind_conflicts_and_reuse() -> None:
    a, b, net = pair()
    a.udp_open(0, 5000)
    with pytest.raises(OSError) as info:
        a.udp_open(0, 5000)
    assert info.value.errno == errno.EADDRINUSE
    a.udp_open(0, 6000, reuse=True)
    a.udp_open(0, 6000, reuse=True)
    with pytest.raises(OSError):
        a.udp_open(ipv4.addr("10.9.9.9"), 7000)


def test_udp_receive_buffer_bound() -> None:
    a, b, net = pair()
    server = b.udp_open(0, 7)
    server.rcvbuf = 5000
    client = a.udp_open()
    for _ in range(10):
        a.udp_send(client, bytes(1000), B_IP, 7)
    net.exchange()
    assert len(server.queue) == 5 and b.counters["udp.rcvbuf_errors"] == 5


def test_layer3_stack_has_no_ethernet() -> None:
    a = Stack(layer=3, addr="10.1.0.1/24", rng=random.Random(1))
    b = Stack(layer=3, addr="10.1.0.2/24", rng=random.Random(2))
    net = Segment(a, b)
    endpoint = a.echo_open()
    a.echo_send(endpoint, ipv4.addr("10.1.0.2"), 3, b"tun")
    net.exchange()
    assert endpoint.queue.popleft()[1:3] == (3, b"tun")
    assert all(f[0] >> 4 == 4 for _, _, f in net.captured)
