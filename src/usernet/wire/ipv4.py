"""IPv4 headers (RFC 791): a validated view for input, a header writer for output."""

from __future__ import annotations

import ipaddress
import struct

from usernet.wire.checksum import checksum
from usernet.wire.errors import ParseError

HEADER_LEN = 20
MAX_PACKET = 65535
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

FLAG_DF = 0x4000
FLAG_MF = 0x2000
OFFSET_MASK = 0x1FFF

LIMITED_BROADCAST = 0xFFFFFFFF

_HEADER = struct.Struct("!BBHHHBBHII")


class IPv4Header:
    """Fields of a validated IPv4 header. ``payload`` is a memoryview of exactly the payload
    (trailing link padding removed); no accessor can raise once constructed."""

    __slots__ = ("header_len", "tos", "total_length", "ident", "flags_frag", "ttl", "proto", "src", "dst",
                 "payload")

    def __init__(self, header_len: int, tos: int, total_length: int, ident: int, flags_frag: int, ttl: int,
                 proto: int, src: int, dst: int, payload: memoryview) -> None:
        self.header_len = header_len
        self.tos = tos
        self.total_length = total_length
        self.ident = ident
        self.flags_frag = flags_frag
        self.ttl = ttl
        self.proto = proto
        self.src = src
        self.dst = dst
        self.payload = payload

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags_frag & FLAG_DF)

    @property
    def more_fragments(self) -> bool:
        return bool(self.flags_frag & FLAG_MF)

    @property
    def fragment_offset(self) -> int:
        """Offset in bytes."""
        return (self.flags_frag & OFFSET_MASK) << 3

    @property
    def is_fragment(self) -> bool:
        return bool(self.flags_frag & (FLAG_MF | OFFSET_MASK))


def parse(buf: bytes | bytearray | memoryview, offset: int = 0, verify_checksum: bool = True) -> IPv4Header:
    """Validate and view the IPv4 packet at *offset* of *buf*.

    Checks version, IHL, total length against the buffer, the header checksum and the
    reserved flag bit. Options are skipped (not interpreted): RFC 1122 3.2.1.8 allows a host
    to ignore options it does not implement.
    """
    view = memoryview(buf)
    available = len(view) - offset
    if available < HEADER_LEN:
        raise ParseError("ipv4.truncated")
    ver_ihl, tos, total_length, ident, flags_frag, ttl, proto, _csum, src, dst = _HEADER.unpack_from(view, offset)
    if ver_ihl >> 4 != 4:
        raise ParseError("ipv4.bad_version")
    header_len = (ver_ihl & 0x0F) << 2
    if header_len < HEADER_LEN:
        raise ParseError("ipv4.bad_header_length")
    if total_length < header_len or total_length > available:
        raise ParseError("ipv4.bad_total_length")
    if flags_frag & 0x8000:
        raise ParseError("ipv4.reserved_flag")
    if verify_checksum and checksum(view[offset:offset + header_len]) != 0:
        raise ParseError("ipv4.bad_checksum")
    payload = view[offset + header_len:offset + total_length]
    return IPv4Header(header_len, tos, total_length, ident, flags_frag, ttl, proto, src, dst, payload)


def write_header(buf: bytearray | memoryview, offset: int, *, src: int, dst: int, proto: int, payload_len: int,
                 ident: int, ttl: int = 64, tos: int = 0, flags_frag: int = 0) -> None:
    """Write a 20-byte header (no options) with its checksum at *offset* of *buf*."""
    _HEADER.pack_into(buf, offset, 0x45, tos, HEADER_LEN + payload_len, ident, flags_frag, ttl, proto, 0, src, dst)
    csum = checksum(memoryview(buf)[offset:offset + HEADER_LEN])
    buf[offset + 10] = csum >> 8
    buf[offset + 11] = csum & 0xFF


def build(*, src: int, dst: int, proto: int, payload: bytes | bytearray | memoryview, ident: int, ttl: int = 64,
          tos: int = 0, flags_frag: int = 0) -> bytearray:
    """A whole packet: header followed by *payload*."""
    packet = bytearray(HEADER_LEN + len(payload))
    write_header(packet, 0, src=src, dst=dst, proto=proto, payload_len=len(payload), ident=ident, ttl=ttl, tos=tos,
                 flags_frag=flags_frag)
    packet[HEADER_LEN:] = payload
    return packet


def addr(text: str) -> int:
    """Dotted quad to int (raises ValueError)."""
    return int(ipaddress.IPv4Address(text))


def ntoa(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def is_multicast(value: int) -> bool:
    return value >> 28 == 0xE


def is_martian_source(value: int) -> bool:
    """Source addresses a host must discard (RFC 1122 3.2.1.3): 0/8 (except 0.0.0.0 itself, used by
    DHCP clients), loopback, multicast, class E, and the limited broadcast."""
    first = value >> 24
    if value == 0:
        return False
    return first in (0, 127) or first >= 224
