"""Ethernet II framing (802.1Q tags skipped on input)."""

from __future__ import annotations

import struct

from usernet.wire.errors import ParseError

HEADER_LEN = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_QINQ = 0x88A8
BROADCAST = b"\xff" * 6
MIN_FRAME = 60  # without FCS; shorter frames are padded on transmit

_TYPE_AT = struct.Struct("!H")


def parse(frame: bytes | bytearray | memoryview) -> tuple[bytes, bytes, int, int]:
    """Return ``(dst_mac, src_mac, ethertype, payload_offset)``.

    Up to two VLAN tags are skipped: the payload offset then points past them.
    """
    n = len(frame)
    if n < HEADER_LEN:
        raise ParseError("eth.truncated")
    (ethertype,) = _TYPE_AT.unpack_from(frame, 12)
    offset = HEADER_LEN
    while ethertype in (ETHERTYPE_VLAN, ETHERTYPE_QINQ):
        if n < offset + 4:
            raise ParseError("eth.truncated")
        (ethertype,) = _TYPE_AT.unpack_from(frame, offset + 2)
        offset += 4
    if ethertype < 0x0600:
        raise ParseError("eth.not_ethernet_ii")  # 802.3 length field, LLC: not ours
    return bytes(frame[0:6]), bytes(frame[6:12]), ethertype, offset


def write_header(buf: bytearray | memoryview, dst: bytes, src: bytes, ethertype: int) -> None:
    buf[0:6] = dst
    buf[6:12] = src
    _TYPE_AT.pack_into(buf, 12, ethertype)


def build(dst: bytes, src: bytes, ethertype: int, payload: bytes | bytearray | memoryview) -> bytes:
    """A complete frame; short frames are not padded here (links pad if their medium needs it)."""
    return b"".join((dst, src, _TYPE_AT.pack(ethertype), payload))


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC address: {text!r}")
    try:
        mac = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"bad MAC address: {text!r}") from None
    return mac
