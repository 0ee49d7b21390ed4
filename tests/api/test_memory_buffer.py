"""StreamBuffer.shrink: storage kept across reads is given back when idle (api/memtrim.py calls it
before a trim), the bytes held stay as they were."""

from __future__ import annotations

from usernet.tcp.buffer import _MIN_STORAGE, StreamBuffer


def _grown(to: int) -> StreamBuffer:
    buf = StreamBuffer()
    for _ in range(to // 65536):
        buf += bytes(65536)
    return buf


def test_an_empty_buffer_gives_all_its_storage_back_and_still_works() -> None:
    buf = _grown(1 << 20)
    buf.take(1 << 20)
    size = len(buf._store)
    assert size >= 1 << 20
    assert buf.shrink() == size and len(buf._store) == 0
    assert buf.shrink() == 0
    buf += b"abc"
    buf += b"def"
    assert buf.take(4) == b"abcd" and buf == b"ef"


def test_a_holding_buffer_keeps_twice_what_it_holds_in_order() -> None:
    buf = _grown(1 << 20)
    buf.take((1 << 20) - 5000)
    tail = bytes(range(256)) * 4
    buf += tail
    expect = bytes(5000) + tail
    released = buf.shrink()
    assert len(buf._store) == 2 * len(expect) and released > 0
    assert bytes(buf) == expect and len(buf) == len(expect)
    buf += b"more"
    assert buf.take(len(expect) + 4) == expect + b"more" and not buf


def test_small_storage_is_left_alone() -> None:
    buf = StreamBuffer(b"x" * 10)
    assert buf.shrink() == 0 and buf == b"x" * 10
    small = StreamBuffer()
    small += b"y" * (_MIN_STORAGE // 4)
    small.take(1)
    assert small.shrink() == 0 and small == b"y" * (_MIN_STORAGE // 4 - 1)
