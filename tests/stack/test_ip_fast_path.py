"""The IPv4 fast paths in stack/ip.py: unfragmented TCP input without options, and TCP output to a fresh
neighbour in one join. They must take and count exactly what the general paths do, and send the same bytes."""

from __future__ import annotations

import random

import pytest

from usernet.stack.core import Stack
from usernet.wire import arp, ethernet, ipv4
from usernet.wire import tcp as tcpwire
from usernet.wire.checksum import checksum

OUR_MAC = bytes.fromhex("020000000002")
PEER_MAC = bytes.fromhex("020000000001")
OUR_IP, PEER_IP = ipv4.addr("10.0.0.2"), ipv4.addr("10.0.0.1")
PORT = 5001


def _stack() -> Stack:
    stack = Stack(mac=OUR_MAC, addr="10.0.0.2/24", rng=random.Random(1))
    stack.tcp.listen(0, PORT, 16)
    stack.receive(ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETHERTYPE_ARP,
                                 arp.build(arp.OP_REPLY, PEER_MAC, PEER_IP, OUR_MAC, OUR_IP)), 0.0)
    stack.poll(0.0)
    return stack


def _syn_frame(src: int = PEER_IP, options: bytes = b"", bad_ip_csum: bool = False, bad_tcp_csum: bool = False,
               flags_frag: int = ipv4.FLAG_DF, pad: int = 0, port: int = 40000) -> bytes:
    segment = tcpwire.build(src, OUR_IP, port, PORT, 1000, 0, tcpwire.SYN, 64240,
                            tcpwire.build_options(mss=1460), b"")
    if bad_tcp_csum:
        segment[16] ^= 0xFF
    hlen = 20 + len(options)
    packet = bytearray(hlen + len(segment))
    total = len(packet)
    packet[:20] = ipv4.header_bytes(src, OUR_IP, ipv4.PROTO_TCP, total - 20, 7, 64, 0, flags_frag)
    if options:
        packet[0] = 0x40 | hlen // 4
        packet[2:4] = total.to_bytes(2, "big")
        packet[10:12] = b"\0\0"
        packet[20:hlen] = options
        packet[10:12] = checksum(packet[:hlen]).to_bytes(2, "big")
    if bad_ip_csum:
        packet[10] ^= 0xFF
    packet[hlen:] = segment
    return ethernet.build(OUR_MAC, PEER_MAC, ethernet.ETHERTYPE_IPV4, bytes(packet) + bytes(pad))


def _synacks(frames: list) -> int:
    count = 0
    for frame in frames:
        if isinstance(frame, bytes) and frame[12:14] == b"\x08\x00":
            seg = tcpwire.parse(ipv4.parse(frame, 14).payload)
            count += seg.flags == tcpwire.SYN | tcpwire.ACK
    return count


def test_header_bytes_matches_write_header() -> None:
    for args in ((1, 2, 6, 0, 0, 64, 0, 0), (0xFFFFFFFF, 0x0A000001, 17, 1480, 0xFFFF, 255, 0xB8, ipv4.FLAG_DF)):
        src, dst, proto, length, ident, ttl, tos, ff = args
        buf = bytearray(20)
        ipv4.write_header(buf, 0, src=src, dst=dst, proto=proto, payload_len=length, ident=ident, ttl=ttl, tos=tos,
                          flags_frag=ff)
        assert ipv4.header_bytes(*args) == bytes(buf)
    with pytest.raises(ValueError):
        ipv4.header_bytes(1, 2, 6, 65516, 0, 64, 0, 0)


@pytest.mark.parametrize(("frame_kw", "trusted", "answered", "counter"), [
    ({}, False, True, None),
    ({"pad": 6}, False, True, None),                            # link padding after the datagram
    ({"bad_ip_csum": True}, False, False, "ipv4.bad_checksum"),
    ({"bad_tcp_csum": True}, False, False, "tcp.bad_checksum"),
    ({"bad_tcp_csum": True}, True, True, None),                 # the link vouched for it
    ({"src": ipv4.addr("127.0.0.9")}, False, False, "ipv4.martian_source"),
    ({"src": OUR_IP}, False, False, "ipv4.martian_source"),
    ({"options": b"\x01\x01\x01\x00"}, False, True, None),     # IP options: the general path
    ({"flags_frag": ipv4.FLAG_RESERVED}, False, False, "ipv4.reserved_flag"),
])
def test_tcp_input_takes_and_counts_as_the_general_path(frame_kw: dict, trusted: bool, answered: bool,
                                                         counter: str | None) -> None:
    stack = _stack()
    stack.receive(_syn_frame(**frame_kw), 0.01, trusted)
    out = stack.poll(0.01)
    assert _synacks(out) == int(answered)
    if counter is not None:
        assert stack.counters[counter] == 1
    assert stack.counters["ipv4.rx"] == (0 if counter in ("ipv4.bad_checksum", "ipv4.reserved_flag") else 1)


def test_tcp_output_frame_and_stale_neighbour() -> None:
    stack = _stack()
    stack.receive(_syn_frame(), 0.01)
    (synack,) = [f for f in stack.poll(0.01) if isinstance(f, bytes) and f[12:14] == b"\x08\x00"]
    assert synack[:14] == PEER_MAC + OUR_MAC + b"\x08\x00"
    header = ipv4.parse(synack, 14)  # verifies the header checksum
    assert header.dont_fragment and header.src == OUR_IP and header.dst == PEER_IP and header.ttl == 64
    assert stack.counters["ipv4.tx"] == 1
    # Once the neighbour is stale, the segment goes the general way: still sent to the known MAC,
    # with a unicast ARP poll (RFC 1122 2.3.2.1).
    later = 0.01 + stack.config.arp.reachable_time + 1.0
    stack.receive(_syn_frame(port=40001), later)
    out = stack.poll(later)
    arps = [f for f in out if isinstance(f, bytes) and f[12:14] == b"\x08\x06"]
    ips = [f for f in out if isinstance(f, bytes) and f[12:14] == b"\x08\x00"]
    assert ips and all(f[:6] == PEER_MAC for f in ips)
    assert arps and arps[0][:6] == PEER_MAC
