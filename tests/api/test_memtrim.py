"""MemoryReturn: malloc_trim only after a large drop, at most once a second (virtual time)."""

from __future__ import annotations

from usernet.api.memtrim import BUFFER_DROP, CONNECTION_DROP, MemoryReturn, _malloc_trim
from usernet.stack.core import Stack


def test_trims_after_a_large_drop_only() -> None:
    stack = Stack(mac=b"\x02\0\0\0\0\x01", addr="10.0.0.2/24")
    calls: list[int] = []
    memory = MemoryReturn(stack, trim=lambda pad: calls.append(pad) or 1)
    pool = stack.tcp.memory
    pool.used = 3 * BUFFER_DROP
    memory.tick(0.0)
    pool.used = 3 * BUFFER_DROP - 1024  # a small drop: nothing
    memory.tick(1.0)
    assert calls == []
    pool.used = BUFFER_DROP  # two thresholds' worth freed
    memory.tick(1.5)  # within the interval: not even looked at
    assert calls == []
    memory.tick(2.0)
    assert calls == [0] and stack.all_counters()["host.memory_trimmed"] == 1
    memory.tick(3.0)  # the new low is the new peak: no second trim
    assert calls == [0]
    stack.tcp.connections.update({i: None for i in range(CONNECTION_DROP)})  # type: ignore[misc]
    memory.tick(4.0)
    stack.tcp.connections.clear()
    memory.tick(5.0)
    assert calls == [0, 0]


def test_the_real_malloc_trim_is_found_and_callable() -> None:
    trim = _malloc_trim()
    assert trim is not None  # glibc, as on every machine this project targets
    assert trim(0) in (0, 1)
