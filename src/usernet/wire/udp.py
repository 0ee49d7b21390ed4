"""UDP (RFC 768).

ParseError reasons: ``udp.truncated`` (under 8 bytes), ``udp.bad_length`` (the length field
is below 8 or more than the IP payload holds), ``udp.bad_checksum``.
"""

from __future__ import annotations

import struct

from usernet.wire.checksum import checksum, pseudo_header_sum
from usernet.wire.errors import ParseError

HEADER_LEN = 8
PROTO = 17
MAX_PAYLOAD = 65535 - 20 - HEADER_LEN  # the largest that fits an IPv4 datagram without options
_HEADER = struct.Struct("!HHHH")
_CSUM = struct.Struct("!H")


def parse(buf: bytes | bytearray | memoryview, src: int, dst: int,
          verify_checksum: bool = True) -> tuple[int, int, memoryview]:
    """Return ``(src_port, dst_port, payload)`` of the datagram in *buf* (the IP payload).

    The UDP length field bounds the datagram; IP payload bytes past it are ignored, as Linux
    does. A zero checksum means the sender computed none (RFC 768), so nothing is verified.
    """
    view = memoryview(buf)
    if len(view) < HEADER_LEN:
        raise ParseError("udp.truncated")
    sport, dport, length, csum = _HEADER.unpack_from(view, 0)
    if length < HEADER_LEN or length > len(view):
        raise ParseError("udp.bad_length")
    # RFC 768: the sum over pseudo-header, header and data (zero-padded to an even length)
    # must come out as all ones.
    if verify_checksum and csum and checksum(view[:length], src + dst + PROTO + length):
        raise ParseError("udp.bad_checksum")
    return sport, dport, view[HEADER_LEN:length]


def build(src: int, dst: int, sport: int, dport: int, payload: bytes | bytearray | memoryview) -> bytearray:
    """A datagram with its checksum over the pseudo-header from *src* to *dst*.

    Raises ValueError for a payload over 65,527 bytes (the 16-bit length field); IPv4 carries
    at most :data:`MAX_PAYLOAD` of them in one datagram."""
    length = HEADER_LEN + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"UDP payload of {len(payload)} bytes does not fit a datagram")
    dgram = bytearray(HEADER_LEN)
    dgram += payload
    _HEADER.pack_into(dgram, 0, sport, dport, length, 0)
    # RFC 768: a computed zero is sent as all ones (zero on the wire means "no checksum").
    _CSUM.pack_into(dgram, 6, checksum(dgram, pseudo_header_sum(src, dst, PROTO, length)) or 0xFFFF)
    return dgram
