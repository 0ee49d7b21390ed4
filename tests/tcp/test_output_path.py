"""The lean segment output path puts the same bytes on the wire as wire.tcp.build."""

from __future__ import annotations

import random

import pytest

from usernet.tcp.layer import segment_header
from usernet.wire import tcp as tcpwire
from usernet.wire.checksum import checksum, pseudo_header_sum


def _options(rng: random.Random) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return b""
    if choice == 1:
        return tcpwire.timestamp_option(rng.getrandbits(32), rng.getrandbits(32))
    if choice == 2:
        blocks = [(rng.getrandbits(32), rng.getrandbits(32)) for _ in range(rng.randint(1, 3))]
        return tcpwire.build_options(ts=(rng.getrandbits(32), rng.getrandbits(32)), sack_blocks=blocks)
    if choice == 3:
        return tcpwire.build_options(mss=rng.randint(0, 0xFFFF), wscale=rng.randint(0, 14), sack_permitted=True,
                                     ts=(rng.getrandbits(32), 0))
    return bytes(4 * rng.randint(1, 10))  # zero options: the sum must not care


@pytest.mark.parametrize("seed", range(8))
def test_segment_header_matches_build(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        src, dst = rng.getrandbits(32), rng.getrandbits(32)
        sport, dport = rng.getrandbits(16), rng.getrandbits(16)
        seq, ack = rng.getrandbits(32), rng.getrandbits(32)
        flags, window = rng.getrandbits(8), rng.getrandbits(16)
        options = _options(rng)
        size = rng.choice((0, 1, 2, 3, 99, 100, 191, 192, 193, 536, 1447, 1448, 2047, 2048, 2049, 9000))
        payload = bytes(size) if rng.random() < 0.2 else (b"\xff" * size if rng.random() < 0.2 else rng.randbytes(size))
        header = segment_header(src, dst, sport, dport, seq, ack, flags, window, options, memoryview(payload))
        expected = tcpwire.build(src, dst, sport, dport, seq, ack, flags, window, options, payload)
        assert header + payload == bytes(expected)
        assert checksum(header + payload, pseudo_header_sum(src, dst, 6, len(header) + size)) == 0


def test_negative_zero_sum_gives_zero_field() -> None:
    """A segment whose sum is a multiple of 0xFFFF (negative zero) carries checksum 0, as build does."""
    rng = random.Random(3)
    found = 0
    for _ in range(200_000):
        seq = rng.getrandbits(32)
        header = segment_header(0x0A000001, 0x0A000002, 1, 2, seq, 0, tcpwire.ACK, 0, b"", b"")
        if header[16:18] == b"\0\0":
            found += 1
            assert header == bytes(tcpwire.build(0x0A000001, 0x0A000002, 1, 2, seq, 0, tcpwire.ACK, 0))
    assert found
