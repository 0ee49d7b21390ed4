"""ICMP (RFC 792, RFC 1191): known echo frames, scapy both ways for every message kind this
stack meets, error quoting, incremental echo replies, truncations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.support import PING_FRAME, addresses, ip_text, reference_checksum
from usernet.wire import icmp, ipv4, udp
from usernet.wire.errors import ParseError

scapy_all = pytest.importorskip("scapy.all")  # an independent implementation of every format

IP, ICMP, UDP, TCP, Raw = scapy_all.IP, scapy_all.ICMP, scapy_all.UDP, scapy_all.TCP, scapy_all.Raw

# Linux's answer to PING_FRAME: type 0, checksum b9a3 (b1a3 + 0x0800), same identifier, sequence, data.
PONG_ICMP = bytes.fromhex("0000b9a30b1f0001") + PING_FRAME[42:]


def test_known_echo_request_and_reply() -> None:
    request = PING_FRAME[34:]
    message = icmp.parse(request)
    assert (message.type, message.code, icmp.echo_fields(message)) == (icmp.ECHO_REQUEST, 0, (0x0B1F, 1))
    assert bytes(message.body) == PING_FRAME[42:] and len(message.body) == 56
    assert bytes(icmp.build_echo(False, 0x0B1F, 1, message.body)) == request
    assert bytes(icmp.build_echo(True, 0x0B1F, 1, message.body)) == PONG_ICMP
    assert bytes(icmp.build_echo_reply(request)) == PONG_ICMP
    assert bytes(icmp.build(icmp.ECHO_REPLY, 0, message.rest, message.body)) == PONG_ICMP


echo_kind = st.sampled_from([0, 8])
data = st.binary(max_size=200)


@settings(max_examples=150, deadline=None)
@given(echo_kind, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), data)
def test_echo_parse_scapy(kind: int, ident: int, seq: int, payload: bytes) -> None:
    raw = bytes(ICMP(type=kind, id=ident, seq=seq) / Raw(payload))
    message = icmp.parse(raw)
    assert (message.type, message.code, icmp.echo_fields(message), bytes(message.body)) == (kind, 0, (ident, seq),
                                                                                             payload)


@settings(max_examples=150, deadline=None)
@given(st.booleans(), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), data)
def test_echo_build_dissected_by_scapy(reply: bool, ident: int, seq: int, payload: bytes) -> None:
    ours = bytes(icmp.build_echo(reply, ident, seq, payload))
    theirs = ICMP(ours)
    assert (theirs.type, theirs.code, theirs.id, theirs.seq) == (0 if reply else 8, 0, ident, seq)
    assert ours[8:] == payload
    del theirs.chksum
    assert ICMP(bytes(theirs)).chksum == int.from_bytes(ours[2:4], "big")
    assert bytes(ICMP(type=0 if reply else 8, id=ident, seq=seq) / Raw(payload)) == ours


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=300) | st.integers(0, 40).map(bytes))
def test_incremental_echo_reply_equals_full_build(ident: int, seq: int, payload: bytes) -> None:
    request = icmp.build_echo(False, ident, seq, payload)
    reply = icmp.build_echo_reply(request)
    assert reply == icmp.build_echo(True, ident, seq, payload)
    assert reference_checksum(bytes(reply)) == 0
    assert bytes(request[:1]) == b"\x08"  # the request is not touched


def test_incremental_echo_reply_all_zero_message() -> None:
    # Reply of identifier 0, sequence 0, zero data: every byte but the checksum is zero, whose sum
    # is +0, so the field must be 0xFFFF, not the 0x0000 an RFC 1624 update gives.
    reply = icmp.build_echo_reply(icmp.build_echo(False, 0, 0, bytes(20)))
    assert reply[2:4] == b"\xff\xff" == icmp.build_echo(True, 0, 0, bytes(20))[2:4]
    icmp.parse(reply)


error_cases = st.one_of(
    st.tuples(st.just(3), st.integers(0, 15)),
    st.tuples(st.just(11), st.integers(0, 1)),
    st.tuples(st.just(12), st.integers(0, 2)),
)


@settings(max_examples=150, deadline=None)
@given(error_cases, st.integers(0, 0xFFFF), st.integers(0, 255), addresses, addresses, st.binary(max_size=40))
def test_errors_parse_scapy(kind_code, mtu: int, ptr: int, src: int, dst: int, payload: bytes) -> None:
    kind, code = kind_code
    quoted = IP(src=ip_text(src), dst=ip_text(dst)) / UDP(sport=1234, dport=53) / Raw(payload)
    fields = {"nexthopmtu": mtu} if kind == 3 and code == 4 else {"ptr": ptr} if kind == 12 else {}
    raw = bytes(ICMP(type=kind, code=code, **fields) / quoted)
    message = icmp.parse(raw)
    assert (message.type, message.code) == (kind, code) and message.type in icmp.ERROR_TYPES
    assert message.type in icmp.TRANSPORT_ERROR_TYPES
    if kind == 3 and code == 4:
        assert icmp.next_hop_mtu(message) == mtu  # RFC 1191 4: low 16 bits of the second word
    if kind == 12:
        assert icmp.pointer(message) == ptr  # RFC 792: the top byte
    assert bytes(message.body) == bytes(quoted)
    inner = icmp.quoted_datagram(message)
    assert (inner.header_len, inner.proto, inner.src, inner.dst) == (20, 17, src, dst)
    assert udp.parse(inner.transport, src, dst)[:2] == (1234, 53)


@settings(max_examples=100, deadline=None)
@given(error_cases, st.integers(0, 0xFFFF), st.integers(0, 1200))
def test_error_build_dissected_by_scapy(kind_code, mtu: int, payload_len: int) -> None:
    kind, code = kind_code
    original = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=4000, dport=80) / Raw(bytes(payload_len)))
    rest = mtu if (kind, code) == (3, 4) else (mtu & 0xFF) << 24 if kind == 12 else 0
    error = bytes(icmp.build_error(kind, code, original, rest))
    theirs = ICMP(error)
    assert (theirs.type, theirs.code) == (kind, code)
    if (kind, code) == (3, 4):
        assert theirs.nexthopmtu == mtu
    if kind == 12:
        assert theirs.ptr == mtu & 0xFF
    assert theirs[scapy_all.IPerror].dst == "10.0.0.2" and theirs[scapy_all.TCPerror].dport == 80
    assert error[8:] == original[:icmp.MAX_ERROR_QUOTE]
    del theirs.chksum
    assert ICMP(bytes(theirs)).chksum == int.from_bytes(error[2:4], "big")


def test_error_quote_fits_576_bytes() -> None:
    # RFC 1812 4.3.2.3: as much of the datagram as fits without the error exceeding 576 bytes;
    # RFC 792's minimum is the header and 64 bits.
    original = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=9) / Raw(b"z" * 1000))
    error = icmp.build_error(icmp.DEST_UNREACHABLE, icmp.CODE_PORT_UNREACHABLE, original)
    assert 20 + len(error) == 576 and error[8:] == original[:548]
    short = original[:28]
    assert icmp.build_error(icmp.TIME_EXCEEDED, 0, short)[8:] == short
    datagram = bytes(ipv4.build(src=1, dst=2, proto=17, payload=udp.build(1, 2, 5, 6, b"hi"), ident=1))
    message = icmp.parse(icmp.build_error(icmp.DEST_UNREACHABLE, icmp.CODE_FRAGMENTATION_NEEDED, datagram, 1400))
    assert icmp.next_hop_mtu(message) == 1400 and message.rest == 1400
    assert bytes(message.body) == datagram


def test_quote_with_ip_options() -> None:
    inet = pytest.importorskip("scapy.layers.inet")
    original = bytes(IP(src="10.0.0.1", dst="10.0.0.2", options=[inet.IPOption_Router_Alert()])
                     / UDP(sport=7, dport=9) / Raw(b"abc"))
    inner = icmp.quoted_datagram(icmp.parse(icmp.build_error(3, 3, original)))
    assert inner.header_len == 24 and bytes(inner.transport[:4]) == b"\x00\x07\x00\x09"


@pytest.mark.parametrize("quote, reason", [
    (b"", "icmp.quote_truncated"),
    (bytes(IP(src="10.0.0.1", dst="10.0.0.2", proto=17))[:27], "icmp.quote_truncated"),
    (bytes([0x45]) + bytes(26), "icmp.quote_truncated"),
    (bytes([0x65]) + bytes(40), "icmp.quote_bad"),       # an IPv6-looking quote
    (bytes([0x44]) + bytes(40), "icmp.quote_bad"),       # IHL below 5
    (bytes([0x4F]) + bytes(40), "icmp.quote_truncated"),  # IHL 15 needs 68 bytes
])
def test_bad_quotes(quote: bytes, reason: str) -> None:
    message = icmp.parse(icmp.build_error(icmp.DEST_UNREACHABLE, 3, quote))
    with pytest.raises(ParseError) as info:
        icmp.quoted_datagram(message)
    assert info.value.reason == reason


def test_error_type_sets() -> None:
    # RFC 1122 3.2.2: these are errors (never answered with an error)...
    assert icmp.ERROR_TYPES == {3, 4, 5, 11, 12}
    # ...but only these concern the transport (RFC 6633: Source Quench ignored; Redirect is routing).
    assert icmp.TRANSPORT_ERROR_TYPES == {3, 11, 12}
    assert icmp.ECHO_REQUEST not in icmp.ERROR_TYPES and icmp.ECHO_REPLY not in icmp.ERROR_TYPES


def test_truncated_and_bad_checksum() -> None:
    message = bytes(icmp.build_echo(False, 1, 2, b"odd-length body"))
    for n in range(8):
        with pytest.raises(ParseError) as info:
            icmp.parse(message[:n])
        assert info.value.reason == "icmp.truncated"
    for n in range(8, len(message)):  # cut anywhere past the header: the checksum catches it
        with pytest.raises(ParseError) as info:
            icmp.parse(message[:n])
        assert info.value.reason == "icmp.bad_checksum"
    for bit in range(len(message) * 8):  # every single-bit error is detected
        damaged = bytearray(message)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ParseError):
            icmp.parse(damaged)
    assert icmp.parse(bytes(8) + b"x", verify_checksum=False).type == 0


def test_odd_length_checksum_matches_scapy() -> None:
    ours = bytes(icmp.build_echo(False, 9, 9, b"x" * 33))
    assert ICMP(ours).chksum == ICMP(bytes(ICMP(type=8, id=9, seq=9) / Raw(b"x" * 33))).chksum
