"""Ethernet II (with 802.1Q/802.1ad tags) and ARP: known frames, scapy both ways, truncations."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.support import addresses, ip_text, mac_text, macs
from usernet.wire import arp, ethernet, ipv4
from usernet.wire.errors import ParseError

scapy_all = pytest.importorskip("scapy.all")  # an independent implementation of every format

Ether, ARP, Dot1Q, Dot1AD, Raw = (scapy_all.Ether, scapy_all.ARP, scapy_all.Dot1Q, scapy_all.Dot1AD,
                                  scapy_all.Raw)

# "who-has 10.0.0.2 tell 10.0.0.1" as it appears on the wire, padded to the 60-byte minimum.
ARP_REQUEST_FRAME = bytes.fromhex(
    "ffffffffffff" "020000000001" "0806"        # broadcast, sender, EtherType ARP
    "0001" "0800" "06" "04" "0001"              # Ethernet, IPv4, hlen 6, plen 4, request
    "020000000001" "0a000001"                   # sender MAC, sender IP
    "000000000000" "0a000002"                   # target MAC (unknown), target IP
) + bytes(18)


# ----------------------------------------------------------------- Ethernet

def test_known_arp_frame() -> None:
    dst, src, ethertype, offset = ethernet.parse(ARP_REQUEST_FRAME)
    assert (dst, src, ethertype, offset) == (ethernet.BROADCAST, bytes.fromhex("020000000001"), 0x0806, 14)
    packet = arp.parse(ARP_REQUEST_FRAME, offset)
    assert packet == arp.ArpPacket(arp.OP_REQUEST, bytes.fromhex("020000000001"), ipv4.addr("10.0.0.1"),
                                   bytes(6), ipv4.addr("10.0.0.2"))
    rebuilt = ethernet.build(dst, src, ethertype, arp.build(*packet))
    assert rebuilt == ARP_REQUEST_FRAME[:42]


@settings(max_examples=150, deadline=None)
@given(macs, macs, st.integers(0x0600, 0xFFFF).filter(lambda t: t not in (0x8100, 0x88A8)),
       st.binary(max_size=64))
def test_parse_scapy_frames(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> None:
    frame = bytes(Ether(dst=mac_text(dst), src=mac_text(src), type=ethertype) / Raw(payload))
    assert ethernet.parse(frame) == (dst, src, ethertype, 14)
    assert ethernet.parse(memoryview(frame)) == ethernet.parse(bytearray(frame)) == (dst, src, ethertype, 14)


@settings(max_examples=150, deadline=None)
@given(macs, macs, st.integers(0x0600, 0xFFFF), st.binary(max_size=64))
def test_build_dissected_by_scapy(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> None:
    frame = ethernet.build(dst, src, ethertype, payload)
    theirs = Ether(frame)
    assert (theirs.dst, theirs.src, theirs.type) == (mac_text(dst), mac_text(src), ethertype)
    assert frame[14:] == payload
    buf = bytearray(14 + len(payload))
    ethernet.write_header(buf, dst, src, ethertype)
    buf[14:] = payload
    assert bytes(buf) == frame
    if ethertype not in (0x8100, 0x88A8):
        assert ethernet.parse(frame) == (dst, src, ethertype, 14)  # and back


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 4095), st.integers(0, 7), st.integers(0, 4095), st.booleans())
def test_vlan_tags_skipped(vlan: int, prio: int, outer_vlan: int, double: bool) -> None:
    inner = Dot1Q(vlan=vlan, prio=prio) / scapy_all.IP(src="10.0.0.1", dst="10.0.0.2") / scapy_all.UDP()
    layers = Dot1AD(vlan=outer_vlan) / inner if double else inner
    frame = bytes(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / layers)
    dst, src, ethertype, offset = ethernet.parse(frame)
    assert ethertype == ethernet.ETHERTYPE_IPV4 and offset == (22 if double else 18)
    assert ipv4.parse(frame, offset).dst == ipv4.addr("10.0.0.2")


def test_vlan_tagged_arp_frame() -> None:
    frame = ARP_REQUEST_FRAME[:12] + bytes.fromhex("81000005") + ARP_REQUEST_FRAME[12:]
    _, _, ethertype, offset = ethernet.parse(frame)
    assert (ethertype, offset) == (ethernet.ETHERTYPE_ARP, 18)
    assert arp.parse(frame, offset).target_ip == ipv4.addr("10.0.0.2")


def test_more_than_two_tags_rejected() -> None:
    tag = bytes.fromhex("81000001")
    frame = bytes(12) + tag * 3 + b"\x08\x00" + bytes(46)
    with pytest.raises(ParseError) as info:
        ethernet.parse(frame)
    assert info.value.reason == "eth.too_many_tags"
    # a frame made of nothing but tags ends as truncated or too many tags, never a long loop
    with pytest.raises(ParseError):
        ethernet.parse(bytes(12) + tag * 400)


@pytest.mark.parametrize("ethertype", [0x0000, 0x0040, 0x05DC, 0x05FF])
def test_8023_length_field_rejected(ethertype: int) -> None:
    with pytest.raises(ParseError) as info:
        ethernet.parse(bytes(12) + ethertype.to_bytes(2, "big") + bytes(46))
    assert info.value.reason == "eth.not_ethernet_ii"
    frame = bytes(12) + bytes.fromhex("8100 0001") + ethertype.to_bytes(2, "big") + bytes(46)
    with pytest.raises(ParseError):
        ethernet.parse(frame)


def test_truncated_at_every_length() -> None:
    frame = ARP_REQUEST_FRAME[:12] + bytes.fromhex("88a8000a" "81000005") + ARP_REQUEST_FRAME[12:]
    for n in range(22):  # header (14) plus two tags (8)
        with pytest.raises(ParseError) as info:
            ethernet.parse(frame[:n])
        assert info.value.reason == "eth.truncated"
    assert ethernet.parse(frame[:22])[2:] == (ethernet.ETHERTYPE_ARP, 22)


def test_builders_reject_bad_macs() -> None:
    with pytest.raises(ValueError):
        ethernet.build(b"\x01" * 5, b"\x02" * 6, 0x0800, b"")
    buf = bytearray(60)
    with pytest.raises(ValueError):
        ethernet.write_header(buf, b"\x01" * 6, b"\x02" * 7, 0x0800)
    assert len(buf) == 60


def test_mac_text() -> None:
    assert ethernet.parse_mac("02-0a-0B-0c-0d-0e") == bytes.fromhex("020a0b0c0d0e")
    assert ethernet.parse_mac("2:a:b:c:d:e") == bytes.fromhex("020a0b0c0d0e")
    assert ethernet.format_mac(bytes.fromhex("020a0b0c0d0e")) == "02:0a:0b:0c:0d:0e"
    for bad in ["02:00:00", "02:00:00:00:00:00:00", "0x2:0:0:0:0:0", "02:00:00:00:00:100", "+2:0:0:0:0:0",
                "02:00:00:00:00:", "02:00:00:00:00:0g", " 2:0:0:0:0:0"]:
        with pytest.raises(ValueError):
            ethernet.parse_mac(bad)


@given(macs)
def test_mac_text_round_trip(mac: bytes) -> None:
    assert ethernet.parse_mac(ethernet.format_mac(mac)) == mac


# ----------------------------------------------------------------- ARP

@settings(max_examples=150, deadline=None)
@given(st.sampled_from([1, 2]), macs, addresses, macs, addresses, st.integers(0, 18))
def test_arp_parse_scapy(op: int, sha: bytes, spa: int, tha: bytes, tpa: int, padding: int) -> None:
    raw = bytes(ARP(op=op, hwsrc=mac_text(sha), psrc=ip_text(spa), hwdst=mac_text(tha), pdst=ip_text(tpa)))
    assert arp.parse(raw + bytes(padding)) == (op, sha, spa, tha, tpa)
    assert arp.parse(b"\xee" * 14 + raw, 14) == (op, sha, spa, tha, tpa)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([1, 2]), macs, addresses, macs, addresses)
def test_arp_build_dissected_by_scapy(op: int, sha: bytes, spa: int, tha: bytes, tpa: int) -> None:
    raw = arp.build(op, sha, spa, tha, tpa)
    theirs = ARP(raw)
    assert (theirs.hwtype, theirs.ptype, theirs.hwlen, theirs.plen) == (1, 0x0800, 6, 4)
    assert (theirs.op, theirs.hwsrc, theirs.psrc, theirs.hwdst, theirs.pdst) == (
        op, mac_text(sha), ip_text(spa), mac_text(tha), ip_text(tpa))
    assert arp.parse(raw) == (op, sha, spa, tha, tpa)


@pytest.mark.parametrize("hwtype", [0, 6, 0x0006, 0x000F, 0x0020, 0xFFFF])
def test_arp_unsupported_hardware_types(hwtype: int) -> None:
    # IEEE 802 (6), Frame Relay (15), InfiniBand (32)...: not Ethernet, not our layout.
    raw = bytes(ARP(hwtype=hwtype, psrc="10.0.0.1", pdst="10.0.0.2"))
    with pytest.raises(ParseError) as info:
        arp.parse(raw)
    assert info.value.reason == "arp.unsupported_hardware"


@pytest.mark.parametrize("field, value, reason", [
    ("hwlen", 8, "arp.unsupported_hardware"),
    ("ptype", 0x86DD, "arp.unsupported_protocol"),
    ("plen", 16, "arp.unsupported_protocol"),
    ("op", 3, "arp.bad_op"),   # RARP request
    ("op", 8, "arp.bad_op"),   # InARP request
    ("op", 0, "arp.bad_op"),
])
def test_arp_other_rejections(field: str, value: int, reason: str) -> None:
    raw = bytes(ARP(psrc="10.0.0.1", pdst="10.0.0.2", **{field: value}))[:28]
    raw += bytes(28 - len(raw))
    with pytest.raises(ParseError) as info:
        arp.parse(raw)
    assert info.value.reason == reason


def test_arp_truncated_at_every_length() -> None:
    raw = arp.build(arp.OP_REPLY, b"\x02" * 6, 1, b"\x04" * 6, 2)
    for n in range(len(raw)):
        with pytest.raises(ParseError) as info:
            arp.parse(raw[:n])
        assert info.value.reason == "arp.truncated"
        with pytest.raises(ParseError):
            arp.parse(bytes(14) + raw[:n], 14)
    with pytest.raises(ParseError):
        arp.parse(raw, 1)
    with pytest.raises(ParseError):
        arp.parse(raw, 100)


def test_arp_build_rejects_bad_macs() -> None:
    with pytest.raises(ValueError):
        arp.build(1, b"\x02" * 5, 1, bytes(6), 2)
    with pytest.raises(ValueError):
        arp.build(1, b"\x02" * 6, 1, bytes(7), 2)
