"""Wire formats: known answers, round trips, scapy as an independent cross-check, and garbage."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usernet.wire import arp, ethernet, icmp, ipv4, udp
from usernet.wire.checksum import checksum, finish, ones_sum, pseudo_header_sum
from usernet.wire.errors import ParseError

scapy_all = pytest.importorskip("scapy.all")
Ether, ARP, IP, ICMP, UDP, Dot1Q, Raw = (scapy_all.Ether, scapy_all.ARP, scapy_all.IP, scapy_all.ICMP, scapy_all.UDP,
                                         scapy_all.Dot1Q, scapy_all.Raw)


def reference_checksum(data: bytes) -> int:
    """RFC 1071 the slow way: 16-bit words, end-around carry."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# ----------------------------------------------------------------- checksum

def test_rfc1071_example() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (ones' complement).
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert checksum(data) == ~0xDDF2 & 0xFFFF


def test_checksum_edge_cases() -> None:
    assert checksum(b"") == 0xFFFF
    assert checksum(b"\0\0\0\0") == 0xFFFF
    assert checksum(b"\xff\xff") == 0x0000  # sum is "negative zero"
    assert checksum(b"\xff\xff\xff\xff") == 0x0000
    assert checksum(b"\x01") == reference_checksum(b"\x01") == 0xFEFF
    big = bytes(range(256)) * 256
    assert checksum(big) == reference_checksum(big)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=3000))
def test_checksum_matches_reference(data: bytes) -> None:
    assert checksum(data) == reference_checksum(data)


@given(st.binary(min_size=2, max_size=600))
def test_checksum_verifies_to_zero(data: bytes) -> None:
    if len(data) % 2:
        data += b"\0"
    csum = checksum(data)
    assert checksum(data + csum.to_bytes(2, "big")) == 0


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.binary(max_size=100))
def test_pseudo_header_sum_matches_explicit_header(src: int, dst: int, data: bytes) -> None:
    explicit = struct.pack("!IIBBH", src, dst, 0, 17, len(data))
    assert finish(ones_sum(data) + pseudo_header_sum(src, dst, 17, len(data))) == reference_checksum(explicit + data)


# ----------------------------------------------------------------- Ethernet and ARP

def test_ethernet_against_scapy_with_vlan() -> None:
    frame = bytes(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / Dot1Q(vlan=5) / IP() / UDP())
    dst, src, ethertype, offset = ethernet.parse(frame)
    assert ethernet.format_mac(dst) == "02:00:00:00:00:02" and ethernet.format_mac(src) == "02:00:00:00:00:01"
    assert ethertype == ethernet.ETHERTYPE_IPV4 and offset == 18
    built = ethernet.build(dst, src, 0x0806, b"x" * 46)
    parsed = Ether(built)
    assert parsed.dst == "02:00:00:00:00:02" and parsed.type == 0x0806


def test_ethernet_rejects_short_and_8023() -> None:
    with pytest.raises(ParseError):
        ethernet.parse(b"\0" * 13)
    with pytest.raises(ParseError) as info:
        ethernet.parse(b"\0" * 12 + b"\x00\x40" + b"\0" * 50)
    assert info.value.reason == "eth.not_ethernet_ii"


def test_mac_text_round_trip() -> None:
    assert ethernet.parse_mac("02-0a-0B-0c-0d-0e") == bytes.fromhex("020a0b0c0d0e")
    with pytest.raises(ValueError):
        ethernet.parse_mac("02:00:00")


def test_arp_against_scapy() -> None:
    raw = bytes(ARP(op=1, hwsrc="02:00:00:00:00:01", psrc="10.0.0.1", pdst="10.0.0.2"))
    packet = arp.parse(raw)
    assert packet.op == arp.OP_REQUEST and packet.sender_ip == ipv4.addr("10.0.0.1")
    assert packet.target_ip == ipv4.addr("10.0.0.2") and packet.sender_mac == bytes.fromhex("020000000001")
    built = ARP(arp.build(arp.OP_REPLY, bytes.fromhex("020000000002"), ipv4.addr("10.0.0.2"),
                          bytes.fromhex("020000000001"), ipv4.addr("10.0.0.1")))
    assert (built.op, built.psrc, built.pdst, built.hwsrc) == (2, "10.0.0.2", "10.0.0.1", "02:00:00:00:00:02")


def test_arp_rejects_other_hardware() -> None:
    raw = bytearray(bytes(ARP(psrc="10.0.0.1", pdst="10.0.0.2")))
    raw[1] = 6  # IEEE 802 hardware type
    with pytest.raises(ParseError):
        arp.parse(bytes(raw))


# ----------------------------------------------------------------- IPv4

@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 255), st.integers(0, 0xFFFF),
       st.integers(1, 255), st.binary(max_size=200), st.booleans())
def test_ipv4_build_against_scapy(src: int, dst: int, proto: int, ident: int, ttl: int, payload: bytes,
                                  df: bool) -> None:
    packet = bytes(ipv4.build(src=src, dst=dst, proto=proto, payload=payload, ident=ident, ttl=ttl,
                              flags_frag=ipv4.FLAG_DF if df else 0))
    theirs = IP(packet)
    assert theirs.src == ipv4.ntoa(src) and theirs.dst == ipv4.ntoa(dst) and theirs.proto == proto
    assert theirs.id == ident and theirs.ttl == ttl and theirs.len == 20 + len(payload)
    assert bool(theirs.flags.DF) == df
    reference = IP(src=ipv4.ntoa(src), dst=ipv4.ntoa(dst), proto=proto, id=ident, ttl=ttl, flags="DF" if df else 0,
                   len=20 + len(payload))
    assert bytes(reference)[:20] == packet[:20]  # same header bytes, checksum included
    assert reference_checksum(packet[:20]) == 0


def test_ipv4_parse_scapy_packet_with_options_and_padding() -> None:
    from scapy.layers.inet import IPOption_NOP

    raw = bytes(IP(src="1.2.3.4", dst="5.6.7.8", id=77, ttl=9, flags="MF", frag=3,
                   options=[IPOption_NOP()] * 4) / Raw(b"abcdefgh")) + b"\0\0\0\0"  # link padding
    header = ipv4.parse(raw)
    assert header.header_len == 24 and bytes(header.payload) == b"abcdefgh"
    assert header.more_fragments and header.fragment_offset == 24 and header.ident == 77 and header.ttl == 9


@pytest.mark.parametrize("mutate, reason", [
    (lambda p: p[:19], "ipv4.truncated"),
    (lambda p: bytes([0x55]) + p[1:], "ipv4.bad_version"),
    (lambda p: bytes([0x43]) + p[1:], "ipv4.bad_header_length"),
    (lambda p: p[:2] + (len(p) + 1).to_bytes(2, "big") + p[4:], "ipv4.bad_total_length"),
    (lambda p: p[:2] + (19).to_bytes(2, "big") + p[4:], "ipv4.bad_total_length"),
    (lambda p: p[:10] + bytes([p[10] ^ 0x10]) + p[11:], "ipv4.bad_checksum"),
    (lambda p: bytes([0x46]) + p[1:], "ipv4.bad_checksum"),  # IHL 6 points past the header's checksum
])
def test_ipv4_each_malformation_has_its_reason(mutate, reason) -> None:
    good = bytes(ipv4.build(src=1, dst=2, proto=17, payload=b"12345678", ident=1))
    with pytest.raises(ParseError) as info:
        ipv4.parse(mutate(good))
    assert info.value.reason == reason


def test_ipv4_truncated_at_every_length() -> None:
    good = bytes(ipv4.build(src=1, dst=2, proto=17, payload=b"12345678", ident=1))
    for n in range(len(good)):
        with pytest.raises(ParseError):
            ipv4.parse(good[:n])


def test_martians() -> None:
    assert ipv4.is_martian_source(ipv4.addr("127.0.0.1"))
    assert ipv4.is_martian_source(ipv4.addr("224.0.0.1"))
    assert ipv4.is_martian_source(ipv4.addr("255.255.255.255"))
    assert not ipv4.is_martian_source(0)  # DHCP clients send from 0.0.0.0
    assert not ipv4.is_martian_source(ipv4.addr("10.1.2.3"))


# ----------------------------------------------------------------- ICMP and UDP

def test_icmp_echo_against_scapy() -> None:
    ours = bytes(icmp.build_echo(False, 0x1234, 7, b"ping data"))
    theirs = ICMP(ours)
    assert (theirs.type, theirs.id, theirs.seq, bytes(theirs.payload)) == (8, 0x1234, 7, b"ping data")
    rebuilt = ICMP(type=8, id=0x1234, seq=7) / Raw(b"ping data")
    assert bytes(rebuilt) == ours
    message = icmp.parse(bytes(ICMP(type=0, id=5, seq=6) / Raw(b"x" * 33)))
    assert icmp.echo_fields(message) == (5, 6) and len(message.body) == 33


def test_icmp_error_quotes_the_datagram() -> None:
    original = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=9) / Raw(b"z" * 1000))
    error = bytes(icmp.build_error(icmp.DEST_UNREACHABLE, icmp.CODE_PORT_UNREACHABLE, original))
    theirs = ICMP(error)
    assert theirs.type == 3 and theirs.code == 3
    assert theirs[scapy_all.IPerror].dst == "10.0.0.2" and theirs[scapy_all.UDPerror].dport == 9
    assert error[8:] == original[:icmp.MAX_ERROR_QUOTE]
    assert len(error) == 576 - 20  # RFC 1812 4.3.2.3: the whole error fits in 576 bytes
    with pytest.raises(ParseError):
        icmp.parse(error[:-1] + bytes([error[-1] ^ 1]))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 0xFFFF), st.integers(1, 0xFFFF), st.binary(max_size=300))
def test_udp_against_scapy(sport: int, dport: int, payload: bytes) -> None:
    src, dst = ipv4.addr("192.0.2.1"), ipv4.addr("198.51.100.7")
    ours = bytes(udp.build(src, dst, sport, dport, payload))
    theirs = IP(bytes(IP(src="192.0.2.1", dst="198.51.100.7", proto=17) / Raw(ours)))[UDP]
    reference = bytes(IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=sport, dport=dport) / Raw(payload))[20:]
    assert theirs.sport == sport and theirs.dport == dport
    assert ours == reference  # identical bytes, checksum included
    assert udp.parse(reference, src, dst) == (sport, dport, udp.parse(ours, src, dst)[2])
    assert bytes(udp.parse(reference, src, dst)[2]) == payload


def test_udp_zero_checksum_means_none_and_bad_checksum_is_caught() -> None:
    src, dst = 1, 2
    datagram = bytearray(udp.build(src, dst, 5, 6, b"data"))
    datagram[6:8] = b"\0\0"
    assert bytes(udp.parse(datagram, src, dst)[2]) == b"data"
    datagram[6:8] = b"\x12\x34"
    with pytest.raises(ParseError) as info:
        udp.parse(datagram, src, dst)
    assert info.value.reason == "udp.bad_checksum"
    with pytest.raises(ParseError):
        udp.parse(bytes(datagram[:7]), src, dst)


def test_udp_computed_zero_is_sent_as_ffff() -> None:
    # Find a payload whose checksum computes to zero: RFC 768 requires 0xFFFF on the wire.
    src, dst = ipv4.addr("10.0.0.1"), ipv4.addr("10.0.0.2")
    base = udp.build(src, dst, 1, 2, b"\0\0")
    want = checksum(base[:6] + b"\0\0" + base[8:], pseudo_header_sum(src, dst, 17, len(base)))
    # Adding the current checksum value as payload words makes the ones' sum all ones -> zero field.
    payload = (0xFFFF - (0xFFFF - want)).to_bytes(2, "big")
    datagram = udp.build(src, dst, 1, 2, payload)
    assert datagram[6:8] != b"\0\0"
    assert bytes(udp.parse(datagram, src, dst)[2]) == payload


# ----------------------------------------------------------------- garbage

PARSERS = [
    lambda b: ethernet.parse(b),
    lambda b: arp.parse(b),
    lambda b: ipv4.parse(b),
    lambda b: icmp.parse(b),
    lambda b: udp.parse(b, 1, 2),
]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_raises_only_parse_error(data: bytes) -> None:
    for parser in PARSERS:
        try:
            parser(data)
        except ParseError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=6), st.integers(0, 80))
def test_mutated_valid_packets_raise_only_parse_error(edits, cut) -> None:
    packet = bytearray(ipv4.build(src=ipv4.addr("10.0.0.1"), dst=ipv4.addr("10.0.0.2"), proto=17,
                                  payload=udp.build(ipv4.addr("10.0.0.1"), ipv4.addr("10.0.0.2"), 1, 2, b"x" * 30),
                                  ident=3))
    for position, value in edits:
        if position < len(packet):
            packet[position] = value
    data = bytes(packet[:len(packet) - cut])
    try:
        header = ipv4.parse(data, verify_checksum=False)
        udp.parse(header.payload, header.src, header.dst)
    except ParseError:
        pass
