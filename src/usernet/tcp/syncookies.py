"""SYN cookies (RFC 4987 3.6): answer SYNs without keeping state when the SYN queue is full.

The ISN of a cookie SYN-ACK encodes what the connection needs later:

    bits 31..27  a 5-bit counter that advances every 64 s (cookies older than two periods die)
    bits 26..24  an index into MSS_TABLE (the largest entry not above the peer's MSS)
    bits 23..0   a keyed hash of the 4-tuple, the counter and the peer's ISN

Window scale and SACK cannot fit there. As Linux does, they travel in the low 6 bits of our
timestamp value when the peer uses timestamps, and come back in its TS echo: bits 3..0 hold the
peer's window shift (15: none) and bit 4 SACK-permitted. Without timestamps the connection
proceeds without window scaling and SACK.
"""

from __future__ import annotations

try:  # the C code behind hashlib.blake2s; importing hashlib would also load OpenSSL (~3.5 MB RSS)
    from _blake2 import blake2s
except ImportError:  # pragma: no cover - another Python implementation
    from hashlib import blake2s

MSS_TABLE = (536, 1200, 1300, 1400, 1440, 1452, 1460, 8960)
PERIOD = 64.0
NO_WSCALE = 15


def _counter(now: float) -> int:
    return int(now // PERIOD)


def _hash(key: bytes, four_tuple: tuple[int, int, int, int], counter: int, peer_isn: int) -> int:
    data = b"%d %d %d %d %d %d" % (*four_tuple, counter & 0x1F, peer_isn)
    return int.from_bytes(blake2s(data, key=key, digest_size=3).digest(), "big")


def make_isn(key: bytes, four_tuple: tuple[int, int, int, int], peer_isn: int, peer_mss: int,
             now: float) -> tuple[int, int]:
    """The cookie ISN and the MSS it encodes."""
    index = max((i for i, mss in enumerate(MSS_TABLE) if mss <= peer_mss), default=0)
    counter = _counter(now)
    isn = ((counter & 0x1F) << 27) | (index << 24) | _hash(key, four_tuple, counter, peer_isn)
    return isn, MSS_TABLE[index]


def check_isn(key: bytes, four_tuple: tuple[int, int, int, int], peer_isn: int, isn: int,
              now: float) -> int | None:
    """The MSS the cookie carries, or None when it is forged or too old."""
    encoded = isn >> 27
    current = _counter(now)
    for age in (0, 1):
        counter = current - age
        if counter & 0x1F == encoded and _hash(key, four_tuple, counter, peer_isn) == isn & 0xFFFFFF:
            return MSS_TABLE[(isn >> 24) & 7]
    return None


def encode_options(ts_val: int, wscale: int | None, sack: bool) -> int:
    return (ts_val & ~0x3F) | (NO_WSCALE if wscale is None else min(wscale, 14)) | (0x10 if sack else 0)


def decode_options(ts_ecr: int) -> tuple[int | None, bool]:
    wscale = ts_ecr & 0x0F
    return (None if wscale == NO_WSCALE else wscale), bool(ts_ecr & 0x10)
