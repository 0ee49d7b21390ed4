"""ARP for IPv4 over Ethernet (RFC 826)."""

from __future__ import annotations

import struct
from typing import NamedTuple

from usernet.wire.errors import ParseError

PACKET_LEN = 28
OP_REQUEST = 1
OP_REPLY = 2
_HTYPE_ETHERNET = 1
_PTYPE_IPV4 = 0x0800

_ARP = struct.Struct("!HHBBH6sI6sI")


class ArpPacket(NamedTuple):
    op: int
    sender_mac: bytes
    sender_ip: int
    target_mac: bytes
    target_ip: int


def parse(buf: bytes | bytearray | memoryview, offset: int = 0) -> ArpPacket:
    if len(buf) - offset < PACKET_LEN:
        raise ParseError("arp.truncated")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(buf, offset)
    if htype != _HTYPE_ETHERNET or ptype != _PTYPE_IPV4 or hlen != 6 or plen != 4:
        raise ParseError("arp.unsupported")
    if op not in (OP_REQUEST, OP_REPLY):
        raise ParseError("arp.bad_op")
    return ArpPacket(op, sha, spa, tha, tpa)


def build(op: int, sender_mac: bytes, sender_ip: int, target_mac: bytes, target_ip: int) -> bytes:
    return _ARP.pack(_HTYPE_ETHERNET, _PTYPE_IPV4, 6, 4, op, sender_mac, sender_ip, target_mac, target_ip)
