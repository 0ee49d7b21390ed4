"""ARP for IPv4 over Ethernet (RFC 826).

ParseError reasons: ``arp.truncated``, ``arp.unsupported_hardware`` (ar$hrd is not Ethernet or
ar$hln is not 6), ``arp.unsupported_protocol`` (ar$pro is not IPv4 or ar$pln is not 4),
``arp.bad_op`` (neither request nor reply: RARP, InARP and the rest are not ours).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from usernet.wire.errors import ParseError

PACKET_LEN = 28
OP_REQUEST = 1
OP_REPLY = 2
HTYPE_ETHERNET = 1  # RFC 826 ar$hrd; IEEE 802 networks use 6 (RFC 1042), which we do not speak
PTYPE_IPV4 = 0x0800

_ARP = struct.Struct("!HHBBH6sI6sI")
_FIXED = struct.Struct("!HHBBH")  # ar$hrd, ar$pro, ar$hln, ar$pln, ar$op
_ADDRESSES = struct.Struct("!6sI6sI")


class ArpPacket(NamedTuple):
    op: int
    sender_mac: bytes
    sender_ip: int
    target_mac: bytes
    target_ip: int


def parse(buf: bytes | bytearray | memoryview, offset: int = 0) -> ArpPacket:
    """The Ethernet/IPv4 ARP packet at *offset* of *buf*; trailing link padding is ignored."""
    available = len(buf) - offset
    if offset < 0 or available < _FIXED.size:
        raise ParseError("arp.truncated")
    htype, ptype, hlen, plen, op = _FIXED.unpack_from(buf, offset)
    # RFC 826 "Packet Reception": check ar$hrd (and optionally ar$hln), then ar$pro; before the
    # length, so that another medium's ARP (other address sizes) is named for what it is. The
    # lengths must match the types, or the fixed layout below would be wrong.
    if htype != HTYPE_ETHERNET or hlen != 6:
        raise ParseError("arp.unsupported_hardware")
    if ptype != PTYPE_IPV4 or plen != 4:
        raise ParseError("arp.unsupported_protocol")
    if op != OP_REQUEST and op != OP_REPLY:
        raise ParseError("arp.bad_op")
    if available < PACKET_LEN:
        raise ParseError("arp.truncated")
    sha, spa, tha, tpa = _ADDRESSES.unpack_from(buf, offset + _FIXED.size)
    return ArpPacket(op, sha, spa, tha, tpa)


def build(op: int, sender_mac: bytes, sender_ip: int, target_mac: bytes, target_ip: int) -> bytes:
    """A 28-byte packet; raises ValueError for MACs that are not 6 bytes (``struct`` would pad
    or cut them silently)."""
    if len(sender_mac) != 6 or len(target_mac) != 6:
        raise ValueError("ARP hardware addresses must be 6 bytes")
    return _ARP.pack(HTYPE_ETHERNET, PTYPE_IPV4, 6, 4, op, sender_mac, sender_ip, target_mac, target_ip)
