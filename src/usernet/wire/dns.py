"""DNS messages (RFC 1035 4, RFC 3596 AAAA, RFC 6891 EDNS0 OPT, RFC 2308 SOA for negative answers).

``parse`` reads a whole message into small validated values (:class:`Message`, :class:`Question`,
:class:`Record`); ``build`` writes one, compressing names (RFC 1035 4.1.4). Names are ``str`` in
presentation form without the trailing dot (the root is ``""``): labels joined by ``.``, with ``.``
and ``\\`` inside a label escaped as ``\\.``/``\\\\`` and other bytes outside printable ASCII as
``\\DDD`` (as dig prints them), so any name on the wire survives a round trip.

Compression pointers must point strictly backwards (to an offset before the one the name being read
started at, as every encoder writes them): that alone makes loops impossible, and a hop limit guards
the rest.

ParseError reasons:

* ``dns.truncated``: under 12 bytes, or a question, record or name runs past the end of the message
* ``dns.bad_label``: a label type other than 0 (length) or 3 (pointer): 0x40 and 0x80 are reserved
* ``dns.name_too_long``: a name longer than 255 bytes on the wire (RFC 1035 3.1)
* ``dns.bad_pointer``: a compression pointer to an offset at or beyond the end of the message
* ``dns.pointer_loop``: a pointer that does not point strictly backwards, or more than 127 hops
* ``dns.bad_rdata``: RDATA whose length does not fit its type (A not 4 bytes, AAAA not 16, a name or
  SOA that does not end at RDLENGTH, a TXT string past the end)
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any

from usernet.wire.errors import ParseError

HEADER_LEN = 12
PORT = 53
MAX_UDP = 512  # RFC 1035 4.2.1, without EDNS0
EDNS_UDP_SIZE = 1232  # RFC 6891 with the DNS flag day 2020 size: no fragmentation on any usual path

# Types (RFC 1035 3.2.2, RFC 3596, RFC 6891) and the class.
A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, OPT, ANY = 1, 2, 5, 6, 12, 15, 16, 28, 41, 255
IN = 1
TYPE_NAMES = {A: "A", NS: "NS", CNAME: "CNAME", SOA: "SOA", PTR: "PTR", MX: "MX", TXT: "TXT", AAAA: "AAAA",
              OPT: "OPT", ANY: "ANY"}
TYPES = {name: value for value, name in TYPE_NAMES.items()}

# Response codes (RFC 1035 4.1.1).
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
RCODE_NAMES = {NOERROR: "NOERROR", FORMERR: "FORMERR", SERVFAIL: "SERVFAIL", NXDOMAIN: "NXDOMAIN",
               NOTIMP: "NOTIMP", REFUSED: "REFUSED"}

# Header flag bits.
QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080

_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_Q = struct.Struct("!HH")
_SOA_TAIL = struct.Struct("!IIIII")
MAX_NAME = 255
MAX_HOPS = 127


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    qtype: int
    qclass: int = IN


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record. ``data`` by type: A/AAAA the address as text, CNAME/NS/PTR a name, MX
    ``(preference, name)``, TXT a tuple of byte strings, SOA ``(mname, rname, serial, refresh, retry,
    expire, minimum)``, anything else (OPT included) the raw RDATA bytes."""

    name: str
    rtype: int
    ttl: int
    data: Any
    rclass: int = IN


@dataclass(slots=True)
class Message:
    id: int = 0
    flags: int = 0
    questions: list[Question] = field(default_factory=list)
    answers: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)

    @property
    def qr(self) -> bool:
        return bool(self.flags & QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def aa(self) -> bool:
        return bool(self.flags & AA)

    @property
    def tc(self) -> bool:
        return bool(self.flags & TC)

    @property
    def rd(self) -> bool:
        return bool(self.flags & RD)

    @property
    def ra(self) -> bool:
        return bool(self.flags & RA)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    @property
    def edns(self) -> Record | None:
        """The OPT pseudo-record, if any (its ``rclass`` is the sender's UDP payload size)."""
        for record in self.additional:
            if record.rtype == OPT:
                return record
        return None

    @property
    def udp_size(self) -> int:
        """The largest UDP reply the sender takes: its EDNS0 size (never below 512), else 512."""
        opt = self.edns
        return max(MAX_UDP, opt.rclass) if opt is not None else MAX_UDP


# ----------------------------------------------------------------- names

def _escape_label(raw: bytes) -> str:
    out = []
    for byte in raw:
        if byte in (0x2E, 0x5C):  # "." and "\"
            out.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def encode_name(name: str) -> list[bytes]:
    """The labels of a presentation-form name (trailing dot optional). ValueError when a label is
    empty or over 63 bytes, or the name over 255 bytes on the wire."""
    if name in ("", "."):
        return []
    if not name.isascii():
        # Internationalised names go on the wire as IDNA (RFC 5891), as getaddrinfo's AI_IDN does.
        name = name.encode("idna").decode("ascii")
    text = name[:-1] if name.endswith(".") and not name.endswith("\\.") else name
    labels: list[bytes] = []
    current = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            if text[i + 1:i + 4].isdigit() and len(text[i + 1:i + 4]) == 3:
                value = int(text[i + 1:i + 4])
                if value > 255:
                    raise ValueError(f"bad escape in name {name!r}")
                current.append(value)
                i += 4
                continue
            if i + 1 >= len(text):
                raise ValueError(f"dangling backslash in name {name!r}")
            current += text[i + 1].encode("latin-1")
            i += 2
            continue
        if char == ".":
            labels.append(bytes(current))
            current = bytearray()
        else:
            current += char.encode("latin-1")
        i += 1
    labels.append(bytes(current))
    for label in labels:
        if not label:
            raise ValueError(f"empty label in name {name!r}")
        if len(label) > 63:
            raise ValueError(f"label longer than 63 bytes in name {name!r}")
    if sum(len(label) + 1 for label in labels) + 1 > MAX_NAME:
        raise ValueError(f"name longer than 255 bytes: {name!r}")
    return labels


def canonical(name: str) -> str:
    """A name's comparison key: ASCII letters lower-cased (RFC 4343), no trailing dot."""
    if name.endswith(".") and not name.endswith("\\."):
        name = name[:-1]
    return name.lower()


def _read_name(view: memoryview, offset: int) -> tuple[str, int]:
    """The name at *offset* and the offset just past it in the message (after the first pointer)."""
    end = len(view)
    labels: list[str] = []
    wire_len = 1
    hops = 0
    after: int | None = None
    limit = offset  # a pointer must point before where the current name (or jump) started
    pos = offset
    while True:
        if pos >= end:
            raise ParseError("dns.truncated")
        length = view[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= end:
                raise ParseError("dns.truncated")
            target = ((length & 0x3F) << 8) | view[pos + 1]
            if target >= end:
                raise ParseError("dns.bad_pointer")
            if target >= limit:
                raise ParseError("dns.pointer_loop")
            hops += 1
            if hops > MAX_HOPS:
                raise ParseError("dns.pointer_loop")
            if after is None:
                after = pos + 2
            limit = target
            pos = target
            continue
        if kind:
            raise ParseError("dns.bad_label")
        if length == 0:
            return ".".join(labels), (pos + 1 if after is None else after)
        wire_len += length + 1
        if wire_len > MAX_NAME:
            raise ParseError("dns.name_too_long")
        if pos + 1 + length > end:
            raise ParseError("dns.truncated")
        labels.append(_escape_label(bytes(view[pos + 1:pos + 1 + length])))
        pos += 1 + length


# ----------------------------------------------------------------- parse

def _read_rdata(view: memoryview, rtype: int, start: int, length: int) -> Any:
    stop = start + length
    if rtype == A:
        if length != 4:
            raise ParseError("dns.bad_rdata")
        return ".".join(str(b) for b in view[start:stop])
    if rtype == AAAA:
        if length != 16:
            raise ParseError("dns.bad_rdata")
        return str(ipaddress.IPv6Address(bytes(view[start:stop])))
    if rtype in (CNAME, NS, PTR):
        name, after = _read_name(view, start)
        if after != stop:
            raise ParseError("dns.bad_rdata")
        return name
    if rtype == MX:
        if length < 3:
            raise ParseError("dns.bad_rdata")
        name, after = _read_name(view, start + 2)
        if after != stop:
            raise ParseError("dns.bad_rdata")
        return (int.from_bytes(view[start:start + 2], "big"), name)
    if rtype == SOA:
        mname, pos = _read_name(view, start)
        rname, pos = _read_name(view, pos)
        if pos + _SOA_TAIL.size != stop:
            raise ParseError("dns.bad_rdata")
        return (mname, rname, *_SOA_TAIL.unpack_from(view, pos))
    if rtype == TXT:
        strings = []
        pos = start
        while pos < stop:
            size = view[pos]
            if pos + 1 + size > stop:
                raise ParseError("dns.bad_rdata")
            strings.append(bytes(view[pos + 1:pos + 1 + size]))
            pos += 1 + size
        return tuple(strings)
    return bytes(view[start:stop])


def parse(buf: bytes | bytearray | memoryview) -> Message:
    """The message in *buf* (a UDP payload, or a TCP message without its 2-byte length)."""
    view = memoryview(buf)
    end = len(view)
    if end < HEADER_LEN:
        raise ParseError("dns.truncated")
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(view, 0)
    message = Message(ident, flags)
    pos = HEADER_LEN
    for _ in range(qdcount):
        name, pos = _read_name(view, pos)
        if pos + 4 > end:
            raise ParseError("dns.truncated")
        qtype, qclass = _Q.unpack_from(view, pos)
        pos += 4
        message.questions.append(Question(name, qtype, qclass))
    for count, section in ((ancount, message.answers), (nscount, message.authority),
                           (arcount, message.additional)):
        for _ in range(count):
            name, pos = _read_name(view, pos)
            if pos + _RR.size > end:
                raise ParseError("dns.truncated")
            rtype, rclass, ttl, rdlength = _RR.unpack_from(view, pos)
            pos += _RR.size
            if pos + rdlength > end:
                raise ParseError("dns.truncated")
            data = _read_rdata(view, rtype, pos, rdlength)
            pos += rdlength
            if rtype != OPT and ttl >= 0x80000000:
                ttl = 0  # RFC 2181 8: a TTL with the top bit set is treated as zero
            section.append(Record(name, rtype, ttl, data, rclass))
    return message


# ----------------------------------------------------------------- build

class _Writer:
    def __init__(self, compress: bool = True) -> None:
        self.buf = bytearray()
        self.offsets: dict[tuple[bytes, ...], int] = {}
        self.compress = compress

    def name(self, name: str) -> None:
        labels = encode_name(name)
        for i in range(len(labels)):
            key = tuple(label.lower() for label in labels[i:])
            offset = self.offsets.get(key) if self.compress else None
            if offset is not None:
                self.buf += struct.pack("!H", 0xC000 | offset)
                return
            if len(self.buf) < 0x4000:
                self.offsets.setdefault(key, len(self.buf))
            self.buf.append(len(labels[i]))
            self.buf += labels[i]
        self.buf.append(0)

    def rdata(self, record: Record) -> None:
        rtype, data = record.rtype, record.data
        if isinstance(data, bytes | bytearray) and rtype not in (TXT,):
            self.buf += data
        elif rtype == A:
            self.buf += ipaddress.IPv4Address(data).packed
        elif rtype == AAAA:
            self.buf += ipaddress.IPv6Address(data).packed
        elif rtype in (CNAME, NS, PTR):
            self.name(data)
        elif rtype == MX:
            self.buf += struct.pack("!H", data[0])
            self.name(data[1])
        elif rtype == SOA:
            self.name(data[0])
            self.name(data[1])
            self.buf += _SOA_TAIL.pack(*data[2:7])
        elif rtype == TXT:
            for string in [data] if isinstance(data, bytes | bytearray) else data:
                for i in range(0, max(1, len(string)), 255):
                    chunk = bytes(string[i:i + 255])
                    self.buf.append(len(chunk))
                    self.buf += chunk
        else:
            raise ValueError(f"record type {rtype} needs raw bytes as data")

    def record(self, record: Record) -> None:
        self.name(record.name)
        header_at = len(self.buf)
        self.buf += bytes(_RR.size)
        self.rdata(record)
        _RR.pack_into(self.buf, header_at, record.rtype, record.rclass, record.ttl & 0xFFFFFFFF,
                      len(self.buf) - header_at - _RR.size)


def build(message: Message, compress: bool = True) -> bytes:
    """The wire form of *message* (names compressed unless *compress* is false)."""
    writer = _Writer(compress)
    writer.buf += _HEADER.pack(message.id & 0xFFFF, message.flags & 0xFFFF, len(message.questions),
                               len(message.answers), len(message.authority), len(message.additional))
    for question in message.questions:
        writer.name(question.name)
        writer.buf += _Q.pack(question.qtype, question.qclass)
    for section in (message.answers, message.authority, message.additional):
        for record in section:
            writer.record(record)
    return bytes(writer.buf)


def opt_record(udp_size: int = EDNS_UDP_SIZE) -> Record:
    """The EDNS0 OPT pseudo-record (RFC 6891 6.1.2): root owner, class = UDP size, TTL 0, no options."""
    return Record("", OPT, 0, b"", udp_size)


def query(ident: int, name: str, qtype: int, recursion: bool = True, edns: int | None = EDNS_UDP_SIZE) -> bytes:
    """A standard query for *name*/*qtype*, with EDNS0 unless *edns* is None."""
    message = Message(ident, RD if recursion else 0, [Question(name, qtype)])
    if edns:
        message.additional.append(opt_record(edns))
    return build(message)


def reverse_name(address: str) -> str:
    """The PTR owner of an address: ``d.c.b.a.in-addr.arpa`` or the nibbles under ``ip6.arpa``."""
    return ipaddress.ip_address(address).reverse_pointer


def type_name(rtype: int) -> str:
    return TYPE_NAMES.get(rtype, f"TYPE{rtype}")
