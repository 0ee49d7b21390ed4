"""Sequence numbers (RFC 9293 3.4): the one place that does modular arithmetic.

Inside the engine every sequence number is an unbounded *absolute* integer (the ISN plus the
bytes since), so comparisons are plain integer comparisons and cannot be fooled by wraparound.
Wire values are converted in with :func:`unwrap`, which picks the absolute number closest to a
reference (valid because a segment can never be more than 2**31 away from where we are: RFC
9293 requires windows below 2**30), and out with :func:`wire`.
"""

MOD = 1 << 32
HALF = 1 << 31


def unwrap(value: int, reference: int) -> int:
    """The absolute sequence number congruent to *value* (mod 2**32) nearest to *reference*."""
    return reference + ((value - reference + HALF) % MOD) - HALF


def wire(absolute: int) -> int:
    return absolute % MOD


def seq_lt(a: int, b: int) -> bool:
    """a < b in modulo-2**32 sequence space (for code that holds wire values)."""
    return ((a - b) % MOD) >= HALF
