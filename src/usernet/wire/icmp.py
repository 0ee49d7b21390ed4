"""ICMPv4 (RFC 792, RFC 1191 for fragmentation-needed)."""

from __future__ import annotations

import struct
from typing import NamedTuple

from usernet.wire.checksum import checksum
from usernet.wire.errors import ParseError

HEADER_LEN = 8
ECHO_REPLY = 0
DEST_UNREACHABLE = 3
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12

# Destination unreachable codes
CODE_NET_UNREACHABLE = 0
CODE_HOST_UNREACHABLE = 1
CODE_PROTOCOL_UNREACHABLE = 2
CODE_PORT_UNREACHABLE = 3
CODE_FRAGMENTATION_NEEDED = 4
# Time exceeded codes
CODE_TTL_EXCEEDED = 0
CODE_REASSEMBLY_TIMEOUT = 1

ERROR_TYPES = frozenset((DEST_UNREACHABLE, TIME_EXCEEDED, PARAMETER_PROBLEM, 4, 5))
# RFC 1812 4.3.2.3 suggests quoting more; RFC 792 needs the IP header plus 8 bytes. We quote up to
# 576 bytes in total like Linux does, so the peer sees whole TCP/UDP headers.
MAX_ERROR_QUOTE = 576 - 20 - HEADER_LEN

_HEADER = struct.Struct("!BBHI")
_ECHO = struct.Struct("!BBHHH")


class IcmpMessage(NamedTuple):
    type: int
    code: int
    rest: int  # the 4 bytes after the checksum, as an int (id/seq, next-hop MTU, pointer...)
    body: memoryview


def parse(buf: bytes | bytearray | memoryview, verify_checksum: bool = True) -> IcmpMessage:
    view = memoryview(buf)
    if len(view) < HEADER_LEN:
        raise ParseError("icmp.truncated")
    if verify_checksum and checksum(view) != 0:
        raise ParseError("icmp.bad_checksum")
    icmp_type, code, _csum, rest = _HEADER.unpack_from(view, 0)
    return IcmpMessage(icmp_type, code, rest, view[HEADER_LEN:])


def build(icmp_type: int, code: int, rest: int, body: bytes | bytearray | memoryview) -> bytearray:
    msg = bytearray(HEADER_LEN + len(body))
    _HEADER.pack_into(msg, 0, icmp_type, code, 0, rest)
    msg[HEADER_LEN:] = body
    csum = checksum(msg)
    msg[2] = csum >> 8
    msg[3] = csum & 0xFF
    return msg


def build_echo(reply: bool, ident: int, seq: int, data: bytes | bytearray | memoryview) -> bytearray:
    return build(ECHO_REPLY if reply else ECHO_REQUEST, 0, (ident << 16) | seq, data)


def build_error(icmp_type: int, code: int, original_ip_packet: bytes | bytearray | memoryview,
                rest: int = 0) -> bytearray:
    """An error message quoting the offending datagram's header and leading payload."""
    return build(icmp_type, code, rest, original_ip_packet[:MAX_ERROR_QUOTE])


def echo_fields(msg: IcmpMessage) -> tuple[int, int]:
    """(identifier, sequence) of an echo request or reply."""
    return msg.rest >> 16, msg.rest & 0xFFFF
