"""Shared pieces of the wire tests: a naive checksum to compare against, hypothesis strategies.
Modules that cross-check against scapy import it themselves, so the rest runs without it."""

from __future__ import annotations

import struct
from collections.abc import Callable

from hypothesis import strategies as st

from usernet.wire.errors import ParseError


def reference_checksum(data: bytes) -> int:
    """RFC 1071 section 4.1 the slow way: 16-bit words, zero pad, end-around carry."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_text(value: int) -> str:
    return ".".join(str(b) for b in value.to_bytes(4, "big"))


def mac_text(value: bytes) -> str:
    return value.hex(":")


def only_parse_error(parser: Callable[[bytes], object], data: bytes) -> str | None:
    """Run *parser*; return the ParseError reason or None. Any other exception fails the test."""
    try:
        parser(data)
    except ParseError as err:
        assert err.reason and isinstance(err.reason, str)
        return err.reason
    return None


addresses = st.integers(0, 2**32 - 1)
ports = st.integers(0, 0xFFFF)
macs = st.binary(min_size=6, max_size=6)
# Mutations of a valid packet: byte overwrites at positions (taken modulo the length), then a cut.
edits = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8)

# A Linux ping (56 data bytes) from 10.0.2.15 to 10.0.2.2, as captured: header checksum d56c,
# ICMP checksum b1a3. Checksums computed by scapy, not by us.
PING_FRAME = bytes.fromhex(
    "525400123502" "020000000001" "0800"
    "4500" "0054" "4d2c" "4000" "40" "01" "d56c" "0a00020f" "0a000202"
    "08" "00" "b1a3" "0b1f" "0001"
    "8d3e6a6600000000" "7ac40a0000000000" + bytes(range(0x10, 0x38)).hex())
