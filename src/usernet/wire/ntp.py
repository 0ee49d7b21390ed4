"""NTP packets (RFC 5905 7.3; SNTP, RFC 4330) and era-safe timestamp arithmetic.

A timestamp on the wire is 64 bits: seconds since 1900-01-01 (mod 2**32: era 0 ends on
2036-02-07 06:28:16 UTC) and a 32-bit fraction. Code here never converts a wire timestamp to an
absolute time without a pivot: :func:`diff` takes the difference of two timestamps modulo 2**64 as
a signed number (RFC 5905 A.5.x does the same), which is right across an era boundary as long as
the two are within 68 years of each other, and :func:`to_unix` places a timestamp in the era
nearest a pivot.

ParseError reasons:

* ``ntp.truncated``: under 48 bytes
* ``ntp.bad_version``: version 0 or above 4
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from usernet.wire.errors import ParseError

PORT = 123
HEADER_LEN = 48
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
ERA = 1 << 32  # seconds in one NTP era
_MASK64 = (1 << 64) - 1

# Modes (RFC 5905 7.3).
MODE_SYMMETRIC_ACTIVE, MODE_SYMMETRIC_PASSIVE, MODE_CLIENT, MODE_SERVER, MODE_BROADCAST = 1, 2, 3, 4, 5
LEAP_NONE, LEAP_ADD, LEAP_DEL, LEAP_UNSYNC = 0, 1, 2, 3

_PACKET = struct.Struct("!BBbbII4sQQQQ")


@dataclass(slots=True)
class Packet:
    leap: int = LEAP_NONE
    version: int = 4
    mode: int = MODE_CLIENT
    stratum: int = 0
    poll: int = 0
    precision: int = 0
    root_delay: int = 0        # NTP short format (16.16 seconds), raw
    root_dispersion: int = 0   # the same
    ref_id: bytes = b"\0\0\0\0"
    ref_ts: int = 0            # 64-bit timestamps, raw
    orig_ts: int = 0
    recv_ts: int = 0
    tx_ts: int = 0

    @property
    def kiss_code(self) -> str | None:
        """The kiss-o'-death code (RFC 5905 7.4) of a stratum-0 packet, e.g. ``"RATE"``."""
        if self.stratum != 0:
            return None
        return self.ref_id.decode("ascii", "replace").rstrip("\0")

    @property
    def root_delay_s(self) -> float:
        return self.root_delay / 65536

    @property
    def root_dispersion_s(self) -> float:
        return self.root_dispersion / 65536


def parse(buf: bytes | bytearray | memoryview) -> Packet:
    """The 48-byte header of *buf*; extension fields and a MAC after it are ignored."""
    view = memoryview(buf)
    if len(view) < HEADER_LEN:
        raise ParseError("ntp.truncated")
    (flags, stratum, poll, precision, root_delay, root_disp, ref_id, ref_ts, orig_ts, recv_ts,
     tx_ts) = _PACKET.unpack_from(view, 0)
    version = (flags >> 3) & 7
    if not 1 <= version <= 4:
        raise ParseError("ntp.bad_version")
    return Packet(flags >> 6, version, flags & 7, stratum, poll, precision, root_delay, root_disp, ref_id,
                  ref_ts, orig_ts, recv_ts, tx_ts)


def build(packet: Packet) -> bytes:
    return _PACKET.pack(((packet.leap & 3) << 6) | ((packet.version & 7) << 3) | (packet.mode & 7),
                        packet.stratum & 0xFF, max(-128, min(127, packet.poll)),
                        max(-128, min(127, packet.precision)), packet.root_delay & 0xFFFFFFFF,
                        packet.root_dispersion & 0xFFFFFFFF, bytes(packet.ref_id[:4]).ljust(4, b"\0"),
                        packet.ref_ts & _MASK64, packet.orig_ts & _MASK64, packet.recv_ts & _MASK64,
                        packet.tx_ts & _MASK64)


# ----------------------------------------------------------------- timestamps

def from_unix(seconds: float) -> int:
    """The 64-bit wire timestamp of a Unix time (any era: the era number is dropped, RFC 5905 6)."""
    total = int(round((seconds + NTP_UNIX_OFFSET) * ERA))
    return total & _MASK64


def to_unix(timestamp: int, pivot: float) -> float:
    """The Unix time of a wire timestamp, in the era that puts it nearest *pivot* (a Unix time)."""
    pivot_ntp = from_unix(pivot)
    return pivot + diff(timestamp, pivot_ntp)


def diff(a: int, b: int) -> float:
    """``a - b`` in seconds for two wire timestamps, modulo 2**64 as a signed number (era-safe)."""
    d = (a - b) & _MASK64
    if d >= 1 << 63:
        d -= 1 << 64
    return d / ERA


def short(seconds: float) -> int:
    """NTP short format (16.16) of a non-negative duration, saturated."""
    return max(0, min(0xFFFFFFFF, int(seconds * 65536)))
