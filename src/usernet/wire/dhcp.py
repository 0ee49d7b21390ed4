"""DHCP messages (RFC 2131 section 2, options of RFC 2132, long options of RFC 3396).

A message is the fixed BOOTP header (236 bytes), the magic cookie 99.130.83.99 and options.
:func:`parse` returns a :class:`DhcpMessage` whose ``options`` map each option code to its
whole value: every instance of a code is concatenated in the order RFC 3396 section 7 gives
(the options field, then ``file``, then ``sname`` when option 52 says they are overloaded), so
a long option split across several instances arrives whole. :func:`build` does the reverse:
values over 255 bytes are split into several instances, and options that do not fit within
``max_size`` spill into ``file`` and then ``sname`` with option 52 set (RFC 2131 4.1).

ParseError reasons, checked in this order: ``dhcp.truncated`` (under 240 bytes: the header and
the cookie), ``dhcp.bad_op`` (op neither BOOTREQUEST nor BOOTREPLY), ``dhcp.bad_hlen`` (hardware
address length over 16), ``dhcp.bad_magic`` (no DHCP magic cookie: plain BOOTP is not ours),
``dhcp.bad_option`` (an option's length runs past its field), ``dhcp.bad_overload`` (option 52
not one byte of 1, 2 or 3), ``dhcp.bad_message_type`` (option 53 missing, not one byte, or not
a type of RFC 2132 9.6).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from usernet.wire.errors import ParseError

SERVER_PORT = 67
CLIENT_PORT = 68
BOOTREQUEST = 1
BOOTREPLY = 2
HTYPE_ETHERNET = 1
MAGIC = b"\x63\x82\x53\x63"
HEADER_LEN = 236
MIN_LEN = HEADER_LEN + 4
BOOTP_MIN_LEN = 300  # RFC 1542 2.1: relays and old clients expect at least 300 octets
DEFAULT_MAX_SIZE = 576  # RFC 2131 2: a client must accept messages of 576 octets (IP header included)
FLAG_BROADCAST = 0x8000

# Message types (option 53, RFC 2132 9.6)
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
TYPE_NAMES = {DISCOVER: "DISCOVER", OFFER: "OFFER", REQUEST: "REQUEST", DECLINE: "DECLINE", ACK: "ACK",
              NAK: "NAK", RELEASE: "RELEASE", INFORM: "INFORM"}

# Option codes (RFC 2132 unless noted)
OPT_PAD = 0
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_HOSTNAME = 12
OPT_DOMAIN = 15
OPT_MTU = 26
OPT_BROADCAST = 28
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_OVERLOAD = 52
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMS = 55
OPT_MESSAGE = 56
OPT_MAX_SIZE = 57
OPT_T1 = 58
OPT_T2 = 59
OPT_CLIENT_ID = 61
OPT_DOMAIN_SEARCH = 119  # RFC 3397
OPT_END = 255

OVERLOAD_FILE = 1
OVERLOAD_SNAME = 2

INFINITE = 0xFFFFFFFF  # a lease time that never ends (RFC 2131 3.3)

_HEADER = struct.Struct("!BBBBIHHIIII16s64s128s")


@dataclass(slots=True)
class DhcpMessage:
    """One DHCP message. Addresses are 32-bit ints; ``chaddr`` holds ``hlen`` bytes; ``options``
    maps a code to its whole (concatenated) value, in the order first seen."""

    op: int
    xid: int
    chaddr: bytes
    options: dict[int, bytes] = field(default_factory=dict)
    htype: int = HTYPE_ETHERNET
    hops: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: int = 0
    yiaddr: int = 0
    siaddr: int = 0
    giaddr: int = 0
    sname: bytes = b""
    file: bytes = b""

    @property
    def message_type(self) -> int:
        value = self.options.get(OPT_MESSAGE_TYPE, b"")
        return value[0] if len(value) == 1 else 0

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & FLAG_BROADCAST)

    def ip(self, code: int) -> int | None:
        """An option holding one address (server identifier, requested address, mask), else None."""
        value = self.options.get(code)
        return int.from_bytes(value, "big") if value is not None and len(value) == 4 else None

    def ips(self, code: int) -> list[int]:
        """An option holding a list of addresses (routers, DNS servers); [] when absent or malformed."""
        value = self.options.get(code)
        if not value or len(value) % 4:
            return []
        return [int.from_bytes(value[i:i + 4], "big") for i in range(0, len(value), 4)]

    def u32(self, code: int) -> int | None:
        value = self.options.get(code)
        return int.from_bytes(value, "big") if value is not None and len(value) == 4 else None

    def u16(self, code: int) -> int | None:
        value = self.options.get(code)
        return int.from_bytes(value, "big") if value is not None and len(value) == 2 else None

    def text(self, code: int) -> str | None:
        """A string option (hostname, domain, message), NULs at the end stripped (RFC 2132 2)."""
        value = self.options.get(code)
        if value is None:
            return None
        return value.rstrip(b"\0").decode("ascii", "replace")


def _read_options(buf: memoryview, start: int, end: int, into: dict[int, bytearray]) -> None:
    """Options between *start* and *end*; stops at END (what follows is padding)."""
    i = start
    while i < end:
        code = buf[i]
        if code == OPT_END:
            return
        if code == OPT_PAD:
            i += 1
            continue
        if i + 1 >= end:
            raise ParseError("dhcp.bad_option")
        length = buf[i + 1]
        if i + 2 + length > end:
            raise ParseError("dhcp.bad_option")
        value = buf[i + 2:i + 2 + length]
        existing = into.get(code)
        if existing is None:
            into[code] = bytearray(value)
        else:
            existing += value  # RFC 3396: instances of one code are concatenated in order
        i += 2 + length


def parse(buf: bytes | bytearray | memoryview) -> DhcpMessage:
    """The DHCP message in *buf* (a UDP payload). Raises ParseError only."""
    view = memoryview(buf)
    if len(view) < MIN_LEN:
        raise ParseError("dhcp.truncated")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
     bootfile) = _HEADER.unpack_from(view, 0)
    if op != BOOTREQUEST and op != BOOTREPLY:
        raise ParseError("dhcp.bad_op")
    if hlen > 16:
        raise ParseError("dhcp.bad_hlen")
    if view[HEADER_LEN:MIN_LEN] != MAGIC:
        raise ParseError("dhcp.bad_magic")
    raw: dict[int, bytearray] = {}
    _read_options(view, MIN_LEN, len(view), raw)
    overload = raw.pop(OPT_OVERLOAD, None)
    if overload is not None:
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            raise ParseError("dhcp.bad_overload")
        # RFC 3396 7: the options field, then file, then sname make one aggregate buffer.
        if overload[0] & OVERLOAD_FILE:
            _read_options(view, 108, 236, raw)
            bootfile = b""
        if overload[0] & OVERLOAD_SNAME:
            _read_options(view, 44, 108, raw)
            sname = b""
        raw.pop(OPT_OVERLOAD, None)
    message_type = raw.get(OPT_MESSAGE_TYPE)
    if message_type is None or len(message_type) != 1 or not DISCOVER <= message_type[0] <= INFORM:
        raise ParseError("dhcp.bad_message_type")
    return DhcpMessage(op=op, xid=xid, chaddr=bytes(chaddr[:hlen]), options={k: bytes(v) for k, v in raw.items()},
                       htype=htype, hops=hops, secs=secs, flags=flags, ciaddr=ciaddr, yiaddr=yiaddr,
                       siaddr=siaddr, giaddr=giaddr, sname=sname.rstrip(b"\0"), file=bootfile.rstrip(b"\0"))


def _instances(options: Mapping[int, bytes]) -> list[tuple[int, bytes]]:
    """(code, piece) pairs: RFC 3396 splits values over 255 bytes into several instances.
    An empty value is one instance of length 0."""
    out: list[tuple[int, bytes]] = []
    for code, value in options.items():
        if not 0 < code < 255 or code == OPT_OVERLOAD:
            raise ValueError(f"option code {code} cannot be given as a value")
        value = bytes(value)
        if not value:
            out.append((code, b""))
        for i in range(0, len(value), 255):
            out.append((code, value[i:i + 255]))
    return out


def _fill(instances: list[tuple[int, bytes]], space: int) -> tuple[bytearray, list[tuple[int, bytes]]]:
    """Encode instances into at most *space* bytes (END excluded); return the encoding and the
    instances left over. An instance that does not fit whole is split (RFC 3396 allows it)."""
    out = bytearray()
    rest = list(instances)
    while rest:
        code, piece = rest[0]
        room = space - len(out) - 2
        if room >= len(piece):
            out += bytes((code, len(piece))) + piece
            rest.pop(0)
        elif room >= 1 and piece:
            out += bytes((code, room)) + piece[:room]
            rest[0] = (code, piece[room:])
            break
        else:
            break
    return out, rest


def build(message: DhcpMessage, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Encode *message*. Options go in the order given (put the message type first); what does not
    fit a datagram of *max_size* octets (IP and UDP headers included, RFC 2132 9.10) spills into
    ``file`` and then ``sname`` with option 52 (then those fields' own contents are not sent).
    Raises ValueError when the options do not fit even so."""
    if len(message.chaddr) > 16:
        raise ValueError("chaddr longer than 16 bytes")
    if len(message.sname) > 64 or len(message.file) > 128:
        raise ValueError("sname or file too long")
    instances = _instances(message.options)
    space = max(max_size, DEFAULT_MAX_SIZE) - 28 - MIN_LEN - 1  # IP and UDP headers, END
    body, rest = _fill(instances, space)
    sname, bootfile = message.sname, message.file
    overload = 0
    if rest:
        # Make room for the overload option itself (3 bytes) in the options field.
        body, rest = _fill(instances, space - 3)
        file_body, rest = _fill(rest, 127)
        overload = OVERLOAD_FILE
        bootfile = bytes(file_body) + bytes((OPT_END,))
        if rest:
            sname_body, rest = _fill(rest, 63)
            overload |= OVERLOAD_SNAME
            sname = bytes(sname_body) + bytes((OPT_END,))
        if rest:
            raise ValueError("DHCP options do not fit the message")
        body = bytearray((OPT_OVERLOAD, 1, overload)) + body
    out = bytearray(_HEADER.pack(message.op, message.htype, len(message.chaddr), message.hops,
                                 message.xid & 0xFFFFFFFF, message.secs & 0xFFFF, message.flags & 0xFFFF,
                                 message.ciaddr, message.yiaddr, message.siaddr, message.giaddr,
                                 message.chaddr, sname, bootfile))
    out += MAGIC
    out += body
    out.append(OPT_END)
    if len(out) < BOOTP_MIN_LEN:
        out += bytes(BOOTP_MIN_LEN - len(out))
    return bytes(out)


# ----------------------------------------------------------------- option value helpers

def ip_bytes(*addresses: int) -> bytes:
    return b"".join(a.to_bytes(4, "big") for a in addresses)


def u32_bytes(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, "big")


def encode_domain_search(names: Iterable[str]) -> bytes:
    """Option 119 (RFC 3397): DNS names in wire format, without compression (allowed)."""
    out = bytearray()
    for name in names:
        for label in name.strip(".").split("."):
            if label:
                raw = label.encode("ascii")
                if len(raw) > 63:
                    raise ValueError(f"label too long in {name!r}")
                out.append(len(raw))
                out += raw
        out.append(0)
    return bytes(out)


def decode_domain_search(value: bytes) -> list[str]:
    """Option 119's names, with RFC 1035 compression pointers (into the option itself) followed;
    loops and pointers past the end end the list instead of raising."""
    names: list[str] = []
    i = 0
    while i < len(value):
        labels: list[str] = []
        pos, jumps, end_of_name = i, 0, None
        while True:
            if pos >= len(value):
                return names
            length = value[pos]
            if length == 0:
                if end_of_name is None:
                    end_of_name = pos + 1
                break
            if length & 0xC0 == 0xC0:
                if pos + 1 >= len(value) or jumps > 32:
                    return names
                if end_of_name is None:
                    end_of_name = pos + 2
                pos = ((length & 0x3F) << 8) | value[pos + 1]
                jumps += 1
                continue
            if length & 0xC0 or pos + 1 + length > len(value):
                return names
            labels.append(value[pos + 1:pos + 1 + length].decode("ascii", "replace"))
            pos += 1 + length
        names.append(".".join(labels))
        i = end_of_name
    return names
