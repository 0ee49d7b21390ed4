"""MemoryReturn: malloc_trim only after a large drop or once a long transfer stopped, at most once
a second (virtual time)."""

from __future__ import annotations

from usernet.api import memtrim
from usernet.api.memtrim import BUFFER_DROP, CHECK, CONNECTION_DROP, MemoryReturn, _malloc_trim
from usernet.stack.core import Stack
from usernet.tcp.buffer import StreamBuffer


def _stack() -> Stack:
    return Stack(mac=b"\x02\0\0\0\0\x01", addr="10.0.0.2/24")


def _returner(stack: Stack) -> tuple[MemoryReturn, list[int]]:
    calls: list[int] = []
    return MemoryReturn(stack, trim=lambda pad: calls.append(pad) or 1), calls


def _run(memory: MemoryReturn, now: float) -> None:
    """As the runtime calls it: only when due."""
    if now >= memory.next_check:
        memory.tick(now)


def test_trims_after_a_large_drop_only() -> None:
    stack = _stack()
    memory, calls = _returner(stack)
    pool = stack.tcp.memory
    pool.used = 3 * BUFFER_DROP
    memory.tick(0.0)
    pool.used = 3 * BUFFER_DROP - 1024  # a small drop: nothing
    memory.tick(1.0)
    assert calls == []
    pool.used = BUFFER_DROP  # two thresholds' worth freed
    memory.tick(1.0 + CHECK / 2)  # within the look interval: not even looked at
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


def test_a_long_transfer_is_trimmed_in_the_pass_its_connection_closes() -> None:
    stack = _stack()
    memory, calls = _returner(stack)
    counters = stack.tcp.counters
    stack.tcp.connections[1] = None  # type: ignore[index]
    memory.tick(0.0)
    now = 0.0
    while counters["bytes_received"] < 4 * memtrim.TRAFFIC:  # a busy transfer: never quiet, never trimmed
        now += 0.01
        counters["bytes_received"] += 1 << 20
        _run(memory, now)
    assert calls == [] and memory.armed
    assert memory.next_check <= now  # armed: called every pass, to see the close at once
    del stack.tcp.connections[1]
    now += 0.001
    _run(memory, now)
    assert calls == [0] and not memory.armed
    assert memory.next_check > now  # back to a look every CHECK
    for _ in range(100):  # the host idle afterwards: nothing more to give back
        now += 0.1
        _run(memory, now)
    assert calls == [0]


def test_a_transfer_on_a_connection_left_open_is_trimmed_once_it_goes_quiet() -> None:
    stack = _stack()
    memory, calls = _returner(stack)
    counters = stack.tcp.counters
    stack.tcp.connections[1] = None  # type: ignore[index]
    now = 0.0
    memory.tick(now)
    for _ in range(40):  # 2 * TRAFFIC over a second or so, acknowledged (we were the sender)
        now += 0.03
        counters["bytes_acked"] += memtrim.TRAFFIC // 20
        _run(memory, now)
    assert calls == []
    # The first look after the end still sees the transfer's last bytes; the next one a trickle
    # (under QUIET): the traffic stopped.
    now += CHECK
    _run(memory, now)
    counters["bytes_acked"] += memtrim.QUIET // 2
    now += CHECK
    _run(memory, now)
    assert calls == [0]


def test_small_traffic_never_trims_and_trims_stay_a_second_apart() -> None:
    stack = _stack()
    memory, calls = _returner(stack)
    counters = stack.tcp.counters
    now = 0.0
    for _ in range(200):  # 8 MB in 20 s: under TRAFFIC, whatever the pauses
        now += 0.1
        counters["bytes_received"] += (memtrim.TRAFFIC // 2) // 200
        _run(memory, now)
    assert calls == []
    stack.tcp.connections.update({i: None for i in range(3)})  # type: ignore[misc]
    times = []
    for _ in range(300):  # bursts of TRAFFIC, each followed by a close, every 0.05 s
        now += 0.05
        counters["bytes_received"] += memtrim.TRAFFIC
        stack.tcp.connections.popitem()
        stack.tcp.connections[now] = None  # type: ignore[index]
        before = len(calls)
        _run(memory, now)
        stack.tcp.connections.popitem()
        now += 0.001
        _run(memory, now)
        stack.tcp.connections[now] = None  # type: ignore[index]
        if len(calls) > before:
            times.append(now)
    assert len(times) > 5
    assert all(b - a >= memtrim.INTERVAL for a, b in zip(times, times[1:], strict=False))


def test_idle_receive_storage_is_released_before_a_trim() -> None:
    stack = _stack()
    memory, calls = _returner(stack)

    class Conn:
        def __init__(self, data: bytes) -> None:
            self.rcv_buf = StreamBuffer()
            self.rcv_buf += bytes(1 << 20)
            self.rcv_buf.take(1 << 20)
            self.rcv_buf += data

    idle, holding = Conn(b""), Conn(b"x" * 10_000)
    stack.tcp.connections.update({1: idle, 2: holding})  # type: ignore[dict-item]
    stack.tcp.connections[3] = object()  # type: ignore[assignment]  # anything without a rcv_buf is left alone
    pool = stack.tcp.memory
    pool.used = 2 * BUFFER_DROP
    memory.tick(0.0)
    pool.used = 0
    memory.tick(1.0)
    assert calls == [0]
    assert idle.rcv_buf._store == bytearray()
    assert len(holding.rcv_buf._store) == 20_000 and holding.rcv_buf == b"x" * 10_000


def test_without_malloc_trim_nothing_is_ever_due() -> None:
    memory = MemoryReturn(_stack(), trim=False)
    assert memory.next_check == float("inf")
    memory.tick(10.0)


def test_the_real_malloc_trim_is_found_and_callable() -> None:
    trim = _malloc_trim()
    assert trim is not None  # glibc, as on every machine this project targets
    assert trim(0) in (0, 1)
