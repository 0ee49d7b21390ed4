"""le_mod (the receive path's TCP checksum sum) folds segment-sized integers by a per-size-class
plan: it must stay congruent to the plain remainder for every size, including extreme data."""

from __future__ import annotations

import random

from usernet.wire.checksum import le_mod


def _reference(data: bytes) -> int:
    return int.from_bytes(data, "little") % 0xFFFF


def test_le_mod_matches_the_plain_remainder_for_every_size() -> None:
    rng = random.Random(17)
    for size in range(0, 4200):
        for data in (rng.randbytes(size), b"\xff" * size, bytes(size), b"\xff\x00" * (size // 2)):
            assert le_mod(data) == _reference(data), size
            assert le_mod(memoryview(bytearray(data))) == _reference(data), size
