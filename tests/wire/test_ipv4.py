"""IPv4 (RFC 791): known frames, scapy both ways (options included), every malformation's own
reason, truncations, option walking, martians."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.wire.support import PING_FRAME, addresses, ip_text, reference_checksum
from usernet.wire import ethernet, ipv4
from usernet.wire.errors import ParseError

scapy_all = pytest.importorskip("scapy.all")  # an independent implementation of every format

IP, Raw = scapy_all.IP, scapy_all.Raw
inet = pytest.importorskip("scapy.layers.inet")

CLASSIC_HEADER = bytes.fromhex("45000073000040004011b861c0a80001c0a800c7")


def test_known_ping_frame() -> None:
    _, _, ethertype, offset = ethernet.parse(PING_FRAME)
    assert (ethertype, offset) == (ethernet.ETHERTYPE_IPV4, 14)
    header = ipv4.parse(PING_FRAME, offset)
    assert (header.header_len, header.tos, header.total_length, header.ident) == (20, 0, 84, 0x4D2C)
    assert (header.ttl, header.proto, header.src, header.dst) == (64, 1, ipv4.addr("10.0.2.15"), ipv4.addr("10.0.2.2"))
    assert header.dont_fragment and not header.more_fragments and not header.is_fragment
    assert header.fragment_offset == 0 and len(header.options) == 0
    assert bytes(header.payload) == PING_FRAME[34:]
    rebuilt = bytearray(20)
    ipv4.write_header(rebuilt, 0, src=header.src, dst=header.dst, proto=1, payload_len=64, ident=0x4D2C,
                      flags_frag=ipv4.FLAG_DF)
    assert bytes(rebuilt) == PING_FRAME[14:34]


def test_classic_header_vector() -> None:
    packet = CLASSIC_HEADER + bytes(0x73 - 20)
    header = ipv4.parse(packet)
    assert (header.total_length, header.proto, ipv4.ntoa(header.src), ipv4.ntoa(header.dst)) == (
        0x73, 17, "192.168.0.1", "192.168.0.199")
    built = ipv4.build(src=header.src, dst=header.dst, proto=17, payload=bytes(0x73 - 20), ident=0,
                       flags_frag=ipv4.FLAG_DF)
    assert bytes(built) == packet


# Options that scapy carries through unchanged: its own RR/Router Alert/NOP, and raw TLVs of
# numbers it has no class for.
_SCAPY_KNOWN = {0, 1, 2, 3, 4, 7, 8, 9, 11, 12, 18, 19, 20, 21}
raw_option = st.tuples(st.integers(2, 255).filter(lambda t: t & 0x1F not in _SCAPY_KNOWN),
                       st.binary(max_size=6)).map(lambda tv: bytes([tv[0], len(tv[1]) + 2]) + tv[1])
option = st.one_of(
    raw_option.map(lambda raw: inet.IPOption(raw)),
    st.just(inet.IPOption_NOP()),
    st.just(inet.IPOption_Router_Alert()),
    st.lists(addresses, min_size=1, max_size=3).map(lambda rs: inet.IPOption_RR(routers=[ip_text(r) for r in rs])),
)
frag_fields = st.tuples(st.sampled_from([0, 1, 2, 3]), st.integers(0, 0x1FFF))  # DF/MF bits, offset


@settings(max_examples=200, deadline=None)
@given(addresses, addresses, st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 255),
       st.integers(0, 255), frag_fields, st.lists(option, max_size=4), st.binary(max_size=80), st.integers(0, 30))
def test_parse_scapy_packets(src, dst, tos, ident, ttl, proto, frag, options, payload, padding) -> None:
    flags, offset = frag
    assume(sum(len(bytes(o)) for o in options) <= 40)  # what fits; scapy would wrap the IHL
    packet = IP(src=ip_text(src), dst=ip_text(dst), tos=tos, id=ident, ttl=ttl, proto=proto, flags=flags,
                frag=offset, options=options) / Raw(payload)
    raw = bytes(packet)
    theirs = IP(raw)
    prefix = b"\xaa" * 14
    header = ipv4.parse(prefix + raw + b"\0" * padding, 14)  # link padding after the datagram is cut off
    assert (header.src, header.dst, header.tos, header.ident, header.ttl, header.proto) == (
        src, dst, tos, ident, ttl, proto)
    assert header.header_len == theirs.ihl * 4 and header.total_length == theirs.len == len(raw)
    assert header.flags_frag == (flags << 13) | offset
    assert header.dont_fragment == bool(flags & 2) and header.more_fragments == bool(flags & 1)
    assert header.fragment_offset == offset * 8 and header.is_fragment == bool(flags & 1 or offset)
    assert bytes(header.payload) == payload
    assert bytes(header.options) == raw[20:header.header_len]
    walked = ipv4.parse_options(header.options)
    # From the options built, not from scapy's dissection: for IGMP (proto 2) scapy's dissector
    # reports a Router Alert option that the bytes do not hold.
    expected = [(o.option | (o.copy_flag << 7) | (o.optclass << 5), bytes(o)[2:]) for o in packet.options
                if o.option not in (0, 1) or o.copy_flag or o.optclass]
    assert [(kind, bytes(data)) for kind, data in walked] == expected


@settings(max_examples=200, deadline=None)
@given(addresses, addresses, st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 255), st.integers(0, 255),
       frag_fields, st.binary(max_size=300))
def test_build_dissected_by_scapy(src, dst, tos, ident, ttl, proto, frag, payload) -> None:
    flags, offset = frag
    flags_frag = (flags << 13) | offset
    packet = bytes(ipv4.build(src=src, dst=dst, proto=proto, payload=payload, ident=ident, ttl=ttl, tos=tos,
                              flags_frag=flags_frag))
    theirs = IP(packet)
    assert (theirs.version, theirs.ihl, theirs.len) == (4, 5, 20 + len(payload))
    assert (theirs.src, theirs.dst, theirs.tos, theirs.id, theirs.ttl, theirs.proto) == (
        ip_text(src), ip_text(dst), tos, ident, ttl, proto)
    assert (int(theirs.flags), theirs.frag) == (flags, offset)
    assert packet[20:] == payload
    # scapy recomputes the checksum over the same fields: it must agree with ours (header only:
    # with a payload some of its layers rewrite the header, e.g. IGMP adds Router Alert)
    check = IP(packet[:20])
    del check.chksum
    assert IP(bytes(check)).chksum == int.from_bytes(packet[10:12], "big")
    assert reference_checksum(packet[:20]) == 0
    # write_header into a larger buffer at an offset writes the same 20 bytes and nothing else
    buf = bytearray(b"\xee" * (40 + len(payload)))
    ipv4.write_header(buf, 10, src=src, dst=dst, proto=proto, payload_len=len(payload), ident=ident, ttl=ttl,
                      tos=tos, flags_frag=flags_frag)
    assert buf[10:30] == packet[:20] and buf[:10] == b"\xee" * 10 and buf[30:] == b"\xee" * (10 + len(payload))
    assert bytes(ipv4.parse(packet).payload) == payload


def _good(payload: bytes = b"12345678") -> bytes:
    return bytes(ipv4.build(src=ipv4.addr("10.0.0.1"), dst=ipv4.addr("10.0.0.2"), proto=17, payload=payload,
                            ident=1))


def _with_checksum(header: bytes) -> bytes:
    """Fix the checksum of a header we deliberately damaged elsewhere."""
    hl = (header[0] & 0x0F) * 4
    zeroed = header[:10] + b"\0\0" + header[12:]
    return zeroed[:10] + reference_checksum(zeroed[:hl]).to_bytes(2, "big") + zeroed[12:]


@pytest.mark.parametrize("mutate, reason", [
    (lambda p: p[:19], "ipv4.truncated"),
    (lambda p: b"", "ipv4.truncated"),
    (lambda p: _with_checksum(bytes([0x55]) + p[1:]), "ipv4.bad_version"),
    (lambda p: _with_checksum(bytes([0x65]) + p[1:]), "ipv4.bad_version"),
    (lambda p: _with_checksum(bytes([0x05]) + p[1:]), "ipv4.bad_version"),
    (lambda p: _with_checksum(bytes([0x44]) + p[1:]), "ipv4.bad_header_length"),
    (lambda p: _with_checksum(bytes([0x40]) + p[1:]), "ipv4.bad_header_length"),
    (lambda p: _with_checksum(p[:2] + (len(p) + 1).to_bytes(2, "big") + p[4:]), "ipv4.bad_total_length"),
    (lambda p: _with_checksum(p[:2] + (19).to_bytes(2, "big") + p[4:]), "ipv4.bad_total_length"),
    (lambda p: _with_checksum(p[:2] + b"\xff\xff" + p[4:]), "ipv4.bad_total_length"),
    (lambda p: _with_checksum(bytes([0x46]) + p[1:2] + (22).to_bytes(2, "big") + p[4:]), "ipv4.bad_total_length"),
    (lambda p: _with_checksum(bytes([0x4F]) + p[1:]), "ipv4.bad_total_length"),  # IHL 15: 60 > 28 bytes
    (lambda p: _with_checksum(p[:6] + bytes([p[6] | 0x80]) + p[7:]), "ipv4.reserved_flag"),
    (lambda p: p[:10] + bytes([p[10] ^ 0x10]) + p[11:], "ipv4.bad_checksum"),
    (lambda p: p[:15] + bytes([p[15] ^ 1]) + p[16:], "ipv4.bad_checksum"),  # damage to an address
    (lambda p: bytes([0x46]) + p[1:], "ipv4.bad_checksum"),  # IHL 6: the sum now covers payload bytes
])
def test_each_malformation_has_its_reason(mutate, reason) -> None:
    with pytest.raises(ParseError) as info:
        ipv4.parse(mutate(_good()))
    assert info.value.reason == reason


def test_checksum_not_verified_when_trusted() -> None:
    bad = bytearray(_good())
    bad[10] ^= 0xFF
    assert bytes(ipv4.parse(bad, verify_checksum=False).payload) == b"12345678"


def test_options_skipped_safely_with_maximum_ihl() -> None:
    options = bytes([0x94, 4, 0, 0]) + bytes([1]) * 35 + bytes([0])  # router alert, NOPs, EOL: 40 bytes
    payload = b"transport header here"
    header = bytearray([0x4F, 0]) + (60 + len(payload)).to_bytes(2, "big") + bytes(4) + bytes([64, 17, 0, 0])
    header += ipv4.addr("10.0.0.1").to_bytes(4, "big") + ipv4.addr("10.0.0.2").to_bytes(4, "big") + options
    raw = _with_checksum(bytes(header)) + payload
    assert IP(raw).ihl == 15 and IP(raw).options[0].option == 20  # scapy agrees on the layout
    parsed = ipv4.parse(raw)
    assert parsed.header_len == 60 and bytes(parsed.payload) == payload and bytes(parsed.options) == options
    assert [(kind, bytes(data)) for kind, data in ipv4.parse_options(parsed.options)] == [(0x94, b"\0\0")]


@pytest.mark.parametrize("options", [
    bytes([0x94]),               # type without its length byte
    bytes([0x94, 0]),            # length below 2 would loop forever
    bytes([0x94, 1, 0, 0]),
    bytes([0x07, 9, 4, 0]),      # record route running past the options area
    bytes([1, 1, 1, 0x44]),
])
def test_malformed_options(options: bytes) -> None:
    with pytest.raises(ParseError) as info:
        ipv4.parse_options(options)
    assert info.value.reason == "ipv4.bad_option"


def test_option_list_ends_at_eol() -> None:
    assert ipv4.parse_options(bytes([1, 0, 0x94, 0])) == []  # EOL: what follows is padding
    assert [(k, bytes(d)) for k, d in ipv4.parse_options(bytes([0x88, 4, 0x12, 0x34]))] == [(0x88, b"\x12\x34")]


def test_truncated_at_every_length() -> None:
    good = _good(b"x" * 13)
    frame = b"\xaa" * 14 + good
    for n in range(len(good)):
        with pytest.raises(ParseError) as info:
            ipv4.parse(good[:n])
        assert info.value.reason == ("ipv4.truncated" if n < 20 else "ipv4.bad_total_length")
        with pytest.raises(ParseError):
            ipv4.parse(frame[:14 + n], 14)
    assert ipv4.parse(good).total_length == len(good)
    with pytest.raises(ParseError):
        ipv4.parse(good, len(good) + 5)  # offset past the end


def test_payload_is_a_view_not_a_copy() -> None:
    buf = bytearray(_good())
    header = ipv4.parse(buf)
    assert isinstance(header.payload, memoryview)
    buf[20] = ord("Z")
    assert bytes(header.payload)[:1] == b"Z"


def test_builders_refuse_oversized_datagrams() -> None:
    with pytest.raises(ValueError):
        ipv4.build(src=1, dst=2, proto=17, payload=bytes(65536 - 20), ident=0)
    assert len(ipv4.build(src=1, dst=2, proto=17, payload=bytes(65535 - 20), ident=0)) == 65535
    with pytest.raises(ValueError):
        ipv4.write_header(bytearray(20), 0, src=1, dst=2, proto=17, payload_len=-1, ident=0)


def test_repr_names_the_addresses() -> None:
    assert "10.0.0.1 > 10.0.0.2" in repr(ipv4.parse(_good()))


@pytest.mark.parametrize("text, martian", [
    ("0.0.0.0", False),          # DHCP clients before they have an address (RFC 1122 3.2.1.3 (a))
    ("0.1.2.3", True),           # {0, host} only during initialisation
    ("127.0.0.1", True), ("127.255.255.254", True),
    ("224.0.0.1", True), ("239.255.255.255", True),
    ("240.0.0.1", True), ("255.255.255.254", True),
    ("255.255.255.255", True),
    ("10.1.2.3", False), ("1.0.0.0", False), ("126.255.255.255", False), ("128.0.0.1", False),
    ("223.255.255.255", False), ("169.254.1.1", False), ("100.64.0.1", False),
])
def test_martian_sources(text: str, martian: bool) -> None:
    assert ipv4.is_martian_source(ipv4.addr(text)) is martian


def test_address_text() -> None:
    assert ipv4.addr("192.0.2.1") == 0xC0000201
    assert ipv4.ntoa(0xC0000201) == "192.0.2.1" and ipv4.ntoa(0) == "0.0.0.0"
    assert ipv4.ntoa(2**32 - 1) == "255.255.255.255"
    for bad in ["256.0.0.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "", "a.b.c.d"]:
        with pytest.raises(ValueError):
            ipv4.addr(bad)
    assert ipv4.is_multicast(ipv4.addr("224.0.0.251")) and not ipv4.is_multicast(ipv4.addr("240.0.0.1"))


@given(addresses)
def test_address_round_trip(value: int) -> None:
    assert ipv4.addr(ipv4.ntoa(value)) == value
    assert ipv4.ntoa(value) == ip_text(value)
