"""StreamBuffer: the receive buffer that keeps its storage between reads."""

from __future__ import annotations

import random

from usernet.tcp.buffer import StreamBuffer


def test_fifo_semantics_match_a_bytearray() -> None:
    rng = random.Random(5)
    buf = StreamBuffer()
    model = bytearray()
    for _ in range(2000):
        if rng.random() < 0.55:
            piece = rng.randbytes(rng.randrange(0, 3000))
            buf += memoryview(piece) if rng.random() < 0.5 else piece
            model += piece
        else:
            n = rng.randrange(0, 5000)
            assert buf.take(n) == bytes(model[:n])
            del model[:n]
        assert len(buf) == len(model) and bool(buf) == bool(model)
        assert buf[:100] == bytes(model[:100]) and bytes(buf) == bytes(model) and buf == model


def test_storage_is_kept_across_reads_and_bounded() -> None:
    buf = StreamBuffer()
    chunk = bytes(65483)
    most = 0
    for _ in range(50):
        for _ in range(16):
            buf += chunk
        most = max(most, len(buf))
        store = buf._store
        assert len(buf.take(1 << 20)) == 16 * len(chunk)
        assert not buf and buf._store is store  # drained: rewound, not freed
    assert len(buf._store) <= 2 * most + 2 * len(chunk)
    buf.clear()
    assert len(buf) == 0 and buf.take(10) == b""
