"""ICMPv4 (RFC 792; RFC 1191 for fragmentation-needed; RFC 1122 3.2.2 for what hosts do).

ParseError reasons: ``icmp.truncated`` (under 8 bytes), ``icmp.bad_checksum``; and from
:func:`quoted_datagram`, ``icmp.quote_truncated`` / ``icmp.quote_bad`` for an error message
whose quoted datagram is too short or not IPv4.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from usernet.wire.checksum import checksum, update16
from usernet.wire.errors import ParseError

HEADER_LEN = 8
ECHO_REPLY = 0
DEST_UNREACHABLE = 3
SOURCE_QUENCH = 4
REDIRECT = 5
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12
TIMESTAMP = 13
TIMESTAMP_REPLY = 14

# Destination unreachable codes
CODE_NET_UNREACHABLE = 0
CODE_HOST_UNREACHABLE = 1
CODE_PROTOCOL_UNREACHABLE = 2
CODE_PORT_UNREACHABLE = 3
CODE_FRAGMENTATION_NEEDED = 4
# Time exceeded codes
CODE_TTL_EXCEEDED = 0
CODE_REASSEMBLY_TIMEOUT = 1

# RFC 1122 3.2.2: the ICMP *error* messages. No ICMP error is ever sent about one of these.
ERROR_TYPES = frozenset((DEST_UNREACHABLE, SOURCE_QUENCH, REDIRECT, TIME_EXCEEDED, PARAMETER_PROBLEM))
# The errors a host hands to the transport whose datagram is quoted (RFC 1122 3.2.2.1,
# 3.2.2.4, 3.2.2.5). Not Source Quench (RFC 6633: hosts MUST silently ignore it) nor Redirect
# (RFC 1122 3.2.2.2: it updates the route cache and is no error for the socket).
TRANSPORT_ERROR_TYPES = frozenset((DEST_UNREACHABLE, TIME_EXCEEDED, PARAMETER_PROBLEM))

# RFC 792 needs the IP header plus 8 bytes; RFC 1812 4.3.2.3 suggests quoting as much as fits
# in 576 bytes, which Linux does, so the peer sees whole TCP/UDP headers. 576 minus our own
# 20-byte IP header and the 8-byte ICMP header.
MAX_ERROR_QUOTE = 576 - 20 - HEADER_LEN

_HEADER = struct.Struct("!BBHI")
_CSUM = struct.Struct("!H")
_QUOTE = struct.Struct("!B8xB2xII")  # ver/IHL ... protocol ... source, destination


class IcmpMessage(NamedTuple):
    type: int
    code: int
    rest: int  # the 4 bytes after the checksum, as an int (id/seq, next-hop MTU, pointer...)
    body: memoryview


class QuotedDatagram(NamedTuple):
    """The start of the datagram an ICMP error quotes (RFC 792: its IP header + 64 bits)."""
    header_len: int
    proto: int
    src: int
    dst: int
    transport: memoryview  # at least the first 8 bytes of the transport header (ports, TCP seq)


def parse(buf: bytes | bytearray | memoryview, verify_checksum: bool = True) -> IcmpMessage:
    """The ICMP message filling *buf* (the IP payload). The checksum covers all of it (RFC 792)."""
    view = memoryview(buf)
    if len(view) < HEADER_LEN:
        raise ParseError("icmp.truncated")
    if verify_checksum and checksum(view) != 0:
        raise ParseError("icmp.bad_checksum")
    icmp_type, code, _csum, rest = _HEADER.unpack_from(view, 0)
    return IcmpMessage(icmp_type, code, rest, view[HEADER_LEN:])


def build(icmp_type: int, code: int, rest: int, body: bytes | bytearray | memoryview) -> bytearray:
    msg = bytearray(HEADER_LEN)
    msg += body
    _HEADER.pack_into(msg, 0, icmp_type, code, 0, rest)
    _CSUM.pack_into(msg, 2, checksum(msg))
    return msg


def build_echo(reply: bool, ident: int, seq: int, data: bytes | bytearray | memoryview) -> bytearray:
    return build(ECHO_REPLY if reply else ECHO_REQUEST, 0, (ident << 16) | seq, data)


def build_echo_reply(request: bytes | bytearray | memoryview) -> bytearray:
    """The Echo Reply to a (checksum-verified) Echo Request message: a copy with the type
    changed and the checksum updated incrementally (RFC 1624) instead of summed again, which
    matters for large pings. Same bytes as ``build(ECHO_REPLY, 0, rest, body)``."""
    reply = bytearray(request)
    if len(reply) < HEADER_LEN:
        raise ValueError("not an ICMP message")
    old_word = (reply[0] << 8) | reply[1]
    reply[0] = ECHO_REPLY
    (field,) = _CSUM.unpack_from(reply, 2)
    csum = update16(field, old_word, reply[1])
    if csum == 0:
        reply[2] = reply[3] = 0
        if not any(reply):
            csum = 0xFFFF  # an all-zero reply sums to +0, which the incremental update cannot tell
    _CSUM.pack_into(reply, 2, csum)
    return reply


def build_error(icmp_type: int, code: int, original_ip_packet: bytes | bytearray | memoryview,
                rest: int = 0) -> bytearray:
    """An error message quoting the offending datagram's header and leading payload.

    *rest* is the second word: the next-hop MTU for fragmentation needed (RFC 1191 4, low 16
    bits), the pointer for parameter problem (RFC 792, the top byte: ``pointer << 24``), else 0.
    """
    return build(icmp_type, code, rest, memoryview(original_ip_packet)[:MAX_ERROR_QUOTE])


def echo_fields(msg: IcmpMessage) -> tuple[int, int]:
    """(identifier, sequence) of an echo request or reply."""
    return msg.rest >> 16, msg.rest & 0xFFFF


def next_hop_mtu(msg: IcmpMessage) -> int:
    """RFC 1191 4: the next-hop MTU of a fragmentation-needed message (0 from old routers)."""
    return msg.rest & 0xFFFF


def pointer(msg: IcmpMessage) -> int:
    """RFC 792: the octet a parameter problem message points at in the quoted header."""
    return msg.rest >> 24


def quoted_datagram(msg: IcmpMessage) -> QuotedDatagram:
    """The quoted datagram of an error message, checked to hold an IPv4 header and the 8
    transport bytes RFC 792 promises (RFC 1122 3.2.2: how errors are matched to sockets).
    The quoted header's checksum and total length are not checked: routers may have changed
    the datagram (TTL, fragmentation) and quotes are often cut short."""
    body = msg.body
    if len(body) < 20 + 8:
        raise ParseError("icmp.quote_truncated")
    ver_ihl, proto, src, dst = _QUOTE.unpack_from(body, 0)
    header_len = (ver_ihl & 0x0F) << 2
    if ver_ihl >> 4 != 4 or header_len < 20:
        raise ParseError("icmp.quote_bad")
    if len(body) < header_len + 8:
        raise ParseError("icmp.quote_truncated")
    return QuotedDatagram(header_len, proto, src, dst, body[header_len:])
