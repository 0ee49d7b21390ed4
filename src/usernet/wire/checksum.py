"""The Internet checksum (RFC 1071).

The ones' complement sum of 16-bit big-endian words equals the data read as one big integer
modulo 0xFFFF (because 2**16 == 1 mod 0xFFFF), so ``int.from_bytes`` and ``%`` do the work in C.
The only care needed: a non-zero sum that is a multiple of 0xFFFF is 0xFFFF ("negative zero") in
ones' complement arithmetic, and an odd length is padded with a zero byte at the end.
"""

from __future__ import annotations

from typing import Any


def ones_sum(data: Any) -> int:
    """The unreduced sum of *data* as 16-bit words, to be combined with :func:`finish`."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    return value


def finish(total: int) -> int:
    """Fold an unreduced sum into the 16-bit checksum field value."""
    folded = total % 0xFFFF
    if folded == 0 and total:
        folded = 0xFFFF
    return 0xFFFF - folded


def checksum(data: Any, extra: int = 0) -> int:
    """Checksum of *data* plus an unreduced *extra* sum (a pseudo-header).

    Over data that includes a correct checksum field this returns 0.
    """
    return finish(ones_sum(data) + extra)


def pseudo_header_sum(src: int, dst: int, proto: int, length: int) -> int:
    """RFC 793/768 IPv4 pseudo-header sum. Addresses are 32-bit ints; each folds modulo 0xFFFF
    to the sum of its two 16-bit halves, so adding the ints is enough."""
    return src + dst + proto + length
