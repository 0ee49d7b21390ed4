"""UDP (RFC 768): a known frame, scapy both ways, the zero checksum, lengths, truncations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.support import addresses, ip_text, reference_checksum
from usernet.wire import ethernet, ipv4, udp
from usernet.wire.checksum import checksum, pseudo_header_sum
from usernet.wire.errors import ParseError

scapy_all = pytest.importorskip("scapy.all")  # an independent implementation of every format

IP, UDP, Raw = scapy_all.IP, scapy_all.UDP, scapy_all.Raw

# A DNS query for example.com A from 10.0.2.15:53124 to 10.0.2.3:53 (checksums by scapy:
# IP 465d, UDP 9c9d).
DNS_QUERY = bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001")
DNS_FRAME = bytes.fromhex(
    "525400123502" "020000000001" "0800"
    "4500" "0039" "1c46" "0000" "40" "11" "465d" "0a00020f" "0a000203"
    "cf84" "0035" "0025" "9c9d") + DNS_QUERY
SRC, DST = ipv4.addr("10.0.2.15"), ipv4.addr("10.0.2.3")


def test_known_dns_frame() -> None:
    _, _, ethertype, offset = ethernet.parse(DNS_FRAME)
    header = ipv4.parse(DNS_FRAME, offset)
    assert (header.src, header.dst, header.proto, header.ident) == (SRC, DST, 17, 0x1C46)
    sport, dport, payload = udp.parse(header.payload, header.src, header.dst)
    assert (sport, dport, bytes(payload)) == (53124, 53, DNS_QUERY)
    datagram = udp.build(SRC, DST, 53124, 53, DNS_QUERY)
    assert bytes(datagram) == DNS_FRAME[34:]
    packet = ipv4.build(src=SRC, dst=DST, proto=17, payload=datagram, ident=0x1C46)
    assert ethernet.build(DNS_FRAME[:6], DNS_FRAME[6:12], 0x0800, packet) == DNS_FRAME


@settings(max_examples=200, deadline=None)
@given(addresses, addresses, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=300),
       st.integers(0, 20))
def test_parse_scapy_datagrams(src: int, dst: int, sport: int, dport: int, payload: bytes, trailing: int) -> None:
    packet = bytes(IP(src=ip_text(src), dst=ip_text(dst)) / UDP(sport=sport, dport=dport) / Raw(payload))
    header = ipv4.parse(packet + bytes(trailing))
    got_sport, got_dport, got_payload = udp.parse(header.payload, src, dst)
    assert (got_sport, got_dport, bytes(got_payload)) == (sport, dport, payload)
    # IP payload past the UDP length is not UDP data (Linux trims it too)
    assert bytes(udp.parse(bytes(header.payload) + b"junk", src, dst)[2]) == payload


@settings(max_examples=200, deadline=None)
@given(addresses, addresses, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=300))
def test_build_dissected_by_scapy(src: int, dst: int, sport: int, dport: int, payload: bytes) -> None:
    ours = bytes(udp.build(src, dst, sport, dport, payload))
    theirs = IP(bytes(IP(src=ip_text(src), dst=ip_text(dst), proto=17) / Raw(ours)))[UDP]
    assert (theirs.sport, theirs.dport, theirs.len) == (sport, dport, 8 + len(payload))
    assert ours[8:] == payload
    del theirs.chksum  # scapy recomputes it over the same pseudo-header and bytes
    rebuilt = IP(bytes(IP(src=ip_text(src), dst=ip_text(dst)) / theirs))[UDP]
    assert rebuilt.chksum == int.from_bytes(ours[6:8], "big")
    reference = bytes(IP(src=ip_text(src), dst=ip_text(dst)) / UDP(sport=sport, dport=dport) / Raw(payload))[20:]
    assert ours == reference
    got_sport, got_dport, got_payload = udp.parse(ours, src, dst)  # and back
    assert (got_sport, got_dport, bytes(got_payload)) == (sport, dport, payload)


def test_zero_checksum_means_none() -> None:
    # RFC 768: "An all zero transmitted checksum value means that the transmitter generated no checksum".
    datagram = bytearray(udp.build(SRC, DST, 5, 6, b"data"))
    datagram[6:8] = b"\0\0"
    assert bytes(udp.parse(datagram, SRC, DST)[2]) == b"data"
    datagram[9] ^= 0x03  # "a" -> "b": not verified at all, so damage passes
    assert bytes(udp.parse(datagram, SRC, DST)[2]) == b"dbta"
    datagram[6:8] = b"\x12\x34"
    with pytest.raises(ParseError) as info:
        udp.parse(datagram, SRC, DST)
    assert info.value.reason == "udp.bad_checksum"
    assert bytes(udp.parse(datagram, SRC, DST, verify_checksum=False)[2]) == b"dbta"


def test_computed_zero_is_sent_as_all_ones() -> None:
    # Choose a payload word equal to the checksum of the datagram without it: the sum becomes
    # 0xFFFF, the computed checksum 0, which RFC 768 says to send as 0xFFFF.
    base = udp.build(SRC, DST, 1, 2, b"\0\0")
    payload = base[6:8]
    datagram = udp.build(SRC, DST, 1, 2, payload)
    assert datagram[6:8] == b"\xff\xff"
    header_and_data = bytes(datagram[:6]) + b"\0\0" + bytes(datagram[8:])
    assert checksum(header_and_data, pseudo_header_sum(SRC, DST, 17, len(datagram))) == 0
    assert bytes(udp.parse(datagram, SRC, DST)[2]) == bytes(payload)  # 0xFFFF verifies
    theirs = bytes(IP(src=ip_text(SRC), dst=ip_text(DST)) / UDP(sport=1, dport=2) / Raw(bytes(payload)))
    assert theirs[26:28] == b"\xff\xff"  # scapy does the same


def test_pseudo_header_is_checked() -> None:
    datagram = udp.build(SRC, DST, 1, 2, b"hello")
    udp.parse(datagram, SRC, DST)
    for src, dst in [(SRC + 1, DST), (SRC, DST ^ 0x100), (DST, SRC + 1)]:
        with pytest.raises(ParseError) as info:
            udp.parse(datagram, src, dst)
        assert info.value.reason == "udp.bad_checksum"
    # swapping source and destination keeps the sum: the checksum cannot tell (RFC 1071 2(B))
    udp.parse(datagram, DST, SRC)


def test_every_single_bit_error_is_detected() -> None:
    datagram = udp.build(SRC, DST, 4242, 7, b"odd-sized payload")
    for bit in range(len(datagram) * 8):
        damaged = bytearray(datagram)
        damaged[bit // 8] ^= 1 << (bit % 8)
        if damaged[6:8] == b"\0\0" or bit // 8 in (4, 5):
            continue  # a field flipped to "no checksum", or a length change (its own reason)
        with pytest.raises(ParseError) as info:
            udp.parse(damaged, SRC, DST)
        assert info.value.reason == "udp.bad_checksum"


def test_lengths() -> None:
    datagram = bytes(udp.build(SRC, DST, 1, 2, b"0123456789"))
    for n in range(8):
        with pytest.raises(ParseError) as info:
            udp.parse(datagram[:n], SRC, DST)
        assert info.value.reason == "udp.truncated"
    for n in range(8, len(datagram)):
        with pytest.raises(ParseError) as info:
            udp.parse(datagram[:n], SRC, DST)
        assert info.value.reason == "udp.bad_length"
    for length in (0, 7):
        bad = datagram[:4] + length.to_bytes(2, "big") + datagram[6:]
        with pytest.raises(ParseError) as info:
            udp.parse(bad, SRC, DST, verify_checksum=False)
        assert info.value.reason == "udp.bad_length"
    # a length of exactly 8 is a valid empty datagram
    empty = udp.build(SRC, DST, 1, 2, b"")
    assert udp.parse(empty, SRC, DST)[2].nbytes == 0


def test_largest_datagram() -> None:
    payload = bytes(range(256)) * 255 + bytes(range(udp.MAX_PAYLOAD - 65280))
    datagram = udp.build(SRC, DST, 1, 2, payload)
    assert len(datagram) == 65515
    pseudo = SRC.to_bytes(4, "big") + DST.to_bytes(4, "big") + b"\0\x11" + len(datagram).to_bytes(2, "big")
    assert reference_checksum(pseudo + bytes(datagram)) == 0
    assert bytes(udp.parse(datagram, SRC, DST)[2]) == payload
    with pytest.raises(ValueError):
        udp.build(SRC, DST, 1, 2, bytes(65535 - 7))
