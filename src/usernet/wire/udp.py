"""UDP (RFC 768)."""

from __future__ import annotations

import struct

from usernet.wire.checksum import checksum, finish, ones_sum, pseudo_header_sum
from usernet.wire.errors import ParseError

HEADER_LEN = 8
PROTO = 17
_HEADER = struct.Struct("!HHHH")


def parse(buf: bytes | bytearray | memoryview, src: int, dst: int,
          verify_checksum: bool = True) -> tuple[int, int, memoryview]:
    """Return ``(src_port, dst_port, payload)``. A zero checksum means the sender computed none."""
    view = memoryview(buf)
    if len(view) < HEADER_LEN:
        raise ParseError("udp.truncated")
    sport, dport, length, csum = _HEADER.unpack_from(view, 0)
    if length < HEADER_LEN or length > len(view):
        raise ParseError("udp.bad_length")
    datagram = view[:length]
    if verify_checksum and csum != 0 and checksum(datagram, pseudo_header_sum(src, dst, PROTO, length)) != 0:
        raise ParseError("udp.bad_checksum")
    return sport, dport, datagram[HEADER_LEN:]


def build(src: int, dst: int, sport: int, dport: int, payload: bytes | bytearray | memoryview) -> bytearray:
    length = HEADER_LEN + len(payload)
    dgram = bytearray(length)
    _HEADER.pack_into(dgram, 0, sport, dport, length, 0)
    dgram[HEADER_LEN:] = payload
    total = ones_sum(dgram) + pseudo_header_sum(src, dst, PROTO, length)

    csum = finish(total) or 0xFFFF  # RFC 768: a computed zero is sent as all ones
    dgram[6] = csum >> 8
    dgram[7] = csum & 0xFF
    return dgram
