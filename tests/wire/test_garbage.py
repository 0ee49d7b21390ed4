"""Hostile input: arbitrary bytes and mutated valid frames through every parser. Nothing but
ParseError may come out, and whatever parses must be safe to read afterwards."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.support import edits, only_parse_error
from usernet.wire import arp, ethernet, icmp, ipv4, udp
from usernet.wire.checksum import checksum
from usernet.wire.errors import ParseError

A, B = ipv4.addr("10.0.0.1"), ipv4.addr("10.0.0.2")
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def _frame(proto: int, payload: bytes, *, tag: bool = False, options: bytes = b"") -> bytes:
    packet = bytearray(ipv4.build(src=A, dst=B, proto=proto, payload=payload, ident=7))
    if options:  # splice options in and fix IHL, length and checksum by rebuilding the header
        ihl = (20 + len(options)) // 4
        packet = bytearray(packet[:20] + options + packet[20:])
        packet[0] = 0x40 | ihl
        packet[2:4] = len(packet).to_bytes(2, "big")
        packet[10:12] = b"\0\0"
        packet[10:12] = checksum(packet[:ihl * 4]).to_bytes(2, "big")
    frame = ethernet.build(MAC_B, MAC_A, ethernet.ETHERTYPE_IPV4, packet)
    if tag:
        frame = frame[:12] + bytes.fromhex("81000064") + frame[12:]
    return frame


_UDP = udp.build(A, B, 1234, 53, b"query" * 7)
SEEDS = [
    _frame(17, _UDP),
    _frame(17, _UDP, tag=True),
    _frame(17, _UDP, options=bytes([0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0, 0])),
    _frame(1, icmp.build_echo(False, 3, 4, b"ping" * 10)),
    _frame(1, icmp.build_error(icmp.DEST_UNREACHABLE, icmp.CODE_PORT_UNREACHABLE,
                               ipv4.build(src=B, dst=A, proto=17, payload=_UDP, ident=9))),
    _frame(1, icmp.build_error(icmp.DEST_UNREACHABLE, icmp.CODE_FRAGMENTATION_NEEDED,
                               ipv4.build(src=B, dst=A, proto=6, payload=bytes(40), ident=9), 1400)),
    ethernet.build(ethernet.BROADCAST, MAC_A, ethernet.ETHERTYPE_ARP, arp.build(1, MAC_A, A, bytes(6), B) + bytes(18)),
]


def receive_path(frame: bytes | bytearray | memoryview, verify: bool) -> list[object]:
    """Every parser a frame meets on its way up, as the stack calls them, touching every field."""
    seen: list[object] = []
    _dst, _src, ethertype, offset = ethernet.parse(frame)
    seen.append(ethertype)
    if ethertype == ethernet.ETHERTYPE_ARP:
        seen.append(tuple(arp.parse(frame, offset)))
        return seen
    header = ipv4.parse(frame, offset, verify_checksum=verify)
    seen += [header.dont_fragment, header.more_fragments, header.fragment_offset, header.is_fragment,
             repr(header), header.payload.tobytes(), header.options.tobytes(), header.total_length]
    assert len(header.payload) == header.total_length - header.header_len
    seen.append(ipv4.parse_options(header.options))
    if header.proto == ipv4.PROTO_UDP:
        seen.append(udp.parse(header.payload, header.src, header.dst, verify_checksum=verify)[2].tobytes())
    elif header.proto == ipv4.PROTO_ICMP:
        message = icmp.parse(header.payload, verify_checksum=verify)
        seen += [icmp.echo_fields(message), icmp.next_hop_mtu(message), icmp.pointer(message), message.body.tobytes()]
        if message.type in icmp.ERROR_TYPES:
            quoted = icmp.quoted_datagram(message)
            seen += [quoted.proto, quoted.transport[:8].tobytes()]
        if message.type == icmp.ECHO_REQUEST:
            seen.append(icmp.build_echo_reply(header.payload))
    return seen


def test_seeds_parse_cleanly() -> None:
    for seed in SEEDS:
        receive_path(seed, verify=True)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(range(len(SEEDS))), edits, st.integers(0, 100), st.binary(max_size=8), st.booleans(),
       st.sampled_from([bytes, bytearray, memoryview]))
def test_mutated_frames_raise_only_parse_error(index, changes, cut, tail, verify, kind) -> None:
    frame = bytearray(SEEDS[index])
    for position, value in changes:
        frame[position % len(frame)] = value
    data = kind(bytes(frame[:max(0, len(frame) - cut)]) + tail)
    try:
        receive_path(data, verify)
    except ParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.booleans())
def test_garbage_raises_only_parse_error(data: bytes, src: int, dst: int, verify: bool) -> None:
    for parser in (
        ethernet.parse,
        arp.parse,
        lambda b: arp.parse(b, 14),
        lambda b: ipv4.parse(b, verify_checksum=verify),
        lambda b: ipv4.parse(b, 14, verify_checksum=verify),
        ipv4.parse_options,
        lambda b: icmp.parse(b, verify_checksum=verify),
        lambda b: icmp.quoted_datagram(icmp.parse(b, verify_checksum=False)),
        lambda b: udp.parse(b, src, dst, verify_checksum=verify),
        lambda b: receive_path(b, verify),
    ):
        only_parse_error(parser, data)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=14, max_size=14), st.binary(max_size=100), st.booleans())
def test_garbage_behind_a_valid_ethernet_header(eth: bytes, rest: bytes, verify: bool) -> None:
    for ethertype in (b"\x08\x00", b"\x08\x06", b"\x81\x00"):
        only_parse_error(lambda b: receive_path(b, verify), eth[:12] + ethertype + rest)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.booleans())
def test_garbage_behind_a_plausible_ipv4_header(rest: bytes, verify: bool) -> None:
    # Version 4 and a sane IHL get past the first checks, so the later ones see the garbage.
    for first in (0x45, 0x46, 0x4F):
        only_parse_error(lambda b: receive_path(b, verify), SEEDS[0][:14] + bytes([first]) + rest)
