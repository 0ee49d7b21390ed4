"""The Internet checksum (RFC 1071).

The ones' complement sum of 16-bit words is congruent to the data read as one big integer
modulo 0xFFFF (because 2**16 == 1 mod 0xFFFF), so ``int.from_bytes`` and ``%`` do the work in
C, far faster than a loop over words. The data are read little-endian, which CPython converts
faster and which needs no odd-length fix-up:

* the sum is byte-order independent (RFC 1071 2(B)): a word read little-endian is its
  big-endian value byte-swapped, and swapping the bytes of a 16-bit value is multiplying it by
  2**8 modulo 0xFFFF; so the network-order sum is 2**8 times the little-endian one;
* a trailing odd byte sits at an even index, weight 2**(8*even) == 1: the low byte of a
  little-endian word, the high byte of a zero-padded network-order word, as RFC 1071 4.1 pads;
* a non-zero sum that is a multiple of 0xFFFF is 0xFFFF ("negative zero") in ones' complement
  arithmetic, never 0: only all-zero data sum to 0.

Large buffers are summed in chunks: CPython's big-int remainder allocates a quotient as large
as the dividend, so reducing one 64 KB integer costs more than converting it. Adding the chunks
first (each at an even offset, so weighted by 1 modulo 0xFFFF) keeps the division small.

Even a segment's integer (1,480 bytes) costs more to divide (one hardware division per 30-bit
digit) than to convert, so a large one is folded first: its high half shifted down onto its low
half at an even byte boundary (2**(16k) == 1 modulo 0xFFFF again), which shifts and adds do
several times faster, until a small remainder finishes the job.
"""

from __future__ import annotations

from typing import Any

_from_bytes = int.from_bytes
# Below this size the plain conversion is fastest; above it summing chunks wins (see
# bench/bench_wire.py). Even, so every chunk starts at an even offset.
_CHUNK = 4096


# Above this many bytes an integer is folded before its remainder (see bench/bench_rx_data.py).
_FOLD_ABOVE = 192
# Up to this many bytes (an Ethernet segment and then some) a precomputed fold plan is used.
_SPLIT_MAX = 2048
_MASKS: dict[int, int] = {}  # even byte count -> an integer of that many 0xFF bytes
_MAX_MASKS = 64


def _mod(value: int, n: int) -> int:
    """``value % 0xFFFF`` for a non-negative *value* below 2**(8*n)."""
    while n > _FOLD_ABOVE:
        half = ((n + 3) >> 2) << 1  # an even byte count, at least half of n
        mask = _MASKS.get(half)
        if mask is None:
            mask = (1 << (half << 3)) - 1
            if len(_MASKS) < _MAX_MASKS:
                _MASKS[half] = mask
        value = (value >> (half << 3)) + (value & mask)
        n = half + 1  # the sum of two numbers below 2**(8*half)
    return value % 0xFFFF


def _sum_le(data: Any) -> int:
    """Congruent modulo 0xFFFF to the little-endian 16-bit word sum of *data*; zero exactly when
    all bytes are."""
    n = len(data)
    if n <= _CHUNK:
        return _from_bytes(data, "little")
    view = memoryview(data)
    value = 0
    for start in range(0, n, _CHUNK):
        value += _from_bytes(view[start:start + _CHUNK], "little")
    return value


def ones_sum(data: Any) -> int:
    """The ones' complement sum of *data* as network-order 16-bit words, folded into 0..0xFFFF.

    Returns 0 only for all-zero (or empty) data, 0xFFFF for other sums that are multiples of
    0xFFFF. Sums of several pieces may be added before :func:`finish`, as long as every piece
    but the last has an even length (RFC 1071 section 2(B): the sum is associative).
    """
    value = _sum_le(data)
    folded = _mod(value, min(len(data), _CHUNK + 8))
    if folded == 0:
        return 0xFFFF if value else 0
    return (folded << 8) % 0xFFFF  # back to network byte order


def le_mod(data: Any) -> int:
    """The little-endian word sum of *data* reduced modulo 0xFFFF (0 for all-zero data and for
    sums that are multiples of 0xFFFF alike): for a caller whose total is known to be non-zero
    (a TCP or UDP pseudo-header is), which shifts it by 8 bits into network order."""
    n = len(data)
    if n <= _FOLD_ABOVE:
        return _from_bytes(data, "little") % 0xFFFF
    if n <= _SPLIT_MAX:
        return _segment_value(data, n) % 0xFFFF
    return _mod(_sum_le(data), min(n, _CHUNK + 8))


def _segment_value(data: Any, n: int) -> int:
    """A segment's (at most _SPLIT_MAX bytes) little-endian value, folded by its size class's plan
    (shifts and masks, no division) to a few hundred bits: congruent modulo 0xFFFF, and zero
    exactly when the data are. The small remainder is left to the caller."""
    value = _from_bytes(data, "little")
    for shift, mask in _PLANS[(n + _PLAN_STEP - 1) // _PLAN_STEP]:
        value = (value >> shift) + (value & mask)
    return value


_PLAN_BITS = 768  # fold until the value has about this many bits: the remainder is then cheap
_PLAN_STEP = 128  # bytes per size class: a class's plan serves every size up to its top


def _fold_plan(n: int) -> tuple[tuple[int, int], ...]:
    """The folds that take an integer of at most *n* bytes below about 2**_PLAN_BITS, congruent
    modulo 0xFFFF: each adds the bits above a 16-bit boundary (2**(16k) == 1) to those below
    (for a smaller integer a fold may add zero: still right)."""
    plan = []
    bits = n << 3
    while bits > _PLAN_BITS:
        shift = ((bits >> 1) + 15) & ~15  # at least half, a multiple of 16
        plan.append((shift, (1 << shift) - 1))
        bits = max(shift, bits - shift) + 1
    return tuple(plan)


_PLANS = [_fold_plan(k * _PLAN_STEP) for k in range(_SPLIT_MAX // _PLAN_STEP + 1)]


def finish(total: int) -> int:
    """The checksum field value for a non-negative sum (from :func:`ones_sum` and
    :func:`pseudo_header_sum`): the ones' complement of the folded sum."""
    folded = total % 0xFFFF
    if folded == 0 and total:
        return 0  # the sum is negative zero (0xFFFF); its complement is 0
    return 0xFFFF - folded


def checksum(data: Any, extra: int = 0) -> int:
    """Checksum of *data* plus a non-negative unreduced *extra* sum (a pseudo-header).

    Over data that includes a correct checksum field this returns 0 (RFC 1071 section 1(3)).
    """
    # The small case inlined: a Python call costs as much as converting 300 bytes.
    n = len(data)
    if n <= _FOLD_ABOVE:
        value = _from_bytes(data, "little")
        folded = value % 0xFFFF  # reduce before adding: adding to a big int copies it
    elif n <= _SPLIT_MAX:
        value = _segment_value(data, n)
        folded = value % 0xFFFF
    else:
        value = _from_bytes(data, "little") if n <= _CHUNK else _sum_le(data)
        folded = _mod(value, min(n, _CHUNK + 8))
    if extra:
        # extra is a network-order sum: times 2**8 it joins the little-endian one. The total
        # is non-zero, so a zero remainder means negative zero.
        folded = (folded + (extra << 8)) % 0xFFFF
        return 0xFFFF - (folded << 8) % 0xFFFF if folded else 0
    if folded:
        return 0xFFFF - (folded << 8) % 0xFFFF  # back to network order, complemented
    return 0 if value else 0xFFFF


def pseudo_header_sum(src: int, dst: int, proto: int, length: int) -> int:
    """The IPv4 pseudo-header's sum (RFC 768, RFC 9293 3.1): source, destination, zero byte and
    protocol, transport length. A 32-bit address is congruent modulo 0xFFFF to the sum of its
    two 16-bit halves, so adding the ints is enough; the result is unreduced (feed it to
    :func:`checksum` or :func:`finish`)."""
    return src + dst + proto + length


def update16(field: int, old_word: int, new_word: int) -> int:
    """A checksum field after one 16-bit word of the covered data changes from *old_word* to
    *new_word* (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')), without touching the data.

    Equal to recomputing, except when the data become all zero: the sum is then +0 but the
    update yields -0, i.e. a field of 0 instead of 0xFFFF. Callers that can meet that case
    (only ICMP can: an IP header has its version, UDP/TCP a pseudo-header) check for it."""
    total = (0xFFFF - field) + (0xFFFF - old_word) + new_word
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return 0xFFFF - total
