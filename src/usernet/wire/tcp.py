"""TCP header (RFC 9293 3.1) with options: MSS, window scale and timestamps (RFC 7323), SACK (RFC 2018)."""

from __future__ import annotations

import struct

from usernet.wire.checksum import checksum, finish, pseudo_header_sum
from usernet.wire.errors import ParseError

HEADER_LEN = 20
PROTO = 6

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

_HEADER = struct.Struct("!HHIIBBHHH")
_TS_ONLY = struct.Struct("!III")  # NOP, NOP, kind 8, length 10 as one word; TSval; TSecr
_TS_LEAD = (OPT_NOP << 24) | (OPT_NOP << 16) | (OPT_TIMESTAMP << 8) | 10
_TS_ONLY_LEN = HEADER_LEN + 12
_FLAG_NAMES = "FSRPAUEC"


class TcpOptions:
    """Parsed options; None (or False) where absent."""

    __slots__ = ("mss", "wscale", "sack_permitted", "sack_blocks", "ts_val", "ts_ecr")

    def __init__(self) -> None:
        self.mss: int | None = None
        self.wscale: int | None = None
        self.sack_permitted = False
        self.sack_blocks: list[tuple[int, int]] | None = None
        self.ts_val: int | None = None
        self.ts_ecr: int | None = None


_NO_OPTIONS = TcpOptions()


class TcpSegment:
    """A validated TCP segment: header fields, parsed options and a payload view."""

    __slots__ = ("sport", "dport", "seq", "ack", "flags", "window", "urgent", "options", "payload")

    def __init__(self, sport: int, dport: int, seq: int, ack: int, flags: int, window: int, urgent: int,
                 options: TcpOptions, payload: memoryview) -> None:
        self.sport = sport
        self.dport = dport
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.urgent = urgent
        self.options = options
        self.payload = payload

    @property
    def seg_len(self) -> int:
        """Sequence space the segment occupies: data plus one each for SYN and FIN."""
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)

    def __repr__(self) -> str:
        return (f"<TCP {self.sport}>{self.dport} [{flag_names(self.flags)}] seq={self.seq} ack={self.ack} "
                f"win={self.window} len={len(self.payload)}>")


def flag_names(flags: int) -> str:
    return "".join(c for i, c in enumerate(_FLAG_NAMES) if flags & (1 << i)) or "."


def parse_options(raw: memoryview) -> TcpOptions:
    """RFC 9293 3.2: unknown options are skipped by their length; a malformed list is an error."""
    options = TcpOptions()
    i = 0
    n = len(raw)
    while i < n:
        kind = raw[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise ParseError("tcp.bad_option")
        size = raw[i + 1]
        if size < 2 or i + size > n:
            raise ParseError("tcp.bad_option")
        if kind == OPT_MSS and size == 4:
            options.mss = (raw[i + 2] << 8) | raw[i + 3]
        elif kind == OPT_WSCALE and size == 3:
            options.wscale = raw[i + 2]
        elif kind == OPT_SACK_PERMITTED and size == 2:
            options.sack_permitted = True
        elif kind == OPT_SACK and size >= 10 and (size - 2) % 8 == 0:
            values = struct.unpack_from(f"!{(size - 2) // 4}I", raw, i + 2)
            options.sack_blocks = list(zip(values[0::2], values[1::2], strict=True))
        elif kind == OPT_TIMESTAMP and size == 10:
            options.ts_val, options.ts_ecr = struct.unpack_from("!II", raw, i + 2)
        i += size
    return options


def parse(buf: bytes | bytearray | memoryview) -> TcpSegment:
    """Parse a segment whose checksum the caller has verified (it needs the IP pseudo-header)."""
    view = memoryview(buf)
    if len(view) < HEADER_LEN:
        raise ParseError("tcp.truncated")
    sport, dport, seq, ack, offset_byte, flags, window, _csum, urgent = _HEADER.unpack_from(view, 0)
    offset = (offset_byte >> 4) * 4
    if offset < HEADER_LEN or offset > len(view):
        raise ParseError("tcp.bad_offset")
    if offset == _TS_ONLY_LEN:
        # The layout nearly every segment of a connection with timestamps carries (Linux's and
        # ours): NOP, NOP, timestamps, read in one go (RFC 7323 appendix A).
        lead, ts_val, ts_ecr = _TS_ONLY.unpack_from(view, HEADER_LEN)
        if lead == _TS_LEAD:
            options = TcpOptions()
            options.ts_val = ts_val
            options.ts_ecr = ts_ecr
        else:
            options = parse_options(view[HEADER_LEN:offset])
    elif offset > HEADER_LEN:
        options = parse_options(view[HEADER_LEN:offset])
    else:
        options = _NO_OPTIONS
    return TcpSegment(sport, dport, seq, ack, flags, window, urgent, options, view[offset:])


def timestamp_option(ts_val: int, ts_ecr: int) -> bytes:
    """The timestamps option alone, as :func:`build_options` lays it out (NOP, NOP, TS)."""
    return _TS_ONLY.pack(_TS_LEAD, ts_val, ts_ecr)


def build_options(*, mss: int | None = None, wscale: int | None = None, sack_permitted: bool = False,
                  ts: tuple[int, int] | None = None, sack_blocks: list[tuple[int, int]] | None = None) -> bytes:
    """Options in the layout Linux uses (so they pack into 4-byte words without waste)."""
    out = bytearray()
    if mss is not None:
        out += struct.pack("!BBH", OPT_MSS, 4, mss)
    if sack_permitted and ts is not None:
        out += struct.pack("!BBBBII", OPT_SACK_PERMITTED, 2, OPT_TIMESTAMP, 10, ts[0], ts[1])
    else:
        if ts is not None:
            out += struct.pack("!BBBBII", OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10, ts[0], ts[1])
        if sack_permitted:
            out += struct.pack("!BBBB", OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2)
    if wscale is not None:
        out += struct.pack("!BBBB", OPT_NOP, OPT_WSCALE, 3, wscale)
    if sack_blocks:
        out += struct.pack("!BBBB", OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(sack_blocks))
        for left, right in sack_blocks:
            out += struct.pack("!II", left, right)
    if len(out) % 4:
        out += bytes(4 - len(out) % 4)
    if len(out) > 40:
        raise ValueError("TCP options longer than 40 bytes")
    return bytes(out)


def build(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
          options: bytes = b"", payload: bytes | bytearray | memoryview = b"", urgent: int = 0,
          partial_checksum: bool = False) -> bytearray:
    """A whole segment with its checksum (RFC 9293 3.1, pseudo-header per 3.1).

    With *partial_checksum* the field holds only the folded pseudo-header sum, as a NIC or the
    kernel expects for checksum offload (CHECKSUM_PARTIAL): it completes the sum over the segment.
    """
    header_len = HEADER_LEN + len(options)
    length = header_len + len(payload)
    segment = bytearray(length)
    _HEADER.pack_into(segment, 0, sport, dport, seq, ack, (header_len // 4) << 4, flags, window, 0, urgent)
    if options:
        segment[HEADER_LEN:header_len] = options
    if payload:
        segment[header_len:] = payload
    if partial_checksum:
        csum = 0xFFFF - finish(pseudo_header_sum(src, dst, PROTO, length))  # the folded sum, not inverted
    else:
        csum = checksum(segment, src + dst + PROTO + length)  # the pseudo-header's sum (pseudo_header_sum)
    segment[16] = csum >> 8
    segment[17] = csum & 0xFF
    return segment
