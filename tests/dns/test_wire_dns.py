"""wire/dns.py: scapy's DNS layer both ways on generated messages, compression, every ParseError
reason, and hypothesis garbage (compression loops, pointers past the end) raising only ParseError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usernet.wire import dns
from usernet.wire.errors import ParseError

scapy_dns = pytest.importorskip("scapy.layers.dns")
DNS, DNSQR, DNSRR = scapy_dns.DNS, scapy_dns.DNSQR, scapy_dns.DNSRR

labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
names = st.lists(labels, min_size=1, max_size=4).map(".".join)
ipv4s = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6s = st.binary(min_size=16, max_size=16).map(lambda b: str(__import__("ipaddress").IPv6Address(b)))


@st.composite
def records(draw: st.DrawFn) -> dns.Record:
    name = draw(names)
    ttl = draw(st.integers(0, 0x7FFFFFFF))
    kind = draw(st.sampled_from(["A", "AAAA", "CNAME", "PTR", "NS", "TXT"]))
    if kind == "A":
        return dns.Record(name, dns.A, ttl, draw(ipv4s))
    if kind == "AAAA":
        return dns.Record(name, dns.AAAA, ttl, draw(ipv6s))
    if kind == "TXT":
        return dns.Record(name, dns.TXT, ttl, (draw(st.binary(min_size=1, max_size=40)),))
    return dns.Record(name, dns.TYPES[kind], ttl, draw(names))


@st.composite
def messages(draw: st.DrawFn) -> dns.Message:
    return dns.Message(draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF)) & ~0x0070,
                       [dns.Question(draw(names), draw(st.sampled_from([dns.A, dns.AAAA, dns.PTR])))],
                       draw(st.lists(records(), max_size=6)), draw(st.lists(records(), max_size=2)))


def _scapy_data(rr) -> object:  # type: ignore[no-untyped-def]
    data = rr.rdata
    if rr.type in (dns.CNAME, dns.PTR, dns.NS):
        return data.decode().rstrip(".")
    if rr.type == dns.TXT:
        return tuple(data)
    return data


@settings(max_examples=150, deadline=None)
@given(messages(), st.booleans())
def test_scapy_reads_what_we_build(message: dns.Message, compress: bool) -> None:
    theirs = DNS(dns.build(message, compress=compress))
    assert theirs.id == message.id and theirs.qr == message.qr and theirs.rd == message.rd
    assert theirs.rcode == message.rcode and theirs.tc == message.tc and theirs.aa == message.aa
    assert [(q.qname.decode().rstrip("."), q.qtype) for q in theirs.qd] == \
        [(q.name, q.qtype) for q in message.questions]
    got = [(rr.rrname.decode().rstrip("."), rr.type, rr.ttl, _scapy_data(rr)) for rr in theirs.an]
    assert got == [(r.name, r.rtype, r.ttl, r.data) for r in message.answers]
    assert theirs.nscount == len(message.authority)


@settings(max_examples=150, deadline=None)
@given(messages())
def test_we_read_what_scapy_builds(message: dns.Message) -> None:
    def rr(r: dns.Record):  # type: ignore[no-untyped-def]
        data = list(r.data) if r.rtype == dns.TXT else r.data
        return DNSRR(rrname=r.name, type=r.rtype, ttl=r.ttl, rdata=data)

    packet = DNS(id=message.id, qr=message.qr, rd=message.rd, aa=message.aa, tc=message.tc, rcode=message.rcode,
                 qd=[DNSQR(qname=q.name, qtype=q.qtype) for q in message.questions],
                 an=[rr(r) for r in message.answers], ns=[rr(r) for r in message.authority])
    ours = dns.parse(bytes(packet))
    assert ours.id == message.id and ours.questions == message.questions
    assert ours.answers == message.answers and ours.authority == message.authority


@settings(max_examples=200, deadline=None)
@given(messages())
def test_round_trip_and_compression_saves_space(message: dns.Message) -> None:
    packed, plain = dns.build(message), dns.build(message, compress=False)
    assert dns.parse(packed) == dns.parse(plain)
    assert dns.parse(packed).answers == message.answers and len(packed) <= len(plain)


def test_known_query_bytes_and_edns() -> None:
    # The same query test_udp.py carries as a known frame (example.com A, ID 0xabcd, RD).
    assert dns.query(0xABCD, "example.com", dns.A, edns=None) == \
        bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001")
    message = dns.parse(dns.query(1, "example.com", dns.AAAA))
    assert message.edns is not None and message.udp_size == 1232 and message.rd
    theirs = DNS(dns.query(1, "example.com", dns.AAAA))
    assert theirs.arcount == 1 and theirs.ar[0].type == dns.OPT and theirs.ar[0].rclass == 1232


def test_soa_mx_and_escaped_labels() -> None:
    soa = dns.Record("example.com", dns.SOA, 300, ("ns1.example.com", "hostmaster.example.com", 7, 1, 2, 3, 60))
    mx = dns.Record("example.com", dns.MX, 300, (10, "mail.example.com"))
    odd = dns.Record("a\\.b.ex\\032ample", dns.A, 1, "1.2.3.4")
    message = dns.parse(dns.build(dns.Message(1, dns.QR, [], [mx, odd], [soa])))
    assert message.authority == [soa] and message.answers == [mx, odd]
    assert dns.encode_name("a\\.b.ex\\032ample") == [b"a.b", b"ex ample"]


def test_names_that_cannot_be_encoded() -> None:
    for bad in ("a..b", "x" * 64 + ".com", ".".join(["abcdefghi"] * 26)):
        with pytest.raises(ValueError):
            dns.encode_name(bad)
    assert dns.encode_name("bücher.example") == [b"xn--bcher-kva", b"example"]


HEADER = struct.pack("!HHHHHH", 1, 0x8180, 1, 0, 0, 0)


@pytest.mark.parametrize("body, reason", [
    (b"", "dns.truncated"),
    (b"\x03www", "dns.truncated"),                         # the name runs off the end
    (b"\x03www\x00\x00", "dns.truncated"),                 # qtype/qclass cut short
    (b"\x40abc\x00\x00\x01\x00\x01", "dns.bad_label"),     # label type 01
    (b"\x80abc\x00\x00\x01\x00\x01", "dns.bad_label"),     # label type 10
    (b"\xc0\xff\x00\x01\x00\x01", "dns.bad_pointer"),      # pointer past the end
    (b"\xc0\x0c\x00\x01\x00\x01", "dns.pointer_loop"),     # a pointer to itself
    (b"\x01a\xc0\x0c\x00\x01\x00\x01", "dns.pointer_loop"),  # back to its own start: a loop
    (b"\xc0", "dns.truncated"),                            # half a pointer
    ((b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01", "dns.name_too_long"),
])
def test_each_malformation_has_its_reason(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        dns.parse(HEADER[:12] + body if body else HEADER[:11])
    assert info.value.reason == reason


def test_forward_pointer_chain_is_a_loop_and_backward_chain_is_fine() -> None:
    # Two names that point at each other: 12 -> 20 -> 12 (the first pointer points forwards).
    body = b"\x01a\xc0\x14" + b"\x00\x01\x00\x01" + b"\x01b\xc0\x0c"
    with pytest.raises(ParseError) as info:
        dns.parse(HEADER + body)
    assert info.value.reason == "dns.pointer_loop"
    # A long backward chain of single labels is a legal (if silly) name: 41 questions, each one
    # label in front of a pointer to the one before, and an answer owned by the last.
    message = bytearray(struct.pack("!HHHHHH", 1, 0x8180, 41, 1, 0, 0))
    message += b"\x01a\x00" + struct.pack("!HH", dns.A, 1)
    prev = 12
    for _ in range(40):
        here = len(message)
        message += b"\x01b" + struct.pack("!H", 0xC000 | prev) + struct.pack("!HH", dns.A, 1)
        prev = here
    message += struct.pack("!H", 0xC000 | prev) + struct.pack("!HHIH", dns.A, 1, 5, 4) + bytes(4)
    parsed = dns.parse(bytes(message))
    assert parsed.answers[0].name == ".".join(["b"] * 40 + ["a"]) and len(parsed.questions) == 41


@pytest.mark.parametrize("rtype, rdata", [(dns.A, bytes(5)), (dns.AAAA, bytes(4)), (dns.CNAME, b"\x01a\x00\x00"),
                                          (dns.TXT, b"\x05ab"), (dns.SOA, b"\x00\x00" + bytes(19))])
def test_bad_rdata(rtype: int, rdata: bytes) -> None:
    message = struct.pack("!HHHHHH", 1, 0x8180, 0, 1, 0, 0) + b"\x00" + struct.pack("!HHIH", rtype, 1, 0,
                                                                                    len(rdata)) + rdata
    with pytest.raises(ParseError) as info:
        dns.parse(message)
    assert info.value.reason == "dns.bad_rdata"


def test_ttl_with_top_bit_reads_as_zero() -> None:
    message = struct.pack("!HHHHHH", 1, 0x8180, 0, 1, 0, 0) + b"\x00" + struct.pack("!HHIH", dns.A, 1,
                                                                                    0x80000001, 4) + bytes(4)
    assert dns.parse(message).answers[0].ttl == 0


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_raises_only_parse_error(data: bytes) -> None:
    try:
        dns.parse(data)
    except ParseError:
        pass


@settings(max_examples=800, deadline=None)
@given(st.lists(st.one_of(st.binary(min_size=1, max_size=8),
                          st.integers(0, 0x3FFF).map(lambda p: struct.pack("!H", 0xC000 | p)),
                          st.integers(0, 63).map(lambda n: bytes([n]) + b"x" * n)), max_size=30),
       st.integers(0, 3), st.integers(0, 3))
def test_pointer_soup_raises_only_parse_error(parts: list[bytes], qd: int, an: int) -> None:
    data = struct.pack("!HHHHHH", 1, 0x8180, qd, an, 0, 0) + b"".join(parts)
    try:
        dns.parse(data)
    except ParseError:
        pass
