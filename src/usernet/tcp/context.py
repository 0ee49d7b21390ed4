"""What one TCP connection needs from the host's TCP, and nothing more.

A :class:`~usernet.tcp.connection.TcpConnection` sees its layer only through :class:`TcpContext`
(the connection is typed against it, so mypy keeps it to these members): the clock of the last
event, the RNG and configuration, the counters, the way out (``transmit``, ``send_reset``), the
offload size, the timestamp offset, and two small host-wide policies that own their own state,
the challenge-ACK limiter and the buffer-memory pool. The layer implements it; a test can hand a
connection any other implementation.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from usernet.tcp.config import TcpConfig

if TYPE_CHECKING:
    from usernet.tcp.connection import TcpConnection

MEM_MIN_BUFFER = 4096  # tcp_rmem[0] / tcp_wmem[0]: what a connection may always have under pressure


class ChallengeLimiter:
    """RFC 5961 7: the host-wide budget of challenge ACKs, drawn at random each second from
    [limit/2, 3*limit/2) (Linux since CVE-2016-5696, commit 75ff39ccc1bd). With one exact budget,
    an off-path attacker who counts the challenge ACKs it draws on its own connection sees the
    ones spent on a connection it probes blindly, and so learns when its guess is right."""

    def __init__(self, rng: random.Random, config: TcpConfig) -> None:
        self.rng = rng
        self.config = config  # challenge_ack_limit read at each draw: settable at run time
        self.second: int | None = None
        self.budget = 0

    def allow(self, now: float) -> bool:
        second = int(now)  # Linux: jiffies / HZ
        if second != self.second:
            limit = self.config.challenge_ack_limit
            half = (limit + 1) >> 1
            self.second = second
            self.budget = self.rng.randint(half, max(half, limit + half - 1))
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True


class MemoryPool:
    """The host-wide bound on socket-buffer memory (Linux tcp_mem). Connections charge what their
    buffers hold; under pressure a connection may only grow to the minimum buffer or its fair
    share, so windows stop growing and sends stop queueing before memory does."""

    def __init__(self, config: TcpConfig, connections: Callable[[], int]) -> None:
        self.config = config  # mem_limit read at each use: settable at run time
        self.used = 0
        self.connections = connections  # how many connections share the pool (fair share)
        self.waiters: set[TcpConnection] = set()  # send() refused for memory: woken as it frees

    @property
    def limit(self) -> int:
        return self.config.mem_limit

    def room(self, held: int) -> int:
        """How many more bytes a connection now holding *held* may take (Linux's
        __sk_mem_raise_allocated): anything below the pressure threshold (2/3 of the limit,
        tcp_mem[1]); nothing at the hard limit (tcp_mem[2]); under pressure only up to the minimum
        buffer or the fair share (limit / connections)."""
        free = self.limit - self.used
        if free <= 0:
            return 0
        if self.used < self.limit * 2 // 3:
            return free
        fair = max(MEM_MIN_BUFFER, self.limit // max(1, self.connections()))
        return min(free, max(0, fair - held))

    def exhausted_by(self, extra: int) -> bool:
        """Taking *extra* more bytes would pass the hard limit."""
        return self.used + extra > self.limit

    def changed(self, delta: int) -> None:
        self.used += delta
        if delta < 0 and self.waiters:
            waiters, self.waiters = self.waiters, set()
            for conn in waiters:
                conn._notify()  # writable again, perhaps: let select() and blocked senders look


class TcpContext(Protocol):
    config: TcpConfig
    rng: random.Random
    counters: defaultdict[str, int]
    now: float
    challenge: ChallengeLimiter
    memory: MemoryPool

    def mark_dirty(self, conn: TcpConnection) -> None:
        """*conn* has output (or timers) to look at on the next poll."""

    def transmit(self, conn: TcpConnection, seq: int, ack: int, flags: int, window: int, options: bytes,
                 payload: bytes | bytearray | memoryview) -> None: ...

    def send_reset(self, src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int) -> None: ...

    def established(self, conn: TcpConnection) -> None:
        """A passive connection completed its handshake (to its listener's accept queue)."""

    def forget(self, conn: TcpConnection) -> None:
        """*conn* is CLOSED: drop it from the tables."""

    def gso_for(self, dst: int) -> int: ...

    def ts_offset(self, local: tuple[int, int], remote: tuple[int, int]) -> int: ...
