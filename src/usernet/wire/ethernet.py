"""Ethernet II framing (802.1Q/802.1ad tags skipped on input).

ParseError reasons: ``eth.truncated`` (shorter than the header and its tags),
``eth.too_many_tags`` (more than two VLAN tags), ``eth.not_ethernet_ii`` (an IEEE 802.3 length
field where the EtherType belongs: LLC/SNAP frames are not ours).
"""

from __future__ import annotations

import re
import struct

from usernet.wire.errors import ParseError

HEADER_LEN = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100  # IEEE 802.1Q customer tag
ETHERTYPE_QINQ = 0x88A8  # IEEE 802.1ad service tag (outer tag of a QinQ stack)
BROADCAST = b"\xff" * 6
MIN_FRAME = 60  # without FCS; shorter frames are padded on transmit
MAX_TAGS = 2  # 802.1ad: one service tag, one customer tag
_MIN_ETHERTYPE = 0x0600  # IEEE 802.3 clause 3.2.6: below 1536 the field is a length, not a type

_HEADER = struct.Struct("!6s6sH")
_TYPE_AT = struct.Struct("!H")
_TAGS = (ETHERTYPE_VLAN, ETHERTYPE_QINQ)
_MAC_TEXT = re.compile(r"[0-9A-Fa-f]{1,2}")


def parse(frame: bytes | bytearray | memoryview) -> tuple[bytes, bytes, int, int]:
    """Return ``(dst_mac, src_mac, ethertype, payload_offset)``.

    Up to two VLAN tags are skipped (whatever their VLAN ID: the host sits on one segment and
    priority-tagged frames carry VID 0); the payload offset then points past them. The payload
    runs to the end of *frame*: the FCS is not expected (links strip it).
    """
    n = len(frame)
    if n < HEADER_LEN:
        raise ParseError("eth.truncated")
    dst, src, ethertype = _HEADER.unpack_from(frame, 0)
    offset = HEADER_LEN
    if ethertype in _TAGS:
        for _ in range(MAX_TAGS):
            if n < offset + 4:
                raise ParseError("eth.truncated")
            # A tag is TPID (already read), TCI (2 bytes), then the next EtherType.
            (ethertype,) = _TYPE_AT.unpack_from(frame, offset + 2)
            offset += 4
            if ethertype not in _TAGS:
                break
        else:
            raise ParseError("eth.too_many_tags")
    if ethertype < _MIN_ETHERTYPE:
        raise ParseError("eth.not_ethernet_ii")
    return dst, src, ethertype, offset


def _check_macs(dst: bytes, src: bytes) -> None:
    # A wrong-length MAC would silently shift every later field (or resize a bytearray).
    if len(dst) != 6 or len(src) != 6:
        raise ValueError(f"MAC addresses must be 6 bytes, got {len(dst)} and {len(src)}")


def write_header(buf: bytearray | memoryview, dst: bytes, src: bytes, ethertype: int) -> None:
    """Write the 14-byte header at the start of *buf* (raises ValueError for bad MAC lengths)."""
    _check_macs(dst, src)
    _HEADER.pack_into(buf, 0, dst, src, ethertype)


def build(dst: bytes, src: bytes, ethertype: int, payload: bytes | bytearray | memoryview) -> bytes:
    """A complete frame; short frames are not padded here (links pad if their medium needs it)."""
    _check_macs(dst, src)
    return b"".join((_HEADER.pack(dst, src, ethertype), payload))


def format_mac(mac: bytes) -> str:
    return mac.hex(":")


def parse_mac(text: str) -> bytes:
    """``02:00:5e:00:00:01`` or ``02-00-5E-00-00-01`` (one or two hex digits a group) to 6 bytes;
    raises ValueError."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(_MAC_TEXT.fullmatch(part) for part in parts):
        raise ValueError(f"bad MAC address: {text!r}")
    return bytes(int(part, 16) for part in parts)
