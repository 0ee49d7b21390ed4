"""Bulk send (issue 17): a TSO super-segment is one join of the link, IPv4 and TCP headers with
the payload (no segment built first), its TCP checksum field the folded pseudo-header sum
(CHECKSUM_PARTIAL), byte for byte what wire.tcp.build(partial_checksum=True) gives."""

from __future__ import annotations

import random

from tests.stack.netsim import Segment
from usernet.stack.core import Stack
from usernet.wire import ethernet, ipv4
from usernet.wire import tcp as tcpwire
from usernet.wire.checksum import pseudo_header_sum

A_IP = ipv4.addr("10.0.0.1")
B_IP = ipv4.addr("10.0.0.2")


def _software_gso(frame: bytes, mss: int) -> list[bytes]:
    """What the kernel does with a super-frame: MSS-sized segments with complete checksums."""
    _, _, _, off = ethernet.parse(frame)
    ip = ipv4.parse(frame, off)
    seg = tcpwire.parse(ip.payload)
    header_len = (ip.payload[12] >> 4) * 4
    options = bytes(ip.payload[20:header_len])
    out = []
    for start in range(0, len(seg.payload), mss):
        piece = seg.payload[start:start + mss]
        last = start + mss >= len(seg.payload)
        flags = seg.flags if last else seg.flags & ~(tcpwire.PSH | tcpwire.FIN)
        tcp = tcpwire.build(ip.src, ip.dst, seg.sport, seg.dport, (seg.seq + start) & 0xFFFFFFFF, seg.ack, flags,
                            seg.window, options, piece)
        packet = ipv4.build(src=ip.src, dst=ip.dst, proto=ipv4.PROTO_TCP, payload=tcp, ident=0)
        out.append(frame[:off] + packet)
    return out


def test_super_segment_is_one_frame_with_a_partial_checksum() -> None:
    a = Stack(mac=bytes.fromhex("020000000001"), addr="10.0.0.1/24", rng=random.Random(1))
    b = Stack(mac=bytes.fromhex("020000000002"), addr="10.0.0.2/24", rng=random.Random(2))
    net = Segment(a, b)
    net.exchange()
    listener = b.tcp.listen(0, 19, 5)
    client = a.tcp.connect(A_IP, 0, B_IP, 19, net.now)
    net.exchange()
    server = listener.accept()
    assert server is not None and client.state == "ESTABLISHED"
    a.gso_max = 64000
    data = bytes(range(256)) * 1024  # 256 KB
    sent = 0
    received = bytearray()
    supers = []
    for step in range(200):
        now = 1.0 + step * 0.01
        sent += client.send(memoryview(data)[sent:])
        for frame in a.poll(now):
            if isinstance(frame, tuple):
                frame, mss = frame
                supers.append((bytes(frame), mss))
                frames = _software_gso(bytes(frame), mss)
            else:
                frames = [bytes(frame)]
            for f in frames:
                b.receive(f, now)
        for frame in b.poll(now):
            a.receive(bytes(frame), now)
        received += server.recv(1 << 20) or b""
        if len(received) == len(data):
            break
    assert received == data
    assert supers and a.counters["tcp.tso_segments"] == len(supers)
    for frame, mss in supers:
        assert mss == client.mss
        _, _, _, off = ethernet.parse(frame)
        ip = ipv4.parse(frame, off)
        assert ip.total_length == len(frame) - off  # the IPv4 header covers the whole super-segment
        segment = bytes(ip.payload)
        length = len(segment)
        # The field holds the folded pseudo-header sum; summing the segment completes it.
        assert int.from_bytes(segment[16:18], "big") == pseudo_header_sum(A_IP, B_IP, 6, length) % 0xFFFF
        header_len = (segment[12] >> 4) * 4
        old = tcpwire.build(A_IP, B_IP, client.local_port, 19, int.from_bytes(segment[4:8], "big"),
                            int.from_bytes(segment[8:12], "big"), segment[13], int.from_bytes(segment[14:16], "big"),
                            segment[20:header_len], segment[header_len:], partial_checksum=True)
        assert bytes(old) == segment  # the former build-then-join path, byte for byte
