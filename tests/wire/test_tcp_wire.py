"""TCP header and options against scapy, and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usernet.wire import ipv4
from usernet.wire import tcp as tcpwire
from usernet.wire.errors import ParseError

scapy_all = pytest.importorskip("scapy.all")
IP, TCP, Raw = scapy_all.IP, scapy_all.TCP, scapy_all.Raw
SRC, DST = ipv4.addr("192.0.2.1"), ipv4.addr("198.51.100.2")


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 0xFFFF), st.integers(1, 0xFFFF), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
       st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.binary(max_size=100),
       st.one_of(st.none(), st.integers(0, 0xFFFF)), st.one_of(st.none(), st.integers(0, 14)), st.booleans(),
       st.one_of(st.none(), st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))))
def test_build_matches_scapy(sport, dport, seq, ack, flags, window, payload, mss, wscale, sack_ok, ts) -> None:
    options = tcpwire.build_options(mss=mss, wscale=wscale, sack_permitted=sack_ok, ts=ts)
    ours = bytes(tcpwire.build(SRC, DST, sport, dport, seq, ack, flags, window, options, payload))
    theirs = IP(bytes(IP(src="192.0.2.1", dst="198.51.100.2", proto=6) / Raw(ours)))[TCP]
    assert (theirs.sport, theirs.dport, theirs.seq, theirs.ack, int(theirs.flags), theirs.window) == (
        sport, dport, seq, ack, flags, window)
    opts = dict((name, value) for name, value in theirs.options if name != "NOP")
    assert opts.get("MSS") == mss and opts.get("WScale") == wscale
    assert ("SAckOK" in opts) == sack_ok and opts.get("Timestamp") == ts
    # scapy recomputes the checksum over the same bytes: it must agree with ours
    check = TCP(ours)
    del check.chksum
    rebuilt = IP(bytes(IP(src="192.0.2.1", dst="198.51.100.2") / check))[TCP]
    assert rebuilt.chksum == int.from_bytes(ours[16:18], "big")
    parsed = tcpwire.parse(ours)
    assert (parsed.options.mss, parsed.options.wscale, parsed.options.sack_permitted) == (mss, wscale, sack_ok)
    assert (parsed.options.ts_val, parsed.options.ts_ecr) == (ts if ts else (None, None))
    assert parsed.payload.tobytes() == payload


def test_parse_scapy_sack_blocks_and_unknown_options() -> None:
    raw = bytes(TCP(sport=1, dport=2, flags="A", options=[("NOP", None), ("NOP", None),
                                                          ("SAck", (100, 200, 300, 400)), (30, b"\x01\x02")]))
    parsed = tcpwire.parse(raw)
    assert parsed.options.sack_blocks == [(100, 200), (300, 400)]


@pytest.mark.parametrize("raw, reason", [
    (b"\0" * 19, "tcp.truncated"),
    (bytes(12) + bytes([0x40]) + bytes(7), "tcp.bad_offset"),           # offset 16 < 20
    (bytes(12) + bytes([0xF0]) + bytes(7), "tcp.bad_offset"),           # offset 60 > length
    (bytes(12) + bytes([0x60]) + bytes(7) + bytes([2, 9, 0, 0]), "tcp.bad_option"),  # length past end
    (bytes(12) + bytes([0x60]) + bytes(7) + bytes([2, 1, 0, 0]), "tcp.bad_option"),  # length below 2
])
def test_malformed(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        tcpwire.parse(raw)
    assert info.value.reason == reason


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_garbage_raises_only_parse_error(data: bytes) -> None:
    try:
        tcpwire.parse(data)
    except ParseError:
        pass
