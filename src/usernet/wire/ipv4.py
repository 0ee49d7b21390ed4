"""IPv4 headers (RFC 791): a validated view for input, a header writer for output.

ParseError reasons, checked in this order (RFC 1122 3.2.1.1-3.2.1.2 and RFC 791 3.1):
``ipv4.truncated`` (fewer than 20 bytes), ``ipv4.bad_version``, ``ipv4.bad_header_length``
(IHL below 5), ``ipv4.bad_total_length`` (below the header length, or more than the buffer
holds), ``ipv4.reserved_flag`` (RFC 791's "must be zero" flag bit set: a policy, Linux
accepts such packets), ``ipv4.bad_checksum``.
:func:`parse_options` adds ``ipv4.bad_option``.
"""

from __future__ import annotations

import ipaddress
import struct

from usernet.wire.errors import ParseError

HEADER_LEN = 20
MAX_HEADER_LEN = 60  # IHL is 4 bits of 32-bit words
MAX_PACKET = 65535
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

FLAG_RESERVED = 0x8000
FLAG_DF = 0x4000
FLAG_MF = 0x2000
OFFSET_MASK = 0x1FFF

# RFC 791 3.1 option types (copied flag, class and number folded into one byte)
OPT_END = 0
OPT_NOP = 1

LIMITED_BROADCAST = 0xFFFFFFFF

_HEADER = struct.Struct("!BBHHHBBHII")
_pack = _HEADER.pack
_unpack_from = _HEADER.unpack_from
_from_bytes = int.from_bytes
_NO_OPTIONS = memoryview(b"")


class IPv4Header:
    """Fields of a validated IPv4 header. ``payload`` is a memoryview of exactly the payload
    (trailing link padding removed), ``options`` of the raw option bytes (empty without
    options); no accessor can raise once constructed."""

    __slots__ = ("header_len", "tos", "total_length", "ident", "flags_frag", "ttl", "proto", "src", "dst",
                 "payload", "options")

    def __init__(self, header_len: int, tos: int, total_length: int, ident: int, flags_frag: int, ttl: int,
                 proto: int, src: int, dst: int, payload: memoryview, options: memoryview = _NO_OPTIONS) -> None:
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
        self.options = options

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags_frag & FLAG_DF)

    @property
    def more_fragments(self) -> bool:
        return bool(self.flags_frag & FLAG_MF)

    @property
    def fragment_offset(self) -> int:
        """Offset in bytes (the field counts 8-byte units, RFC 791 3.1)."""
        return (self.flags_frag & OFFSET_MASK) << 3

    @property
    def is_fragment(self) -> bool:
        return bool(self.flags_frag & (FLAG_MF | OFFSET_MASK))

    def __repr__(self) -> str:
        return (f"IPv4Header({ntoa(self.src)} > {ntoa(self.dst)} proto={self.proto} len={self.total_length} "
                f"hl={self.header_len} id={self.ident} flags_frag={self.flags_frag:#06x} ttl={self.ttl} "
                f"tos={self.tos:#04x})")


def parse(buf: bytes | bytearray | memoryview, offset: int = 0, verify_checksum: bool = True) -> IPv4Header:
    """Validate and view the IPv4 packet at *offset* of *buf*.

    Checks version, IHL, total length against the buffer, the reserved flag bit and the header
    checksum. Options are skipped, not interpreted (RFC 1122 3.2.1.8: options a host does not
    implement are ignored); :func:`parse_options` walks them for callers that care. TTL and
    addresses are the stack's business, not the format's.
    """
    view = memoryview(buf)
    available = len(view) - offset
    if available < HEADER_LEN or offset < 0:
        raise ParseError("ipv4.truncated")
    ver_ihl, tos, total_length, ident, flags_frag, ttl, proto, _csum, src, dst = _HEADER.unpack_from(view, offset)
    if ver_ihl >> 4 != 4:
        raise ParseError("ipv4.bad_version")
    header_len = (ver_ihl & 0x0F) << 2
    if header_len < HEADER_LEN:
        raise ParseError("ipv4.bad_header_length")
    if total_length < header_len or total_length > available:
        raise ParseError("ipv4.bad_total_length")
    if flags_frag & FLAG_RESERVED:
        raise ParseError("ipv4.reserved_flag")
    end = offset + header_len
    # RFC 1071: summed with its checksum a valid header gives negative zero, i.e. a multiple of
    # 0xFFFF that is not 0 -- and the version nibble already makes it non-zero. Read in either
    # byte order (see checksum.py; little-endian converts faster).
    if verify_checksum and _from_bytes(view[offset:end], "little") % 0xFFFF:
        raise ParseError("ipv4.bad_checksum")
    options = view[offset + HEADER_LEN:end] if header_len > HEADER_LEN else _NO_OPTIONS
    return IPv4Header(header_len, tos, total_length, ident, flags_frag, ttl, proto, src, dst,
                      view[end:offset + total_length], options)


def parse_options(options: bytes | bytearray | memoryview) -> list[tuple[int, memoryview]]:
    """``(type, data)`` for each option in an options area (RFC 791 3.1), NOPs left out, stopping
    at End of Option List. Raises ``ipv4.bad_option`` for a length below 2 or running past
    the area (RFC 1122 3.2.2.5 would answer those with a Parameter Problem)."""
    view = memoryview(options)
    found: list[tuple[int, memoryview]] = []
    i, n = 0, len(view)
    while i < n:
        kind = view[i]
        if kind == OPT_END:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise ParseError("ipv4.bad_option")
        length = view[i + 1]
        if length < 2 or i + length > n:
            raise ParseError("ipv4.bad_option")
        found.append((kind, view[i + 2:i + length]))
        i += length
    return found


def _header_checksum(tos: int, total_length: int, ident: int, flags_frag: int, ttl: int, proto: int, src: int,
                     dst: int) -> int:
    # The header's 16-bit words, added as ints (an address is congruent to its two halves'
    # sum modulo 0xFFFF); version/IHL 0x45 makes the sum non-zero, so -0 is the only care.
    folded = (0x4500 + tos + total_length + ident + flags_frag + (ttl << 8) + proto + src + dst) % 0xFFFF
    return 0xFFFF - folded if folded else 0


def write_header(buf: bytearray | memoryview, offset: int, *, src: int, dst: int, proto: int, payload_len: int,
                 ident: int, ttl: int = 64, tos: int = 0, flags_frag: int = 0) -> None:
    """Write a 20-byte header (no options) with its checksum at *offset* of *buf*.

    Raises ValueError when the datagram would exceed 65,535 bytes (RFC 791: a 16-bit total length).
    """
    total_length = HEADER_LEN + payload_len
    if not HEADER_LEN <= total_length <= MAX_PACKET:
        raise ValueError(f"IPv4 payload of {payload_len} bytes does not fit a datagram")
    csum = _header_checksum(tos, total_length, ident, flags_frag, ttl, proto, src, dst)
    _HEADER.pack_into(buf, offset, 0x45, tos, total_length, ident, flags_frag, ttl, proto, csum, src, dst)


def header_bytes(src: int, dst: int, proto: int, payload_len: int, ident: int, ttl: int, tos: int,
                 flags_frag: int) -> bytes:
    """The 20-byte header (no options) with its checksum, as bytes: for output paths that join it
    with the payload (and the link header) in one copy. Same checks as :func:`write_header`."""
    total_length = HEADER_LEN + payload_len
    if not HEADER_LEN <= total_length <= MAX_PACKET:
        raise ValueError(f"IPv4 payload of {payload_len} bytes does not fit a datagram")
    folded = (0x4500 + tos + total_length + ident + flags_frag + (ttl << 8) + proto + src + dst) % 0xFFFF
    return _pack(0x45, tos, total_length, ident, flags_frag, ttl, proto, 0xFFFF - folded if folded else 0, src, dst)


def build(*, src: int, dst: int, proto: int, payload: bytes | bytearray | memoryview, ident: int, ttl: int = 64,
          tos: int = 0, flags_frag: int = 0) -> bytearray:
    """A whole packet: header followed by *payload*."""
    packet = bytearray(HEADER_LEN)
    write_header(packet, 0, src=src, dst=dst, proto=proto, payload_len=len(payload), ident=ident, ttl=ttl, tos=tos,
                 flags_frag=flags_frag)
    packet += payload
    return packet


def addr(text: str) -> int:
    """Dotted quad to int (raises ValueError).

    The strict dotted quad is parsed here (connect() and sendto() call this for every address):
    four ASCII decimal parts of at most three digits, none above 255, no leading zero (as the
    ``ipaddress`` module rules since Python 3.9.5, against octal ambiguity). Anything else
    goes to ``ipaddress``, which accepts or rejects it with its own message."""
    if type(text) is str:
        parts = text.split(".")
        if len(parts) == 4:
            value = 0
            for part in parts:
                if not (0 < len(part) <= 3 and part.isascii() and part.isdigit()) or (part[0] == "0" and len(part) > 1):
                    break
                octet = int(part)
                if octet > 255:
                    break
                value = (value << 8) | octet
            else:
                return value
    return int(ipaddress.IPv4Address(text))


def ntoa(value: int) -> str:
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"


def is_multicast(value: int) -> bool:
    """224.0.0.0/4 (RFC 1112 4)."""
    return value >> 28 == 0xE


def is_martian_source(value: int) -> bool:
    """Source addresses a host must discard (RFC 1122 3.2.1.3): {0, host} on 0/8 (but 0.0.0.0
    itself is allowed, used by DHCP clients while they learn an address), loopback 127/8,
    multicast (RFC 1112), class E (reserved) and the limited broadcast. The directed broadcast
    of the host's own subnet is the stack's check: it depends on the interface."""
    if value == 0:
        return False
    first = value >> 24
    return first == 0 or first == 127 or first >= 224
